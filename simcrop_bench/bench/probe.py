"""Benchmarks: the project's speed claims, measured where a user can rerun them.

Speed goals are checked here (``simcrop-bench bench ...``), never in timed unit tests.

:func:`probe_protocols` times the linear probe's two protocols end to end, as a user runs them:
one ``simcrop-bench run`` process each, in a private cache (the synthetic twin is linked in, so
it is not regenerated, and no feature cache exists at the start):

1. ``paper`` — volumes through the random training chain and the frozen encoder at every step
   (its evaluation features are cached too, so it gets a cache of its own);
2. ``cached`` (cold) — one deterministic feature pass per split, written to a new cache, then the head;
3. ``cached`` (warm) — the same run again on that cache: every feature is a cache hit.

Each row reports the process wall time and the protocol's own time (``probe_wall_time_s`` in the
record: from building the probe to the test predictions), so a process's fixed start-up (the
interpreter, and torch and MONAI where the protocol needs them) can be told apart from the protocol.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from simcrop_bench.errors import UserError

PROBE_MODES = (
    ("paper", "paper", False),
    ("cached, cold cache", "cached", False),
    ("cached, warm cache", "cached", True),
)


@dataclass(frozen=True)
class ProbeTiming:
    mode: str
    wall_s: float  # the whole `simcrop-bench run` process
    protocol_s: float  # the record's probe_wall_time_s
    metric: str
    value: float
    cache_hits: dict


def _run_cells(args: list[str], env: dict[str, str], results: Path, n_cells: int) -> tuple[float, list[dict]]:
    """One `simcrop-bench run` process; its wall time and the ``n_cells`` records it wrote."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "simcrop_bench.cli", "run", *args, "--results", str(results), "--force"],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"bench: `simcrop-bench run {' '.join(args)}` failed: {last}")
    newest = sorted(results.glob("runs/**/record.json"), key=lambda p: p.stat().st_mtime)[-n_cells:]
    return wall, [json.loads(path.read_text()) for path in newest]


def probe_protocols(
    task: str = "ctrate_cls",
    method: str = "scratch",
    weights: Path | None = None,
    extra: list[str] | None = None,
    seeds: int = 1,
) -> list[ProbeTiming]:
    """Time ``paper``, ``cached`` (cold) and ``cached`` (warm) on ``task``; see the module docstring.

    ``seeds > 1`` runs seeds 42, 43, … in each process, as a paper table needs them: the process
    start-up is paid once, and with ``weights`` (one encoder for every seed) the cached features
    are shared by the seeds. Times are per process; protocol time and metric are means over seeds.
    """
    from simcrop_bench.data.roots import ensure_twin
    from simcrop_bench.registry import discover, get_task

    if seeds < 1:  # `records[-0:]` would be every record of the shared results folder
        raise UserError(f"bench probe: seeds={seeds}: at least one seed per process")

    discover()
    task_cls = get_task(task)
    if task_cls.kind != "classification":
        raise UserError(
            f"bench probe: '{task}' is a {task_cls.kind} task; the probe protocols are for classification tasks"
        )
    twin = ensure_twin(task_cls.dataset)  # untimed: the twin is data, not protocol
    base = [
        "--task",
        task,
        *(["--weights", str(weights)] if weights else ["--method", method]),
        *(extra or []),
        *(arg for seed in range(42, 42 + seeds) for arg in ("--seed", str(seed))),
    ]
    timings = []
    with tempfile.TemporaryDirectory(prefix="simcrop-bench-bench-") as tmp:
        for i, (mode, probe, warm) in enumerate(PROBE_MODES):
            cache = Path(tmp) / f"cache{i - 1 if warm else i}"  # a warm run reuses its predecessor's cache
            if not warm:  # paper caches its evaluation features too: each cold mode starts from nothing
                (cache / "twins").mkdir(parents=True)
                (cache / "twins" / twin.name).symlink_to(twin, target_is_directory=True)
            env = {**os.environ, "SIMCROP_BENCH_CACHE": str(cache)}
            wall, records = _run_cells([*base, "--set", f"task.probe={probe}"], env, Path(tmp) / "results", seeds)
            if sorted(record["seed"] for record in records) != list(range(42, 42 + seeds)):
                raise UserError(
                    f"bench probe: the {mode} run left records of seeds "
                    f"{sorted(r['seed'] for r in records)}, expected 42…{41 + seeds}"
                )
            details = [record.get("details", {}) for record in records]
            if warm and not all(all(d.get("feature_cache_hits", {}).values()) for d in details):
                raise UserError(
                    f"bench probe: the warm run missed the feature cache: "
                    f"{[d.get('feature_cache_hits') for d in details]}"
                )
            metric = records[0]["primary_metric"]
            timings.append(
                ProbeTiming(
                    mode,
                    wall,
                    mean(float(d.get("probe_wall_time_s", float("nan"))) for d in details),
                    metric,
                    mean(float(record["metrics"][metric]) for record in records),
                    details[0].get("feature_cache_hits", {}),
                )
            )
    return timings


def probe_ratios(timings: list[ProbeTiming]) -> dict[str, float]:
    """paper ÷ each cached mode, for the process wall time and for the protocol time."""
    paper = timings[0]
    out = {}
    for t in timings[1:]:
        out[f"end to end, {t.mode}"] = paper.wall_s / t.wall_s
        out[f"protocol, {t.mode}"] = paper.protocol_s / t.protocol_s if t.protocol_s > 0 else float("inf")
    return out
