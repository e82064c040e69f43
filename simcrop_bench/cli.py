"""The ``simcrop-bench`` command line.

Start-up stays fast: this module imports neither torch nor MONAI nor transformers;
each verb imports what it needs when it runs.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from .errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Compare 3D CT pretraining methods against SimCroP and regenerate paper tables.",
)

RESULTS_OPTION = typer.Option(Path("results"), "--results", help="Results folder (runs/ and checkpoints/ live here).")
PLUGIN_OPTION = typer.Option(
    None, "--plugin", help="Extra method/task file, folder or module to register (repeatable)."
)


class Kind(str, Enum):
    methods = "methods"
    tasks = "tasks"


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


@app.command("list")
def list_entries(kind: Kind = typer.Argument(..., help="methods or tasks"), plugin: Optional[List[str]] = PLUGIN_OPTION):
    """List registered methods or tasks: name, kind and a one-line description."""
    from rich.table import Table

    from . import registry

    registry.discover(plugin or [])
    table = Table(title=f"registered {kind.value}")
    for column in ("name", "kind", "description", "source"):
        table.add_column(column)
    for name, entry_kind, description, origin in registry.entries(kind.value):
        table.add_row(name, entry_kind, description, _short_origin(origin))
    _console().print(table)


def _short_origin(origin: str) -> str:
    from .registry import REPO_ROOT

    try:
        return str(Path(origin).relative_to(REPO_ROOT))
    except ValueError:
        return origin


@app.command("check-method")
def check_method_command(
    name: str = typer.Argument(..., help="Registered method name (with --plugin for your own file)."),
    plugin: Optional[List[str]] = PLUGIN_OPTION,
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a method field, e.g. method.mae.mask_ratio=0.6 (repeatable)."),
    profile: str = typer.Option("demo", "--profile", "-p", help="Profile whose method settings to start from."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
):
    """Check a method against the contract in seconds (tiny encoder, tiny twin): one line per finding, exit 1 on a violation."""
    from .check_method import check_method

    report = check_method(name, plugins=plugin or [], overrides=set_ or [], profile=profile, device=device)
    for line in report.lines():
        typer.echo(line)
    if report.violations:
        raise typer.Exit(1)


@app.command()
def run(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Registered method name (see `list methods`); external with --weights."),
    task: str = typer.Option(..., "--task", "-t", help="Registered task name (see `list tasks`)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Evaluate this encoder checkpoint (released SimCroP format) without pretraining."),
    fraction: Optional[int] = typer.Option(None, "--fraction", "-f", help="Training fraction in percent (default: the largest)."),
    seed: Optional[List[int]] = typer.Option(None, "--seed", "-s", help="Seed; repeat for several runs (default 42)."),
    profile: str = typer.Option("demo", "--profile", "-p", help="demo (small, CPU-friendly) or paper (published sizes)."),
    protocol: str = typer.Option("heldout", "--protocol", help="heldout (selection on held-out training cases) or legacy (as published)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Root of the task's dataset (default: env/config file, else the synthetic twin)."),
    results: Path = RESULTS_OPTION,
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config field, e.g. task.max_epochs=5 (repeatable)."),
    plugin: Optional[List[str]] = PLUGIN_OPTION,
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    executor: str = typer.Option("inline", "--executor", help="Where the job runs: inline (this process), local (subprocesses), slurm."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Cluster profile slurm/NAME.yaml (or a YAML path) for --executor slurm."),
    gpus: int = typer.Option(1, "--gpus", help="GPUs (processes on a CPU profile) for the pretraining job: N tasks on one node."),
    wait_s: Optional[float] = typer.Option(None, "--wait", help="slurm: wait at most this many seconds for the jobs and print their states."),
    force: bool = typer.Option(False, "--force", help="Run again even if an identical record exists."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config as JSON and exit."),
):
    """Pretrain (or reuse) the method's encoder, fine-tune and evaluate it on the task, store the record."""
    import json

    from .executors import get_executor
    from .runner import RunRequest, plan_run, run_job

    from .errors import ConfigError

    if method is None and weights is None:
        raise ConfigError("run needs --method NAME (see `list methods`) or --weights PATH")
    requests = [
        RunRequest(
            method=method or "external", task=task, weights=str(weights) if weights else None, fraction=fraction, seed=s, profile=profile, protocol=protocol,
            overrides=list(set_ or []), data_root=str(data_root) if data_root else None,
            results=str(results), force=force, plugins=list(plugin or []), device=device,
        )
        for s in (seed or [42])
    ]
    plans = [plan_run(r) for r in requests]  # validates everything before any work starts
    if print_config:
        for plan in plans:
            typer.echo(json.dumps({**plan.config.to_dict(), "config_hash": plan.config.config_hash}, indent=2))
        return
    if gpus != 1 and executor == "inline":
        raise ConfigError(f"--gpus {gpus} starts one process per GPU: use --executor local or slurm")
    if executor != "inline":  # a one-cell-per-seed sweep: pretraining job + dependent array
        from .job_commands import run_sweep

        code = run_sweep([requests[0].method], [task], [plans[0].config.run.fraction], [r.seed for r in requests],
                         requests[0], executor=executor, cluster=cluster, gpus=gpus, dry_run=False,
                         wait_s=wait_s, echo=typer.echo)
        raise typer.Exit(code)
    jobs = get_executor(executor)
    for req in requests:
        record = jobs.submit(run_job, req).result()
        _print_summary(record)


@app.command()
def sweep(
    methods: List[str] = typer.Option(..., "--methods", "-m", help="Methods (repeatable, or comma-separated)."),
    tasks: List[str] = typer.Option(..., "--tasks", "-t", help="Tasks (repeatable, or comma-separated)."),
    fractions: Optional[List[str]] = typer.Option(None, "--fractions", "-f", help="Fractions in percent (default: each task's largest)."),
    seeds: Optional[List[str]] = typer.Option(None, "--seeds", "-s", help="Seeds (default 42)."),
    executor: str = typer.Option("slurm", "--executor", help="slurm (sbatch arrays), local (subprocesses) or inline."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Cluster profile slurm/NAME.yaml (or a YAML path)."),
    gpus: int = typer.Option(1, "--gpus", help="GPUs (processes on a CPU profile) per pretraining job."),
    profile: str = typer.Option("demo", "--profile", "-p", help="demo or paper."),
    protocol: str = typer.Option("heldout", "--protocol", help="heldout or legacy."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config field for every cell (repeatable)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Root of the tasks' dataset."),
    results: Path = RESULTS_OPTION,
    plugin: Optional[List[str]] = PLUGIN_OPTION,
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (on the node)."),
    force: bool = typer.Option(False, "--force", help="Submit cells even if an identical record exists."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (jobs, arrays, dependencies, estimate); submit nothing."),
    wait_s: Optional[float] = typer.Option(None, "--wait", help="Wait at most this many seconds for the jobs and print their states."),
):
    """Submit methods × tasks × fractions × seeds: one pretraining job per method config, then an array of its cells."""
    from .job_commands import run_sweep
    from .runner import RunRequest

    def split(values):
        return [v for value in values or [] for v in str(value).split(",") if v]

    def integers(values, option):
        try:
            return [int(v) for v in split(values)]
        except ValueError:
            raise UserError(f"{option}: expected integers, got {', '.join(values)}") from None

    base = RunRequest(method="", task="", profile=profile, protocol=protocol, overrides=list(set_ or []),
                      data_root=str(data_root) if data_root else None, results=str(results), force=force,
                      plugins=list(plugin or []), device=device)
    code = run_sweep(split(methods), split(tasks), integers(fractions, "--fractions"),
                     integers(seeds, "--seeds") or [42], base, executor=executor, cluster=cluster, gpus=gpus,
                     dry_run=dry_run, wait_s=wait_s, echo=typer.echo)
    raise typer.Exit(code)


@app.command()
def status(
    sweep_id: Optional[str] = typer.Option(None, "--sweep", help="Only this sweep (default: the latest)."),
    all_sweeps: bool = typer.Option(False, "--all", help="Jobs of every sweep."),
    results: Path = RESULTS_OPTION,
):
    """Jobs of past sweeps (cell, job id, state, elapsed, log), refreshed from the scheduler."""
    from .job_commands import status as job_status

    for line in job_status(results, sweep_id, all_sweeps):
        typer.echo(line)


@app.command()
def cancel(
    jobs: Optional[List[str]] = typer.Argument(None, help="Job ids or cell labels (see `status`)."),
    sweep_id: Optional[str] = typer.Option(None, "--sweep", help="Every unfinished job of this sweep."),
    results: Path = RESULTS_OPTION,
):
    """Cancel submitted jobs (scancel for SLURM, SIGINT for local jobs)."""
    from .job_commands import cancel as cancel_jobs

    for line in cancel_jobs(results, list(jobs or []), sweep_id):
        typer.echo(line)


@app.command()
def logs(
    job: str = typer.Argument(..., help="Job id or cell label (see `status`)."),
    stderr: bool = typer.Option(False, "--stderr", help="Only the error log."),
    tail: Optional[int] = typer.Option(None, "--tail", "-n", help="Only the last N lines of each log."),
    results: Path = RESULTS_OPTION,
):
    """Print a job's logs (stdout, then stderr)."""
    from .job_commands import logs as job_logs

    typer.echo(job_logs(results, job, stderr, tail))


def _console():
    """A console for results on stdout; when piped, wide enough that tables are not squeezed."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def _print_summary(record: dict) -> None:
    from rich.table import Table

    console = _console()
    metric = record["primary_metric"]
    if record.get("skipped"):
        console.print(f"[dim]exists, skipped (use --force to rerun):[/dim] {record['record_dir']}")
    console.print(f"[bold]{record['method']} → {record['task']}[/bold]  fraction {record['fraction']}%  "
                  f"seed {record['seed']}  ({record['profile']} profile, {record['protocol']} protocol"
                  f"{', [yellow]SYNTHETIC data[/yellow]' if record['synthetic'] else ''})")
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row(f"[bold]{metric}[/bold]", f"[bold]{record['metrics'][metric]:.4f}[/bold]")
    for name, value in record.get("per_class", {}).get(metric, {}).items():
        table.add_row(f"  {name}", f"{value:.4f}")
    for name, value in record["metrics"].items():
        if name != metric:
            table.add_row(name, f"{value:.4f}")
    table.add_row("wall time", f"{record['wall_time_s']:.0f} s")
    table.add_row("peak memory", f"{record['peak_memory_mb']:.0f} MB")
    console.print(table)
    console.print(f"record: {record['record_dir']}/record.json")


@app.command()
def leaderboard(
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Only this task."),
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Only this method."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Only this profile."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="Only this protocol."),
    fmt: BoardFormat = typer.Option(BoardFormat.table, "--format", help="table, csv, md, latex or json."),
    results: Path = RESULTS_OPTION,
):
    """Aggregate all run records: mean ± std over seeds per method × task × fraction."""
    from . import leaderboard as lb

    board = lb.leaderboard(results, task=task, method=method, profile=profile, protocol=protocol)
    if board.empty:
        raise UserError(f"{results}: no run records match (run `simcrop-bench run` first)")
    if fmt is BoardFormat.table:
        _console().print(lb.rich_table(board))
    else:
        render = {"csv": lb.to_csv, "md": lb.to_markdown, "latex": lb.to_latex, "json": lb.to_json}[fmt.value]
        typer.echo(render(board), nl=False)


@app.command()
def table(
    fmt: TableFormat = typer.Option(TableFormat.latex, "--format", help="latex (booktabs), md, csv or html."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    task: Optional[List[str]] = typer.Option(None, "--task", "-t", help="Only these tasks (repeatable)."),
    method: Optional[List[str]] = typer.Option(None, "--method", "-m", help="Only these methods (repeatable)."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Only this profile."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="Only this protocol."),
    caption: Optional[str] = typer.Option(None, "--caption", help="Table caption."),
    layout: str = typer.Option("free", "--layout", help="free (every task), cls, seg or ablation."),
    cell: str = typer.Option("std", "--cell", help="std: mean ± std over seeds; ci: mean [95 % patient-bootstrap interval]."),
    reference: str = typer.Option("auto", "--reference", help="Method to test every cell against (auto: simcrop if shown; none: no test)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level after Holm correction (marked †)."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples (B) of the paired test and of --cell ci."),
    reference_rows: Optional[Path] = typer.Option(None, "--reference-rows", help="CSV/YAML of published numbers, shown as italic rows."),
    split_by: Optional[str] = typer.Option(None, "--split-by", help="protocol, profile or data: show differing values as labelled sub-columns."),
    explain: Optional[Path] = typer.Option(None, "--explain", help="Also write a JSON sidecar: the runs and p-values behind every cell."),
    results: Path = RESULTS_OPTION,
):
    """Paper-style table: methods × (task, fraction), best bold, second underlined, † significant vs SimCroP."""
    from .atomic import write_json, write_text
    from .tables import FORMATS, build_table

    if fmt.value not in FORMATS:
        raise UserError(f"unknown table format {fmt.value!r}")
    built = build_table(results, layout=layout, tasks=task or None, methods=method or None, profile=profile,
                        protocol=protocol, cell=cell, reference=reference, alpha=alpha, n_resamples=resamples,
                        reference_rows=reference_rows, split_by=split_by)
    text = built.render(fmt.value, caption)
    if explain is not None:
        write_json(explain, built.explain())
        typer.echo(f"wrote {explain}", err=True)
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        write_text(out, text)
        typer.echo(f"wrote {out}", err=True)


@app.command()
def twin(
    dataset: str = typer.Argument(..., help="Dataset whose synthetic twin to write, e.g. luna16."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write (default: the cache used by `run`)."),
):
    """Write a dataset's deterministic synthetic twin in the dataset's real on-disk layout."""
    from .data.roots import ensure_twin

    root = ensure_twin(dataset, out)
    typer.echo(str(root))


from .bench_cli import bench_app  # noqa: E402  (typer only; the benchmarks import on use)

app.add_typer(bench_app, name="bench")

data_app = typer.Typer(no_args_is_help=True, help="Datasets: synthetic twins, layout checks, split import.")
app.add_typer(data_app, name="data")


@data_app.command("info")
def data_info():
    """The five datasets: tasks, layouts, which have synthetic twins, where their roots are configured."""
    from rich.table import Table

    from .data.datasets import DATASETS
    from .data.roots import configured_root

    table = Table(title="datasets")
    for column in ("dataset", "tasks", "layout", "synthetic twin", "configured root"):
        table.add_column(column)
    for info in DATASETS.values():
        configured = configured_root(info.name)
        root = f"{configured[0]} ({configured[1]})" if configured else "- (synthetic twin)"
        for i, (name, layout) in enumerate(info.layouts.items()):
            table.add_row(
                info.display if i == 0 else "", ", ".join(info.tasks) if i == 0 else "",
                f"{name}: {layout.description}", "yes" if layout.writer else "not yet", root if i == 0 else "",
            )
    _console().print(table)


@data_app.command("synth")
def data_synth(
    dataset: str = typer.Option(..., "--dataset", "-d", help="luna16, btcv, ... (see `data info`)."),
    layout: str = typer.Option("simcrop", "--layout", "-l", help="official (as downloaded) or simcrop (what tasks read)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write; replaced atomically."),
    cases: Optional[int] = typer.Option(None, "--cases", "-n", help="Number of cases (default: the twin's)."),
    seed: int = typer.Option(20251128, "--seed", help="Root seed: same seed, byte-identical files."),
):
    """Write a deterministic synthetic twin of a dataset in one of its real on-disk layouts."""
    from .atomic import staged_dir
    from .data.datasets import get_layout, synthesize

    get_layout(dataset, layout)  # validate before touching the disk
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
    from .data.datasets import get_layout, resolve

    entry = get_layout(dataset, layout)
    if entry.checker is None:
        raise UserError(f"no checker for {dataset} in the {layout} layout yet")
    report = resolve(entry.checker)(root)
    console = _console()
    console.print(f"[bold]{dataset}[/bold] ({layout} layout) at {root}")
    for key, value in sorted(report.counts.items()):
        console.print(f"  {key}: {value}")
    if report.shapes:
        console.print("  shapes: " + ", ".join(f"{'×'.join(map(str, s))} ({n})" for s, n in report.shapes.most_common(5)))
    if report.spacings:
        console.print("  spacing mm: " + ", ".join(f"{s} ({n})" for s, n in report.spacings.most_common(5)))
    if report.label_values:
        console.print(f"  label values: {sorted(report.label_values)}")
    for note in report.notes[:5]:
        console.print(f"  [yellow]note:[/yellow] {note}")
    if len(report.notes) > 5:
        console.print(f"  [yellow]note:[/yellow] … and {len(report.notes) - 5} more like these")
    if report.ok:
        console.print("[green]0 problems[/green]")
        return
    console.print(f"[red]{len(report.problems)} problem(s):[/red]")
    for problem in report.problems:
        typer.echo(f"  {problem}")
    raise typer.Exit(1)


@data_app.command("prepare")
def data_prepare(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name (see `data info`)."),
    source: Path = typer.Option(..., "--from", help="Root of the official (as downloaded) layout."),
    out: Path = typer.Option(..., "--out", "-o", help="Root of the SimCroP layout that tasks read."),
    layout: str = typer.Option("official", "--layout", "-l", help="Layout of --from."),
    version: Optional[str] = typer.Option(None, "--version", help="CT-RATE: v2 (*_fixed, default) or v1 (rescaled once)."),
    spacing: Optional[str] = typer.Option(None, "--spacing", help="CT-RATE: resample to this spacing, e.g. 1.5,1.5,3."),
    split_files: Optional[Path] = typer.Option(None, "--split-files", help="Split files to place beside the volumes."),
):
    """Convert a downloaded layout into the one tasks read (resumable: finished cases are skipped)."""
    import inspect

    from .data.datasets import get_layout, resolve

    entry = get_layout(dataset, layout)
    if entry.prepare is None:
        raise UserError(f"no converter from the {layout} layout of {dataset} yet")
    convert = resolve(entry.prepare)
    options = {"version": version, "split_files": split_files,
               "spacing": tuple(float(v) for v in spacing.split(",")) if spacing else None}
    accepted = inspect.signature(convert).parameters
    if dataset == "btcv" and split_files is not None:
        options["split_file"] = options.pop("split_files") / "dataset.json" if split_files.is_dir() else split_files
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in accepted:
            raise UserError(f"--{key.replace('_', '-')} does not apply to {dataset}")
    summary = convert(source, out, **given)
    typer.echo(f"{dataset}: {summary.get('converted', 0)} converted, {summary.get('skipped', 0)} already done "
               f"→ {out}")


splits_app = typer.Typer(no_args_is_help=True, help="SimCroP split files: import and verify.")
data_app.add_typer(splits_app, name="splits")


@splits_app.command("import")
def splits_import(
    source: Path = typer.Option(..., "--from", help="A SimCroP checkout (or its datasets/ folder) holding the split files."),
    dest: Optional[Path] = typer.Option(None, "--to", help="Where to keep them (default: <cache>/splits)."),
    task: Optional[List[str]] = typer.Option(None, "--task", "-t", help="Only these tasks (repeatable)."),
):
    """Import SimCroP split files, verify SHA-256 and content (counts, fraction nesting, duplicated columns)."""
    from .data.roots import cache_dir
    from .data.split_files import import_splits

    report = import_splits(source, dest or cache_dir() / "splits", task or None)
    typer.echo(report.format())


weights_app = typer.Typer(no_args_is_help=True, help="Encoder checkpoints: inspect, import, export (released SimCroP format).")
app.add_typer(weights_app, name="weights")


@weights_app.command("inspect")
def weights_inspect(path: Path = typer.Argument(..., help="Checkpoint file (.pth/.pt).")):
    """Show what a checkpoint holds: encoder architecture, missing/unexpected encoder keys, pos_embed variant."""
    import json

    from .weights import inspect_checkpoint

    typer.echo(json.dumps(inspect_checkpoint(path), indent=2, default=str))


@weights_app.command("import")
def weights_import(
    path: Path = typer.Argument(..., help="Checkpoint in the released SimCroP format ({'model': state_dict})."),
    name: str = typer.Option(..., "--name", help="Name to store it under (results/checkpoints/imported/NAME)."),
    results: Path = RESULTS_OPTION,
    allow_zero_pos_embed: bool = typer.Option(False, "--allow-zero-pos-embed",
                                              help="Accept a missing/zero pos_embed (the reference's silent behaviour)."),
):
    """Validate a foreign encoder checkpoint (weights_only) and store it for runs."""
    from .weights import import_checkpoint

    typer.echo(str(import_checkpoint(path, results, name, allow_zero_pos_embed=allow_zero_pos_embed)))


@weights_app.command("export")
def weights_export(
    path: Path = typer.Argument(..., help="Any checkpoint holding the encoder (native training file or released)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the released-format encoder."),
):
    """Write the encoder in the released SimCroP format: {'model': state_dict}, timm key names, float32."""
    from .weights import export_checkpoint

    summary = export_checkpoint(path, out)
    typer.echo(f"wrote {summary['out']} ({summary['encoder_tensors']} tensors, sha256 {summary['sha256'][:12]})")


plot_app = typer.Typer(no_args_is_help=True, help="Figures for a paper column: data-efficiency and pretraining loss curves.")
app.add_typer(plot_app, name="plot")


@plot_app.command("efficiency")
def plot_efficiency_command(
    task: str = typer.Option(..., "--task", "-t", help="Task whose curves to draw."),
    out: Path = typer.Option(..., "--out", "-o", help="Figure file: .png (300 dpi) or .pdf."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Metric to plot (default: the task's primary metric)."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Only this profile."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="Only this protocol."),
    results: Path = RESULTS_OPTION,
):
    """Metric vs training fraction, one line per method: mean over seeds, band ± std (one seed: bootstrap CI)."""
    from .plots import plot_efficiency

    data = plot_efficiency(results, task, out, metric=metric, profile=profile, protocol=protocol)
    typer.echo(f"wrote {out} ({len(data.series)} methods, fractions "
               f"{', '.join(f'{f:g}%' for f in data.fractions)}{', synthetic twin' if data.synthetic else ''})")


@plot_app.command("losses")
def plot_losses_command(
    method: str = typer.Option(..., "--method", "-m", help="Method whose stored pretraining(s) to draw."),
    out: Path = typer.Option(..., "--out", "-o", help="Figure file: .png (300 dpi) or .pdf."),
    pretrain_hash: Optional[str] = typer.Option(None, "--hash", help="Only the pretraining whose hash starts with this."),
    component: Optional[List[str]] = typer.Option(None, "--component", "-c", help="Column of metrics.jsonl to draw (repeatable; default: every loss*)."),
    partial: bool = typer.Option(False, "--partial", help="Also draw pretrainings still in progress."),
    log_y: bool = typer.Option(False, "--log-y", help="Logarithmic loss axis."),
    results: Path = RESULTS_OPTION,
):
    """Pretraining loss curves (each loss component per optimizer step) from results/checkpoints/METHOD/."""
    from .plots import plot_losses

    runs = plot_losses(results, method, out, pretrain_hash=pretrain_hash, components=component or None,
                       partial=partial, log_y=log_y)
    typer.echo(f"wrote {out} ({', '.join(run.label for run in runs)})")


@app.command()
def report(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for index.html and its figures."),
    results: Path = RESULTS_OPTION,
):
    """Static offline HTML report: leaderboard, paper tables, data-efficiency and loss plots, provenance."""
    from .report import build_report

    built = build_report(results, out)
    typer.echo(f"wrote {built.index} ({len(built.images)} figures)")


def main() -> None:
    try:
        code = app(standalone_mode=False)  # returns a command's typer.Exit code instead of exiting
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted; no record was written for the unfinished run", err=True)
        sys.exit(130)
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
