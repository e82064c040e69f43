"""Progress bars and status lines (rich), shared by every long loop."""

from __future__ import annotations

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


def log(message: str) -> None:
    """A status line on stderr (kept out of stdout so that tables and CSV can be piped)."""
    console.print(message, highlight=False)


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
