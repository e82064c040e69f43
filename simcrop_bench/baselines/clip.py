"""Volume–report contrastive pretraining: the CT-CLIP objective (Hamamci et al., 2024) on the shared 3D ViT.

Volume embedding: the encoder's normed patch tokens (cls excluded), averaged, projected by
``to_visual_latent``. Report embedding: the frozen text encoder's last hidden states, pooled
(masked mean, or the ``[CLS]`` position), projected by ``to_text_latent``. Both projections are
bias-free Linears to ``latent_dim`` as in CT-CLIP. The loss is CLIP's symmetric InfoNCE over the
batch with a learnable temperature: logits = ``exp(logit_scale) · cos(v_i, t_j)``, ``logit_scale``
a trainable scalar (CT-CLIP starts it at 1, i.e. τ = 1/e), clamped at log 100 as CLIP does.
Negatives are the other pairs of the micro-batch *on every process*: embeddings are gathered across ranks
with gradient (``torch.distributed.nn.functional.all_gather``, as open_clip's ``gather_with_grad``), so N
processes of batch b contrast each sample with N·b − 1 others, the same loss and gradient as one process of
batch N·b. Gradient accumulation adds no negatives: an optimizer step averages ``accum_steps`` such losses
(recorded by :meth:`VolumeReportCLIP.contrastive_negatives`).
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
from simcrop_bench.pretraining import distributed as dist_utils
from simcrop_bench.simcrop.text import FrozenTextEncoder

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: the multiplier never exceeds 100


def gather_across_ranks(local: Tensor) -> tuple[Tensor, int]:
    """Every rank's ``local`` rows concatenated in rank order (with gradient), and this rank's first row.

    Without a process group: ``(local, 0)``. Ranks must hold equally many rows (the loop drops last batches).
    """
    if not dist_utils.is_distributed():
        return local, 0
    from torch.distributed.nn.functional import all_gather  # differentiable: gradients flow back to each rank

    return torch.cat(all_gather(local)), dist_utils.rank() * local.shape[0]


def clip_infonce(volume_emb: Tensor, report_emb: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE: pair i is (volume i, report i); mean of the volume→report and report→volume CEs.

    ``logit_scale`` is the multiplier (already exponentiated) applied to the cosine similarities. Under a
    process group each local sample is contrasted with the pairs of every rank (:func:`gather_across_ranks`);
    the mean over ranks of this loss (DDP's gradient average) is then the single-process loss of the whole batch.
    """
    volume, report = F.normalize(volume_emb, dim=-1), F.normalize(report_emb, dim=-1)
    all_volumes, offset = gather_across_ranks(volume)
    all_reports, _ = gather_across_ranks(report)
    targets = torch.arange(volume.shape[0], device=volume.device) + offset
    volume_to_report = F.cross_entropy(logit_scale * volume @ all_reports.t(), targets)
    report_to_volume = F.cross_entropy(logit_scale * report @ all_volumes.t(), targets)
    return (volume_to_report + report_to_volume) / 2


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

    @staticmethod
    def contrastive_negatives(recipe: dict[str, int]) -> dict[str, Any]:
        """How many negatives a sample meets under ``recipe`` (the loop stores this with the pretraining)."""
        per_micro_batch = recipe["batch_size"] * recipe["world_size"]
        return {
            "per_sample": per_micro_batch - 1,
            "pairs_per_loss": per_micro_batch,
            "gathered_across_ranks": True,
            "accumulation": f"adds none: a step averages {recipe['accum_steps']} losses of {per_micro_batch} pairs",
        }

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Any]:  # type: ignore[override]
        """``loss`` (InfoNCE), ``logit_scale`` (the current multiplier, logged) and both embeddings."""
        volume = self.embed_volume(batch["image"])
        report = self.embed_report(batch["report_ids"], batch["report_attention_mask"])
        scale = self.temperature_multiplier()
        loss = clip_infonce(volume, report, scale)
        return {"loss": loss, "logit_scale": scale.detach(), "volume_emb": volume, "report_emb": report}
