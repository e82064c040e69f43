"""``simmim``: SimMIM (Xie et al., SimMIM: A Simple Framework for Masked Image Modeling, CVPR 2022).

60 % of the patch tokens (in blocks of 2 × 2 × 2 tokens) have their embeddings replaced by a learned
mask token; the shared 3D ViT encodes *all* tokens, a linear head predicts each patch's voxels and
the loss is the L1 error over the voxels of the masked patches only. Pretrained on the CT-RATE
training volumes with SimCroP's augmentation and recipe. Model: ``simcrop_bench.baselines.simmim``.

Differs from the publication: a 3D ViT on CT volumes with 3D mask blocks (2 × 2 × 2 tokens of
16 × 16 × 8 voxels, the analogue of SimMIM's 32-pixel squares on ViT-B/16), and SimCroP's AdamW
recipe (β₂ = 0.95, 200 epochs) instead of SimMIM's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simcrop_bench.api import Method, MethodConfig
from simcrop_bench.pretraining.config import DEMO_RECIPE, PretrainConfig
from simcrop_bench.registry import register_method


@dataclass
class SimMIMSettings:
    mask_ratio: float = 0.6
    mask_block: tuple[int, int, int] = (2, 2, 2)  # tokens per mask block along h, w, d; must divide the grid


@dataclass
class SimMIMConfig(MethodConfig):
    simmim: SimMIMSettings = field(default_factory=SimMIMSettings)
    train: PretrainConfig = field(default_factory=PretrainConfig)  # §5.4 recipe; batch_size is per process


@register_method("simmim")
class SimMIM(Method):
    """SimMIM: mask tokens through the encoder, linear voxel head, L1 on masked voxels."""

    kind = "self-supervised"
    Config = SimMIMConfig
    pretrain_datasets = ("ctrate",)
    reference = "Xie et al., SimMIM: A Simple Framework for Masked Image Modeling, CVPR 2022"
    profiles = {"demo": dict(DEMO_RECIPE)}

    def build_pretraining(self, ctx):
        from simcrop_bench.api import PretrainingParts
        from simcrop_bench.baselines.data import ctrate_volumes
        from simcrop_bench.baselines.simmim import SimMIM as SimMIMModel

        cfg = self.config
        dataset = ctrate_volumes(ctx.data_roots["ctrate"], cfg.encoder)
        return PretrainingParts(lambda: SimMIMModel(cfg.encoder, **vars(cfg.simmim)), dataset)

    def pretrain(self, ctx):
        from simcrop_bench.baselines.training import pretrain_and_export

        return pretrain_and_export(self, ctx)
