"""The linear-probe network of ``protocol.md`` §6.1: frozen encoder → mean of patch tokens →
fresh, frozen LayerNorm → linear head (the only trained parameters)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor, nn

from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.models.vit3d import LAYER_NORM_EPS, LoadReport, ViT3D, load_encoder_weights


class LinearProbe(nn.Module):
    """``head(fc_norm(mean(patch tokens of the last block)))``; the encoder's final ``norm`` is unused."""

    def __init__(self, encoder: EncoderConfig, num_outputs: int, *, drop_path_rate: float, head_init_std: float):
        super().__init__()
        self.encoder = ViT3D(dataclasses.replace(encoder, drop_path_rate=drop_path_rate))
        del self.encoder.norm  # §6.1: the pretrained final norm is deleted
        self.fc_norm = nn.LayerNorm(encoder.embed_dim, eps=LAYER_NORM_EPS)  # γ = 1, β = 0, never trained
        self.head = nn.Linear(encoder.embed_dim, num_outputs)
        nn.init.trunc_normal_(self.head.weight, std=head_init_std)
        nn.init.zeros_(self.head.bias)
        for parameter in [*self.encoder.parameters(), *self.fc_norm.parameters()]:
            parameter.requires_grad_(False)

    def load_encoder(self, checkpoint: Path) -> LoadReport:
        """Patch embedding, cls token, ``pos_embed`` and blocks; refuses a checkpoint without ``pos_embed`` (H10)."""
        return load_encoder_weights(self.encoder, checkpoint, target="probe")

    @torch.no_grad()
    def pooled(self, x: Tensor) -> Tensor:
        """Mean over the patch tokens (cls excluded) of the last block: the cacheable feature (§6.6).

        Drop-path follows the module's mode: active in ``train()`` (H9), off in ``eval()``.
        """
        tokens, _ = self.encoder.forward_features(x, use_cls_token=True)
        return tokens[:, 1:].mean(dim=1)

    def classify(self, pooled: Tensor) -> Tensor:
        return self.head(self.fc_norm(pooled))

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.pooled(x))
