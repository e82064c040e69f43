"""Options and the console shared by the command-line modules (typer and rich only)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

RESULTS_OPTION = typer.Option(Path("results"), "--results", help="Results folder (runs/ and checkpoints/ live here).")
PLUGIN_OPTION = typer.Option(
    None, "--plugin", help="Extra method/task file, folder or module to register (repeatable)."
)


def console():
    """A console for results on stdout; when piped, wide enough that tables are not squeezed."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)
