"""UNETR segmentation network on the shared 3D ViT (``protocol.md`` §7.1–7.2).

The decoder is assembled from MONAI's UNETR blocks. Two things differ from MONAI's
own ``UNETR``: the encoder is our :class:`ViT3D` (anisotropic patches, no cls token
in the forward pass, Variant-B position table for the ROI grid, a fresh ``fc_norm``
on the last block), and the last decoder stage upsamples trilinearly to the full
ROI instead of using a transposed convolution. The latter is needed because the
patch grid grows ×2 per decoder stage, i.e. ×8 after ``decoder3``; with patches
(16, 16, 8) that is half the ROI in x and y but already the full ROI in z, so no
fixed ×2 transposed convolution reaches the ROI.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetResBlock, UnetrPrUpBlock, UnetrUpBlock
from torch import Tensor, nn

from simcrop_bench.models.vit3d import LAYER_NORM_EPS, LoadReport, ViT3D, load_encoder_weights

SEGMENTATION_POS_VARIANT = "B"  # the reference always recomputes Variant B for the ROI grid (§7.1)
_SPATIAL_DIMS = 3


class UpsampleToSkipBlock(nn.Module):
    """Final decoder stage: trilinear upsampling to the skip's (full-ROI) size, a 3×3×3
    convolution to the skip's width, concatenation with the skip, residual block."""

    def __init__(self, in_channels: int, out_channels: int, norm_name: str | tuple) -> None:
        super().__init__()
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        self.conv_block = UnetResBlock(
            _SPATIAL_DIMS, 2 * out_channels, out_channels, kernel_size=3, stride=1, norm_name=norm_name
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="trilinear", align_corners=False)
        return self.conv_block(torch.cat([self.conv3d(x), skip], dim=1))


def default_skip_blocks(depth: int) -> tuple[int, int, int]:
    """Blocks at a quarter, half and three quarters of the depth: (3, 6, 9) for 12 blocks."""
    return tuple(k * depth // 4 for k in (1, 2, 3))  # type: ignore[return-value]


class UNETR(nn.Module):
    """UNETR with ``vit`` as encoder; all parameters train (full fine-tuning).

    The encoder's final ``norm`` is removed and its cls token frozen: segmentation
    uses neither (a fresh ``fc_norm`` replaces the norm), and parameters without
    gradients would trouble DistributedDataParallel and weight decay.
    """

    def __init__(
        self,
        encoder: ViT3D,
        out_channels: int,
        roi_size: tuple[int, int, int],
        feature_size: int = 16,
        skip_blocks: tuple[int, int, int] | None = None,
        norm_name: str | tuple = "instance",
    ) -> None:
        super().__init__()
        cfg = encoder.cfg
        self.roi_size = tuple(int(s) for s in roi_size)
        self.grid = cfg.grid(self.roi_size)  # validates divisibility by the patch size
        self.skip_blocks = tuple(skip_blocks) if skip_blocks is not None else default_skip_blocks(cfg.depth)
        if len(self.skip_blocks) != 3 or not all(0 <= b < cfg.depth for b in self.skip_blocks):
            raise ValueError(f"skip_blocks must be three block indices in [0, {cfg.depth}), got {self.skip_blocks}")

        self.vit = encoder
        encoder.norm = nn.Identity()
        encoder.cls_token.requires_grad_(False)
        hidden, f = cfg.embed_dim, feature_size
        self.fc_norm = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)

        def skip_path(out: int, up_blocks: int) -> UnetrPrUpBlock:
            # transposed conv ×2, then `up_blocks` more (transposed conv + conv block) stages
            return UnetrPrUpBlock(
                _SPATIAL_DIMS,
                hidden,
                out,
                num_layer=up_blocks,
                kernel_size=3,
                stride=1,
                upsample_kernel_size=2,
                norm_name=norm_name,
                conv_block=True,
                res_block=True,
            )

        def up_stage(inp: int, out: int) -> UnetrUpBlock:
            return UnetrUpBlock(
                _SPATIAL_DIMS, inp, out, kernel_size=3, upsample_kernel_size=2, norm_name=norm_name, res_block=True
            )

        self.encoder1 = UnetrBasicBlock(
            _SPATIAL_DIMS, cfg.in_chans, f, kernel_size=3, stride=1, norm_name=norm_name, res_block=True
        )
        self.encoder2 = skip_path(2 * f, up_blocks=2)  # grid ×8
        self.encoder3 = skip_path(4 * f, up_blocks=1)  # grid ×4
        self.encoder4 = skip_path(8 * f, up_blocks=0)  # grid ×2
        self.decoder5 = up_stage(hidden, 8 * f)
        self.decoder4 = up_stage(8 * f, 4 * f)
        self.decoder3 = up_stage(4 * f, 2 * f)
        self.decoder2 = UpsampleToSkipBlock(2 * f, f, norm_name)
        self.out = UnetOutBlock(_SPATIAL_DIMS, f, out_channels)

    @staticmethod
    def _to_volume(tokens: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """``(B, N, D)`` tokens in (h, w, d) order → ``(B, D, h, w, d)`` feature map."""
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)

    def forward(self, x: Tensor) -> Tensor:
        grid = self.vit.cfg.grid(tuple(x.shape[2:]))
        last, hidden = self.vit.forward_features(x, use_cls_token=False, pos_variant=SEGMENTATION_POS_VARIANT)
        s2, s3, s4 = (self._to_volume(hidden[b], grid) for b in self.skip_blocks)

        full_res = self.encoder1(x)
        grid_x8 = self.encoder2(s2)
        grid_x4 = self.encoder3(s3)
        grid_x2 = self.encoder4(s4)

        y = self.decoder5(self._to_volume(self.fc_norm(last), grid), grid_x2)
        y = self.decoder4(y, grid_x4)
        y = self.decoder3(y, grid_x8)
        y = self.decoder2(y, full_res)
        return self.out(y)


def load_pretrained_encoder(unetr: UNETR, source: str | PathLike | Mapping[str, Any]) -> LoadReport:
    """Transfer patch embedding and blocks from a pretraining checkpoint into ``unetr.vit``
    (§7.2); ``fc_norm`` and the decoder stay fresh, ``cls_token``/``pos_embed`` are not read."""
    return load_encoder_weights(unetr.vit, source, target="segmentation")
