"""Metrics on saved predictions (``protocol.md`` §8). Numpy only: usable without torch."""

from __future__ import annotations

import numpy as np


def dice_per_class(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of every class id 0..C-1 on label maps; NaN where the class is absent from ``target``.

    ``2·|P∩G| / (|P| + |G|)`` from one joint histogram, so a volume is read once
    whatever the number of classes.
    """
    pred = np.asarray(pred).astype(np.int64).ravel()
    target = np.asarray(target).astype(np.int64).ravel()
    if pred.shape != target.shape:
        raise ValueError(f"prediction and target differ in size: {pred.size} vs {target.size}")
    joint = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    confusion = joint.reshape(num_classes, num_classes)  # rows: target, columns: prediction
    intersection = np.diag(confusion).astype(np.float64)
    gt_count = confusion.sum(axis=1).astype(np.float64)
    pred_count = confusion.sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = 2.0 * intersection / (gt_count + pred_count)
    dice[gt_count == 0] = np.nan
    return dice


def case_score(dice: np.ndarray, include_background: bool) -> float:
    """NaN-ignoring mean over classes (background excluded for test scores)."""
    values = dice if include_background else dice[1:]
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
