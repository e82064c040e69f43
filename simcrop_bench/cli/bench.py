"""``simcrop-bench bench ...``: the benchmarks of :mod:`simcrop_bench.bench` on the command line."""

from __future__ import annotations

import time
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


def _shape(text: str, option: str) -> tuple[int, int, int]:
    from simcrop_bench.errors import ConfigError

    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise ConfigError(f"{option} {text!r}: expected three positive integers, e.g. 512,512,300")
    return values  # type: ignore[return-value]


def _scratch(workdir: Path | None) -> Path | None:
    """``--workdir`` of the data-path benchmarks: an existing folder (they make their temporary trees inside it)."""
    from simcrop_bench.errors import ConfigError

    if workdir is not None and not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir}: not an existing folder")
    return workdir


@bench_app.command("loader")
def bench_loader_command(
    shape: str = typer.Option("512,512,300", "--shape", help="Stored volume (x, y, z): CT-RATE-sized by default."),
    roi: str = typer.Option("224,224,112", "--roi", help="Training input (the paper's)."),
    repeats: int = typer.Option(20, "--repeats", help="Volumes per fast chain (the median is reported)."),
    slow_repeats: int = typer.Option(3, "--slow-repeats", help="Volumes per chain that decodes the whole volume."),
    workdir: Path | None = typer.Option(None, "--workdir", help="Where the temporary volumes go (default: $TMPDIR)."),
):
    """Pretraining input: volumes/s per core at the paper input, before / after / floor, and cores per GPU."""
    from rich.table import Table

    from simcrop_bench.bench.flops import ASSUMED_MFU, H100_BF16_PEAK_FLOPS, simcrop_sample_flops
    from simcrop_bench.bench.flops import volumes_per_second_needed as needed
    from simcrop_bench.bench.loader import bench_loader
    from simcrop_bench.errors import ConfigError

    volume, crop = _shape(shape, "--shape"), _shape(roi, "--roi")
    if repeats < 1 or slow_repeats < 1:
        raise ConfigError("--repeats and --slow-repeats must be at least 1")
    if any(r > n for r, n in zip(crop, volume)):
        raise ConfigError(f"--roi {roi}: larger than the volume {shape} (the floor reads a crop of the volume)")
    timings, sizes = bench_loader(volume, crop, repeats, slow_repeats, _scratch(workdir))
    sample = simcrop_sample_flops()
    gpu_rate = needed(sample)
    floor = next(t for t in timings if t.reference).median_s
    out = console()
    table = Table(title=f"training input {'×'.join(map(str, crop))} from an int16 {'×'.join(map(str, volume))} volume")
    for column in ("chain", "store", "CPU s / volume", "volumes/s per core", "× floor", "cores per H100"):
        table.add_column(column, justify="left" if column in ("chain", "store") else "right")
    for t in timings:
        table.add_row(
            t.chain,
            t.store,
            f"{t.median_s:.4f}",
            f"{t.volumes_per_s:.2f}",
            f"{t.median_s / floor:.1f}",
            f"{gpu_rate / t.volumes_per_s:.0f}",
        )
    out.print(table)
    out.print(
        "store footprint of this volume: "
        + ", ".join(f"{fmt} {size / 2**20:.1f} MiB" for fmt, size in sizes.items())
        + f" ({sizes['nii'] / (2 * volume[0] * volume[1] * volume[2]):.3f} × 2 bytes per voxel for .nii)"
    )
    out.print(
        f"one paper-profile SimCroP training sample: {sample.train_step / 1e12:.2f} TFLOP "
        f"(forward: encoder {sample.encoder / 1e9:.0f}, vision decoder {sample.vision_decoder / 1e9:.0f}, "
        f"report decoder {sample.report_decoder / 1e9:.0f}, frozen text encoder "
        f"{sample.text_encoder_calls} × {sample.text_encoder_per_call / 1e9:.0f} GFLOP; "
        "backward = 2 × the trainable forward)"
    )
    out.print(
        f"assumed H100: {ASSUMED_MFU:.0%} of {H100_BF16_PEAK_FLOPS / 1e12:.0f} TFLOP/s dense bf16 → "
        f"{gpu_rate:.0f} volumes/s per GPU; each chain ran on one thread from a warm page cache, CPU time measured"
    )
    out.print(
        "every row ends collated into a batch (default_collate), as in training; floor: the same crop from a .npy "
        "memory map, windowed in plain NumPy, with the NIfTI's bytes in their order (x fastest) or in the training "
        "input's (z fastest, which a NIfTI store with a RAS array cannot have); × floor divides by the z-fastest one"
    )


@bench_app.command("prepare")
def bench_prepare_command(
    volumes: int = typer.Option(4, "--volumes", help="CT-RATE-sized volumes to convert per row."),
    shape: str = typer.Option("512,512,300", "--shape", help="Volume (x, y, z): CT-RATE-sized by default."),
    workdir: Path | None = typer.Option(None, "--workdir", help="Where the temporary trees go (default: $TMPDIR)."),
):
    """`data prepare` cost per volume (before / after, 1 and 2 workers) against decoding the official file."""
    from rich.table import Table

    from simcrop_bench.bench.prepare import bench_prepare
    from simcrop_bench.data.loading import available_cores
    from simcrop_bench.errors import ConfigError

    if volumes < 2:
        raise ConfigError("--volumes must be at least 2 (one per worker of the 2-worker row)")
    size = _shape(shape, "--shape")
    rows = bench_prepare(volumes, size, _scratch(workdir))
    decode, decode_cpu = rows[0].seconds_per_volume, rows[0].cpu_seconds_per_volume
    one = next(r for r in rows if r.what.startswith("after: .nii ") and r.workers == 1).seconds_per_volume
    table = Table(title=f"data prepare, CT-RATE v2, {volumes} int16 {'×'.join(map(str, size))} volumes")
    columns = ("what", "workers", "wall s / volume", "× decode", "CPU s / volume", "× decode CPU", "MiB / volume")
    for column in columns:
        table.add_column(column, justify="left" if column == "what" else "right")
    for r in rows:
        table.add_row(
            r.what,
            str(r.workers),
            f"{r.seconds_per_volume:.2f}",
            f"{r.seconds_per_volume / decode:.2f}",
            f"{r.cpu_seconds_per_volume:.2f}",
            f"{r.cpu_seconds_per_volume / decode_cpu:.2f}",
            f"{r.bytes_per_volume / 2**20:.1f}" if r.bytes_per_volume else "-",
        )
    out = console()
    out.print(table)
    two = rows[-1].seconds_per_volume
    out.print(
        f"scaling 1 → 2 workers: {one / two:.2f}× the throughput (linear: 2×) on {available_cores()} core(s) "
        "that other work may share; worker start-up included"
    )


@bench_app.command("significance")
def bench_significance_command(
    simulations: int = typer.Option(1000, "--simulations", help="Simulated test sets per row (and as many for power)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the table as Markdown to this file."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Rows computed in this many processes (same numbers)."),
):
    """False-positive rate of the paired tests between equal methods, and power, before and after #14."""
    from simcrop_bench.bench.significance import markdown, run_all
    from simcrop_bench.errors import UserError
    from simcrop_bench.util.atomic import write_text

    if simulations < 1 or not 0 < alpha < 1:
        raise UserError(
            f"bench significance: --simulations must be ≥ 1 and --alpha in (0, 1), got {simulations}, {alpha}"
        )
    out_console = console()

    def progress(row) -> None:
        out_console.print(
            f"{row.scenario.name}, {row.scenario.n_patients} patients, {row.n_seeds} seed(s): "
            f"FPR before {row.fpr['before']:.3f}, after {row.fpr['after']:.3f}; "
            f"power before {row.power['before']:.3f}, after {row.power['after']:.3f} ({row.seconds:.0f} s)"
        )

    rows = run_all(simulations, alpha, progress=progress, jobs=jobs)
    text = markdown(rows)
    out_console.print(text, markup=False, highlight=False)
    if out is not None:
        write_text(out, text + "\n")
        typer.echo(f"wrote {out}", err=True)


@bench_app.command("results")
def bench_results_command(
    records: int = typer.Option(10000, "--records", help="Generated run records for the leaderboard."),
    repeats: int = typer.Option(5, "--repeats", help="Runs of each timed command (the median is shown)."),
    grid_methods: int = typer.Option(
        10, "--grid-methods", help="Methods of the table grid (× 6 tasks × 5 seeds); 0: no table timing."
    ),
    permutations: int = typer.Option(
        10000, "--permutations", help="Monte Carlo sign flips of the table's paired test (exact below 25 patients)."
    ),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Also time parsing every record."),
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Where the generated results go (reused if present); default a temporary folder."
    ),
):
    """The results store at scale: `leaderboard` over generated records, `table` with significance over a
    real-size grid; wall time (median) and peak RSS of each command in a fresh process."""
    import shutil
    import statistics
    import tempfile

    from rich.table import Table

    from simcrop_bench.bench.results import generate_grid, generate_records, leaderboard_timings, table_timings
    from simcrop_bench.errors import UserError

    if records < 1 or repeats < 1 or grid_methods == 1 or grid_methods < 0:
        raise UserError("--records and --repeats must be at least 1, --grid-methods 0 or at least 2")
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="simcrop-bench-results-"))
    out = console()
    board_dir, grid_dir = base / f"records-{records}", base / f"grid-{grid_methods}"
    wanted = [(board_dir, lambda d: generate_records(d, records), f"{records} records")]
    if grid_methods:
        wanted.append(
            (grid_dir, lambda d: generate_grid(d, methods=grid_methods), f"{grid_methods}×6×5 runs with per_case.csv")
        )
    for folder, make, what in wanted:
        if not (folder / "runs").is_dir():
            started = time.perf_counter()
            make(folder)
            out.print(f"generated {what} in {folder} ({time.perf_counter() - started:.0f} s)")
    rows = leaderboard_timings(board_dir, repeats, baseline)
    if grid_methods:
        rows.append(table_timings(grid_dir, repeats, permutations))
    table = Table(title=f"results store: leaderboard over {records} records, table over {grid_methods}×6×5 runs")
    for column in ("command", "runs", "median (s)", "min – max (s)", "median CPU (s)", "peak RSS (MB)"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for timings in rows:
        walls = [t.wall_s for t in timings]
        table.add_row(
            timings[0].label,
            str(len(timings)),
            f"{statistics.median(walls):.2f}",
            f"{min(walls):.2f} – {max(walls):.2f}",
            f"{statistics.median(t.cpu_s for t in timings):.2f}",
            f"{max(t.peak_rss_mb for t in timings):.0f}",
        )
    out.print(table)
    if workdir is None:
        shutil.rmtree(base, ignore_errors=True)


@bench_app.command("pretrain")
def bench_pretrain_command(
    method: list[str] | None = typer.Option(
        None, "--method", "-m", help="Methods to time (repeatable; default simcrop, mae, simmim, clip, mrm)."
    ),
    profile: str = typer.Option("demo", "--profile", "-p", help="demo (CPU size) or paper (ViT-B, 224×224×112)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch: int | None = typer.Option(None, "--batch", help="Volumes per step (default: the profile's batch_size)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or bf16 (autocast)."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model first."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed steps first (compilation happens here)."),
    steps: int = typer.Option(5, "--steps", help="Timed steps (the median is shown)."),
    peak_tflops: float | None = typer.Option(
        None, "--peak-tflops", help="Peak TFLOP/s for MFU (default: known GPUs' dense datasheet peak; none on CPU)."
    ),
    set_: list[str] | None = typer.Option(None, "--set", help="Config override for every method (repeatable)."),
    plugin: list[str] | None = typer.Option(None, "--plugin", help="Extra method file or module (repeatable)."),
):
    """Training step of each method: step time, volumes/s, counted FLOPs and MFU (optionally compiled, bf16)."""
    from rich.table import Table

    from simcrop_bench.bench.pretrain import DEFAULT_METHODS, device_peak, time_method
    from simcrop_bench.errors import UserError
    from simcrop_bench.run.devices import resolve_device

    if precision not in ("fp32", "bf16"):
        raise UserError(f"--precision {precision}: expected fp32 or bf16")
    if steps < 1 or warmup < 0 or (batch is not None and batch < 1):
        raise UserError("--steps and --batch must be at least 1, --warmup at least 0")
    resolved = resolve_device(device)
    peak = device_peak(resolved, precision, peak_tflops)
    overrides = list(set_ or [])
    out = console()
    table = Table(
        title=f"pretraining step, {profile} profile, {resolved}, {precision}{', compiled' if compile_model else ''}"
    )
    for column in ("method", "batch", "step (s)", "volumes/s", "GFLOP/volume", "GFLOP/s", "MFU"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for name in method or DEFAULT_METHODS:
        size = batch or _profile_batch(name, profile, overrides, list(plugin or []))
        timing = time_method(
            name,
            profile=profile,
            device=resolved,
            batch_size=size,
            precision=precision,
            compile_model=compile_model,
            warmup=warmup,
            steps=steps,
            peak_flops=peak,
            overrides=overrides,
            plugins=list(plugin or []),
        )
        table.add_row(
            name,
            str(timing.batch),
            f"{timing.step_s:.3f}",
            f"{timing.volumes_per_s:.2f}",
            f"{timing.flops_per_sample / 1e9:.1f}",
            f"{timing.achieved_flops / 1e9:.1f}",
            "—" if timing.mfu is None else f"{100 * timing.mfu:.1f} %",
        )
    out.print(table)
    if peak is None:
        out.print("MFU needs a peak: pass --peak-tflops (no datasheet peak is known for this device)")


def _profile_batch(method: str, profile: str, overrides: list[str], plugins: list[str]) -> int:
    from simcrop_bench.run.cell import RunRequest, plan_run

    plan = plan_run(RunRequest(method=method, task="ctrate_cls", profile=profile, overrides=overrides, plugins=plugins))
    train = getattr(plan.config.method, "train", None)
    return train.batch_size if train is not None else 2


@bench_app.command("stress")
def bench_stress_command(
    processes: int = typer.Option(8, "--processes", "-n", help="Processes released together (at least 2)."),
    polls: int = typer.Option(10_000, "--polls", help="Reads of the record being replaced."),
    dataset: str = typer.Option("luna16", "--dataset", "-d", help="Whose synthetic twin the processes build."),
):
    """The stores under concurrency: N processes on one empty cache, then on one results root while a reader polls.

    Exit 1 on any failure.
    """
    from simcrop_bench.bench.stress import run_stress
    from simcrop_bench.data.datasets import get_dataset
    from simcrop_bench.errors import UserError

    if processes < 2 or polls < 1:
        raise UserError(f"--processes {processes} --polls {polls}: expected at least 2 processes and 1 poll")
    get_dataset(dataset)
    r = run_stress(processes, polls, dataset)
    out = console()
    twin = sorted(r.twin_seconds)
    out.print(
        f"twin: {processes} processes on one empty cache, {processes - len(r.twin_failures)} got a complete "
        f"{dataset} twin (waits {twin[0]:.1f}–{twin[-1]:.1f} s), {len(r.twin_failures)} failed"
    )
    out.print(f"records: {r.publishes} published by {processes - 1} processes, {len(r.publish_failures)} failed")
    out.print(
        f"reader: {r.polls} polls of a folder being replaced: {len(r.path_failures)} saw record.json without a "
        f"readable per_case.csv; {len(r.mixed_reads)} mixed reads with read_run_files "
        f"({r.path_pairs_across_versions} path reads spanned a replacement, each file whole)"
    )
    out.print(f"leftovers: {len(r.leftovers)}")
    for line in (r.twin_failures + r.publish_failures + r.path_failures + r.mixed_reads + r.leftovers)[:10]:
        typer.echo(f"  {line}")
    out.print(f"[{'red' if r.failures else 'green'}]{r.failures} failure(s)[/]")
    if r.failures:
        raise typer.Exit(1)
