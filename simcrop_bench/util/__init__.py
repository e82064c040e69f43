"""Small shared helpers: atomic writes and locks, file hashes, progress output."""
