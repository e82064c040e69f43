"""The linear probe's schedule and its validation/stopping controller (``protocol.md`` §6.3–§6.4).

Pure Python and numpy, so that hazard H8 — validation only after epoch ``start_epoch``, ties counting as an
improvement for AUROC tasks, stopping checked only at the end of a pass, a cosine that rises
again after ``num_steps`` — is unit-tested without a model,
and :func:`train_head` drives either head trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from simcrop_bench.protocols.probe.config import LinearProbeConfig
from simcrop_bench.stats.metrics import primary_score


def probe_lr_factor(k: int, warmup: int, total: int) -> float:
    """Learning-rate factor of the k-th optimiser update (k = 1, 2, …), §6.3.

    Periodic beyond ``total``: the reference's cosine rises again (it is back at the peak at
    k = 2·total − warmup) and is reproduced, not clamped.
    """
    if k < warmup:
        return k / warmup
    if total <= warmup:
        return 1.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * (k - warmup) / (total - warmup))))


@dataclass
class ProbeController:
    """Counts steps and epochs, decides when to validate, keeps the best score, decides when to stop.

    Drive it with :meth:`step` after every optimiser update; when it returns True, validate and
    call :meth:`report`. Call :meth:`end_of_pass` after each full pass over the training loader;
    it returns True when training must stop.
    """

    steps_per_epoch: int
    num_steps: int
    patience: int
    start_epoch: int = 10
    ties_improve: bool = True  # multi-label and LUNA16: ``≥``; CC-CCII accuracy: strict ``>``
    step_count: int = 0
    epoch: int = 0
    best: float = 0.0  # the reference starts at 0, so a score of 0 with ties_improve is still kept
    best_step: int | None = None
    down: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def step(self) -> bool:
        """Register one optimiser update; True when a validation is due now."""
        self.step_count += 1
        if self.step_count % self.steps_per_epoch == 0:
            self.epoch += 1
            return self.epoch > self.start_epoch
        return False

    def report(self, score: float) -> bool:
        """Record a validation score; True when it is the new best (save the head then)."""
        improved = score >= self.best if self.ties_improve else score > self.best
        if improved:
            self.best, self.best_step, self.down = score, self.step_count, 0
        else:
            self.down += 1
        self.history.append({"step": self.step_count, "epoch": self.epoch, "score": score, "best": self.best})
        return improved

    def end_of_pass(self) -> bool:
        """Stop after this pass? ``step % num_steps == 0`` or patience exhausted (§6.4)."""
        return self.step_count % self.num_steps == 0 or self.down >= self.patience

    @property
    def max_steps(self) -> int:
        """Steps at which the run stops unless patience ends it first: the first pass end that is a
        multiple of ``num_steps``."""
        return math.lcm(self.steps_per_epoch, self.num_steps)

    @property
    def stop_reason(self) -> str:
        if self.step_count % self.num_steps == 0:
            return "num_steps"
        return "patience" if self.down >= self.patience else "running"


class HeadTrainer(Protocol):
    """What :func:`train_head` drives: the torch trainer of ``paper``, the numpy head of ``lp-cached``."""

    def update(self, features: Any, targets: Any) -> float: ...
    def predict(self, features: Any) -> np.ndarray: ...
    def snapshot(self) -> Any: ...
    def restore(self, state: Any) -> None: ...


def selection_score(kind: str, truth: np.ndarray, probs: np.ndarray) -> float:
    value = primary_score(kind, truth, probs)
    return float(value) if np.isfinite(value) else 0.0  # undefined (one label value): never an improvement


def train_head(
    trainer: HeadTrainer,
    batches: Callable[[], Iterable],
    cfg: LinearProbeConfig,
    *,
    n_train: int,
    kind: str,
    val_features: Any,
    val_truth: np.ndarray,
    bar,
) -> tuple[ProbeController, Any]:
    """The §6.4 loop: passes over the training batches until the controller stops.

    Returns the controller and the snapshot of the best head on the selection set (None: never validated
    or never above the initial 0).
    """
    controller = ProbeController(
        steps_per_epoch=math.ceil(n_train / cfg.batch_size),
        num_steps=cfg.num_steps,
        patience=cfg.patience,
        start_epoch=cfg.start_epoch,
        ties_improve=kind != "multiclass",
    )
    best = None
    # The known upper bound, so that the bar shows a total and an ETA; patience may stop it earlier.
    task = bar.add_task("probe (at most)", total=controller.max_steps, status="")
    while True:
        for features, targets in batches():
            loss = trainer.update(features, targets)
            bar.update(task, advance=1, status=f"step {controller.step_count + 1} loss {loss:.4f}")
            if controller.step():
                if controller.report(selection_score(kind, val_truth, trainer.predict(val_features))):
                    best = trainer.snapshot()
        if controller.end_of_pass():
            break
    bar.remove_task(task)
    return controller, best
