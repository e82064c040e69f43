"""Group (patient) bootstrap of protocol.md §9, checked against a naive loop over materialised resamples."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from simcrop_bench.stats import bootstrap as statistics
from simcrop_bench.stats.bootstrap import (
    bench_bootstrap,
    bootstrap_distribution,
    bootstrap_interval,
    draw_groups,
    encode_groups,
    paired_bootstrap,
)
from simcrop_bench.stats.metrics import classification_scores


def grouped_rows(n_groups, seed=0):
    """Group ids of 2–3 rows per group (volumes sharing a patient), shuffled so groups are not contiguous."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"patient{g:03d}" for g in range(n_groups)], rng.integers(2, 4, n_groups))
    return groups[rng.permutation(len(groups))]


def multilabel_data(groups, n_classes=5, seed=0):
    """Labels shared inside a group (as reconstructions of one scan); class 4 is rare so some resamples lack it."""
    rng = np.random.default_rng(seed)
    _, codes = encode_groups(groups)
    n_groups = codes.max() + 1
    group_labels = (rng.random((n_groups, n_classes)) < [0.4, 0.3, 0.2, 0.5, 0.0]).astype(int)
    group_labels[:2, 4] = 1  # two positive patients only
    y = group_labels[codes]
    scores = np.round(1 / (1 + np.exp(-(y + rng.normal(size=y.shape)))), 2)  # rounding adds ties
    return y, scores


def naive_resample_values(metric, y, scores, groups, n_resamples, seed):
    """Reference: materialise every resample (all rows of each drawn group, duplicates included) and score it."""
    unique_groups, codes = encode_groups(groups)
    rows_of_group = [np.flatnonzero(codes == g) for g in range(len(unique_groups))]
    values = []
    for drawn in draw_groups(len(unique_groups), n_resamples, seed):
        rows = np.concatenate([rows_of_group[g] for g in drawn])
        values.append(naive_metric(metric, None if y is None else y[rows], scores[rows]))
    return np.array(values)


def naive_metric(metric, y, scores):
    if metric == "mean":
        return np.nanmean(scores) if np.isfinite(scores).any() else np.nan
    if metric == "accuracy":
        return np.mean(scores.argmax(axis=1) == y)
    if metric == "auc_ovr":
        y = np.eye(scores.shape[1], dtype=int)[y]
    y, scores = y.reshape(len(y), -1), scores.reshape(len(scores), -1)
    aucs = [roc_auc_score(y[:, c], scores[:, c]) for c in range(y.shape[1]) if len(set(y[:, c])) == 2]
    return np.mean(aucs) if aucs else np.nan


def multiclass_data(groups, seed=0):
    rng = np.random.default_rng(seed)
    _, codes = encode_groups(groups)
    y = rng.integers(0, 3, codes.max() + 1)[codes]
    logits = np.round(rng.normal(size=(len(y), 3)) + np.eye(3)[y], 1)
    return y, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def case_values(groups, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.random(len(groups))
    values[rng.random(len(groups)) < 0.2] = np.nan  # cases where Dice is undefined
    return values


def cases(metric, groups):
    if metric == "auc":
        return multilabel_data(groups)
    if metric == "auc_binary":
        y, scores = multilabel_data(groups)
        return y[:, 4], scores[:, 4]  # rare positives: many resamples are undefined
    if metric in ("accuracy", "auc_ovr"):
        return multiclass_data(groups)
    return None, case_values(groups)


@pytest.mark.parametrize("case", ["auc", "auc_binary", "accuracy", "auc_ovr", "mean"])
def test_weighted_bootstrap_equals_naive_materialised_resamples(case):
    metric = "auc" if case == "auc_binary" else case
    groups = grouped_rows(40)
    y, scores = cases(case, groups)
    ours = bootstrap_distribution(metric, y, scores, groups, n_resamples=40, seed=3)
    naive = naive_resample_values(metric, y, scores, groups, 40, 3)
    np.testing.assert_allclose(ours, naive, rtol=1e-12, atol=1e-15, equal_nan=True)

    result = bootstrap_interval(metric, y, scores, groups, n_resamples=40, seed=3)
    defined = naive[~np.isnan(naive)]
    assert result["n_undefined"] == int(np.isnan(naive).sum())
    assert (result["low"], result["high"]) == pytest.approx(tuple(np.quantile(defined, [0.025, 0.975])), abs=1e-12)
    if case == "auc_binary":
        assert result["n_undefined"] > 0  # the exercise needs some resamples without a positive


def test_chunking_does_not_change_the_resamples(monkeypatch):
    groups = grouped_rows(30)
    y, scores = multilabel_data(groups)
    whole = bootstrap_distribution("auc", y, scores, groups, n_resamples=50, seed=1)
    monkeypatch.setattr(statistics, "_CHUNK_ELEMENTS", 7 * len(groups))  # chunks of 7 resamples
    np.testing.assert_array_equal(bootstrap_distribution("auc", y, scores, groups, n_resamples=50, seed=1), whole)


def test_every_resample_holds_whole_groups(monkeypatch):
    groups = grouped_rows(25)
    unique_groups, codes = encode_groups(groups)
    y, scores = multilabel_data(groups)
    seen = []

    def recording_row_weights(drawn_groups, row_codes, n_groups):
        weights = real_row_weights(drawn_groups, row_codes, n_groups)
        seen.append((drawn_groups.copy(), weights.copy()))
        return weights

    real_row_weights = statistics.row_weights
    monkeypatch.setattr(statistics, "row_weights", recording_row_weights)
    bootstrap_interval("auc", y, scores, groups, n_resamples=20, seed=5)
    weights = np.concatenate([w for _, w in seen])
    drawn = np.concatenate([d for d, _ in seen])
    assert weights.shape == (20, len(groups)) and drawn.shape == (20, len(unique_groups))
    for resample_weights, resample_draws in zip(weights, drawn):
        draw_counts = np.bincount(resample_draws, minlength=len(unique_groups))
        # Each row appears exactly as often as its group was drawn: whole groups, never single rows.
        np.testing.assert_array_equal(resample_weights, draw_counts[codes])
        assert draw_counts.sum() == len(unique_groups)
    assert (weights == 0).any() and (weights > 1).any()  # really resampled with replacement


def test_group_bootstrap_is_wider_than_row_bootstrap_for_correlated_rows():
    # Three identical rows per patient carry the information of one: the interval must reflect 1 row, not 3.
    rng = np.random.default_rng(0)
    n_patients = 300
    groups = np.repeat(np.arange(n_patients), 3)
    values = np.repeat(rng.random(n_patients), 3)
    by_group = bootstrap_interval("mean", None, values, groups, n_resamples=500, seed=0)
    by_row = bootstrap_interval("mean", None, values, np.arange(len(values)), n_resamples=500, seed=0)
    width_ratio = (by_group["high"] - by_group["low"]) / (by_row["high"] - by_row["low"])
    assert 1.4 < width_ratio < 2.2  # √3 ≈ 1.73 in expectation
    assert by_group["n_groups"] == n_patients and by_row["n_groups"] == 3 * n_patients

    labels = np.repeat(rng.integers(0, 2, n_patients), 3)
    scores = np.repeat(rng.random(n_patients), 3) + 0.3 * labels
    auc_group = bootstrap_interval("auc", labels, scores, groups, n_resamples=500, seed=0)
    auc_row = bootstrap_interval("auc", labels, scores, np.arange(len(labels)), n_resamples=500, seed=0)
    assert auc_group["high"] - auc_group["low"] > 1.4 * (auc_row["high"] - auc_row["low"])


def test_bootstrap_is_deterministic_for_a_seed_and_records_it():
    groups = grouped_rows(30)
    y, scores = multilabel_data(groups)
    first = bootstrap_interval("auc", y, scores, groups, n_resamples=100, seed=7)
    assert first == bootstrap_interval("auc", y, scores, groups, n_resamples=100, seed=7)
    other = bootstrap_interval("auc", y, scores, groups, n_resamples=100, seed=8)
    assert (other["low"], other["high"]) != (first["low"], first["high"])
    assert {k: first[k] for k in ("n_resamples", "seed", "level", "n_groups", "unit")} == {
        "n_resamples": 100,
        "seed": 7,
        "level": 0.95,
        "n_groups": 30,
        "unit": "group",
    }
    assert first["low"] <= first["estimate"] <= first["high"]


def test_estimates_match_classification_scores_keys():
    groups = grouped_rows(30)
    y, scores = multilabel_data(groups)
    names = [f"label{c}" for c in range(y.shape[1])]
    expected = classification_scores("multilabel", y, scores, names).metrics["auc"]
    assert bootstrap_interval("auc", y, scores, groups, n_resamples=5)["estimate"] == pytest.approx(expected, abs=1e-12)
    y_class, probabilities = multiclass_data(groups)
    reference = classification_scores("multiclass", y_class, probabilities, ["a", "b", "c"]).metrics
    for metric in ("accuracy", "auc_ovr"):
        estimate = bootstrap_interval(metric, y_class, probabilities, groups, n_resamples=5)["estimate"]
        assert estimate == pytest.approx(reference[metric], abs=1e-12)


def test_columns_equal_slicing_the_arrays():
    groups = grouped_rows(30)
    y, scores = multilabel_data(groups)
    kept = [0, 1, 2, 4]
    with_columns = bootstrap_interval("auc", y, scores, groups, n_resamples=50, columns=kept)
    sliced = bootstrap_interval("auc", y[:, kept], scores[:, kept], groups, n_resamples=50)
    assert with_columns == sliced


def test_paired_bootstrap_of_a_method_against_itself_is_zero():
    groups = grouped_rows(30)
    y, scores = multilabel_data(groups)
    result = paired_bootstrap("auc", y, scores, scores.copy(), groups, n_resamples=200, seed=2)
    assert (result["diff"], result["low"], result["high"], result["p_le_0"]) == (0.0, 0.0, 0.0, 1.0)
    assert result["unit"] == "group" and result["n_resamples"] == 200


def test_paired_bootstrap_uses_the_same_groups_for_both_methods():
    groups = grouped_rows(40)
    y, scores_a = multilabel_data(groups, seed=0)
    scores_b = np.clip(scores_a + np.random.default_rng(9).normal(scale=0.3, size=scores_a.shape), 0, 1)
    result = paired_bootstrap("auc", y, scores_a, scores_b, groups, n_resamples=60, seed=4)
    naive = naive_resample_values("auc", y, scores_a, groups, 60, 4) - naive_resample_values(
        "auc", y, scores_b, groups, 60, 4
    )
    defined = naive[~np.isnan(naive)]
    assert result["diff"] == pytest.approx(
        naive_metric("auc", y, scores_a) - naive_metric("auc", y, scores_b), abs=1e-12
    )
    assert (result["low"], result["high"]) == pytest.approx(tuple(np.quantile(defined, [0.025, 0.975])), abs=1e-12)
    assert result["p_le_0"] == pytest.approx(np.mean(defined <= 0))
    assert result["diff"] > 0 and result["p_le_0"] < 0.25  # the noisier method b is worse


def test_mean_ignores_nan_case_scores():
    groups = grouped_rows(30)
    values = case_values(groups)
    result = bootstrap_interval("mean", None, values, groups, n_resamples=100)
    assert result["estimate"] == pytest.approx(np.nanmean(values))
    assert np.isfinite([result["low"], result["high"]]).all() and result["n_undefined"] == 0
    all_nan = bootstrap_interval("mean", None, np.full(len(groups), np.nan), groups, n_resamples=10)
    assert all_nan["n_undefined"] == 10 and np.isnan(all_nan["low"]) and np.isnan(all_nan["high"])


def test_bad_arguments_are_refused():
    groups = grouped_rows(5)
    y, scores = multilabel_data(groups)
    with pytest.raises(ValueError, match="metric"):
        bootstrap_interval("f1_macro", y, scores, groups)
    with pytest.raises(ValueError, match="group ids"):
        bootstrap_interval("auc", y, scores, groups[:-1])
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval("auc", y, scores, groups, level=95)
    with pytest.raises(ValueError, match="shape"):
        paired_bootstrap("auc", y, scores, scores[:, :2], groups)


def test_bench_bootstrap_runs(capsys):
    seconds = bench_bootstrap(n_rows=60, n_classes=3, n_groups=25, n_resamples=20)
    assert seconds > 0 and "20 resamples" in capsys.readouterr().out
