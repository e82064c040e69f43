"""The numpy head of ``lp-cached`` is the ``paper`` trainer's arithmetic: pinned to torch's AdamW step for step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simcrop_bench.models.config import LAYER_NORM_EPS, EncoderConfig
from simcrop_bench.protocols.probe.config import LinearProbeConfig
from simcrop_bench.protocols.probe.model import LinearProbe
from simcrop_bench.protocols.probe.numpy_head import NumpyHead, feature_batches, layer_norm
from simcrop_bench.protocols.probe.target import ProbeTarget
from simcrop_bench.protocols.probe.torch_trainer import TorchHeadTrainer

TINY = EncoderConfig(img_size=(32, 32, 16), embed_dim=16, depth=1, num_heads=2)
LABELS = ("a", "b", "c")


def _pair(kind: str, cfg: LinearProbeConfig):
    """The torch trainer and a numpy head starting from the same weights."""
    target = ProbeTarget(kind, LABELS, "auc")
    torch.manual_seed(0)
    model = LinearProbe(TINY, target.num_outputs, drop_path_rate=0.0, head_init_std=0.2)
    trainer = TorchHeadTrainer(model, cfg, torch.device("cpu"), target)
    head = NumpyHead(16, target.num_outputs, cfg, multiclass=target.multiclass, seed=0)
    head.restore((model.head.weight.detach().numpy(), model.head.bias.detach().numpy()))
    return target, trainer, head


def _train(kind: str, cfg: LinearProbeConfig, steps: int = 40):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(24, 16)) * 3 + 1).astype(np.float32)  # far from normalised: fc_norm matters
    labels = (
        rng.integers(0, 3, 24) if kind == "multiclass" else rng.integers(0, 2, (24, 3 if kind == "multilabel" else 1))
    )
    target, trainer, head = _pair(kind, cfg)
    targets = target.train_targets(labels)
    x_norm = layer_norm(x, LAYER_NORM_EPS)
    for step in range(steps):
        index = np.arange(step * 8, step * 8 + 8) % len(x)
        torch_loss = trainer.update(torch.from_numpy(x[index]), torch.from_numpy(targets[index]))
        numpy_loss = head.update(x_norm[index], targets[index])
        assert numpy_loss == pytest.approx(torch_loss, rel=1e-4, abs=1e-6)
    return trainer, head, x, x_norm


@pytest.mark.parametrize("kind", ["multilabel", "binary", "multiclass"])
def test_numpy_head_follows_torch_adamw_step_for_step(kind):
    # Warm-up, the cosine, weight decay and a clipping threshold the gradients exceed: every term is used.
    cfg = LinearProbeConfig(lr=3e-2, warmup_steps=5, num_steps=30, weight_decay=1e-2, clip_grad_norm=0.05, amp=False)
    trainer, head, x, x_norm = _train(kind, cfg)
    np.testing.assert_allclose(head.weight, trainer.model.head.weight.detach().numpy(), rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(head.bias, trainer.model.head.bias.detach().numpy(), rtol=2e-4, atol=1e-6)
    # The torch trainer normalises inside the model; the numpy head gets the normalised features once.
    np.testing.assert_allclose(head.predict(x_norm), trainer.predict(x), rtol=1e-4, atol=1e-6)
    assert np.abs(head.weight - _pair(kind, cfg)[2].weight).max() > 0.01  # it did train


def test_clipping_changes_the_trajectory():
    loose = LinearProbeConfig(lr=3e-2, warmup_steps=5, num_steps=30, clip_grad_norm=100.0, amp=False)
    tight = LinearProbeConfig(lr=3e-2, warmup_steps=5, num_steps=30, clip_grad_norm=0.05, amp=False)
    assert not np.allclose(_train("multilabel", loose)[1].weight, _train("multilabel", tight)[1].weight)


def test_layer_norm_equals_torch_and_snapshots_are_copies():
    x = np.random.default_rng(2).normal(size=(5, 16)).astype(np.float32) * 4 - 2
    expected = torch.nn.LayerNorm(16, eps=LAYER_NORM_EPS)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(layer_norm(x, LAYER_NORM_EPS), expected, rtol=1e-5, atol=1e-6)
    head = NumpyHead(16, 3, LinearProbeConfig(), multiclass=False, seed=0)
    saved = head.snapshot()
    head.update(layer_norm(x, LAYER_NORM_EPS), np.ones((5, 3), dtype=np.float32))
    assert not np.array_equal(saved[0], head.weight)
    head.restore(saved)
    assert np.array_equal(saved[0], head.weight)


def test_feature_batches_cover_every_row_once_per_pass_in_a_new_order():
    x = np.arange(10, dtype=np.float32)[:, None]
    batches = feature_batches(x, np.arange(10), batch_size=4, seed=0)
    first = [b for b in batches()]
    second = np.concatenate([t for _, t in batches()])
    assert [len(t) for _, t in first] == [4, 4, 2]
    order = np.concatenate([t for _, t in first])
    assert sorted(order) == list(range(10)) and sorted(second) == list(range(10))
    assert not np.array_equal(order, second)
    assert all(np.array_equal(f[:, 0], t) for f, t in first)  # features stay with their targets
