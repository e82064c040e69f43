"""``mae``: masked autoencoder (He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022).

75 % of the patch tokens are removed, the shared 3D ViT encodes the visible 25 %, a light decoder
rebuilds every patch and the loss is the mean squared error over the voxels of the masked patches
(against per-patch normalised targets by default, MAE's ``norm_pix_loss``). Pretrained on the
CT-RATE training volumes with SimCroP's augmentation and recipe. Model: ``simcrop_bench.baselines.mae``.

Differs from the publication: a 3D ViT on CT volumes, and the decoder is SimCroP's (4 blocks at the
encoder's width, 16 heads) instead of MAE's 8 × 512, so that MAE and SimCroP's image branch are the
same network and only the text objectives separate them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simcrop_bench.api import Method, MethodConfig
from simcrop_bench.pretraining.config import DEMO_RECIPE, PretrainConfig
from simcrop_bench.registry import register_method


@dataclass
class MAESettings:
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True  # per-patch normalised targets; false: raw voxels, as SimCroP's MIM
    decoder_dim: int | None = None  # None: the encoder's width
    decoder_depth: int = 4
    decoder_heads: int = 16


@dataclass
class MAEConfig(MethodConfig):
    mae: MAESettings = field(default_factory=MAESettings)
    train: PretrainConfig = field(default_factory=PretrainConfig)  # §5.4 recipe; batch_size is per process


@register_method("mae")
class MAE(Method):
    """MAE: 75 % patch masking, encoder on visible patches, light decoder, MSE on masked patches."""

    kind = "self-supervised"
    Config = MAEConfig
    pretrain_datasets = ("ctrate",)
    reference = "He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022"
    profiles = {"demo": {"mae.decoder_depth": 1, "mae.decoder_heads": 4, **DEMO_RECIPE}}

    def build_pretraining(self, ctx):
        from simcrop_bench.api import PretrainingParts
        from simcrop_bench.baselines.data import ctrate_volumes
        from simcrop_bench.baselines.mae import MaskedAutoencoder

        cfg = self.config
        dataset = ctrate_volumes(ctx.data_roots["ctrate"], cfg.encoder)
        return PretrainingParts(lambda: MaskedAutoencoder(cfg.encoder, **vars(cfg.mae)), dataset)

    def pretrain(self, ctx):
        from simcrop_bench.baselines.training import pretrain_and_export

        return pretrain_and_export(self, ctx)
