"""Paper tables: methods × (task, fraction) grids with best / second-best marked.

Two entry points:

* :func:`paper_table` renders an aggregated leaderboard frame
  (:func:`simcrop_bench.reporting.leaderboard.aggregate`) — no access to the runs' predictions, so no
  significance test and no seed-averaged intervals;
* :func:`build_table` / :func:`render_table` read a results folder, and add the paired
  significance test against a reference method (:mod:`simcrop_bench.stats.significance`), patient
  bootstrap intervals over seeds (``cell="ci"``), published reference rows
  (:mod:`simcrop_bench.reporting.tables.reference_rows`) and a provenance sidecar (:meth:`PaperTable.explain`).

Each table cell must come from exactly one aggregated row, and every column must compare like
with like (one profile, protocol, data kind and metric); otherwise a :class:`UserError` asks the
user to filter, or to show the differing values side by side with ``split_by`` (explicitly
labelled sub-columns), because a paper table that quietly mixes demo and full runs, synthetic and
real data, or two protocols, is worse than no table.

Ranking rule: values are compared after rounding to the printed ``digits`` (so two cells that read
the same are tied), ties share a rank, and ranks follow competition ranking (1, 1, 3): when two
methods tie for best both are bold and nobody is second, so the underline never marks a
third-placed value. Reference rows are never ranked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from simcrop_bench.errors import UserError
from simcrop_bench.reporting.leaderboard import format_fraction
from simcrop_bench.reporting.tables.layouts import (
    CLS_TASKS,
    SEG_TASKS,
    check_layout,
    is_simcrop,
    layout_tasks,
    row_groups,
    task_header,
)
from simcrop_bench.reporting.tables.model import (
    CELL_MODES,
    SINGLE_SEED_MARK,
    SPLIT_FIELDS,
    Cell,
    Column,
    Grid,
    split_value,
)
from simcrop_bench.reporting.tables.reference_rows import ReferenceRow, reference_cells

if TYPE_CHECKING:
    import pandas as pd

    from simcrop_bench.reporting.tables.cells import CellStats

# Fields that may differ between aggregated rows of one (method, task, fraction).
_CELL_IDENTITY = ["profile", "protocol", "synthetic", "cell_hash"]
# Fields that must agree across all methods in one column to make it comparable.
_COLUMN_UNIFORM = ["profile", "protocol", "synthetic", "metric", "higher_is_better"]
_FILTER_HINT = "filter the runs (--profile / --protocol) so each cell has one result"
_SPLIT_OPTION = {"profile": "profile", "protocol": "protocol", "synthetic": "data"}


# ---------------------------------------------------------------------------- checks


def check_options(cell: str, split_by: str | None) -> None:
    if cell not in CELL_MODES:
        raise UserError(f"unknown cell format {cell!r}; use 'std' (mean ± std) or 'ci' (mean [low, high])")
    if split_by is not None and split_by not in SPLIT_FIELDS:
        raise UserError(f"unknown --split-by {split_by!r}; use one of {', '.join(SPLIT_FIELDS)}")


def _split_hint(fields: Sequence[str]) -> str:
    options = [_SPLIT_OPTION[f] for f in fields if f in _SPLIT_OPTION]
    return f", or pass --split-by {options[0]} to show them as separately labelled columns" if options else ""


def _check_one_row_per_cell(agg: pd.DataFrame, split_field: str | None) -> None:
    keys = ["method", "task", "fraction"] + ([split_field] if split_field else [])
    for key, rows in agg.groupby(keys, sort=True):
        if len(rows) < 2:
            continue
        method, task, fraction = key[:3]
        fields = [f for f in _CELL_IDENTITY if f != split_field and rows[f].nunique(dropna=False) > 1]
        differing = [f"{f} ({', '.join(sorted(str(v) for v in rows[f].unique()))})" for f in fields]
        detail = "; ".join(differing) or "identical keys"
        hint = _FILTER_HINT
        if differing and all(d.startswith("cell_hash") for d in differing):
            hint += " or move runs of the outdated config out of results/runs"
        raise UserError(
            f"ambiguous cell method={method!r} task={task!r} fraction={format_fraction(fraction)}: "
            f"{len(rows)} aggregated results differ in {detail}; {hint}{_split_hint(fields)}"
        )


def _check_columns_comparable(agg: pd.DataFrame, split_field: str | None) -> None:
    keys = ["task", "fraction"] + ([split_field] if split_field else [])
    for key, rows in agg.groupby(keys, sort=True):
        task, fraction = key[:2]
        for name in _COLUMN_UNIFORM:
            values = rows[name].unique()
            if name == split_field or len(values) < 2:
                continue
            shown = ", ".join(sorted(str(v) for v in values))
            where = f"column task={task!r} fraction={format_fraction(fraction)}"
            if name == "protocol":
                raise UserError(
                    f"{where} mixes protocols {' and '.join(sorted(str(v) for v in values))} across "
                    f"methods ({_methods_by(rows, name)}); numbers from different protocols are not "
                    "comparable: rerun the cells with one protocol (a labelled variant such as "
                    "'+lp-cached' comes from --set task.probe=cached), or pass --split-by protocol "
                    "to show each protocol as its own labelled column"
                )
            raise UserError(
                f"{where} mixes {name} values ({shown}) across methods; {_FILTER_HINT}{_split_hint([name])}"
            )


def _methods_by(rows: pd.DataFrame, name: str) -> str:
    return "; ".join(f"{value}: {', '.join(sorted(group['method']))}" for value, group in rows.groupby(name, sort=True))


# ------------------------------------------------------------------------------ grid


def select_layout_rows(frame: pd.DataFrame, layout: str) -> pd.DataFrame:
    """Keep the tasks (and, for cls/seg, drop the SimCroP ablations) of ``layout``."""
    tasks = layout_tasks(layout)
    if tasks is not None:
        frame = frame[frame["task"].isin(tasks) & ~frame["method"].map(lambda m: is_simcrop(m) and m != "simcrop")]
        if frame.empty:
            raise UserError(f"no results for the {layout} layout (tasks {', '.join(tasks)})")
    if layout == "ablation":
        frame = frame[frame["method"].map(is_simcrop)]
        # Only the (task, fraction) columns where some ablation ran: the full model alone compares nothing.
        ablated = set(zip(*(frame.loc[frame["method"] != "simcrop", c] for c in ("task", "fraction"))))
        frame = frame[[cell in ablated for cell in zip(frame["task"], frame["fraction"])]]
        if frame.empty:
            raise UserError(
                "no ablation results: run a SimCroP ablation (simcrop-noalign, simcrop-k16, …) "
                "on a task and fraction where simcrop ran"
            )
    return frame


def _task_order(layout: str, tasks: set[str]) -> list[str]:
    if layout == "free":
        return sorted(tasks)
    known = [t for t in (*CLS_TASKS, *SEG_TASKS) if t in tasks]
    return known + sorted(tasks - set(known))


def make_grid(
    agg: pd.DataFrame,
    *,
    digits: int = 3,
    method_order: Sequence[str] | None = None,
    layout: str = "free",
    cell: str = "std",
    split_by: str | None = None,
    reference_rows: Sequence[ReferenceRow] = (),
    kinds: Mapping[str, str] | None = None,
) -> Grid:
    """Check ``agg`` and arrange it for ``layout`` (:func:`add_stats` adds intervals and p-values)."""
    check_layout(layout)
    check_options(cell, split_by)
    if agg.empty:
        raise UserError("no results to tabulate (no runs match the filters)")
    agg = select_layout_rows(agg, layout)
    split_field = SPLIT_FIELDS[split_by] if split_by else None
    _check_one_row_per_cell(agg, split_field)
    _check_columns_comparable(agg, split_field)

    if kinds is None and layout in ("cls", "seg"):
        from simcrop_bench.reporting.tables.layouts import registry_kinds

        kinds = registry_kinds(set(agg["method"]))
    groups = row_groups(layout, list(dict.fromkeys(agg["method"])), kinds or {}, method_order)
    order = {t: i for i, t in enumerate(_task_order(layout, set(agg["task"])))}
    columns = sorted(
        {Column(r.task, float(r.fraction), split_value(r, split_by)) for r in agg.itertuples()},
        key=lambda c: (order[c.task], c.fraction, c.split or ""),
    )

    task_labels: dict[str, tuple[str, str, bool | None]] = {}
    for task, rows in agg.groupby("task", sort=True):
        directions = set(rows["higher_is_better"])
        higher = directions.pop() if len(directions) == 1 else None
        task_labels[task] = (task_header(layout, task), ", ".join(sorted(set(rows["metric"]))), higher)

    cells: dict[tuple[str, Column], Cell] = {}
    for row in agg.itertuples(index=False):
        column = Column(row.task, float(row.fraction), split_value(row, split_by))
        cells[(row.method, column)] = Cell(
            float(row.mean), float(row.std), int(row.n_seeds), float(row.ci_low), float(row.ci_high)
        )
    for column in columns:
        # Only cells resting on as many seeds as the column's best-supported cell are ranked: a 1-seed
        # 1.000 is not "better" than 0.857 ± 0.124 over 3 seeds. Fewer than two such cells: no marks.
        in_column = [(m, c) for (m, col), c in cells.items() if col == column]
        most = max(c.n_seeds for _, c in in_column)
        comparable = [(m, c) for m, c in in_column if c.n_seeds == most and math.isfinite(c.mean)]
        if len(comparable) < 2:
            continue
        higher = task_labels[column.task][2] is not False
        for (_, found), rank in zip(comparable, _competition_ranks([c.mean for _, c in comparable], higher, digits)):
            found.rank = rank

    grid = Grid(layout, groups, columns, task_labels, cells, bool(agg["synthetic"].any()), cell, split_by)
    grid.reference_rows = reference_cells(reference_rows, columns, task_labels)
    if grid.reference_rows:
        grid.notes.append(
            "Italic rows are published numbers (citation and protocol in the row label), "
            "not re-run here; they are not ranked or tested."
        )
    if split_by:
        grid.notes.append(f"Columns are split by {split_by}: each sub-column names its {split_by}.")
    note = _seed_note(cells, columns)
    if note:
        grid.notes.append(note)
    return grid


def _seed_note(cells: Mapping[tuple[str, Column], Cell], columns: Sequence[Column]) -> str | None:
    """Caption text for the seed marks: § (one seed), and the ranking rule where a column mixes seed counts."""
    sentences = []
    if any(c.n_seeds == 1 for c in cells.values()):
        sentences.append(f"{SINGLE_SEED_MARK} one seed (n=1): no spread over seeds.")
    mixed = [c for c in columns if len({found.n_seeds for (_, col), found in cells.items() if col == c}) > 1]
    if mixed:
        sentences.append(
            "Bold (best) and underline (second) compare only the cells with their column's largest n, "
            "and only where there are at least two."
        )
    return " ".join(sentences) or None


def add_stats(grid: Grid, stats: Mapping[tuple[str, Column], CellStats]) -> None:
    """Seed-averaged intervals (``--cell ci``) and significance onto the grid's cells (ranks do not change)."""
    for key, extra in stats.items():
        found = grid.cells.get(key)
        if found is None:
            continue
        if extra.interval is not None:
            found.ci_low, found.ci_high = extra.interval
        found.p_raw, found.p_holm, found.significant = extra.p_raw, extra.p_holm, extra.significant


def _competition_ranks(means: list[float], higher_is_better: bool, digits: int) -> list[int | None]:
    """Rank 1 = best; equal printed values share a rank; NaN gets no rank."""

    def key(value: float) -> float:
        rounded = round(value, digits)
        return -rounded if higher_is_better else rounded

    finite = [key(m) for m in means if math.isfinite(m)]
    return [1 + sum(other < key(m) for other in finite) if math.isfinite(m) else None for m in means]
