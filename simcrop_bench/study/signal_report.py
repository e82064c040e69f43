"""The learning-signal study's results file: tables, decision, budget and wall times, grounding, loss curves.

Everything is read back from the study's results folder (records, the encoder store's ``pretrain_info.json``,
``metrics.jsonl`` and ``monitor.jsonl``), so the file can be rewritten from the folder alone.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from simcrop_bench.study.diagnostics import GROUNDING_DRAWS, collapse_checks, grounding_views
from simcrop_bench.study.signal import GROUNDED, STUDY, TASK, SignalStudy

DESIGN_DOC = "docs/study-signal.md"
ALPHA = 0.05


def _git(*args: str) -> str:
    from simcrop_bench.registry import REPO_ROOT

    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def pretraining_summary(records: list[dict]) -> dict[str, dict[str, Any]]:
    """Per pretrained method: steps, wall time, loss at the start and end, grounding at the start and end."""
    from simcrop_bench.pretraining.scalars import MONITOR_NAME, read_metrics

    out: dict[str, dict[str, Any]] = {}
    for record in records:
        method, checkpoint = record["method"], record.get("checkpoint")
        if method in out or not checkpoint:
            continue
        folder = Path(checkpoint["path"]).parent
        info_path = folder / "pretrain_info.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        losses = [r["loss"] for r in read_metrics(folder)]
        window = max(1, len(losses) // 10)
        monitor = [r for r in read_metrics(folder, MONITOR_NAME) if "grounding/hit_rate" in r]
        out[method] = {
            "steps": info.get("steps"),
            "wall_s": info.get("wall_s_all_segments"),
            "loss_start": sum(losses[:window]) / window if losses else math.nan,
            "loss_end": sum(losses[-window:]) / window if losses else math.nan,
            "grounding_start": monitor[0] if monitor else None,
            "grounding_end": monitor[-1] if monitor else None,
            "folder": str(folder),
        }
    return out


def probe_seconds(records: list[dict]) -> dict[str, float]:
    """Per method: wall time of its probe cells (the first also holds the pretraining when it ran there)."""
    out: dict[str, float] = {}
    for record in records:
        out[record["method"]] = out.get(record["method"], 0.0) + float(record.get("wall_time_s") or 0.0)
    return out


def decision(table: Any, reference: str) -> list[str]:
    """Cells significantly better than ``reference`` (higher mean, Holm-corrected p ≤ α), one line each."""
    grid = table.grid
    lines = []
    for (method, column), cell in sorted(grid.cells.items(), key=lambda kv: (kv[0][1].fraction, kv[0][0])):
        ref = grid.cells.get((reference, column))
        if method == reference or ref is None or cell.p_holm is None:
            continue
        if cell.p_holm <= ALPHA and cell.mean > ref.mean:
            lines.append(
                f"{method} at {column.fraction:g} %: {cell.mean:.3f} vs {reference} {ref.mean:.3f}, "
                f"Holm p = {cell.p_holm:.4f}"
            )
    return lines


def grounding_diagnostics(records: list[dict], methods: list[str], twin: Path) -> list[str]:
    """Lines of the end-of-pretraining grounding table: both views, trained and fresh, every held-out volume."""
    lines = [
        "",
        "### Grounding at the end, on every held-out volume: evaluation view and training view",
        "",
        "| method | model | all patches visible: hit / chance (lift) | training view: hit / chance (lift) | sentences "
        "|",
        "|---|---|---|---|---|",
    ]
    firsts = {}
    for record in records:
        if record["method"] in methods and record.get("checkpoint"):
            firsts.setdefault(record["method"], record)
    volumes, mask_ratio = 0, math.nan
    for method in methods:
        if method not in firsts:
            continue
        views = grounding_views(firsts[method], twin)
        volumes, mask_ratio = int(views["volumes"]["n"]), views["volumes"]["mask_ratio"]
        for model in ("fresh", "trained"):
            full, masked = views[f"{model}/full"], views[f"{model}/training view"]
            cells = [f"{g['hit_rate']:.3f} / {g['chance']:.3f} ({g['lift']:.2f})" for g in (full, masked)]
            heads = " (control heads)" if full["control"] else ""
            sentences = f"{int(full['sentences'])} / {int(masked['sentences'])}"
            lines.append(f"| {method} | {model}{heads} | {cells[0]} | {cells[1]} | {sentences} |")
    lines += [
        "",
        f"Every held-out volume of the twin ({volumes}) whose findings name a masked finding. *Fresh*: the same model "
        "freshly initialised (seed 0); *trained*: the pretraining's final `checkpoint.pt`. The training view masks "
        f"each volume as pretraining does ({mask_ratio:.0%} of patches masked, {GROUNDING_DRAWS} masks per volume, "
        "fixed seeds) and ranks only the kept patches, which is what the alignment loss sees; chance is then the kept "
        "patches' share on the finding, "
        "and a sentence with no kept patch on its finding is left out of that draw (sentences: evaluation / training "
        "view).",
        "",
    ]
    return lines


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def write_report(study: SignalStudy, outcome: dict, out: Path, argv: list[str] | None = None) -> Path:
    """Write the results markdown (and the efficiency plot beside it); returns the markdown's path."""
    from simcrop_bench.reporting.plots import plot_efficiency
    from simcrop_bench.reporting.tables.build import build_table
    from simcrop_bench.util.atomic import write_text

    records = outcome["records"]
    steps = sorted({s["steps"] for s in pretraining_summary(records).values() if s["steps"]})
    budget = f"{study.epochs} epoch(s) of the training volumes per method ({'/'.join(map(str, steps))} steps)"
    label = "PILOT, not the designed run" if not study.is_design else "designed run"
    caption = (
        f"Learning-signal study '{STUDY}' ({label}): synthetic CT-RATE twin of {study.patients} patients "
        f"(seed {study.twin_seed}), pretraining budget {budget}, linear probe lp-cached, "
        f"{len(study.seeds)} seeds per cell"
    )
    methods = list(study.methods)
    tables = {}
    for reference in ("scratch", "simcrop"):
        if reference in methods:
            tables[reference] = build_table(
                study.results, tasks=[TASK], methods=methods, cell="ci", reference=reference, method_order=methods
            )
    plot = out.with_name(out.stem + "-efficiency.png")
    plot_efficiency(study.results, TASK, plot)
    summary = pretraining_summary(records)
    probes = probe_seconds(records)
    commit = _git("rev-parse", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    design = _git("log", "-1", "--format=%h %s", "--", DESIGN_DOC) or "not committed"
    command = "simcrop-bench " + shlex.join(argv if argv is not None else sys.argv[1:])

    lines = [
        f"# Learning-signal study `{STUDY}` — results ({label})",
        "",
        f"**Synthetic data.** {caption}. These numbers are not comparable to published results.",
        "",
        f"- Design: `{DESIGN_DOC}`, committed as {design}.",
        f"- Command: `{command}`",
        f"- Code: commit {commit}{' (with uncommitted changes)' if dirty else ''}.",
        f"- Results folder: `{study.results}`; twin `{outcome['twin']}`.",
        f"- Study wall time (this invocation): {outcome['wall_s'] / 60:.1f} min."
        if math.isfinite(outcome["wall_s"])
        else "- Written from the records in the results folder (`--report-only`).",
        "",
    ]
    for reference, table in tables.items():
        lines += [f"## Macro AUROC, test against `{reference}`", "", table.render("md", caption=caption), ""]
        better = decision(table, reference)
        lines += [f"Significantly better than `{reference}` (Holm p ≤ {ALPHA}):", ""]
        lines += [f"- {b}" for b in better] or ["- none"]
        lines.append("")
    if "scratch" in tables:
        at_one = [b for b in decision(tables["scratch"], "scratch") if " at 1 %" in b]
        verdict = "yes" if at_one else "no" if 1 in study.fractions else "not evaluated (no 1 % cells)"
        lines += [f"**Decision rule (design): a pretraining method beats scratch at 1 %: {verdict}.**", ""]
    lines += [
        "## Pretraining budget, wall time and loss",
        "",
        "| method | steps | pretraining wall (min) | probe cells wall (min) | loss start → end |",
        "|---|---|---|---|---|",
    ]
    for method in methods:
        s = summary.get(method, {})
        wall = s.get("wall_s")
        lines.append(
            f"| {method} | {_fmt(s.get('steps'))} | {_fmt(wall / 60 if wall else None, 1)} | "
            f"{_fmt(probes.get(method, 0.0) / 60, 1)} | {_fmt(s.get('loss_start'))} → {_fmt(s.get('loss_end'))} |"
        )
    lines += [
        "",
        "Loss: mean of the first and of the last 10 % of the optimizer steps (`metrics.jsonl`). "
        "Wall times are of the machine that ran the study (its CPU count and load are not controlled); the first probe "
        "cell of a pretrained method also holds its pretraining.",
        "",
        "## Grounding (held-out twin volumes, top-K hit rate vs chance)",
        "",
        "| method | start: hit / chance (lift) | end: hit / chance (lift) | sentences | heads |",
        "|---|---|---|---|---|",
    ]
    for method in [m for m in methods if m in GROUNDED]:
        s = summary.get(method, {})
        start, end = s.get("grounding_start"), s.get("grounding_end")
        if not end:
            lines.append(f"| {method} | – | – | – | – |")
            continue

        def cell(g: dict) -> str:
            return f"{g['grounding/hit_rate']:.3f} / {g['grounding/chance']:.3f} ({g['grounding/lift']:.2f})"

        heads = "control (never trained)" if end.get("grounding/control") else "trained"
        lines.append(
            f"| {method} | {cell(start)} (step {start['step']}) | {cell(end)} (step {end['step']}) | "
            f"{int(end['grounding/sentences'])} | {heads} |"
        )
    lines += grounding_diagnostics(records, [m for m in methods if m in GROUNDED], Path(outcome["twin"]))
    checks = collapse_checks(records, Path(outcome["twin"]))
    lines += [
        "",
        "## Collapse checks (frozen probe features of held-out volumes)",
        "",
        "| method | effective rank / width | mean pairwise cosine | volumes |",
        "|---|---|---|---|",
    ]
    for method in methods:
        c = checks.get(method)
        if c:
            lines.append(
                f"| {method} | {c['effective_rank']:.1f} / {int(c['width'])} | {c['mean_cosine']:.3f} | "
                f"{int(c['volumes'])} |"
            )
    lines += [
        "",
        "Effective rank: exp of the entropy of the normalised singular values of the centred features (the probe's "
        "mean-pooled, LayerNorm'd last block); `scratch` is one random encoder (its first seed).",
        "",
        f"Efficiency plot: `{plot.name}` (written beside this file by the command).",
        "",
    ]
    write_text(out, "\n".join(lines))
    return out
