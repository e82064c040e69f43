"""Leaderboard: load run records, aggregate seeds into cells, render the result.

A *cell* is one comparable configuration: records that agree on task, method,
fraction, profile, protocol, synthetic and ``cell_hash`` (the resolved config
without the seed) are seeds of the same cell and are averaged together. Records
that differ in any of these are never mixed.

pandas and rich are imported inside functions so that importing this module
(the CLI does) stays cheap.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simcrop_bench.errors import UserError
from simcrop_bench.reporting.aggregate import (  # noqa: F401 (re-exported: the leaderboard's aggregation API)
    AGGREGATE_COLUMNS,
    CELL_KEYS,
    aggregate,
    cell_summaries,
    rank_cells,
)
from simcrop_bench.reporting.record_rows import (  # noqa: F401 (re-exported: the leaderboard's record API)
    FRAME_COLUMNS,
    SCHEMA_VERSION,
    frame_row,
    protocol_label,
    read_record,
    validate_record,
)

if TYPE_CHECKING:  # only for annotations; see the module docstring
    import pandas as pd
    from rich.table import Table

# --------------------------------------------------------------------------- loading


def load_records(results_dir: Path) -> list[dict]:
    """Read every ``runs/**/record.json`` under ``results_dir``, sorted by path.

    Files or folders whose names start with "." (atomic-write temporaries,
    in-progress staging dirs) are skipped. A malformed record raises
    :class:`UserError` naming the file, because a silently dropped run would
    change a leaderboard without anyone noticing.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results directory {results_dir} does not exist")
    runs_dir = results_dir / "runs"
    if not runs_dir.is_dir():
        return []
    records: list[dict] = []
    seen_run_ids: dict[str, Path] = {}
    for path in sorted(runs_dir.rglob("record.json")):
        if any(part.startswith(".") for part in path.relative_to(runs_dir).parts):
            continue
        record = read_record(path)
        earlier = seen_run_ids.setdefault(record["run_id"], path)
        if earlier != path:
            # A copied run directory would otherwise count one seed twice.
            raise UserError(f"{path}: run_id {record['run_id']!r} already used by {earlier}")
        records.append(record)
    return records


# ----------------------------------------------------------------------- aggregation


def records_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One row per record with the columns in :data:`FRAME_COLUMNS`."""
    import pandas as pd

    rows = [frame_row(r) for r in records]
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


def leaderboard(
    results_dir: Path,
    *,
    task: str | Sequence[str] | None = None,
    method: str | Sequence[str] | None = None,
    profile: str | Sequence[str] | None = None,
    protocol: str | Sequence[str] | None = None,
    reindex: bool = False,
) -> pd.DataFrame:
    """Load the cells (from the results index, refreshed first, or rebuilt with ``reindex``; every record when no
    index can be written), filter (each filter: one name or several) and rank them."""
    from simcrop_bench.reporting.results_index import indexed_cells

    wanted = {"task": task, "method": method, "profile": profile, "protocol": protocol}
    indexed = indexed_cells(results_dir, reindex=reindex)
    if indexed is None:  # no index can be written here: read every record
        return aggregate(filter_frame(records_frame(load_records(results_dir)), **wanted))
    cells, problems = indexed
    problems = filter_frame(problems, **wanted)  # a cell filtered out does not stop the others
    if len(problems):
        raise UserError(problems["message"].iloc[0])
    return rank_cells(filter_frame(cells, **wanted))


def filter_frame(frame: pd.DataFrame, **wanted: str | Sequence[str] | None) -> pd.DataFrame:
    """Rows whose column (task, method, profile, protocol) is one of the wanted names; None or
    empty: no filter. A protocol name also selects its labelled variants (``heldout`` →
    ``heldout+lp-cached``)."""
    for column, names in wanted.items():
        if not names:
            continue
        allowed = [names] if isinstance(names, str) else list(names)
        values = frame[column]
        if column == "protocol":
            values = values.where(values.isin(allowed), values.str.split("+").str[0])
        frame = frame[values.isin(allowed)]
    return frame


# ------------------------------------------------------------------------ formatting


def auto_digits(*values: float) -> int:
    """Decimals that suit the magnitude: 3 for metrics in [0, 1], fewer for mm or s."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    magnitude = max(finite, default=0.0)
    if magnitude <= 1.0:
        return 3
    if magnitude < 100:
        return 2
    if magnitude < 1000:
        return 1
    return 0


def format_mean_std(mean: float, std: float, digits: int | None = None, pm: str = "±") -> str:
    """``"0.830 ± 0.012"``; just the mean when std is NaN (one seed)."""
    if digits is None:
        digits = auto_digits(mean, std)
    if mean is None or not math.isfinite(mean):
        return "nan"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} {pm} {std:.{digits}f}"


def format_value(row: Any, pm: str = "±") -> str:
    """Mean ± std over seeds with n; a single seed shows its bootstrap interval instead."""
    text = format_mean_std(row.mean, row.std, pm=pm)
    if row.n_seeds == 1 and math.isfinite(row.ci_low) and math.isfinite(row.ci_high):
        digits = auto_digits(row.mean)
        text += f" [{row.ci_low:.{digits}f}, {row.ci_high:.{digits}f}]"
    return f"{text} (n={row.n_seeds})"


def format_fraction(fraction: float) -> str:
    """``10`` -> ``"10%"``; ``0.5`` -> ``"0.5%"``."""
    return f"{float(fraction):g}%"


def data_label(synthetic: bool) -> str:
    return "synthetic" if synthetic else "real"


def _display_rows(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Human-readable columns shared by the markdown and terminal renderers."""
    header = ["task", "fraction", "method", "metric", "mean ± std (n)", "data", "profile", "protocol", "cell"]
    rows = []
    for row in df.itertuples(index=False):
        arrow = "↑" if row.higher_is_better else "↓"
        value = format_value(row)
        rows.append(
            [
                row.task,
                format_fraction(row.fraction),
                row.method,
                f"{row.metric} {arrow}",
                value,
                data_label(row.synthetic),
                row.profile,
                row.protocol,
                row.cell_hash,
            ]
        )
    return header, rows


# ------------------------------------------------------------------------- renderers


def _machine_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Full-precision copy for CSV: seeds as "42;43;44" so a cell stays one field."""
    out = df.copy()
    if "seeds" in out:
        out["seeds"] = [";".join(str(s) for s in seeds) for seeds in out["seeds"]]
    return out


def to_csv(df: pd.DataFrame) -> str:
    """CSV with full-precision numbers (for further analysis, not for reading)."""
    return _machine_frame(df).to_csv(index=False)


def to_json(df: pd.DataFrame) -> str:
    """A JSON list of row objects; NaN (std of one seed) becomes null."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if hasattr(value, "item"):  # numpy scalar -> Python scalar
            return clean(value.item())
        return value

    rows = [{k: clean(v) for k, v in row.items()} for row in df.to_dict(orient="records")]
    return json.dumps(rows, indent=2) + "\n"


def escape_markdown(text: str) -> str:
    return str(text).replace("|", r"\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """A GitHub pipe table; ``align`` holds "l" or "r" per column (default left)."""
    align = list(align or ["l"] * len(header))
    rule = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule[a] for a in align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_markdown(df: pd.DataFrame) -> str:
    header, rows = _display_rows(df)
    rows = [[escape_markdown(cell) for cell in row] for row in rows]
    align = ["l", "r", "l", "l", "r", "l", "l", "l", "l"]
    return markdown_table(header, rows, align)


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def escape_latex(text: str) -> str:
    """Escape LaTeX special characters (task names such as ``lung_seg``)."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def to_latex(df: pd.DataFrame) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
    header = ["task", "fraction", "method", "metric", r"mean $\pm$ std ($n$)", "data", "profile", "protocol", "cell"]
    lines = [r"\begin{tabular}{llllrllll}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for row in df.itertuples(index=False):
        arrow = r"$\uparrow$" if row.higher_is_better else r"$\downarrow$"
        cells = [
            escape_latex(row.task),
            escape_latex(format_fraction(row.fraction)),
            escape_latex(row.method),
            f"{escape_latex(row.metric)} {arrow}",
            format_value(row, pm=r"$\pm$"),
            data_label(row.synthetic),
            escape_latex(row.profile),
            escape_latex(row.protocol),
            escape_latex(row.cell_hash),
        ]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def rich_table(df: pd.DataFrame, title: str | None = None) -> Table:
    """A terminal table; synthetic-data rows are flagged in yellow."""
    from rich.table import Table
    from rich.text import Text

    header, rows = _display_rows(df)
    table = Table(title=title, show_lines=False)
    for name in header:
        numeric = name in ("fraction", "mean ± std (n)")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=name.startswith("mean"))
    for row in rows:
        # Text (not markup strings) so names like "[x]" are shown literally.
        cells = [Text(c) for c in row]
        if row[5] == "synthetic":
            cells[5].stylize("bold yellow")
        table.add_row(*cells)
    return table
