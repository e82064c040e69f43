"""``bench results``: the results store at scale, on generated records.

:func:`generate_records` writes ``n`` records with the layout, fields and size of real ones (a full
resolved config, per-class metrics, intervals, provenance) under ``runs/`` — methods ``gen-m0000`` … over
the six tasks, their fractions and five seeds — and :func:`generate_grid` a 10-method × 6-task × 5-seed
grid whose runs carry real-size ``per_case.csv`` files (CT-RATE's test split: 3,009 volumes × 18 labels).
The values are random draws from a fixed seed: they exercise the code, they are no result.

:func:`time_command` runs one ``simcrop-bench`` verb in a fresh process and reports its wall time and peak
RSS (``os.wait4``'s ``ru_maxrss`` of that child alone), as a user meets them, and its CPU time (user + system),
which a busy shared machine inflates less than the wall time.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The six tasks as the registry has them: (name, primary metric, fractions, test rows, labels).
TASKS = (
    ("ctrate_cls", "auc", (10, 100), 3009, 18),
    ("radchestct_cls", "auc", (10, 100), 3009, 16),
    ("ccccii_cls", "accuracy", (1, 10, 100), 3009, 3),
    ("luna16_cls", "auc", (1, 10, 100), 3009, 1),
    ("lung_seg", "dice", (10, 100), 3009, 0),
    ("btcv_seg", "dice", (100,), 3009, 0),
)
SEEDS = (42, 43, 44, 45, 46)
GENERATED_PREFIX = "gen-m"


def _record(method: str, kind: str, task: tuple, fraction: int, seed: int, rng: random.Random) -> dict[str, Any]:
    name, metric, _, _, labels = task
    value = rng.uniform(0.6, 0.9)
    config = {
        "method": {
            "name": method,
            "encoder": {"img_size": [224, 224, 112], "patch_size": [16, 16, 8], "embed_dim": 768, "depth": 12},
            "train": {"epochs": 200, "batch_size": 14, "effective_batch": 448, "lr": 1.5e-4, "seed": 42},
        },
        "task": {"name": name, **{f"option_{i}": i * 0.5 for i in range(30)}},
        "run": {"profile": "paper", "fraction": fraction, "seed": seed, "protocol": "heldout", "device": "auto"},
    }
    per_class = {f"label_{i:02d}": rng.uniform(0.5, 1.0) for i in range(max(labels, 1))}
    cell = hashlib.sha256(f"{method}/{name}/{fraction}".encode()).hexdigest()[:12]
    return {
        "schema_version": 1,
        "run_id": f"{name}/{method}/f{fraction}/s{seed}/paper-{cell}",
        "method": method,
        "method_kind": kind,
        "task": name,
        "fraction": fraction,
        "seed": seed,
        "profile": "paper",
        "protocol": "heldout",
        "variant": "",
        "synthetic": True,
        "primary_metric": metric,
        "higher_is_better": True,
        "metrics": {metric: value, "loss": rng.uniform(0.1, 1.0)},
        "intervals": {metric: {"low": value - 0.03, "high": value + 0.03, "level": 0.95, "n_resamples": 1000}},
        "per_class": {metric: per_class},
        "details": {"epochs_run": 100, "best_epoch": rng.randint(1, 100)},
        "config": config,
        "config_hash": cell,
        "cell_hash": cell,
        "checkpoint": {"path": f"/results/checkpoints/{method}/abc/encoder.pth", "sha256": "0" * 64},
        "data": {"dataset": name.split("_")[0], "root": "/data", "fingerprint": "f" * 16, "synthetic": True},
        "provenance": {
            "git_commit": "0" * 40,
            "git_dirty": False,
            "packages": {"torch": "2.5.1", "monai": "1.4.0", "numpy": "2.1.0", "pandas": "2.2.3"},
            "python": "3.11.10",
            "device": "generated (cpu)",
            "hostname": "bench",
        },
        "wall_time_s": 1.0,
        "peak_memory_mb": 100.0,
        "peak_memory_kind": "host_rss",
        "created_utc": "2026-12-06T00:00:00Z",
    }


def _write(results: Path, record: dict[str, Any]) -> Path:
    folder = results / "runs" / record["run_id"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "record.json").write_text(json.dumps(record, indent=2))
    return folder


def generate_records(results: Path, n: int, *, seed: int = 0) -> int:
    """``n`` records under ``results/runs`` (methods ``gen-m0000``, … each with every task × fraction × seed)."""
    rng = random.Random(seed)
    cells = [(task, fraction) for task in TASKS for fraction in task[2]]
    written = 0
    method_index = 0
    while written < n:
        method = f"{GENERATED_PREFIX}{method_index:04d}"
        for task, fraction in cells:
            for s in SEEDS:
                if written == n:
                    return written
                _write(results, _record(method, "self-supervised", task, fraction, s, rng))
                written += 1
        method_index += 1
    return written


def _per_case(task: tuple, rng: random.Random) -> str:
    """A real-size ``per_case.csv`` in the task's format (see :mod:`simcrop_bench.run.predictions`)."""
    _, metric, _, rows, labels = task
    if metric == "dice":
        lines = ["case,dice"] + [f"case{i:05d},{rng.random():.6f}" for i in range(rows)]
    elif metric == "accuracy":
        header = ["case", "group", "label"] + [f"p:c{j}" for j in range(labels)]
        lines = [",".join(header)]
        for i in range(rows):
            probs = [rng.random() for _ in range(labels)]
            total = sum(probs)
            cells = [f"case{i:05d}", f"patient{i // 2:05d}", str(rng.randrange(labels))]
            lines.append(",".join(cells + [f"{p / total:.6f}" for p in probs]))
    else:
        header = ["case", "group"] + [f"y:l{j}" for j in range(labels)] + [f"p:l{j}" for j in range(labels)]
        lines = [",".join(header)]
        for i in range(rows):
            truth = [str(int(rng.random() < 0.2 or i % 5 == j % 5)) for j in range(labels)]
            scores = [f"{rng.random():.6f}" for _ in range(labels)]
            lines.append(",".join([f"case{i:05d}", f"patient{i // 2:05d}", *truth, *scores]))
    return "\n".join(lines) + "\n"


def generate_grid(results: Path, *, methods: int = 10, seed: int = 0) -> int:
    """A paper-table grid: ``methods`` (the first named ``simcrop``, the reference) × 6 tasks (largest
    fraction) × 5 seeds, each run with its real-size ``per_case.csv``; returns the number of runs."""
    rng = random.Random(seed)
    names = ["simcrop"] + [f"{GENERATED_PREFIX}{i:04d}" for i in range(1, methods)]
    count = 0
    for task in TASKS:
        per_case = {s: _per_case(task, rng) for s in SEEDS}  # methods share the test cases, as real runs do
        for method in names:
            for s in SEEDS:
                folder = _write(results, _record(method, "self-supervised", task, max(task[2]), s, rng))
                (folder / "per_case.csv").write_text(per_case[s])
                count += 1
    return count


@dataclass(frozen=True)
class CommandTiming:
    label: str
    wall_s: float
    cpu_s: float  # user + system time of the process: steadier than wall time on a shared machine
    peak_rss_mb: float
    returncode: int


def time_command(label: str, args: list[str]) -> CommandTiming:
    """``python <args>`` in a fresh process (``-m simcrop_bench.cli <verb> …`` for a verb): wall time and that
    process's peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        error = proc.stderr.read().decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{' '.join(args)} failed: {error[-1] if error else proc.returncode}")
    proc.stderr.close()
    return CommandTiming(label, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, proc.returncode)


# Without the index: every record.json parsed, as `leaderboard` did before the index.
READ_EVERY_RECORD = (
    "import sys; from simcrop_bench.reporting import leaderboard as lb; "
    "lb.aggregate(lb.records_frame(lb.load_records(sys.argv[1])))"
)


def leaderboard_timings(results: Path, repeats: int, baseline: bool) -> list[list[CommandTiming]]:
    """Rows of timings: index rebuilt from scratch (once), fresh index (``repeats``), and without the index."""
    board = ["-m", "simcrop_bench.cli", "leaderboard", "--results", str(results), "--format", "csv"]
    rows = [[time_command("leaderboard, index rebuilt (first run)", [*board, "--reindex"])]]
    rows.append([time_command("leaderboard, index fresh", board) for _ in range(repeats)])
    if baseline:
        rows.append([time_command("every record parsed (no index)", ["-c", READ_EVERY_RECORD, str(results)])])
    return rows


def table_timings(results: Path, repeats: int, permutations: int) -> list[CommandTiming]:
    """``table`` with the paired test of every cell against ``simcrop`` (Holm), ``repeats`` times."""
    args = ["-m", "simcrop_bench.cli", "table", "--results", str(results), "--format", "md"]
    args += ["--reference", "simcrop", "--permutations", str(permutations)]
    return [time_command("table, significance vs simcrop", args) for _ in range(repeats)]
