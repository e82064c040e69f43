"""Pretrain a baseline with the shared loop and export its encoder in the released SimCroP format.

A baseline's ``pretrain(ctx)`` is this one call: it takes what the method's ``build_pretraining``
hook returns, trains it with :func:`simcrop_bench.pretraining.loop.pretrain` (the §5.4 recipe,
gradient accumulation, AMP, DDP under a process group, exact resume from ``ctx.workdir``) and writes
``encoder.pth`` with :func:`~simcrop_bench.models.vit3d.export_released`, as SimCroP does.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from simcrop_bench.api import Method, PretrainContext
from simcrop_bench.errors import ConfigError
from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.models.vit3d import export_released
from simcrop_bench.pretraining.config import PretrainConfig
from simcrop_bench.pretraining.loop import pretrain

ENCODER_FILE = "encoder.pth"


def input_metadata(encoder: EncoderConfig) -> dict[str, Any]:
    """What a user of the checkpoint must feed it (stored with the encoder, as SimCroP's)."""
    return {
        "orientation": "RAS",
        "hu_window": [-1000, 1000],
        "scaled_to": [-1, 1],
        "img_size": list(encoder.img_size),
        "patch_size": list(encoder.patch_size),
    }


def pretrain_and_export(method: Method, ctx: PretrainContext, record: dict[str, Any] | None = None) -> Path:
    """Train ``method.build_pretraining(ctx)`` with ``method.config.train`` and export the encoder.

    ``record``: what the pretraining record should state besides the recipe (e.g. the text encoder); the
    baselines start from a random encoder, which is recorded as their initialisation.
    """
    config = method.config
    train: PretrainConfig = config.train
    if train.precision == "fp16" and not ctx.device.startswith("cuda"):
        raise ConfigError("method.train.precision=fp16 needs a CUDA device; on CPU set it to fp32 or bf16")
    parts = method.build_pretraining(ctx)
    # ctx.seed is train.seed when the encoder store calls; check-method passes its own.
    recipe = PretrainConfig(**{**vars(train), "seed": ctx.seed})
    record = {"init": {"kind": "random"}, **(record or {})}
    result = pretrain(
        parts.model_factory, parts.dataset, recipe, ctx.workdir, device=ctx.device, record=record
    ).completed(method.name)
    # "encoder" lets `--method external` rebuild the exact architecture (heads cannot be read off shapes).
    metadata = {
        "method": method.name,
        "reference": method.reference,
        "encoder": asdict(config.encoder),
        "pos_embed_variant": config.encoder.pos_embed,
        "input": input_metadata(config.encoder),
        "seed": ctx.seed,
        "steps": result.step,
        "epochs": result.epoch,
        "recipe": result.recipe,
    }
    path = ctx.workdir / ENCODER_FILE
    torch.save(export_released(result.model, metadata), path)
    return path
