"""The stores under concurrency and kills (issue #18): whole-folder publish, durable writes, locks, staging left
by killed processes. Figures: ``docs/reliability.md``; the acceptance run is ``simcrop-bench bench stress``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from simcrop_bench.data.synthetic.luna16 import write_luna16_twin
from simcrop_bench.run.records import PER_CASE_FILE, RECORD_FILE, read_run_files
from simcrop_bench.util import atomic
from simcrop_bench.util.locks import LockError, file_lock

from .conftest import REPO


def test_publish_replaces_the_whole_folder(tmp_path):
    final = tmp_path / "run"
    with atomic.staged_dir(final) as stage:
        (stage / RECORD_FILE).write_text('{"v": 1}')
        (stage / PER_CASE_FILE).write_text("case,v\n0,1\n")
        (stage / "predictions.txt").write_text("old")
    with atomic.staged_dir(final) as stage:
        (stage / RECORD_FILE).write_text('{"v": 2}')
        (stage / PER_CASE_FILE).write_text("case,v\n0,2\n")
    assert sorted(p.name for p in final.iterdir()) == [PER_CASE_FILE, RECORD_FILE]  # nothing of the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_reader_never_sees_a_record_without_its_per_case_table(tmp_path):
    """A `--force` replacement in a loop while this process reads: by path and with read_run_files."""
    final = tmp_path / "runs" / "t" / "m" / "f100" / "s42" / "demo-0"
    stop, failures, versions = threading.Event(), [], set()

    def replace():
        n = 0
        while not stop.is_set():
            with atomic.staged_dir(final) as stage:
                (stage / PER_CASE_FILE).write_text(f"case,v\n0,{n}\n")
                (stage / RECORD_FILE).write_text(json.dumps({"v": n}))
            n += 1

    writer = threading.Thread(target=replace)
    writer.start()
    try:
        polls = 0
        while polls < 2000:
            if not (final / RECORD_FILE).exists():
                continue
            polls += 1
            try:
                (final / PER_CASE_FILE).read_text()
                files = read_run_files(final)
                v = json.loads(files[RECORD_FILE])["v"]
                versions.add(v)
                if files[PER_CASE_FILE].decode() != f"case,v\n0,{v}\n":
                    failures.append(f"mixed: {files}")
            except (OSError, ValueError) as exc:
                failures.append(repr(exc))
    finally:
        stop.set()
        writer.join()
    assert not failures, failures[:5]
    assert len(versions) > 1  # it did read across replacements
    assert sorted(p.name for p in final.parent.iterdir()) == ["demo-0"]


def test_atomic_writes_and_publish_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic.write_json(tmp_path / "record.json", {"a": 1})
    assert synced[-1] == str(tmp_path)  # the folder, after the rename
    assert any(s.startswith(str(tmp_path / ".record.json.")) for s in synced)  # the file, before it
    synced.clear()
    with atomic.staged_dir(tmp_path / "run") as stage:
        (stage / "per_case.csv").write_text("x")
    assert any(s.endswith("/per_case.csv") for s in synced) and synced[-1] == str(tmp_path)


def test_lock_timeout_names_the_lock(tmp_path):
    lock = tmp_path / ".twin.lock"
    with file_lock(lock, what="the twin"):
        began = time.monotonic()
        with pytest.raises(LockError, match=r"\.twin\.lock: another process has held the lock on the twin"):
            with file_lock(lock, timeout=0.2, what="the twin"):
                pass
        assert time.monotonic() - began < 5


def test_file_system_without_flock_is_refused_clearly(tmp_path, monkeypatch):
    import fcntl

    def no_flock(fd, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with pytest.raises(LockError, match="does not support flock .*Lustre: -o flock"):
        with file_lock(tmp_path / ".x.lock"):
            pass


def test_concurrent_builders_of_one_cache_entry_compute_it_once(tmp_path):
    from simcrop_bench.protocols.probe.features import cached

    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.3)
        return np.ones((2, 3), dtype=np.float32)

    threads = [threading.Thread(target=cached, args=(tmp_path, "key", compute)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks", "key.json", "key.npy"]


CRASHING_METHOD = textwrap.dedent(
    '''
    from simcrop_bench.api import Method
    from simcrop_bench.registry import register_method

    @register_method("crashing_pretrain")
    class Crashing(Method):
        """Pretrains, and dies before its first checkpoint."""

        def pretrain(self, ctx):
            (ctx.workdir / "metrics.jsonl").write_text("{}")
            raise UnicodeDecodeError("utf-8", b"\\xff", 0, 1, "invalid start byte")
    '''
)


def test_crashed_pretraining_leaves_no_empty_work_folder(tmp_path):
    from simcrop_bench.run.cell import RunRequest, run_job

    plugin = tmp_path / "crashing.py"
    plugin.write_text(CRASHING_METHOD)
    data = tmp_path / "luna16"
    write_luna16_twin(data, n_cases=4)
    results = tmp_path / "results"
    req = RunRequest(
        method="crashing_pretrain",
        task="luna16_cls",
        data_root=str(data),
        results=str(results),
        plugins=[str(plugin)],
        device="cpu",
    )
    with pytest.raises(UnicodeDecodeError):
        run_job(req)
    left = sorted(p.relative_to(results).as_posix() for p in results.rglob("*"))
    assert not [p for p in left if ".partial" in p], left
    assert not [p for p in left if p.startswith("runs/luna16_cls")], left


def _synth(out: Path, cases: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "simcrop_bench.cli", "data", "synth", "-d", "luna16", "-o", str(out), "-n", str(cases)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_staging(out: Path, process: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        staged = [p for p in out.parent.glob(f".{out.name}.partial-*") if any(p.iterdir())]
        if staged:
            return staged[0]
        time.sleep(0.05)
    raise AssertionError(f"no staging folder appeared: {process.stderr.read().decode() if process.stderr else ''}")


@pytest.mark.slow
def test_killed_data_synth_leaves_nothing_behind(tmp_path):
    out = tmp_path / "twin"
    process = _synth(out, 12)  # SIGTERM: unwinds and removes its staging folder on the way out
    _wait_for_staging(out, process)
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    process = _synth(out, 12)  # kill -9: nothing can run, so the next write to the same --out removes it
    stale = _wait_for_staging(out, process)
    process.kill()
    process.wait(60)
    assert stale.exists()
    done = _synth(out, 2)
    assert done.wait(120) == 0, done.stderr.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twin"]


@pytest.mark.slow
def test_stress_many_processes_on_one_cache_and_one_results_root(tmp_path):
    """The acceptance run in small (`simcrop-bench bench stress` runs 8 processes and 10,000 polls)."""
    from simcrop_bench.bench.stress import run_stress

    report = run_stress(processes=4, polls=1500, dataset="btcv", workdir=tmp_path)
    assert report.failures == 0, report
    assert len(report.twin_seconds) == 4 and report.polls == 1500 and report.publishes >= 3 * 20


def test_atomic_writes_get_the_mode_of_a_plain_open_not_the_temporary_files_0600(tmp_path):
    from simcrop_bench.util.atomic import atomic_path, write_json

    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # the process's umask decides, as for any file the user writes
    write_json(tmp_path / "record.json", {"a": 1})
    with atomic_path(tmp_path / "sub" / "volume.nii") as tmp:
        tmp.write_bytes(b"\0" * 8)
    expected = plain.stat().st_mode & 0o777
    assert (tmp_path / "record.json").stat().st_mode & 0o777 == expected
    assert (tmp_path / "sub" / "volume.nii").stat().st_mode & 0o777 == expected
