"""``clip``: volume–report contrastive pretraining, the CT-CLIP objective (Hamamci et al., Developing
Generalist Foundation Models from a Multimodal Dataset for 3D Computed Tomography, arXiv 2403.17834, 2024).

The volume embedding (the shared 3D ViT's patch tokens, averaged, projected) and the report
embedding (findings + impression through a frozen text encoder, pooled, projected) of each CT-RATE
training pair are pulled together and pushed away from the other pairs of the batch by CLIP's
symmetric InfoNCE with a learnable temperature, negatives gathered across processes (batch × processes − 1
per sample; gradient accumulation adds none). Model: ``simcrop_bench.baselines.clip``.

Differs from the publication: our 3D ViT instead of CT-ViT, and the text encoder is the offline
MiniLM, frozen (CT-CLIP fine-tunes CXR-BERT; point ``method.clip.text_encoder_path`` at a local
CXR-BERT directory to use it, still frozen).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from simcrop_bench.api import Method, MethodConfig
from simcrop_bench.pretraining.config import DEMO_RECIPE, PretrainConfig
from simcrop_bench.registry import register_method


@dataclass
class CLIPSettings:
    latent_dim: int = 512  # CT-CLIP's shared embedding width
    init_logit_scale: float = 1.0  # log of the initial similarity multiplier (CT-CLIP: 1, i.e. τ = 1/e); learned
    text_pool: Literal["mean", "cls"] = "mean"  # mean: how MiniLM was trained; cls: CT-CLIP's [CLS] state
    text_encoder_path: str | None = None  # None = the pinned offline MiniLM
    max_text_len: int = 512
    report_join: Literal["space", "concat"] = "space"  # findings + " " + impression (concat: SimCroP's F10 quirk)


@dataclass
class CLIPConfig(MethodConfig):
    clip: CLIPSettings = field(default_factory=CLIPSettings)
    train: PretrainConfig = field(default_factory=PretrainConfig)  # §5.4 recipe; batch_size is per process


@register_method("clip")
class CLIP(Method):
    """CT-CLIP objective: global volume–report InfoNCE, frozen text encoder, learnable temperature."""

    kind = "vision-language"
    Config = CLIPConfig
    pretrain_datasets = ("ctrate",)
    reference = (
        "Hamamci et al., Developing Generalist Foundation Models from a Multimodal Dataset for "
        "3D Computed Tomography (CT-CLIP), arXiv 2403.17834, 2024"
    )
    # InfoNCE needs negatives: batches of 4 (3 steps per epoch on the twin) instead of SimCroP's 2.
    profiles = {"demo": {**DEMO_RECIPE, "clip.max_text_len": 128, "train.batch_size": 4, "train.epochs": 12}}

    def build_pretraining(self, ctx):
        from simcrop_bench.api import PretrainingParts
        from simcrop_bench.baselines.clip import VolumeReportCLIP
        from simcrop_bench.baselines.data import ctrate_volumes
        from simcrop_bench.simcrop.text import load_text_encoder

        cfg, clip = self.config, self.config.clip
        text_encoder, tokenizer = load_text_encoder(clip.text_encoder_path)
        dataset = ctrate_volumes(
            ctx.data_roots["ctrate"], cfg.encoder, tokenizer=tokenizer, max_len=clip.max_text_len, join=clip.report_join
        )

        def build():
            return VolumeReportCLIP(
                cfg.encoder,
                text_encoder,
                latent_dim=clip.latent_dim,
                init_logit_scale=clip.init_logit_scale,
                text_pool=clip.text_pool,
            )

        return PretrainingParts(build, dataset)

    def pretrain(self, ctx):
        from simcrop_bench.baselines.training import pretrain_and_export
        from simcrop_bench.simcrop.text import text_encoder_identity, text_encoder_record

        identity = text_encoder_identity(self.config.clip.text_encoder_path)
        return pretrain_and_export(self, ctx, record={"text_encoder": text_encoder_record(identity)})
