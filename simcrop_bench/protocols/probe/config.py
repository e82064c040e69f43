"""Config of the linear-probe protocol (``protocol.md`` §6); no torch import.

Two protocols share this config:

* ``paper`` (default) — the published recipe: frozen encoder with drop-path active during
  training, random crops and augmentations every step, head trained with AdamW + warm-up/cosine,
  the H8 validation/stopping quirks (§6.4). Selection and test features are extracted once
  (the exact speed-up of §6.6).
* ``cached`` — the fast, explicitly labelled variant ``lp-cached`` (§6.6): training features come
  from one deterministic pass and are cached on disk with the evaluation features; the head
  is trained on them (``head=linear``, the same optimiser, schedule and stopping rules, in numpy)
  or fitted by scikit-learn logistic regression (``head=logreg``). Not comparable to the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class LinearProbeConfig:
    """Linear probing. Defaults are the published recipe; tasks set the per-cell values (§6.5)."""

    probe: Literal["paper", "cached"] = "paper"
    head: Literal["linear", "logreg"] = "linear"  # logreg: cached protocol only
    batch_size: int = 64
    eval_batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 1500
    num_steps: int = 10000
    patience: int = 10
    start_epoch: int = 10  # validation only once the epoch counter exceeds this (§6.4)
    weight_decay: float = 1e-5
    clip_grad_norm: float = 1.0
    drop_path_rate: float = 0.1  # active in the frozen encoder while the head trains (H9)
    head_init_std: float = 2e-5
    amp: bool = True  # fp16 autocast + grad scaler initialised at 2^20; only takes effect on CUDA
    val_fraction: float = 0.10  # heldout protocol: share of training groups held out (§5.3)
    purge_test_patients_from_train: bool = False  # §5.3: drop training/selection rows of test patients
    aggregate: Literal["volume", "scan", "patient"] = "volume"  # §9: score means of probabilities per unit
    logreg_c: float = 1.0  # inverse regularisation of the logistic-regression head
    bootstrap_resamples: int = 1000  # patient-level bootstrap of the test metric (§9)
    bootstrap_seed: int = 0
    num_workers: int = 0
    save_predictions: bool = True

    @property
    def variant(self) -> str:
        """Protocol label written into every record: empty for the published recipe.

        Every departure from it is named (``+``-joined), so a table never mixes it with the recipe.
        """
        parts = []
        if self.probe == "cached":
            parts.append("lp-cached-logreg" if self.head == "logreg" else "lp-cached")
        if self.aggregate != "volume":
            parts.append(f"agg-{self.aggregate}")
        if self.purge_test_patients_from_train:
            parts.append("purged")
        return "+".join(parts)

    def validate(self, patch_size: tuple[int, int, int]) -> None:
        from simcrop_bench.errors import ConfigError

        if self.head == "logreg" and self.probe != "cached":
            raise ConfigError("task.head=logreg needs task.probe=cached (logistic regression fits cached features)")
        for name in ("batch_size", "eval_batch_size", "num_steps", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"task.{name}={getattr(self, name)}: must be at least 1")
        if self.warmup_steps < 0 or self.start_epoch < 0:
            raise ConfigError("task.warmup_steps and task.start_epoch must be non-negative")
        if self.lr <= 0:
            raise ConfigError(f"task.lr={self.lr}: must be positive")
        if self.aggregate not in ("volume", "scan", "patient"):
            raise ConfigError(f"task.aggregate={self.aggregate!r}: must be volume, scan or patient")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"task.val_fraction={self.val_fraction}: must be in (0, 1)")
        if self.bootstrap_resamples < 0:
            raise ConfigError("task.bootstrap_resamples must be non-negative (0 disables the interval)")
