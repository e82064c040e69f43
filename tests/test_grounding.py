"""The grounding score (issue #15): twin ground truth, the score's arithmetic, its logging in the loop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from simcrop_bench.data.synthetic.ctrate import write_ctrate_twin
from simcrop_bench.data.synthetic.finding_regions import has_regions, read_region_case, region_cases
from simcrop_bench.pretraining.loop import pretrain
from simcrop_bench.pretraining.scalars import MONITOR_NAME, read_metrics
from tests.test_pretraining_loop import BASE, NoisyVectors, TinyMasked


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ctrate") / "twin"
    write_ctrate_twin(root, n_cases=8, layout="simcrop")
    return root


def test_region_cases_name_the_findings_of_each_sentence(twin):
    cases = region_cases(twin, "valid")
    assert cases and has_regions(twin)
    for case in cases:
        meta = json.loads((twin / "synthetic_meta" / (case.volume[:-7] + ".json")).read_text())
        value_of = meta["finding_mask"]["values"]  # finding id -> mask value
        for sentence in meta["derived"]["sentences"]:
            named = {value_of[f] for f in sentence["finding_ids"] if f in value_of}
            for sid in sentence["simcrop_ids"]:
                # every finding a findings sentence names is in the mask values of its sentence id
                assert named <= set(case.sentences.get(sid, ()))
        assert case.image.is_file() and case.mask.is_file()
    assert all(c.volume.startswith("valid_") for c in cases)
    assert len(region_cases(twin, "valid", limit=1)) == 1


def test_read_region_case_refuses_a_root_without_metadata(tmp_path):
    from simcrop_bench.errors import DataError

    with pytest.raises(DataError, match="synthetic metadata"):
        read_region_case(tmp_path, "valid_95001_a_1.nii.gz")
    with pytest.raises(DataError, match="manifest"):
        region_cases(tmp_path)


@pytest.fixture(scope="module")
def model_and_set(twin):
    from simcrop_bench import registry
    from simcrop_bench.config import apply_overrides
    from simcrop_bench.simcrop.grounding import grounding_set
    from simcrop_bench.simcrop.train import pretraining_parts

    registry.discover([])
    cls = registry.get_method("simcrop")
    cfg = cls.Config()
    apply_overrides(cfg, cls.profile_overrides("demo"), section="method")
    apply_overrides(cfg, {"encoder.depth": 1, "simcrop.max_text_len": 256}, section="method")
    build, _ = pretraining_parts(cfg.encoder, cfg.simcrop, twin)
    torch.manual_seed(0)
    model = build()
    return model, grounding_set(model, region_cases(twin, "valid"))


class Oracle:
    """Wraps a model; its similarity is +1 on the patches of each sentence's mask (or −1 with ``sign=-1``)."""

    def __init__(self, model, data, sign: float) -> None:
        self.model, self.data, self.sign = model, data, sign
        self.simcrop_cfg, self.training = model.simcrop_cfg, False
        self.finding_align_img_mlp = None  # has alignment heads: no control heads

    def parameters(self):
        return self.model.parameters()

    def eval(self):
        self.training = False

    def train(self, mode=True):
        self.training = mode

    def sentence_patch_similarity(self, image, findings_ids, findings_mask, sentence_ids, heads=None):
        overlap = self.data.overlap.float()
        noise = torch.linspace(0, 1e-3, overlap.shape[-1])  # ties broken the same way everywhere
        return self.sign * overlap + noise, torch.ones(overlap.shape[:2], dtype=torch.bool)


def test_score_of_an_oracle_and_an_anti_oracle(model_and_set):
    from simcrop_bench.simcrop.grounding import grounding_score

    model, data = model_and_set
    k = 4
    n = data.overlap.shape[-1]
    inside = data.overlap.sum(-1)[data.scored].float()
    assert data.sentences > 0 and (inside > 0).all()
    best = grounding_score(Oracle(model, data, 1.0), data, k=k, batch_size=len(data.volumes))
    worst = grounding_score(Oracle(model, data, -1.0), data, k=k, batch_size=len(data.volumes))
    assert best["sentences"] == worst["sentences"] == data.sentences
    assert best["chance"] == pytest.approx(float((inside / n).mean()))
    assert best["hit_rate"] == pytest.approx(float((inside.clamp(max=k) / k).mean()))
    assert worst["hit_rate"] == pytest.approx(float(((k - (n - inside)).clamp(min=0) / k).mean()))
    assert best["lift"] > 1 > worst["lift"]


class MaskedOracle(Oracle):
    """The oracle on the training view: +1 on the kept patches of each sentence's mask."""

    def visible_similarity(self, image, findings_ids, findings_mask, sentence_ids, heads=None, noise=None):
        from simcrop_bench.simcrop.masking import num_kept

        keep = torch.argsort(noise, dim=1)[:, : num_kept(noise.shape[1], self.simcrop_cfg.mask_ratio)]
        self.kept.append(keep)
        overlap = torch.gather(self.data.overlap, 2, keep.unsqueeze(1).expand(-1, self.data.overlap.shape[1], -1))
        noise = torch.linspace(0, 1e-3, keep.shape[1])
        return self.sign * overlap.float() + noise, torch.ones(overlap.shape[:2], dtype=torch.bool), keep


def test_training_view_score_chooses_among_the_kept_patches(model_and_set):
    from simcrop_bench.simcrop.grounding import grounding_score

    model, data = model_and_set
    k, draws = 4, 3
    oracle = MaskedOracle(model, data, 1.0)
    oracle.kept = []
    best = grounding_score(oracle, data, k=k, batch_size=len(data.volumes), masked_draws=draws)
    assert len(oracle.kept) == draws and not torch.equal(oracle.kept[0], oracle.kept[1])  # a new mask per draw
    inside = torch.cat(
        [torch.gather(data.overlap, 2, kept.unsqueeze(1).expand(-1, data.overlap.shape[1], -1)) for kept in oracle.kept]
    ).sum(-1)
    scored = data.scored.repeat(draws, 1) & (inside > 0)  # a finding with no kept patch cannot be hit
    assert best["sentences"] == int(scored.sum()) < draws * data.sentences
    assert best["hit_rate"] == pytest.approx(float((inside[scored].clamp(max=k) / k).mean()))
    assert best["chance"] == pytest.approx(float((inside[scored] / oracle.kept[0].shape[1]).mean()))
    worst = MaskedOracle(model, data, -1.0)
    worst.kept = []
    assert (
        grounding_score(worst, data, k=k, batch_size=len(data.volumes), masked_draws=draws)["lift"] < 1 < best["lift"]
    )
    real = grounding_score(model, data, masked_draws=2)
    assert real == grounding_score(model, data, masked_draws=2) and 0 < real["sentences"] <= 2 * data.sentences


def test_simcrop_score_is_deterministic_and_leaves_training_state(model_and_set):
    from simcrop_bench.simcrop.grounding import grounding_score

    model, data = model_and_set
    model.train()
    state = torch.random.get_rng_state()
    first = grounding_score(model, data)
    assert model.training and torch.equal(state, torch.random.get_rng_state())
    assert grounding_score(model, data) == first
    assert 0 <= first["hit_rate"] <= 1 and 0 < first["chance"] < 1 and first["control"] == 0
    assert first["sentences"] == data.sentences


def test_a_model_without_alignment_heads_is_scored_through_control_heads(model_and_set):
    from simcrop_bench.simcrop.grounding import grounding_score

    model, data = model_and_set
    heads = model.finding_align_img_mlp, model.align_text_mlp
    del model.finding_align_img_mlp, model.align_text_mlp
    try:
        control = grounding_score(model, data)
        assert control == grounding_score(model, data)  # the control heads are seeded
    finally:
        model.finding_align_img_mlp, model.align_text_mlp = heads
    assert control["control"] == 1 and control["sentences"] == data.sentences
    assert control["hit_rate"] != grounding_score(model, data)["hit_rate"]


def test_the_loop_logs_a_monitor_without_changing_training(tmp_path):
    calls = []

    def monitor(model):
        calls.append(model.training)
        torch.rand(100)  # consumes the global RNG: the loop must isolate it
        return {"probe/norm": float(model.encoder.weight.norm())}

    plain = pretrain(lambda: TinyMasked(), NoisyVectors(), BASE, tmp_path / "plain")
    watched = pretrain(lambda: TinyMasked(), NoisyVectors(), BASE, tmp_path / "watched", monitor=monitor)
    losses = [r["loss"] for r in read_metrics(tmp_path / "plain")]
    assert losses == [r["loss"] for r in read_metrics(tmp_path / "watched")]
    assert torch.equal(plain.model.encoder.weight, watched.model.encoder.weight)
    records = read_metrics(tmp_path / "watched", MONITOR_NAME)
    steps = [r["step"] for r in records]
    assert steps[0] == 0 and steps[-1] == watched.step and steps == sorted(set(steps))
    assert len(steps) >= 3 and all(math.isfinite(r["probe/norm"]) for r in records)
    assert records[0]["probe/norm"] != records[-1]["probe/norm"]  # step 0 is the initialisation


@pytest.mark.slow
def test_check_method_grounding_scores_simcrop_variants_and_refuses_others():
    from simcrop_bench.pretraining.check_method import check_method

    (mae,) = [f for f in check_method("mae", grounding=True).findings if f.check == "grounding"]
    assert not mae.ok and "sentence_patch_similarity" in mae.message
    report = check_method("simcrop-noalign", grounding=True)
    (line,) = [f for f in report.findings if f.check == "grounding"]
    assert line.ok and "hit rate" in line.message and "control heads" in line.message, line.message
    assert not report.violations


def test_the_tokenizers_sentence_ids_name_the_twins_sentences(twin, model_and_set):
    """The grounding set maps the model's §3.3 sentence ids to the twin's sentences: their texts must agree."""
    from simcrop_bench.data.sentences import simcrop_sentence_ids
    from simcrop_bench.simcrop.text import tokenize

    model, _ = model_and_set
    checked = 0
    for case in region_cases(twin, "valid"):
        ids = tokenize(model.tokenizer, [case.findings], 512)[0][0].tolist()
        sids = simcrop_sentence_ids(ids, model.special_ids.period, model.special_ids.single_digits)
        meta = json.loads((twin / "synthetic_meta" / (case.volume[:-7] + ".json")).read_text())
        for sentence in meta["derived"]["sentences"]:
            if sentence["section"] == "impression":
                continue
            for sid in sentence["simcrop_ids"]:
                text = model.tokenizer.decode([t for t, s in zip(ids, sids) if s == sid]).replace(" ", "").lower()
                want = sentence["text"].replace(" ", "").lower().replace(";", ",").replace(":", ",")
                assert want[:15] in text or text[:15] in want, (sid, text, want)
                checked += 1
    assert checked > 20


def test_the_alignment_objective_grounds_sentences_when_the_patches_show_their_findings():
    """The mechanism itself (top-K selection + within-report InfoNCE, the model's own loss functions and heads),
    trained on patch features in which each finding is visible: its top-K must move onto the finding's patches.
    A defect in the selection or the loss would leave the hit rate at chance."""
    from simcrop_bench.simcrop.heads import FeatureHead
    from simcrop_bench.simcrop.losses import alignment_infonce, pairwise_cosine, topk_similarity

    gen = torch.Generator().manual_seed(0)
    n_types, dim, text_dim, n_patches, slots, k = 6, 16, 24, 64, 3, 4
    look = torch.randn(n_types, dim, generator=gen)  # what a finding of each type looks like in a patch
    says = torch.randn(n_types, text_dim, generator=gen)  # what a sentence about it says

    def batch(size: int):
        types = torch.stack([torch.randperm(n_types, generator=gen)[:slots] for _ in range(size)])  # (B, S)
        where = torch.zeros(size, slots, n_patches, dtype=torch.bool)
        for b in range(size):
            places = torch.randperm(n_patches, generator=gen)[: slots * k].view(slots, k)
            where[b, torch.arange(slots).unsqueeze(1), places] = True
        patches = torch.randn(size, n_patches, dim, generator=gen)
        patches += torch.einsum("bsn,bsd->bnd", where.float(), look[types])
        sentences = says[types] + 0.3 * torch.randn(size, slots, text_dim, generator=gen)
        return patches, sentences, where

    torch.manual_seed(0)
    image_head, text_head = FeatureHead(dim, dim), FeatureHead(text_dim, dim)
    params = [*image_head.parameters(), *text_head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    valid = torch.ones(32, slots, dtype=torch.bool)

    def hit_rate(patches, sentences, where) -> float:
        with torch.no_grad():
            _, top, _ = topk_similarity(text_head(sentences), image_head(patches), k)
        return float(torch.gather(where, 2, top).float().mean())

    test = batch(64)
    before = hit_rate(*test)
    for _ in range(300):
        patches, sentences, _ = batch(32)
        pooled, _, _ = topk_similarity(text_head(sentences), image_head(patches), k)
        loss, _ = alignment_infonce(pairwise_cosine(text_head(sentences), pooled), valid, tau=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    chance = k / n_patches  # 0.0625
    assert before < 1.5 * chance  # untrained heads do not find the findings
    # Trained, the selection moves onto them: about 0.21 here, still rising slowly (0.28 after 2,000 steps). Not
    # all K: discriminating a report's sentences needs only some of each sentence's K patches on its finding.
    assert hit_rate(*test) > 2.5 * chance
