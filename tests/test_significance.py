"""Tests for the table significance statistics: Holm, the two-sided rule, seed-averaged paired bootstrap."""

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
    holm,
    paired_difference,
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
    result = paired_difference("auc", [pair, pair], n_resamples=200)
    assert result["diff"] == 0.0 and result["p"] == 1.0


def test_clearly_better_method_is_significant() -> None:
    pairs = [PairedSeed(Y, scores("bad", s), scores("good", s), GROUPS) for s in (1, 2, 3)]
    result = paired_difference("auc", pairs, n_resamples=500)
    assert result["diff"] < -0.3 and result["p"] < 0.01 and result["high"] < 0
    assert result["n_seeds"] == 3


def test_one_seed_equals_statistics_paired_bootstrap() -> None:
    a, b = scores("bad", 1), scores("good", 1)
    ours = paired_difference("auc", [PairedSeed(Y, a, b, GROUPS)], n_resamples=300, seed=7)
    theirs = paired_bootstrap("auc", Y, a, b, GROUPS, n_resamples=300, seed=7)
    assert ours["diff"] == pytest.approx(theirs["diff"])
    assert (ours["low"], ours["high"]) == pytest.approx((theirs["low"], theirs["high"]))


def test_seeds_are_averaged_per_resample() -> None:
    better = PairedSeed(Y, scores("good", 1), scores("bad", 1), GROUPS)
    same = PairedSeed(Y, scores("good", 1), scores("good", 1), GROUPS)
    one = paired_difference("auc", [better], n_resamples=100)
    both = paired_difference("auc", [better, same], n_resamples=100)
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
