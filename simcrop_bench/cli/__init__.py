"""The ``simcrop-bench`` command line: one module per verb group (typer and rich only at import time)."""

from simcrop_bench.cli.main import app, main

__all__ = ["app", "main"]
