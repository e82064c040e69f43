"""Executors, cluster profiles, the job ledger and the preemption bridge (no cluster needed)."""

from __future__ import annotations

import operator
import os
import re
import signal

import pytest

from simcrop_bench.errors import ConfigError
from simcrop_bench.jobs.callables import BenchJob, _RequeueAfterCheckpoint
from simcrop_bench.jobs.clusters import load_profile
from simcrop_bench.jobs.executors import InlineExecutor, get_executor, wait
from simcrop_bench.jobs.ledger import Entry, Ledger
from simcrop_bench.pretraining.preemption import stop_on_signals
from simcrop_bench.run.cell import RunRequest

from .conftest import run_cli


def test_demo_profile_translates_to_submitit_parameters():
    params = load_profile("demo").submitit_parameters()
    assert params["slurm_partition"] == "debug" and params["timeout_min"] == 30
    assert params["slurm_signal_delay_s"] == 30 and params["slurm_array_parallelism"] == 4
    assert "gpus_per_node" not in params and "tasks_per_node" not in params


def test_gpu_profile_and_gpus_option_give_one_task_per_gpu():
    profile = load_profile("example-gpu")
    assert profile.submitit_parameters()["gpus_per_node"] == 1
    params = profile.submitit_parameters(gpus=4)
    assert params["gpus_per_node"] == 4 and params["tasks_per_node"] == 4
    assert params["slurm_setup"][0] == "module load cuda/12.4" and params["slurm_constraint"] == "a100"
    # On a CPU profile `--gpus N` starts N processes (gloo) and asks for no GPUs.
    cpu = load_profile("demo").submitit_parameters(gpus=2)
    assert cpu["tasks_per_node"] == 2 and "gpus_per_node" not in cpu


def test_bad_profiles_are_one_line_user_errors(tmp_path):
    with pytest.raises(ConfigError, match="no profile nope.yaml.*known: .*demo"):
        load_profile("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("partition: gpu\ntimeout: 60\n")
    with pytest.raises(ConfigError, match="unknown key\\(s\\) timeout"):
        load_profile(str(bad))
    bad.write_text("cpus_per_task: many\n")
    with pytest.raises(ConfigError, match="cpus_per_task must be a non-negative integer"):
        load_profile(str(bad))


def test_cli_rejects_unknown_executor_and_missing_cluster(tmp_path):
    common = ["run", "--method", "scratch", "--task", "luna16_cls", "--results", str(tmp_path)]
    out = run_cli(*common, "--executor", "cloud")
    assert out.returncode == 2 and "error: --executor cloud: expected one of inline, local, slurm" in out.stderr
    out = run_cli(*common, "--executor", "slurm")
    assert out.returncode == 2 and "needs --cluster NAME" in out.stderr
    out = run_cli(*common, "--executor", "slurm", "--cluster", "nope")
    assert out.returncode == 2 and "no profile nope.yaml" in out.stderr


def test_inline_executor_runs_now_and_keeps_errors_when_asked():
    assert InlineExecutor().submit(operator.add, 2, 3).result() == 5
    with pytest.raises(ZeroDivisionError):
        InlineExecutor().submit(operator.truediv, 1, 0)
    job = InlineExecutor(capture_errors=True).submit(operator.truediv, 1, 0)
    assert job.done() and job.state == "FAILED"
    with pytest.raises(ZeroDivisionError):
        job.result()


def test_local_executor_runs_subprocesses_with_folders_logs_and_ledger_states(tmp_path):
    executor = get_executor("local", folder=tmp_path / "logs")
    good, bad = executor.submit(operator.add, 2, 3), executor.submit(operator.truediv, 1, 0)
    assert wait([good, bad], deadline_s=120, poll_s=0.5), "local jobs did not finish within 120 s"
    assert good.result() == 5 and good.paths.result_pickle.is_file()  # ran in its own process, via a pickle
    assert good.paths.stdout.is_file() and good.paths.folder.parent == tmp_path / "logs"
    ledger = Ledger(tmp_path)
    ledger.add(
        [
            Entry(
                "s1",
                label,
                "cell",
                job.job_id,
                "local",
                stdout=str(job.paths.stdout),
                stderr=str(job.paths.stderr),
                result_pickle=str(job.paths.result_pickle),
            )
            for label, job in (("good", good), ("bad", bad))
        ]
    )
    states = {e.label: e for e in ledger.refresh()}
    assert states["good"].state == "COMPLETED" and states["bad"].state == "FAILED"
    assert "ZeroDivisionError" in states["bad"].error
    assert re.fullmatch(r"00:0[0-1]:\d\d", states["good"].elapsed)  # measured, and the job took seconds


def test_ledger_marks_a_vanished_local_job_lost(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.add([Entry("s1", "gone", "cell", "999999999", "local", result_pickle=str(tmp_path / "none.pkl"))])
    assert ledger.refresh()[0].state == "LOST"


def test_usr2_inside_the_pretraining_loop_stops_it_and_requeues_only_after():
    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))  # stands in for submitit's
    try:
        bridge = _RequeueAfterCheckpoint()
        bridge.install()
        with stop_on_signals() as flag:  # what the pretraining loop installs while it trains
            os.kill(os.getpid(), signal.SIGUSR2)
            assert flag.raised and bridge.requested and calls == []  # the loop saves first
        bridge.hand_over()
        assert calls == [signal.SIGUSR2]
        os.kill(os.getpid(), signal.SIGUSR2)  # outside the loop: nothing unsaved, requeue at once
        assert calls == [signal.SIGUSR2, signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_checkpoint_requeues_the_same_job_with_the_same_request():
    req = RunRequest(method="mae", task="luna16_cls", seed=43)
    delayed = BenchJob(pretrain_only=True).checkpoint(req)
    assert delayed.args == (req,) and delayed.function.pretrain_only is True


def test_gpus_need_a_multi_process_executor_and_change_the_encoder_identity(tmp_path):
    from simcrop_bench.run.encoder_store import pretrain_key

    out = run_cli("run", "--method", "mae", "--task", "luna16_cls", "--gpus", "2", "--results", str(tmp_path))
    assert out.returncode == 2 and "--gpus 2 starts one process per GPU" in out.stderr
    one, two = (pretrain_key("mae", {"a": 1}, {"ctrate": "x"}, world) for world in (1, 2))
    assert one == pretrain_key("mae", {"a": 1}, {"ctrate": "x"}) and one != two
