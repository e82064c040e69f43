"""``simcrop``: Similarity-driven Cross-granularity Pre-training (Wang et al., MICCAI 2025, arXiv 2509.08311).

Masked image + report modelling, similarity-driven alignment of each findings sentence with its
top-K visible patches, and cross-granularity fusion (word–patch cross-attention + a GAP token),
on the shared 3D ViT, pretrained on CT-RATE training volumes and reports
(``simcrop-method.md``). Faithful to the reference by default; ``--set method.simcrop.variant=clean``
switches every quirk of §9 to its clean form. Differs from the publication in the text encoder
by default (the offline MiniLM instead of CXR-BERT; point ``method.simcrop.text_encoder_path``
at a local CXR-BERT directory to match it) and in the initialisation (§2.1: random unless
``method.simcrop.init_encoder`` names a local ImageNet-MAE ViT checkpoint such as ``mae_pretrain_vit_base.pth``,
whose ``blocks.*``/``norm.*`` are loaded; its 2-D patch embedding is skipped, as in the reference).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from simcrop_bench.api import Method, MethodConfig
from simcrop_bench.pretraining.config import DEMO_RECIPE, PretrainConfig
from simcrop_bench.registry import register_method
from simcrop_bench.simcrop.config import SimCroPConfig


@dataclass
class SimCroPMethodConfig(MethodConfig):
    simcrop: SimCroPConfig = field(default_factory=SimCroPConfig)
    train: PretrainConfig = field(default_factory=PretrainConfig)  # batch_size is per process
    processes: int = 1  # data-parallel processes (CPU, gloo); the effective batch is processes × batch × accum


@register_method("simcrop")
class SimCroP(Method):
    """SimCroP: masked image+report modelling, top-K sentence–patch alignment, cross-granularity fusion."""

    kind = "vision-language"
    Config = SimCroPMethodConfig
    pretrain_datasets = ("ctrate",)
    reference = "Wang et al., SimCroP, MICCAI 2025 (arXiv 2509.08311)"
    profiles = {
        # The same objectives at CPU scale: 4×4×4 tokens (16 visible), light decoders, a few epochs.
        "demo": {
            "simcrop.topk": 4,
            "simcrop.vision_decoder_depth": 1,
            "simcrop.vision_decoder_heads": 4,
            "simcrop.text_decoder_layers": 1,
            "simcrop.text_decoder_heads": 4,
            "simcrop.text_decoder_ffn": 192,
            **DEMO_RECIPE,
        },
    }

    def pretrain(self, ctx):
        import torch

        from simcrop_bench.errors import ConfigError
        from simcrop_bench.models.vit3d import export_released
        from simcrop_bench.simcrop.train import pretrain_simcrop

        cfg, train = self.config, self.config.train
        if train.precision == "fp16" and not ctx.device.startswith("cuda"):
            raise ConfigError("method.train.precision=fp16 needs a CUDA device; on CPU set it to fp32 or bf16")
        if cfg.processes > 1 and ctx.device != "cpu":
            raise ConfigError("method.processes > 1 is implemented for CPU (gloo) runs; GPU jobs come with SLURM (#7)")
        # ctx.seed is train.seed when the encoder store calls; check-method passes its own.
        recipe = PretrainConfig(**{**vars(train), "seed": ctx.seed})
        model, summary = pretrain_simcrop(
            cfg.encoder, cfg.simcrop, recipe, ctx.data_roots["ctrate"], ctx.workdir, ctx.device, cfg.processes
        )
        simcrop = cfg.simcrop.resolved()
        metadata = {
            "method": self.name,
            "switches": simcrop.switches(),
            "pos_embed_variant": cfg.encoder.pos_embed,
            "input": {
                "orientation": "RAS",
                "hu_window": [-1000, 1000],
                "scaled_to": [-1, 1],
                "img_size": list(cfg.encoder.img_size),
                "patch_size": list(cfg.encoder.patch_size),
            },
            "seed": ctx.seed,
            **summary,
        }
        if simcrop.init_encoder:
            from simcrop_bench.util.hashing import file_sha256

            metadata["init_encoder"] = {"path": simcrop.init_encoder, "sha256": file_sha256(Path(simcrop.init_encoder))}
        path = ctx.workdir / "encoder.pth"
        torch.save(export_released(model, metadata), path)
        return path

    def build_pretraining(self, ctx):
        """Model factory and dataset exactly as pretraining builds them (for ``check-method``)."""
        from simcrop_bench.api import PretrainingParts
        from simcrop_bench.simcrop.train import pretraining_parts

        build, dataset = pretraining_parts(self.config.encoder, self.config.simcrop, ctx.data_roots["ctrate"])
        return PretrainingParts(build, dataset)


# Ablations of simcrop-method.md §7 as registered variants: each changes only what it names.


@register_method("simcrop-noalign")
class SimCroPNoAlignment(SimCroP):
    """SimCroP ablation without similarity-driven alignment (MIM + MLM with fusion)."""

    variant_overrides = {"simcrop.alignment": "off"}


@register_method("simcrop-nofusion")
class SimCroPNoFusion(SimCroP):
    """SimCroP ablation without fusion: no word–patch cross-attention, no GAP token (text-only MLM)."""

    variant_overrides = {"simcrop.fusion": "none"}


def _topk_variant(k: int) -> type:
    variant = type(
        f"SimCroPTop{k}",
        (SimCroP,),
        {
            "__doc__": f"SimCroP ablation with K = {k} patches per sentence (simcrop uses 32).",
            "variant_overrides": {"simcrop.topk": k},
        },
    )
    return register_method(f"simcrop-k{k}")(variant)


SimCroPTop8, SimCroPTop16, SimCroPTop64 = (_topk_variant(k) for k in (8, 16, 64))
