"""SimCroP model and objectives (simcrop-method.md §2–§3, §7, §9) on a tiny encoder and a tiny random BERT.

One test loads the real offline MiniLM to check its pinned hashes and the §2.2 tokenisation rules.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertModel

from simcrop_bench.data.sentences import simcrop_sentence_ids
from simcrop_bench.errors import UserError
from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.models.vit3d import export_released
from simcrop_bench.simcrop.config import SimCroPConfig
from simcrop_bench.simcrop.fusion import ReportDecoder, text_decoder_config
from simcrop_bench.simcrop.losses import (
    alignment_infonce,
    mim_loss,
    mlm_loss,
    sentence_features,
    topk_similarity,
)
from simcrop_bench.simcrop.masking import mask_report_ids, num_kept, random_patch_masking
from simcrop_bench.simcrop.model import SimCroPModel
from simcrop_bench.simcrop.text import (
    MINILM_SHA256,
    SpecialIds,
    load_text_encoder,
    prepare_text,
    report_text,
    tokenize,
    verify_pinned_files,
)

# Tiny stand-in vocabulary: CXR-BERT-like special ids, '.'=18, ','=16, digits 20..29.
IDS = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, period=18, comma=16, single_digits=frozenset(range(20, 30)))
VOCAB, TEXT_LEN = 40, 24
TINY_ENCODER = EncoderConfig(img_size=(32, 32, 16), patch_size=(8, 8, 4), embed_dim=32, depth=2, num_heads=2)


def tiny_cfg(**changes) -> SimCroPConfig:
    base = dict(
        vision_decoder_depth=1,
        vision_decoder_heads=2,
        text_decoder_layers=1,
        text_decoder_heads=2,
        text_decoder_ffn=64,
        topk=4,
        max_text_len=TEXT_LEN,
    )
    return SimCroPConfig(**{**base, **changes})


def tiny_text_encoder() -> BertModel:
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


def tiny_model(**changes) -> SimCroPModel:
    torch.manual_seed(0)
    return SimCroPModel(TINY_ENCODER, tiny_cfg(**changes), text_encoder=tiny_text_encoder(), special_ids=IDS)


def text_row(words: list[int]) -> list[int]:
    row = [IDS.cls, *words][:TEXT_LEN]
    return row + [IDS.pad] * (TEXT_LEN - len(row))


def tiny_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # sample 0: three sentences; sample 1: one sentence, then an unterminated one (id 0)
    findings = [
        [5, 6, 18, 7, 21, 18, 25, 8, 18, 9, 10, 18],  # "3.5"-like period between digits stays inside sentence 2
        [11, 12, 13, 18, 14, 15],
    ]
    ids = torch.tensor([text_row(f) for f in findings])
    sentence_ids = torch.tensor(
        [simcrop_sentence_ids(r, period=IDS.period, single_digits=IDS.single_digits) for r in ids.tolist()]
    )
    report = torch.tensor([text_row(f + [30, 31, 18]) for f in findings])
    return {
        "image": torch.rand(2, 1, 32, 32, 16, generator=g) * 2 - 1,
        "findings_ids": ids,
        "findings_attention_mask": (ids != IDS.pad).long(),
        "sentence_ids": sentence_ids,
        "report_ids": report,
        "report_attention_mask": (report != IDS.pad).long(),
        "report_masked_ids": mask_report_ids(
            report, (report != IDS.pad).long(), mask_id=IDS.mask, sep_id=IDS.sep, prob=0.75, generator=g
        )[0],
    }


# --------------------------------------------------------------------------- pure objectives


def test_infonce_matches_hand_computation_on_two_sentences():
    a, b, c, d, tau = 0.9, 0.2, -0.1, 0.6, 0.5
    sim = torch.tensor([[[a, b], [c, d]]])
    valid = torch.tensor([[True, True]])
    loss, count = alignment_infonce(sim, valid, tau)
    e = lambda x: math.exp(x / tau)  # noqa: E731
    s2i = -math.log(e(a) / (e(a) + e(b))) - math.log(e(d) / (e(c) + e(d)))
    i2s = -math.log(e(a) / (e(a) + e(c))) - math.log(e(d) / (e(b) + e(d)))
    assert count == 2
    assert loss.item() == pytest.approx((s2i + i2s) / 2, rel=1e-6)


def test_infonce_faithful_and_clean_differ_by_padded_columns_and_empty_set_is_zero():
    # report 0 has one sentence (slot 2 padded, zero sentence vector → row of zeros); report 1 has two
    sim = torch.tensor([[[0.8, 0.3], [0.0, 0.0]], [[0.5, 0.1], [0.2, 0.7]]])
    valid = torch.tensor([[True, False], [True, True]])
    faithful, _ = alignment_infonce(sim, valid, 1.0, padded_slots="in_denominator")
    clean, _ = alignment_infonce(sim, valid, 1.0, padded_slots="masked")
    # clean: report 0 has only its positive (loss 0); faithful adds the padded column in both directions
    padded_terms = -math.log(math.exp(0.8) / (math.exp(0.8) + math.exp(0.3))) - math.log(
        math.exp(0.8) / (math.exp(0.8) + 1)
    )
    assert (faithful - clean).item() * 3 == pytest.approx(padded_terms, rel=1e-5)
    empty, count = alignment_infonce(sim, torch.zeros_like(valid), 1.0)
    assert count == 0 and empty.item() == 0.0


def test_topk_selects_most_similar_patches_and_pools_their_mean():
    patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [-1.0, 0.0], [0.7, 0.7]]])
    sentences = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])  # slot 2 padded (zero)
    pooled, indices, sim = topk_similarity(sentences, patches, k=2)
    assert sorted(indices[0, 0].tolist()) == [0, 2]
    assert torch.allclose(pooled[0, 0], patches[0, [0, 2]].mean(0))
    assert torch.all(sim[0, 1] == 0)  # faithful: padded slot has an all-zero similarity row
    pooled_clean, _, _ = topk_similarity(sentences, patches, k=2, valid=torch.tensor([[True, False]]))
    assert torch.all(pooled_clean[0, 1] == 0)


def test_sentence_ids_keep_decimal_and_drop_unterminated_last_sentence():
    tokens = ["[CLS]", "nodule", "of", "3", ".", "5", "mm", ".", "no", "effusion", ".", "heart", "normal", "[PAD]"]
    ids = simcrop_sentence_ids(tokens, single_digits=tuple("0123456789"))
    assert ids == [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 0, 0, 0]
    features = torch.arange(len(ids) - 1, dtype=torch.float32).view(1, -1, 1)  # cls position dropped
    sentences, valid = sentence_features(features, torch.tensor([ids[1:]]))
    assert valid.tolist() == [[True, True]]
    assert sentences[0, :, 0].tolist() == pytest.approx([3.0, 8.0])  # mean of positions 0..6 and 7..9


def test_patch_masking_keeps_quarter_and_faithful_mim_is_075_masked_mse():
    tokens = torch.randn(3, 64, 8)
    masking = random_patch_masking(tokens, 0.75, torch.Generator().manual_seed(1))
    assert masking.visible.shape == (3, num_kept(64, 0.75), 8) == (3, 16, 8)
    assert masking.mask.sum(1).tolist() == [48.0] * 3
    assert torch.equal(masking.visible, torch.gather(tokens, 1, masking.ids_keep[..., None].expand(-1, -1, 8)))
    assert num_kept(2744, 0.75) == 686
    pred, target = torch.randn(3, 64, 10), torch.randn(3, 64, 10)
    masked_mse = ((pred - target) ** 2)[masking.mask.bool()].mean()
    assert mim_loss(pred, target, masking.mask).item() == pytest.approx(0.75 * masked_mse.item(), rel=1e-5)
    assert mim_loss(pred, target, masking.mask, loss_norm="masked_voxels").item() == pytest.approx(
        masked_mse.item(), rel=1e-5
    )


def test_mlm_masking_rate_and_faithful_denominator():
    ids = torch.randint(5, VOCAB, (64, 512))
    ids[:, 0] = IDS.cls
    attention = torch.ones_like(ids)
    attention[:, 400:] = 0
    ids[:, 400:] = IDS.pad
    masked, replaced = mask_report_ids(
        ids, attention, mask_id=IDS.mask, sep_id=IDS.sep, prob=0.75, generator=torch.Generator().manual_seed(0)
    )
    assert not replaced[:, 0].any() and not replaced[:, -1].any()
    assert replaced[:, 1:511].float().mean().item() == pytest.approx(0.75, abs=0.01)
    assert replaced[:, 400:511].any()  # faithful: padding is masked too
    _, clean = mask_report_ids(ids, attention, mask_id=IDS.mask, sep_id=IDS.sep, prob=0.75, mask_padding=False)
    assert not clean[:, 400:].any()

    logits, labels = torch.randn(2, 512, VOCAB), ids[:2]
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
    assert mlm_loss(logits, labels, replaced[:2]).item() == pytest.approx(ce.sum().item() / (2 * 512), rel=1e-5)
    sel = (replaced[:2] & attention[:2].bool()).flatten()
    clean_loss = mlm_loss(logits, labels, replaced[:2] & attention[:2].bool(), labels_mode="masked_only")
    assert clean_loss.item() == pytest.approx(ce[sel].mean().item(), rel=1e-5)


# --------------------------------------------------------------------------- modules


@pytest.mark.parametrize("mode", ["full", "xattn_only", "gap_only", "none"])
def test_fusion_and_report_decoder_shapes(mode):
    decoder = ReportDecoder(text_decoder_config(32, 2, 64, 0.1, VOCAB), layers=2, mode=mode)
    words, memory = torch.randn(2, TEXT_LEN, 32), torch.randn(2, 16, 32)
    mask = torch.ones(2, TEXT_LEN, dtype=torch.long)
    mask[1, 10:] = 0
    fused = decoder.bert.fusion_layer(words, (1.0 - mask[:, None, None, :].float()) * -1e9, memory)
    assert fused.shape == (2, TEXT_LEN, 32)
    assert decoder(words, mask, memory).shape == (2, TEXT_LEN, VOCAB)
    names = {n.split(".")[2] for n, _ in decoder.named_parameters() if n.startswith("bert.fusion_layer.")}
    assert ("cross_self_attention" in names) == (mode in ("full", "xattn_only"))
    assert ("gap_mlp" in names) == (mode in ("full", "gap_only"))


def test_model_forward_shapes_names_and_export():
    model = tiny_model()
    out = model(tiny_batch())
    assert out["mim_pred"].shape == (2, 64, 8 * 8 * 4) and out["mim_mask"].sum().item() == 2 * 48
    assert out["mlm_logits"].shape == (2, TEXT_LEN, VOCAB)
    assert out["num_sentences"] == 3 + 1
    assert out["topk_indices"].shape == (2, 3, 4)
    assert torch.isfinite(out["loss"]) and out["loss"].item() == pytest.approx(
        (out["loss_mim"] + out["loss_mlm"] + out["loss_align"]).item(), rel=1e-6
    )
    keys = set(model.state_dict())
    for name in (
        "patch_embed.proj.weight",
        "cls_token",
        "pos_embed",
        "decoder_embed.weight",
        "mask_token",
        "decoder_pos_embed",
        "decoder_blocks.0.attn.qkv.weight",
        "decoder_norm.weight",
        "decoder_pred_layer.weight",
        "bert_feature_proj.dense_to_hidden.weight",
        "bert_mlp.weight",
        "bert_decoder.bert.fusion_layer.cross_self_attention.query.weight",
        "bert_decoder.bert.fusion_layer.gap_mlp.weight",
        "bert_decoder.bert.encoder.layer.0.output.dense.weight",
        "bert_decoder.cls.predictions.decoder.weight",
        "finding_align_img_mlp.dense_to_output.weight",
        "align_text_mlp.LayerNorm.weight",
        "bert_encoder.bert.embeddings.word_embeddings.weight",
    ):
        assert name in keys, name
    exported = export_released(model)["model"]
    assert set(exported) == {
        k for k in keys if k.split(".")[0] in ("patch_embed", "cls_token", "pos_embed", "blocks", "norm")
    }


@pytest.mark.parametrize(
    "changes",
    [{"variant": "clean"}, {"fusion": "xattn_only"}, {"fusion": "gap_only"}, {"mim_norm_pix": True, "topk": 100}],
)
def test_model_variants_run_with_finite_losses(changes):
    out = tiny_model(**changes)(tiny_batch())
    assert all(torch.isfinite(out[k]) for k in ("loss", "loss_mim", "loss_mlm", "loss_align"))
    out["loss"].backward()


def test_each_loss_reaches_the_encoder_and_text_encoder_stays_frozen():
    model = tiny_model()
    out = model(tiny_batch())
    encoder_params = [model.patch_embed.proj.weight, model.blocks[0].attn.qkv.weight]
    for name in ("loss_mim", "loss_mlm", "loss_align"):
        grads = torch.autograd.grad(out[name], encoder_params, retain_graph=True, allow_unused=True)
        assert all(g is not None and g.abs().sum() > 0 for g in grads), name
    out["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in model.bert_encoder.parameters())
    assert model.bert_encoder.bert.training  # faithful F9: dropout mode follows the model
    model_clean = tiny_model(variant="clean")
    assert not model_clean.bert_encoder.bert.training


def _losses(model: SimCroPModel, batch) -> dict[str, float]:
    model.eval()  # no dropout, so only the ablation differs; masking noise comes from the seeded generator
    out = model(batch, generator=torch.Generator().manual_seed(3))
    return {k: out[k].item() for k in ("loss_mim", "loss_mlm", "loss_align")}


@pytest.mark.parametrize(
    "ablation, changed, absent",
    [
        ({"alignment": "off"}, {"loss_align"}, ("finding_align_img_mlp.", "align_text_mlp.")),
        (
            {"fusion": "none"},
            {"loss_mlm"},
            (
                "bert_mlp.",
                "bert_decoder.bert.fusion_layer.cross_self_attention.",
                "bert_decoder.bert.fusion_layer.gap_mlp.",
            ),
        ),
    ],
)
def test_ablations_change_only_what_they_name(ablation, changed, absent):
    full, ablated = tiny_model(), tiny_model(**ablation)
    missing = set(full.state_dict()) - set(ablated.state_dict())
    assert missing and all(k.startswith(absent) for k in missing)
    assert not set(ablated.state_dict()) - set(full.state_dict())
    ablated.load_state_dict({k: v for k, v in full.state_dict().items() if k not in missing})
    batch = tiny_batch()
    reference, result = _losses(full, batch), _losses(ablated, batch)
    for name in reference:
        if name in changed:
            assert result[name] != pytest.approx(reference[name], rel=1e-6), name
        else:
            assert result[name] == pytest.approx(reference[name], rel=1e-6), name
    if "loss_align" in changed:
        assert result["loss_align"] == 0.0


def test_config_clean_preset_and_overrides():
    clean = SimCroPConfig(variant="clean", overrides={"mlm.labels": "all_positions"}).resolved()
    assert clean.switches() == {
        "mlm.labels": "all_positions",
        "mlm.mask_padding": False,
        "mim.loss_norm": "masked_voxels",
        "mim.norm_pix": False,
        "align.padded_slots": "masked",
        "align.per_report_mean": True,
        "text_encoder.train_mode_dropout": False,
        "report.join": "space",
    }
    with pytest.raises(UserError):
        SimCroPConfig(overrides={"mlm.nope": 1}).resolved()
    with pytest.raises(UserError):
        SimCroPConfig(fusion="half").resolved()


# --------------------------------------------------------------------------- text rules and the real MiniLM


def test_text_preparation_and_report_join():
    assert prepare_text("Nodule (3.5 mm)? Left: yes; right") == "[CLS] Nodule ( 3.5 mm ) Left, yes, right"
    assert report_text("Lungs clear.", "Normal.") == "Lungs clear.Normal."
    assert report_text("Lungs clear.", "Normal.", join="space") == "Lungs clear. Normal."
    assert report_text("Lungs clear.", "Not given.") == "Lungs clear."
    assert report_text("Lungs clear.", float("nan")) == "Lungs clear.nan"
    assert report_text(float("nan"), "Normal.", join="space") == "Normal."


def test_pinned_hash_mismatch_names_the_file(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(UserError, match="vocab.txt"):
        verify_pinned_files(tmp_path, {"vocab.txt": MINILM_SHA256["vocab.txt"]})


def test_real_minilm_hashes_and_tokenisation_rules():
    model, tokenizer = load_text_encoder()  # verifies the three pinned SHA-256 values first
    ids = SpecialIds.from_tokenizer(tokenizer)
    assert (ids.pad, ids.cls, ids.sep, ids.mask) == (0, 101, 102, 103)
    findings = "Nodule of 3.5 mm in the right lobe. No effusion (small)? Heart: normal"
    input_ids, attention = tokenize(tokenizer, [findings], max_len=64)
    assert input_ids.shape == attention.shape == (1, 64)
    row = input_ids[0, : int(attention.sum())].tolist()
    assert row[0] == ids.cls and ids.sep not in row and input_ids[0, -1] == ids.pad
    tokens = tokenizer.convert_ids_to_tokens(row)
    assert "3" in tokens and tokens[tokens.index("3") + 1 : tokens.index("3") + 3] == [".", "5"]
    assert "?" not in tokens and ":" not in tokens
    sentence_ids = simcrop_sentence_ids(input_ids[0].tolist(), period=ids.period, single_digits=ids.single_digits)
    first_period = tokens.index("lobe") + 1
    assert set(sentence_ids[: first_period + 1]) == {1}
    assert set(sentence_ids[first_period + 1 :]) == {0}  # final sentence without a period is dropped
    hidden = model(input_ids=input_ids, attention_mask=attention).last_hidden_state
    assert hidden.shape == (1, 64, 384)
