"""Where jobs run, behind one interface.

* ``inline`` (default): in this process, one after the other; errors propagate to ``run``.
* ``local``: submitit's LocalExecutor — one subprocess per job with its own folder and logs.
  There is no scheduler, so dependencies and the array cap are kept by the sweep waiting.
* ``slurm``: submitit's AutoExecutor on a SLURM cluster (profile from ``slurm/<name>.yaml``):
  ``sbatch`` job arrays with a parallelism cap and ``afterok`` dependencies.

submitit is imported only when a ``local`` or ``slurm`` executor is created.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from simcrop_bench.errors import ConfigError, UserError

EXECUTOR_NAMES = ("inline", "local", "slurm")


class Job(Protocol):
    job_id: str

    def result(self) -> Any: ...

    def done(self) -> bool: ...


class Executor(Protocol):
    name: str
    waits_for_dependencies: bool  # True: the caller must wait for ``after`` itself (no scheduler)

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        after: Job | None = None,
        gpus: int | None = None,
        name: str | None = None,
    ) -> Job: ...

    def map_array(
        self, fn: Callable[..., Any], args: Sequence[Any], after: Job | None = None, name: str | None = None
    ) -> list[Job]: ...


class _Finished:
    """An inline job: already ran. ``result()`` returns its value or raises its error."""

    _counter = 0

    def __init__(self, value: Any = None, error: BaseException | None = None):
        _Finished._counter += 1
        self.job_id = f"inline-{_Finished._counter}"
        self._value, self.error = value, error
        self.stdout = self.stderr = None

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self._value

    def done(self) -> bool:
        return True

    @property
    def state(self) -> str:
        return "FAILED" if self.error is not None else "COMPLETED"


class InlineExecutor:
    """Runs each job immediately, in this process.

    ``capture_errors=False`` (``run``): an exception propagates at once. ``True`` (``sweep``): it is
    kept in the job, so one failing cell does not stop the others.
    """

    name = "inline"
    waits_for_dependencies = True

    def __init__(self, capture_errors: bool = False):
        self.capture_errors = capture_errors

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        after: Job | None = None,
        gpus: int | None = None,
        name: str | None = None,
    ) -> Job:
        if not self.capture_errors:
            return _Finished(fn(*args))
        try:
            return _Finished(fn(*args))
        except Exception as exc:  # noqa: BLE001 - reported per cell by the sweep
            return _Finished(error=exc)

    def map_array(
        self, fn: Callable[..., Any], args: Sequence[Any], after: Job | None = None, name: str | None = None
    ) -> list[Job]:
        return [self.submit(fn, a) for a in args]


class SubmititExecutor:
    """submitit behind the Job/Executor interface (``cluster``: ``local`` or ``slurm``)."""

    def __init__(self, cluster: str, folder: Path, profile: Any):
        import submitit

        self.name = cluster
        self.waits_for_dependencies = cluster == "local"
        self.profile = profile
        # %j: one folder per job (arrays get %A_%a), holding its pickles and logs.
        self._executor = submitit.AutoExecutor(
            folder=Path(folder) / "%j", cluster=cluster, slurm_max_num_timeout=profile.max_num_timeout
        )
        if cluster == "slurm" and self._executor.cluster != "slurm":
            raise ConfigError("--executor slurm: no SLURM cluster found (sbatch is not on PATH)")

    def _configure(self, after: Job | None, gpus: int | None, name: str | None) -> None:
        params = self.profile.submitit_parameters(gpus)
        extra: dict[str, Any] = {}
        if after is not None and self.name == "slurm":
            # kill-on-invalid-dep: if the pretraining fails, its cells are cancelled instead of
            # pending forever with reason DependencyNeverSatisfied.
            extra = {"dependency": f"afterok:{after.job_id}", "kill_on_invalid_dep": "yes"}
        if self.name == "slurm":
            params["slurm_additional_parameters"] = extra
        else:  # LocalExecutor knows no slurm_* keys, only the generic ones
            params = {
                k: v
                for k, v in params.items()
                if k in ("timeout_min", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem_gb")
            }
            params.setdefault("tasks_per_node", 1)
        if name:
            params["name"] = name
        self._executor.update_parameters(**params)

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        after: Job | None = None,
        gpus: int | None = None,
        name: str | None = None,
    ) -> Job:
        self._configure(after, gpus, name)
        with _submission_errors(self.name):
            return self._executor.submit(fn, *args)

    def map_array(
        self, fn: Callable[..., Any], args: Sequence[Any], after: Job | None = None, name: str | None = None
    ) -> list[Job]:
        self._configure(after, None, name)
        with _submission_errors(self.name):
            return list(self._executor.map_array(fn, list(args)))


class SubmissionError(UserError):
    """The scheduler refused a job (unknown partition or account, bad limits, ...)."""


@contextmanager
def _submission_errors(cluster: str) -> Iterator[None]:
    """sbatch's refusal as one line (exit 2) instead of a traceback."""
    import subprocess

    try:
        yield
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "error" in ln.lower()] or [str(exc).strip()]
        raise SubmissionError(f"{cluster}: the job was not submitted: {lines[-1][:300]}") from None


def check_executor(name: str, cluster: str | None) -> None:
    """A known executor, and a cluster profile for SLURM."""
    if name not in EXECUTOR_NAMES:
        raise ConfigError(f"--executor {name}: expected one of {', '.join(EXECUTOR_NAMES)}")
    if name == "slurm" and cluster is None:
        raise ConfigError("--executor slurm needs --cluster NAME (a profile in slurm/, e.g. demo)")


def get_executor(
    name: str, *, cluster: str | None = None, folder: Path | None = None, capture_errors: bool = False
) -> Executor:
    check_executor(name, cluster)
    if name == "inline":
        return InlineExecutor(capture_errors=capture_errors)
    from simcrop_bench.jobs.clusters import ClusterProfile, load_profile

    profile = load_profile(cluster) if cluster else ClusterProfile(name="local")
    return SubmititExecutor(name, folder or Path("results") / "jobs" / "logs", profile)


def wait(jobs: Sequence[Job], deadline_s: float, poll_s: float = 2.0) -> bool:
    """Wait until every job is done or ``deadline_s`` passed; True when all are done."""
    end = time.monotonic() + deadline_s
    pending = list(jobs)
    while pending:
        pending = [j for j in pending if not j.done()]
        if not pending:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(poll_s)
    return True
