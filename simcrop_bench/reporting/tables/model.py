"""The data model of a paper table: columns, cells, the grid, and text derived from them alone."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from simcrop_bench.reporting.leaderboard import format_fraction
from simcrop_bench.reporting.tables.layouts import RowGroup

SYNTHETIC_NOTE = "Note: synthetic data; numbers are not comparable to published results."
FORMATS = ("latex", "md", "csv", "html")
CELL_MODES = ("std", "ci")
SINGLE_SEED_MARK = "§"  # after a cell resting on one seed
SPLIT_FIELDS = {"protocol": "protocol", "profile": "profile", "data": "synthetic"}


@dataclass(frozen=True)
class Column:
    task: str
    fraction: float
    split: str | None = None  # the --split-by value of this sub-column, e.g. "heldout+lp-cached"

    @property
    def label(self) -> str:
        text = f"{self.task} {format_fraction(self.fraction)}"
        return f"{text} [{self.split}]" if self.split is not None else text


@dataclass
class Cell:
    mean: float
    std: float
    n_seeds: int
    ci_low: float = math.nan
    ci_high: float = math.nan
    rank: int | None = None  # 1 = best; None when the mean is NaN or for reference rows
    p_raw: float | None = None
    p_holm: float | None = None
    significant: bool = False


@dataclass
class Grid:
    layout: str
    groups: list[RowGroup]
    columns: list[Column]
    task_labels: dict[str, tuple[str, str, bool | None]]  # task -> (title, metric text, higher?)
    cells: dict[tuple[str, Column], Cell]
    synthetic: bool
    cell_mode: str = "std"
    split_by: str | None = None
    # (row label, {column: cell}) of published numbers; never ranked or tested.
    reference_rows: list[tuple[str, dict[Column, Cell]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # caption sentences after the user's caption

    @property
    def methods(self) -> list[str]:
        return [m for g in self.groups for m in g.methods]


def split_value(row, split_by: str | None) -> str | None:
    if split_by is None:
        return None
    value = getattr(row, SPLIT_FIELDS[split_by])
    return ("synthetic" if value else "real") if split_by == "data" else str(value)


def column_groups(grid: Grid) -> list[tuple[str, list[Column]]]:
    """Consecutive columns per task: [(task, [column, ...]), ...]."""
    groups: list[tuple[str, list[Column]]] = []
    for column in grid.columns:
        if groups and groups[-1][0] == column.task:
            groups[-1][1].append(column)
        else:
            groups.append((column.task, [column]))
    return groups


def caption_text(grid: Grid, caption: str | None) -> str | None:
    sentences = [(caption or "").strip(), *grid.notes, SYNTHETIC_NOTE if grid.synthetic else ""]
    sentences = [s for s in sentences if s]
    if sentences and not sentences[0].endswith((".", "!", "?")) and len(sentences) > 1:
        sentences[0] += "."  # the notes are sentences of their own
    return " ".join(sentences) or None
