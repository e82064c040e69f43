"""Results verbs: ``leaderboard``, ``table``, ``plot efficiency|losses``, ``report``.

Registered on the main app by :mod:`simcrop_bench.cli.app`; like it, imports nothing heavy at import time.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from simcrop_bench.cli.options import RESULTS_OPTION, console
from simcrop_bench.errors import UserError

results_app = typer.Typer()  # its commands are merged into the main app


class BoardFormat(str, Enum):
    table = "table"
    csv = "csv"
    md = "md"
    latex = "latex"
    json = "json"


class TableFormat(str, Enum):
    latex = "latex"
    md = "md"
    csv = "csv"
    html = "html"


@results_app.command()
def leaderboard(
    task: str | None = typer.Option(None, "--task", "-t", help="Only this task."),
    method: str | None = typer.Option(None, "--method", "-m", help="Only this method."),
    profile: str | None = typer.Option(None, "--profile", "-p", help="Only this profile."),
    protocol: str | None = typer.Option(None, "--protocol", help="Only this protocol."),
    fmt: BoardFormat = typer.Option(BoardFormat.table, "--format", help="table, csv, md, latex or json."),
    results: Path = RESULTS_OPTION,
    reindex: bool = typer.Option(False, "--reindex", help="Rebuild the results index from every record first."),
):
    """Aggregate all run records: mean ± std over seeds per method × task × fraction."""
    from simcrop_bench.reporting import leaderboard as lb

    board = lb.leaderboard(results, task=task, method=method, profile=profile, protocol=protocol, reindex=reindex)
    if board.empty:
        raise UserError(f"{results}: no run records match (run `simcrop-bench run` first)")
    if fmt is BoardFormat.table:
        console().print(lb.rich_table(board))
    else:
        render = {"csv": lb.to_csv, "md": lb.to_markdown, "latex": lb.to_latex, "json": lb.to_json}[fmt.value]
        typer.echo(render(board), nl=False)


@results_app.command()
def table(
    fmt: TableFormat = typer.Option(TableFormat.latex, "--format", help="latex (booktabs), md, csv or html."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    task: list[str] | None = typer.Option(None, "--task", "-t", help="Only these tasks (repeatable)."),
    method: list[str] | None = typer.Option(None, "--method", "-m", help="Only these methods (repeatable)."),
    profile: str | None = typer.Option(None, "--profile", "-p", help="Only this profile."),
    protocol: str | None = typer.Option(None, "--protocol", help="Only this protocol."),
    caption: str | None = typer.Option(None, "--caption", help="Table caption."),
    layout: str = typer.Option("free", "--layout", help="free (every task), cls, seg or ablation."),
    cell: str = typer.Option(
        "std", "--cell", help="std: mean ± std over seeds; ci: mean [95 % patient-bootstrap interval]."
    ),
    reference: str = typer.Option(
        "auto", "--reference", help="Method to test every cell against (auto: simcrop if shown; none: no test)."
    ),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level: † where the Holm-adjusted p is ≤ alpha."),
    resamples: int = typer.Option(1000, "--resamples", help="Patient-bootstrap resamples (B) of --cell ci."),
    permutations: int = typer.Option(
        10_000,
        "--permutations",
        help="Random swaps of the paired permutation test (exact below 25 differing patients).",
    ),
    reference_rows: Path | None = typer.Option(
        None, "--reference-rows", help="CSV/YAML of published numbers, shown as italic rows."
    ),
    split_by: str | None = typer.Option(
        None, "--split-by", help="protocol, profile or data: show differing values as labelled sub-columns."
    ),
    explain: Path | None = typer.Option(
        None, "--explain", help="Also write a JSON sidecar: the runs and p-values behind every cell."
    ),
    results: Path = RESULTS_OPTION,
):
    """Paper-style table: methods × (task, fraction), best bold, second underlined, † significant vs SimCroP."""
    from simcrop_bench.reporting.tables.build import build_table
    from simcrop_bench.reporting.tables.model import FORMATS
    from simcrop_bench.run.preflight import outside_store
    from simcrop_bench.util.atomic import write_json, write_text

    for target, option in ((out, "--out"), (explain, "--explain")):
        if target is not None:
            outside_store(target, results, option)

    if fmt.value not in FORMATS:
        raise UserError(f"unknown table format {fmt.value!r}")
    built = build_table(
        results,
        layout=layout,
        tasks=task or None,
        methods=method or None,
        profile=profile,
        protocol=protocol,
        cell=cell,
        reference=reference,
        alpha=alpha,
        n_resamples=resamples,
        n_permutations=permutations,
        reference_rows=reference_rows,
        split_by=split_by,
    )
    text = built.render(fmt.value, caption)
    if explain is not None:
        write_json(explain, built.explain())
        typer.echo(f"wrote {explain}", err=True)
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        write_text(out, text)
        typer.echo(f"wrote {out}", err=True)


plot_app = typer.Typer(
    no_args_is_help=True, help="Figures for a paper column: data-efficiency and pretraining loss curves."
)
results_app.add_typer(plot_app, name="plot")


@plot_app.command("efficiency")
def plot_efficiency_command(
    task: str = typer.Option(..., "--task", "-t", help="Task whose curves to draw."),
    out: Path = typer.Option(..., "--out", "-o", help="Figure file: .png (300 dpi) or .pdf."),
    metric: str | None = typer.Option(None, "--metric", help="Metric to plot (default: the task's primary metric)."),
    profile: str | None = typer.Option(None, "--profile", "-p", help="Only this profile."),
    protocol: str | None = typer.Option(None, "--protocol", help="Only this protocol."),
    no_footnote: bool = typer.Option(
        False, "--no-footnote", help="Leave out the profile/protocol/synthetic note under the axes (camera-ready)."
    ),
    results: Path = RESULTS_OPTION,
):
    """Metric vs training fraction, one line per method: mean over seeds, band ± std (one seed: bootstrap CI)."""
    from simcrop_bench.reporting.plots import plot_efficiency
    from simcrop_bench.run.preflight import outside_store

    outside_store(out, results)
    data = plot_efficiency(
        results, task, out, metric=metric, profile=profile, protocol=protocol, footnote=not no_footnote
    )
    typer.echo(
        f"wrote {out} ({len(data.series)} methods, fractions "
        f"{', '.join(f'{f:g}%' for f in data.fractions)}{', synthetic twin' if data.synthetic else ''})"
    )


@plot_app.command("losses")
def plot_losses_command(
    method: str = typer.Option(..., "--method", "-m", help="Method whose stored pretraining(s) to draw."),
    out: Path = typer.Option(..., "--out", "-o", help="Figure file: .png (300 dpi) or .pdf."),
    pretrain_hash: str | None = typer.Option(None, "--hash", help="Only the pretraining whose hash starts with this."),
    component: list[str] | None = typer.Option(
        None, "--component", "-c", help="Column of metrics.jsonl to draw (repeatable; default: every loss*)."
    ),
    partial: bool = typer.Option(False, "--partial", help="Also draw pretrainings still in progress."),
    log_y: bool = typer.Option(False, "--log-y", help="Logarithmic loss axis."),
    smooth: int = typer.Option(1, "--smooth", help="Moving average over this many steps (raw curve kept faint)."),
    no_footnote: bool = typer.Option(False, "--no-footnote", help="Leave out the pretraining folder names."),
    results: Path = RESULTS_OPTION,
):
    """Pretraining loss curves (each loss component per optimizer step) from results/checkpoints/METHOD/."""
    from simcrop_bench.reporting.loss_curves import plot_losses
    from simcrop_bench.run.preflight import outside_store

    outside_store(out, results)
    runs = plot_losses(
        results,
        method,
        out,
        pretrain_hash=pretrain_hash,
        components=component or None,
        partial=partial,
        log_y=log_y,
        smooth=smooth,
        footnote=not no_footnote,
    )
    typer.echo(f"wrote {out} ({', '.join(run.label for run in runs)})")


@results_app.command()
def report(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for index.html and its figures."),
    results: Path = RESULTS_OPTION,
):
    """Static offline HTML report: leaderboard, paper tables, data-efficiency and loss plots, provenance."""
    from simcrop_bench.reporting.report import build_report
    from simcrop_bench.run.preflight import outside_store

    outside_store(out, results)
    built = build_report(results, out)
    typer.echo(f"wrote {built.index} ({len(built.images)} figures)")
