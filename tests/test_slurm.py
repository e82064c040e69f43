"""Sweeps on a real SLURM cluster (slurm/start-local-slurm.sh); skipped where none answers.

Every wait has a deadline, so a lost job fails the test instead of hanging CI.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest

from .conftest import run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CELLS = ["--tasks", "luna16_cls", "--set", "task.probe=cached", "--set", "run.num_threads=1", "--device", "cpu"]


def ledger(results: Path) -> list[dict]:
    return json.loads((results / "jobs" / "ledger.json").read_text())["jobs"]


def refreshed(results: Path) -> list[dict]:
    out = run_cli("status", "--all", "--results", str(results))
    assert out.returncode == 0, out.stderr
    return ledger(results)


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 2.0):
    end = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < end, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(poll_s)


def all_final(results: Path) -> bool:
    return all(e["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "SKIPPED") for e in refreshed(results))


def log_text(entry: dict) -> str:
    return "".join(Path(p).read_text(errors="replace") for p in (entry["stdout"], entry["stderr"]) if Path(p).is_file())


def records(results: Path) -> dict:
    """(method, seed) → metrics, encoder SHA-256 and a hash of the test predictions."""
    out = {}
    for file in results.glob("runs/**/record.json"):
        record = json.loads(file.read_text())
        per_case = hashlib.sha256((file.parent / "per_case.csv").read_bytes()).hexdigest()
        checkpoint = record["checkpoint"]["sha256"] if record["checkpoint"] else None
        out[(record["method"], record["seed"])] = (record["metrics"], checkpoint, per_case)
    return out


def test_sweep_through_sbatch_matches_inline_and_resubmits_nothing(tmp_path):
    results, inline = tmp_path / "slurm-results", tmp_path / "inline-results"
    sweep = [
        "sweep",
        "--methods",
        "scratch,mae",
        *CELLS,
        "--seeds",
        "42,43",
        "--cluster",
        "demo",
        "--results",
        str(results),
    ]
    dry = run_cli(*sweep, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "job P2: pretrain mae" in dry.stdout and "after P2 succeeds (afterok)" in dry.stdout
    planned = sorted(line.split()[0] for line in dry.stdout.splitlines() if line.startswith("    luna16_cls/"))
    assert len(planned) == 4 and not (results / "jobs").exists()  # a dry run submits nothing

    started = time.monotonic()
    out = run_cli(*sweep, "--wait", "600")
    assert out.returncode == 0, out.stdout + out.stderr
    print(f"sweep through sbatch: {time.monotonic() - started:.1f} s")
    entries = ledger(results)
    pretrain = [e for e in entries if e["kind"] == "pretrain"]
    cells = [e for e in entries if e["kind"] == "cell"]
    assert [e["label"] for e in pretrain] == [
        line.split("job P2: ")[1] for line in dry.stdout.splitlines() if "job P2: " in line
    ]
    assert sorted(e["label"] for e in cells) == planned  # the dry run showed what was submitted
    assert all(e["depends_on"] == pretrain[0]["job_id"] for e in cells if "/mae/" in e["label"])
    assert all(e["depends_on"] is None for e in cells if "/scratch/" in e["label"])
    assert {e["state"] for e in entries} == {"COMPLETED"}

    out = run_cli(
        "sweep",
        "--executor",
        "inline",
        "--methods",
        "scratch,mae",
        *CELLS,
        "--seeds",
        "42,43",
        "--results",
        str(inline),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    on_cluster, in_process = records(results), records(inline)
    assert len(on_cluster) == 4 and on_cluster == in_process  # same metrics, encoder bytes, predictions

    again = run_cli(*sweep)
    assert again.returncode == 0 and "nothing to submit" in again.stdout
    assert len(ledger(results)) == len(entries)


def _submit_long_pretraining(results: Path, epochs: int, cluster: str) -> dict:
    out = run_cli(
        "sweep",
        "--methods",
        "mae",
        *CELLS,
        "--seeds",
        "42",
        "--set",
        f"method.train.epochs={epochs}",
        "--cluster",
        cluster,
        "--results",
        str(results),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return next(e for e in ledger(results) if e["kind"] == "pretrain")


def _assert_resumed_once(results: Path, pretrain: dict) -> int:
    text = log_text(next(e for e in ledger(results) if e["job_id"] == pretrain["job_id"]))
    assert "Requeued job" in text, text[-2000:]
    # rich wraps the long work-folder path over lines
    resumed = [int(step) for step in re.findall(r"resuming\s.*?\sat step (\d+)", text, re.S)]
    assert resumed and resumed[0] > 0, text[-2000:]
    assert {e["state"] for e in ledger(results)} == {"COMPLETED"}
    assert len(list(results.glob("runs/**/record.json"))) == 1  # the cell's record, once
    assert not list(results.glob("checkpoints/mae/.*.partial"))
    return resumed[0]


def test_preempted_pretraining_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    import submitit

    results = tmp_path / "results"
    pretrain = _submit_long_pretraining(results, epochs=100, cluster="demo")
    wait_until(lambda: re.search(r"step [2-9]\d/", log_text(pretrain)), 180, "pretraining reaching step 20")
    # What submitit's own tests do to simulate preemption: SIGTERM, then USR2.
    submitit.SlurmJob(results / "jobs" / "logs" / "%j", pretrain["job_id"])._interrupt()
    wait_until(lambda: all_final(results), 420, "requeued pretraining and its cell finishing", poll_s=5)
    step = _assert_resumed_once(results, pretrain)
    print(f"preempted pretraining resumed at step {step}")


def test_time_limit_requeues_and_completes(tmp_path):
    profile = tmp_path / "short.yaml"
    # timeout_min >= 2 with a 30 s signal window (slurm-local.md pitfall 3).
    profile.write_text("partition: debug\ncpus_per_task: 1\nmem_gb: 2\ntimeout_min: 2\nsignal_delay_s: 30\n")
    results = tmp_path / "results"
    pretrain = _submit_long_pretraining(results, epochs=400, cluster=str(profile))
    wait_until(lambda: all_final(results), 900, "timed-out pretraining finishing after requeue", poll_s=5)
    assert "timed-out" in log_text(pretrain)
    step = _assert_resumed_once(results, pretrain)
    print(f"timed-out pretraining resumed at step {step}")


def test_failing_cell_is_reported_with_its_log_and_does_not_block_the_others(tmp_path):
    results = tmp_path / "results"
    out = run_cli(
        "sweep",
        "--methods",
        "scratch",
        *CELLS,
        "--seeds",
        "44,45",
        "--cluster",
        "demo",
        "--results",
        str(results),
        "--wait",
        "300",
        env={"SIMCROP_BENCH_TEST_FAIL_CELL": "scratch:44"},
    )
    assert out.returncode == 1, out.stdout + out.stderr  # one cell failed
    status = run_cli("status", "--results", str(results))
    failed = next(line for line in status.stdout.splitlines() if "luna16_cls/scratch/f100/s44" in line)
    assert "FAILED" in failed and "_log.out" in failed
    assert "fails on purpose" in status.stdout and "_log.err" in status.stdout
    done = next(line for line in status.stdout.splitlines() if "luna16_cls/scratch/f100/s45" in line)
    assert "COMPLETED" in done
    assert len(list(results.glob("runs/**/record.json"))) == 1
    job = next(e["job_id"] for e in ledger(results) if e["label"].endswith("s44"))
    shown = run_cli("logs", job, "--stderr", "--results", str(results))
    assert shown.returncode == 0 and "RuntimeError" in shown.stdout


def test_cancel_stops_a_sweep_and_its_dependent_array(tmp_path):
    import subprocess

    results = tmp_path / "results"
    pretrain = _submit_long_pretraining(results, epochs=600, cluster="demo")
    ids = {e["job_id"].split("_")[0] for e in ledger(results)}
    out = run_cli("cancel", "--sweep", pretrain["sweep"], "--results", str(results))
    assert out.returncode == 0 and f"cancelled {pretrain['job_id']}" in out.stdout, out.stdout + out.stderr

    def gone():
        queue = subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True, timeout=30).stdout
        return not ids & set(queue.split())

    wait_until(gone, 60, "cancelled jobs leaving the queue")
    assert {e["state"] for e in refreshed(results)} == {"CANCELLED"}
    assert not list(results.glob("runs/**/record.json"))


def test_gpus_runs_the_pretraining_as_several_ranks_of_one_job(tmp_path):
    # On the CPU demo profile `--gpus 2` means 2 tasks joined by gloo: the same loop as on GPUs (NCCL).
    results = tmp_path / "results"
    out = run_cli(
        "sweep",
        "--methods",
        "mae",
        *CELLS,
        "--seeds",
        "42",
        "--gpus",
        "2",
        "--cluster",
        "demo",
        "--results",
        str(results),
        "--wait",
        "400",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "on 2 GPU(s)/processes" in out.stdout
    (store,) = results.glob("checkpoints/mae/*/meta.json")
    info = json.loads((store.parent / "pretrain_info.json").read_text())
    assert info["world_size"] == 2 and json.loads(store.read_text())["world_size"] == 2
    pretrain = next(e for e in ledger(results) if e["kind"] == "pretrain")
    assert Path(pretrain["stdout"].replace("_0_log.out", "_1_log.out")).is_file()  # rank 1's log
    record = json.loads(next(results.glob("runs/**/record.json")).read_text())
    assert record["checkpoint"]["world_size"] == 2


def test_preempted_finetuning_is_requeued_and_resumes_after_its_last_epoch(tmp_path):
    import submitit

    from simcrop_bench.data.synthetic.luna16 import write_luna16_twin

    results, inline, twin = tmp_path / "results", tmp_path / "inline", tmp_path / "luna16"
    write_luna16_twin(twin, n_cases=8)  # the smallest twin: seconds per epoch
    quick = (
        [f"--data-root={twin}"]
        + [
            f"--set={s}"
            for s in (
                "task.max_epochs=4",
                "task.val_every=1",
                "task.crops_per_volume=1",
                "task.warmup_epochs=1",
                "task.bootstrap_resamples=0",
                "task.num_workers=0",
                "run.num_threads=1",
            )
        ]
        + ["--device", "cpu"]
    )
    out = run_cli(
        "sweep",
        "--methods",
        "scratch",
        "--tasks",
        "lung_seg",
        *quick,
        "--seeds",
        "42",
        "--cluster",
        "demo",
        "--results",
        str(results),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    cell = next(e for e in ledger(results) if e["kind"] == "cell")
    wait_until(lambda: re.search(r"epoch [2-3]/4", log_text(cell)), 300, "fine-tuning reaching epoch 2")
    submitit.SlurmJob(results / "jobs" / "logs" / "%j", cell["job_id"])._interrupt()  # SIGTERM, then USR2
    wait_until(lambda: all_final(results), 420, "requeued fine-tuning finishing", poll_s=5)
    text = " ".join(log_text(next(e for e in ledger(results) if e["job_id"] == cell["job_id"])).split())
    assert "Requeued job" in text, text[-2000:]
    resumed = [int(n) for n in re.findall(r"resuming fine-tuning .*? after epoch (\d+)/4", text)]
    assert resumed and resumed[0] >= 2, text[-2000:]
    assert {e["state"] for e in ledger(results)} == {"COMPLETED"}
    assert len(list(results.glob("runs/**/record.json"))) == 1 and not list(results.glob("runs/**/.*.partial"))

    out = run_cli("run", "-m", "scratch", "-t", "lung_seg", *quick, "--results", str(inline))
    assert out.returncode == 0, out.stdout + out.stderr
    assert records(results) == records(inline)  # the resumed job ends exactly as an uninterrupted run
    print(f"preempted fine-tuning resumed after epoch {resumed[0]}")


def test_prepare_runs_as_a_two_shard_array_and_writes_the_inline_store(tmp_path):
    from simcrop_bench.data.synthetic.ctrate import write_ctrate_twin

    official = tmp_path / "official"
    write_ctrate_twin(official, n_cases=4, shape=(48, 40, 24), spacing=(7.0, 8.0, 14.0), seed=5, layout="official")
    common = ["data", "prepare", "-d", "ctrate", "--from", str(official)]
    sharded, inline = tmp_path / "sharded", tmp_path / "inline"
    out = run_cli(*common, "--out", str(sharded), "--executor", "slurm", "--shards", "2", "--cluster", "demo")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "in 2 slurm array task(s)" in " ".join(out.stderr.split())
    assert run_cli(*common, "--out", str(inline)).returncode == 0
    manifest = json.loads((sharded / "prepare_manifest.json").read_text())
    assert manifest["cases"] == json.loads((inline / "prepare_manifest.json").read_text())["cases"]
    files = sorted(p.relative_to(sharded) for p in sharded.rglob("*.nii"))
    assert len(files) == len(manifest["cases"]) > 2
    assert all((sharded / f).read_bytes() == (inline / f).read_bytes() for f in files)
    assert not (sharded / ".prepare_cases").exists() and not (sharded / ".prepare_jobs").exists()
    again = run_cli(*common, "--out", str(sharded), "--executor", "slurm", "--shards", "2", "--cluster", "demo")
    assert again.returncode == 0 and f"0 converted, {len(files)} already done" in again.stdout  # nothing submitted
