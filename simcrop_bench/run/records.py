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
import os
from pathlib import Path
from typing import Any

from simcrop_bench.util.atomic import publish_dir, write_json, write_text

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"
PER_CASE_FILE = "per_case.csv"


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


def read_run_files(
    folder: Path, names: tuple[str, ...] = (RECORD_FILE, PER_CASE_FILE)
) -> dict[str, bytes | None] | None:
    """The files of one published version of a run folder, read together; None when it holds no record.

    The folder is opened once and its files read relative to it, so a concurrent ``--force``
    replacement cannot give an old record with a new per-case table; if the version being read
    is replaced meanwhile, the read starts again on the new one. A name the record does not have
    (``per_case.csv`` of a task without per-case rows) reads as None.
    """
    for _ in range(1000):
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            files: dict[str, bytes | None] = {}
            for name in names:
                try:
                    files[name] = _read_at(fd, name)
                except FileNotFoundError:
                    files[name] = None
            try:
                current = os.stat(folder).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:  # still the published version: published folders never change
                return files if files.get(RECORD_FILE, b"") is not None else None
        finally:
            os.close(fd)
    raise OSError(f"{folder}: replaced faster than it can be read")


def _read_at(folder_fd: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY, dir_fd=folder_fd)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()
