"""The generic pretraining loop: schedule, no-decay rule, accumulation, exact resume, DDP.

A tiny masked-reconstruction MLP on an in-memory dataset stands in for a method's
model; its masks come from the global torch RNG (so resume must restore it) unless
``stochastic=False`` (needed where runs with different rank counts are compared).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from simcrop_bench.errors import ConfigError
from simcrop_bench.pretraining.config import accumulation_steps
from simcrop_bench.pretraining.distributed import launch_local
from simcrop_bench.pretraining.loop import SIGKILL_AT_STEP_ENV, PretrainConfig, pretrain, spec_snapshot_epochs
from simcrop_bench.pretraining.optim import lr_at, param_groups
from simcrop_bench.pretraining.scalars import read_metrics
from simcrop_bench.pretraining.training_checkpoint import load_training_checkpoint

REPO = Path(__file__).resolve().parent.parent
DIM = 8


class NoisyVectors(Dataset):
    """64 fixed vectors; each draw adds noise from the global RNG (an 'augmentation')."""

    def __init__(self, n: int = 64) -> None:
        self.data = torch.linspace(-1, 1, n * DIM).reshape(n, DIM).sin()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.data[index] + 0.05 * torch.randn(DIM)


class PinnedTable(nn.Module):
    """A frozen module rebuilt from 'files' (here: a formula) that declares its identity, like a text encoder."""

    def __init__(self, version: int = 1) -> None:
        super().__init__()
        self.version = version
        self.weight = nn.Parameter(
            torch.linspace(-0.5, 0.5, DIM * DIM).reshape(DIM, DIM) * version, requires_grad=False
        )

    def frozen_identity(self) -> dict:
        return {"name": "table", "path": f"/somewhere/{os.getpid()}", "sha256": {"table": f"v{self.version}"}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


class TinyMasked(nn.Module):
    """Masked reconstruction: encoder → LayerNorm → decoder; loss = mse + 0.1·latent."""

    def __init__(self, stochastic: bool = True, signal_at_call: int = 0, pinned_version: int = 1) -> None:
        super().__init__()
        self.pinned = PinnedTable(pinned_version)
        self.stochastic = stochastic
        self.signal_at_call = signal_at_call
        self.calls = 0
        self.mask_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.encoder = nn.Linear(DIM, 16)
        self.norm = nn.LayerNorm(16)
        self.decoder = nn.Linear(16, DIM)
        self.frozen_table = nn.Parameter(torch.ones(4, DIM), requires_grad=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.signal_at_call and self.calls == self.signal_at_call:
            os.kill(os.getpid(), signal.SIGUSR1)  # a preemption notice mid-window
        if self.stochastic:  # same masked count per sample, random positions
            mask = torch.rand(x.shape).argsort(dim=1) < DIM // 2
        else:
            mask = (torch.arange(DIM) % 2 == 0).expand_as(x)
        inp = torch.where(mask, self.mask_token[0], x + 0.1 * self.pinned(x))
        latent = self.norm(torch.tanh(self.encoder(inp)))
        rec = self.decoder(latent)
        mse = ((rec - x) ** 2)[mask].mean()
        reg = 0.1 * latent.abs().mean()
        return {"loss": mse + reg, "mse": mse, "reg": reg}


BASE = PretrainConfig(
    epochs=2,
    batch_size=4,
    effective_batch=None,  # a fixed accumulation: the tests vary the process count and batch
    accum_steps=2,
    lr=1e-2,
    warmup_epochs=1,
    weight_decay=0.05,
    precision="fp32",
    checkpoint_every=5,
    seed=7,
)


def train(
    workdir: str, stochastic: bool = True, signal_at_call: int = 0, pinned_version: int = 1, **overrides
) -> object:
    """One run of the tiny model (module-level: also called in a subprocess and spawned ranks)."""
    torch.set_num_threads(1)  # identical float reductions in every process
    cfg = replace(BASE, **overrides)
    return pretrain(
        lambda: TinyMasked(stochastic, signal_at_call, pinned_version), NoisyVectors(), cfg, workdir, log_every=0
    )


def losses(workdir: Path) -> list[dict]:
    return read_metrics(workdir)


# --------------------------------------------------------------------------- optim


def test_lr_schedule_hand_computed_points():
    kw = dict(peak=1.5e-4, warmup_epochs=20, total_epochs=200)
    assert lr_at(0, **kw) == 0.0
    assert lr_at(10, **kw) == pytest.approx(7.5e-5)
    assert lr_at(19.5, **kw) == pytest.approx(1.5e-4 * 19.5 / 20)
    assert lr_at(20, **kw) == pytest.approx(1.5e-4)
    assert lr_at(65, **kw) == pytest.approx(0.75e-4 * (1 + math.cos(math.pi / 4)))
    assert lr_at(110, **kw) == pytest.approx(0.75e-4)
    assert lr_at(200, **kw) == pytest.approx(0.0, abs=1e-15)
    assert lr_at(110, **kw, min_lr=1e-5) == pytest.approx(1e-5 + 0.5 * (1.5e-4 - 1e-5))


def test_no_decay_rule():
    model = TinyMasked()
    model.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
    model.conv = nn.Conv3d(1, 2, 3)
    decay, no_decay = param_groups(model, 0.05)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)
    assert set(decay["names"]) == {"mask_token", "cls_token", "encoder.weight", "decoder.weight", "conv.weight"}
    assert set(no_decay["names"]) == {"encoder.bias", "norm.weight", "norm.bias", "decoder.bias", "conv.bias"}


def test_no_decay_rule_on_vit3d():
    from simcrop_bench.models.config import EncoderConfig
    from simcrop_bench.models.vit3d import ViT3D

    vit = ViT3D(EncoderConfig(img_size=(16, 16, 8), patch_size=(8, 8, 4), embed_dim=16, depth=1, num_heads=2))
    decay, no_decay = param_groups(vit, 0.05)
    names = decay["names"] + no_decay["names"]
    assert "pos_embed" not in names  # frozen: excluded
    assert "cls_token" in decay["names"] and "patch_embed.proj.weight" in decay["names"]
    assert "blocks.0.norm1.weight" in no_decay["names"] and "patch_embed.proj.bias" in no_decay["names"]
    assert len(names) == sum(p.requires_grad for p in vit.parameters())


# --------------------------------------------------------------------------- loop


def test_spec_snapshot_epochs():
    assert spec_snapshot_epochs(200) == (0, 40, 60, 80, *range(100, 200, 10), 199)


def test_lr_set_at_window_start_per_fractional_epoch(tmp_path):
    result = train(str(tmp_path), epochs=2, warmup_epochs=1, snapshot_epochs=(0,))
    records = losses(tmp_path)
    iters_per_epoch = 64 // 4  # micro-batches per epoch
    assert [r["step"] for r in records] == list(range(1, 17)) and result.step == 16
    for r in records:
        k = (r["step"] - 1) % 8  # window index within the epoch
        epoch = (r["step"] - 1) // 8
        e = epoch + 2 * k / iters_per_epoch
        assert r["epoch"] == pytest.approx(e)
        assert r["lr"] == pytest.approx(lr_at(e, peak=1e-2, warmup_epochs=1, total_epochs=2))
    assert {"loss", "mse", "reg"} <= set(records[0])
    assert (tmp_path / "tensorboard").is_dir() or (tmp_path / "scalars.csv").exists()
    snapshot = load_training_checkpoint(tmp_path / "checkpoint-epoch0000.pt")
    assert (snapshot["step"], snapshot["epoch"], snapshot["batches_done"]) == (8, 1, 0)


def test_accumulation_matches_double_batch(tmp_path):
    a = train(str(tmp_path / "accum"), stochastic=False, batch_size=4, accum_steps=2)
    b = train(str(tmp_path / "big"), stochastic=False, batch_size=8, accum_steps=1)
    ra, rb = losses(tmp_path / "accum"), losses(tmp_path / "big")
    assert len(ra) == len(rb) == 16
    for x, y in zip(ra, rb):
        assert x["lr"] == pytest.approx(y["lr"], rel=1e-12)
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5)
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize(("lines", "expected"), [("", 20), ("4", 4), ("0", 0)])
def test_periodic_log_lines_scale_with_run_length(tmp_path, capsys, monkeypatch, lines, expected):
    # 64 vectors, batch 4, no accumulation: 16 steps per epoch; 5 epochs = 80 steps
    monkeypatch.setenv("SIMCROP_BENCH_LOG_LINES", lines)
    torch.set_num_threads(1)
    cfg = replace(BASE, epochs=5, accum_steps=1, checkpoint_every=0)
    pretrain(lambda: TinyMasked(), NoisyVectors(), cfg, str(tmp_path / "run"))
    logged = [line for line in capsys.readouterr().err.splitlines() if line.startswith("step ")]
    assert len(logged) == expected
    if expected:
        assert logged[-1].startswith("step 80/80 ")


def test_fp16_on_cpu_is_refused_and_bf16_runs(tmp_path):
    with pytest.raises(ValueError, match="fp16"):
        train(str(tmp_path / "fp16"), precision="fp16")
    train(str(tmp_path / "bf16"), precision="bf16", epochs=1)
    assert all(math.isfinite(r["loss"]) for r in losses(tmp_path / "bf16"))


def test_losses_do_not_depend_on_the_worker_count(tmp_path):
    train(str(tmp_path / "none"), num_workers=0)  # loading in this process
    train(str(tmp_path / "two"), num_workers=2)  # two persistent workers, items keyed by (epoch, index)
    serial, parallel = losses(tmp_path / "none"), losses(tmp_path / "two")
    assert len(serial) == 16 and [r["loss"] for r in parallel] == [r["loss"] for r in serial]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_sigkill_then_resume_is_exact(tmp_path, num_workers):
    train(str(tmp_path / "a"), num_workers=num_workers)  # 16 steps, checkpoints at 5, 10, 15, 16
    run_b = tmp_path / "b"
    code = "import sys; from tests.test_pretraining_loop import train; train(sys.argv[1], num_workers=int(sys.argv[2]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(run_b), str(num_workers)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, SIGKILL_AT_STEP_ENV: "6"},  # killed after step 6; last checkpoint: step 5
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    saved = load_training_checkpoint(run_b / "checkpoint.pt")
    assert (saved["step"], saved["epoch"], saved["batches_done"]) == (5, 0, 10)
    # the frozen, reloadable module is stored as its identity, not as weights
    assert not any(k.startswith("pinned.") for k in saved["model"]) and "frozen_table" in saved["model"]
    assert saved["frozen_modules"]["pinned"]["sha256"] == {"table": "v1"}
    assert [r["step"] for r in losses(run_b)] == list(range(1, 7))  # step 6 logged, then killed

    result = train(str(run_b), num_workers=num_workers)  # resume in this process
    ra, rb = losses(tmp_path / "a"), losses(run_b)
    assert [r["step"] for r in rb] == list(range(1, 17))  # the orphan step-6 line was replaced
    for x, y in zip(ra, rb):
        for key in ("lr", "loss", "mse", "reg"):
            assert y[key] == pytest.approx(x[key], abs=1e-6), (x["step"], key)
    final_a = load_training_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    resumed = result.model.state_dict()
    assert set(resumed) - set(final_a) == {"pinned.weight"}  # rebuilt by the factory
    for name, tensor in final_a.items():
        torch.testing.assert_close(resumed[name], tensor, atol=1e-6, rtol=0, msg=name)


def test_stop_signal_checkpoints_and_resume_is_exact(tmp_path):
    train(str(tmp_path / "a"), checkpoint_every=0)
    stopped = train(str(tmp_path / "b"), checkpoint_every=0, signal_at_call=7)  # SIGUSR1 in step 4
    assert stopped.preempted and stopped.step == 4
    assert load_training_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 4
    resumed = train(str(tmp_path / "b"), checkpoint_every=0)
    assert not resumed.preempted and resumed.step == 16
    ra, rb = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert [r["loss"] for r in rb] == pytest.approx([r["loss"] for r in ra], abs=1e-6)


def test_resume_refuses_a_different_frozen_module(tmp_path):
    train(str(tmp_path), epochs=1)
    with pytest.raises(ConfigError, match=r"frozen module 'pinned' .*sha256\.table: checkpoint 'v1', now 'v2'") as err:
        train(str(tmp_path), epochs=2, pinned_version=2)
    assert "\n" not in str(err.value)
    train(str(tmp_path), epochs=2)  # same identity at another path: resumes


def test_resume_refuses_changed_batch_size(tmp_path):
    train(str(tmp_path), epochs=1)
    with pytest.raises(ValueError, match="batch_size"):
        train(str(tmp_path), epochs=1, batch_size=2)


def test_two_process_gloo_equals_one_process_double_batch(tmp_path):
    launch_local(train, 2, str(tmp_path / "ddp"), False)  # batch 4 per process, accum 2
    train(str(tmp_path / "single"), stochastic=False, batch_size=8)
    rd, rs = losses(tmp_path / "ddp"), losses(tmp_path / "single")
    assert len(rd) == len(rs) == 8  # 2 epochs × 4 steps of 16 samples
    for x, y in zip(rd, rs):
        assert x["lr"] == pytest.approx(y["lr"], rel=1e-12)
        for key in ("loss", "mse", "reg"):
            assert x[key] == pytest.approx(y[key], abs=1e-5), (x["step"], key)
    saved = load_training_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert saved["world_size"] == 2 and len(saved["rng"]) == 2
    assert not any(k.startswith("module.") for k in saved["model"])


def train_effective_batch(workdir: str) -> None:
    """The tiny model with the recipe fixing the effective batch (16) instead of the accumulation."""
    train(workdir, stochastic=False, effective_batch=16, accum_steps=None)


def test_effective_batch_is_the_same_on_two_processes_with_half_the_accumulation(tmp_path):
    launch_local(train_effective_batch, 2, str(tmp_path / "two"))  # batch 4 × accumulation 2 × 2 processes
    train_effective_batch(str(tmp_path / "one"))  # batch 4 × accumulation 4 × 1 process
    infos = [json.loads((tmp_path / run / "pretrain_info.json").read_text())["recipe"] for run in ("two", "one")]
    assert infos == [
        {"effective_batch": 16, "batch_size": 4, "accum_steps": 2, "world_size": 2},
        {"effective_batch": 16, "batch_size": 4, "accum_steps": 4, "world_size": 1},
    ]
    two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
    assert len(two) == len(one) == 8  # 2 epochs × 64 samples / 16 per step
    for x, y in zip(two, one):
        assert x["lr"] == pytest.approx(y["lr"], rel=1e-12)
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5), x["step"]
    # The same updates: the trained weights agree to float-reduction order.
    weights = [load_training_checkpoint(tmp_path / run / "checkpoint.pt")["model"] for run in ("two", "one")]
    for key, value in weights[1].items():
        torch.testing.assert_close(weights[0][key], value, atol=1e-5, rtol=0, msg=key)


def test_an_effective_batch_the_processes_cannot_share_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"effective_batch=18 is not a multiple of batch_size 4 × 1 process"):
        train(str(tmp_path), effective_batch=18, accum_steps=None)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_accumulation_follows_the_number_of_processes_in_the_paper_recipe():
    paper = PretrainConfig()
    assert [accumulation_steps(paper, world) for world in (1, 2, 4, 8)] == [32, 16, 8, 4]
    with pytest.raises(ConfigError, match="448 is not a multiple of batch_size 14 × 3 process"):
        accumulation_steps(paper, 3)
    with pytest.raises(ConfigError, match="accum_steps=8 contradicts"):
        accumulation_steps(replace(paper, accum_steps=8), 1)
    assert accumulation_steps(replace(paper, accum_steps=8), 4) == 8
    assert accumulation_steps(replace(paper, effective_batch=None, accum_steps=3), 5) == 3
