"""SimMIM (Xie et al., CVPR 2022) on the shared 3D ViT.

Unlike MAE, every token goes through the encoder: the embeddings of masked patches are replaced by
a learned ``mask_token`` *before* the position table is added; a single linear head maps each output
token to the voxels of its patch (SimMIM's 1×1 convolution + pixel shuffle, written as a per-token
Linear) and the loss is the L1 error over the voxels of masked patches only. Masks are drawn on a
coarser grid of ``mask_block`` tokens per block (SimMIM masks 32-pixel squares on a 16-pixel ViT),
with ``ceil(blocks · ratio)`` blocks masked per sample.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from simcrop_bench.errors import ConfigError
from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.models.vit3d import ViT3D, init_linear_and_norm


def block_grid(grid: tuple[int, int, int], block: tuple[int, int, int]) -> tuple[int, int, int]:
    """Grid of mask blocks; ``block`` (tokens per block along h, w, d) must divide the token grid."""
    if any(b < 1 or g % b for g, b in zip(grid, block)):
        raise ConfigError(f"method.simmim.mask_block {tuple(block)} does not divide the token grid {tuple(grid)}")
    return tuple(g // b for g, b in zip(grid, block))  # type: ignore[return-value]


def block_mask(noise: Tensor, grid: tuple[int, int, int], block: tuple[int, int, int], ratio: float) -> Tensor:
    """Token mask ``(B, N)`` (1 = masked), in token order (h, w, d; d fastest).

    ``noise`` ``(B, ≥ blocks)`` ranks the blocks of each sample (its first ``prod(block_grid)`` columns
    are used); the ``ceil(blocks · ratio)`` lowest are masked and every token of a block shares its value.
    """
    coarse = block_grid(grid, block)
    blocks = math.prod(coarse)
    count = math.ceil(blocks * ratio)
    order = noise[:, :blocks].argsort(dim=1)
    mask = torch.zeros(noise.shape[0], blocks, device=noise.device)
    mask.scatter_(1, order[:, :count], 1.0)
    mask = mask.view(-1, *coarse)
    for axis, size in enumerate(block, start=1):
        mask = mask.repeat_interleave(size, dim=axis)
    return mask.flatten(1)


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error over the voxels of masked patches: ``pred``/``target`` ``(B, N, P)``, ``mask`` ``(B, N)``."""
    per_patch = (pred - target).abs().sum(dim=-1)
    return (per_patch * mask).sum() / (mask.sum() * pred.shape[-1]).clamp_min(1)


class SimMIM(ViT3D):
    """ViT3D with a learned mask token at masked positions and a linear voxel head."""

    def __init__(
        self, encoder_cfg: EncoderConfig, *, mask_ratio: float = 0.6, mask_block: tuple[int, int, int] = (2, 2, 2)
    ) -> None:
        super().__init__(encoder_cfg)
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"method.simmim.mask_ratio must lie in (0, 1), got {mask_ratio}")
        block_grid(encoder_cfg.grid(), tuple(mask_block))  # fail at build time, not at the first step
        self.mask_ratio, self.mask_block = mask_ratio, tuple(mask_block)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder_cfg.embed_dim))
        patch_voxels = encoder_cfg.in_chans * math.prod(encoder_cfg.patch_size)
        self.prediction_head = nn.Linear(encoder_cfg.embed_dim, patch_voxels)
        init_linear_and_norm(self.prediction_head)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def draw_mask(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """The batch's token mask, from its per-sample ``mim_noise`` when present."""
        image = batch["image"]
        grid = self.cfg.grid(tuple(image.shape[2:]))
        noise = batch.get("mim_noise")
        if noise is None:
            noise = torch.rand(image.shape[0], math.prod(grid), device=image.device, generator=generator)
        return block_mask(noise, grid, self.mask_block, self.mask_ratio).to(image.dtype)

    def encode_with_mask_tokens(self, image: Tensor, mask: Tensor) -> Tensor:
        """Normed patch tokens ``(B, N, D)`` (cls dropped) with masked embeddings replaced by ``mask_token``."""
        grid = self.cfg.grid(tuple(image.shape[2:]))
        tokens = self.patch_embed(image)
        weight = mask.unsqueeze(-1).to(tokens.dtype)
        tokens = tokens * (1 - weight) + self.mask_token.to(tokens.dtype) * weight
        tokens = tokens + self.patch_pos_table(grid)
        latent, _ = self.run_blocks(self.prepend_cls(tokens))
        return self.norm(latent)[:, 1:]

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Any]:  # type: ignore[override]
        """``loss`` (L1 over masked voxels), ``mim_pred`` ``(B, N, P)`` and ``mim_mask`` ``(B, N)``."""
        image = batch["image"]
        mask = self.draw_mask(batch, generator)
        pred = self.prediction_head(self.encode_with_mask_tokens(image, mask))
        loss = masked_l1(pred, self.patchify(image), mask)
        return {"loss": loss, "mim_pred": pred, "mim_mask": mask}
