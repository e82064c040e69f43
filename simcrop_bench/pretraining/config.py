"""The pretraining recipe as a typed config (no torch import: method configs embed it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from simcrop_bench.errors import ConfigError

PAPER_EFFECTIVE_BATCH = 448  # §5.4: 14 per GPU × accumulation 8 × 4 GPUs
PRETRAIN_INFO_FILE = "pretrain_info.json"  # the loop's summary of a finished pretraining (recipe, text encoder, ...)


@dataclass
class PretrainConfig:
    """Recipe of one pretraining run; defaults are the §5.4 values.

    The recipe fixes the *effective* batch (samples per optimizer step over all processes), so that
    the same learning rate sees the same batch on 1 or 4 GPUs: the accumulation is derived from it
    and the number of processes (:func:`accumulation_steps`).
    """

    epochs: int = 200
    batch_size: int = 14  # per process and micro-batch
    effective_batch: int | None = PAPER_EFFECTIVE_BATCH  # None: batch_size × accum_steps × processes
    accum_steps: int | None = None  # None: effective_batch / (batch_size × processes); if both set they must agree
    lr: float = 1.5e-4  # peak, absolute (no batch-size scaling)
    min_lr: float = 0.0
    warmup_epochs: float = 20.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    precision: Literal["fp32", "bf16", "fp16"] = "fp16"  # fp16 needs CUDA
    checkpoint_every: int = 500  # optimizer steps; 0: only at the end and on a stop signal
    snapshot_epochs: tuple[int, ...] = ()  # also keep checkpoint-epochNNNN.pt after these epochs
    seed: int = 42  # + rank
    num_workers: int = -1  # data-loading processes per training process; -1: auto (simcrop_bench.data.loading)
    find_unused_parameters: bool = False  # DDP, for models with conditionally used branches


def accumulation_steps(cfg: PretrainConfig, world_size: int) -> int:
    """Micro-batches per optimizer step on each of ``world_size`` processes; ConfigError when impossible."""
    if cfg.batch_size < 1:
        raise ConfigError(f"method.train.batch_size={cfg.batch_size}: expected at least 1")
    if cfg.effective_batch is None:
        if cfg.accum_steps is None or cfg.accum_steps < 1:
            raise ConfigError(
                f"method.train.accum_steps={cfg.accum_steps}: expected at least 1 "
                "when method.train.effective_batch=None"
            )
        return cfg.accum_steps
    per_step = cfg.batch_size * world_size
    if cfg.effective_batch < 1 or cfg.effective_batch % per_step:
        raise ConfigError(
            f"method.train.effective_batch={cfg.effective_batch} is not a multiple of batch_size {cfg.batch_size} × "
            f"{world_size} process(es) = {per_step}; change method.train.batch_size or the number of processes"
        )
    derived = cfg.effective_batch // per_step
    if cfg.accum_steps is not None and cfg.accum_steps != derived:
        raise ConfigError(
            f"method.train.accum_steps={cfg.accum_steps} contradicts "
            f"method.train.effective_batch={cfg.effective_batch} with batch_size {cfg.batch_size} × "
            f"{world_size} process(es) (which gives {derived}); set one of them"
        )
    return derived


def recipe_summary(cfg: PretrainConfig, world_size: int) -> dict[str, int]:
    """What one optimizer step is made of, as stored in every pretraining record."""
    accum = accumulation_steps(cfg, world_size)
    return {
        "effective_batch": cfg.batch_size * accum * world_size,
        "batch_size": cfg.batch_size,
        "accum_steps": accum,
        "world_size": world_size,
    }


# The CPU-sized recipe of every method's ``demo`` profile, so that the methods compared on the twin
# see the same optimisation budget (the ``paper`` profile uses the §5.4 defaults above for the same reason).
DEMO_RECIPE: dict[str, object] = {
    "train.epochs": 6,
    "train.batch_size": 2,
    "train.effective_batch": None,  # a fixed accumulation: the twin is too small for 448
    "train.accum_steps": 1,
    "train.lr": 5e-4,
    "train.warmup_epochs": 1.0,
    "train.precision": "fp32",
    "train.checkpoint_every": 10,
}
