"""Atomic writes and run staging: an interrupted write leaves no record behind."""

import json
import os
import textwrap

import pytest

from simcrop_bench.data.synthetic.luna16 import write_luna16_twin
from simcrop_bench.run.cell import RunRequest, run_job
from simcrop_bench.run.records import existing_record, run_dir, write_record
from simcrop_bench.util import atomic as atomic


def test_interrupted_json_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "record.json"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_json(target, {"a": 1})
    assert list(tmp_path.iterdir()) == []  # neither the record nor a temporary file


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "record.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_staged_dir_failure_keeps_previous_and_cleans_up(tmp_path):
    final = tmp_path / "run"
    with atomic.staged_dir(final) as stage:
        write_record(stage, {"x": 1})
    with pytest.raises(RuntimeError):
        with atomic.staged_dir(final) as stage:
            write_record(stage, {"x": 2})
            raise RuntimeError("killed mid-run")
    assert existing_record(final)["x"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


FAILING_TASK = textwrap.dedent(
    '''
    from dataclasses import dataclass
    from simcrop_bench.api import Task
    from simcrop_bench.registry import register_task

    @dataclass
    class Cfg:
        steps: int = 1

    @register_task("failing_task")
    class Failing(Task):
        """Writes part of its output, then dies."""
        kind = "segmentation"
        dataset = "luna16"
        labels = ("background", "x")
        metric = "dice"
        Config = Cfg

        def run(self, ctx):
            (ctx.workdir / "predictions").mkdir()
            (ctx.workdir / "predictions" / "half.txt").write_text("partial")
            raise RuntimeError("node lost")
    '''
)


def test_interrupted_run_leaves_no_record(tmp_path):
    plugin = tmp_path / "failing_task.py"
    plugin.write_text(FAILING_TASK)
    data = tmp_path / "data"
    write_luna16_twin(data, n_cases=4)  # a clean root: `run` refuses a damaged one before any work
    results = tmp_path / "results"
    req = RunRequest(
        method="scratch",
        task="failing_task",
        data_root=str(data),
        results=str(results),
        plugins=[str(plugin)],
        device="cpu",
    )
    with pytest.raises(RuntimeError, match="node lost"):
        run_job(req)
    task_dir = results / "runs" / "failing_task"
    assert not task_dir.exists(), list(task_dir.rglob("*"))  # no files, and no empty skeleton folders either


def test_run_dir_is_the_run_identity(tmp_path):
    path = run_dir(tmp_path, "lung_seg", "scratch", 10, 42, "demo", "abc123")
    assert path == tmp_path / "runs" / "lung_seg" / "scratch" / "f10" / "s42" / "demo-abc123"
