"""``bench stress``: the stores under concurrency, as a user can rerun it.

1. **One empty cache**: N processes released together each ask for the same synthetic twin
   (:func:`~simcrop_bench.data.roots.ensure_twin`). One builds it, the others wait on its lock;
   every process must get a complete twin, and the cache must hold no staging folder afterwards.
2. **One results root**: the same N processes publish records (``record.json`` + ``per_case.csv``, as
   ``run`` does) into that root: each its own run folder, and all of them, over and over, the same one
   (what ``run --force`` does). A reader process polls that folder meanwhile, as a leaderboard would:
   - by path: whenever ``record.json`` is there, ``per_case.csv`` must be there too, and parse;
   - by :func:`~simcrop_bench.run.records.read_run_files`: both files must come from one version.
   Afterwards every folder holds one complete version and nothing else is left behind.

Any failure is counted and its first messages kept; nothing is retried or hidden.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

SHARED_RUN = ("stress_task", "stress_method", 100, 42, "demo", "000000000000")


@dataclass
class StressReport:
    processes: int
    twin_seconds: list[float] = field(default_factory=list)
    twin_failures: list[str] = field(default_factory=list)
    publishes: int = 0
    publish_failures: list[str] = field(default_factory=list)
    polls: int = 0
    path_failures: list[str] = field(default_factory=list)  # record.json without a readable per_case.csv
    mixed_reads: list[str] = field(default_factory=list)  # read_run_files gave files of two versions
    path_pairs_across_versions: int = 0  # by path, record and per-case of two versions (not a failure: see below)
    leftovers: list[str] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(
            len(x)
            for x in (self.twin_failures, self.publish_failures, self.path_failures, self.mixed_reads, self.leftovers)
        )


def run_stress(
    processes: int = 8, polls: int = 10_000, dataset: str = "luna16", workdir: Path | None = None
) -> StressReport:
    """Both phases in a fresh folder (a temporary one unless ``workdir``); see the module docstring."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="simcrop-stress-") as tmp:
            return run_stress(processes, polls, dataset, Path(tmp))
    cache, results = workdir / "cache", workdir / "results"
    report = StressReport(processes)
    ctx = mp.get_context("spawn")  # fresh interpreters, as separate commands would be
    with ctx.Manager() as manager, ctx.Pool(processes) as pool:
        start = manager.Barrier(processes)
        for ok, seconds, message in pool.starmap(_build_twin, [(str(cache), dataset, start)] * processes):
            report.twin_seconds.append(seconds)
            if not ok:
                report.twin_failures.append(message)
        enough = manager.Event()
        reader = pool.apply_async(_poll, (str(results), polls, enough))
        writers = pool.starmap_async(_publish, [(str(results), i, enough) for i in range(processes - 1)])
        report.polls, report.path_failures, report.mixed_reads, report.path_pairs_across_versions = reader.get()
        for count, failures in writers.get():
            report.publishes += count
            report.publish_failures += failures
    report.leftovers = _leftovers(cache / "twins") + _leftovers(results / "runs")
    return report


def _build_twin(cache: str, dataset: str, start) -> tuple[bool, float, str]:
    os.environ["SIMCROP_BENCH_CACHE"] = cache
    from simcrop_bench.data.datasets import get_layout
    from simcrop_bench.data.roots import TASK_LAYOUT, ensure_twin

    start.wait()
    began = time.perf_counter()
    try:
        root = ensure_twin(dataset)
        if not get_layout(dataset, TASK_LAYOUT).complete()(root):
            return False, time.perf_counter() - began, f"pid {os.getpid()}: {root} is incomplete"
    except Exception:
        return False, time.perf_counter() - began, f"pid {os.getpid()}: {traceback.format_exc(limit=3)}"
    return True, time.perf_counter() - began, ""


def _publish(results: str, writer: int, enough, minimum: int = 20) -> tuple[int, list[str]]:
    """Publish this writer's own run folder, then replace the shared one until the reader has polled enough."""
    from simcrop_bench.run.records import publish_run, run_dir, write_per_case, write_record
    from simcrop_bench.util.atomic import staged_dir

    root, failures, count = Path(results), [], 0
    own = run_dir(root, "stress_task", f"writer{writer}", 100, writer, "demo", "000000000000")
    for final in itertools.chain([own], itertools.repeat(run_dir(root, *SHARED_RUN))):
        if count >= minimum and enough.is_set():
            break
        version = f"{os.getpid()}-{count}"
        try:
            with staged_dir(final, publish=publish_run) as staging:
                write_per_case(staging / "per_case.csv", [{"case": i, "version": version} for i in range(20)])
                write_record(staging, {"version": version, "writer": writer})
            count += 1
        except Exception:
            failures.append(f"writer {writer}: {traceback.format_exc(limit=3)}")
            if len(failures) > 20:
                break
    return count, failures


def _poll(results: str, polls: int, enough) -> tuple[int, list[str], list[str], int]:
    from simcrop_bench.run.records import PER_CASE_FILE, RECORD_FILE, read_run_files, run_dir

    final = run_dir(Path(results), *SHARED_RUN)
    record, per_case = final / RECORD_FILE, final / PER_CASE_FILE
    done, path_failures, mixed, across = 0, [], [], 0
    deadline = time.monotonic() + 600
    while done < polls and time.monotonic() < deadline:
        if not record.exists():
            time.sleep(0.001)  # before the first publish
            continue
        done += 1
        try:  # by path, as a script would
            version = json.loads(record.read_text())["version"]
            table = per_case.read_text()
            if f",{version}\n" not in table:
                across += 1  # replaced between the two reads: both files exist and parse
        except Exception as exc:
            path_failures.append(f"poll {done}: {type(exc).__name__}: {exc}")
        try:  # together, as read_run_files promises
            files = read_run_files(final)
            version = json.loads(files[RECORD_FILE])["version"]
            if f",{version}\n" not in (files[PER_CASE_FILE] or b"").decode():
                mixed.append(f"poll {done}: record {version} with a per-case table of another version")
        except Exception as exc:
            mixed.append(f"poll {done}: {type(exc).__name__}: {exc}")
    enough.set()
    return done, path_failures[:20] + path_failures[-1:], mixed[:20], across


def _leftovers(store: Path) -> list[str]:
    """Staging or replaced folders, empty folders: anything but complete twins, records and lock files."""
    found = []
    for path in sorted(store.rglob("*")) if store.is_dir() else []:
        name = path.name
        if ".partial" in name or ".replaced-" in name or (path.is_dir() and not any(path.iterdir())):
            found.append(str(path))
    return found
