"""Significance of table cells against a reference method: paired permutation test over patients, Holm.

The test (``protocol.md`` §9, applied to a whole table):

1. For one table cell (method A) and the reference method's cell R in the same column, take every
   seed present in both. Per seed, the two runs' saved test predictions are aligned by case
   (:mod:`simcrop_bench.run.predictions`), giving ``(y_true, scores_A, scores_R, groups)``.
2. Per seed, the difference ``metric(A) − metric(R)`` is split into per-patient contributions
   (:func:`simcrop_bench.stats.permutation.patient_contributions`); contributions are averaged over the
   shared seeds, so the statistic is the seed-averaged difference the table shows.
3. Two-sided sign-flip permutation test on those contributions, i.e. the two methods' predictions
   swapped within patients (:func:`simcrop_bench.stats.permutation.sign_flip_test`): exact when few
   patients are discordant, Monte Carlo with ``p = (1 + #exceed) / (B + 1)`` otherwise. Its
   false-positive rate is at most α at every sample size (``simcrop-bench bench significance``,
   ``docs/significance.md``).
4. Holm's step-down correction over all tested comparisons of the table (:func:`holm`); a cell is
   marked when its adjusted p is ≤ α (the statsmodels convention).

:func:`bootstrap_difference` is the paired bootstrap used before (anti-conservative at small n:
13 % false positives at α = 0.05 over 6 cases); it stays for the calibration benchmark's "before"
column and for intervals of the difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simcrop_bench.stats.bootstrap import (
    DEFAULT_RESAMPLES,
    draw_groups,
    encode_groups,
    metric_on_weights,
    percentile_interval,
    resampled_values,
)
from simcrop_bench.stats.permutation import DEFAULT_PERMUTATIONS, patient_contributions, sign_flip_test

TEST_NAME = "paired permutation test over patients (predictions swapped within patients)"
P_RULE = (
    "two-sided: p = #{|T*| ≥ |T|} / 2^d over all sign flips of the d discordant patients (exact), or "
    "(1 + #{|T*| ≥ |T|}) / (B + 1) over B random flips; T = seed-averaged difference"
)


@dataclass(frozen=True)
class PairedSeed:
    """One seed of a comparison: predictions of A and of the reference on the same aligned rows."""

    y_true: np.ndarray | None
    scores_a: np.ndarray
    scores_ref: np.ndarray
    groups: np.ndarray


@dataclass(frozen=True)
class SeedPredictions:
    """One seed of one method: its predictions (for an interval of the seed-averaged metric)."""

    y_true: np.ndarray | None
    scores: np.ndarray
    groups: np.ndarray


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in input order; NaN entries are not counted in the family.

    Sorted ascending, the i-th smallest (i = 0..m−1) becomes ``max_{j≤i} min(1, (m − j) · p_(j))``;
    reject where it is ≤ α. A p-value of 0 is refused: no resampling test can give it (its floor is
    1/(B + 1)), and 0 would pass Holm at any family size.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    invalid = p[~np.isnan(p) & ((p <= 0) | (p > 1))]
    if invalid.size:
        raise ValueError(f"p-values must be in (0, 1], got {invalid[0]!r} (a resampling p is at least 1/(B+1))")
    out = np.full(p.shape, np.nan)
    defined = np.flatnonzero(~np.isnan(p))
    m = len(defined)
    running = 0.0
    for rank, index in enumerate(defined[np.argsort(p[defined], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return [float(v) for v in out]


def two_sided_p(differences: np.ndarray) -> float:
    """``min(1, 2·min(P(d≤0), P(d≥0)))`` over the defined resampled differences; NaN if none."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    if not d.size:
        return float("nan")
    return float(min(1.0, 2.0 * min((d <= 0).mean(), (d >= 0).mean())))


def _union_codes(all_groups: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Group codes of each seed's rows in the sorted union of all groups (one draw serves all seeds)."""
    unique, codes = encode_groups(np.concatenate([np.asarray(g) for g in all_groups]))
    return np.split(codes, np.cumsum([len(g) for g in all_groups])[:-1]), len(unique)


def _seed_average(
    metric: str, items: Sequence[tuple], n_resamples: int, seed: int, columns: Sequence[int] | None
) -> tuple[float, np.ndarray]:
    """(observed, resampled) seed-averaged value; items are (y_true, scores_a, scores_b | None, groups)."""
    if not items:
        raise ValueError("no seeds to combine")
    codes, n_groups = _union_codes([item[3] for item in items])
    drawn = draw_groups(n_groups, n_resamples, seed)
    observed, total = 0.0, np.zeros(n_resamples)
    for (y_true, scores_a, scores_b, _), row_codes in zip(items, codes):
        compute_a = metric_on_weights(metric, y_true, scores_a, columns=columns)
        if scores_b is None:
            compute = compute_a
        else:
            compute_b = metric_on_weights(metric, y_true, scores_b, columns=columns)

            def compute(weights, compute_a=compute_a, compute_b=compute_b):
                return compute_a(weights) - compute_b(weights)

        observed += float(compute(np.ones((1, len(row_codes)), dtype=np.int64))[0])
        total += resampled_values(compute, row_codes, drawn, n_groups)
    return observed / len(items), total / len(items)


def _union_patients(seeds: Sequence[PairedSeed]) -> tuple[list[np.ndarray], int]:
    return _union_codes([np.asarray(s.groups) for s in seeds])


def paired_test(
    metric: str,
    seeds: Sequence[PairedSeed],
    *,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    columns: Sequence[int] | None = None,
) -> dict:
    """Seed-averaged paired permutation test of ``metric(A) − metric(reference)``; see the module docstring.

    Returns ``diff`` (observed, averaged over seeds), ``p`` (two-sided), ``n_patients``,
    ``n_discordant`` (patients on which the two methods' contributions differ), ``method``
    ("exact" / "monte carlo" / "identical"), ``n_flips``, ``n_seeds`` and ``seed``. Raises
    ValueError for NaN scores.
    """
    if not seeds:
        raise ValueError("no seeds to combine")
    codes, n_groups = _union_patients(seeds)
    contributions = np.zeros(n_groups)
    for pair, row_codes in zip(seeds, codes):
        contributions += patient_contributions(
            metric, pair.y_true, pair.scores_a, pair.scores_ref, row_codes, n_groups, columns=columns
        )
    contributions /= len(seeds)
    result = sign_flip_test(contributions, n_permutations=n_permutations, seed=seed)
    return {
        "diff": result["statistic"],
        "p": result["p"],
        "n_patients": n_groups,
        "n_discordant": result["n_discordant"],
        "method": result["method"],
        "n_flips": result["n_flips"],
        "n_seeds": len(seeds),
        "seed": int(seed),
    }


def bootstrap_difference(
    metric: str,
    seeds: Sequence[PairedSeed],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
    columns: Sequence[int] | None = None,
) -> dict:
    """Seed-averaged paired bootstrap of ``metric(A) − metric(reference)`` (the test used before #14).

    The same ``B`` patient resamples serve both methods and every seed; per resample the difference
    is averaged over seeds; ``p = min(1, 2·min(P(d≤0), P(d≥0)))``.

    Returns ``diff`` (observed, averaged over seeds), ``low``/``high`` (percentile interval of the
    resampled differences), ``p`` (two-sided), ``n_seeds``, ``n_resamples``, ``seed``, ``n_undefined``.
    """
    items = [(s.y_true, s.scores_a, s.scores_ref, s.groups) for s in seeds]
    diff, values = _seed_average(metric, items, n_resamples, seed, columns)
    low, high, n_undefined = percentile_interval(values, level)
    return {
        "diff": diff,
        "low": low,
        "high": high,
        "p": two_sided_p(values),
        "n_seeds": len(items),
        "n_resamples": int(n_resamples),
        "seed": int(seed),
        "n_undefined": n_undefined,
    }


def seed_averaged_interval(
    metric: str,
    seeds: Sequence[SeedPredictions],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
    columns: Sequence[int] | None = None,
) -> dict:
    """Patient-bootstrap percentile interval of the metric averaged over seeds (``--cell ci``)."""
    items = [(s.y_true, s.scores, None, s.groups) for s in seeds]
    estimate, values = _seed_average(metric, items, n_resamples, seed, columns)
    low, high, n_undefined = percentile_interval(values, level)
    return {
        "estimate": estimate,
        "low": low,
        "high": high,
        "n_seeds": len(items),
        "n_resamples": int(n_resamples),
        "seed": int(seed),
        "n_undefined": n_undefined,
    }
