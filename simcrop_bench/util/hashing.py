"""Identities of files: content hashes (checkpoints, pinned model files) and cheap source signatures."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks so large checkpoints do not fill memory.

    Remembered for the process by path, size and modification time: a run plans each cell more
    than once (the CLI, then the runner), and hashing a ViT-B checkpoint costs about a second.
    """
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _file_sha256(str(resolved), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_signature(path: str | Path) -> str:
    """Path, size and modification time: changes whenever the file is replaced or edited, and
    costs a ``stat`` instead of re-reading the volume (hashing hundreds of CT volumes per run would not)."""
    stat = Path(path).stat()
    return f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def ids_sha256(ids) -> str:
    """SHA-256 of a set of case ids (sorted, one per line): equal lists of training cases, equal hashes."""
    return hashlib.sha256("\n".join(sorted(str(i) for i in ids)).encode("utf-8")).hexdigest()
