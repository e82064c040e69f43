"""Patient-level bootstrap intervals and paired comparisons (``protocol.md`` §9). Numpy only.

The unit of resampling is the group (patient, or whatever §9 names for the task), never the row: a
resample draws ``n_groups`` groups with replacement and scores *all* rows of the drawn groups,
duplicates included. Rather than materialising those rows, each row gets an integer weight — the
number of times its group was drawn — and every metric is computed on weighted rows, which is
identical to scoring the repeated rows (``WeightedAuroc`` for AUROC). Resamples are processed in
chunks, so 1000 resamples of 3,009 rows × 18 classes take about a second.

Metric names are the keys :func:`simcrop_bench.stats.metrics.classification_scores` returns (plus ``mean``
for per-case values such as case Dice), so a caller bootstraps whichever metric is primary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from simcrop_bench.stats.metrics import WeightedAuroc

BOOTSTRAP_METRICS = ("auc", "accuracy", "auc_ovr", "mean")
DEFAULT_RESAMPLES = 1000
# A resample of n patients holds about 0.63·n distinct ones: with fewer than this many patients the
# percentile interval is too narrow to trust (2 patients give an interval between their two values).
MIN_INTERVAL_PATIENTS = 10
# Rows × resamples per chunk: keeps every temporary to a few MB (cache-friendly) whatever B is.
_CHUNK_ELEMENTS = 1 << 19


def draw_groups(n_groups: int, n_resamples: int, seed: int) -> np.ndarray:
    """``(n_resamples, n_groups)`` group codes drawn with replacement (one row per resample)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_groups, size=(n_resamples, n_groups))


def encode_groups(groups: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """``(unique_groups, row_codes)``: group code of each row, codes in sorted order of group ids."""
    unique_groups, row_codes = np.unique(np.asarray(groups), return_inverse=True)
    return unique_groups, row_codes.ravel()


def row_weights(drawn_groups: np.ndarray, row_codes: np.ndarray, n_groups: int) -> np.ndarray:
    """``(B, N)`` draw count of each row's group: resample ``b`` holds row ``i`` that many times."""
    n_resamples = drawn_groups.shape[0]
    offsets = (np.arange(n_resamples) * n_groups)[:, None]
    group_counts = np.bincount((drawn_groups + offsets).ravel(), minlength=n_resamples * n_groups)
    return group_counts.reshape(n_resamples, n_groups)[:, row_codes]


def metric_on_weights(
    metric: str,
    y_true: np.ndarray | None,
    scores: np.ndarray,
    *,
    columns: Sequence[int] | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """A function ``weights (B, N) -> (B,)`` computing ``metric`` per row weighting; NaN = undefined.

    * ``auc`` — macro AUROC over the classes defined in that weighting (§8); ``y_true``/``scores``
      (N,) binary or (N, C) multi-label; ``columns`` restricts to those columns (e.g. RadChestCT's 15).
    * ``accuracy`` — ``y_true`` (N,) class ids, ``scores`` probabilities (N, K); argmax == label.
    * ``auc_ovr`` — mean one-vs-rest AUROC over the classes defined in that weighting.
    * ``mean`` — weighted NaN-ignoring mean of per-case ``scores`` (N,); ``y_true`` is ignored.
    """
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"metric must be one of {BOOTSTRAP_METRICS}, got {metric!r}")
    scores = np.asarray(scores, dtype=np.float64)
    if columns is not None and metric != "auc":
        raise ValueError("columns= applies to the multi-label 'auc' metric only")

    if metric == "mean":
        if scores.ndim != 1:
            raise ValueError(f"'mean' takes per-case values (N,), got {scores.shape}")
        defined = ~np.isnan(scores)
        values = np.where(defined, scores, 0.0)

        def weighted_mean(weights: np.ndarray) -> np.ndarray:
            counted = weights @ defined.astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(counted > 0, (weights @ values) / counted, np.nan)

        return weighted_mean

    if y_true is None:
        raise ValueError(f"{metric!r} needs y_true")
    y_true = np.asarray(y_true)
    auroc = class_auroc(metric, y_true, scores, columns=columns)
    if auroc is not None:
        return lambda weights: _nan_mean_rows(auroc(weights))
    if metric == "accuracy":
        correct = (scores.argmax(axis=1) == y_true).astype(np.float64)
        return lambda weights: (weights @ correct) / weights.sum(axis=1)
    raise AssertionError(metric)


def class_auroc(
    metric: str, y_true: np.ndarray, scores: np.ndarray, *, columns: Sequence[int] | None = None
) -> WeightedAuroc | None:
    """The per-class AUROCs behind a macro ``auc`` / ``auc_ovr`` (None for other metrics)."""
    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    if metric == "auc":
        if columns is not None:
            y_true, scores = y_true[:, list(columns)], scores[:, list(columns)]
        return WeightedAuroc(y_true, scores)
    if metric not in ("accuracy", "auc_ovr"):
        return None
    if scores.ndim != 2 or y_true.shape != (scores.shape[0],):
        raise ValueError(
            f"{metric!r}: y_true must be (N,) class ids and scores (N, K); got {y_true.shape}, {scores.shape}"
        )
    if metric == "accuracy":
        return None
    return WeightedAuroc(np.eye(scores.shape[1], dtype=np.int64)[y_true], scores)


def undefined_counts(per_class: np.ndarray) -> dict:
    """Resamples where the macro mean lost some (not all) classes, and per class how often it was undefined.

    ``per_class`` is ``(B, C)`` with NaN where a class had no positive or no negative in the resample.
    """
    undefined = np.isnan(per_class)
    partial = undefined.any(axis=1) & ~undefined.all(axis=1)
    by_class = undefined.sum(axis=0)
    return {
        "n_partially_undefined": int(partial.sum()),
        "undefined_by_class": {str(c): int(n) for c, n in enumerate(by_class) if n},
    }


def few_patients_warning(n_groups: int) -> str | None:
    """The warning an interval from fewer than :data:`MIN_INTERVAL_PATIENTS` patients carries."""
    if n_groups >= MIN_INTERVAL_PATIENTS:
        return None
    return (
        f"interval from {n_groups} patient(s), fewer than {MIN_INTERVAL_PATIENTS}: "
        "a percentile bootstrap this small undercovers; read it as rough"
    )


def _nan_mean_rows(values: np.ndarray) -> np.ndarray:
    """Row-wise mean over defined entries (macro over defined classes); NaN for an all-NaN row."""
    defined = ~np.isnan(values)
    n_defined = defined.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_defined > 0, np.where(defined, values, 0.0).sum(axis=1) / n_defined, np.nan)


def resampled_values(
    compute: Callable[[np.ndarray], np.ndarray], row_codes: np.ndarray, drawn_groups: np.ndarray, n_groups: int
) -> np.ndarray:
    """``(B,)`` metric of every resample, chunked over resamples."""
    chunk = max(1, _CHUNK_ELEMENTS // max(1, len(row_codes)))
    parts = [
        compute(row_weights(drawn_groups[start : start + chunk], row_codes, n_groups))
        for start in range(0, drawn_groups.shape[0], chunk)
    ]
    return np.concatenate(parts) if parts else np.empty(0)


def _prepare_groups(groups: Sequence, n_rows: int) -> tuple[np.ndarray, int]:
    unique_groups, row_codes = encode_groups(groups)
    if len(row_codes) != n_rows:
        raise ValueError(f"{len(row_codes)} group ids for {n_rows} rows")
    return row_codes, len(unique_groups)


def bootstrap_distribution(
    metric: str,
    y_true: np.ndarray | None,
    scores: np.ndarray,
    groups: Sequence,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    columns: Sequence[int] | None = None,
) -> np.ndarray:
    """``(n_resamples,)`` metric of each group resample (NaN where undefined); draws from :func:`draw_groups`."""
    scores = np.asarray(scores)
    row_codes, n_groups = _prepare_groups(groups, scores.shape[0])
    compute = metric_on_weights(metric, y_true, scores, columns=columns)
    return resampled_values(compute, row_codes, draw_groups(n_groups, n_resamples, seed), n_groups)


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float, int]:
    """Percentile interval of the defined values, and how many were undefined (dropped)."""
    defined = values[~np.isnan(values)]
    if not defined.size:
        return float("nan"), float("nan"), int(values.size)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(defined, [tail, 1.0 - tail])
    return float(low), float(high), int(values.size - defined.size)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def bootstrap_interval(
    metric: str,
    y_true: np.ndarray | None,
    scores: np.ndarray,
    groups: Sequence,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
    columns: Sequence[int] | None = None,
) -> dict:
    """Group-bootstrap percentile interval of ``metric`` (§9); see :func:`metric_on_weights` for metrics.

    Returns ``metric``, ``estimate`` (on the full set), ``low``, ``high``, ``n_resamples``, ``seed``,
    ``level``, ``n_groups``, ``unit`` ("group"), ``n_undefined`` (resamples where the metric was
    undefined, e.g. no positive drawn; dropped before taking percentiles) and ``warning`` (None, or
    why the interval is not to be trusted: fewer than :data:`MIN_INTERVAL_PATIENTS` patients). Macro
    AUROCs add ``n_partially_undefined`` (resamples whose mean lost some classes) and
    ``undefined_by_class`` (class column -> resamples where it was undefined), see :func:`undefined_counts`.
    """
    _check_level(level)
    scores = np.asarray(scores)
    row_codes, n_groups = _prepare_groups(groups, scores.shape[0])
    compute = metric_on_weights(metric, y_true, scores, columns=columns)
    estimate = compute(np.ones((1, len(row_codes)), dtype=np.int64))[0]
    drawn = draw_groups(n_groups, n_resamples, seed)
    auroc = class_auroc(metric, y_true, scores, columns=columns) if y_true is not None else None
    extra = {}
    if auroc is not None:
        per_class = resampled_values(auroc, row_codes, drawn, n_groups)
        values = _nan_mean_rows(per_class)
        extra = undefined_counts(per_class)
    else:
        values = resampled_values(compute, row_codes, drawn, n_groups)
    low, high, n_undefined = percentile_interval(values, level)
    return {
        "metric": metric,
        "estimate": float(estimate),
        "low": low,
        "high": high,
        "n_resamples": int(n_resamples),
        "seed": int(seed),
        "level": float(level),
        "n_groups": int(n_groups),
        "unit": "group",
        "n_undefined": n_undefined,
        **extra,
        "warning": few_patients_warning(n_groups),
    }


def paired_bootstrap(
    metric: str,
    y_true: np.ndarray | None,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    groups: Sequence,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
    columns: Sequence[int] | None = None,
) -> dict:
    """Paired group bootstrap of ``metric(a) − metric(b)`` on one test set (§9).

    Both methods are scored on the same resampled groups. Returns ``diff`` (on the full set), ``low``
    and ``high`` (percentile interval of the resampled differences), ``p_le_0`` (fraction of defined
    resamples with difference ≤ 0) and the bookkeeping keys of :func:`bootstrap_interval`.
    """
    _check_level(level)
    scores_a, scores_b = np.asarray(scores_a), np.asarray(scores_b)
    if scores_a.shape != scores_b.shape:
        raise ValueError(f"paired scores differ in shape: {scores_a.shape} vs {scores_b.shape}")
    row_codes, n_groups = _prepare_groups(groups, scores_a.shape[0])
    compute_a = metric_on_weights(metric, y_true, scores_a, columns=columns)
    compute_b = metric_on_weights(metric, y_true, scores_b, columns=columns)

    def difference(weights: np.ndarray) -> np.ndarray:
        return compute_a(weights) - compute_b(weights)

    diff = difference(np.ones((1, len(row_codes)), dtype=np.int64))[0]
    values = resampled_values(difference, row_codes, draw_groups(n_groups, n_resamples, seed), n_groups)
    low, high, n_undefined = percentile_interval(values, level)
    defined = values[~np.isnan(values)]
    return {
        "metric": metric,
        "diff": float(diff),
        "low": low,
        "high": high,
        "p_le_0": float((defined <= 0).mean()) if defined.size else float("nan"),
        "n_resamples": int(n_resamples),
        "seed": int(seed),
        "level": float(level),
        "n_groups": int(n_groups),
        "unit": "group",
        "n_undefined": n_undefined,
    }


def bench_bootstrap(n_rows: int = 3009, n_classes: int = 18, n_groups: int = 1304, n_resamples: int = 1000) -> float:
    """Time a CT-RATE-sized macro-AUROC bootstrap (§9 target: seconds); prints and returns seconds."""
    rng = np.random.default_rng(0)
    # Every group gets at least one row, the rest spread at random (2–3 volumes per patient on average).
    groups = np.concatenate([np.arange(n_groups), rng.integers(0, n_groups, n_rows - n_groups)])
    labels = (rng.random((n_rows, n_classes)) < rng.uniform(0.03, 0.4, n_classes)).astype(np.int64)
    scores = 1.0 / (1.0 + np.exp(-(1.5 * labels + rng.normal(size=labels.shape))))
    start = time.perf_counter()
    result = bootstrap_interval("auc", labels, scores, groups, n_resamples=n_resamples, seed=0)
    seconds = time.perf_counter() - start
    print(
        f"bootstrap of macro AUROC: {n_resamples} resamples × {n_rows} rows × {n_classes} classes, "
        f"{n_groups} groups: {seconds:.2f} s (interval {result['low']:.4f}–{result['high']:.4f})"
    )
    return seconds


if __name__ == "__main__":
    bench_bootstrap()
