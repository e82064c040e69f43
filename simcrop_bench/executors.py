"""Where jobs run. ``inline`` (default) runs them in this process; the SLURM work adds
submitit-backed executors with the same interface."""

from __future__ import annotations

from typing import Any, Callable, Protocol

from .errors import ConfigError


class Job(Protocol):
    def result(self) -> Any: ...


class Executor(Protocol):
    def submit(self, fn: Callable[..., Any], *args: Any) -> Job: ...


class _Finished:
    def __init__(self, value: Any):
        self._value = value

    def result(self) -> Any:
        return self._value


class InlineExecutor:
    """Runs the job immediately, in this process; errors propagate to the caller."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Job:
        return _Finished(fn(*args))


EXECUTORS: dict[str, Callable[[], Executor]] = {"inline": InlineExecutor}


def get_executor(name: str) -> Executor:
    try:
        return EXECUTORS[name]()
    except KeyError:
        raise ConfigError(f"--executor {name}: expected one of {', '.join(EXECUTORS)}") from None
