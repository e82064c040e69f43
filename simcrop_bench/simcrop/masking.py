"""The two random maskings of SimCroP: image patch tokens (§3.1) and report tokens (§3.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PatchMasking:
    """Result of :func:`random_patch_masking` for a batch of ``B`` samples with ``N`` tokens."""

    visible: Tensor  # (B, L_keep, D) kept tokens, in shuffled order
    mask: Tensor  # (B, N) float, 1 = removed, 0 = kept, in original token order
    ids_restore: Tensor  # (B, N) inverse of the shuffle
    ids_keep: Tensor  # (B, L_keep) original indices of the kept tokens


def num_kept(num_tokens: int, mask_ratio: float) -> int:
    """``int(N · (1 − r))``: 686 of 2744 at r = 0.75 (§3.1)."""
    return int(num_tokens * (1 - mask_ratio))


def random_patch_masking(
    tokens: Tensor, mask_ratio: float, generator: torch.Generator | None = None, noise: Tensor | None = None
) -> PatchMasking:
    """MAE masking per sample: argsort of uniform noise, keep the first ``int(N·(1−r))`` (§3.1).

    ``noise`` (B, N) may come with the batch, drawn per sample by the data loader, so that the
    masks do not depend on the process rank or the batch composition.
    """
    batch, n, dim = tokens.shape
    keep = num_kept(n, mask_ratio)
    if noise is None:
        noise = torch.rand(batch, n, device=tokens.device, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    visible = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
    mask = torch.ones(batch, n, device=tokens.device, dtype=tokens.dtype)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return PatchMasking(visible, mask, ids_restore, ids_keep)


def mask_report_ids(
    ids: Tensor,
    attention_mask: Tensor,
    *,
    mask_id: int,
    sep_id: int,
    prob: float,
    mask_padding: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Masked report ids and the bool map of replaced positions, both ``(B, L)`` (§3.2, §9 F2).

    Positions ``1 … L−2`` other than ``[SEP]`` are replaced by ``[MASK]`` independently with probability
    ``prob``; position 0 (``[CLS]``) and the last position never are, and there is no 80/10/10 rule.
    Faithful (``mask_padding=True``) masks padding positions too; clean masks only real tokens.
    """
    draw = torch.rand(ids.shape, device=ids.device, generator=generator)
    eligible = ids != sep_id
    eligible[:, 0] = False
    eligible[:, -1] = False
    if not mask_padding:
        eligible &= attention_mask.bool()
    replaced = eligible & (draw < prob)
    return ids.masked_fill(replaced, mask_id), replaced
