"""Volume–report contrastive pretraining: the CT-CLIP objective (Hamamci et al., 2024) on the shared 3D ViT.

Volume embedding: the encoder's normed patch tokens (cls excluded), averaged, projected by
``to_visual_latent``. Report embedding: the frozen text encoder's last hidden states, pooled
(masked mean, or the ``[CLS]`` position), projected by ``to_text_latent``. Both projections are
bias-free Linears to ``latent_dim`` as in CT-CLIP. The loss is CLIP's symmetric InfoNCE over the
batch with a learnable temperature: logits = ``exp(logit_scale) · cos(v_i, t_j)``, ``logit_scale``
a trainable scalar (CT-CLIP starts it at 1, i.e. τ = 1/e), clamped at log 100 as CLIP does.
Negatives are the other pairs of the process's micro-batch (no cross-process gathering).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simcrop_bench.errors import ConfigError
from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.models.vit3d import ViT3D, init_linear_and_norm
from simcrop_bench.simcrop.text import FrozenTextEncoder

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: the multiplier never exceeds 100


def clip_infonce(volume_emb: Tensor, report_emb: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE: pair i is (volume i, report i); mean of the volume→report and report→volume CEs.

    ``logit_scale`` is the multiplier (already exponentiated) applied to the cosine similarities.
    """
    volume, report = F.normalize(volume_emb, dim=-1), F.normalize(report_emb, dim=-1)
    logits = logit_scale * volume @ report.t()
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2


def pool_text(hidden: Tensor, attention_mask: Tensor, mode: str) -> Tensor:
    """``(B, L, H)`` → ``(B, H)``: mean over real tokens (``mean``) or the first position (``cls``)."""
    if mode == "cls":
        return hidden[:, 0]
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1)


class VolumeReportCLIP(ViT3D):
    """ViT3D + frozen text encoder + two projections + learnable temperature."""

    def __init__(
        self,
        encoder_cfg: EncoderConfig,
        text_encoder: nn.Module,
        *,
        latent_dim: int = 512,
        init_logit_scale: float = 1.0,
        text_pool: str = "mean",
    ) -> None:
        super().__init__(encoder_cfg)
        if text_pool not in ("mean", "cls"):
            raise ConfigError(f"method.clip.text_pool must be 'mean' or 'cls', got {text_pool!r}")
        if latent_dim < 1:
            raise ConfigError(f"method.clip.latent_dim must be positive, got {latent_dim}")
        self.text_pool = text_pool
        # Frozen and always in eval mode: the report embedding of a given text never changes.
        self.text_encoder = FrozenTextEncoder(text_encoder, train_mode_dropout=False)
        self.to_visual_latent = nn.Linear(encoder_cfg.embed_dim, latent_dim, bias=False)
        self.to_text_latent = nn.Linear(self.text_encoder.hidden_size, latent_dim, bias=False)
        init_linear_and_norm(self.to_visual_latent)
        init_linear_and_norm(self.to_text_latent)
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))

    def embed_volume(self, image: Tensor) -> Tensor:
        tokens = ViT3D.forward(self, image)  # the plain encoder pass (this class's forward is the training step)
        return self.to_visual_latent(tokens[:, 1:].mean(dim=1))

    def embed_report(self, ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.text_encoder(ids, attention_mask)
        return self.to_text_latent(pool_text(hidden, attention_mask, self.text_pool))

    def temperature_multiplier(self) -> Tensor:
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Any]:  # type: ignore[override]
        """``loss`` (InfoNCE), ``logit_scale`` (the current multiplier, logged) and both embeddings."""
        volume = self.embed_volume(batch["image"])
        report = self.embed_report(batch["report_ids"], batch["report_attention_mask"])
        scale = self.temperature_multiplier()
        loss = clip_infonce(volume, report, scale)
        return {"loss": loss, "logit_scale": scale.detach(), "volume_emb": volume, "report_emb": report}
