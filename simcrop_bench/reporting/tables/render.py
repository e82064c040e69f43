"""Renderers of a paper-table :class:`~simcrop_bench.reporting.tables.model.Grid`: LaTeX, Markdown, CSV, HTML.

Marks, the same in every human-readable format: best bold, second underlined (among the cells with
the column's largest number of seeds), the number of seeds n after every value and § after a
single-seed one, † after a cell whose Holm-adjusted p against the reference is ≤ α, published
reference rows in italics below a rule under a "Reported in the literature" label row. CSV is
long-format, full precision, for further analysis: one line per shown cell with its rank, p-values
and significance.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Callable
from dataclasses import dataclass

from simcrop_bench.reporting.leaderboard import (
    escape_latex,
    escape_markdown,
    format_fraction,
    format_mean_std,
    markdown_table,
)
from simcrop_bench.reporting.tables.layouts import metric_header
from simcrop_bench.reporting.tables.model import SINGLE_SEED_MARK, Cell, Column, Grid, column_groups

REPORTED_LABEL = "Reported in the literature"
# Characters of captions and labels that pdflatex cannot typeset as text.
_LATEX_SYMBOLS = {
    "†": r"$^\dagger$",
    "α": r"$\alpha$",
    "·": r"$\cdot$",
    "±": r"$\pm$",
    "−": "-",
    "≤": r"$\le$",
    "≥": r"$\ge$",
    "–": "--",
    "—": "---",
    "§": r"\S{}",
}


def latex_text(text: str) -> str:
    """Escape LaTeX specials, then typeset the symbols captions use (†, α, ±, …) in math mode."""
    return "".join(_LATEX_SYMBOLS.get(ch, ch) for ch in escape_latex(text))


@dataclass(frozen=True)
class Marks:
    """How one format writes a cell's marks: each template has one ``{}`` for the text."""

    missing: str
    italic: str
    best: str
    second: str
    dagger: str
    seeds: str  # the number of seeds, after the value
    single: str  # the single-seed mark
    escape: Callable[[str], str] = str


LATEX_MARKS = Marks(
    "--", r"\textit{{{}}}", r"\textbf{{{}}}", r"\underline{{{}}}", r"$^\dagger$", r"$_{{n={}}}$", r"\S{}"
)
MARKDOWN_MARKS = Marks("–", "*{}*", "**{}**", "<u>{}</u>", "†", " (n={})", SINGLE_SEED_MARK)
HTML_MARKS = Marks(
    "–",
    "<em>{}</em>",
    "<strong>{}</strong>",
    "<u>{}</u>",
    '<sup title="significant vs reference">†</sup>',
    '<sub class="n" title="seeds">n={}</sub>',
    f'<span title="one seed: no spread over seeds">{SINGLE_SEED_MARK}</span>',
    html.escape,
)


def marked_cell(found: Cell | None, grid: Grid, digits: int, marks: Marks, italic: bool = False, pm: str = "±") -> str:
    """A cell's text with its marks: italic (reported rows, never ranked), best, second, †."""
    if found is None:
        return marks.missing
    text = marks.escape(cell_text(found, grid.cell_mode, digits, pm=pm))
    if italic:
        return marks.italic.format(text)
    if found.rank == 1:
        text = marks.best.format(text)
    elif found.rank == 2:
        text = marks.second.format(text)
    text += marks.seeds.format(found.n_seeds) + (marks.single if found.n_seeds == 1 else "")
    return text + (marks.dagger if found.significant else "")


def cell_text(found: Cell, mode: str, digits: int, pm: str = "±") -> str:
    """``mean ± std`` (one seed: the mean), or ``mean [low, high]`` with ``mode="ci"``."""
    if mode == "ci":
        if not math.isfinite(found.mean):
            return "nan"
        text = f"{found.mean:.{digits}f}"
        if math.isfinite(found.ci_low) and math.isfinite(found.ci_high):
            text += f" [{found.ci_low:.{digits}f}, {found.ci_high:.{digits}f}]"
        return text
    return format_mean_std(found.mean, found.std, digits, pm=pm)


def _fraction_label(column: Column) -> str:
    text = format_fraction(column.fraction)
    return f"{text} ({column.split})" if column.split is not None else text


def _metric_text(metric: str) -> str:
    """``auc`` → ``AUROC``: the display names figures share (:func:`layouts.metric_header`)."""
    return ", ".join(metric_header(m) for m in metric.split(", "))


def _arrow(higher: bool | None, up: str, down: str) -> str:
    return {True: up, False: down, None: ""}[higher]


# ---------------------------------------------------------------------------- LaTeX


def render_latex(grid: Grid, caption: str | None, digits: int) -> str:
    def task_header(task: str) -> str:
        title, metric, higher = grid.task_labels[task]
        arrow = _arrow(higher, r" $\uparrow$", r" $\downarrow$")
        return f"{escape_latex(title)} ({escape_latex(_metric_text(metric))}{arrow})"

    def cell(found: Cell | None, italic: bool = False) -> str:
        return marked_cell(found, grid, digits, LATEX_MARKS, italic, pm=r"$\pm$")

    width = 1 + len(grid.columns)
    groups = column_groups(grid)
    top, rules, col = ["Method"], [], 2
    for task, columns in groups:
        top.append(rf"\multicolumn{{{len(columns)}}}{{c}}{{{task_header(task)}}}")
        rules.append(rf"\cmidrule(lr){{{col}-{col + len(columns) - 1}}}")
        col += len(columns)
    second = [""] + [escape_latex(_fraction_label(c)) for c in grid.columns]

    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_text(caption)}}}")
    lines += [
        rf"\begin{{tabular}}{{l{'c' * len(grid.columns)}}}",
        r"\toprule",
        " & ".join(top) + r" \\",
        " ".join(rules),
        " & ".join(second) + r" \\",
        r"\midrule",
    ]
    for index, group in enumerate(grid.groups):
        if index:
            lines.append(r"\midrule")
        if group.label:
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textit{{{latex_text(group.label)}}}}} \\")
        for method in group.methods:
            cells = [cell(grid.cells.get((method, c))) for c in grid.columns]
            lines.append(" & ".join([escape_latex(method), *cells]) + r" \\")
    if grid.reference_rows:
        lines += [r"\midrule", rf"\multicolumn{{{width}}}{{l}}{{\textit{{{REPORTED_LABEL}}}}} \\"]
        for label, values in grid.reference_rows:
            cells = [cell(values.get(c), italic=True) for c in grid.columns]
            lines.append(" & ".join([rf"\textit{{{latex_text(label)}}}", *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- Markdown


def render_markdown(grid: Grid, caption: str | None, digits: int) -> str:
    def task_header(task: str) -> str:
        title, metric, higher = grid.task_labels[task]
        return escape_markdown(f"{title} ({_metric_text(metric)}{_arrow(higher, ' ↑', ' ↓')})")

    def cell(found: Cell | None, italic: bool = False) -> str:
        return marked_cell(found, grid, digits, MARKDOWN_MARKS, italic)

    # Markdown has one header row: it carries the task (first column of each
    # group, like a \multicolumn), and the first body row carries the fractions.
    header = ["Method"]
    for task, columns in column_groups(grid):
        header += [task_header(task)] + [""] * (len(columns) - 1)
    blank = [""] * len(grid.columns)
    rows = [[""] + [escape_markdown(_fraction_label(c)) for c in grid.columns]]
    for group in grid.groups:
        if group.label:
            rows.append([f"*{escape_markdown(group.label)}*", *blank])
        rows += [[escape_markdown(m), *(cell(grid.cells.get((m, c))) for c in grid.columns)] for m in group.methods]
    if grid.reference_rows:
        rows.append([f"*{REPORTED_LABEL}*", *blank])
        rows += [
            [f"*{escape_markdown(label)}*", *(cell(values.get(c), italic=True) for c in grid.columns)]
            for label, values in grid.reference_rows
        ]
    table = markdown_table(header, rows, ["l"] + ["r"] * len(grid.columns))
    return f"{caption}\n\n{table}" if caption else table


# ------------------------------------------------------------------------------ HTML


def render_html(grid: Grid, caption: str | None, digits: int) -> str:
    """An HTML ``<table>`` fragment (no page around it) with ``<caption>``, ``<strong>``, ``<u>``, †."""
    esc = html.escape

    def cell(found: Cell | None, italic: bool = False) -> str:
        return f"<td>{marked_cell(found, grid, digits, HTML_MARKS, italic)}</td>"

    width = 1 + len(grid.columns)
    lines = ['<table class="simcrop-table">']
    if caption:
        lines.append(f"<caption>{esc(caption)}</caption>")
    top = ['<th rowspan="2" scope="col">Method</th>']
    for task, columns in column_groups(grid):
        title, metric, higher = grid.task_labels[task]
        heading = esc(f"{title} ({_metric_text(metric)}{_arrow(higher, ' ↑', ' ↓')})")
        top.append(f'<th colspan="{len(columns)}" scope="colgroup">{heading}</th>')
    lines += [
        "<thead>",
        f"<tr>{''.join(top)}</tr>",
        "<tr>" + "".join(f'<th scope="col">{esc(_fraction_label(c))}</th>' for c in grid.columns) + "</tr>",
        "</thead>",
    ]
    for group in grid.groups:
        lines.append("<tbody>")
        if group.label:
            lines.append(f'<tr class="group"><th colspan="{width}" scope="rowgroup">{esc(group.label)}</th></tr>')
        for method in group.methods:
            cells = "".join(cell(grid.cells.get((method, c))) for c in grid.columns)
            lines.append(f'<tr><th scope="row">{esc(method)}</th>{cells}</tr>')
        lines.append("</tbody>")
    if grid.reference_rows:
        lines += [
            '<tbody class="reported">',
            f'<tr class="group"><th colspan="{width}" scope="rowgroup"><em>{REPORTED_LABEL}</em></th></tr>',
        ]
        for label, values in grid.reference_rows:
            cells = "".join(cell(values.get(c), italic=True) for c in grid.columns)
            lines.append(f'<tr class="reported"><th scope="row"><em>{esc(label)}</em></th>{cells}</tr>')
        lines.append("</tbody>")
    lines.append("</table>")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- CSV


CSV_COLUMNS = [
    "section",
    "method",
    "task",
    "fraction",
    "split",
    "metric",
    "higher_is_better",
    "mean",
    "std",
    "n_seeds",
    "ci_low",
    "ci_high",
    "rank",
    "p_raw",
    "p_holm",
    "significant",
    "synthetic",
]


def render_csv(grid: Grid, caption: str | None, digits: int) -> str:
    """Long format, one line per cell, full precision; reference rows have section "reported"."""

    def number(value) -> str:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(value)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    sections = [
        (g.label or "", [(m, {c: grid.cells.get((m, c)) for c in grid.columns}) for m in g.methods])
        for g in grid.groups
    ]
    sections.append(("reported", grid.reference_rows))
    for section, rows in sections:
        for method, values in rows:
            for column in grid.columns:
                found = values.get(column)
                if found is None:
                    continue
                _, metric, higher = grid.task_labels[column.task]
                writer.writerow(
                    [
                        section,
                        method,
                        column.task,
                        f"{column.fraction:g}",
                        column.split or "",
                        metric,
                        "" if higher is None else higher,
                        number(found.mean),
                        number(found.std),
                        found.n_seeds,
                        number(found.ci_low),
                        number(found.ci_high),
                        found.rank or "",
                        number(found.p_raw),
                        number(found.p_holm),
                        found.significant if section != "reported" else "",
                        grid.synthetic,
                    ]
                )
    return buffer.getvalue()


RENDERERS = {"latex": render_latex, "md": render_markdown, "csv": render_csv, "html": render_html}
