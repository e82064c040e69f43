"""``simcrop-bench study ...``: pre-registered studies (:mod:`simcrop_bench.study`) on the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from simcrop_bench.errors import UserError

study_app = typer.Typer(no_args_is_help=True, help="Pre-registered studies: run them end to end, write their results.")

QUICK = {"patients": 16, "epochs": 1, "seeds": "42,43"}  # a smoke run of the whole pipeline in minutes


def _integers(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{option} {text}: expected comma-separated integers") from None


@study_app.command("signal")
def signal(
    patients: int | None = typer.Option(None, "--patients", help="Patients of the CT-RATE twin (design: 256)."),
    twin_seed: int | None = typer.Option(None, "--twin-seed", help="Seed of the twin (design: the project's)."),
    methods: str | None = typer.Option(None, "--methods", "-m", help="Comma-separated methods (design: all 8)."),
    fractions: str = typer.Option("1,10,100", "--fractions", "-f", help="Probe fractions in percent."),
    seeds: str | None = typer.Option(None, "--seeds", "-s", help="Comma-separated probe seeds (design: 42–46)."),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Pretraining budget in epochs, the same for every method (design: 2)."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Smoke run: 16 patients, 1 epoch, seeds 42,43 (unless given); labelled PILOT."
    ),
    results: Path = typer.Option(Path("results/study-signal"), "--results", help="The study's own results folder."),
    out: Path = typer.Option(Path("study-signal-results.md"), "--out", "-o", help="Results markdown to write."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    set_: list[str] | None = typer.Option(None, "--set", help="Extra override for every cell (makes it a pilot)."),
    report_only: bool = typer.Option(
        False, "--report-only", help="Run nothing: write the results file from the records already in --results."
    ),
):
    """The learning-signal study (docs/study-signal.md): 8 methods, same budget, linear probes at 1/10/100 %."""
    from simcrop_bench.study.signal import METHODS, SignalStudy, collect, run_study
    from simcrop_bench.study.signal_report import write_report

    if out.suffix != ".md":
        raise UserError(f"--out {out}: the results file is Markdown (.md)")
    preset = QUICK if quick else {}
    design = SignalStudy()
    study = SignalStudy(
        patients=patients or preset.get("patients", design.patients),
        twin_seed=design.twin_seed if twin_seed is None else twin_seed,
        methods=tuple(m for m in methods.split(",") if m) if methods else METHODS,
        fractions=_integers(fractions, "--fractions"),
        seeds=_integers(seeds or preset.get("seeds", ""), "--seeds") or design.seeds,
        epochs=epochs or preset.get("epochs", design.epochs),
        results=results,
        device=device,
        extra=list(set_ or []),
    )
    outcome = collect(study) if report_only else run_study(study, echo=typer.echo)
    path = write_report(study, outcome, out, argv=sys.argv[1:])
    typer.echo(f"wrote {path}")
