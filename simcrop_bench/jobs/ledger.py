"""The job ledger: what each sweep submitted, where its logs are, and what became of it.

``<results>/jobs/ledger.json`` lists one entry per job (a pretraining or one cell of an array):
sweep id, label, job id, executor, dependency, state, elapsed time, log paths, record folder.
It is the only local state the harness keeps about jobs; ``status`` refreshes it from the
scheduler (``sacct`` for SLURM, the job folder for local jobs). Writes are atomic, and a lock
file serialises concurrent CLI invocations.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from simcrop_bench.errors import UserError
from simcrop_bench.util.atomic import write_json
from simcrop_bench.util.locks import SHORT_S, file_lock

LEDGER_FILE = "ledger.json"
FINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "LOST",
    "SKIPPED",
}
SACCT_TIMEOUT_S = 30


@dataclass
class Entry:
    sweep: str
    label: str  # "pretrain mae" or "<task>/<method>/f<fraction>/s<seed>"
    kind: str  # pretrain | cell
    job_id: str
    executor: str
    state: str = "SUBMITTED"
    depends_on: str | None = None
    submitted_utc: str = field(default_factory=lambda: utc_now())
    elapsed: str = ""
    stdout: str | None = None
    stderr: str | None = None
    result_pickle: str | None = None
    record_dir: str | None = None
    error: str | None = None  # last line of the job's exception, when it failed

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def jobs_dir(results: Path) -> Path:
    return Path(results) / "jobs"


class Ledger:
    def __init__(self, results: Path):
        self.path = jobs_dir(results) / LEDGER_FILE

    def load(self) -> list[Entry]:
        if not self.path.is_file():
            return []
        try:
            return [Entry(**row) for row in json.loads(self.path.read_text())["jobs"]]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{self.path}: unreadable job ledger ({exc})") from None

    @contextmanager
    def editing(self) -> Iterator[list[Entry]]:
        """Read, let the caller change the list in place, write back atomically (under a lock)."""
        with file_lock(self.path.with_name(f".{LEDGER_FILE}.lock"), timeout=SHORT_S, what="the job ledger"):
            entries = self.load()
            yield entries
            write_json(self.path, {"jobs": [asdict(e) for e in entries]})

    def add(self, new: list[Entry]) -> None:
        with self.editing() as entries:
            entries.extend(new)

    def refresh(self) -> list[Entry]:
        """Update the states of unfinished jobs from the scheduler; return all entries."""
        with self.editing() as entries:
            pending = [e for e in entries if not e.final]
            slurm = [e for e in pending if e.executor == "slurm"]
            if slurm:
                _refresh_slurm(slurm)
            for entry in pending:
                if entry.executor == "local":
                    _refresh_local(entry)
                if entry.state == "FAILED" and entry.error is None:
                    entry.error = _error_line(entry)
            return list(entries)


def find(entries: list[Entry], ref: str) -> Entry:
    """The entry whose job id is ``ref`` (or whose label is, e.g. ``luna16_cls/mae/f100/s42``)."""
    matches = [e for e in entries if e.job_id == ref] or [e for e in entries if e.label == ref]
    if not matches:
        raise UserError(f"{ref}: no such job in the ledger (see `simcrop-bench status`)")
    return matches[-1]


def _refresh_slurm(entries: list[Entry]) -> None:
    base_ids = sorted({e.job_id.split("_")[0] for e in entries})
    try:
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-o", "JobID,State,Elapsed", "-j", ",".join(base_ids)],
            capture_output=True,
            text=True,
            timeout=SACCT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return  # scheduler unreachable: keep the last known states
    if out.returncode:
        return
    rows: dict[str, tuple[str, str]] = {}
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            rows[parts[0]] = (parts[1].split()[0] if parts[1] else "UNKNOWN", parts[2])
    for entry in entries:
        row = rows.get(entry.job_id)
        if row is None:  # a pending array is one row: 123_[0-3]
            base = entry.job_id.split("_")[0]
            row = next((v for k, v in rows.items() if k.startswith(f"{base}_[")), None)
        if row is not None:
            entry.state, entry.elapsed = row


def _refresh_local(entry: Entry) -> None:
    result = Path(entry.result_pickle) if entry.result_pickle else None
    if result is not None and result.is_file():
        outcome = _read_result(result)
        entry.state = "COMPLETED" if outcome and outcome[0] == "success" else "FAILED"
        started = datetime.strptime(entry.submitted_utc, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        entry.elapsed = _format_s(result.stat().st_mtime - started.timestamp())
        return
    try:
        os.kill(int(entry.job_id), 0)
        entry.state = "RUNNING"
    except (ValueError, ProcessLookupError, PermissionError):
        entry.state = "LOST"  # no result and no process: killed from outside


def _read_result(path: Path) -> tuple[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except Exception:  # noqa: BLE001 - a result we cannot unpickle counts as a failure
        return None


def _error_line(entry: Entry) -> str | None:
    """The last line of the job's traceback (result pickle), else of its stderr."""
    if entry.result_pickle and Path(entry.result_pickle).is_file():
        outcome = _read_result(Path(entry.result_pickle))
        if outcome and outcome[0] == "error":
            lines = [ln for ln in str(outcome[1]).strip().splitlines() if ln.strip()]
            return lines[-1][:300] if lines else None
    if entry.stderr and Path(entry.stderr).is_file():
        lines = [ln for ln in Path(entry.stderr).read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else None
    return None


def _format_s(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
