"""The pretraining recipe as a typed config (no torch import: method configs embed it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class PretrainConfig:
    """Recipe of one pretraining run; defaults are the §5.4 values (per process)."""

    epochs: int = 200
    batch_size: int = 14  # per process
    accum_steps: int = 8
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


# The CPU-sized recipe of every method's ``demo`` profile, so that the methods compared on the twin
# see the same optimisation budget (the ``paper`` profile uses the §5.4 defaults above for the same reason).
DEMO_RECIPE: dict[str, object] = {
    "train.epochs": 6,
    "train.batch_size": 2,
    "train.accum_steps": 1,
    "train.lr": 5e-4,
    "train.warmup_epochs": 1.0,
    "train.precision": "fp32",
    "train.checkpoint_every": 10,
}
