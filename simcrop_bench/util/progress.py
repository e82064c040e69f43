"""Progress bars and status lines (rich), shared by every long loop."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)

LOG_LINES_ENV = "SIMCROP_BENCH_LOG_LINES"  # periodic log lines per loop (default 20; 0: none)
DEFAULT_LOG_LINES = 20


def log_interval(total: int, lines: int | None = None) -> int:
    """Log every this many of ``total`` steps so that a loop prints at most ``lines`` lines (0: never).

    ``lines`` defaults to ``$SIMCROP_BENCH_LOG_LINES`` or 20: a paper-scale run must not print
    tens of thousands of permanent lines, nor a demo run fewer than a handful.
    """
    if lines is None:
        text = os.environ.get(LOG_LINES_ENV, "")
        try:
            lines = int(text) if text else DEFAULT_LOG_LINES
        except ValueError:
            lines = DEFAULT_LOG_LINES
    if lines <= 0 or total <= 0:
        return 0
    return max(1, math.ceil(total / lines))


def log(message: str) -> None:
    """A status line on stderr (kept out of stdout so that tables and CSV can be piped)."""
    console.print(message, highlight=False, soft_wrap=True)  # piped to a log: one line, not cut at 80 columns


@contextmanager
def progress() -> Iterator[Progress]:
    """A live progress display; several bars (e.g. epochs and steps) can share it."""
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    with bar:
        yield bar


def track(items, description: str):
    """Iterate ``items`` behind a progress bar (for a loop that owns the display)."""
    items = list(items)
    with progress() as bar:
        task = bar.add_task(description, total=len(items), status="")
        for item in items:
            yield item
            bar.advance(task)
