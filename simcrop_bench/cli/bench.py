"""``simcrop-bench bench ...``: the benchmarks of :mod:`simcrop_bench.bench.probe` on the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from simcrop_bench.cli.options import console

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: measure the speed claims on this machine.")


@bench_app.command("probe")
def bench_probe(
    task: str = typer.Option("ctrate_cls", "--task", "-t", help="A classification task."),
    method: str = typer.Option(
        "scratch", "--method", "-m", help="A method that needs no pretraining (or use --weights)."
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Probe this encoder checkpoint instead."),
    set_: list[str] | None = typer.Option(
        None, "--set", help="Extra config override passed to every run (repeatable)."
    ),
    seeds: int = typer.Option(1, "--seeds", help="Seeds per process (42, 43, …), as a paper table needs them."),
):
    """Linear probe end to end: `paper` vs `cached` (cold and warm feature cache), with the ratios."""
    from rich.table import Table

    from simcrop_bench.bench.probe import probe_protocols, probe_ratios

    extra = [arg for value in (set_ or []) for arg in ("--set", value)]
    timings = probe_protocols(task, method, weights, extra, seeds)
    table = Table(title=f"linear probe on {task} ({weights or method}, {seeds} seed(s) per process)")
    for column in ("protocol", "end to end (s)", "protocol only, per seed (s)", "metric"):
        table.add_column(column, justify="right" if column != "protocol" else "left")
    for t in timings:
        table.add_row(t.mode, f"{t.wall_s:.2f}", f"{t.protocol_s:.2f}", f"{t.metric} {t.value:.4f}")
    out = console()
    out.print(table)
    for name, ratio in probe_ratios(timings).items():
        out.print(f"paper ÷ cached, {name}: {ratio:.1f}×")


@bench_app.command("bootstrap")
def bench_bootstrap_command(
    rows: int = typer.Option(3009, "--rows", help="Test rows (CT-RATE: 3,009 volumes)."),
    classes: int = typer.Option(18, "--classes", help="Labels."),
    groups: int = typer.Option(1304, "--groups", help="Patients."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples."),
):
    """Patient-level bootstrap of macro AUROC at CT-RATE's size (protocol §9: seconds, not minutes)."""
    from simcrop_bench.stats.bootstrap import bench_bootstrap

    bench_bootstrap(n_rows=rows, n_classes=classes, n_groups=groups, n_resamples=resamples)
