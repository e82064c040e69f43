"""Running the per-case conversions of ``data prepare``: in this process, in local worker processes, or as the
shards of a submitit job array (``local`` or ``slurm``), resumable per case.

Workers never touch ``prepare_manifest.json``: each finished case leaves its manifest entry as one small JSON
record under ``.prepare_cases/`` (written atomically), and only the calling process folds those records into the
manifest — at the start (what an interrupted run finished), while it waits, and at the end. A case therefore
counts as done exactly when its output and its record exist, whichever process or node converted it, and a rerun
with the same settings converts only what is missing or whose source changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simcrop_bench.data.prepare.manifest import save_prepare_manifest, up_to_date
from simcrop_bench.errors import ConfigError, UserError
from simcrop_bench.util.atomic import write_json
from simcrop_bench.util.progress import log, progress

RECORDS = ".prepare_cases"
EXECUTORS = ("inline", "local", "slurm")


@dataclass(frozen=True)
class Distribution:
    """How ``data prepare`` spreads its cases: ``workers`` local processes (``inline``), or ``shards`` array
    tasks of a submitit ``local`` / ``slurm`` executor (``cluster``: a profile in ``slurm/``)."""

    workers: int = 1
    executor: str = "inline"
    shards: int = 1
    cluster: str | None = None
    logs: Path | None = None  # submitit folders (default: <dst>/.prepare_jobs)

    def validate(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor {self.executor}: expected one of {', '.join(EXECUTORS)}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {self.workers}")
        if self.shards < 1:
            raise ConfigError(f"--shards must be at least 1, not {self.shards}")
        if self.executor == "inline" and self.shards != 1:
            raise ConfigError("--shards needs --executor local or slurm (use --workers for local processes)")


@dataclass(frozen=True)
class Case:
    """One conversion: its manifest ``key``, the ``output`` file it writes, its source ``stamp`` and the
    converter's own arguments (picklable: they travel to workers and array tasks)."""

    key: str
    output: Path
    stamp: dict
    args: tuple = field(default_factory=tuple)


Convert = Callable[[Case], dict[str, Any]]  # a case → its manifest entry (without "source")


def _records_dir(dst_root: Path) -> Path:
    return Path(dst_root) / RECORDS


def _record_path(dst_root: Path, key: str) -> Path:
    return _records_dir(dst_root) / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".json")


def convert_and_record(convert: Convert, dst_root: Path, settings_id: str, case: Case) -> str:
    """Convert one case and leave its manifest entry as a record; returns the key."""
    entry = {"source": case.stamp, **convert(case)}
    write_json(_record_path(dst_root, case.key), {"key": case.key, "settings": settings_id, "entry": entry})
    return case.key


def run_shard(task: tuple[Convert, Path, str, Sequence[Case]]) -> int:
    """One array task: convert its cases in order (a rerun of the task skips the ones already recorded)."""
    convert, dst_root, settings_id, cases = task
    done = 0
    for case in cases:
        if not (case.output.is_file() and _record_path(dst_root, case.key).is_file()):
            convert_and_record(convert, dst_root, settings_id, case)
            done += 1
    return done


def settings_id(manifest: dict) -> str:
    """Fingerprint of the manifest's version and settings: records written under other settings are ignored."""
    text = json.dumps([manifest.get("version"), manifest.get("settings")], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def absorb_records(dst_root: Path, manifest: dict) -> int:
    """Fold finished cases' records into ``manifest`` and save it, then delete them; returns how many."""
    folder = _records_dir(dst_root)
    if not folder.is_dir():
        return 0
    expected, files = settings_id(manifest), sorted(folder.glob("*.json"))
    count = 0
    for path in files:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a record is written atomically; an unreadable one is not ours: leave it
        if record.get("settings") == expected:
            manifest["cases"][record["key"]] = record["entry"]
            count += 1
    save_prepare_manifest(dst_root, manifest)  # before deleting: a crash in between re-absorbs, harmlessly
    for path in files:
        path.unlink(missing_ok=True)
    return count


def run_cases(
    convert: Convert, cases: Sequence[Case], dst_root: Path, manifest: dict, dist: Distribution, description: str
) -> int:
    """Convert every case not yet up to date, as ``dist`` says; the manifest is final on return (and on error).
    Returns the number of cases converted by this run."""
    dist.validate()
    dst_root = Path(dst_root)
    absorb_records(dst_root, manifest)  # what an interrupted run (or a finished shard) left behind
    todo = [c for c in cases if not up_to_date(manifest, c.key, c.stamp, c.output)]
    ident = settings_id(manifest)
    converted = 0
    try:
        if todo and dist.executor != "inline":
            converted += _run_array(convert, todo, dst_root, ident, manifest, dist, description)
        elif todo and dist.workers > 1:
            _run_pool(convert, todo, dst_root, ident, dist.workers, description)
        elif todo:
            with progress() as bar:
                task = bar.add_task(description, total=len(todo), status="")
                for case in todo:
                    convert_and_record(convert, dst_root, ident, case)
                    bar.advance(task)
    finally:
        converted += absorb_records(dst_root, manifest)
        if all(up_to_date(manifest, c.key, c.stamp, c.output) for c in todo):
            shutil.rmtree(_records_dir(dst_root), ignore_errors=True)
    return converted


def _run_pool(convert: Convert, todo: list[Case], dst_root: Path, ident: str, workers: int, description: str):
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    # spawn: workers start clean (no copy of a parent that may hold threads or a torch runtime)
    context = multiprocessing.get_context("spawn")
    with progress() as bar, ProcessPoolExecutor(min(workers, len(todo)), mp_context=context) as pool:
        task = bar.add_task(f"{description} ({workers} workers)", total=len(todo), status="")
        pending = {pool.submit(convert_and_record, convert, dst_root, ident, case) for case in todo}
        while pending:
            finished, pending = wait(pending, timeout=1.0, return_when=FIRST_EXCEPTION)
            for future in finished:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise future.exception()
                bar.advance(task)


def _run_array(
    convert: Convert, todo: list[Case], dst_root: Path, ident: str, manifest: dict, dist: Distribution, description: str
) -> int:
    from simcrop_bench.jobs.executors import get_executor

    shards = [todo[i :: dist.shards] for i in range(min(dist.shards, len(todo)))]
    logs = dist.logs or dst_root / ".prepare_jobs"
    executor = get_executor(dist.executor, cluster=dist.cluster, folder=logs)
    jobs = executor.map_array(run_shard, [(convert, dst_root, ident, shard) for shard in shards], name="prepare")
    log(f"{description}: {len(todo)} case(s) in {len(jobs)} {dist.executor} array task(s): {jobs[0].job_id} …")
    done = 0
    with progress() as bar:
        task = bar.add_task(description, total=len(todo), status=f"{len(jobs)} shards")
        while True:
            finished = all(job.done() for job in jobs)
            done += absorb_records(dst_root, manifest)  # progress, and the manifest kept current on disk
            bar.update(task, completed=done)
            if finished:
                break
            time.sleep(2.0)
    for index, job in enumerate(jobs):
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 - submitit wraps the task's error with its traceback
            last = [line for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
            raise UserError(f"prepare shard {index} ({job.job_id}) failed: {last[-1][:300]}; logs in {logs}") from None
    if dist.logs is None:
        shutil.rmtree(logs, ignore_errors=True)  # every shard succeeded: its logs are of no further use
    return done
