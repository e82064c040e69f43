"""Tests for the table significance statistics: the paired permutation test, Holm, the old paired bootstrap."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from simcrop_bench.errors import UserError
from simcrop_bench.run.predictions import align, read_per_case
from simcrop_bench.run.records import write_per_case
from simcrop_bench.stats.bootstrap import bootstrap_interval, paired_bootstrap
from simcrop_bench.stats.significance import (
    PairedSeed,
    SeedPredictions,
    bootstrap_difference,
    holm,
    paired_test,
    seed_averaged_interval,
    two_sided_p,
)

N = 40
GROUPS = np.array([f"p{i // 2:02d}" for i in range(N)])  # two volumes per patient
Y = np.array([[i % 2, (i // 2) % 2] for i in range(N)])


def scores(quality: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if quality == "good":
        return 0.2 + 0.6 * Y + rng.normal(0, 0.05, Y.shape)
    return rng.random(Y.shape)


def test_holm_hand_computed_example() -> None:
    # sorted: 0.01·3 = 0.03; 0.03·2 = 0.06; 0.04·1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_refuses_p_zero_and_uses_the_floor() -> None:
    # Reproducer: holm([0.0] + [0.5] * 99)[0] was 0.0, significant at any family size.
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        holm([0.0] + [0.5] * 99)
    assert holm([1 / 1001] + [0.5] * 99)[0] == pytest.approx(0.0999, abs=1e-4)  # the honest floor 1/(B+1)


def test_holm_caps_at_one_and_skips_nan() -> None:
    adjusted = holm([0.5, float("nan"), 0.6])
    assert adjusted[0] == pytest.approx(1.0) and adjusted[2] == pytest.approx(1.0)
    assert math.isnan(adjusted[1])
    assert holm([]) == []


def test_two_sided_rule() -> None:
    assert two_sided_p(np.array([0.1, 0.2, 0.3])) == 0.0
    assert two_sided_p(np.zeros(5)) == 1.0
    assert two_sided_p(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(0.5)  # 2 · min(1/4, 3/4)
    assert two_sided_p(np.array([np.nan, 1.0, -1.0])) == pytest.approx(1.0)
    assert math.isnan(two_sided_p(np.array([np.nan])))


def test_identical_predictions_give_p_one() -> None:
    pair = PairedSeed(Y, scores("good"), scores("good"), GROUPS)
    result = bootstrap_difference("auc", [pair, pair], n_resamples=200)
    assert result["diff"] == 0.0 and result["p"] == 1.0


def test_clearly_better_method_is_significant() -> None:
    pairs = [PairedSeed(Y, scores("bad", s), scores("good", s), GROUPS) for s in (1, 2, 3)]
    result = bootstrap_difference("auc", pairs, n_resamples=500)
    assert result["diff"] < -0.3 and result["p"] < 0.01 and result["high"] < 0
    assert result["n_seeds"] == 3


def test_one_seed_equals_statistics_paired_bootstrap() -> None:
    a, b = scores("bad", 1), scores("good", 1)
    ours = bootstrap_difference("auc", [PairedSeed(Y, a, b, GROUPS)], n_resamples=300, seed=7)
    theirs = paired_bootstrap("auc", Y, a, b, GROUPS, n_resamples=300, seed=7)
    assert ours["diff"] == pytest.approx(theirs["diff"])
    assert (ours["low"], ours["high"]) == pytest.approx((theirs["low"], theirs["high"]))


def test_seeds_are_averaged_per_resample() -> None:
    better = PairedSeed(Y, scores("good", 1), scores("bad", 1), GROUPS)
    same = PairedSeed(Y, scores("good", 1), scores("good", 1), GROUPS)
    one = bootstrap_difference("auc", [better], n_resamples=100)
    both = bootstrap_difference("auc", [better, same], n_resamples=100)
    assert both["diff"] == pytest.approx(one["diff"] / 2)
    assert both["low"] == pytest.approx(one["low"] / 2)


def test_seed_averaged_interval_one_seed_matches_bootstrap_interval() -> None:
    dice = np.linspace(0.5, 0.9, N)
    ours = seed_averaged_interval("mean", [SeedPredictions(None, dice, GROUPS)], n_resamples=200, seed=3)
    theirs = bootstrap_interval("mean", None, dice, GROUPS, n_resamples=200, seed=3)
    assert (ours["low"], ours["high"]) == pytest.approx((theirs["low"], theirs["high"]))


def _per_case(path: Path, order=None, cases=None) -> Path:
    order = range(N) if order is None else order
    rows = [
        {
            "case": (cases or [f"c{i:02d}" for i in range(N)])[i],
            "group": GROUPS[i],
            "y:a": int(Y[i, 0]),
            "y:b": int(Y[i, 1]),
            "p:a": 0.1 * Y[i, 0] + 0.01 * i,
            "p:b": 0.5,
        }
        for i in order
    ]
    write_per_case(path, rows)
    return path


def test_align_reorders_rows_by_case(tmp_path: Path) -> None:
    ref = read_per_case(_per_case(tmp_path / "ref.csv"), "auc")
    other = read_per_case(_per_case(tmp_path / "other.csv", order=list(reversed(range(N)))), "auc")
    y, s_other, s_ref, groups = align(ref, other)
    assert np.array_equal(s_other, s_ref)  # the reversed file, put back in the reference's case order
    assert np.array_equal(y, ref.y_true) and list(groups) == list(GROUPS)
    assert not np.array_equal(other.scores, ref.scores)  # ...which it was not in before aligning


def test_misaligned_rows_raise_one_line_user_error(tmp_path: Path) -> None:
    ref = read_per_case(_per_case(tmp_path / "ref.csv"), "auc")
    other_cases = [f"x{i:02d}" if i < 3 else f"c{i:02d}" for i in range(N)]
    other = read_per_case(_per_case(tmp_path / "other.csv", cases=other_cases), "auc")
    with pytest.raises(UserError) as info:
        align(ref, other)
    message = str(info.value)
    assert "rows misaligned" in message and "different test cases" in message and "\n" not in message
    assert "other.csv" in message and "ref.csv" in message


def test_read_per_case_schemas(tmp_path: Path) -> None:
    multiclass = tmp_path / "mc.csv"
    write_per_case(multiclass, [{"case": "a", "group": "g", "label": 2, "p:Normal": 0.1, "p:CP": 0.2, "p:NCP": 0.7}])
    parsed = read_per_case(multiclass, "accuracy")
    assert parsed.y_true.tolist() == [2] and parsed.scores.shape == (1, 3)

    seg = tmp_path / "seg.csv"
    write_per_case(seg, [{"case": "a", "dice": 0.8, "left lung": 0.9}, {"case": "b", "dice": "nan", "left lung": 0.1}])
    parsed = read_per_case(seg, "dice")
    assert parsed.y_true is None and list(parsed.groups) == ["a", "b"] and math.isnan(parsed.scores[1])

    with pytest.raises(UserError, match="missing"):
        read_per_case(tmp_path / "nope.csv", "dice")
    with pytest.raises(UserError, match="no paired test for metric 'hd95'"):
        read_per_case(seg, "hd95")
    bad = tmp_path / "bad.csv"
    write_per_case(bad, [{"case": "a", "group": "g", "y:a": 1, "p:a": "high"}])
    with pytest.raises(UserError, match="bad.csv: malformed value"):
        read_per_case(bad, "auc")


# ----------------------------------------------------------------- the paired permutation test


def accuracy_pair(n: int, a_only: int, both_wrong: int = 0) -> PairedSeed:
    """n patients, one row each, 3 classes: A right and the reference wrong on ``a_only`` patients."""
    y = np.zeros(n, dtype=int)
    right, wrong = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.8, 0.1])
    a = np.tile(right, (n, 1))
    ref = np.tile(right, (n, 1))
    ref[:a_only] = wrong
    a[n - both_wrong :] = ref[n - both_wrong :] = wrong
    return PairedSeed(y, a, ref, np.array([f"p{i}" for i in range(n)]))


def test_five_of_thirty_discordant_is_the_exact_sign_test() -> None:
    # Reproducer: A right on 5 of 30 patients where the reference is wrong, identical elsewhere.
    pair = accuracy_pair(30, 5)
    old = bootstrap_difference("accuracy", [pair], n_resamples=1000, seed=0)
    assert old["p"] < 0.05  # the old test called this significant (p = 0.008)
    new = paired_test("accuracy", [pair])
    assert new["method"] == "exact" and new["n_discordant"] == 5 and new["n_patients"] == 30
    assert new["p"] == pytest.approx(2 * 0.5**5)  # 0.0625, the exact two-sided sign test
    assert new["diff"] == pytest.approx(5 / 30)


def test_four_of_thirty_discordant() -> None:
    new = paired_test("accuracy", [accuracy_pair(30, 4, both_wrong=3)])
    assert new["n_discordant"] == 4 and new["p"] == pytest.approx(2 * 0.5**4)  # 0.125


def test_identical_methods_give_p_one_without_flips() -> None:
    pair = PairedSeed(Y, scores("good"), scores("good"), GROUPS)
    result = paired_test("auc", [pair, pair])
    assert result == {**result, "p": 1.0, "diff": 0.0, "n_discordant": 0, "method": "identical"}


def _swapped_difference(metric, y, a, r, swap_rows):
    """metric(A') − metric(R') with the two methods' scores swapped on ``swap_rows`` (ranks for AUROC)."""
    from scipy.stats import rankdata  # mid-ranks ("average"), independently of the code under test

    from simcrop_bench.stats.metrics import auroc_per_class, nan_macro_mean

    if metric == "auc":
        a = rankdata(a, method="average", axis=0) / len(a)
        r = rankdata(r, method="average", axis=0) / len(r)
        swapped_a, swapped_r = np.where(swap_rows[:, None], r, a), np.where(swap_rows[:, None], a, r)
        return nan_macro_mean(auroc_per_class(y, swapped_a)) - nan_macro_mean(auroc_per_class(y, swapped_r))
    swapped_a, swapped_r = np.where(swap_rows, r, a), np.where(swap_rows, a, r)
    return np.mean(swapped_a) - np.mean(swapped_r)


@pytest.mark.parametrize("metric", ["auc", "mean"])
def test_contributions_are_the_swapped_difference(metric: str) -> None:
    """Σ σ_p w_p equals the difference recomputed after swapping patients, for any swap; Σ w_p = observed."""
    from simcrop_bench.stats.metrics import auroc_per_class, nan_macro_mean
    from simcrop_bench.stats.permutation import patient_contributions

    rng = np.random.default_rng(3)
    n, n_groups = 60, 25
    codes = np.concatenate([np.arange(n_groups), rng.integers(0, n_groups, n - n_groups)])
    if metric == "auc":
        y = (rng.random((n, 4)) < [0.1, 0.3, 0.5, 0.0]).astype(int)  # the last class is undefined
        a, r = np.round(rng.random((n, 4)), 1), rng.random((n, 4)) * 7 - 2  # ties; another calibration
        observed = nan_macro_mean(auroc_per_class(y, a)) - nan_macro_mean(auroc_per_class(y, r))
    else:
        y, a, r = None, rng.random(n), rng.random(n)
        observed = a.mean() - r.mean()
    w = patient_contributions(metric, y, a, r, codes, n_groups)
    assert w.sum() == pytest.approx(observed)
    for _ in range(5):
        swap = rng.random(n_groups) < 0.5
        expected = _swapped_difference(metric, y, a, r, swap[codes])
        assert np.sum(np.where(swap, -w, w)) == pytest.approx(expected)


def test_exact_and_monte_carlo_p_agree_and_monte_carlo_is_floored() -> None:
    from simcrop_bench.stats.permutation import sign_flip_test

    w = np.random.default_rng(0).normal(size=20) + 0.3
    exact = sign_flip_test(w)
    drawn = sign_flip_test(w, exact_up_to=0, n_permutations=40_000, seed=1)
    assert exact["method"] == "exact" and drawn["method"] == "monte carlo"
    assert drawn["p"] == pytest.approx(exact["p"], abs=4 * math.sqrt(exact["p"] * (1 - exact["p"]) / 40_000))
    extreme = sign_flip_test(np.full(40, 1.0), exact_up_to=0, n_permutations=99)
    assert extreme["p"] == pytest.approx(1 / 100)  # never 0: (1 + 0) / (B + 1)
    assert sign_flip_test(np.full(6, 1.0))["p"] == pytest.approx(2 / 64)


def test_nan_scores_raise_one_clear_error() -> None:
    from simcrop_bench.stats.metrics import classification_scores, primary_score

    y = np.array([0, 1, 2, 1])
    probs = np.array([[0.8, 0.1, 0.1], [np.nan, np.nan, np.nan], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    # Reproducer: primary_score('multiclass', ...) returned 0.5 (argmax of the NaN row is class 0).
    for call in (
        lambda: primary_score("multiclass", y, probs),
        lambda: classification_scores("multiclass", y, probs, ["a", "b", "c"]),
        lambda: paired_test("accuracy", [PairedSeed(y, probs, np.nan_to_num(probs), np.arange(4))]),
    ):
        with pytest.raises(ValueError, match="scores must be finite: NaN/inf in row 1"):
            call()
    dice = np.array([0.5, np.nan, 0.7])
    with pytest.raises(ValueError, match="NaN\\) in one run but not the other"):
        paired_test("mean", [PairedSeed(None, dice, np.array([0.5, 0.6, 0.7]), np.arange(3))])
    # Undefined in both runs (no foreground in that case): left out, as the mean leaves it out.
    both = paired_test("mean", [PairedSeed(None, dice, np.array([0.4, np.nan, 0.6]), np.arange(3))])
    assert both["diff"] == pytest.approx(0.1) and both["n_discordant"] == 2


def test_seeds_average_patient_contributions() -> None:
    better = PairedSeed(Y, scores("good", 1), scores("bad", 1), GROUPS)
    same = PairedSeed(Y, scores("good", 1), scores("good", 1), GROUPS)
    one, both = paired_test("auc", [better]), paired_test("auc", [better, same])
    assert both["diff"] == pytest.approx(one["diff"] / 2) and both["n_seeds"] == 2
    assert one["p"] < 0.01 and both["p"] < 0.01


def test_calibration_small_version() -> None:
    """Equal methods over 6 BTCV-sized cases: the exact test's false-positive rate stays ≤ α + 3 s.e.;
    the old bootstrap's exceeds α on the same simulated sets (a broken test fails this bound)."""
    from simcrop_bench.bench.significance import SCENARIOS, calibrate

    dice6 = SCENARIOS[0]
    assert (dice6.metric, dice6.n_patients) == ("mean", 6)
    n = 300
    row = calibrate(dice6, 1, n_simulations=n, alpha=0.05, power=False)
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / n)
    assert row.fpr["after"] <= bound
    assert row.fpr["before"] > 0.05  # the old test, anti-conservative at n = 6
    # With one seed and 6 patients the exact test rejects only when all 6 signs agree: ≤ 2/64.
    assert row.fpr["after"] <= 2 / 64 + 3 * math.sqrt((2 / 64) * (62 / 64) / n)


def test_interval_counts_partially_undefined_resamples_per_class_and_warns_under_ten_patients() -> None:
    from simcrop_bench.stats.bootstrap import draw_groups

    n = 8  # one row per patient; column 1 has a single positive, so most resamples lose it
    y = np.array([[i % 2, int(i == 0)] for i in range(n)])
    probs = np.random.default_rng(0).random((n, 2))
    result = bootstrap_interval("auc", y, probs, np.arange(n), n_resamples=300, seed=5)
    drawn = draw_groups(n, 300, 5)  # the same draws: count by hand which classes each resample lost
    lost = np.stack([[len(set(y[row, c])) < 2 for c in range(2)] for row in drawn])
    partial = lost.any(axis=1) & ~lost.all(axis=1)
    assert result["n_partially_undefined"] == partial.sum() > 50  # about (7/8)^8 = 34 % of resamples
    assert result["undefined_by_class"] == {str(c): int(k) for c, k in enumerate(lost.sum(axis=0)) if k}
    assert result["n_undefined"] == lost.all(axis=1).sum()
    assert result["warning"].startswith("interval from 8 patient(s), fewer than 10")
    assert bootstrap_interval("mean", None, np.linspace(0, 1, 12), np.arange(12), n_resamples=50)["warning"] is None
