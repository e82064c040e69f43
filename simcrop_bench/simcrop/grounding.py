"""Grounding score (issue #15): do a findings sentence's top-K most similar patches lie on what it describes?

For every findings sentence of a held-out CT-RATE twin volume that names a finding with a non-empty mask
(:mod:`simcrop_bench.data.synthetic.finding_regions`): hit rate = the fraction of its top-K patches (by the
model's sentence–patch cosine, every patch visible) that overlap the union of its findings' masks; chance = the
share of all patches that overlap it — the hit rate of K patches drawn at random. A patch overlaps when any of
its voxels is in the mask. Scores are means over sentences; ``lift`` = hit rate / chance.

A model takes part when it has ``sentence_patch_similarity(image, findings_ids, findings_mask, sentence_ids,
heads=None) -> (similarity (B, S, N), valid (B, S))`` and a ``tokenizer`` / ``special_ids`` (SimCroP and its
variants). A model built without alignment heads (``simcrop-noalign``) is scored through heads freshly
initialised with a fixed seed: the control "alignment never trained".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from simcrop_bench.data.sentences import simcrop_sentence_ids
from simcrop_bench.data.synthetic.finding_regions import RegionCase, region_cases
from simcrop_bench.data.volume_transforms import apply_chain, evaluation_transforms_with_mask
from simcrop_bench.simcrop.heads import FeatureHead
from simcrop_bench.simcrop.text import tokenize

CONTROL_SEED = 0  # initialisation of the control heads of a model without alignment heads
DEFAULT_VOLUMES = 16  # held-out volumes scored during pretraining: enough sentences, about a second on a CPU


def supports_grounding(model: Any) -> bool:
    return callable(getattr(model, "sentence_patch_similarity", None)) and hasattr(model, "tokenizer")


@dataclass
class GroundingSet:
    """Held-out volumes prepared once for one model's geometry and tokenizer."""

    volumes: list[str]
    images: Tensor  # (V, C, X, Y, Z)
    findings_ids: Tensor  # (V, L)
    findings_mask: Tensor  # (V, L)
    sentence_ids: Tensor  # (V, L)
    overlap: Tensor  # (V, S, N) bool: patches overlapping the mask of the findings sentence slot s names
    scored: Tensor  # (V, S) bool: slots naming a finding whose mask is non-empty in the volume

    @property
    def sentences(self) -> int:
        return int(self.scored.sum())


def grounding_set(model: Any, cases: Sequence[RegionCase]) -> GroundingSet:
    """Load the images and masks of ``cases`` at the encoder's input size and tokenise their findings."""
    cfg = model.cfg  # the encoder config
    chain = evaluation_transforms_with_mask(tuple(cfg.img_size))
    max_len = model.simcrop_cfg.max_text_len
    special = model.special_ids
    images, masks, ids, attention, sentence_ids = [], [], [], [], []
    for case in cases:
        item = apply_chain(chain, {"image": str(case.image), "mask": str(case.mask)})
        images.append(item["image"].as_tensor().float())
        masks.append(item["mask"].as_tensor().round().long())
        tokens, token_mask = tokenize(model.tokenizer, [case.findings], max_len)
        ids.append(tokens[0])
        attention.append(token_mask[0])
        sentence_ids.append(
            torch.tensor(simcrop_sentence_ids(tokens[0].tolist(), special.period, special.single_digits))
        )
    n_tokens = math.prod(cfg.grid())
    slots = max([int(s.max()) for s in sentence_ids] + [1])
    overlap = torch.zeros(len(cases), slots, n_tokens, dtype=torch.bool)
    for v, (case, mask, sids) in enumerate(zip(cases, masks, sentence_ids)):
        present = int(sids.max())  # sentences cut off by truncation have no slot
        for sid, values in case.sentences.items():
            if sid > present:
                continue
            inside = torch.isin(mask, torch.tensor(values)).float().unsqueeze(0)  # (1, C, X, Y, Z)
            overlap[v, sid - 1] = model.patchify(inside)[0].amax(dim=-1) > 0
    return GroundingSet(
        volumes=[c.volume for c in cases],
        images=torch.stack(images),
        findings_ids=torch.stack(ids),
        findings_mask=torch.stack(attention),
        sentence_ids=torch.stack(sentence_ids).long(),
        overlap=overlap,
        scored=overlap.any(dim=-1),
    )


def control_heads(model: Any) -> tuple[nn.Module, nn.Module]:
    """Untrained alignment heads for a model built without them, seeded so that every call gives the same."""
    from simcrop_bench.models.vit3d import init_linear_and_norm

    enc_dim = model.cfg.embed_dim
    text_dim = int(model.bert_encoder.hidden_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(CONTROL_SEED)
        heads = FeatureHead(enc_dim, enc_dim), FeatureHead(text_dim, enc_dim)
        for head in heads:
            init_linear_and_norm(head)
    return heads


@torch.no_grad()
def grounding_score(
    model: Any, data: GroundingSet, k: int | None = None, batch_size: int = 8, *, masked_draws: int = 0
) -> dict[str, float]:
    """Mean hit rate, chance and lift over the scored sentences of ``data`` (model in eval mode, RNG untouched).

    ``k``: patches per sentence (default: the model's ``topk``). Keys: ``hit_rate``, ``chance``, ``lift``,
    ``sentences``, ``control`` (1 when control heads stood in for missing alignment heads).

    ``masked_draws`` > 0 scores the *training view* instead (a diagnostic; models with ``visible_similarity``):
    each volume is masked as in pretraining (``mask_ratio``, noise from a fixed seed, ``masked_draws`` masks per
    volume), the top-K are chosen among the kept patches, and chance is the kept patches' share on the mask; a
    sentence none of whose kept patches lies on its finding is left out of that draw (it cannot hit).
    """
    k = int(k or model.simcrop_cfg.topk)
    device = next(model.parameters()).device
    heads = None if hasattr(model, "finding_align_img_mlp") else tuple(h.to(device) for h in control_heads(model))
    was_training = model.training
    hits, chances = [], []
    draws = [None] if masked_draws <= 0 else list(range(masked_draws))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model.eval()
        try:
            for draw in draws:
                generator = None if draw is None else torch.Generator().manual_seed(CONTROL_SEED + draw)
                for start in range(0, len(data.volumes), batch_size):
                    part = slice(start, start + batch_size)
                    images = data.images[part].to(device)
                    args = (data.findings_ids[part], data.findings_mask[part], data.sentence_ids[part])
                    if generator is None:  # the grounding hook every taking-part model has
                        similarity, valid = model.sentence_patch_similarity(
                            images, *(a.to(device) for a in args), heads=heads
                        )
                        keep = None
                    else:
                        mask_noise = torch.rand(images.shape[0], data.overlap.shape[-1], generator=generator).to(device)
                        similarity, valid, keep = model.visible_similarity(
                            images, *(a.to(device) for a in args), heads=heads, noise=mask_noise
                        )
                    overlap = data.overlap[part, : similarity.shape[1]].to(device)
                    if keep is not None:  # the kept patches only, in the order the similarity lists them
                        overlap = torch.gather(overlap, 2, keep.unsqueeze(1).expand(-1, overlap.shape[1], -1))
                    scored = data.scored[part, : similarity.shape[1]].to(device) & valid & overlap.any(dim=-1)
                    top = similarity.topk(min(k, similarity.shape[-1]), dim=-1).indices
                    hit = torch.gather(overlap, 2, top).float().mean(dim=-1)
                    hits.append(hit[scored].cpu())
                    chances.append(overlap.float().mean(dim=-1)[scored].cpu())
        finally:
            model.train(was_training)
    hit, chance = torch.cat(hits) if hits else torch.zeros(0), torch.cat(chances) if chances else torch.zeros(0)
    n = int(hit.numel())
    mean_hit = float(hit.mean()) if n else math.nan
    mean_chance = float(chance.mean()) if n else math.nan
    return {
        "hit_rate": mean_hit,
        "chance": mean_chance,
        "lift": mean_hit / mean_chance if n and mean_chance > 0 else math.nan,
        "sentences": float(n),
        "control": float(heads is not None),
    }


class GroundingMonitor:
    """The pretraining loop's monitor: scores held-out twin volumes, returns ``grounding/*`` scalars.

    The volumes are loaded on first use, with the tokenizer and geometry of the model being trained.
    """

    def __init__(self, ctrate_root: Path, volumes: int = DEFAULT_VOLUMES) -> None:
        self.cases = region_cases(ctrate_root, "valid", limit=volumes)
        self.data: GroundingSet | None = None

    def __call__(self, model: nn.Module) -> dict[str, float]:
        if not self.cases or not supports_grounding(model):
            return {}
        try:
            if self.data is None:
                self.data = grounding_set(model, self.cases)
            scores = grounding_score(model, self.data)
        except Exception as exc:  # noqa: BLE001 - a diagnostic must never end a pretraining
            from simcrop_bench.util.progress import log

            log(f"[yellow]grounding score disabled for this run: {type(exc).__name__}: {exc}[/yellow]")
            self.cases = []
            return {}
        return {f"grounding/{name}": value for name, value in scores.items()}
