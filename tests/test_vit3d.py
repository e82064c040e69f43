"""Conformance tests of the 3D ViT, its position tables and its checkpoint converter.

``simcrop-method.md`` §11 items 1 (patch embedding), 2 (token order), 3 (patchify round
trip), 4 (position embeddings) and 9 (checkpoint round trip), plus the loader rules of §10.2.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np
import pytest
import torch

from simcrop_bench.errors import UserError
from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.models.pos_embed import detect_pos_embed_variant, sincos_pos_embed
from simcrop_bench.models.vit3d import (
    Attention,
    DropPath,
    ViT3D,
    checkpoint_filter_fn,
    export_released,
    load_encoder_weights,
)

torch.set_num_threads(2)


def small_cfg(**overrides) -> EncoderConfig:
    base = dict(img_size=(64, 64, 32), embed_dim=24, depth=2, num_heads=2)
    return EncoderConfig(**{**base, **overrides})


def make_model(seed: int = 0, **overrides) -> ViT3D:
    torch.manual_seed(seed)
    return ViT3D(small_cfg(**overrides))


# --------------------------------------------------------------------------- patches and tokens


@pytest.mark.parametrize("spatial", [(64, 64, 32), (224, 224, 112)])
def test_direct_patch_embedding_equals_patch_vector_form(spatial):
    model = make_model(embed_dim=6, depth=1, num_heads=1, img_size=spatial)
    x = torch.randn(1, 1, *spatial)
    direct = model.patch_embed(x)
    # Reference form: cut the volume into patch vectors, run the conv on each patch alone.
    vectors = model.patchify(x)
    patches = vectors.reshape(-1, *model.cfg.patch_size, 1).permute(0, 4, 1, 2, 3)
    per_patch = model.patch_embed.proj(patches).reshape(1, vectors.shape[1], -1)
    assert direct.shape == (1, math.prod(model.cfg.grid(spatial)), 6)
    torch.testing.assert_close(direct, per_patch, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("block", [(0, 0, 0), (1, 2, 3), (3, 0, 4)])
def test_token_order_is_h_major_d_fastest(block):
    model = make_model()
    spatial = (64, 48, 40)  # anisotropic grid (4, 3, 5) so that axis mix-ups show
    h, w, d = model.cfg.grid(spatial)
    (i, j, k), (p, q, r) = block, model.cfg.patch_size
    x = torch.zeros(1, 1, *spatial)
    x[..., i * p : (i + 1) * p, j * q : (j + 1) * q, k * r : (k + 1) * r] = torch.rand(p, q, r) + 0.5
    with torch.no_grad():
        changed = (model.patch_embed(x) - model.patch_embed(torch.zeros_like(x))).abs().sum(-1)[0] > 0
    assert changed.nonzero().flatten().tolist() == [(i * w + j) * d + k]


def test_patchify_is_c_order_within_patch_and_round_trips():
    model = make_model()
    x = torch.randn(2, 1, 64, 48, 40)
    patches = model.patchify(x)
    assert patches.shape == (2, 4 * 3 * 5, 16 * 16 * 8)
    (i, j, k), (_, w, d) = (2, 1, 3), (4, 3, 5)
    expected = x[1, 0, i * 16 : (i + 1) * 16, j * 16 : (j + 1) * 16, k * 8 : (k + 1) * 8].reshape(-1)
    assert torch.equal(patches[1, (i * w + j) * d + k], expected)
    assert torch.equal(model.unpatchify(patches, (64, 48, 40)), x)


# --------------------------------------------------------------------------- position tables


def closed_form(variant: str, grid, dim: int) -> np.ndarray:
    """§2.6 written out position by position, independently of the implementation."""
    rows = []
    for h in range(grid[0]):
        for w in range(grid[1]):
            for d in range(grid[2]):
                if variant == "A":
                    b = dim // 6
                    row = []
                    for pos in (h, w, d):
                        row += [math.sin(pos * 10000 ** (-k / b)) for k in range(b)]
                        row += [math.cos(pos * 10000 ** (-k / b)) for k in range(b)]
                else:
                    row = [0.0] * dim
                    for k in range(dim // 2):
                        omega = 10000 ** (-2 * k / dim)
                        row[2 * k], row[2 * k + 1] = math.sin(h * omega), math.cos(w * omega)
                rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize("variant", ["A", "B"])
def test_pos_embed_matches_closed_form(variant):
    grid, dim = (3, 4, 2), 12
    table = sincos_pos_embed(grid, dim, variant, cls_token=True)
    assert table.shape == (25, dim) and table.dtype == np.float32
    assert not table[0].any()
    np.testing.assert_allclose(table[1:], closed_form(variant, grid, dim), atol=1e-6)
    assert sincos_pos_embed(grid, dim, variant).shape == (24, dim)


def test_variant_b_has_no_depth_term():
    table = sincos_pos_embed((3, 3, 4), 8, "B").reshape(3, 3, 4, 8)
    assert np.array_equal(table, np.broadcast_to(table[:, :, :1], table.shape))


def test_detection_of_every_variant():
    cubic = (14, 14, 14)  # the pretraining grid; the grid is inferred from the row count
    a, b = (torch.from_numpy(sincos_pos_embed(cubic, 24, v, cls_token=True))[None] for v in "AB")
    assert detect_pos_embed_variant(a) == "A"
    assert detect_pos_embed_variant(b) == "B"
    assert detect_pos_embed_variant(torch.zeros_like(b)) == "absent"
    assert detect_pos_embed_variant(None) == "absent"
    assert detect_pos_embed_variant(torch.randn_like(b) * 0.02) == "unknown"  # a learned table
    shifted = b.clone()
    shifted[0, 0, 0] = 0.5  # row 0 must be the zero cls row
    assert detect_pos_embed_variant(shifted) == "unknown"
    anisotropic = (6, 6, 3)
    for variant in "AB":
        table = sincos_pos_embed(anisotropic, 24, variant, cls_token=True)
        assert detect_pos_embed_variant(table, grid=anisotropic) == variant
        assert detect_pos_embed_variant(table) == "unknown"  # 108 tokens: no cubic grid to infer
    assert detect_pos_embed_variant(sincos_pos_embed((6, 6, 6), 24, "B")) == "B"  # no cls row


# --------------------------------------------------------------------------- the model


def test_attention_matches_manual_softmax_attention():
    torch.manual_seed(0)
    attn = Attention(dim=16, num_heads=4, qkv_bias=True)
    x = torch.randn(2, 7, 16)
    q, k, v = attn.qkv(x).reshape(2, 7, 3, 4, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(4), dim=-1)
    manual = attn.proj((weights @ v).transpose(1, 2).reshape(2, 7, 16))
    torch.testing.assert_close(attn(x), manual, rtol=1e-5, atol=1e-5)


def test_structure_and_initialisation():
    model = make_model(drop_path_rate=0.1, depth=3)
    state = model.state_dict()
    assert state["pos_embed"].shape == (1, 4 * 4 * 4 + 1, 24) and not model.pos_embed.requires_grad
    assert not state["pos_embed"][0, 0].any()
    assert detect_pos_embed_variant(state["pos_embed"]) == "B"
    assert model.cls_token.requires_grad and model.cls_token.shape == (1, 1, 24)
    assert state["blocks.0.attn.qkv.weight"].shape == (72, 24) and not state["blocks.0.attn.qkv.bias"].any()
    assert not state["blocks.1.mlp.fc2.bias"].any()
    assert torch.equal(state["blocks.2.norm1.weight"], torch.ones(24))
    assert model.blocks[0].norm1.eps == model.norm.eps == 1e-6
    rates = [getattr(block.drop_path, "drop_prob", 0.0) for block in model.blocks]
    assert rates == pytest.approx([0.0, 0.05, 0.1])


def test_forward_features_returns_raw_block_outputs():
    model = make_model().eval()
    x = torch.randn(2, 1, 64, 64, 32)
    last, hidden = model.forward_features(x)
    assert last.shape == (2, 65, 24) and len(hidden) == 2 and torch.equal(last, hidden[-1])
    torch.testing.assert_close(model(x), model.norm(last))
    no_cls, _ = model.forward_features(x, use_cls_token=False)
    assert no_cls.shape == (2, 64, 24)


def test_other_grids_and_explicit_variants_use_computed_tables():
    model = make_model(pos_embed="A")
    x = torch.randn(1, 1, 96, 96, 48)  # grid (6, 6, 6) instead of the configured (4, 4, 4)
    table_a = torch.from_numpy(sincos_pos_embed((6, 6, 6), 24, "A"))
    torch.testing.assert_close(model.embed_patches(x), model.patch_embed(x) + table_a)
    same_grid = torch.randn(1, 1, 64, 64, 32)  # configured grid, but Variant B asked for
    table_b = torch.from_numpy(sincos_pos_embed((4, 4, 4), 24, "B"))
    torch.testing.assert_close(model.embed_patches(same_grid, "B"), model.patch_embed(same_grid) + table_b)
    assert "_pos_cache" not in "".join(model.state_dict())


# --------------------------------------------------------------------------- checkpoints


ENCODER_KEYS = {"patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed"}


def test_export_contains_exactly_the_encoder():
    model = make_model()
    wrapper = torch.nn.Module()  # e.g. a fine-tuned model holding extra heads
    wrapper.vit, wrapper.fc_norm, wrapper.head = model, torch.nn.LayerNorm(24), torch.nn.Linear(24, 3)
    for source in (model, wrapper):
        weights = export_released(source, metadata={"pos_embed_variant": "B"})
        keys = set(weights["model"])
        assert ENCODER_KEYS <= keys and {"norm.weight", "norm.bias"} <= keys
        assert all(k in ENCODER_KEYS or k.startswith(("blocks.", "norm.")) for k in keys)
        assert all(v.dtype == torch.float32 for v in weights["model"].values())
        # the metadata, plus the encoder config (heads cannot be read off the shapes)
        assert weights["simcrop_bench"] == {"pos_embed_variant": "B", "encoder": dataclasses.asdict(model.cfg)}


@pytest.mark.parametrize("target", ["full", "probe"])
def test_round_trip_through_a_file(tmp_path, target):
    source, fresh = make_model(seed=1), make_model(seed=2)
    with torch.no_grad():
        source.norm.weight.add_(1.0)  # so that a loaded norm would be visible
    fresh_norm = fresh.norm.weight.detach().clone()
    path = tmp_path / "encoder.pth"
    torch.save(export_released(source), path)
    report = load_encoder_weights(fresh, path, target=target)
    assert report.pos_embed_variant == "B" and not report.missing and not report.unexpected
    expected, loaded = source.state_dict(), fresh.state_dict()
    for name in expected:
        if name.startswith("norm.") and target == "probe":  # the probe ignores the final norm
            assert "norm.weight" in report.ignored and torch.equal(loaded["norm.weight"], fresh_norm)
        else:
            assert torch.equal(expected[name], loaded[name]), name


def test_filter_strips_prefixes_and_drops_heads():
    weights = export_released(make_model())["model"]
    noisy = {f"module.encoder.{k}": v for k, v in weights.items()}
    noisy |= {"module.fc_norm.weight": torch.ones(24), "module.head.weight": torch.zeros(3, 24)}
    noisy |= {"module.decoder_blocks.0.norm1.weight": torch.ones(24), "module.mask_token": torch.zeros(1, 1, 24)}
    assert checkpoint_filter_fn({"model": noisy, "epoch": 3}).keys() == weights.keys()
    assert checkpoint_filter_fn({f"vit.{k}": v for k, v in weights.items()}).keys() == weights.keys()


def test_module_prefixed_training_checkpoint_loads(tmp_path):
    source, fresh = make_model(seed=1), make_model(seed=2)
    weights = {f"module.{k}": v for k, v in source.state_dict().items()}
    weights["module.decoder_embed.weight"] = torch.zeros(24, 24)
    path = tmp_path / "checkpoint-10.pth"
    torch.save({"model": weights, "epoch": 10, "args": argparse.Namespace(lr=1e-4)}, path)
    report = load_encoder_weights(fresh, path, target="probe")
    assert torch.equal(fresh.blocks[1].mlp.fc1.weight, source.blocks[1].mlp.fc1.weight)
    assert "module.decoder_embed.weight" in report.ignored and report.source == str(path)


@pytest.mark.parametrize("pos_embed", ["absent", "zero"])
def test_probe_refuses_missing_or_zero_pos_embed_unless_allowed(pos_embed):
    weights = export_released(make_model(seed=1))["model"]
    if pos_embed == "absent":
        del weights["pos_embed"]
    else:
        weights["pos_embed"] = torch.zeros_like(weights["pos_embed"])
    with pytest.raises(UserError, match="pos_embed"):
        load_encoder_weights(make_model(seed=2), weights, target="probe")
    model = make_model(seed=2)
    report = load_encoder_weights(model, weights, target="probe", allow_zero_pos_embed=True)
    assert report.pos_embed_variant == "absent" and not model.pos_embed.any()
    assert ("pos_embed" in report.missing) == (pos_embed == "absent")


def test_segmentation_target_skips_cls_token_and_pos_embed():
    source, fresh = make_model(seed=1, pos_embed="A"), make_model(seed=2)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    report = load_encoder_weights(fresh, export_released(source), target="segmentation")
    assert report.pos_embed_variant == "A"
    assert {"cls_token", "pos_embed", "norm.weight"} <= set(report.ignored)
    assert not any(k.startswith(("cls_token", "pos_embed", "norm.")) for k in report.loaded)
    after = fresh.state_dict()
    for name in after:
        keeps = name in ("cls_token", "pos_embed") or name.startswith("norm.")
        assert torch.equal(after[name], before[name] if keeps else source.state_dict()[name]), name


def test_unreadable_files_and_shape_mismatches_are_user_errors(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    for path in (corrupt, tmp_path / "missing.pth"):
        with pytest.raises(UserError, match=path.name) as raised:
            load_encoder_weights(make_model(), path, target="probe")
        assert "\n" not in str(raised.value)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": {}, "path": tmp_path}, unsafe)  # a pickled object weights_only refuses
    with pytest.raises(UserError, match="unsafe.pth.*would call pathlib.PosixPath, which weights_only loading forbids"):
        load_encoder_weights(make_model(), unsafe, target="probe")
    wide = export_released(make_model(embed_dim=48, num_heads=4))
    with pytest.raises(UserError, match="shape mismatch.*patch_embed.proj.weight"):
        load_encoder_weights(make_model(), wide, target="segmentation")
    with pytest.raises(UserError, match="no transformer block"):
        load_encoder_weights(make_model(), {"model": {"head.weight": torch.zeros(2, 24)}}, target="segmentation")


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_drop_path_equals_monais(p):
    from monai.networks.layers import DropPath as MonaiDropPath

    x = torch.randn(6, 5, 7)
    ours, theirs = DropPath(p), MonaiDropPath(p)
    torch.manual_seed(3)
    a = ours(x)
    torch.manual_seed(3)
    b = theirs(x)
    assert torch.equal(a, b)
    assert torch.equal(ours.eval()(x), x)


def test_encoder_import_does_not_load_monai():
    """A probe on cached features builds the encoder; importing it must not pay for all of MONAI."""
    import subprocess
    import sys

    code = (
        "import sys; import simcrop_bench.models.vit3d, simcrop_bench.protocols.probe.features; "
        "print('monai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
