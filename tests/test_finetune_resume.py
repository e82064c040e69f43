"""Fine-tuning (UNETR, lung_seg on the LUNA16 twin) resumes after a stop signal or a kill, exactly.

Every run uses one thread and (but one, which checks that workers change nothing) ``num_workers = 0``, so an
uninterrupted run is the bit-exact reference.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from simcrop_bench.data.synthetic.luna16 import write_luna16_twin
from simcrop_bench.protocols.segmentation import finetune as segmentation
from simcrop_bench.protocols.segmentation.state import SIGKILL_AT_EPOCH_ENV, STATE_FILE, FinetuningStopped
from simcrop_bench.run.cell import RunRequest, plan_run, run_job
from simcrop_bench.util.atomic import work_dir

REPO = Path(__file__).resolve().parent.parent
TINY = [
    "task.max_epochs=3",
    "task.val_every=1",
    "task.crops_per_volume=1",
    "task.warmup_epochs=1",
    "task.bootstrap_resamples=0",
    "task.num_workers=0",
    "run.num_threads=1",
]


def request(twin: Path, results: Path, *extra: str, force: bool = False) -> RunRequest:
    return RunRequest(
        method="scratch",
        task="lung_seg",
        data_root=str(twin),
        results=str(results),
        device="cpu",
        overrides=[*TINY, *extra],
        force=force,
    )


def state_of(req: RunRequest) -> dict:
    return torch.load(work_dir(plan_run(req).run_dir) / STATE_FILE, map_location="cpu", weights_only=False)


def logged(capfd) -> str:
    return " ".join(capfd.readouterr().err.split())  # rich wraps long lines


def assert_same_run(a: dict, b: dict) -> None:
    assert b["details"]["history"] == a["details"]["history"]  # every epoch's loss and selection Dice
    assert b["details"]["selected_epoch"] == a["details"]["selected_epoch"]
    assert b["metrics"] == a["metrics"] and b["per_class"] == a["per_class"]


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("luna16_twin")
    write_luna16_twin(root, n_cases=8)
    return root


@pytest.fixture(scope="module")
def reference(twin, tmp_path_factory) -> dict:
    """The uninterrupted run (module-scoped: the per-test cache fixture is not active yet, so set it here)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIMCROP_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        return run_job(request(twin, tmp_path_factory.mktemp("reference")))


def signal_in_epoch(monkeypatch, epoch: int, signum: int = signal.SIGUSR1) -> None:
    """Send ``signum`` to this process after the first batch of ``epoch`` (1-based), as SLURM would."""
    calls = []
    original = segmentation.train_epoch

    def patched(model, loader, loss_fn, optimizer, scaler, amp, on_step, stop=None):
        calls.append(epoch)

        def step(loss: float) -> None:
            on_step(loss)
            if len(calls) == epoch:
                os.kill(os.getpid(), signum)

        return original(model, loader, loss_fn, optimizer, scaler, amp, step, stop)

    monkeypatch.setattr(segmentation, "train_epoch", patched)


def test_worker_processes_give_the_uninterrupted_run(twin, reference, tmp_path):
    # two persistent workers augment each case under its (seed, epoch, index) seed, as the main process would
    assert_same_run(reference, run_job(request(twin, tmp_path / "results", "task.num_workers=2")))


def test_stop_signal_then_rerun_resumes_exactly(twin, reference, tmp_path, monkeypatch, capfd):
    req = request(twin, tmp_path / "results")
    signal_in_epoch(monkeypatch, 2)
    with pytest.raises(FinetuningStopped, match="resume after epoch 1"):
        run_job(req)
    final = plan_run(req).run_dir
    assert not final.exists()  # no record for the unfinished run
    saved = state_of(req)
    assert saved["epoch"] == 1 and len(saved["history"]) == 1
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the loop's handler is gone again

    monkeypatch.undo()
    capfd.readouterr()
    resumed = run_job(req)
    assert "resuming fine-tuning" in logged(capfd)
    assert_same_run(reference, resumed)
    assert not work_dir(final).exists() and not (final / STATE_FILE).exists()  # the state is not published
    assert (final / "record.json").is_file()


def test_sigkill_then_rerun_resumes_from_the_last_saved_epoch(twin, reference, tmp_path, capfd):
    req = request(twin, tmp_path / "results")
    code = (
        "import sys; from tests.test_finetune_resume import request; from simcrop_bench.run.cell import run_job; "
        "from pathlib import Path; run_job(request(Path(sys.argv[1]), Path(sys.argv[2])))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(twin), str(tmp_path / "results")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, SIGKILL_AT_EPOCH_ENV: "2"},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    saved = state_of(req)
    assert saved["epoch"] == 2 and [e["epoch"] for e in saved["history"]] == [0, 1]

    capfd.readouterr()
    resumed = run_job(req)
    assert "after epoch 2/3" in logged(capfd)  # not from epoch 0
    assert_same_run(reference, resumed)


def test_changed_config_is_not_resumed_from_the_old_state(twin, tmp_path, monkeypatch, capfd):
    results = tmp_path / "results"
    old = request(twin, results)
    signal_in_epoch(monkeypatch, 2, signal.SIGTERM)
    with pytest.raises(FinetuningStopped):
        run_job(old)
    monkeypatch.undo()
    old_state = work_dir(plan_run(old).run_dir) / STATE_FILE
    assert old_state.is_file()

    # Another config is another run folder, hence another work folder: it starts at epoch 1.
    new = request(twin, results, "task.lr=0.002")
    capfd.readouterr()
    fresh = run_job(new)
    assert "resuming" not in logged(capfd)
    assert len(fresh["details"]["history"]) == 3 and old_state.is_file()  # the old cell can still resume

    # A state saved for other settings in this very folder (e.g. the data changed): discarded, fresh start.
    work_dir(plan_run(new).run_dir).mkdir()
    shutil.copy(old_state, work_dir(plan_run(new).run_dir) / STATE_FILE)
    capfd.readouterr()
    again = run_job(request(twin, results, "task.lr=0.002", force=True))
    err = logged(capfd)
    assert "discarding fine-tuning state" in err and "task_config" in err and "resuming" not in err
    assert_same_run(fresh, again)
