"""Paper tables: methods × (task, fraction) grids with best / second-best marked.

Input is the aggregated leaderboard (:func:`simcrop_bench.leaderboard.aggregate`).
Each table cell must come from exactly one aggregated row, and every column must
compare like with like (one profile, protocol, data kind and metric); otherwise
a :class:`UserError` asks the user to filter, because a paper table that quietly
mixes demo and full runs, or synthetic and real data, is worse than no table.

Ranking rule: values are compared after rounding to the printed ``digits`` (so
two cells that read the same are tied), ties share a rank, and ranks follow
competition ranking (1, 1, 3): when two methods tie for best both are bold and
nobody is second, so the underline never marks a third-placed value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from simcrop_bench.errors import UserError
from simcrop_bench.leaderboard import (
    escape_latex,
    escape_markdown,
    format_fraction,
    format_mean_std,
    markdown_table,
)

if TYPE_CHECKING:
    import pandas as pd

SYNTHETIC_NOTE = "Note: synthetic data; numbers are not comparable to published results."

# Fields that may differ between aggregated rows of one (method, task, fraction).
_CELL_IDENTITY = ["profile", "protocol", "synthetic", "cell_hash"]
# Fields that must agree across all methods in one column to make it comparable.
_COLUMN_UNIFORM = ["profile", "protocol", "synthetic", "metric", "higher_is_better"]
_FILTER_HINT = "filter the runs (--profile / --protocol) so each cell has one result"


@dataclass(frozen=True)
class _Cell:
    mean: float
    std: float
    n_seeds: int
    rank: int | None = None  # 1 = best; None when the mean is NaN


@dataclass(frozen=True)
class _Grid:
    methods: list[str]
    columns: list[tuple[str, float]]  # (task, fraction), task-major
    task_labels: dict[str, tuple[str, bool | None]]  # task -> (metric text, higher?)
    cells: dict[tuple[str, str, float], _Cell]  # (method, task, fraction) -> cell
    synthetic: bool


def paper_table(
    agg: pd.DataFrame,
    *,
    fmt: Literal["latex", "md"],
    caption: str | None = None,
    digits: int = 3,
    method_order: Sequence[str] | None = None,
) -> str:
    """Render ``agg`` as a paper table in LaTeX (booktabs) or Markdown.

    Rows are methods (``method_order`` first, the rest alphabetically), columns
    are task × fraction under a two-level header. ``caption`` is plain text and
    is escaped. Raises :class:`UserError` for ambiguous cells or mixed columns.
    """
    if fmt not in ("latex", "md"):
        raise UserError(f"unknown table format {fmt!r}; use 'latex' or 'md'")
    if agg.empty:
        raise UserError("no results to tabulate (no runs match the filters)")
    _check_one_row_per_cell(agg)
    _check_columns_comparable(agg)
    grid = _build_grid(agg, digits, method_order)
    render = _render_latex if fmt == "latex" else _render_markdown
    return render(grid, caption, digits)


# ---------------------------------------------------------------------------- checks


def _check_one_row_per_cell(agg: pd.DataFrame) -> None:
    for (method, task, fraction), rows in agg.groupby(["method", "task", "fraction"], sort=True):
        if len(rows) < 2:
            continue
        differing = [
            f"{field} ({', '.join(sorted(str(v) for v in rows[field].unique()))})"
            for field in _CELL_IDENTITY if rows[field].nunique(dropna=False) > 1
        ]
        detail = "; ".join(differing) or "identical keys"
        hint = _FILTER_HINT
        if differing and all(d.startswith("cell_hash") for d in differing):
            hint += " or move runs of the outdated config out of results/runs"
        raise UserError(
            f"ambiguous cell method={method!r} task={task!r} fraction={format_fraction(fraction)}: "
            f"{len(rows)} aggregated results differ in {detail}; {hint}"
        )


def _check_columns_comparable(agg: pd.DataFrame) -> None:
    for (task, fraction), rows in agg.groupby(["task", "fraction"], sort=True):
        for field in _COLUMN_UNIFORM:
            values = rows[field].unique()
            if len(values) > 1:
                shown = ", ".join(sorted(str(v) for v in values))
                raise UserError(
                    f"column task={task!r} fraction={format_fraction(fraction)} mixes "
                    f"{field} values ({shown}) across methods; {_FILTER_HINT}"
                )


# ------------------------------------------------------------------------------ grid


def _build_grid(agg: pd.DataFrame, digits: int, method_order: Sequence[str] | None) -> _Grid:
    present = set(agg["method"])
    first = [m for m in (method_order or []) if m in present]
    methods = first + sorted(present - set(first))
    columns = sorted({(t, f) for t, f in zip(agg["task"], agg["fraction"])},
                     key=lambda tf: (tf[0], float(tf[1])))

    task_labels: dict[str, tuple[str, bool | None]] = {}
    for task, rows in agg.groupby("task", sort=True):
        metrics = sorted(set(rows["metric"]))
        directions = set(rows["higher_is_better"])
        higher = directions.pop() if len(directions) == 1 else None
        task_labels[task] = (", ".join(metrics), higher)

    cells: dict[tuple[str, str, float], _Cell] = {}
    for (task, fraction), rows in agg.groupby(["task", "fraction"], sort=False):
        higher = bool(rows["higher_is_better"].iloc[0])
        ranks = _competition_ranks(list(rows["mean"]), higher, digits)
        for row, rank in zip(rows.itertuples(index=False), ranks):
            cells[(row.method, task, fraction)] = _Cell(
                float(row.mean), float(row.std), int(row.n_seeds), rank)
    return _Grid(methods, columns, task_labels, cells, bool(agg["synthetic"].any()))


def _competition_ranks(means: list[float], higher_is_better: bool, digits: int) -> list[int | None]:
    """Rank 1 = best; equal printed values share a rank; NaN gets no rank."""
    def key(value: float) -> float:
        rounded = round(value, digits)
        return -rounded if higher_is_better else rounded

    finite = [key(m) for m in means if math.isfinite(m)]
    return [1 + sum(other < key(m) for other in finite) if math.isfinite(m) else None
            for m in means]


def _column_groups(grid: _Grid) -> list[tuple[str, list[float]]]:
    """Consecutive columns per task: [(task, [fraction, ...]), ...]."""
    groups: list[tuple[str, list[float]]] = []
    for task, fraction in grid.columns:
        if groups and groups[-1][0] == task:
            groups[-1][1].append(fraction)
        else:
            groups.append((task, [fraction]))
    return groups


def _caption_text(grid: _Grid, caption: str | None) -> str | None:
    caption = (caption or "").strip()
    if caption and grid.synthetic and not caption.endswith((".", "!", "?")):
        caption += "."  # the note is a sentence of its own
    parts = [p for p in (caption, SYNTHETIC_NOTE if grid.synthetic else None) if p]
    return " ".join(parts) or None


# ------------------------------------------------------------------------- renderers


def _render_latex(grid: _Grid, caption: str | None, digits: int) -> str:
    def task_header(task: str) -> str:
        metric, higher = grid.task_labels[task]
        arrow = {True: r" $\uparrow$", False: r" $\downarrow$", None: ""}[higher]
        return f"{escape_latex(task)} ({escape_latex(metric)}{arrow})"

    def cell(method: str, task: str, fraction: float) -> str:
        found = grid.cells.get((method, task, fraction))
        if found is None:
            return "--"
        text = format_mean_std(found.mean, found.std, digits, pm=r"$\pm$")
        if found.rank == 1:
            return rf"\textbf{{{text}}}"
        if found.rank == 2:
            return rf"\underline{{{text}}}"
        return text

    groups = _column_groups(grid)
    top, rules, col = ["Method"], [], 2
    for task, fractions in groups:
        top.append(rf"\multicolumn{{{len(fractions)}}}{{c}}{{{task_header(task)}}}")
        rules.append(rf"\cmidrule(lr){{{col}-{col + len(fractions) - 1}}}")
        col += len(fractions)
    second = [""] + [escape_latex(format_fraction(f)) for _, fs in groups for f in fs]

    lines = [r"\begin{table}[t]", r"\centering"]
    text = _caption_text(grid, caption)
    if text:
        lines.append(rf"\caption{{{escape_latex(text)}}}")
    lines += [
        rf"\begin{{tabular}}{{l{'c' * len(grid.columns)}}}",
        r"\toprule",
        " & ".join(top) + r" \\",
        " ".join(rules),
        " & ".join(second) + r" \\",
        r"\midrule",
    ]
    for method in grid.methods:
        cells = [cell(method, t, f) for t, f in grid.columns]
        lines.append(" & ".join([escape_latex(method), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _render_markdown(grid: _Grid, caption: str | None, digits: int) -> str:
    def task_header(task: str) -> str:
        metric, higher = grid.task_labels[task]
        arrow = {True: " ↑", False: " ↓", None: ""}[higher]
        return escape_markdown(f"{task} ({metric}{arrow})")

    def cell(method: str, task: str, fraction: float) -> str:
        found = grid.cells.get((method, task, fraction))
        if found is None:
            return "–"
        text = format_mean_std(found.mean, found.std, digits)
        if found.rank == 1:
            return f"**{text}**"
        if found.rank == 2:
            return f"<u>{text}</u>"
        return text

    # Markdown has one header row: it carries the task (first column of each
    # group, like a \multicolumn), and the first body row carries the fractions.
    header = ["Method"]
    for task, fractions in _column_groups(grid):
        header += [task_header(task)] + [""] * (len(fractions) - 1)
    rows = [[""] + [format_fraction(f) for _, f in grid.columns]]
    rows += [[escape_markdown(m), *(cell(m, t, f) for t, f in grid.columns)]
             for m in grid.methods]
    table = markdown_table(header, rows, ["l"] + ["r"] * len(grid.columns))
    text = _caption_text(grid, caption)
    return f"{text}\n\n{table}" if text else table
