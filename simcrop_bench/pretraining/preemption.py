"""Graceful stop on SIGTERM / SIGUSR1 (cluster preemption, SLURM's ``--signal``).

The handler only raises a flag; the loop checks it at the next optimizer-step
boundary (agreed across ranks), writes a checkpoint and returns with
``preempted = True``, so a requeued job resumes exactly there.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class PretrainingStopped(KeyboardInterrupt):
    """A pretraining stopped by a signal after its checkpoint: no encoder yet; the same run resumes it.

    A KeyboardInterrupt, so that the CLI reports an interruption and a cluster job requeues itself.
    """


class StopFlag:
    """Set by a stop signal; read by the loop."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @property
    def raised(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[StopFlag]:
    """Install flag-raising handlers for ``signals`` and restore the previous ones on exit.

    Outside the main thread Python cannot install handlers; the flag then never rises.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {sig: signal.signal(sig, flag._handle) for sig in signals}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
