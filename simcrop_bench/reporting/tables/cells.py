"""The runs behind each table cell: loading, seed-averaged intervals, significance, provenance.

:func:`load` reads a results folder once (records, their folders, method kinds); :func:`cell_stats`
reads the saved predictions (``per_case.csv``) of the cells that need them — for ``--cell ci`` with
several seeds, and for the paired test of every cell against the reference method's cell in the same
column (:mod:`simcrop_bench.stats.significance`: paired permutation test, Holm over the whole
table); :func:`provenance` lists, per cell, the records behind it (the ``table --explain`` sidecar).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simcrop_bench.errors import UserError
from simcrop_bench.stats.bootstrap import MIN_INTERVAL_PATIENTS
from simcrop_bench.stats.permutation import DEFAULT_PERMUTATIONS

if TYPE_CHECKING:
    import pandas as pd

    from simcrop_bench.reporting.tables.model import Column, Grid

BOOTSTRAP_SEED = 0  # one fixed draw of patients (and of swaps) for every comparison and interval of a table


@dataclass
class Loaded:
    results: Path
    frame: pd.DataFrame  # leaderboard.records_frame rows, filtered
    records: dict[str, dict]  # run_id -> record
    dirs: dict[str, Path]  # run_id -> run folder
    kinds: dict[str, str]  # method -> registry kind


@dataclass
class CellStats:
    interval: tuple[float, float] | None = None  # seed-averaged patient bootstrap (cell="ci", ≥2 seeds)
    p_raw: float | None = None
    p_holm: float | None = None
    significant: bool = False
    diff: float | None = None  # metric(method) − metric(reference), averaged over shared seeds
    shared_seeds: list[int] = field(default_factory=list)
    n_patients: int | None = None
    n_discordant: int | None = None  # patients on which the two methods differ
    test_method: str | None = None  # "exact" or "monte carlo"
    reason: str | None = None  # why no p-value (e.g. no shared seed)


@dataclass
class Stats:
    cells: dict[tuple[str, Column], CellStats]
    reference: str | None
    alpha: float
    n_resamples: int
    n_permutations: int
    family_size: int
    note: str | None
    runs: dict[tuple[str, Column], list[Any]]  # (method, column) -> its frame rows, one per seed


def load(
    results: Path, *, tasks=None, methods=None, profile=None, protocol=None, records: list[dict] | None = None
) -> Loaded:
    """Records under ``results`` (or ``records`` already read from it) with the leaderboard's filters."""
    from simcrop_bench.reporting import leaderboard as lb
    from simcrop_bench.reporting.tables.layouts import registry_kinds

    records = lb.load_records(results) if records is None else records
    frame = lb.filter_frame(lb.records_frame(records), task=tasks, method=methods, profile=profile, protocol=protocol)
    by_id = {r["run_id"]: r for r in records}
    dirs = _run_dirs(results, by_id)
    kinds = {r["method"]: r["method_kind"] for r in records if isinstance(r.get("method_kind"), str)}
    missing = set(frame["method"]) - set(kinds)
    if missing:
        kinds.update(registry_kinds(missing))
    return Loaded(results, frame, by_id, dirs, kinds)


def _run_dirs(results: Path, records: dict[str, dict]) -> dict[str, Path]:
    """run_id -> folder: ``runs/<run_id>`` as the runner writes it, else found by scanning."""
    runs = results / "runs"
    dirs = {rid: runs / rid for rid in records if (runs / rid / "record.json").is_file()}
    if len(dirs) < len(records):
        for path in sorted(runs.rglob("record.json")):
            if any(part.startswith(".") for part in path.relative_to(runs).parts):
                continue
            rid = json.loads(path.read_text(encoding="utf-8")).get("run_id")
            dirs.setdefault(rid, path.parent)
    return dirs


def cell_runs(frame: pd.DataFrame, grid: Grid) -> dict[tuple[str, Column], list[Any]]:
    """(method, column) -> its frame rows (one per seed), for the cells the grid shows."""
    from simcrop_bench.reporting.tables.model import Column, split_value

    shown = set(grid.methods)
    out: dict[tuple[str, Column], list[Any]] = defaultdict(list)
    for row in frame.itertuples(index=False):
        if row.method in shown:
            out[(row.method, Column(row.task, float(row.fraction), split_value(row, grid.split_by)))].append(row)
    return {key: sorted(rows, key=lambda r: r.seed) for key, rows in out.items()}


def _resolve_reference(reference: str | None, grid: Grid) -> str | None:
    if reference in (None, "", "none"):
        return None
    if reference == "auto":
        return "simcrop" if "simcrop" in grid.methods else None
    if reference not in grid.methods:
        raise UserError(
            f"--reference {reference!r} is not a row of this table (rows: {', '.join(grid.methods)}); "
            "use one of them, or --reference none"
        )
    return reference


def cell_stats(
    loaded: Loaded,
    frame: pd.DataFrame,
    grid: Grid,
    *,
    reference: str | None,
    alpha: float,
    n_resamples: int,
    n_permutations: int = DEFAULT_PERMUTATIONS,
) -> Stats:
    from simcrop_bench.run.predictions import align, bootstrap_metric, read_per_case
    from simcrop_bench.stats.permutation import min_discordant
    from simcrop_bench.stats.significance import PairedSeed, SeedPredictions, holm, paired_test, seed_averaged_interval

    runs = cell_runs(frame, grid)
    cache: dict[Path, Any] = {}

    def predictions(row):
        path = loaded.dirs.get(row.run_id, loaded.results / "runs" / row.run_id) / "per_case.csv"
        if path not in cache:
            cache[path] = read_per_case(path, row.metric)
        return cache[path]

    stats: dict[tuple[str, Column], CellStats] = defaultdict(CellStats)
    few: list[tuple[int, str]] = []  # (patients, column) of intervals too small to trust
    if grid.cell_mode == "ci":
        for key, rows in runs.items():
            if len(rows) > 1:
                metric = bootstrap_metric(rows[0].metric, key[1].label)
                seeds = [SeedPredictions(p.y_true, p.scores, p.groups) for p in map(predictions, rows)]
                result = seed_averaged_interval(metric, seeds, n_resamples=n_resamples, seed=BOOTSTRAP_SEED)
                stats[key].interval = (result["low"], result["high"])
                n_groups = len(set().union(*(set(s.groups.tolist()) for s in seeds)))
            else:  # the record's own interval
                record = loaded.records[rows[0].run_id]
                n_groups = ((record.get("intervals") or {}).get(record["primary_metric"]) or {}).get("n_groups")
            if isinstance(n_groups, int) and n_groups < MIN_INTERVAL_PATIENTS:
                few.append((n_groups, key[1].label))

    ref = _resolve_reference(reference, grid)
    compared: list[tuple[str, Column]] = []
    untested: list[int] = []
    if ref is not None:
        for column in grid.columns:
            ref_rows = {r.seed: r for r in runs.get((ref, column), [])}
            for method in grid.methods:
                rows = runs.get((method, column))
                if method == ref or not rows or not ref_rows:
                    continue
                entry = stats[(method, column)]
                shared = [r for r in rows if r.seed in ref_rows]
                entry.shared_seeds = [int(r.seed) for r in shared]
                if not shared:
                    entry.reason = f"no seed in common with {ref}"
                    continue
                metric = bootstrap_metric(shared[0].metric, column.label)
                pairs = [PairedSeed(*align(predictions(ref_rows[r.seed]), predictions(r))) for r in shared]
                try:
                    result = paired_test(metric, pairs, n_permutations=n_permutations, seed=BOOTSTRAP_SEED)
                except ValueError as exc:  # NaN predictions: the runs are broken, say which
                    files = " / ".join(str(predictions(r).path) for r in (ref_rows[shared[0].seed], shared[0]))
                    raise UserError(f"{files}: {exc}") from None
                entry.diff, entry.n_patients = result["diff"], result["n_patients"]
                entry.n_discordant, entry.test_method = result["n_discordant"], result["method"]
                if result["n_discordant"] < min_discordant(alpha):
                    entry.reason = too_few_discordant(result["n_discordant"], alpha)
                    untested.append(result["n_discordant"])
                    continue
                entry.p_raw = result["p"]
                compared.append((method, column))
    adjusted = holm([stats[key].p_raw for key in compared])
    for key, p in zip(compared, adjusted):
        stats[key].p_holm = p
        stats[key].significant = p <= alpha
    note = None
    if ref is not None and compared:
        name = "SimCroP" if ref == "simcrop" else ref
        seeds = max(len(stats[key].shared_seeds) for key in compared)
        note = (
            f"† significantly different from {name} ({_test_text(n_permutations, alpha)}, "
            f"over the {len(compared)} comparisons in this table"
            + ("; per-patient differences averaged over the shared seeds" if seeds > 1 else "")
            + ")."
        )
    if ref is not None and untested:
        note = " ".join(
            filter(
                None,
                [
                    note,
                    (
                        f"{len(untested)} cell(s) not tested against {ref}: the two methods differ on "
                        f"{max(untested)} or fewer patients, too few for any paired test to reach "
                        f"α={alpha:g} (it needs {min_discordant(alpha)})."
                    ),
                ],
            )
        )
    if few:
        columns = sorted({label for _, label in few})
        note = " ".join(
            filter(
                None,
                [
                    note,
                    f"Intervals of {len(few)} cell(s) ({', '.join(columns)}) rest on {_span(n for n, _ in few)} "
                    f"patients, fewer than {MIN_INTERVAL_PATIENTS}: a percentile bootstrap that small "
                    "undercovers; read them as rough.",
                ],
            )
        )
    return Stats(dict(stats), ref, alpha, n_resamples, n_permutations, len(compared), note, runs)


def _span(values) -> str:
    values = sorted(values)
    return str(values[0]) if values[0] == values[-1] else f"{values[0]}–{values[-1]}"


def too_few_discordant(n: int, alpha: float) -> str:
    from simcrop_bench.stats.permutation import min_discordant

    return (
        f"the methods differ on {n} patient(s): fewer than the {min_discordant(alpha)} "
        f"a paired test needs to reach α={alpha:g}"
    )


def _test_text(n_permutations: int, alpha: float) -> str:
    return (
        "paired permutation test swapping the two methods' predictions within patients, exact or "
        f"B={n_permutations} random swaps, Holm-corrected, p ≤ α={alpha:g}"
    )


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def provenance(loaded: Loaded, grid: Grid, stats: Stats) -> dict:
    """The ``--explain`` sidecar: every cell with the run records behind it and its test result."""
    from simcrop_bench.stats.significance import P_RULE, TEST_NAME

    cells = []
    for (method, column), found in sorted(grid.cells.items(), key=lambda kv: (kv[0][1].label, kv[0][0])):
        entries = []
        for row in stats.runs.get((method, column), []):
            record = loaded.records[row.run_id]
            folder = loaded.dirs.get(row.run_id, loaded.results / "runs" / row.run_id)
            prov = record.get("provenance") or {}
            entries.append(
                {
                    "run_id": row.run_id,
                    "record": str(folder / "record.json"),
                    "seed": int(row.seed),
                    "value": _clean(row.value),
                    "config_hash": record.get("config_hash"),
                    "cell_hash": record.get("cell_hash"),
                    "git_commit": prov.get("git_commit"),
                    "git_dirty": prov.get("git_dirty"),
                    "profile": row.profile,
                    "protocol": row.protocol,
                    "created_utc": record.get("created_utc"),
                }
            )
        extra = stats.cells.get((method, column))
        significance = None
        if stats.reference is not None and method != stats.reference and extra is not None:
            significance = {
                "reference": stats.reference,
                "p_raw": _clean(extra.p_raw),
                "p_holm": _clean(extra.p_holm),
                "significant": extra.significant,
                "diff": _clean(extra.diff),
                "shared_seeds": extra.shared_seeds,
                "n_patients": extra.n_patients,
                "n_discordant": extra.n_discordant,
                "test_method": extra.test_method,
                "reason": extra.reason,
            }
        cells.append(
            {
                "method": method,
                "task": column.task,
                "fraction": column.fraction,
                "split": column.split,
                "column": column.label,
                "mean": _clean(found.mean),
                "std": _clean(found.std),
                "n_seeds": found.n_seeds,
                "ci_low": _clean(found.ci_low),
                "ci_high": _clean(found.ci_high),
                "rank": found.rank,
                "runs": entries,
                "significance": significance,
            }
        )
    return {
        "results": str(loaded.results),
        "layout": grid.layout,
        "cell": grid.cell_mode,
        "split_by": grid.split_by,
        "significance": None
        if stats.reference is None
        else {
            "reference": stats.reference,
            "test": TEST_NAME,
            "rule": P_RULE,
            "two_sided": True,
            "n_permutations": stats.n_permutations,
            "permutation_seed": BOOTSTRAP_SEED,
            "alpha": stats.alpha,
            "cutoff": "p_holm <= alpha",
            "correction": "holm",
            "family": "all comparisons in this table",
            "family_size": stats.family_size,
        },
        "cells": cells,
        "reference_rows": [
            {"label": label, "column": column.label, "value": _clean(c.mean), "std": _clean(c.std)}
            for label, row in grid.reference_rows
            for column, c in row.items()
        ],
    }
