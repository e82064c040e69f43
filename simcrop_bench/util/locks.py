"""Inter-process file locks (``filelock``'s ``flock`` lock) with a timeout and a message that says why.

``flock`` locks vanish with their process, so a killed holder never blocks the next one. A lock that
stays held past its timeout names the lock file; a file system without ``flock`` (Lustre mounted
without ``-o flock``, some NFS setups) is refused with how to fix it, instead of silently locking
nothing (``filelock``'s soft fallback is turned off: its marker files outlive a ``kill -9``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from simcrop_bench.errors import UserError

TIMEOUT_ENV = "SIMCROP_BENCH_LOCK_TIMEOUT_S"  # overrides every default below (a cluster with slow jobs)
# Waits are for someone else's work: a metadata write (seconds), a twin or a cache entry (minutes),
# an identical cell or a pretraining (hours to days).
SHORT_S = 120.0
BUILD_S = 3600.0
WORK_S = 7 * 24 * 3600.0
_NO_FLOCK = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}


class LockError(UserError):
    """A lock could not be taken: held too long by another process, or not supported here."""


def lock_timeout(default: float) -> float:
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise LockError(f"{TIMEOUT_ENV}={value!r}: expected a number of seconds") from None


@contextmanager
def file_lock(path: str | os.PathLike, *, timeout: float = WORK_S, what: str = "this store") -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created, with its folder) for the block; wait at most ``timeout`` s."""
    from filelock import Timeout, UnixFileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seconds = lock_timeout(timeout)
    lock = UnixFileLock(str(path), timeout=seconds, thread_local=False, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout:
        raise LockError(
            f"{path}: another process has held the lock on {what} for more than {seconds:g} s; "
            f"wait for it to finish (or raise {TIMEOUT_ENV})"
        ) from None
    except OSError as exc:
        if exc.errno not in _NO_FLOCK:
            raise
        raise LockError(
            f"{path}: the file system does not support flock ({os.strerror(exc.errno)}), so concurrent jobs "
            f"could corrupt {what}; mount it with flock support (Lustre: -o flock) or use a local folder"
        ) from None
    try:
        yield
    finally:
        lock.release()
