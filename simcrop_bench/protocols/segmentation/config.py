"""Config of the UNETR fine-tuning protocol (``protocol.md`` §7); no torch import."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SegmentationConfig:
    """UNETR fine-tuning. Defaults are the published recipe; tasks set per-cell values."""

    roi_size: tuple[int, int, int] = (96, 96, 48)
    spacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0)  # None: keep the stored spacing
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    feature_size: int = 16
    skip_blocks: tuple[int, int, int] | None = None  # None: k·depth/4 for k = 1, 2, 3 → (3, 6, 9) for ViT-B
    crops_per_volume: int = 16
    max_epochs: int = 50
    warmup_epochs: int = 50
    val_every: int = 5
    dice_squared_pred: bool = True  # squared terms in the Dice denominator, as the reference
    lr: float = 1e-4
    weight_decay: float = 1e-5
    sw_overlap: float = 0.5
    sw_batch_size: int = 1
    amp: bool = True  # fp16 autocast + grad scaling; only takes effect on CUDA
    validation_cases: int = 26  # heldout protocol: size of the carved selection set
    val_fraction: float = 0.10  # heldout protocol: share of training groups held out
    select_on_validation: bool = True  # False: keep the final epoch (heldout BTCV)
    save_predictions: bool = True
    bootstrap_resamples: int = 1000  # case-level bootstrap of the test Dice (protocol.md §9); 0 disables it
    bootstrap_seed: int = 0
    save_checkpoint: bool = False
    num_workers: int = -1  # training-loader processes; -1: auto (simcrop_bench.data.loading)

    def validate(self, patch_size: tuple[int, int, int]) -> None:
        from simcrop_bench.errors import ConfigError

        if any(r % p for r, p in zip(self.roi_size, patch_size)):
            raise ConfigError(f"task.roi_size {self.roi_size} is not divisible by the patch size {patch_size}")
        if self.max_epochs < 1 or self.val_every < 1:
            raise ConfigError("task.max_epochs and task.val_every must be at least 1")
        if not 0 <= self.warmup_epochs:
            raise ConfigError("task.warmup_epochs must be non-negative")
        if not 0 <= self.sw_overlap < 1:
            raise ConfigError(f"task.sw_overlap={self.sw_overlap}: must be in [0, 1)")
        if self.hu_window[0] >= self.hu_window[1]:
            raise ConfigError(f"task.hu_window={self.hu_window}: lower bound must be below upper bound")
