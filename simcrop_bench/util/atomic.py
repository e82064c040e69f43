"""Atomic file writes: write to a temporary name in the same folder, then rename.

A reader never sees a half-written file, and an interrupted write leaves only a
temporary file that is removed on the way out.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def work_dir(final: str | os.PathLike) -> Path:
    """The stable work folder of an unfinished ``final``: the same name for every attempt, so state survives."""
    final = Path(final)
    return final.with_name(f".{final.name}.partial")


@contextmanager
def staged_dir(final: str | os.PathLike, *, resumable_if: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """A hidden staging folder next to ``final``, renamed onto it when the block succeeds.

    On failure the staging folder is removed and ``final`` is left as it was. With
    ``resumable_if``, staging happens in :func:`work_dir` (the same folder for every attempt), and a
    failed attempt keeps it when ``resumable_if(folder)`` holds, so that a rerun resumes from it.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if resumable_if is None:
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    else:
        staging = work_dir(final)
        if not resumable_if(staging):  # leftovers of a killed attempt with nothing to resume
            shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True, exist_ok=True)
    try:
        yield staging
    except BaseException:
        if resumable_if is None or not resumable_if(staging):
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created, with its folder) for the block."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
