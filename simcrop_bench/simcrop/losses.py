"""SimCroP's three objectives as pure tensor functions (``simcrop-method.md`` §3.1–§3.5, §9).

Shapes: ``B`` batch, ``N`` patch tokens, ``P`` voxels per patch, ``L`` text positions, ``S`` sentence slots.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_COS_EPS = 1e-8  # §3.4: s / (‖s‖ + 1e-8); zero vectors stay zero


# --------------------------------------------------------------------------- MIM (§3.1, F3, F4)


def normalise_patches(target: Tensor) -> Tensor:
    """Per-patch normalised target (F4 clean option): ``(x − mean) / sqrt(var + 1e-6)`` over each patch."""
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + 1e-6).sqrt()


def mim_loss(pred: Tensor, target: Tensor, mask: Tensor, *, loss_norm: str = "all_voxels") -> Tensor:
    """Squared error summed over masked patches ``(B, N, P)``, ``mask`` ``(B, N)`` with 1 = masked.

    ``all_voxels`` (faithful): divided by ``B·N·P``, i.e. ``(1 − keep fraction)`` × the masked MSE.
    ``masked_voxels`` (clean, standard MAE): divided by ``Σ mask · P``.
    """
    per_patch = (pred - target).pow(2).sum(dim=-1)
    total = (per_patch * mask).sum()
    if loss_norm == "all_voxels":
        return total / pred.numel()
    if loss_norm == "masked_voxels":
        return total / (mask.sum() * pred.shape[-1]).clamp_min(1)
    raise ValueError(f"unknown mim.loss_norm {loss_norm!r}")


# --------------------------------------------------------------------------- MLM (§3.2, F1)


def mlm_loss(logits: Tensor, labels: Tensor, masked_positions: Tensor, *, labels_mode: str = "all_positions") -> Tensor:
    """Cross-entropy of ``logits`` ``(B, L, V)`` against the unmasked ids ``labels`` ``(B, L)``.

    ``all_positions`` (faithful): every position is a target (cls, unmasked and padding included), mean over
    ``B·L``. ``masked_only`` (clean): only ``masked_positions`` (bool ``(B, L)``: ``[MASK]``ed, non-padding)
    count, mean over them; 0 when there are none.
    """
    per_token = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="none")
    if labels_mode == "all_positions":
        return per_token.mean()
    if labels_mode == "masked_only":
        weights = masked_positions.flatten().to(per_token.dtype)
        return (per_token * weights).sum() / weights.sum().clamp_min(1)
    raise ValueError(f"unknown mlm.labels {labels_mode!r}")


# --------------------------------------------------------------------------- alignment (§3.3–§3.5)


def sentence_features(token_features: Tensor, sentence_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Mean token feature per sentence: ``(B, S_max, D)`` and the valid-slot mask ``(B, S_max)`` (§3.3 step 6).

    ``sentence_ids`` ``(B, L)`` (cls position already dropped) hold 0 for "no sentence" and 1…S_b otherwise;
    ``S_max = max_b S_b``. Slot k is valid iff ``k ≤ S_b``; padded slots are zero vectors.
    """
    s_max = int(sentence_ids.max().item()) if sentence_ids.numel() else 0
    batch, _, dim = token_features.shape
    if s_max == 0:
        empty = token_features.new_zeros(batch, 0, dim)
        return empty, torch.zeros(batch, 0, dtype=torch.bool, device=token_features.device)
    one_hot = F.one_hot(sentence_ids.long(), s_max + 1)[..., 1:].to(token_features.dtype)  # slot 0 discarded
    sums = one_hot.transpose(1, 2) @ token_features  # (B, S, D)
    counts = one_hot.sum(dim=1).clamp_min(1).unsqueeze(-1)
    per_sample = sentence_ids.max(dim=1).values  # S_b
    slots = torch.arange(1, s_max + 1, device=sentence_ids.device)
    valid = slots.unsqueeze(0) <= per_sample.unsqueeze(1)
    return sums / counts, valid


def _unit(x: Tensor) -> Tensor:
    return x / (x.norm(dim=-1, keepdim=True) + _COS_EPS)


def topk_similarity(
    sentence_feats: Tensor, patch_feats: Tensor, k: int, valid: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Similarity-driven patch selection (§3.4): ``(pooled (B,S,D), indices (B,S,K'), similarity (B,S,N))``.

    Cosine similarity of each sentence with every patch; the mean of the ``K' = min(k, N)`` most similar
    patch features is the sentence's pooled image feature. The index selection is not differentiated, so
    gradients reach the selected patch features only (the sentence gets its own through the loss).
    Faithful (``valid=None``): padded
    slots have all-zero similarity rows and pool tie-broken patches (F7). With ``valid``, padded slots pool
    to zero (clean: they are skipped).
    """
    similarity = _unit(sentence_feats) @ _unit(patch_feats).transpose(1, 2)
    k = min(int(k), patch_feats.shape[1])
    indices = similarity.detach().topk(k, dim=-1).indices  # (B, S, K)
    batch, slots, _ = indices.shape
    dim = patch_feats.shape[-1]
    gathered = torch.gather(
        patch_feats.unsqueeze(1).expand(-1, slots, -1, -1), 2, indices.unsqueeze(-1).expand(-1, -1, -1, dim)
    )
    pooled = gathered.mean(dim=2)
    if valid is not None:
        pooled = pooled * valid.unsqueeze(-1).to(pooled.dtype)
    return pooled, indices, similarity


def pairwise_cosine(sentence_feats: Tensor, pooled_feats: Tensor) -> Tensor:
    """``(B, S, S)`` matrix ``ŝ_k · f̂_l`` with zero vectors kept zero (§3.5)."""
    return _unit(sentence_feats) @ _unit(pooled_feats).transpose(1, 2)


def alignment_infonce(
    sim: Tensor, valid: Tensor, tau: float, *, padded_slots: str = "in_denominator", per_report_mean: bool = False
) -> tuple[Tensor, int]:
    """Symmetric InfoNCE within each report (§3.5); returns ``(L_s2i + L_i2s, |V|)``.

    ``sim[b, k, l]`` is the cosine of sentence k with the pooled patches of sentence l; ``valid`` ``(B, S)``.
    Only sentences of the same report are negatives. ``in_denominator`` (faithful, F5): all ``S_max`` slots
    stay in both softmax denominators; ``masked`` (clean): padded columns get −∞. The mean runs over all valid
    sentences pooled (F6), or per report first with ``per_report_mean``. An empty valid set gives 0 (F13).
    """
    if padded_slots not in ("in_denominator", "masked"):
        raise ValueError(f"unknown align.padded_slots {padded_slots!r}")
    count = int(valid.sum().item())
    if count == 0:
        return sim.sum() * 0.0, 0  # keeps the graph connected; the reference's NaN is never useful (F13)
    logits = sim / tau
    s2i_logits, i2s_logits = logits, logits.transpose(1, 2)  # i2s row k = column k of sim
    if padded_slots == "masked":
        # padded columns l of valid rows k; rows of padded slots stay finite (their loss is dropped below)
        pad = ~valid.unsqueeze(1) & valid.unsqueeze(2)
        s2i_logits = s2i_logits.masked_fill(pad, float("-inf"))
        i2s_logits = i2s_logits.masked_fill(pad, float("-inf"))
    diagonal = torch.arange(sim.shape[1], device=sim.device)
    s2i = -(s2i_logits.log_softmax(dim=-1)[:, diagonal, diagonal])  # (B, S)
    i2s = -(i2s_logits.log_softmax(dim=-1)[:, diagonal, diagonal])
    weights = valid.to(sim.dtype)
    per_sentence = torch.where(valid, s2i + i2s, torch.zeros_like(s2i))
    if not per_report_mean:
        return per_sentence.sum() / count, count
    per_report = weights.sum(dim=1)
    has = per_report > 0
    report_means = per_sentence.sum(dim=1)[has] / per_report[has]
    return report_means.mean(), count
