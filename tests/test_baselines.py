"""Baselines on the shared backbone (methods/mae.py, simmim.py, clip.py, mrm.py): hand-checkable facts.

Models run on a tiny encoder (4 × 4 × 4 = 64 tokens) and, where text is needed, a tiny random BERT;
one smoke step per method goes through the real loop on a two-case CT-RATE twin.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from simcrop_bench import registry
from simcrop_bench.api import PretrainContext
from simcrop_bench.baselines.clip import VolumeReportCLIP, clip_infonce
from simcrop_bench.baselines.mae import MaskedAutoencoder
from simcrop_bench.baselines.simmim import SimMIM, block_mask
from simcrop_bench.config import apply_overrides
from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.models.vit3d import ViT3D, load_encoder_weights, read_checkpoint
from simcrop_bench.pretraining.check_method import check_config, tiny_twin
from simcrop_bench.pretraining.scalars import read_metrics
from simcrop_bench.simcrop.losses import normalise_patches
from simcrop_bench.simcrop.model import SimCroPModel
from simcrop_bench.simcrop.text import SpecialIds

ENCODER = EncoderConfig(img_size=(32, 32, 16), patch_size=(8, 8, 4), embed_dim=32, depth=2, num_heads=2)
TOKENS, PATCH_VOXELS = 64, 8 * 8 * 4
IDS = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, period=18, comma=16, single_digits=frozenset(range(20, 30)))
VOCAB, TEXT_LEN = 40, 16
BASELINES = ("mae", "simmim", "clip", "mrm")


def images(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, 32, 32, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=TEXT_LEN,
    )
    return BertModel(config, add_pooling_layer=False)


def encoder_grad(model: ViT3D) -> float:
    return float(model.patch_embed.proj.weight.grad.abs().sum() + model.blocks[0].attn.qkv.weight.grad.abs().sum())


def resolved_config(name: str, profile: str = "paper"):
    registry.discover()
    cls = registry.get_method(name)
    config = cls.Config()
    apply_overrides(config, cls.profile_overrides(profile), section="method")
    return cls, config


# --------------------------------------------------------------------------- MAE


def test_mae_masks_75_percent_and_loss_is_mse_over_masked_patches_only():
    torch.manual_seed(0)
    model = MaskedAutoencoder(ENCODER, norm_pix_loss=False, decoder_depth=1, decoder_heads=2)
    image = images()
    out = model({"image": image})
    mask = out["mim_mask"]
    assert mask.shape == (2, TOKENS) and mask.sum(dim=1).tolist() == [48.0, 48.0]  # int(64 · 0.25) = 16 kept
    target = model.patchify(image)
    expected = ((out["mim_pred"] - target) ** 2 * mask[..., None]).sum() / (48 * 2 * PATCH_VOXELS)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)

    out["mim_pred"].retain_grad()
    out["loss"].backward()
    per_patch = out["mim_pred"].grad.abs().sum(dim=-1)
    assert (per_patch[mask == 0] == 0).all() and (per_patch[mask == 1] > 0).all()  # visible patches: no loss
    assert encoder_grad(model) > 0


def test_mae_norm_pix_target_and_shared_decoder():
    torch.manual_seed(0)
    model = MaskedAutoencoder(ENCODER, norm_pix_loss=True, decoder_depth=1, decoder_heads=2)
    image = images()
    out = model({"image": image})
    target = normalise_patches(model.patchify(image))
    mask = out["mim_mask"]
    expected = ((out["mim_pred"] - target) ** 2 * mask[..., None]).sum() / (mask.sum() * PATCH_VOXELS)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    # SimCroP's image branch is reused, not copied: same functions, same checkpoint key names
    assert MaskedAutoencoder.decode_image is SimCroPModel.decode_image
    assert {"decoder_embed.weight", "mask_token", "decoder_pred_layer.weight"} <= set(model.state_dict())


def test_mae_uses_the_batch_noise_for_its_mask():
    torch.manual_seed(0)
    model = MaskedAutoencoder(ENCODER, norm_pix_loss=False, decoder_depth=1, decoder_heads=2)
    noise = torch.arange(TOKENS, dtype=torch.float).repeat(2, 1)  # the 16 lowest-noise tokens are kept
    mask = model({"image": images(), "mim_noise": noise})["mim_mask"]
    assert mask[:, :16].sum() == 0 and mask[:, 16:].sum() == 2 * 48


# --------------------------------------------------------------------------- SimMIM


def test_simmim_block_mask_counts_and_blocks():
    noise = torch.rand(3, TOKENS, generator=torch.Generator().manual_seed(1))
    mask = block_mask(noise, (4, 4, 4), (2, 2, 2), 0.6)
    assert mask.shape == (3, TOKENS)
    assert mask.sum(dim=1).tolist() == [40.0] * 3  # 8 blocks, ceil(8 · 0.6) = 5 masked, 8 tokens each
    grid = mask.view(3, 4, 4, 4)
    for h in (0, 2):
        for w in (0, 2):
            for d in (0, 2):
                block = grid[:, h : h + 2, w : w + 2, d : d + 2].flatten(1)
                assert (block == block[:, :1]).all()  # a block is masked as a whole
    single = block_mask(noise, (4, 4, 4), (1, 1, 1), 0.6)
    assert single.sum(dim=1).tolist() == [39.0] * 3  # ceil(64 · 0.6)


def test_simmim_l1_only_on_masked_voxels_and_masked_content_never_reaches_the_encoder():
    torch.manual_seed(0)
    model = SimMIM(ENCODER, mask_ratio=0.6, mask_block=(1, 1, 1))
    image = images()
    noise = torch.rand(2, TOKENS, generator=torch.Generator().manual_seed(2))
    out = model({"image": image, "mim_noise": noise})
    mask = out["mim_mask"]
    target = model.patchify(image)
    expected = ((out["mim_pred"] - target).abs() * mask[..., None]).sum() / (mask.sum() * PATCH_VOXELS)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    out["mim_pred"].retain_grad()
    out["loss"].backward()
    per_patch = out["mim_pred"].grad.abs().sum(dim=-1)
    assert (per_patch[mask == 0] == 0).all() and (per_patch[mask == 1] > 0).all()
    assert encoder_grad(model) > 0 and model.mask_token.grad.abs().sum() > 0

    # Every token goes through the encoder, but a masked patch enters only as the mask token:
    masked_patch, visible_patch = int(mask[0].argmax()), int((1 - mask[0]).argmax())
    with torch.no_grad():
        base = model({"image": image, "mim_noise": noise})["mim_pred"]
        for patch, should_change in ((masked_patch, False), (visible_patch, True)):
            patches = model.patchify(image).clone()
            patches[0, patch] += 0.5
            edited = model.unpatchify(patches, (32, 32, 16))
            pred = model({"image": edited, "mim_noise": noise})["mim_pred"]
            assert (not torch.allclose(pred, base)) == should_change
    assert pred.shape == (2, TOKENS, PATCH_VOXELS)  # predictions for all tokens, by a linear head


# --------------------------------------------------------------------------- CLIP


def test_clip_infonce_on_hand_computed_2x2_examples():
    eye = torch.eye(2)
    # logits [[1, 0], [0, 1]]: each CE is log(1 + e^-1)
    assert clip_infonce(eye, eye, torch.tensor(1.0)).item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    # reports (1, 0) and (1, 1)/√2, scale 2: logits [[2, √2], [0, √2]]
    r = math.sqrt(2)
    v2r = (-math.log(math.exp(2) / (math.exp(2) + math.exp(r))) - math.log(math.exp(r) / (1 + math.exp(r)))) / 2
    r2v = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(0.5)) / 2
    got = clip_infonce(eye, torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor(2.0))
    assert got.item() == pytest.approx((v2r + r2v) / 2, rel=1e-6)


def test_clip_records_the_negatives_of_its_recipe():
    notes = VolumeReportCLIP.contrastive_negatives(
        {"effective_batch": 448, "batch_size": 14, "accum_steps": 8, "world_size": 4}
    )
    assert notes["per_sample"] == 55 and notes["pairs_per_loss"] == 56 and notes["gathered_across_ranks"]
    assert "averages 8 losses of 56 pairs" in notes["accumulation"]


def test_clip_temperature_is_learnable_and_the_text_encoder_stays_frozen():
    torch.manual_seed(0)
    model = VolumeReportCLIP(ENCODER, tiny_bert(), latent_dim=16)
    ids = torch.randint(5, VOCAB, (3, TEXT_LEN), generator=torch.Generator().manual_seed(3))
    attention = torch.ones_like(ids)
    attention[0, 10:] = 0
    batch = {"image": images(3), "report_ids": ids, "report_attention_mask": attention}
    out = model(batch)
    assert out["logit_scale"].item() == pytest.approx(math.e)  # CT-CLIP's start: exp(1)
    out["loss"].backward()
    assert model.logit_scale.requires_grad and model.logit_scale.grad is not None and model.logit_scale.grad != 0
    assert encoder_grad(model) > 0 and model.to_text_latent.weight.grad.abs().sum() > 0
    text_params = list(model.text_encoder.parameters())
    assert text_params and all(not p.requires_grad and p.grad is None for p in text_params)
    before = model.logit_scale.item()
    torch.optim.SGD([model.logit_scale], lr=0.1).step()
    assert model.logit_scale.item() != before


def test_clip_frozen_report_embedding_is_deterministic_in_training_mode():
    torch.manual_seed(0)
    model = VolumeReportCLIP(ENCODER, tiny_bert(), latent_dim=16).train()
    ids = torch.randint(5, VOCAB, (2, TEXT_LEN), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    assert torch.equal(model.embed_report(ids, mask), model.embed_report(ids, mask))  # no dropout in the frozen encoder


# --------------------------------------------------------------------------- MRM


def tiny_mrm_model() -> SimCroPModel:
    _, config = resolved_config("mrm", "demo")
    simcrop = config.simcrop.resolved()
    torch.manual_seed(0)
    return SimCroPModel(ENCODER, simcrop, text_encoder=tiny_bert(), special_ids=IDS)


def test_mrm_is_simcrop_with_gap_only_fusion_and_no_alignment():
    cls, config = resolved_config("mrm")
    assert issubclass(cls, registry.get_method("simcrop"))  # reused, not duplicated
    simcrop = config.simcrop.resolved()
    assert (simcrop.fusion, simcrop.alignment, simcrop.mlm_mask_prob) == ("gap_only", "off", 0.5)
    assert simcrop.mim_norm_pix and simcrop.mim_loss_norm == "masked_voxels" and not simcrop.mlm_mask_padding
    names = [name for name, _ in tiny_mrm_model().named_modules()]
    assert not any("cross_self_attention" in n for n in names)  # no word–patch cross-attention
    assert not any(n.startswith(("finding_align_img_mlp", "align_text_mlp")) for n in names)  # no alignment heads
    assert any(n.endswith("fusion_layer.gap_mlp") for n in names)


def test_mrm_report_decoder_sees_the_image_only_through_its_mean():
    model = tiny_mrm_model().eval()
    ids = torch.randint(5, VOCAB, (2, TEXT_LEN), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    patches = torch.randn(2, 16, ENCODER.embed_dim, generator=torch.Generator().manual_seed(6))
    shuffle = torch.randn(2, 16, ENCODER.embed_dim, generator=torch.Generator().manual_seed(7))
    same_mean = patches + shuffle - shuffle.mean(dim=1, keepdim=True)  # other tokens, identical average
    with torch.no_grad():
        logits = model.report_logits(patches, ids, mask)
        assert torch.allclose(logits, model.report_logits(same_mean, ids, mask), atol=1e-5)
        assert not torch.allclose(logits, model.report_logits(patches + 1.0, ids, mask), atol=1e-3)


def test_mrm_step_has_no_alignment_loss_and_trains_the_encoder():
    model = tiny_mrm_model()
    report = torch.tensor([[IDS.cls] + list(range(5, 5 + TEXT_LEN - 1))] * 2)
    batch = {
        "image": images(),
        "report_ids": report,
        "report_attention_mask": torch.ones_like(report),
        "findings_ids": report,
        "findings_attention_mask": torch.ones_like(report),
        "sentence_ids": torch.zeros_like(report),
    }
    out = model(batch, generator=torch.Generator().manual_seed(0))
    assert out["loss_align"].item() == 0.0
    assert out["loss"].item() == pytest.approx((out["loss_mim"] + out["loss_mlm"]).item(), rel=1e-6)
    out["loss"].backward()
    assert encoder_grad(model) > 0
    assert all(p.grad is None for p in model.bert_encoder.parameters())  # frozen text encoder


# --------------------------------------------------------------------------- one loop step each


@pytest.mark.parametrize("name", BASELINES)
def test_one_pretraining_step_through_the_loop_exports_a_loadable_encoder(name, tmp_path):
    registry.discover()
    cls = registry.get_method(name)
    config = check_config(cls, "demo", [])  # tiny encoder, one step of batch 2, short reports
    ctx = PretrainContext(workdir=tmp_path, seed=42, device="cpu", data_roots={"ctrate": tiny_twin("ctrate")})
    path = Path(cls(config).pretrain(ctx))
    steps = read_metrics(tmp_path)
    assert len(steps) == 1 and math.isfinite(steps[0]["loss"])
    checkpoint = read_checkpoint(path)
    assert checkpoint["simcrop_bench"]["method"] == name
    report = load_encoder_weights(ViT3D(config.encoder), checkpoint, target="full")
    assert not report.missing and not report.unexpected and len(report.loaded) == 4 + 12 * config.encoder.depth + 2
