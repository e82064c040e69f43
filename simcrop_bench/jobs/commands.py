"""The job verbs behind the CLI: ``sweep`` (and ``run --executor local|slurm``), ``status``, ``cancel``, ``logs``.

Kept out of ``cli.py`` so the CLI stays a thin layer of options; nothing here imports torch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from simcrop_bench.errors import ConfigError, UserError
from simcrop_bench.jobs.ledger import Entry, Ledger, find

if TYPE_CHECKING:
    from simcrop_bench.jobs.sweep import SweepPlan
    from simcrop_bench.run.cell import RunPlan, RunRequest

SCANCEL_TIMEOUT_S = 30


def check_job_options(executor: str, cluster: str | None, gpus: int) -> None:
    """``--executor``, ``--cluster`` and ``--gpus`` together, before anything is planned."""
    from simcrop_bench.jobs.executors import check_executor

    check_executor(executor, cluster)
    if gpus < 1:
        raise ConfigError(f"--gpus {gpus}: expected at least 1")
    if gpus > 1 and executor == "inline":
        raise ConfigError(f"--gpus {gpus} starts one process per GPU: use --executor local or slurm")


def for_jobs(request: RunRequest) -> RunRequest:
    """The request with absolute paths: jobs may start in another working directory (setup lines, other nodes)."""
    return replace(
        request,
        results=str(Path(request.results).resolve()),
        data_root=str(Path(request.data_root).resolve()) if request.data_root else None,
    )


def run_sweep(
    methods: list[str],
    tasks: list[str],
    fractions: list[int],
    seeds: list[int],
    base: RunRequest,
    *,
    executor: str,
    cluster: str | None,
    gpus: int,
    dry_run: bool,
    wait_s: float | None,
    echo: Callable[[str], None],
) -> int:
    """Plan, print, submit; with ``wait_s`` also wait (deadline) and print the states. Returns an exit code."""
    from simcrop_bench.jobs.clusters import load_profile
    from simcrop_bench.jobs.sweep import plan_sweep

    check_job_options(executor, cluster, gpus)
    profile = load_profile(cluster) if cluster else None
    plan = plan_sweep(methods, tasks, fractions, seeds, for_jobs(base), _profile_hours(profile), gpus)
    return _submit(plan, profile, executor, cluster, gpus, dry_run=dry_run, wait_s=wait_s, echo=echo)


def run_plans(
    plans: list[RunPlan], *, executor: str, cluster: str | None, wait_s: float | None, echo: Callable[[str], None]
) -> int:
    """``run --executor local|slurm``: the cells ``run`` planned (from :func:`for_jobs` requests, options
    checked by :func:`check_job_options`), submitted as a sweep: a pretraining job and a dependent array."""
    from simcrop_bench.jobs.clusters import load_profile
    from simcrop_bench.jobs.sweep import group_plans

    profile = load_profile(cluster) if cluster else None
    plan = group_plans(plans, _profile_hours(profile))
    gpus = plans[0].request.gpus
    return _submit(plan, profile, executor, cluster, gpus, dry_run=False, wait_s=wait_s, echo=echo)


def _profile_hours(profile) -> tuple[float | None, float | None]:
    return (profile.gpu_hours_per_pretraining, profile.gpu_hours_per_cell) if profile else (None, None)


def _submit(
    plan: SweepPlan,
    profile,
    executor: str,
    cluster: str | None,
    gpus: int,
    *,
    dry_run: bool,
    wait_s: float | None,
    echo: Callable[[str], None],
) -> int:
    from simcrop_bench.jobs.executors import get_executor
    from simcrop_bench.jobs.sweep import describe, logs_folder, new_sweep_id, prepare_task_data, submit

    cap = profile.array_parallelism if profile else None
    for line in describe(plan, executor, cluster, cap if executor == "slurm" else None, gpus):
        echo(line)
    if dry_run or not plan.groups:
        if not plan.groups:
            echo("nothing to submit: every cell has a record")
        return 0
    prepare_task_data(plan)
    results = Path(plan.groups[0].cells[0].request.results)
    jobs = get_executor(executor, cluster=cluster, folder=logs_folder(results), capture_errors=True)
    sweep_id = new_sweep_id()
    deadline = wait_s if wait_s is not None else 24 * 3600
    entries = submit(plan, jobs, results, sweep_id, gpus=gpus, local_deadline_s=deadline, array_cap=cap or 4)
    echo(
        f"{sweep_id}: submitted {sum(e.job_id != '-' for e in entries)} job(s) "
        f"({', '.join(sorted({e.job_id.split('_')[0] for e in entries if e.job_id != '-'}))})"
    )
    if executor == "slurm" and wait_s is not None:
        if not _wait_ledger(results, [e.job_id for e in entries], wait_s):
            echo(f"deadline: not all jobs finished within {wait_s:.0f} s (see `simcrop-bench status`)")
            return 1
    if executor == "slurm" and wait_s is None:
        echo("follow with `simcrop-bench status` and `simcrop-bench logs JOB`")
        return 0
    states = {e.job_id: e for e in Ledger(results).refresh() if e.sweep == sweep_id}
    for line in status_lines(list(states.values())):
        echo(line)
    return 0 if all(e.state in ("COMPLETED", "SKIPPED") and not e.error for e in states.values()) else 1


def _wait_ledger(results: Path, job_ids: list[str], deadline_s: float, poll_s: float = 5.0) -> bool:
    """Poll the ledger (sacct) until the given jobs reached a final state, or the deadline passed."""
    end = time.monotonic() + deadline_s
    ledger = Ledger(results)
    while True:
        entries = {e.job_id: e for e in ledger.refresh()}
        if all(entries[j].final for j in job_ids if j in entries):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(poll_s)


def status_lines(entries: list[Entry]) -> list[str]:
    rows = [("sweep", "cell", "job", "state", "elapsed", "log")]
    for e in entries:
        rows.append((e.sweep, e.label, e.job_id, e.state, e.elapsed or "-", e.stdout or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    for e in entries:
        if e.error:
            lines.append(f"{e.job_id} {e.label}: {e.error} (log: {e.stderr or e.stdout or '-'})")
    return lines


def status(results: Path, sweep: str | None, all_sweeps: bool) -> list[str]:
    entries = Ledger(results).refresh()
    if not entries:
        raise UserError(f"{results}: no jobs submitted yet (ledger {Ledger(results).path} is empty)")
    if sweep:
        entries = [e for e in entries if e.sweep == sweep]
    elif not all_sweeps:
        last = entries[-1].sweep
        entries = [e for e in entries if e.sweep == last]
    return status_lines(entries)


def cancel(results: Path, refs: list[str], sweep: str | None) -> list[str]:
    """Cancel jobs by id or label, or every unfinished job of a sweep."""
    ledger = Ledger(results)
    entries = ledger.refresh()
    if refs:
        chosen = [find(entries, ref) for ref in refs]
    elif sweep:
        chosen = [e for e in entries if e.sweep == sweep]
    else:
        raise ConfigError("cancel needs job ids/labels or --sweep ID")
    lines = []
    with ledger.editing() as current:
        by_id = {e.job_id: e for e in current}
        for entry in chosen:
            if entry.final or entry.job_id == "-":
                continue
            _cancel_one(entry)
            by_id[entry.job_id].state = "CANCELLED"
            lines.append(f"cancelled {entry.job_id} {entry.label}")
    return lines or ["nothing to cancel: the jobs are finished"]


def _cancel_one(entry: Entry) -> None:
    if entry.executor == "slurm":
        subprocess.run(["scancel", entry.job_id], check=False, timeout=SCANCEL_TIMEOUT_S)
    elif entry.executor == "local":
        try:
            os.kill(int(entry.job_id), signal.SIGINT)  # what submitit's LocalJob.cancel sends
        except (ValueError, ProcessLookupError):
            pass


def logs(results: Path, ref: str, stderr_only: bool, tail: int | None) -> str:
    entry = find(Ledger(results).load(), ref)
    parts = []
    for name, path in (("stdout", entry.stdout), ("stderr", entry.stderr)):
        if stderr_only and name == "stdout":
            continue
        if not path or not Path(path).is_file():
            parts.append(f"== {name}: {path or '-'} (not written yet)")
            continue
        lines = Path(path).read_text(errors="replace").splitlines()
        parts.append(f"== {name}: {path}")
        parts.extend(lines[-tail:] if tail else lines)
    return "\n".join(parts)
