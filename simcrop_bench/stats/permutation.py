"""Paired permutation test over patients: swap the two methods' predictions within a patient.

Under the null hypothesis the two methods are exchangeable on every patient: whichever of the two
produced a patient's predictions, the joint distribution is the same. Swapping the predictions of
any set of patients then leaves the distribution of the data unchanged, so the rank of the observed
difference among the swapped differences is an exact p-value, at every sample size.

Every metric of the paired test is *linear* in the swaps. Write ``σ_p = −1`` when patient ``p`` is
swapped and ``+1`` otherwise; then ``metric(A') − metric(R') = Σ_p σ_p · w_p`` for per-patient
contributions ``w_p`` with ``Σ_p w_p`` = the observed difference:

* ``mean`` (per-case values such as case Dice): ``w_p`` = the patient's share of the mean difference;
* ``accuracy``: ``w_p`` = (correct rows of A − correct rows of R in ``p``) / N;
* ``auc`` / ``auc_ovr``: AUROC is a sum over (positive, negative) pairs of ``H(s_i − s_j)``. A pair
  whose rows belong to patients with signs ``σ_i, σ_j`` contributes
  ``(σ_i + σ_j)/2 · U_ij + (σ_i − σ_j)/2 · V_ij`` with ``U_ij = H(a_i − a_j) − H(r_i − r_j)`` and
  ``V_ij = H(a_i − r_j) − H(r_i − a_j)`` (check the four sign cases), which splits into one term per
  patient. Scores enter as mid-ranks normalised within each method and class (AUROC on ranks is
  AUROC on scores), so two methods with equal ranking but different calibration are exchangeable,
  as in Bandos, Rockette & Gur (2005). Each term is a count read from a histogram of the ranks: O(N)
  after the ranking.

Several training seeds average the contributions over seeds (the same patient is swapped in every
seed), so the tested statistic is the table's seed-averaged difference.

The test is then a sign-flip test on ``w``: two-sided, ``p = #{|Σ σ_p w_p| ≥ |Σ w_p|} / #flips``.
Patients with ``w_p = 0`` (the two methods agree on them) cannot change the statistic: only the
``d`` *discordant* patients are flipped. With ``d ≤ EXACT_UP_TO`` all ``2^d`` flips are enumerated
(meet in the middle: two halves of ``2^(d/2)`` sums); otherwise ``B`` random flips give the Monte
Carlo p ``(1 + #{|T*| ≥ |T|}) / (B + 1)``, never below ``1/(B + 1)`` (Phipson & Smyth 2010).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simcrop_bench.stats.metrics import finite_scores

EXACT_UP_TO = 24  # 2 × 2^12 partial sums: exact enumeration costs milliseconds
DEFAULT_PERMUTATIONS = 10_000
PERMUTATION_METRICS = ("mean", "accuracy", "auc", "auc_ovr")
_CHUNK_ELEMENTS = 1 << 21  # flips × discordant patients per Monte Carlo chunk


def _doubled_midranks(values: np.ndarray) -> np.ndarray:
    """Twice the mid-ranks, as integers in ``2..2N``: ``2·start + count + 1`` for each group of ties."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    return (2 * starts + counts + 1)[inverse.ravel()]


def _wins_table(ref: np.ndarray, size: int) -> np.ndarray:
    """``table[v]`` = #{ref < v} + ½ #{ref = v} for every doubled mid-rank ``v`` < ``size``: one histogram and
    one cumulative sum, so that each row's count is a lookup (no sort, no binary search)."""
    hist = np.bincount(ref, minlength=size)
    return np.cumsum(hist) - hist + 0.5 * hist


def _auroc_contributions(
    labels: np.ndarray, scores_a: np.ndarray, scores_r: np.ndarray, codes: np.ndarray, n_groups: int
) -> np.ndarray:
    """Per-patient contributions to the macro AUROC difference (classes without both labels are skipped)."""
    total, n_defined = np.zeros(n_groups), 0
    size = 2 * len(labels) + 2  # doubled mid-ranks lie in 2..2N
    for c in range(labels.shape[1]):
        positive = labels[:, c].astype(bool)
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if n_pos == 0 or n_neg == 0:
            continue  # undefined for this class (§8): not in the macro mean
        # Ranks within each method: comparisons of ranks are comparisons of scores, ties included.
        a, r = _doubled_midranks(scores_a[:, c]), _doubled_midranks(scores_r[:, c])
        ap, rp, an, rn = a[positive], r[positive], a[~positive], r[~positive]
        neg_a, neg_r, pos_a, pos_r = (_wins_table(x, size) for x in (an, rn, ap, rp))
        # Positive row i: Σ_j over negatives of (U_ij + V_ij) / 2.
        from_pos = (neg_a[ap] - neg_r[rp] + neg_r[ap] - neg_a[rp]) / 2.0
        # Negative row j: Σ_i over positives of (U_ij − V_ij) / 2; H(x_i − y_j) summed over i = n_pos − wins(y_j).
        from_neg = (-pos_a[an] + pos_r[rn] + pos_a[rn] - pos_r[an]) / 2.0  # the n_pos terms cancel
        class_w = np.bincount(codes[positive], from_pos, minlength=n_groups)
        class_w += np.bincount(codes[~positive], from_neg, minlength=n_groups)
        total += class_w / (n_pos * n_neg)
        n_defined += 1
    if not n_defined:
        raise ValueError("AUROC is undefined for every class on this test set (no class has both labels)")
    return total / n_defined


def patient_contributions(
    metric: str,
    y_true: np.ndarray | None,
    scores_a: np.ndarray,
    scores_ref: np.ndarray,
    codes: np.ndarray,
    n_groups: int,
    *,
    columns: Sequence[int] | None = None,
) -> np.ndarray:
    """``(n_groups,)`` contributions ``w_p`` with ``Σ σ_p w_p`` = the swapped difference (module docstring).

    ``codes`` are each row's patient code in ``0..n_groups−1``. Raises ValueError on a NaN score
    (classification) or a per-case value defined in one run and not the other; per-case values
    undefined in both (e.g. Dice of a case without foreground) are left out, as the mean does.
    """
    if metric not in PERMUTATION_METRICS:
        raise ValueError(f"metric must be one of {PERMUTATION_METRICS}, got {metric!r}")
    codes = np.asarray(codes)
    if metric == "mean":
        a, r = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_ref, dtype=np.float64)
        nan_a, nan_r = np.isnan(a), np.isnan(r)
        if (nan_a != nan_r).any():
            row = int(np.flatnonzero(nan_a != nan_r)[0])
            raise ValueError(f"per-case value undefined (NaN) in one run but not the other (row {row})")
        defined = ~nan_a
        if not defined.any():
            raise ValueError("every per-case value is undefined (NaN)")
        share = np.where(defined, a - r, 0.0) / defined.sum()
        return np.bincount(codes, share, minlength=n_groups)
    a, r = finite_scores(metric, scores_a), finite_scores(metric, scores_ref)
    if y_true is None:
        raise ValueError(f"{metric!r} needs y_true")
    y_true = np.asarray(y_true)
    if metric == "accuracy":
        correct = (a.argmax(axis=1) == y_true).astype(np.float64) - (r.argmax(axis=1) == y_true)
        return np.bincount(codes, correct / len(y_true), minlength=n_groups)
    if metric == "auc_ovr":
        labels = np.eye(a.shape[1], dtype=np.int64)[y_true]
    else:
        labels = y_true.reshape(len(y_true), -1)
        a, r = a.reshape(len(y_true), -1), r.reshape(len(y_true), -1)
        if columns is not None:
            labels, a, r = labels[:, list(columns)], a[:, list(columns)], r[:, list(columns)]
    return _auroc_contributions(labels, a, r, codes, n_groups)


def _all_sums(values: np.ndarray) -> np.ndarray:
    """The ``2^k`` sums ``Σ ±values``."""
    k = len(values)
    bits = (np.arange(2**k)[:, None] >> np.arange(k)) & 1
    return (1 - 2 * bits) @ values if k else np.zeros(1)


def sign_flip_test(
    contributions: np.ndarray,
    *,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    exact_up_to: int = EXACT_UP_TO,
) -> dict:
    """Two-sided sign-flip test of ``Σ w_p`` (module docstring).

    Returns ``statistic`` (Σ w), ``p``, ``n_discordant`` (patients with w ≠ 0), ``method``
    ("exact", "monte carlo" or "identical" when no patient is discordant) and ``n_flips``
    (enumerated or drawn).
    """
    w = np.asarray(contributions, dtype=np.float64)
    scale = np.abs(w).sum()
    statistic = float(w.sum())
    # Sums of floats that are equal in exact arithmetic may differ in the last bits: compare with slack.
    tol = 1e-9 * scale
    discordant = w[np.abs(w) > 1e-12 * max(scale, 1e-300)]
    d = len(discordant)
    observed = abs(statistic) - tol
    if d == 0 or observed <= 0:
        return {
            "statistic": statistic,
            "p": 1.0,
            "n_discordant": d,
            "method": "identical" if d == 0 else "exact",
            "n_flips": 2**d if d <= exact_up_to else 0,
        }
    if d <= exact_up_to:
        first, second = _all_sums(discordant[: d // 2]), np.sort(_all_sums(discordant[d // 2 :]))
        # |s1 + s2| ≥ t  ⇔  s2 ≥ t − s1  or  s2 ≤ −t − s1 (disjoint for t > 0).
        upper = len(second) - np.searchsorted(second, observed - first, side="left")
        lower = np.searchsorted(second, -observed - first, side="right")
        count = int(upper.sum() + lower.sum())
        return {"statistic": statistic, "p": count / 2**d, "n_discordant": d, "method": "exact", "n_flips": 2**d}
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // d)
    exceed = 0
    for start in range(0, n_permutations, chunk):
        size = min(chunk, n_permutations - start)
        signs = rng.integers(0, 2, size=(size, d), dtype=np.int8) * 2 - 1
        exceed += int((np.abs(signs @ discordant) >= observed).sum())
    return {
        "statistic": statistic,
        "p": (1 + exceed) / (n_permutations + 1),
        "n_discordant": d,
        "method": "monte carlo",
        "n_flips": int(n_permutations),
    }


def min_discordant(alpha: float) -> int:
    """Fewest discordant patients with which a two-sided sign-flip p can be ≤ ``alpha``: ``2^(1−d) ≤ α``."""
    if not 0 < alpha < 1:
        return 1
    d = 1
    while 2.0 ** (1 - d) > alpha:
        d += 1
    return d
