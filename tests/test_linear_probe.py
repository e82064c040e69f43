"""The linear-probe network (protocol.md §6.1) and its feature cache (§6.6), without the CLI."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import torch

from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.models.vit3d import CheckpointError, ViT3D, export_released
from simcrop_bench.protocols.probe.features import ProbeInput, cached, encoder_identity, feature_key
from simcrop_bench.protocols.probe.model import LinearProbe
from simcrop_bench.protocols.probe.torch_trainer import extract

TINY = EncoderConfig(img_size=(32, 32, 16), embed_dim=32, depth=2, num_heads=2)


def probe(**kwargs) -> LinearProbe:
    torch.manual_seed(0)
    return LinearProbe(TINY, 3, drop_path_rate=kwargs.get("drop_path_rate", 0.1), head_init_std=2e-5)


def test_only_the_head_trains_and_fc_norm_is_a_fresh_identity_layernorm():
    model = probe()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    assert torch.equal(model.fc_norm.weight, torch.ones(32)) and torch.equal(model.fc_norm.bias, torch.zeros(32))
    assert not hasattr(model.encoder, "norm")  # the pretrained final norm is deleted
    assert model.head.weight.abs().max() < 4 * 2e-5 and torch.equal(model.head.bias, torch.zeros(3))


def test_pooled_feature_is_the_mean_of_patch_tokens_without_cls():
    model = probe().eval()
    x = torch.randn(2, 1, 32, 32, 16)
    tokens, _ = model.encoder.forward_features(x)
    assert tokens.shape[1] == 1 + 2 * 2 * 2
    assert torch.allclose(model.pooled(x), tokens[:, 1:].mean(1))
    assert model(x).shape == (2, 3)


def test_drop_path_is_active_in_training_mode_only():
    model = probe(drop_path_rate=0.5)
    x = torch.randn(4, 1, 32, 32, 16)
    model.train()
    assert not torch.equal(model.pooled(x), model.pooled(x))  # stochastic depth inside the frozen encoder (H9)
    model.eval()
    assert torch.equal(model.pooled(x), model.pooled(x))


def test_gradient_reaches_the_head_only():
    model = probe().train()
    loss = model(torch.randn(2, 1, 32, 32, 16)).sum()
    loss.backward()
    assert model.head.weight.grad is not None
    assert all(p.grad is None for p in model.encoder.parameters())


def test_checkpoint_without_pos_embed_is_refused(tmp_path):
    released = export_released(ViT3D(TINY), {"method": "test"})
    del released["model"]["pos_embed"]
    torch.save(released, tmp_path / "no_pos.pth")
    with pytest.raises(CheckpointError, match="no pos_embed"):
        probe().load_encoder(tmp_path / "no_pos.pth")


def _volume(path, seed: int) -> None:
    data = np.random.default_rng(seed).integers(-1000, 1000, size=(32, 32, 16)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 4.0, 1.0])), path)


def test_feature_cache_is_keyed_by_weights_transform_and_source_files(tmp_path):
    paths = [tmp_path / f"v{i}.nii.gz" for i in range(3)]
    for i, path in enumerate(paths):
        _volume(path, i)
    model = probe().eval()
    spec = ProbeInput((32, 32, 16))
    identity = encoder_identity(TINY, None, init_seed=42)
    key = feature_key(identity, spec.evaluation_spec(), paths)

    def compute():
        return extract(
            model.pooled, paths, spec.evaluation_chain(), batch_size=2, device=torch.device("cpu"), amp=False
        )

    first = cached(tmp_path / "cache", key, compute, lambda: {"device": "cpu", "precision": "fp32"})
    assert not first.hit and first.features.shape == (3, 32)

    def must_not_run():
        raise AssertionError("a cache hit computes nothing")

    again = cached(tmp_path / "cache", key, must_not_run, must_not_run)
    assert again.hit and np.array_equal(first.features, again.features) and again.features.dtype == np.float32
    assert again.origin == first.origin == {"device": "cpu", "precision": "fp32"}  # how the stored copy was made
    # Anything the features depend on changes the key.
    assert feature_key(encoder_identity(TINY, None, init_seed=43), spec.evaluation_spec(), paths) != key
    assert feature_key(encoder_identity(TINY, "ab" * 32, 42), spec.evaluation_spec(), paths) != key
    assert feature_key(identity, ProbeInput((32, 32, 8)).evaluation_spec(), paths) != key
    stat = paths[0].stat()
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert feature_key(identity, spec.evaluation_spec(), paths) != key
    # Drop-path does not enter the key: evaluation features are computed without it.
    assert encoder_identity(TINY, None, 42) == encoder_identity(
        EncoderConfig(**{**TINY.__dict__, "drop_path_rate": 0.3}), None, 42
    )
