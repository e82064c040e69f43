"""SimCroP in the training loop: checkpoints without the frozen text encoder, the findings cache, mixed
precision and the §2.1 ImageNet-MAE initialisation — on the tiny model of ``test_simcrop_model``."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset
from transformers import BertModel

from simcrop_bench.errors import ConfigError, UserError
from simcrop_bench.pretraining.loop import SIGKILL_AT_STEP_ENV, PretrainConfig, pretrain
from simcrop_bench.pretraining.scalars import read_metrics
from simcrop_bench.pretraining.training_checkpoint import load_training_checkpoint
from simcrop_bench.simcrop.init import load_mae_init
from simcrop_bench.simcrop.masking import mask_report_ids
from simcrop_bench.simcrop.model import SimCroPModel
from simcrop_bench.simcrop.text import text_encoder_identity

from .test_simcrop_model import IDS, TEXT_LEN, TINY_ENCODER, tiny_batch, tiny_cfg, tiny_text_encoder

REPO = Path(__file__).resolve().parent.parent
FINDINGS = [  # four distinct reports; sample i uses FINDINGS[i % 4]
    [5, 6, 18, 7, 21, 18, 25, 8, 18],
    [11, 12, 13, 18, 14, 15],
    [9, 10, 18, 5, 18],
    [7, 7, 8, 18, 30, 31, 18],
]


def _row(words: list[int]) -> torch.Tensor:
    row = [IDS.cls, *words][:TEXT_LEN]
    return torch.tensor(row + [IDS.pad] * (TEXT_LEN - len(row)))


class TinyReports(Dataset):
    """§6 samples of the tiny model; the random parts come from the loop's per-sample seed."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from simcrop_bench.data.sentences import simcrop_sentence_ids

        ids = _row(FINDINGS[index % 4])
        report = _row(FINDINGS[index % 4] + [30, 31, 18])
        attention = (report != IDS.pad).long()
        masked, _ = mask_report_ids(report[None], attention[None], mask_id=IDS.mask, sep_id=IDS.sep, prob=0.75)
        sentences = simcrop_sentence_ids(ids.tolist(), period=IDS.period, single_digits=IDS.single_digits)
        return {
            "image": torch.rand(1, 32, 32, 16) * 2 - 1,
            "findings_ids": ids,
            "findings_attention_mask": (ids != IDS.pad).long(),
            "sentence_ids": torch.tensor(sentences),
            "report_ids": report,
            "report_attention_mask": attention,
            "report_masked_ids": masked[0],
            "mim_noise": torch.rand(64),
        }


RECIPE = PretrainConfig(
    epochs=2,
    batch_size=2,
    effective_batch=None,
    accum_steps=1,
    lr=1e-3,
    warmup_epochs=1,
    precision="fp32",
    checkpoint_every=3,
    seed=5,
)


def save_text_encoder(directory: Path) -> Path:
    tiny_text_encoder().save_pretrained(directory)
    return directory


def train_tiny(workdir: str, text_dir: str, **overrides) -> object:
    """Pretrain the tiny SimCroP with its text encoder read from ``text_dir`` (module-level: used in a subprocess)."""
    torch.set_num_threads(1)
    changes = {k[4:]: overrides.pop(k) for k in list(overrides) if k.startswith("cfg_")}
    cfg = tiny_cfg(**changes)
    bert = BertModel.from_pretrained(text_dir, add_pooling_layer=False)
    identity = text_encoder_identity(text_dir)

    def build() -> SimCroPModel:
        return SimCroPModel(TINY_ENCODER, cfg, text_encoder=bert, special_ids=IDS, text_encoder_identity=identity)

    return pretrain(build, TinyReports(), replace(RECIPE, **overrides), workdir, log_every=0)


# --------------------------------------------------------------------------- checkpoints without the text encoder


@pytest.mark.parametrize("variant", ["faithful", "clean"])  # dropout in the frozen encoder / the findings cache
def test_checkpoint_stores_text_encoder_identity_and_sigkill_resume_is_bit_exact(tmp_path, variant):
    text_dir = save_text_encoder(tmp_path / "bert")
    train_tiny(str(tmp_path / "a"), str(text_dir), cfg_variant=variant)
    code = (
        "import sys; from tests.test_simcrop_training import train_tiny; "
        "train_tiny(sys.argv[1], sys.argv[2], cfg_variant=sys.argv[3])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "b"), str(text_dir), variant],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, SIGKILL_AT_STEP_ENV: "5"},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    saved = load_training_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert saved["step"] == 3
    assert not any(k.startswith("bert_encoder.") for k in saved["model"])
    assert saved["frozen_modules"]["bert_encoder"]["sha256"] == text_encoder_identity(text_dir)["sha256"]
    assert "model.safetensors" in saved["frozen_modules"]["bert_encoder"]["sha256"]

    resumed = train_tiny(str(tmp_path / "b"), str(text_dir), cfg_variant=variant)  # clean: the cache starts empty
    ra, rb = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [r["step"] for r in rb] == list(range(1, 17))
    assert [r["loss"] for r in rb] == [r["loss"] for r in ra]  # bit-identical curves
    final_a = load_training_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    state = resumed.model.state_dict()
    for name, tensor in final_a.items():
        assert torch.equal(state[name], tensor), name


def test_resume_with_another_text_encoder_is_refused(tmp_path):
    text_dir = save_text_encoder(tmp_path / "bert")
    train_tiny(str(tmp_path / "run"), str(text_dir), epochs=1)
    config = text_dir / "config.json"
    config.write_text(config.read_text() + "\n")  # same weights, other files: another identity
    with pytest.raises(ConfigError, match=r"frozen module 'bert_encoder' .*config\.json") as err:
        train_tiny(str(tmp_path / "run"), str(text_dir), epochs=2)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- the findings cache


def test_clean_variant_cache_gives_the_uncached_losses_and_encodes_each_report_once():
    def run(cache_mb: int) -> tuple[list[float], SimCroPModel, list[torch.Tensor]]:
        torch.manual_seed(0)
        model = SimCroPModel(
            TINY_ENCODER,
            tiny_cfg(variant="clean", text_feature_cache_mb=cache_mb),
            text_encoder=tiny_text_encoder(),
            special_ids=IDS,
        )
        encoded: list[torch.Tensor] = []
        model.bert_encoder.bert.register_forward_pre_hook(
            lambda _m, args, kwargs: encoded.extend(kwargs["input_ids"]), with_kwargs=True
        )
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        dataset, curve = TinyReports(), []
        for step in range(4):  # samples 0..7 over and over: reports 0..3, each twice per pass
            items = [dataset[(2 * step + j) % 8] for j in range(2)]
            batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
            torch.manual_seed(100 + step)  # decoder dropout draws the same masks in both runs
            out = model(batch)
            out["loss"].backward()
            optimizer.step()
            optimizer.zero_grad()
            curve.append(out["loss"].item())
        return curve, model, encoded

    cached, model, encoded = run(64)
    uncached, _, encoded_uncached = run(0)
    assert cached == uncached  # bit-exact: new rows are encoded at the batch's shape
    findings = [row for row in encoded if not (row == IDS.mask).any()]  # the masked reports carry [MASK]
    assert len(findings) == len({tuple(r.tolist()) for r in findings}) == 4  # once per distinct report
    assert len(encoded_uncached) - len(encoded) == 8 - 4
    assert (model.findings_cache.encoded_rows, model.findings_cache.hits, len(model.findings_cache)) == (4, 4, 4)


def test_faithful_training_never_uses_the_cache_but_eval_does():
    torch.manual_seed(0)
    model = SimCroPModel(TINY_ENCODER, tiny_cfg(), text_encoder=tiny_text_encoder(), special_ids=IDS)
    assert model.bert_encoder.dropout_active
    model(tiny_batch())
    assert len(model.findings_cache) == 0  # F9: the frozen encoder's dropout makes every call a new draw
    model.eval()
    first = model(tiny_batch(), generator=torch.Generator().manual_seed(3))["loss_align"]
    assert len(model.findings_cache) == 2  # without dropout (eval) the states are cacheable
    again = model(tiny_batch(), generator=torch.Generator().manual_seed(3))["loss_align"]
    assert again.item() == first.item() and model.findings_cache.hits == 2


def test_cache_is_bounded_and_keyed_by_autocast():
    from simcrop_bench.simcrop.text_cache import TextFeatureCache

    row_bytes = TEXT_LEN * 4 * 4
    cache = TextFeatureCache(max_bytes=2 * row_bytes, identity={"sha256": "x"})
    calls = []

    def encoder(ids, mask):
        calls.append(len(ids))
        return ids[..., None].float().expand(-1, -1, 4) + mask[..., None]

    ids = torch.stack([_row(f) for f in FINDINGS])
    mask = (ids != IDS.pad).long()
    expected = encoder(ids, mask)
    assert torch.equal(cache.encode(encoder, ids, mask), expected)
    assert len(cache) == 2 and cache.bytes == 2 * row_bytes  # least recently used rows evicted
    assert torch.equal(cache.encode(encoder, ids[2:], mask[2:]), expected[2:])
    assert calls == [4, 4]  # rows 2, 3 came from the cache
    assert torch.equal(cache.encode(encoder, ids[:2], mask[:2]), expected[:2])
    assert calls[-1] == 2 and cache.encoded_rows == 6  # rows 0, 1 had been evicted
    assert torch.equal(cache.encode(encoder, ids[1:3], mask[1:3]), expected[1:3])
    assert calls[-1] == 2 and cache.encoded_rows == 7  # row 1 hit; row 2 encoded, padded to the batch shape
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cache.encode(encoder, ids[:1], mask[:1])
    assert cache.encoded_rows == 8  # under bf16 autocast the same ids are another key


# --------------------------------------------------------------------------- mixed precision


def test_bf16_autocast_on_cpu_runs_and_stays_close_to_fp32(tmp_path):
    text_dir = save_text_encoder(tmp_path / "bert")
    common = dict(epochs=1, cfg_variant="clean", cfg_text_decoder_dropout=0.0)
    train_tiny(str(tmp_path / "fp32"), str(text_dir), precision="fp32", **common)
    train_tiny(str(tmp_path / "bf16"), str(text_dir), precision="bf16", **common)
    fp32, bf16 = read_metrics(tmp_path / "fp32"), read_metrics(tmp_path / "bf16")
    assert len(fp32) == len(bf16) == 8
    for a, b in zip(fp32[:3], bf16[:3]):
        for key in ("loss", "loss_mim", "loss_mlm", "loss_align"):
            assert math.isfinite(b[key])
            assert b[key] == pytest.approx(a[key], rel=0.05, abs=0.02), (a["step"], key)
    assert any(a["loss"] != b["loss"] for a, b in zip(fp32, bf16))  # autocast really ran in bf16


def test_fp16_is_refused_on_cpu(tmp_path):
    with pytest.raises(ValueError, match="fp16"):
        train_tiny(str(tmp_path), str(save_text_encoder(tmp_path / "bert")), precision="fp16")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_with_grad_scaler_on_cuda(tmp_path):
    text_dir = str(save_text_encoder(tmp_path / "bert"))
    bert = BertModel.from_pretrained(text_dir, add_pooling_layer=False)

    def build() -> SimCroPModel:
        return SimCroPModel(
            TINY_ENCODER,
            tiny_cfg(),
            text_encoder=bert,
            special_ids=IDS,
            text_encoder_identity=text_encoder_identity(text_dir),
        )

    result = pretrain(
        build, TinyReports(), replace(RECIPE, epochs=1, precision="fp16"), tmp_path / "run", device="cuda", log_every=0
    )
    records = read_metrics(tmp_path / "run")
    assert result.step == 8 and all(math.isfinite(r["loss"]) for r in records)
    assert load_training_checkpoint(tmp_path / "run" / "checkpoint.pt")["scaler"] is not None


# --------------------------------------------------------------------------- §2.1 initialisation


def mae_checkpoint(depth: int = 2, dim: int = 32) -> dict:
    """An ImageNet-MAE-style file: 2-D patch embedding, blocks, norm, decoder, under "model"."""
    g = torch.Generator().manual_seed(1)
    blocks = {
        f"blocks.{i}.{k}": torch.randn(*shape, generator=g)
        for i in range(depth)
        for k, shape in {
            "norm1.weight": (dim,),
            "norm1.bias": (dim,),
            "attn.qkv.weight": (3 * dim, dim),
            "attn.qkv.bias": (3 * dim,),
            "attn.proj.weight": (dim, dim),
            "attn.proj.bias": (dim,),
            "norm2.weight": (dim,),
            "norm2.bias": (dim,),
            "mlp.fc1.weight": (4 * dim, dim),
            "mlp.fc1.bias": (4 * dim,),
            "mlp.fc2.weight": (dim, 4 * dim),
            "mlp.fc2.bias": (dim,),
        }.items()
    }
    return {
        "model": {
            "patch_embed.proj.weight": torch.randn(dim, 3, 16, 16, generator=g),
            "patch_embed.proj.bias": torch.randn(dim),
            "cls_token": torch.randn(1, 1, dim),
            "pos_embed": torch.randn(1, 197, dim),
            "mask_token": torch.randn(1, 1, 16),
            "norm.weight": torch.randn(dim, generator=g),
            "norm.bias": torch.randn(dim, generator=g),
            "decoder_embed.weight": torch.randn(16, dim),
            "decoder_norm.weight": torch.randn(16),
            **blocks,
        }
    }


def test_init_encoder_loads_blocks_and_norm_and_skips_the_2d_patch_embedding(tmp_path):
    from simcrop_bench.simcrop.train import build_model

    path = tmp_path / "mae_pretrain_vit_base.pth"
    checkpoint = mae_checkpoint()
    torch.save(checkpoint, path)
    torch.manual_seed(0)
    reference = SimCroPModel(TINY_ENCODER, tiny_cfg(), text_encoder=tiny_text_encoder(), special_ids=IDS)
    torch.manual_seed(0)
    model = build_model(
        TINY_ENCODER, tiny_cfg(init_encoder=str(path)), tiny_text_encoder(), None, None, special_ids=IDS
    )
    state, before = model.state_dict(), reference.state_dict()
    for name, value in checkpoint["model"].items():
        if name.startswith(("blocks.", "norm.")):
            assert torch.equal(state[name], value), name
    for name in (
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "cls_token",
        "pos_embed",
        "mask_token",
        "decoder_embed.weight",
        "decoder_norm.weight",
    ):
        assert torch.equal(state[name], before[name]), name  # §2.1: skipped (the 2-D kernel is not inflated)
    report = load_mae_init(model, path)
    assert len(report["loaded"]) == 2 * 12 + 2 and report["patch_embed_in_file"] == [32, 3, 16, 16]
    assert {"patch_embed.proj.weight", "cls_token", "pos_embed"} <= set(report["skipped_encoder_keys"])


@pytest.mark.parametrize("depth, dim, message", [(1, 32, "missing"), (3, 32, "unexpected"), (2, 48, "shape mismatch")])
def test_init_encoder_refuses_checkpoints_that_do_not_fit(tmp_path, depth, dim, message):
    path = tmp_path / "mae.pth"
    torch.save(mae_checkpoint(depth, dim), path)
    model = SimCroPModel(TINY_ENCODER, tiny_cfg(), text_encoder=tiny_text_encoder(), special_ids=IDS)
    with pytest.raises(UserError, match=message) as err:
        load_mae_init(model, path)
    assert "\n" not in str(err.value)


def test_cxr_bert_directory_loads_as_plain_bert_without_its_custom_code(tmp_path):
    """A directory shaped like microsoft/BiomedVLP-CXR-BERT-specialized (§2.1 text side via text_encoder_path)."""
    import json

    from transformers import BertConfig, BertForMaskedLM

    from simcrop_bench.simcrop.text import CXR_BERT_HIDDEN_DROPOUT, SpecialIds, load_text_encoder

    directory = tmp_path / "cxr-bert"
    directory.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *"0123456789", "lung", "##s", "clear"]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    reference = BertForMaskedLM(
        BertConfig(
            vocab_size=len(vocab), hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48
        )
    )
    reference.save_pretrained(directory)  # weights under bert.* and cls.*, as CXRBertModel's
    config = json.loads((directory / "config.json").read_text())
    config.update(
        model_type="cxr-bert",
        architectures=["CXRBertModel"],
        projection_size=128,
        auto_map={"AutoConfig": "configuration_cxrbert.CXRBertConfig", "AutoModel": "modeling_cxrbert.CXRBertModel"},
    )
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CXRBertTokenizer",
                "do_lower_case": True,
                "auto_map": {"AutoTokenizer": ["tokenization_cxrbert.CXRBertTokenizer", None]},
            }
        )
    )

    model, tokenizer = load_text_encoder(directory)
    assert model.config.hidden_dropout_prob == CXR_BERT_HIDDEN_DROPOUT
    assert torch.equal(model.embeddings.word_embeddings.weight, reference.bert.embeddings.word_embeddings.weight)
    assert SpecialIds.from_tokenizer(tokenizer).period == vocab.index(".")
    assert tokenizer.tokenize("Lungs clear.") == ["lung", "##s", "clear", "."]
    assert "model.safetensors" in text_encoder_identity(directory)["sha256"]
