"""Sweep planning (groups, skips, dry run) and sweeps on the inline and local executors."""

from __future__ import annotations

import json

import pytest

from simcrop_bench.errors import ConfigError
from simcrop_bench.jobs.sweep import describe, plan_sweep
from simcrop_bench.run.cell import RunRequest
from simcrop_bench.run.records import write_record
from simcrop_bench.util.atomic import write_json

from .conftest import run_cli

CELLS = ["--tasks", "luna16_cls", "--set", "task.probe=cached", "--set", "run.num_threads=1", "--device", "cpu"]


def base(results) -> RunRequest:
    return RunRequest(method="", task="", results=str(results), overrides=["task.probe=cached"], device="cpu")


def test_plan_groups_cells_by_pretraining_and_skips_what_exists(tmp_path):
    plan = plan_sweep(["scratch", "mae"], ["luna16_cls"], [10, 100], [42, 43], base(tmp_path))
    scratch, mae = plan.groups
    assert (scratch.method, scratch.needs_pretraining, len(scratch.cells)) == ("scratch", False, 4)
    assert (mae.method, mae.needs_pretraining, len(mae.cells)) == ("mae", True, 4)
    lines = describe(plan, "slurm", "demo", 4, 1)
    assert lines[0] == "sweep on slurm (cluster demo): 9 job(s); 0 cell(s) already have a record"
    assert "  array A2: 4 cell(s) of mae, after P2 succeeds (afterok), at most 4 at once" in lines
    assert lines[-1] == "estimated job hours: unknown"

    # A record with the same config hash: that cell is not planned again.
    done = mae.cells[0].plan
    write_record(done.run_dir, {"config_hash": done.config.config_hash, "wall_time_s": 1800.0})
    # A stored encoder: no pretraining job, the cells run on it.
    write_json(tmp_path / "checkpoints" / "mae" / mae.pretrain_key / "meta.json", {"method": "mae"})
    again = plan_sweep(["scratch", "mae"], ["luna16_cls"], [10, 100], [42, 43], base(tmp_path))
    assert [c.label for c in again.existing] == [mae.cells[0].label]
    assert again.groups[1].needs_pretraining is False and len(again.groups[1].cells) == 3
    assert again.n_jobs == 7


def test_plan_reports_fractions_a_task_lacks_and_estimates_from_the_profile(tmp_path):
    plan = plan_sweep(["scratch"], ["luna16_cls", "btcv_seg"], [10], [42], base(tmp_path), (None, 0.5))
    assert plan.unsupported == ["btcv_seg f10"] and plan.n_jobs == 1
    assert plan.estimate_h == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="no cells"):
        plan_sweep(["scratch"], ["btcv_seg"], [10], [42], base(tmp_path))


def test_dry_run_prints_the_plan_and_submits_nothing(tmp_path):
    out = run_cli(
        "sweep",
        "--methods",
        "scratch,mae",
        *CELLS,
        "--seeds",
        "42",
        "--executor",
        "slurm",
        "--cluster",
        "demo",
        "--results",
        str(tmp_path),
        "--dry-run",
    )
    assert out.returncode == 0, out.stderr
    assert "job P2: pretrain mae (" in out.stdout and "luna16_cls/scratch/f100/s42" in out.stdout
    assert not (tmp_path / "jobs").exists()
    bad = run_cli("sweep", "--methods", "scratch", *CELLS, "--seeds", "x", "--results", str(tmp_path))
    assert bad.returncode == 2 and "--seeds: expected integers" in bad.stderr


@pytest.mark.slow
def test_inline_sweep_keeps_going_after_a_failing_cell_and_reruns_only_it(tmp_path):
    sweep = [
        "sweep",
        "--executor",
        "inline",
        "--methods",
        "scratch",
        *CELLS,
        "--seeds",
        "44,45",
        "--results",
        str(tmp_path),
    ]
    out = run_cli(*sweep, env={"SIMCROP_BENCH_TEST_FAIL_CELL": "scratch:44"})
    assert out.returncode == 1, out.stdout + out.stderr
    status = run_cli("status", "--results", str(tmp_path))
    rows = {line.split()[1]: line.split()[3] for line in status.stdout.splitlines()[1:3]}
    assert rows == {"luna16_cls/scratch/f100/s44": "FAILED", "luna16_cls/scratch/f100/s45": "COMPLETED"}
    assert "fails on purpose" in status.stdout
    again = run_cli(*sweep)  # only the failed cell is missing
    assert again.returncode == 0, again.stdout + again.stderr
    assert "sweep on inline: 1 job(s); 1 cell(s) already have a record" in again.stdout
    assert len(list(tmp_path.glob("runs/**/record.json"))) == 2


@pytest.mark.slow
def test_run_on_the_local_executor_writes_the_record_and_logs(tmp_path):
    out = run_cli(
        "run",
        "--method",
        "scratch",
        "--task",
        "luna16_cls",
        "--set",
        "task.probe=cached",
        "--set",
        "run.num_threads=1",
        "--device",
        "cpu",
        "--executor",
        "local",
        "--results",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    entry = json.loads((tmp_path / "jobs" / "ledger.json").read_text())["jobs"][0]
    assert entry["executor"] == "local" and entry["state"] == "COMPLETED"
    assert entry["stdout"].startswith(str(tmp_path / "jobs" / "logs"))
    assert len(list(tmp_path.glob("runs/luna16_cls/scratch/f100/s42/*/record.json"))) == 1
    shown = run_cli("logs", "luna16_cls/scratch/f100/s42", "--results", str(tmp_path))
    assert shown.returncode == 0 and f"== stdout: {entry['stdout']}" in shown.stdout
    missing = run_cli("logs", "12345", "--results", str(tmp_path))
    assert missing.returncode == 2 and "no such job in the ledger" in missing.stderr
