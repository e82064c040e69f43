"""Pretraining loss curves: each loss component per optimizer step, from a pretraining folder's ``metrics.jsonl``.

As for the efficiency curves (:mod:`~simcrop_bench.reporting.plots`), the data are read into plain series first
(tested exactly), then drawn one paper column wide and saved atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from simcrop_bench.errors import UserError
from simcrop_bench.reporting.plots import (
    FIG_HEIGHT_IN,
    FIG_WIDTH_IN,
    PAPER_STYLE,
    SYNTHETIC_LABEL,
    output_format,
    save_figure,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class LossRun:
    """The per-step losses of one pretraining folder."""

    label: str  # "<method>/<hash[:8]>"
    folder: Path
    synthetic: bool | None
    steps: list[int]
    components: dict[str, list[float]]  # name -> value per step (NaN where a step lacks it)


# -------------------------------------------------------------------- loss curves


def pretraining_folders(
    results: Path, method: str, *, pretrain_hash: str | None = None, partial: bool = False
) -> list[Path]:
    """Pretraining folders of ``method`` holding a ``metrics.jsonl`` (complete ones; ``partial``: also in progress)."""
    from simcrop_bench.pretraining.scalars import METRICS_NAME

    root = Path(results) / "checkpoints" / method
    if not root.is_dir():
        raise UserError(f"{root}: no pretrainings stored for method {method!r}")
    folders = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name = folder.name
        if name.startswith("."):
            if not (partial and name.endswith(".partial")):
                continue
            name = name[1 : -len(".partial")]
        if pretrain_hash and not name.startswith(pretrain_hash):
            continue
        if (folder / METRICS_NAME).is_file():
            folders.append(folder)
    if not folders:
        which = f" matching {pretrain_hash!r}" if pretrain_hash else ""
        raise UserError(f"{root}: no pretraining{which} with a {METRICS_NAME} (loss log)")
    return folders


def all_pretraining_folders(results: Path) -> dict[str, list[Path]]:
    """method -> its complete pretraining folders with a loss log (the report draws each method)."""
    root = Path(results) / "checkpoints"
    found: dict[str, list[Path]] = {}
    if not root.is_dir():
        return found
    for method_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            found[method_dir.name] = pretraining_folders(results, method_dir.name)
        except UserError:
            continue
    return found


def read_loss_run(folder: Path, components: Sequence[str] | None = None) -> LossRun:
    """Steps and loss components of one pretraining folder (default: every ``loss*`` column)."""
    from simcrop_bench.pretraining.scalars import METRICS_NAME

    path = folder / METRICS_NAME
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise UserError(f"{path}:{number}: expected an object with an integer 'step'")
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no steps logged yet")
    keys = list(dict.fromkeys(k for row in rows for k in row if k not in ("step", "epoch", "lr")))
    if components:
        missing = [c for c in components if c not in keys]
        if missing:
            raise UserError(f"{path}: no column(s) {', '.join(missing)} (it has: {', '.join(keys)})")
        keys = list(components)
    else:
        keys = [k for k in keys if k.startswith("loss")]
    rows.sort(key=lambda r: r["step"])
    values = {k: [_number(r.get(k)) for r in rows] for k in keys}
    meta = folder / "meta.json"
    synthetic = None
    if meta.is_file():
        try:
            synthetic = json.loads(meta.read_text(encoding="utf-8")).get("synthetic")
        except (json.JSONDecodeError, OSError):
            synthetic = None
    name = folder.name.lstrip(".").removesuffix(".partial")
    label = f"{folder.parent.name}/{name[:8]}" + (" (in progress)" if folder.name.startswith(".") else "")
    return LossRun(label, folder, synthetic, [int(r["step"]) for r in rows], values)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


LOSS_LABELS = {
    "loss": "total loss",
    "loss_mim": "masked image modelling",
    "loss_mlm": "masked report modelling",
    "loss_align": "region–sentence alignment",
    "loss_norm": "normalisation",
}


def loss_label(name: str) -> str:
    """A loss column's display name: known components by what they measure, others by their suffix."""
    return LOSS_LABELS.get(name, name.removeprefix("loss_").replace("_", " "))


def smoothed(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average over ``window`` steps, NaN-aware (a missing step does not poison its window)."""
    import numpy as np

    if window <= 1:
        return list(values)
    v = np.asarray(values, dtype=float)
    ok = ~np.isnan(v)
    sums = np.convolve(np.where(ok, v, 0.0), np.ones(window))[: len(v)]
    counts = np.convolve(ok.astype(float), np.ones(window))[: len(v)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return list(np.where(counts > 0, sums / counts, np.nan))


def loss_figure(runs: Sequence[LossRun], *, log_y: bool = False, smooth: int = 1, footnote: bool = True) -> Figure:
    """Each loss component named in the legend; ``smooth`` > 1 draws a trailing moving average over
    that many steps on top of the faint raw curve. The pretraining hashes go to the footnote."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, PNG through Agg

    styles = ["-", "--", ":", "-."]
    with matplotlib.rc_context(PAPER_STYLE):
        fig = Figure(figsize=(FIG_WIDTH_IN, FIG_HEIGHT_IN), layout="constrained")
        ax = fig.add_subplot()
        names = list(dict.fromkeys(k for run in runs for k in run.components))
        colors = {name: f"C{i % 10}" for i, name in enumerate(names)}
        for i, run in enumerate(runs):
            for name, values in run.components.items():
                label = loss_label(name) if len(runs) == 1 else f"{loss_label(name)} (run {i + 1})"
                style = {"linestyle": styles[i % len(styles)], "color": colors[name]}
                width = 1.4 if name == "loss" else 1.0
                if smooth > 1:
                    ax.plot(run.steps, values, linewidth=0.6, alpha=0.3, **style)
                    values = smoothed(values, smooth)
                ax.plot(run.steps, values, linewidth=width, label=label, **style)
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ylabel = "loss (each component, unweighted)" if len(names) > 1 else loss_label(names[0]) if names else "loss"
        if smooth > 1:
            ylabel += f", {smooth}-step moving average"
        ax.set_ylabel(ylabel)
        methods = sorted({run.folder.parent.name for run in runs})
        synthetic = any(run.synthetic for run in runs)
        ax.set_title(", ".join(methods) + " pretraining" + (f" ({SYNTHETIC_LABEL})" if synthetic else ""))
        ax.grid(True, linewidth=0.4, alpha=0.5)
        ax.legend(loc="best", frameon=True, framealpha=0.85, edgecolor="none")
        if footnote:
            lines = [f"run {i + 1}: {run.label}" if len(runs) > 1 else run.label for i, run in enumerate(runs)]
            fig.text(0.01, 0.005, "\n".join(lines), fontsize=7, color="0.3", va="bottom", ha="left")
            bottom = 0.015 + 0.047 * len(lines)
            fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - bottom))
    return fig


def plot_losses(
    results: Path,
    method: str,
    out: Path,
    *,
    pretrain_hash: str | None = None,
    components: Sequence[str] | None = None,
    partial: bool = False,
    log_y: bool = False,
    smooth: int = 1,
    footnote: bool = True,
) -> list[LossRun]:
    output_format(out)
    if smooth < 1:
        raise UserError(f"--smooth must be at least 1 (steps), got {smooth}")
    folders = pretraining_folders(results, method, pretrain_hash=pretrain_hash, partial=partial)
    runs = [read_loss_run(folder, components) for folder in folders]
    save_figure(loss_figure(runs, log_y=log_y, smooth=smooth, footnote=footnote), out)
    return runs
