"""``simcrop-bench data ...``: synthetic twins, layout checks, conversion, split import."""

from __future__ import annotations

from pathlib import Path

import typer

from simcrop_bench.cli.options import PLUGIN_OPTION, console
from simcrop_bench.errors import UserError

data_app = typer.Typer(no_args_is_help=True, help="Datasets: synthetic twins, layout checks, split import.")


@data_app.command("info")
def data_info(plugin: list[str] | None = PLUGIN_OPTION):
    """The five datasets: tasks, layouts, which have synthetic twins, where their roots are configured."""
    from rich.table import Table

    from simcrop_bench import registry
    from simcrop_bench.data.datasets import DATASETS
    from simcrop_bench.data.roots import configured_root

    registry.discover(plugin or [])
    tasks: dict[str, list[str]] = {}
    for name, *_ in registry.entries("tasks"):  # a task names its dataset; the dataset table does not list tasks
        tasks.setdefault(registry.get_task(name).dataset, []).append(name)
    table = Table(title="datasets")
    for column in ("dataset", "tasks", "layout", "synthetic twin", "configured root"):
        table.add_column(column)
    for info in DATASETS.values():
        configured = configured_root(info.name)
        root = f"{configured[0]} ({configured[1]})" if configured else "- (synthetic twin)"
        for i, (name, layout) in enumerate(info.layouts.items()):
            table.add_row(
                info.display if i == 0 else "",
                ", ".join(tasks.get(info.name, [])) if i == 0 else "",
                f"{name}: {layout.description}",
                "yes" if layout.writer else "not yet",
                root if i == 0 else "",
            )
    console().print(table)


@data_app.command("synth")
def data_synth(
    dataset: str = typer.Option(..., "--dataset", "-d", help="luna16, btcv, ... (see `data info`)."),
    layout: str = typer.Option(
        "simcrop", "--layout", "-l", help="official (as downloaded) or simcrop (what tasks read)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write; replaced atomically."),
    cases: int | None = typer.Option(None, "--cases", "-n", help="Number of cases (default: the twin's)."),
    seed: int = typer.Option(20251128, "--seed", help="Root seed: same seed, byte-identical files."),
):
    """Write a deterministic synthetic twin of a dataset in one of its real on-disk layouts."""
    from simcrop_bench.data.datasets import get_layout, synthesize
    from simcrop_bench.data.roots import check_twin_target
    from simcrop_bench.run.preflight import check_seed
    from simcrop_bench.util.atomic import staged_dir

    get_layout(dataset, layout)  # validate before touching the disk
    check_seed(seed)
    if cases is not None and cases < 1:
        raise UserError(f"--cases {cases}: expected at least 1")
    check_twin_target(out)
    with staged_dir(out) as staging:
        synthesize(dataset, layout, staging, cases=cases, seed=seed)
    typer.echo(f"wrote synthetic {dataset} ({layout} layout, seed {seed}) to {out}")


@data_app.command("check")
def data_check(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name (see `data info`)."),
    root: Path = typer.Option(..., "--root", "-r", help="Dataset root to check."),
    layout: str = typer.Option("simcrop", "--layout", "-l", help="Layout of the root."),
):
    """Check a dataset root: layout, counts, shapes, spacing, label values; every problem with its file."""
    from simcrop_bench.data.datasets import get_layout

    entry = get_layout(dataset, layout)
    if entry.checker is None:
        raise UserError(f"no checker for {dataset} in the {layout} layout yet")
    report = entry.checker()(root)
    out = console()
    out.print(f"[bold]{dataset}[/bold] ({layout} layout) at {root}")
    for key, value in sorted(report.counts.items()):
        out.print(f"  {key}: {value}")
    if report.shapes:
        out.print("  shapes: " + ", ".join(f"{'×'.join(map(str, s))} ({n})" for s, n in report.shapes.most_common(5)))
    if report.spacings:
        out.print("  spacing mm: " + ", ".join(f"{s} ({n})" for s, n in report.spacings.most_common(5)))
    if report.label_values:
        out.print(f"  label values: {sorted(report.label_values)}")
    for note in report.notes[:5]:
        out.print(f"  [yellow]note:[/yellow] {note}")
    if len(report.notes) > 5:
        out.print(f"  [yellow]note:[/yellow] … and {len(report.notes) - 5} more like these")
    if report.ok:
        out.print("[green]0 problems[/green]")
        return
    out.print(f"[red]{len(report.problems)} problem(s):[/red]")
    for problem in report.problems:
        typer.echo(f"  {problem}")
    raise typer.Exit(1)


@data_app.command("prepare")
def data_prepare(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name (see `data info`)."),
    source: Path = typer.Option(..., "--from", help="Root of the official (as downloaded) layout."),
    out: Path = typer.Option(..., "--out", "-o", help="Root of the SimCroP layout that tasks read."),
    layout: str = typer.Option("official", "--layout", "-l", help="Layout of --from."),
    version: str | None = typer.Option(None, "--version", help="CT-RATE: v2 (*_fixed, default) or v1 (rescaled once)."),
    spacing: str | None = typer.Option(None, "--spacing", help="CT-RATE: resample to this spacing, e.g. 1.5,1.5,3."),
    split_files: Path | None = typer.Option(None, "--split-files", help="Split files to place beside the volumes."),
    store_format: str | None = typer.Option(
        None, "--format", help="CT-RATE, RadChestCT, CC-CCII: nii (uncompressed, read fastest; default) or nii.gz."
    ),
    workers: int | None = typer.Option(
        None, "--workers", "-j", help="Local worker processes (LUNA16: threads, default 2; others: default 1)."
    ),
    executor: str = typer.Option("inline", "--executor", help="inline (this machine), local or slurm (job array)."),
    shards: int = typer.Option(1, "--shards", help="Array tasks for --executor local/slurm."),
    cluster: str | None = typer.Option(None, "--cluster", help="SLURM profile in slurm/ (e.g. demo)."),
):
    """Convert a downloaded layout into the one tasks read (resumable per case, in parallel or as a SLURM array)."""
    import inspect

    from simcrop_bench.data.datasets import get_layout
    from simcrop_bench.data.prepare.cases import Distribution

    entry = get_layout(dataset, layout)
    if entry.prepare is None:
        raise UserError(f"no converter from the {layout} layout of {dataset} yet")
    convert = entry.prepare()
    distribution = Distribution(1 if workers is None else workers, executor, shards, cluster)
    distribution.validate()
    accepted = inspect.signature(convert).parameters
    threads = workers if "workers" in accepted and executor == "inline" else None  # LUNA16's own thread pool
    options = {
        "workers": threads,
        "version": version,
        "split_files": split_files,
        "spacing": tuple(float(v) for v in spacing.split(",")) if spacing else None,
        "store_format": store_format,
        "distribution": distribution if distribution != Distribution() and threads is None else None,
    }
    if dataset == "btcv" and split_files is not None:
        options["split_file"] = options.pop("split_files") / "dataset.json" if split_files.is_dir() else split_files
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in accepted:
            flag = {"store_format": "format", "distribution": "workers/--executor/--shards"}.get(key, key)
            raise UserError(f"--{flag.replace('_', '-')} does not apply to {dataset}")
    summary = convert(source, out, **given)
    typer.echo(f"{dataset}: {summary.get('converted', 0)} converted, {summary.get('skipped', 0)} already done → {out}")


splits_app = typer.Typer(no_args_is_help=True, help="SimCroP split files: import and verify.")
data_app.add_typer(splits_app, name="splits")


@splits_app.command("import")
def splits_import(
    source: Path = typer.Option(
        ..., "--from", help="A SimCroP checkout (or its datasets/ folder) holding the split files."
    ),
    dest: Path | None = typer.Option(None, "--to", help="Where to keep them (default: <cache>/splits)."),
    task: list[str] | None = typer.Option(None, "--task", "-t", help="Only these tasks (repeatable)."),
):
    """Import SimCroP split files, verify SHA-256 and content (counts, fraction nesting, duplicated columns)."""
    from simcrop_bench.data.roots import cache_dir
    from simcrop_bench.data.splits.files import import_splits

    report = import_splits(source, dest or cache_dir() / "splits", task or None)
    typer.echo(report.format())
