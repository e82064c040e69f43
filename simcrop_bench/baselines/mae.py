"""Masked autoencoder (He et al., CVPR 2022) on the shared 3D ViT.

SimCroP's image branch *is* an MAE (``simcrop-method.md`` §2.1, §2.3, §3.1): the same random masking
(argsort of per-token noise), the encoder on the visible tokens only, the same decoder (``decoder_embed``,
``mask_token``, fixed sin-cos ``decoder_pos_embed``, ``decoder_blocks``, ``decoder_norm``,
``decoder_pred_layer``). The model therefore borrows those three methods from
:class:`~simcrop_bench.simcrop.model.SimCroPModel` instead of copying them, so the two cannot drift
apart, and differs only in its loss: MAE's mean squared error over the masked patches' voxels
(optionally against per-patch normalised targets, MAE's ``norm_pix_loss``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from simcrop_bench.errors import ConfigError
from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.models.vit3d import ViT3D, init_linear_and_norm
from simcrop_bench.simcrop.config import SimCroPConfig
from simcrop_bench.simcrop.losses import mim_loss, normalise_patches
from simcrop_bench.simcrop.model import SimCroPModel


class MaskedAutoencoder(ViT3D):
    """ViT3D encoder + SimCroP's MAE-style vision decoder; ``forward(batch)`` returns the MAE loss."""

    # SimCroP's vision half, shared verbatim (they read ``self.simcrop_cfg``: mask ratio, decoder depth/heads).
    _build_vision_decoder = SimCroPModel._build_vision_decoder
    encode_masked = SimCroPModel.encode_masked
    decode_image = SimCroPModel.decode_image

    def __init__(
        self,
        encoder_cfg: EncoderConfig,
        *,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        decoder_dim: int | None = None,
        decoder_depth: int = 4,
        decoder_heads: int = 16,
    ) -> None:
        super().__init__(encoder_cfg)
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"method.mae.mask_ratio must lie in (0, 1), got {mask_ratio}")
        self.simcrop_cfg = SimCroPConfig(
            mask_ratio=mask_ratio, vision_decoder_depth=decoder_depth, vision_decoder_heads=decoder_heads
        )
        self.norm_pix_loss = norm_pix_loss
        try:
            self._build_vision_decoder(encoder_cfg, decoder_dim or encoder_cfg.embed_dim)
        except ValueError as exc:  # heads that do not divide the width
            raise ConfigError(f"method.mae: {exc}") from None
        for name, child in self.named_children():
            if name.startswith("decoder_"):
                init_linear_and_norm(child)  # the encoder was initialised by ViT3D (§2.1)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Any]:  # type: ignore[override]
        """``loss`` (MSE over masked patches), ``mim_pred`` ``(B, N, P)`` and ``mim_mask`` ``(B, N)`` (1 = masked)."""
        image = batch["image"]
        latent, masking = self.encode_masked(image, generator, batch.get("mim_noise"))
        pred = self.decode_image(latent, masking.ids_restore)
        target = self.patchify(image)
        if self.norm_pix_loss:
            target = normalise_patches(target)
        loss = mim_loss(pred, target, masking.mask, loss_norm="masked_voxels")  # MAE: mean over masked voxels
        return {"loss": loss, "mim_pred": pred, "mim_mask": masking.mask}
