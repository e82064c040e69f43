"""``simcrop-bench weights ...``: inspect, import and export encoder checkpoints (released SimCroP format)."""

from __future__ import annotations

from pathlib import Path

import typer

from simcrop_bench.cli.options import RESULTS_OPTION

weights_app = typer.Typer(
    no_args_is_help=True, help="Encoder checkpoints: inspect, import, export (released SimCroP format)."
)


@weights_app.command("inspect")
def weights_inspect(path: Path = typer.Argument(..., help="Checkpoint file (.pth/.pt).")):
    """Show what a checkpoint holds: encoder architecture, missing/unexpected encoder keys, pos_embed variant."""
    import json

    from simcrop_bench.run.weights import inspect_checkpoint

    typer.echo(json.dumps(inspect_checkpoint(path), indent=2, default=str))


@weights_app.command("import")
def weights_import(
    path: Path = typer.Argument(..., help="Checkpoint in the released SimCroP format ({'model': state_dict})."),
    name: str = typer.Option(..., "--name", help="Name to store it under (results/checkpoints/imported/NAME)."),
    results: Path = RESULTS_OPTION,
    allow_zero_pos_embed: bool = typer.Option(
        False, "--allow-zero-pos-embed", help="Accept a missing/zero pos_embed (the reference's silent behaviour)."
    ),
):
    """Validate a foreign encoder checkpoint (weights_only) and store it for runs."""
    from simcrop_bench.run.weights import import_checkpoint

    typer.echo(str(import_checkpoint(path, results, name, allow_zero_pos_embed=allow_zero_pos_embed)))


@weights_app.command("export")
def weights_export(
    path: Path = typer.Argument(..., help="Any checkpoint holding the encoder (native training file or released)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the released-format encoder."),
):
    """Write the encoder in the released SimCroP format: {'model': state_dict}, timm key names, float32."""
    from simcrop_bench.run.preflight import export_target
    from simcrop_bench.run.weights import export_checkpoint

    summary = export_checkpoint(path, export_target(out, path))
    typer.echo(f"wrote {summary['out']} ({summary['encoder_tensors']} tensors, sha256 {summary['sha256'][:12]})")
