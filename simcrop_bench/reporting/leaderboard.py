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

if TYPE_CHECKING:  # only for annotations; see the module docstring
    import pandas as pd
    from rich.table import Table

SCHEMA_VERSION = 1

# Required record keys and the Python types they must have.
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "run_id": str,
    "method": str,
    "task": str,
    "fraction": (int, float),
    "seed": int,
    "profile": str,
    "protocol": str,
    "synthetic": bool,
    "primary_metric": str,
    "higher_is_better": bool,
    "metrics": dict,
    "cell_hash": str,
}

# Columns that identify one comparable cell (everything except the seed).
CELL_KEYS = [
    "task",
    "fraction",
    "method",
    "profile",
    "protocol",
    "synthetic",
    "cell_hash",
    "metric",
    "higher_is_better",
]
FRAME_COLUMNS = [
    "task",
    "method",
    "fraction",
    "seed",
    "profile",
    "protocol",
    "synthetic",
    "cell_hash",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "higher_is_better",
    "run_id",
]
AGGREGATE_COLUMNS = [*CELL_KEYS, "mean", "std", "n_seeds", "seeds", "ci_low", "ci_high"]


def protocol_label(record: dict) -> str:
    """``heldout``, or ``heldout+lp-cached`` for a labelled variant: variants are never shown as the recipe."""
    variant = record.get("variant") or ""
    return f"{record['protocol']}+{variant}" if variant else record["protocol"]


def _interval(record: dict) -> dict[str, float]:
    """The primary metric's bootstrap interval (protocol.md §9) as frame columns; NaN when the record has none."""
    ci = (record.get("intervals") or {}).get(record["primary_metric"]) or {}
    low, high = ci.get("low"), ci.get("high")
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float))):
        low = high = math.nan
    return {"ci_low": float(low), "ci_high": float(high)}


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
        record = _read_record(path)
        earlier = seen_run_ids.setdefault(record["run_id"], path)
        if earlier != path:
            # A copied run directory would otherwise count one seed twice.
            raise UserError(f"{path}: run_id {record['run_id']!r} already used by {earlier}")
        records.append(record)
    return records


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read record ({exc})") from None
    problem = validate_record(record)
    if problem:
        raise UserError(f"{path}: {problem}")
    return record


def validate_record(record: Any) -> str | None:
    """Return a one-line description of what is wrong with ``record``, or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        return "missing required key(s) " + ", ".join(repr(k) for k in missing)
    if record["schema_version"] != SCHEMA_VERSION:
        return f"unsupported schema_version {record['schema_version']!r} (this version reads {SCHEMA_VERSION})"
    for key, expected in _REQUIRED.items():
        value = record[key]
        # bool is a subclass of int; a seed of `true` is a mistake, not seed 1.
        wrong_bool = isinstance(value, bool) and expected is not bool
        if wrong_bool or not isinstance(value, expected):
            names = expected.__name__ if isinstance(expected, type) else "number"
            return f"key {key!r} should be {names}, got {json.dumps(value)}"
    primary = record["primary_metric"]
    if primary not in record["metrics"]:
        return f"primary metric {primary!r} not found in 'metrics'"
    value = record["metrics"][primary]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"metrics[{primary!r}] should be a number, got {json.dumps(value)}"
    return None


# ----------------------------------------------------------------------- aggregation


def records_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One row per record with the columns in :data:`FRAME_COLUMNS`."""
    import pandas as pd

    rows = [
        {
            "task": r["task"],
            "method": r["method"],
            "fraction": r["fraction"],
            "seed": r["seed"],
            "profile": r["profile"],
            "protocol": protocol_label(r),
            "synthetic": bool(r["synthetic"]),
            "cell_hash": r["cell_hash"],
            "metric": r["primary_metric"],
            "value": float(r["metrics"][r["primary_metric"]]),
            **_interval(r),
            "higher_is_better": bool(r["higher_is_better"]),
            "run_id": r["run_id"],
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Average seeds per cell: mean, sample std (ddof=1, NaN for one seed), n, seeds.

    Sorted by task, fraction, metric, then mean in the metric's good direction
    (best first; NaN means last), then method for a stable order.
    """
    import pandas as pd

    rows = []
    for keys, group in frame.groupby(CELL_KEYS, sort=False, dropna=False):
        if group["seed"].duplicated().any():
            dupes = ", ".join(group.loc[group["seed"].duplicated(keep=False), "run_id"])
            raise UserError(f"the same seed appears more than once in one cell: {dupes}")
        values = group["value"]
        rows.append(
            {
                **dict(zip(CELL_KEYS, keys)),
                # skipna=False: a diverged (NaN) seed must show, not vanish from the mean.
                "mean": values.mean(skipna=False),
                "std": values.std(ddof=1, skipna=False),
                "n_seeds": len(group),
                "seeds": sorted(int(s) for s in group["seed"]),
                # One seed: its patient-level bootstrap interval; several: the spread over seeds is shown instead.
                "ci_low": float(group["ci_low"].iloc[0]) if len(group) == 1 else math.nan,
                "ci_high": float(group["ci_high"].iloc[0]) if len(group) == 1 else math.nan,
            }
        )
    agg = pd.DataFrame(rows, columns=AGGREGATE_COLUMNS)
    if agg.empty:
        return agg
    good_first = agg["mean"].where(agg["higher_is_better"], -agg["mean"]) * -1
    agg = (
        agg.assign(_order=good_first)
        .sort_values(["task", "fraction", "metric", "_order", "method"], na_position="last", kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )
    agg["n_seeds"] = agg["n_seeds"].astype(int)
    return agg


def leaderboard(
    results_dir: Path,
    *,
    task: str | Sequence[str] | None = None,
    method: str | Sequence[str] | None = None,
    profile: str | Sequence[str] | None = None,
    protocol: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Load, filter (each filter: one name or several) and aggregate in one call."""
    frame = records_frame(load_records(results_dir))
    return aggregate(filter_frame(frame, task=task, method=method, profile=profile, protocol=protocol))


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
