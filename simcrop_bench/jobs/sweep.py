"""A sweep: methods × tasks × fractions × seeds, submitted as few jobs as possible.

One pretraining job per distinct (method, pretraining config) that has no stored encoder yet
(methods with ``pretrains = False`` need none), and for each such group one job array of its
downstream cells, started only after the pretraining succeeded (SLURM ``afterok``; the ``local``
executor waits instead). Cells whose record already exists with the same config hash are
skipped, so a sweep run again submits only what is missing. ``--dry-run`` prints this plan.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from simcrop_bench.errors import ConfigError
from simcrop_bench.jobs.executors import Executor, Job, wait
from simcrop_bench.jobs.ledger import Entry, Ledger, jobs_dir, utc_now
from simcrop_bench.run.cell import RunPlan, RunRequest, plan_run


@dataclass
class Cell:
    plan: RunPlan

    @property
    def request(self) -> RunRequest:
        return self.plan.request

    @property
    def label(self) -> str:
        run = self.plan.config.run
        return f"{self.plan.config.task_name}/{self.plan.config.method_name}/f{run.fraction}/s{run.seed}"


@dataclass
class Group:
    """The cells that share one pretrained encoder."""

    method: str
    pretrain_key: str | None  # None: the method does not pretrain
    needs_pretraining: bool
    cells: list[Cell] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"pretrain {self.method}" + (f" ({self.pretrain_key})" if self.pretrain_key else "")


@dataclass
class SweepPlan:
    groups: list[Group]
    existing: list[Cell]  # cells with a record of the same config hash: not submitted
    unsupported: list[str]  # (task, fraction) combinations the task does not have
    estimate_h: float | None  # job hours (GPU hours on a GPU profile), when known

    @property
    def n_jobs(self) -> int:
        return sum(g.needs_pretraining for g in self.groups) + sum(len(g.cells) for g in self.groups)


def plan_sweep(
    methods: list[str],
    tasks: list[str],
    fractions: list[int],
    seeds: list[int],
    base: RunRequest,
    profile_hours: tuple[float | None, float | None] = (None, None),
    gpus: int = 1,
) -> SweepPlan:
    """Resolve and validate every cell (no torch), group them by pretraining, drop finished ones."""
    from simcrop_bench import registry

    registry.discover(base.plugins)
    plans: list[RunPlan] = []
    unsupported: list[str] = []
    for method in methods:
        for task in tasks:
            task_cls = registry.get_task(task)
            for fraction in fractions or [max(task_cls.fractions)]:
                if fraction not in task_cls.fractions:
                    unsupported.append(f"{task} f{fraction}")
                    continue
                plans += [
                    plan_run(replace(base, method=method, task=task, fraction=fraction, seed=seed, gpus=gpus))
                    for seed in seeds
                ]
    if not plans:
        raise ConfigError(f"no cells: the tasks have none of the fractions {', '.join(map(str, fractions))}")
    return group_plans(plans, profile_hours, unsupported)


def group_plans(
    plans: list[RunPlan],
    profile_hours: tuple[float | None, float | None] = (None, None),
    unsupported: list[str] | None = None,
) -> SweepPlan:
    """Planned cells (all of one results folder and ``--gpus``) grouped by the encoder they share;
    cells whose record has the same config hash are set aside unless their request forces a rerun."""
    from simcrop_bench.config import stable_hash
    from simcrop_bench.run.encoder_store import pretrain_key
    from simcrop_bench.run.records import existing_record

    groups: dict[tuple[str, str], Group] = {}
    existing: list[Cell] = []
    for plan in plans:
        cell = Cell(plan)
        previous = existing_record(plan.run_dir)
        if previous and previous.get("config_hash") == plan.config.config_hash and not plan.request.force:
            existing.append(cell)
            continue
        method_config = plan.config.to_dict()["method"]
        group_id = (plan.config.method_name, stable_hash(method_config))
        if group_id not in groups:
            key, needed = _pretraining_state(plan, method_config, pretrain_key)
            groups[group_id] = Group(plan.config.method_name, key, needed)
        groups[group_id].cells.append(cell)
    sweep = SweepPlan(list(groups.values()), existing, list(unsupported or []), None)
    first = plans[0].request
    sweep.estimate_h = _estimate_hours(sweep, Path(first.results), profile_hours, first.gpus)
    return sweep


def _pretraining_state(plan: RunPlan, method_config: dict, pretrain_key: Callable) -> tuple[str | None, bool]:
    """(store key, whether a pretraining job is needed) for the cell's method."""
    from simcrop_bench.run.encoder_store import pretraining_inputs

    method = plan.method_cls(plan.config.method)
    if not method.pretrains or method.provided_encoder() is not None:
        return None, False
    # Resolving the roots here also writes missing synthetic twins once, before any job starts,
    # instead of letting parallel jobs race to generate the same twin.
    _, fingerprints = pretraining_inputs(method)
    key = pretrain_key(method.name, method_config, fingerprints, plan.request.gpus)
    stored = Path(plan.request.results) / "checkpoints" / method.name / key / "meta.json"
    return key, not stored.is_file()


def prepare_task_data(plan: SweepPlan) -> None:
    """Write the tasks' synthetic twins (when no root is configured) before jobs start in parallel."""
    from simcrop_bench.data.roots import resolve_data_root

    seen: set[tuple[str, str | None]] = set()
    for group in plan.groups:
        for cell in group.cells:
            key = (cell.plan.task_cls.dataset, cell.request.data_root)
            if key not in seen:
                seen.add(key)
                resolve_data_root(*key)


def _estimate_hours(
    plan: SweepPlan, results: Path, profile_hours: tuple[float | None, float | None], gpus: int
) -> float | None:
    """From the cluster profile when it says, else from the wall time of earlier records of the cell kind."""
    per_pretraining, per_cell = profile_hours
    total = 0.0
    for group in plan.groups:
        if group.needs_pretraining:
            if per_pretraining is None:
                return None
            total += per_pretraining * gpus
        for cell in group.cells:
            hours = per_cell if per_cell is not None else _past_cell_hours(cell, results)
            if hours is None:
                return None
            total += hours
    return total


def _past_cell_hours(cell: Cell, results: Path) -> float | None:
    run = cell.plan.config.run
    folder = results / "runs" / cell.plan.config.task_name / cell.plan.config.method_name
    walls = []
    for record in folder.glob(f"f{run.fraction}/s*/{run.profile}-*/record.json"):
        try:
            walls.append(float(json.loads(record.read_text())["wall_time_s"]))
        except (ValueError, KeyError, json.JSONDecodeError):
            continue
    return statistics.median(walls) / 3600 if walls else None


def describe(plan: SweepPlan, executor: str, cluster: str | None, array_cap: int | None, gpus: int) -> list[str]:
    """The plan as text lines: jobs, arrays, dependencies, estimate."""
    where = executor + (f" (cluster {cluster})" if cluster else "")
    lines = [f"sweep on {where}: {plan.n_jobs} job(s); {len(plan.existing)} cell(s) already have a record"]
    for i, group in enumerate(plan.groups, 1):
        if group.needs_pretraining:
            lines.append(f"  job P{i}: {group.label}" + (f" on {gpus} GPU(s)/processes" if gpus > 1 else ""))
        elif group.pretrain_key:
            lines.append(f"  (encoder {group.method}/{group.pretrain_key} is stored: no pretraining job)")
        after = f", after P{i} succeeds (afterok)" if group.needs_pretraining else ""
        cap = f", at most {array_cap} at once" if array_cap else ""
        lines.append(f"  array A{i}: {len(group.cells)} cell(s) of {group.method}{after}{cap}")
        lines.extend(f"    {cell.label}  [{cell.plan.config.config_hash}]" for cell in group.cells)
    for cell in plan.existing:
        lines.append(f"  skip {cell.label}: record exists ({cell.plan.run_dir})")
    for combo in plan.unsupported:
        lines.append(f"  skip {combo}: the task has no such fraction")
    estimate = "unknown" if plan.estimate_h is None else f"{plan.estimate_h:.2f}"
    lines.append(f"estimated job hours: {estimate}")
    return lines


def submit(
    plan: SweepPlan,
    executor: Executor,
    results: Path,
    sweep_id: str,
    *,
    gpus: int = 1,
    local_deadline_s: float = 24 * 3600,
    array_cap: int = 16,
) -> list[Entry]:
    """Submit the plan and record every job in the ledger; returns the new ledger entries."""
    from simcrop_bench.jobs.callables import BenchJob

    ledger = Ledger(results)
    entries: list[Entry] = []
    for group in plan.groups:
        pretraining: Job | None = None
        if group.needs_pretraining:
            pretraining = executor.submit(
                BenchJob(pretrain_only=True),
                group.cells[0].request,
                gpus=gpus if gpus > 1 else None,
                name=f"pretrain-{group.method}",
            )
            entry = _entry(sweep_id, group.label, "pretrain", pretraining, executor.name, None)
            ledger.add([entry])
            entries.append(entry)
            if executor.waits_for_dependencies and not wait([pretraining], local_deadline_s):
                raise TimeoutError(f"{group.label}: not done after {local_deadline_s:.0f} s")
            if executor.waits_for_dependencies and _failed(pretraining):
                skipped = [_skipped_entry(sweep_id, cell, executor.name, pretraining.job_id) for cell in group.cells]
                ledger.add(skipped)
                entries.extend(skipped)
                continue
        chunks = [group.cells]
        if executor.waits_for_dependencies and executor.name != "inline":  # no scheduler: keep the cap by waiting
            chunks = [group.cells[i : i + array_cap] for i in range(0, len(group.cells), array_cap)]
        for chunk in chunks:
            jobs = executor.map_array(
                BenchJob(), [c.request for c in chunk], after=pretraining, name=f"cells-{group.method}"
            )
            new = [
                _entry(
                    sweep_id,
                    cell.label,
                    "cell",
                    job,
                    executor.name,
                    pretraining.job_id if pretraining else None,
                    cell.plan.run_dir,
                )
                for cell, job in zip(chunk, jobs)
            ]
            ledger.add(new)
            entries.extend(new)
            if executor.waits_for_dependencies and not wait(jobs, local_deadline_s):
                raise TimeoutError(f"cells of {group.method}: not done after {local_deadline_s:.0f} s")
    return entries


def _failed(job: Job) -> bool:
    try:
        job.result()
    except Exception:  # noqa: BLE001 - any failure of the pretraining blocks its cells
        return True
    return False


def _entry(
    sweep_id: str,
    label: str,
    kind: str,
    job: Job,
    executor: str,
    depends_on: str | None,
    record_dir: Path | None = None,
) -> Entry:
    paths = getattr(job, "paths", None)
    entry = Entry(
        sweep=sweep_id,
        label=label,
        kind=kind,
        job_id=str(job.job_id),
        executor=executor,
        depends_on=depends_on,
        record_dir=str(record_dir) if record_dir else None,
        stdout=str(paths.stdout) if paths else None,
        stderr=str(paths.stderr) if paths else None,
        result_pickle=str(paths.result_pickle) if paths else None,
    )
    if executor == "inline":  # already ran
        entry.state = job.state
        error = getattr(job, "error", None)
        entry.error = None if error is None else f"{type(error).__name__}: {error}"[:300]
    return entry


def _skipped_entry(sweep_id: str, cell: Cell, executor: str, dependency: str) -> Entry:
    return Entry(
        sweep=sweep_id,
        label=cell.label,
        kind="cell",
        job_id="-",
        executor=executor,
        state="SKIPPED",
        depends_on=dependency,
        record_dir=str(cell.plan.run_dir),
        error=f"not run: pretraining job {dependency} failed",
    )


def new_sweep_id() -> str:
    return "sweep-" + utc_now().replace(":", "").replace("-", "")


def logs_folder(results: Path) -> Path:
    return jobs_dir(results) / "logs"


def summary(entries: list[Entry]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.state] = counts.get(entry.state, 0) + 1
    return counts
