"""The ``simcrop-bench`` command line.

Start-up stays fast: this module imports neither torch nor MONAI nor transformers;
each verb imports what it needs when it runs.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer

from simcrop_bench.cli.bench import bench_app
from simcrop_bench.cli.data import data_app
from simcrop_bench.cli.options import PLUGIN_OPTION, RESULTS_OPTION, console
from simcrop_bench.cli.results import results_app
from simcrop_bench.cli.study import study_app
from simcrop_bench.cli.weights import weights_app
from simcrop_bench.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Compare 3D CT pretraining methods against SimCroP and regenerate paper tables.",
)


class Kind(str, Enum):
    methods = "methods"
    tasks = "tasks"


@app.command("list")
def list_entries(kind: Kind = typer.Argument(..., help="methods or tasks"), plugin: list[str] | None = PLUGIN_OPTION):
    """List registered methods or tasks: name, kind and a one-line description."""
    from rich.table import Table

    from simcrop_bench import registry

    registry.discover(plugin or [])
    table = Table(title=f"registered {kind.value}")
    for column in ("name", "kind", "description", "source"):
        table.add_column(column)
    for name, entry_kind, description, origin in registry.entries(kind.value):
        table.add_row(name, entry_kind, description, _short_origin(origin))
    console().print(table)


def _short_origin(origin: str) -> str:
    from simcrop_bench.registry import REPO_ROOT

    try:
        return str(Path(origin).relative_to(REPO_ROOT))
    except ValueError:
        return origin


@app.command("check-method")
def check_method_command(
    name: str = typer.Argument(..., help="Registered method name (with --plugin for your own file)."),
    plugin: list[str] | None = PLUGIN_OPTION,
    set_: list[str] | None = typer.Option(
        None, "--set", help="Override a method field, e.g. method.mae.mask_ratio=0.6 (repeatable)."
    ),
    profile: str = typer.Option("demo", "--profile", "-p", help="Profile whose method settings to start from."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    grounding: bool = typer.Option(
        False, "--grounding", help="Also score sentence–patch grounding (top-K patches on the finding's mask)."
    ),
    grounding_root: Path | None = typer.Option(
        None, "--grounding-root", help="CT-RATE twin whose held-out volumes --grounding scores (default: tiny twin)."
    ),
):
    """Check a method against the contract in seconds (tiny encoder, tiny twin).

    One line per finding; exit 1 on a violation.
    """
    from simcrop_bench.pretraining.check_method import check_method

    if grounding_root is not None and not (grounding_root / "synthetic_meta" / "manifest.json").is_file():
        raise UserError(
            f"--grounding-root {grounding_root}: not a CT-RATE synthetic twin (no synthetic_meta/manifest.json)"
        )
    report = check_method(
        name,
        plugins=plugin or [],
        overrides=set_ or [],
        profile=profile,
        device=device,
        grounding=grounding or grounding_root is not None,
        grounding_root=grounding_root,
    )
    for line in report.lines():
        typer.echo(line)
    if report.violations:
        raise typer.Exit(1)


@app.command()
def run(
    method: str | None = typer.Option(
        None, "--method", "-m", help="Registered method name (see `list methods`); external with --weights."
    ),
    task: str = typer.Option(..., "--task", "-t", help="Registered task name (see `list tasks`)."),
    weights: Path | None = typer.Option(
        None, "--weights", help="Evaluate this encoder checkpoint (released SimCroP format) without pretraining."
    ),
    fraction: int | None = typer.Option(
        None, "--fraction", "-f", help="Training fraction in percent (default: the largest)."
    ),
    seed: list[int] | None = typer.Option(None, "--seed", "-s", help="Seed; repeat for several runs (default 42)."),
    profile: str = typer.Option(
        "demo", "--profile", "-p", help="demo (small, CPU-friendly) or paper (published sizes)."
    ),
    protocol: str = typer.Option(
        "heldout", "--protocol", help="heldout (selection on held-out training cases) or legacy (as published)."
    ),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Root of the task's dataset (default: env/config file, else the synthetic twin)."
    ),
    results: Path = RESULTS_OPTION,
    set_: list[str] | None = typer.Option(
        None, "--set", help="Override a config field, e.g. task.max_epochs=5 (repeatable)."
    ),
    plugin: list[str] | None = PLUGIN_OPTION,
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    executor: str = typer.Option(
        "inline", "--executor", help="Where the job runs: inline (this process), local (subprocesses), slurm."
    ),
    cluster: str | None = typer.Option(
        None, "--cluster", help="Cluster profile slurm/NAME.yaml (or a YAML path) for --executor slurm."
    ),
    gpus: int = typer.Option(
        1, "--gpus", help="GPUs (processes on a CPU profile) for the pretraining job: N tasks on one node."
    ),
    wait_s: float | None = typer.Option(
        None, "--wait", help="slurm: wait at most this many seconds for the jobs and print their states."
    ),
    force: bool = typer.Option(False, "--force", help="Run again even if an identical record exists."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config as JSON and exit."),
):
    """Pretrain (or reuse) the method's encoder, fine-tune and evaluate it on the task, store the record."""
    import json

    from simcrop_bench.errors import ConfigError
    from simcrop_bench.jobs.commands import check_job_options, for_jobs
    from simcrop_bench.jobs.executors import get_executor
    from simcrop_bench.run.cell import RunRequest, plan_run, run_job

    if method is None and weights is None:
        raise ConfigError("run needs --method NAME (see `list methods`) or --weights PATH")
    check_job_options(executor, cluster, gpus)
    requests = [
        RunRequest(
            method=method or "external",
            task=task,
            weights=str(weights) if weights else None,
            fraction=fraction,
            seed=s,
            profile=profile,
            protocol=protocol,
            overrides=list(set_ or []),
            data_root=str(data_root) if data_root else None,
            results=str(results),
            force=force,
            plugins=list(plugin or []),
            device=device,
            gpus=gpus,
        )
        for s in (seed or [42])
    ]
    if executor != "inline":
        requests = [for_jobs(r) for r in requests]
    plans = [plan_run(r) for r in requests]  # validates everything before any work starts
    if print_config:
        for plan in plans:
            typer.echo(json.dumps({**plan.config.to_dict(), "config_hash": plan.config.config_hash}, indent=2))
        return
    if executor != "inline":  # one cell per seed, as a sweep: pretraining job + dependent array
        from simcrop_bench.jobs.commands import run_plans

        raise typer.Exit(run_plans(plans, executor=executor, cluster=cluster, wait_s=wait_s, echo=typer.echo))
    from simcrop_bench.cli.summary import print_record, print_seed_summary

    jobs = get_executor(executor)
    records = []
    for req in requests:
        records.append(jobs.submit(run_job, req).result())
        print_record(records[-1])
    print_seed_summary(records)


@app.command()
def sweep(
    methods: list[str] = typer.Option(..., "--methods", "-m", help="Methods (repeatable, or comma-separated)."),
    tasks: list[str] = typer.Option(..., "--tasks", "-t", help="Tasks (repeatable, or comma-separated)."),
    fractions: list[str] | None = typer.Option(
        None, "--fractions", "-f", help="Fractions in percent (default: each task's largest)."
    ),
    seeds: list[str] | None = typer.Option(None, "--seeds", "-s", help="Seeds (default 42)."),
    executor: str = typer.Option("slurm", "--executor", help="slurm (sbatch arrays), local (subprocesses) or inline."),
    cluster: str | None = typer.Option(None, "--cluster", help="Cluster profile slurm/NAME.yaml (or a YAML path)."),
    gpus: int = typer.Option(1, "--gpus", help="GPUs (processes on a CPU profile) per pretraining job."),
    profile: str = typer.Option("demo", "--profile", "-p", help="demo or paper."),
    protocol: str = typer.Option("heldout", "--protocol", help="heldout or legacy."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a config field for every cell (repeatable)."),
    data_root: Path | None = typer.Option(None, "--data-root", help="Root of the tasks' dataset."),
    results: Path = RESULTS_OPTION,
    plugin: list[str] | None = PLUGIN_OPTION,
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (on the node)."),
    force: bool = typer.Option(False, "--force", help="Submit cells even if an identical record exists."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the plan (jobs, arrays, dependencies, estimate); submit nothing."
    ),
    wait_s: float | None = typer.Option(
        None, "--wait", help="Wait at most this many seconds for the jobs and print their states."
    ),
):
    """Submit methods × tasks × fractions × seeds: one pretraining job per method config, then an array of its cells."""
    from simcrop_bench.jobs.commands import run_sweep
    from simcrop_bench.run.cell import RunRequest

    def split(values):
        return [v for value in values or [] for v in str(value).split(",") if v]

    def integers(values, option):
        try:
            return [int(v) for v in split(values)]
        except ValueError:
            raise UserError(f"{option}: expected integers, got {', '.join(values)}") from None

    base = RunRequest(
        method="",
        task="",
        profile=profile,
        protocol=protocol,
        overrides=list(set_ or []),
        data_root=str(data_root) if data_root else None,
        results=str(results),
        force=force,
        plugins=list(plugin or []),
        device=device,
    )
    code = run_sweep(
        split(methods),
        split(tasks),
        integers(fractions, "--fractions"),
        integers(seeds, "--seeds") or [42],
        base,
        executor=executor,
        cluster=cluster,
        gpus=gpus,
        dry_run=dry_run,
        wait_s=wait_s,
        echo=typer.echo,
    )
    raise typer.Exit(code)


@app.command()
def status(
    sweep_id: str | None = typer.Option(None, "--sweep", help="Only this sweep (default: the latest)."),
    all_sweeps: bool = typer.Option(False, "--all", help="Jobs of every sweep."),
    results: Path = RESULTS_OPTION,
):
    """Jobs of past sweeps (cell, job id, state, elapsed, log), refreshed from the scheduler."""
    from simcrop_bench.jobs.commands import status as job_status

    for line in job_status(results, sweep_id, all_sweeps):
        typer.echo(line)


@app.command()
def cancel(
    jobs: list[str] | None = typer.Argument(None, help="Job ids or cell labels (see `status`)."),
    sweep_id: str | None = typer.Option(None, "--sweep", help="Every unfinished job of this sweep."),
    results: Path = RESULTS_OPTION,
):
    """Cancel submitted jobs (scancel for SLURM, SIGINT for local jobs)."""
    from simcrop_bench.jobs.commands import cancel as cancel_jobs

    for line in cancel_jobs(results, list(jobs or []), sweep_id):
        typer.echo(line)


@app.command()
def logs(
    job: str = typer.Argument(..., help="Job id or cell label (see `status`)."),
    stderr: bool = typer.Option(False, "--stderr", help="Only the error log."),
    tail: int | None = typer.Option(None, "--tail", "-n", help="Only the last N lines of each log."),
    results: Path = RESULTS_OPTION,
):
    """Print a job's logs (stdout, then stderr)."""
    from simcrop_bench.jobs.commands import logs as job_logs

    typer.echo(job_logs(results, job, stderr, tail))


@app.command()
def twin(
    dataset: str = typer.Argument(..., help="Dataset whose synthetic twin to write, e.g. luna16."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder to write (default: the cache used by `run`)."),
):
    """Write a dataset's deterministic synthetic twin in the dataset's real on-disk layout."""
    from simcrop_bench.data.roots import ensure_twin

    root = ensure_twin(dataset, out)
    typer.echo(str(root))


# The sub-apps import typer only; each verb imports what it needs when it runs.
app.registered_commands += results_app.registered_commands  # leaderboard, table, report: top-level verbs
app.registered_groups += results_app.registered_groups
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")
app.add_typer(weights_app, name="weights")
app.add_typer(study_app, name="study")


def _exit_on_sigterm(signum, frame) -> None:
    # `kill` (not -9) unwinds like Ctrl-C: staging folders and temporary files are removed on the way out.
    raise SystemExit(128 + signum)


def main() -> None:
    import signal

    from simcrop_bench.cli.usage import Abort, ClickException, NoArgsIsHelpError, usage_error_line

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        # standalone_mode=False: a command's typer.Exit code is returned, and usage errors reach us
        code = app(standalone_mode=False, prog_name="simcrop-bench")
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo(
            "interrupted; no record was written for the unfinished run (run the same command again: "
            "pretraining and fine-tuning continue from their last checkpoint)",
            err=True,
        )
        sys.exit(130)
    except Abort:  # click's Ctrl-C at a prompt
        sys.exit(130)
    except NoArgsIsHelpError as exc:  # a bare group: its help, as click prints it
        exc.show()
        sys.exit(exc.exit_code)
    except ClickException as exc:  # usage errors: one line with the nearest valid name, never a traceback
        typer.echo(usage_error_line(exc), err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
