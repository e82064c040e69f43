"""``simcrop-bench report``: one static, offline HTML page of everything in a results folder.

``DIR/index.html`` holds the leaderboard, the paper tables, the data-efficiency curves of
every task with at least two fractions and the loss curves of every stored pretraining
(``DIR/*.png`` beside it), with a provenance footer. No external CSS, scripts or fonts:
the page opens from disk without a network. All text is escaped; results on synthetic
twins are flagged in a banner, in the table rows and in every figure.

Figures are written first and the page last (each through a temporary file), so an
``index.html`` never points at an image that is not there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from simcrop_bench.errors import UserError
from simcrop_bench.reporting import report_template as tpl

if TYPE_CHECKING:
    import pandas as pd

INDEX = "index.html"
TABLE_LAYOUTS = (("cls", "Classification"), ("seg", "Segmentation"), ("ablation", "SimCroP ablations"))
SYNTHETIC_BANNER = (
    "Synthetic data: rows marked “synthetic” come from synthetic twins of the datasets "
    "(generated phantoms), not from real CT. Their numbers are not comparable to published results."
)


@dataclass
class Report:
    index: Path
    images: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build_report(results: Path, out: Path, *, generated: datetime | None = None) -> Report:
    """Write ``out/index.html`` and its figures for the runs and pretrainings under ``results``."""
    from simcrop_bench.reporting import leaderboard as lb

    results, out = Path(results), Path(out)
    records = lb.load_records(results)  # read once: the leaderboard and every table use them
    board = lb.aggregate(lb.records_frame(records))
    if board.empty:
        raise UserError(f"{results}: no run records (run `simcrop-bench run` first)")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out / INDEX)

    body = [
        f"<header><h1>simcrop-bench report</h1>"
        f"<p>{len(board)} result cells from {int(board['n_seeds'].sum())} runs in "
        f"<code>{escape(str(results.resolve()))}</code></p></header>"
    ]
    if board["synthetic"].any():
        body.append(f'<div class="banner" role="note">{escape(SYNTHETIC_BANNER)}</div>')
    body.append(tpl.section("Leaderboard", _leaderboard_html(board), "leaderboard"))
    tables = "\n".join(f"<h3>{escape(title)}</h3>\n{content}" for title, content in _table_sections(results, records))
    body.append(tpl.section("Paper tables", tables, "tables"))
    body.append(tpl.section("Data efficiency", _efficiency_html(board, records, out, report), "efficiency"))
    body.append(tpl.section("Pretraining losses", _losses_html(results, out, report), "losses"))
    body.append(_footer(results, records, generated or datetime.now(timezone.utc)))

    from simcrop_bench.util.atomic import write_text

    write_text(report.index, tpl.page("simcrop-bench report", "\n".join(body)))
    return report


# ------------------------------------------------------------------------ leaderboard


def _leaderboard_html(board: pd.DataFrame) -> str:
    from simcrop_bench.reporting.leaderboard import data_label, format_fraction, format_value

    header = ["task", "fraction", "method", "metric", "mean ± std (n)", "data", "profile", "protocol", "cell"]
    numeric = {"fraction", "mean ± std (n)"}
    lines = [
        '<table class="leaderboard">',
        "<thead><tr>" + "".join(f'<th scope="col">{escape(h)}</th>' for h in header) + "</tr></thead>",
        "<tbody>",
    ]
    for row in board.itertuples(index=False):
        arrow = "↑" if row.higher_is_better else "↓"
        cells = [
            row.task,
            format_fraction(row.fraction),
            row.method,
            f"{row.metric} {arrow}",
            format_value(row),
            data_label(row.synthetic),
            row.profile,
            row.protocol,
            row.cell_hash,
        ]
        classes = ["num" if h in numeric else ("data" if h == "data" else "") for h in header]
        tds = "".join(
            f'<td class="{c}">{escape(str(v))}</td>' if c else f"<td>{escape(str(v))}</td>"
            for c, v in zip(classes, cells)
        )
        row_class = ' class="synthetic"' if row.synthetic else ""
        lines.append(f"<tr{row_class}>{tds}</tr>")
    lines += [
        "</tbody>",
        "</table>",
        tpl.note(
            "Mean ± sample std over seeds (n seeds); a single seed shows its 95 % patient-bootstrap "
            "interval in brackets. ↑/↓: higher/lower is better."
        ),
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------ paper tables


def _table_sections(results: Path, records: list[dict] | None = None) -> list[tuple[str, str]]:
    """(title, HTML) per paper-table layout, with the significance test of ``table`` (its default
    reference and α). A column that mixes probe protocols is split into one labelled sub-column per
    protocol (``--split-by protocol``) rather than dropping the table. When the saved predictions
    cannot support the test, the table is shown without marks and a note says why; a layout without
    matching runs becomes a short note."""
    from simcrop_bench.reporting.tables.build import build_table

    sections = []
    for layout, title in TABLE_LAYOUTS:
        split_by = "protocol" if _mixes_protocols(records, layout) else None
        try:
            html = build_table(results, layout=layout, records=records, split_by=split_by).render("html")
        except UserError as exc:
            try:
                plain = build_table(results, layout=layout, reference="none", records=records, split_by=split_by)
                html = plain.render("html") + tpl.note(f"No significance marks: {exc}")
            except UserError as again:
                html = tpl.note(f"No {title.lower()} table: {again}")
        sections.append((title, html))
    return sections


def _mixes_protocols(records: list[dict] | None, layout: str) -> bool:
    """Whether some (task, fraction) column of ``layout`` holds runs of more than one protocol."""
    from simcrop_bench.reporting.leaderboard import protocol_label
    from simcrop_bench.reporting.tables.layouts import layout_tasks

    tasks = layout_tasks(layout)
    seen: dict[tuple, set[str]] = {}
    for record in records or []:
        if tasks is None or record["task"] in tasks:
            seen.setdefault((record["task"], record["fraction"]), set()).add(protocol_label(record))
    return any(len(protocols) > 1 for protocols in seen.values())


# ----------------------------------------------------------------------------- figures


def _slug(*parts: object) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", str(p)).strip("_.") or "x" for p in parts)


def _efficiency_html(board: pd.DataFrame, records: list[dict], out: Path, report: Report) -> str:
    from simcrop_bench.reporting.leaderboard import data_label, format_fraction
    from simcrop_bench.reporting.plots import (
        BAND_TEXT,
        SYNTHETIC_LABEL,
        decorate,
        efficiency_data,
        efficiency_figure,
        save_figure,
    )
    from simcrop_bench.reporting.tables.layouts import display_task, metric_header

    parts, single = [], []
    for task, rows in board.groupby("task", sort=True):
        if rows["fraction"].nunique() < 2:
            single.append(str(task))
            continue
        # One figure per cell kind: a curve never mixes profiles, protocols or data kinds.
        for (profile, protocol, synthetic), group in rows.groupby(["profile", "protocol", "synthetic"], sort=True):
            kind = f"{profile} profile, {protocol} protocol, {data_label(bool(synthetic))} data"
            if group["fraction"].nunique() < 2:
                parts.append(tpl.note(f"{task} ({kind}): one fraction only, no curve."))
                continue
            try:
                data = efficiency_data(group, str(task))
            except UserError as exc:
                parts.append(tpl.note(f"{task} ({kind}): no curve: {exc}"))
                report.notes.append(str(exc))
                continue
            decorate(data, records)
            name = f"efficiency-{_slug(task, profile, protocol, data_label(bool(synthetic)))}.png"
            save_figure(efficiency_figure(data), out / name)
            report.images.append(out / name)
            methods = ", ".join(f"{s.method} ({s.seeds_text})" for s in data.series)
            label = f" — {SYNTHETIC_LABEL.upper()}" if data.synthetic else ""
            bands = [BAND_TEXT[b] for b in ("std", "ci") if any(b in s.band for s in data.series)]
            same = "".join(
                f" Fractions {' and '.join(format_fraction(f) for f in group)} trained on identical case lists: "
                "their points do not compare two amounts of training data."
                for group in data.identical_lists
            )
            title, metric = display_task(str(task)), metric_header(data.metric)
            parts.append(
                tpl.figure(
                    name,
                    f"{metric} vs training fraction for {title}",
                    f"{title} ({task}): {metric} vs training fraction ({kind}{label}); methods (seeds): {methods}; "
                    f"band: {' / '.join(bands) or 'none'}.{same}",
                )
            )
    if single:
        parts.append(tpl.note("No curve for tasks with a single training fraction: " + ", ".join(single) + "."))
    return "\n".join(parts) or tpl.note("No results.")


def _losses_html(results: Path, out: Path, report: Report) -> str:
    from simcrop_bench.reporting.loss_curves import all_pretraining_folders, loss_figure, read_loss_run
    from simcrop_bench.reporting.plots import SYNTHETIC_LABEL, save_figure

    found = all_pretraining_folders(results)
    if not found:
        return tpl.note(f"No stored pretraining with a loss log under {results / 'checkpoints'}.")
    parts = []
    for method, folders in found.items():
        try:
            runs = [read_loss_run(folder) for folder in folders]
        except UserError as exc:
            parts.append(tpl.note(f"{method}: no loss plot: {exc}"))
            report.notes.append(str(exc))
            continue
        if not any(run.components for run in runs):
            parts.append(tpl.note(f"{method}: the loss log has no loss columns."))
            continue
        name = f"losses-{_slug(method)}.png"
        save_figure(loss_figure(runs), out / name)
        report.images.append(out / name)
        synthetic = f" — pretrained on a {SYNTHETIC_LABEL.upper()}" if any(r.synthetic for r in runs) else ""
        labels = ", ".join(run.label for run in runs)
        parts.append(
            tpl.figure(
                name,
                f"pretraining loss curves of {method}",
                f"{method}: loss components per optimizer step ({labels}){synthetic}.",
            )
        )
    return "\n".join(parts)


# ------------------------------------------------------------------------- provenance


def _footer(results: Path, records: list[dict], generated: datetime) -> str:
    """Provenance of the page (this checkout and machine) and of the runs it shows (their records)."""
    from simcrop_bench.run.provenance import git_state, package_versions

    state = git_state()
    commit = state["git_commit"] or git_commit() or "unknown"
    dirty = {True: " (dirty: uncommitted changes)", False: " (clean)", None: ""}[state["git_dirty"]]
    here = package_versions()
    items = [
        ("generated", generated.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("simcrop-bench", _package_version()),
        ("git commit", commit + dirty),
        ("torch / MONAI", f"{here.get('torch') or 'not installed'} / {here.get('monai') or 'not installed'}"),
        ("results", str(results.resolve())),
    ]
    provenance = [r.get("provenance") or {} for r in records]

    def distinct(values) -> str:
        counts: dict[str, int] = {}
        for value in values:
            counts[str(value)] = counts.get(str(value), 0) + 1
        return "; ".join(f"{value} ({n} runs)" for value, n in sorted(counts.items())) or "unknown"

    # Labels short enough for the footer's label column: a wrapped label shifts every later row.
    items += [
        ("run devices", distinct(p.get("device") or "unknown" for p in provenance)),
        (
            "run torch / MONAI",
            distinct(
                f"{(p.get('packages') or {}).get('torch') or '–'} / {(p.get('packages') or {}).get('monai') or '–'}"
                for p in provenance
            ),
        ),
        ("run commits", distinct(_commit_text(p) for p in provenance)),
    ]
    return f"<footer>\n{tpl.definition_list(items)}\n</footer>"


def _commit_text(provenance: dict) -> str:
    commit = provenance.get("git_commit")
    if not commit:
        return "unknown"
    return str(commit)[:12] + (" (dirty)" if provenance.get("git_dirty") else "")


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("simcrop-bench")
    except PackageNotFoundError:
        return "unknown"


def git_commit(repo: Path | None = None) -> str | None:
    """The checked-out commit, read from ``.git`` without running git; None when not a checkout."""
    from simcrop_bench.run.provenance import REPO

    dot_git = Path(repo or REPO) / ".git"
    try:
        if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
            target = dot_git.read_text(encoding="utf-8").strip().removeprefix("gitdir:").strip()
            dot_git = (dot_git.parent / target).resolve()
        head = (dot_git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head or None  # detached HEAD
        ref = head.removeprefix("ref:").strip()
        common = dot_git
        if (dot_git / "commondir").is_file():
            common = (dot_git / (dot_git / "commondir").read_text(encoding="utf-8").strip()).resolve()
        for base in (dot_git, common):
            if (base / ref).is_file():
                return (base / ref).read_text(encoding="utf-8").strip() or None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                sha, _, name = line.partition(" ")
                if name.strip() == ref:
                    return sha
    except (OSError, UnicodeDecodeError):
        return None
    return None
