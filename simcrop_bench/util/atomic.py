"""Atomic, durable writes: a reader sees the old content or the new, never a part or a mix.

- :func:`atomic_path` writes a file under a temporary name in the same folder, ``fsync``s it, renames
  it over the target and ``fsync``s the folder, so a node crash cannot leave a zero-length file.
- :func:`staged_dir` builds a folder in a hidden sibling and :func:`publish_dir` swaps it in whole.
- Nothing is left behind: a failed attempt removes its staging folder and the parent folders it
  created; the staging folder of a killed attempt (``kill -9``) is removed by the next attempt.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which is not thread-safe (prepare writes from threads).
NEW_FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path`` (``fsync``ed when ``durable``).

    The file gets the mode a plain ``open(path, "w")`` would give it (``mkstemp`` creates 0600), so records,
    tables, figures and prepared volumes can be shared like any other file."""
    path = Path(path)
    created = make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    done = False
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, NEW_FILE_MODE)
        if durable:
            fsync_path(tmp_path)
        os.replace(tmp_path, path)
        done = True
        if durable:
            fsync_path(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
        if not done:
            remove_empty(created)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entries to the disk (folders: where the file system allows it)."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on folders; the files are flushed anyway
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    for current, _, files in os.walk(folder):
        for name in files:
            if not os.path.islink(os.path.join(current, name)):
                fsync_path(Path(current, name))
        fsync_path(Path(current))


def make_dirs(folder: Path) -> list[Path]:
    """``mkdir -p``; returns the folders it created, outermost first, for :func:`remove_empty`."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    folder.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def remove_empty(created: list[Path]) -> None:
    """Remove the folders :func:`make_dirs` created, innermost first, where they are still empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:  # not empty (another process's work lives there now) or gone: keep it
            return


def publish_dir(staging: Path, final: Path) -> None:
    """Make the complete folder ``staging`` visible as ``final`` in one step, replacing an old ``final`` whole.

    POSIX ``rename`` cannot replace a non-empty folder, and removing the old one first opens a window
    in which a reader finds ``record.json`` but no ``per_case.csv``. Linux ``renameat2(RENAME_EXCHANGE)``
    swaps the two names atomically; the old content then lives at ``staging`` and is removed. Where
    the exchange is unsupported, the old folder is moved aside first: a reader may then find no folder
    for an instant, but never a mix.
    """
    fsync_tree(staging)
    while True:
        try:
            os.rename(staging, final)  # no final yet (or an empty one): the plain atomic rename
            break
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
        if _exchange(staging, final):
            shutil.rmtree(staging, ignore_errors=True)
            break
        aside = final.with_name(f".{final.name}.replaced-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(final, aside)
        except FileNotFoundError:  # another publisher moved it meanwhile: try again
            continue
        shutil.rmtree(aside, ignore_errors=True)
    fsync_path(final.parent)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2``); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EXDEV):
        return False
    if code == errno.ENOENT:  # ``final`` vanished (another publisher's fallback): the caller retries a rename
        return False
    raise OSError(code, os.strerror(code), str(b))


def work_dir(final: str | os.PathLike) -> Path:
    """The stable work folder of an unfinished ``final``: the same name for every attempt, so state survives."""
    final = Path(final)
    return final.with_name(f".{final.name}.partial")


def _staging_prefix(final: Path) -> str:
    return f".{final.name}.partial-{socket.gethostname()}.{os.getpid()}."


def remove_stale_stagings(final: Path) -> list[Path]:
    """Remove the staging folders of ``final`` left by killed processes of this host; returns what it removed.

    A staging folder is named after its host and process id; one whose process is gone is stale.
    Folders of other hosts are left alone (their process may be alive there).
    """
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.partial-(?P<host>.+)\.(?P<pid>\d+)\.[a-z0-9_]+$")
    host, removed = socket.gethostname(), []
    if not final.parent.is_dir():
        return removed
    for entry in final.parent.iterdir():
        match = pattern.match(entry.name)
        if match and match["host"] == host and not _alive(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextmanager
def staged_dir(
    final: str | os.PathLike,
    *,
    resumable_if: Callable[[Path], bool] | None = None,
    publish: Callable[[Path, Path], None] = publish_dir,
) -> Iterator[Path]:
    """A hidden staging folder next to ``final``, published onto it (``publish``) when the block succeeds.

    On failure the staging folder is removed, with the parent folders this call created, and
    ``final`` is left as it was. With ``resumable_if``, staging happens in :func:`work_dir` (the same
    folder for every attempt), and a failed attempt keeps it when ``resumable_if(folder)`` holds, so
    that a rerun resumes from it.
    """
    final = Path(final)
    for attempt in range(5):  # a concurrent failure may remove an empty parent between mkdir and mkdtemp
        created = make_dirs(final.parent)
        try:
            if resumable_if is None:
                remove_stale_stagings(final)
                staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(final), dir=final.parent))
            else:
                staging = work_dir(final)
                if not resumable_if(staging):  # leftovers of a killed attempt with nothing to resume
                    shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(exist_ok=True)
            break
        except FileNotFoundError:
            if attempt == 4:
                raise
    try:
        yield staging
    except BaseException:
        if resumable_if is None or not resumable_if(staging):
            shutil.rmtree(staging, ignore_errors=True)
            remove_empty(created)
        raise
    publish(staging, final)
