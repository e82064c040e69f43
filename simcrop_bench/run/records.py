"""Run records: one folder per run, whose path is the run's identity.

``<results>/runs/<task>/<method>/f<fraction>/s<seed>/<profile>-<config hash>/`` holds
``record.json`` (everything needed to interpret and reproduce the number),
``per_case.csv`` and the task's predictions. A run is staged in a hidden sibling
folder and renamed into place only when complete, so an interrupted run leaves no
record and a half-written record is never read.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from simcrop_bench.util.atomic import publish_dir, write_json, write_text

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"


def run_dir(results: Path, task: str, method: str, fraction: int, seed: int, profile: str, config_hash: str) -> Path:
    return results / "runs" / task / method / f"f{fraction}" / f"s{seed}" / f"{profile}-{config_hash}"


def existing_record(path: Path) -> dict[str, Any] | None:
    file = path / RECORD_FILE
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError:
        return None


def write_per_case(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_record(folder: Path, record: dict[str, Any]) -> None:
    write_json(folder / RECORD_FILE, {"schema_version": SCHEMA_VERSION, **record})


def publish_run(staging: Path, final: Path) -> None:
    """Publish a complete run folder: it replaces ``final`` whole, so a reader never sees an old
    ``record.json`` beside a new ``per_case.csv`` (or one without the other). The one place a record
    becomes visible: a results index hooks in here."""
    publish_dir(staging, final)
