"""Figures for papers: data-efficiency curves, and what every figure shares (style, size, saving).

Pretraining loss curves are in :mod:`~simcrop_bench.reporting.loss_curves`. Figures are drawn in two
steps: a data-preparation function that returns plain series (tested exactly), then a renderer sized
for one paper column (3.5 in wide, fonts ≥ 7 pt) that writes PNG (300 dpi) or PDF atomically.

A data-efficiency line joins the fractions of one method, so every point of a line
must come from the same profile, protocol, data kind (synthetic twin or real) and
metric: the leaderboard's cell identity without the fraction. A figure mixing those
is refused with a one-line :class:`UserError` naming what differs.

matplotlib and pandas are imported inside functions so that importing this module
stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from simcrop_bench.errors import UserError
from simcrop_bench.reporting.leaderboard import format_fraction

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

FIG_WIDTH_IN = 3.5
FIG_HEIGHT_IN = 2.6
PNG_DPI = 300
FORMATS = {".png": "png", ".pdf": "pdf"}
# Fields every point of one figure must share (cell identity minus method, fraction, cell_hash).
LINE_IDENTITY = ["profile", "protocol", "synthetic", "metric", "higher_is_better"]
SYNTHETIC_LABEL = "synthetic twin"
PAPER_STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.titlesize": 8,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
    "svg.fonttype": "none",
}


@dataclass
class EfficiencySeries:
    """One method's line: x = fractions (%), y = mean over seeds, band = [low, high] per point."""

    method: str
    fractions: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]
    n_seeds: list[int]
    band: list[str]  # per point: "std" (≥2 seeds), "ci" (one seed, bootstrap interval) or "none"

    @property
    def seeds_text(self) -> str:
        low, high = min(self.n_seeds), max(self.n_seeds)
        return f"n={low}" if low == high else f"n={low}–{high}"


@dataclass
class EfficiencyData:
    task: str
    metric: str
    higher_is_better: bool | None
    profile: str
    protocol: str
    synthetic: bool
    series: list[EfficiencySeries] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # method -> registry kind (marker by family)
    # Groups of fractions whose runs trained on the same list of cases (one run shown as several points).
    identical_lists: list[tuple[float, ...]] = field(default_factory=list)

    @property
    def fractions(self) -> list[float]:
        return sorted({f for s in self.series for f in s.fractions})


# ------------------------------------------------------------------ data efficiency


def metric_board(
    results: Path,
    task: str,
    metric: str | None = None,
    *,
    profile: str | None = None,
    protocol: str | None = None,
    records: list[dict] | None = None,
) -> pd.DataFrame:
    """The aggregated leaderboard of ``task``; ``metric`` other than the primary one is averaged the same way.

    A secondary metric is read from each record's ``metrics`` (its bootstrap interval when the
    record has one); a record lacking it is an error naming the run.
    """
    from simcrop_bench.reporting import leaderboard as lb

    records = [r for r in (lb.load_records(results) if records is None else records) if r["task"] == task]
    if not records:
        raise UserError(f"{results}: no run records for task {task!r}")
    secondary = False
    if metric is not None:
        swapped = []
        for r in records:
            value = r["metrics"].get(metric)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                known = ", ".join(sorted(r["metrics"]))
                raise UserError(f"run {r['run_id']}: no numeric metric {metric!r} (it has: {known})")
            if metric != r["primary_metric"]:
                secondary = True
                r = {**r, "primary_metric": metric}
            swapped.append(r)
        records = swapped
    frame = lb.filter_frame(lb.records_frame(records), profile=profile, protocol=protocol)
    if frame.empty:
        raise UserError(f"{results}: no run records for task {task!r} match the filters")
    board = lb.aggregate(frame)
    if secondary:  # the direction is only recorded for the primary metric: no axis arrow
        board["higher_is_better"] = None
    return board


def efficiency_data(board: pd.DataFrame, task: str) -> EfficiencyData:
    """One line per method over the fractions of ``task``; refuses mixed cells or ambiguous points."""
    rows = board[board["task"] == task]
    if rows.empty:
        raise UserError(f"no results for task {task!r}")
    for name in LINE_IDENTITY:
        values = rows[name].unique()
        if len(values) > 1:
            shown = ", ".join(sorted(str(v) for v in values))
            what = "synthetic twin and real data" if name == "synthetic" else f"{name} values ({shown})"
            hint = "plot one at a time (--profile / --protocol)" if name != "metric" else "pick one (--metric)"
            raise UserError(f"task {task!r}: the runs mix {what}; a curve needs one cell kind, {hint}")
    first = rows.iloc[0]
    data = EfficiencyData(
        task=task,
        metric=str(first["metric"]),
        higher_is_better=None if first["higher_is_better"] is None else bool(first["higher_is_better"]),
        profile=str(first["profile"]),
        protocol=str(first["protocol"]),
        synthetic=bool(first["synthetic"]),
    )
    for method, group in rows.groupby("method", sort=True):
        dupes = group["fraction"][group["fraction"].duplicated()]
        if len(dupes):
            hashes = ", ".join(sorted(group.loc[group["fraction"].isin(dupes), "cell_hash"]))
            raise UserError(
                f"task {task!r} method {method!r} fraction {format_fraction(dupes.iloc[0])}: "
                f"several configs ({hashes}); move the outdated runs out of results/runs"
            )
        group = group.assign(_f=group["fraction"].astype(float)).sort_values("_f")
        series = EfficiencySeries(str(method), [], [], [], [], [], [])
        for row in group.itertuples(index=False):
            mean, std, n = float(row.mean), float(row.std), int(row.n_seeds)
            if n >= 2 and math.isfinite(std):
                low, high, band = mean - std, mean + std, "std"
            elif math.isfinite(row.ci_low) and math.isfinite(row.ci_high):
                low, high, band = float(row.ci_low), float(row.ci_high), "ci"
            else:
                low = high = math.nan
                band = "none"
            series.fractions.append(float(row.fraction))
            series.mean.append(mean)
            series.low.append(low)
            series.high.append(high)
            series.n_seeds.append(n)
            series.band.append(band)
        data.series.append(series)
    return data


def metric_range(metric: str) -> tuple[float, float] | None:
    """The values a metric can take, for clipping bands (None: unbounded, e.g. HD95 in mm)."""
    bounded = ("auc", "auc_ovr", "accuracy", "dice", "f1_micro", "f1_macro", "selection_dice")
    return (0.0, 1.0) if metric in bounded else None


BAND_TEXT = {"std": "± 1 std over seeds (n ≥ 2)", "ci": "95 % patient-bootstrap CI (n = 1)"}


def efficiency_figure(data: EfficiencyData, *, footnote: bool = True) -> Figure:
    """One line per method (fixed colour and marker, :mod:`.styles`), bands clipped to the metric's range.

    The legend gives each method's seed count and the band meaning(s); single-seed bootstrap bands are
    hatched so that they cannot be read as a spread over seeds. Fractions trained on identical lists
    are named in the x label. ``footnote=False`` leaves out the text under the axes (camera-ready).
    """
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, PNG through Agg
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, NullLocator

    from simcrop_bench.reporting.styles import method_style
    from simcrop_bench.reporting.tables.layouts import display_task, metric_header

    limits = metric_range(data.metric)
    with matplotlib.rc_context(PAPER_STYLE):
        fig = Figure(figsize=(FIG_WIDTH_IN, FIG_HEIGHT_IN), layout="constrained")
        ax = fig.add_subplot()
        for series in data.series:
            style = method_style(series.method, data.kinds)
            x = np.asarray(series.fractions)
            low, high = np.asarray(series.low, dtype=float), np.asarray(series.high, dtype=float)
            if limits is not None:
                low, high = np.clip(low, *limits), np.clip(high, *limits)
            ax.plot(
                x,
                series.mean,
                marker=style.marker,
                color=style.color,
                label=f"{series.method} ({series.seeds_text})",
                clip_on=False,
                zorder=3,
            )
            for kind in ("std", "ci"):
                where = np.array([b == kind for b in series.band])
                if where.any():
                    ax.fill_between(
                        x,
                        low,
                        high,
                        where=where,
                        interpolate=False,
                        color=style.color,
                        alpha=0.18 if kind == "std" else 0.10,
                        hatch=None if kind == "std" else "////",
                        linewidth=0,
                    )
        ticks = data.fractions
        if len(ticks) > 1 and min(ticks) > 0:
            ax.set_xscale("log")
            pad = (max(ticks) / min(ticks)) ** 0.06
            ax.set_xlim(min(ticks) / pad, max(ticks) * pad)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([format_fraction(f) for f in ticks])
        xlabel = "training fraction"
        for group in data.identical_lists:
            xlabel += f"\n{' = '.join(format_fraction(f) for f in group)}: same training cases"
        ax.set_xlabel(xlabel)
        if limits is not None:
            bottom, top = ax.get_ylim()
            ax.set_ylim(max(bottom, limits[0]), min(top, limits[1]))
        arrow = {True: " ↑", False: " ↓", None: ""}[data.higher_is_better]
        ax.set_ylabel(f"{metric_header(data.metric)}{arrow}")
        ax.set_title(display_task(data.task) + (f" ({SYNTHETIC_LABEL})" if data.synthetic else ""))
        ax.grid(True, linewidth=0.4, alpha=0.5)
        bands = [b for b in ("std", "ci") if any(b in s.band for s in data.series)]
        handles, labels = ax.get_legend_handles_labels()
        for band in bands:
            handles.append(Patch(facecolor="0.6", alpha=0.35, hatch=None if band == "std" else "////", linewidth=0))
            labels.append(f"band: {BAND_TEXT[band]}")
        ax.legend(handles, labels, loc="best", frameon=True, framealpha=0.85, edgecolor="none")
        if footnote:
            lines = [f"{data.profile} profile, {data.protocol} protocol"]
            if data.synthetic:
                lines.append(f"{SYNTHETIC_LABEL}: not comparable to published numbers")
            fig.text(0.01, 0.005, "\n".join(lines), fontsize=7, color="0.3", va="bottom", ha="left")
            bottom = 0.015 + 0.047 * len(lines)  # room for the footnote (rect: left, bottom, width, height)
            fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - bottom))
    return fig


# ---------------------------------------------------------------------------- saving


def output_format(path: Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: unsupported figure format; use a .png or .pdf file name")
    return fmt


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` (PNG at 300 dpi, or PDF) through a temporary file, then rename."""
    from simcrop_bench.util.atomic import atomic_path

    fmt = output_format(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=PNG_DPI, metadata=_metadata(fmt))
    return Path(path)


def _metadata(fmt: str) -> dict:
    # No creation date: the same data gives the same file.
    return {"Software": "simcrop-bench"} if fmt == "png" else {"Creator": "simcrop-bench", "CreationDate": None}


def plot_efficiency(
    results: Path,
    task: str,
    out: Path,
    *,
    metric: str | None = None,
    profile: str | None = None,
    protocol: str | None = None,
    footnote: bool = True,
) -> EfficiencyData:
    from simcrop_bench.reporting.leaderboard import load_records

    output_format(out)  # fail before any work
    records = load_records(results)
    board = metric_board(results, task, metric, profile=profile, protocol=protocol, records=records)
    data = efficiency_data(board, task)
    decorate(data, records)
    save_figure(efficiency_figure(data, footnote=footnote), out)
    return data


def decorate(data: EfficiencyData, records: Sequence[dict]) -> None:
    """Add what the records know beyond the leaderboard: method kinds (markers) and identical training lists."""
    from simcrop_bench.reporting.tables.layouts import registry_kinds
    from simcrop_bench.reporting.training_lists import identical_fractions

    kinds = {r["method"]: r["method_kind"] for r in records if isinstance(r.get("method_kind"), str)}
    missing = {s.method for s in data.series} - set(kinds)
    data.kinds = {**registry_kinds(missing), **kinds} if missing else kinds
    key = (data.task, data.profile, data.protocol, data.synthetic)
    data.identical_lists = identical_fractions(records).get(key, [])
