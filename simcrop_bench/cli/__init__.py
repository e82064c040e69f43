"""The ``simcrop-bench`` command line: one module per verb group (typer and rich only at import time).

:mod:`.app` holds the typer application; ``main`` is the console-script entry point.
"""

from simcrop_bench.cli.app import main

__all__ = ["main"]
