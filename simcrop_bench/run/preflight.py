"""Refuse before work: what a run is given is checked while it is planned, before any data loads.

Each check raises a :class:`~simcrop_bench.errors.UserError` naming the option or file and the
problem, so the CLI prints one ``error:`` line, exits 2, and nothing has been written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from simcrop_bench.errors import ConfigError

MAX_SEED = 2**32 - 1  # numpy's and torch's seed range
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def check_seed(seed: object, option: str = "--seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{option} {seed}: expected an integer from 0 to {MAX_SEED}")
    return seed


def check_device(requested: str, option: str = "--device", *, available: bool = True) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; with ``available``, a CUDA device must exist on this machine
    (a sweep is planned on a login node without one, and checked again on the node)."""
    if not isinstance(requested, str) or not _DEVICE.match(requested):
        raise ConfigError(f"{option} {requested}: expected auto, cpu, cuda or cuda:N")
    if available and requested.startswith("cuda"):
        import torch  # only when CUDA is asked for: `auto` and `cpu` start without torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(requested.partition(":")[2] or 0)
        if index >= count:
            available = f"only {count} CUDA device(s) here" if count else "no CUDA device is available"
            raise ConfigError(f"{option}={requested}: {available}")
    return requested


def check_name(name: str, what: str) -> str:
    """A user-given name that becomes one path component: letters, digits, ``._+-``; no separators, no ``..``."""
    if not _NAME.match(name or "") or name in (".", ".."):
        raise ConfigError(
            f"{what} {name!r}: expected a plain name (letters, digits, '.', '_', '+', '-'; "
            "no '/', no leading '.'), since it becomes a folder name"
        )
    return name


def confined(path: Path, store: Path, what: str) -> Path:
    """``path``, refused unless it lies inside ``store`` (symbolic links and ``..`` resolved)."""
    resolved, root = Path(os.path.realpath(path)), Path(os.path.realpath(store))
    if resolved != root and root not in resolved.parents:
        raise ConfigError(f"{what} {path}: lies outside {store}")
    return path


STORE_FOLDERS = ("runs", "checkpoints", "jobs")  # what the results store manages itself


def outside_store(out: Path, results: Path, option: str = "--out") -> Path:
    """An output the user names (a table, a figure, a report folder), refused where it would replace
    something the results store manages: inside ``runs/``, ``checkpoints/`` or ``jobs/``, or one of its
    hidden files (the results index) at the store's root."""
    resolved, root = Path(os.path.realpath(out)), Path(os.path.realpath(results))
    managed = [root / name for name in STORE_FOLDERS]
    if (
        resolved == root
        or any(resolved == folder or folder in resolved.parents for folder in managed)
        or (resolved.parent == root and resolved.name.startswith("."))
    ):
        raise ConfigError(
            f"{option} {out}: lies inside the results store {results} (runs/, checkpoints/, jobs/ and its index "
            "are written by simcrop-bench only); write it elsewhere"
        )
    return out


def enclosing_store(path: Path) -> Path | None:
    """The results store a path lies in, if any: the nearest folder above it holding ``checkpoints/`` and either
    ``runs/`` or the results index."""
    from simcrop_bench.reporting.results_index import index_path

    for parent in Path(os.path.realpath(path)).parents:
        if (parent / "checkpoints").is_dir() and ((parent / "runs").is_dir() or index_path(parent).is_file()):
            return parent
    return None


def export_target(out: Path, source: Path) -> Path:
    """Where ``weights export`` may write: not over its own input, not inside a results store."""
    if os.path.realpath(out) == os.path.realpath(source):
        raise ConfigError(f"--out {out}: is the checkpoint being exported; write it elsewhere")
    store = enclosing_store(out)
    return out if store is None else outside_store(out, store)


def check_results_root(results: Path, option: str = "--results") -> Path:
    """The results folder exists and is writable, or can be created: checked without creating anything."""
    existing = results
    while not existing.exists():
        if existing.is_symlink():
            raise ConfigError(f"{option} {results}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"{option} {results}: exists and is not a folder"
            if existing == results
            else f"{option} {results}: cannot be created, {existing} is not a folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{option} {results}: the folder is not writable"
            if existing == results
            else f"{option} {results}: cannot be created, {existing} is not writable"
        )
    return results
