"""Paper tables from an aggregated frame (:func:`paper_table`) or a results folder (:func:`build_table`).

See :mod:`simcrop_bench.reporting.tables.grid` for the checks and the ranking rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from simcrop_bench.errors import UserError
from simcrop_bench.reporting.tables.grid import add_stats, check_options, make_grid, select_layout_rows
from simcrop_bench.reporting.tables.layouts import check_layout
from simcrop_bench.reporting.tables.model import FORMATS, Grid, caption_text
from simcrop_bench.reporting.tables.reference_rows import ReferenceRow

if TYPE_CHECKING:
    import pandas as pd


def paper_table(
    agg: pd.DataFrame,
    *,
    fmt: Literal["latex", "md", "csv", "html"],
    caption: str | None = None,
    digits: int = 3,
    **grid_options,
) -> str:
    """Render ``agg`` as a paper table in LaTeX (booktabs), Markdown, CSV or an HTML fragment.

    ``grid_options`` are those of :func:`make_grid` (``method_order``, ``layout``, ``cell``,
    ``split_by``, ``reference_rows``). Rows are methods (``free``: ``method_order`` first, the rest
    alphabetically; other layouts: grouped by family), columns are task × fraction under a
    two-level header. ``caption`` is plain text and is escaped. Raises :class:`UserError` for
    ambiguous cells or mixed columns.
    """
    return render_grid(make_grid(agg, digits=digits, **grid_options), fmt, caption, digits)


def render_grid(grid: Grid, fmt: str, caption: str | None, digits: int) -> str:
    from simcrop_bench.reporting.tables import render as table_render

    if fmt not in FORMATS:
        raise UserError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")
    return table_render.RENDERERS[fmt](grid, caption_text(grid, caption), digits)


# ------------------------------------------------------------------- from a results folder


@dataclass
class PaperTable:
    """A table built from a results folder: render it in any format, or explain its cells."""

    grid: Grid
    digits: int
    provenance: dict

    def render(self, fmt: str = "latex", caption: str | None = None) -> str:
        return render_grid(self.grid, fmt, caption, self.digits)

    def explain(self) -> dict:
        """The sidecar of ``table --explain``: per cell, its run records and significance."""
        return self.provenance


def build_table(
    results: Path | str,
    *,
    layout: str = "free",
    tasks: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    profile: str | None = None,
    protocol: str | None = None,
    cell: str = "std",
    reference: str | None = "auto",
    alpha: float = 0.05,
    n_resamples: int = 1000,
    n_permutations: int = 10_000,  # stats.permutation.DEFAULT_PERMUTATIONS
    reference_rows: Path | str | Sequence[ReferenceRow] | None = None,
    split_by: str | None = None,
    digits: int = 3,
    method_order: Sequence[str] | None = None,
    records: list[dict] | None = None,
) -> PaperTable:
    """Read ``results``, aggregate, test against ``reference`` and arrange a table.

    ``reference``: a method name, ``"auto"`` (``simcrop`` when it is in the table) or ``None`` /
    ``"none"`` (no test). ``reference_rows``: a CSV/YAML file or already loaded rows. ``records``:
    the records of ``results`` when the caller has read them already.
    """
    from simcrop_bench.reporting.leaderboard import aggregate
    from simcrop_bench.reporting.tables import cells as table_cells
    from simcrop_bench.reporting.tables.recipe_notes import recipe_note
    from simcrop_bench.reporting.tables.reference_rows import load_reference_rows

    check_layout(layout)
    check_options(cell, split_by)
    if not 0.0 < alpha < 1.0:
        raise UserError(f"--alpha must be in (0, 1), got {alpha}")
    if n_resamples < 1:
        raise UserError(f"the number of bootstrap resamples must be positive, got {n_resamples}")
    if n_permutations < 1:
        raise UserError(f"--permutations must be positive, got {n_permutations}")
    if isinstance(reference_rows, (str, Path)):
        reference_rows = load_reference_rows(Path(reference_rows))
    loaded = table_cells.load(
        Path(results), tasks=tasks, methods=methods, profile=profile, protocol=protocol, records=records
    )
    frame = select_layout_rows(loaded.frame, layout) if not loaded.frame.empty else loaded.frame
    agg = aggregate(frame)
    # make_grid checks the cells before any per-case file is read.
    grid = make_grid(
        agg,
        digits=digits,
        method_order=method_order,
        layout=layout,
        cell=cell,
        split_by=split_by,
        reference_rows=reference_rows or (),
        kinds=loaded.kinds,
    )
    _note_identical_lists(grid, loaded.records.values())
    stats = table_cells.cell_stats(
        loaded, frame, grid, reference=reference, alpha=alpha, n_resamples=n_resamples, n_permutations=n_permutations
    )
    add_stats(grid, stats.cells)
    if stats.note:
        grid.notes.insert(0, stats.note)
    deviation = recipe_note(loaded.records.values(), grid.methods)
    if deviation:
        grid.notes.append(deviation)
    return PaperTable(grid, digits, table_cells.provenance(loaded, grid, stats))


def _note_identical_lists(grid: Grid, records) -> None:
    """Say which columns of the table trained on the same list of cases (the same data amount shown twice)."""
    from simcrop_bench.reporting.leaderboard import format_fraction
    from simcrop_bench.reporting.tables.layouts import task_header
    from simcrop_bench.reporting.training_lists import identical_fractions

    shown = {(c.task, c.fraction) for c in grid.columns}
    for (task, _, protocol, _), groups in sorted(identical_fractions(records).items()):
        for group in groups:
            if sum((task, f) in shown for f in group) > 1:
                fractions = " and ".join(format_fraction(f) for f in group if (task, f) in shown)
                grid.notes.append(
                    f"{task_header(grid.layout, task)} {fractions} ({protocol}): identical training lists, "
                    "so these columns do not compare two amounts of training data."
                )


def render_table(results: Path | str, *, fmt: str = "html", caption: str | None = None, **options) -> str:
    """One call for reports: :func:`build_table` (same keyword options) rendered as ``fmt``."""
    return build_table(results, **options).render(fmt, caption)
