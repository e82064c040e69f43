"""Benchmarks: the project's speed claims, measured where a user can rerun them."""
