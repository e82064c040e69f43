"""Metrics on saved predictions (``protocol.md`` §8).

Numpy (scikit-learn imported lazily, for F1 only): usable without torch, e.g. by the leaderboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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


# ---------------------------------------------------------------- classification (protocol.md §8)

# Multi-label F1 binarises sigmoid probabilities with ``p > 0.5`` (§8 "threshold 0.5"); only a logit of
# exactly 0 sits on the boundary.
F1_THRESHOLD = 0.5
CLASSIFICATION_KINDS = ("multilabel", "binary", "multiclass")


def _as_binary_labels(y_true: np.ndarray, what: str = "y_true") -> np.ndarray:
    """Labels as int64 0/1; anything else is a caller error, not a value to guess about."""
    labels = np.asarray(y_true)
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{what} must hold only 0/1 labels, found values {np.unique(labels)[:5].tolist()}")
    return labels.astype(np.int64)


class WeightedAuroc:
    """Per-class AUROC of many row weightings of one fixed set of rows (§8 AUROC, §9 bootstrap).

    AUROC is the Mann–Whitney statistic: the fraction of (positive, negative) pairs where the positive
    scores higher, ties counting one half — exactly scikit-learn's ``roc_auc_score`` (average-rank ties).
    Giving row ``i`` an integer weight ``w_i`` is the same as repeating it ``w_i`` times, so a bootstrap
    resample is a weight vector (the draw count of the row's group) and no row is ever copied. Scores
    are sorted once per class here; each call is then a cumulative sum over the sorted rows, in exact
    integer arithmetic up to the final division.
    """

    def __init__(self, y_true: np.ndarray, scores: np.ndarray):
        labels = _as_binary_labels(y_true)
        scores = np.asarray(scores, dtype=np.float64)
        if labels.ndim == 1:
            labels = labels[:, None]
        if scores.ndim == 1:
            scores = scores[:, None]
        if labels.shape != scores.shape or labels.ndim != 2:
            raise ValueError(f"labels {labels.shape} and scores {scores.shape} must both be (N,) or (N, C)")
        if not np.isfinite(scores).all():
            raise ValueError("scores must be finite (AUROC is undefined for NaN/inf scores)")
        self.n_rows, self.n_classes = labels.shape
        self._classes = []
        for c in range(self.n_classes):
            order = np.argsort(scores[:, c], kind="stable")
            sorted_scores = scores[order, c]
            is_positive = labels[order, c].astype(bool)
            # Tie blocks: runs of equal scores. Ties are rare with float probabilities, so the block
            # reduction is only paid for when there are any.
            block_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
            tie_blocks = block_starts if len(block_starts) < self.n_rows else None
            self._classes.append((order, is_positive, tie_blocks))

    def __call__(self, weights: np.ndarray | None = None) -> np.ndarray:
        """``(B, C)`` AUROC for ``weights`` ``(B, N)`` of non-negative integers (``None``: every row once).

        NaN where a weighting leaves a class with no positive or no negative row (§8: undefined, never 0.5).
        """
        if weights is None:
            weights = np.ones((1, self.n_rows), dtype=np.int64)
        weights = np.asarray(weights)
        if weights.ndim != 2 or weights.shape[1] != self.n_rows:
            raise ValueError(f"weights must be (B, {self.n_rows}), got {weights.shape}")
        weights = weights.astype(np.int64, copy=False)
        auroc = np.empty((weights.shape[0], self.n_classes), dtype=np.float64)
        for c, (order, is_positive, tie_blocks) in enumerate(self._classes):
            sorted_weights = weights[:, order]
            positive = np.where(is_positive, sorted_weights, 0)
            negative = sorted_weights - positive
            if tie_blocks is not None:
                positive = np.add.reduceat(positive, tie_blocks, axis=1)
                negative = np.add.reduceat(negative, tie_blocks, axis=1)
            negatives_below = np.cumsum(negative, axis=1) - negative
            # Twice the Mann–Whitney U: 2·(pairs won) + (pairs tied); integers, so exact.
            twice_u = 2 * np.einsum("bi,bi->b", positive, negatives_below)
            if tie_blocks is not None:
                twice_u += np.einsum("bi,bi->b", positive, negative)
            n_positive = positive.sum(axis=1)
            n_negative = negative.sum(axis=1)
            pairs = n_positive * n_negative
            with np.errstate(invalid="ignore", divide="ignore"):
                auroc[:, c] = np.where(pairs > 0, twice_u / (2.0 * pairs), np.nan)
        return auroc


def auroc_per_class(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of every column, ``(C,)`` (``(1,)`` for 1-D input); §8 AUROC (per class).

    Equals scikit-learn's ``roc_auc_score`` column by column; NaN where a column has a single label
    value in this set (§8: undefined; exclude from macro means, never 0.5).
    """
    return WeightedAuroc(y_true, scores)()[0]


def nan_macro_mean(values: np.ndarray) -> float:
    """Unweighted mean over the defined (non-NaN) entries; NaN when none is defined."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def finite_scores(kind: str, scores: np.ndarray) -> np.ndarray:
    """``scores`` as float64, or one ValueError if any is NaN/inf: no metric may guess around them
    (argmax of a NaN row is its first class, a silent 1/K accuracy)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        row = int(np.argwhere(~np.isfinite(scores))[0][0])
        raise ValueError(f"{kind} scores must be finite: NaN/inf in row {row} of the predictions (diverged model?)")
    return scores


def primary_score(kind: str, y_true: np.ndarray, scores: np.ndarray) -> float:
    """The primary metric alone, as :func:`classification_scores` computes it: accuracy (multiclass)
    or macro AUROC. For a probe's model selection, which scores the selection set after every
    epoch and needs nothing else (no F1, no scikit-learn)."""
    scores = finite_scores(kind, scores)
    if kind == "multiclass":
        return float((scores.argmax(axis=1) == np.asarray(y_true).reshape(-1)).mean())
    labels = _as_binary_labels(y_true)
    if kind == "binary":
        labels, scores = labels.reshape(-1, 1), scores.reshape(-1, 1)
    return nan_macro_mean(auroc_per_class(labels, scores))


@dataclass
class ClassificationScores:
    """Scalars for the result record, per-class values for reports, and everything else worth keeping."""

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    details: dict = field(default_factory=dict)


def classification_scores(
    kind: str,
    y_true: np.ndarray,
    scores: np.ndarray,
    label_names: Sequence[str],
    *,
    columns: Sequence[int] | None = None,
) -> ClassificationScores:
    """Metrics of §8 for one classification task's saved predictions.

    * ``multilabel`` — ``y_true`` (N, C) 0/1, ``scores`` sigmoid probabilities (N, C): ``auc`` (macro
      AUROC over the classes defined in this set; excluded names in ``details["auc_excluded"]``),
      ``f1_micro`` and ``f1_macro`` at ``p > 0.5``.
    * ``binary`` — ``y_true`` (N,) or (N, 1), ``scores`` the single logit's sigmoid: ``auc``.
    * ``multiclass`` — ``y_true`` (N,) class ids, ``scores`` softmax probabilities (N, K): ``accuracy``
      (argmax == label), ``auc_ovr`` (mean one-vs-rest AUROC over defined classes, secondary),
      ``f1_macro`` (argmax); ``details["confusion_matrix"]`` with rows = truth, columns = prediction.

    ``columns`` (multilabel only) restricts everything to those label columns, e.g. RadChestCT's
    secondary 15-column macro AUROC without the duplicated column 3 (§2.2); ``label_names`` stays the
    full list.
    """
    if kind not in CLASSIFICATION_KINDS:
        raise ValueError(f"kind must be one of {CLASSIFICATION_KINDS}, got {kind!r}")
    label_names = list(label_names)
    scores = finite_scores(kind, scores)
    if columns is not None:
        if kind != "multilabel":
            raise ValueError("columns= applies to multilabel tasks only")
        columns = list(columns)
        y_true = np.asarray(y_true)[:, columns]
        scores = scores[:, columns]
        label_names = [label_names[c] for c in columns]

    if kind == "multiclass":
        return _multiclass_scores(np.asarray(y_true), scores, label_names)

    labels = _as_binary_labels(y_true)
    if kind == "binary":
        labels, scores = labels.reshape(-1, 1), scores.reshape(-1, 1)
    if labels.ndim != 2 or labels.shape != scores.shape:
        raise ValueError(f"{kind}: y_true {labels.shape} and scores {scores.shape} must have the same (N, C) shape")
    if len(label_names) != labels.shape[1]:
        raise ValueError(f"{len(label_names)} label names for {labels.shape[1]} columns")

    per_class_auc = auroc_per_class(labels, scores)
    excluded = [name for name, auc in zip(label_names, per_class_auc) if np.isnan(auc)]
    metrics = {"auc": nan_macro_mean(per_class_auc)}
    if kind == "multilabel":
        predicted = scores > F1_THRESHOLD
        truth = labels.astype(bool)
        tp, fp, fn = (predicted & truth).sum(0), (predicted & ~truth).sum(0), (~predicted & truth).sum(0)
        metrics["f1_micro"] = float(f1_from_counts(tp.sum(), fp.sum(), fn.sum()))
        metrics["f1_macro"] = float(f1_from_counts(tp, fp, fn).mean())
    per_class = {
        name: {"auc": float(auc), "positives": int(labels[:, c].sum())}
        for c, (name, auc) in enumerate(zip(label_names, per_class_auc))
    }
    details = {"auc_excluded": excluded, "n_rows": int(labels.shape[0])}
    if columns is not None:
        details["columns"] = columns
    return ClassificationScores(metrics=metrics, per_class=per_class, details=details)


def f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 = 2TP / (2TP + FP + FN) per entry; 0 where nothing is predicted or true.

    scikit-learn's ``f1_score(..., zero_division=0)`` (tests pin the equality); computed here because
    importing scikit-learn costs a probe process ~2 s, more than scoring it.
    """
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def _multiclass_scores(y_true: np.ndarray, probabilities: np.ndarray, label_names: list[str]) -> ClassificationScores:
    if probabilities.ndim != 2 or y_true.shape != (probabilities.shape[0],):
        raise ValueError(
            f"multiclass: y_true must be (N,) and scores (N, K); got {y_true.shape}, {probabilities.shape}"
        )
    n_classes = probabilities.shape[1]
    if len(label_names) != n_classes:
        raise ValueError(f"{len(label_names)} label names for {n_classes} classes")
    if not np.issubdtype(y_true.dtype, np.integer) or y_true.min(initial=0) < 0 or y_true.max(initial=0) >= n_classes:
        raise ValueError(f"multiclass: y_true must hold integer class ids in 0..{n_classes - 1}")
    predicted = probabilities.argmax(axis=1)
    confusion = np.bincount(y_true * n_classes + predicted, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )
    hits, true_n, predicted_n = np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)
    seen = (true_n + predicted_n) > 0
    one_vs_rest = np.eye(n_classes, dtype=np.int64)[y_true]
    per_class_auc = auroc_per_class(one_vs_rest, probabilities)
    metrics = {
        "accuracy": float((predicted == y_true).mean()),
        "auc_ovr": nan_macro_mean(per_class_auc),
        # scikit-learn's default label set (classes seen in truth or prediction), as the reference logs it.
        "f1_macro": float(f1_from_counts(hits, predicted_n - hits, true_n - hits)[seen].mean()),
    }
    per_class = {
        name: {"auc_ovr": float(auc), "n": int(confusion[k].sum())}
        for k, (name, auc) in enumerate(zip(label_names, per_class_auc))
    }
    details = {
        "confusion_matrix": confusion.tolist(),
        "auc_ovr_excluded": [name for name, auc in zip(label_names, per_class_auc) if np.isnan(auc)],
        "n_rows": int(y_true.shape[0]),
    }
    return ClassificationScores(metrics=metrics, per_class=per_class, details=details)
