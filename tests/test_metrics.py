import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric
from monai.networks.utils import one_hot
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

from simcrop_bench.stats.metrics import (
    WeightedAuroc,
    auroc_per_class,
    case_score,
    classification_scores,
    dice_per_class,
)


def monai_dice(pred, target, num_classes):
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=True)
    p = one_hot(torch.as_tensor(pred)[None, None].long(), num_classes)
    t = one_hot(torch.as_tensor(target)[None, None].long(), num_classes)
    return metric(p, t)[0].numpy()


def test_dice_matches_monai_on_hand_made_masks():
    target = np.zeros((12, 10, 8), dtype=np.uint8)
    target[1:6, 1:5, 1:4] = 1
    target[6:11, 5:9, 2:7] = 2
    pred = target.copy()
    pred[1:3, 1:5, 1:4] = 0  # under-segment class 1
    pred[6:11, 5:9, 7] = 2  # over-segment class 2
    pred[0, 0, 0] = 3  # a false positive of a class absent from the target
    ours = dice_per_class(pred, target, 4)
    theirs = monai_dice(pred, target, 4)
    np.testing.assert_allclose(ours, theirs, equal_nan=True)
    # by hand: class 1 keeps 3 of 5 slabs → 2·36/(60+36)
    assert ours[1] == 2 * 36 / (60 + 36)
    assert np.isnan(ours[3])  # absent from the ground truth → NaN, as MONAI's ignore_empty


def test_dice_random_volumes_match_monai():
    rng = np.random.default_rng(0)
    for _ in range(5):
        target = rng.integers(0, 4, size=(9, 8, 7))
        pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, 4, size=target.shape))
        np.testing.assert_allclose(dice_per_class(pred, target, 4), monai_dice(pred, target, 4), rtol=1e-6)


def test_case_score_excludes_background_and_ignores_nan():
    dice = np.array([0.99, 0.5, np.nan, 0.7])
    assert case_score(dice, include_background=False) == 0.6
    assert case_score(dice, include_background=True) == np.nanmean(dice)


# ---------------------------------------------------------------- classification metrics (protocol.md §8)


def sklearn_auroc_per_class(y, s):
    return np.array([roc_auc_score(y[:, c], s[:, c]) if len(set(y[:, c])) == 2 else np.nan for c in range(y.shape[1])])


def random_multilabel(seed, n=200, c=6, tie_decimals=None):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < rng.uniform(0.05, 0.5, c)).astype(int)
    s = 1 / (1 + np.exp(-(y + rng.normal(size=(n, c)))))
    if tie_decimals is not None:
        s = np.round(s, tie_decimals)
    return y, s


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tie_decimals", [None, 1, 0])
def test_auroc_per_class_equals_sklearn_on_random_and_tie_heavy_data(seed, tie_decimals):
    y, s = random_multilabel(seed, tie_decimals=tie_decimals)
    np.testing.assert_allclose(auroc_per_class(y, s), sklearn_auroc_per_class(y, s), rtol=1e-12, atol=0)


def test_auroc_all_scores_tied_is_one_half_and_one_label_value_is_nan():
    y = np.array([[0, 1], [1, 1], [0, 1], [1, 1]])
    s = np.full((4, 2), 0.3)
    auc = auroc_per_class(y, s)
    assert auc[0] == roc_auc_score(y[:, 0], s[:, 0]) == 0.5
    assert np.isnan(auc[1])  # undefined, never 0.5


def test_weighted_auroc_equals_sklearn_on_repeated_rows():
    # An integer weight w_i must be the same as repeating row i w_i times (zero drops the row).
    y, s = random_multilabel(7, n=80, c=4, tie_decimals=1)
    weights = np.random.default_rng(1).integers(0, 4, size=(5, 80))
    ours = WeightedAuroc(y, s)(weights)
    for b in range(5):
        rows = np.repeat(np.arange(80), weights[b])
        np.testing.assert_allclose(ours[b], sklearn_auroc_per_class(y[rows], s[rows]), rtol=1e-12)


def test_auroc_rejects_non_binary_labels_and_nan_scores():
    with pytest.raises(ValueError, match="0/1"):
        auroc_per_class(np.array([[0], [2]]), np.array([[0.1], [0.2]]))
    with pytest.raises(ValueError, match="finite"):
        auroc_per_class(np.array([[0], [1]]), np.array([[0.1], [np.nan]]))


def test_multilabel_scores_equal_sklearn_and_exclude_undefined_classes():
    y, s = random_multilabel(3, n=150, c=5)
    y[:, 2] = 0  # a class never positive in this set
    names = [f"label{c}" for c in range(5)]
    result = classification_scores("multilabel", y, s, names)
    defined = [0, 1, 3, 4]
    assert result.metrics["auc"] == pytest.approx(
        roc_auc_score(y[:, defined], s[:, defined], average="macro"), abs=1e-12
    )
    assert result.details["auc_excluded"] == ["label2"]
    assert np.isnan(result.per_class["label2"]["auc"]) and result.per_class["label2"]["positives"] == 0
    assert result.per_class["label1"]["positives"] == int(y[:, 1].sum())
    predicted = (s > 0.5).astype(int)
    assert result.metrics["f1_micro"] == pytest.approx(f1_score(y, predicted, average="micro", zero_division=0))
    assert result.metrics["f1_macro"] == pytest.approx(f1_score(y, predicted, average="macro", zero_division=0))


def test_multilabel_columns_drop_a_duplicated_column():
    # RadChestCT: column 3 duplicates column 11; the secondary macro AUROC has 15 columns (§2.2).
    y, s = random_multilabel(5, n=120, c=16)
    y[:, 3] = y[:, 11]
    names = [f"label{c}" for c in range(16)]
    kept = [c for c in range(16) if c != 3]
    full = classification_scores("multilabel", y, s, names)
    fifteen = classification_scores("multilabel", y, s, names, columns=kept)
    assert "label3" not in fifteen.per_class and len(fifteen.per_class) == 15
    assert fifteen.metrics["auc"] == pytest.approx(np.mean([full.per_class[names[c]]["auc"] for c in kept]), abs=1e-12)
    assert fifteen.details["columns"] == kept
    with pytest.raises(ValueError, match="multilabel"):
        classification_scores("binary", y[:, 0], s[:, 0], ["x"], columns=[0])


@pytest.mark.parametrize("shape", ["flat", "column"])
def test_binary_auc_equals_sklearn(shape):
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 90)
    s = np.round(rng.random(90), 2)
    y_in, s_in = (y, s) if shape == "flat" else (y[:, None], s[:, None])
    result = classification_scores("binary", y_in, s_in, ["nodule"])
    assert result.metrics == {"auc": pytest.approx(roc_auc_score(y, s), abs=1e-12)}
    assert result.per_class["nodule"]["positives"] == int(y.sum())


def test_binary_auc_with_one_label_value_is_nan_not_one_half():
    result = classification_scores("binary", np.zeros(10, int), np.linspace(0, 1, 10), ["nodule"])
    assert np.isnan(result.metrics["auc"]) and result.details["auc_excluded"] == ["nodule"]


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_scores_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 120)
    logits = rng.normal(size=(120, 3)) + 1.2 * np.eye(3)[y]
    logits = np.round(logits, 1)  # some ties in the OvR rankings
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    result = classification_scores("multiclass", y, probabilities, ["Normal", "CP", "NCP"])
    predicted = probabilities.argmax(axis=1)
    assert result.metrics["accuracy"] == accuracy_score(y, predicted)
    assert result.metrics["auc_ovr"] == pytest.approx(
        roc_auc_score(y, probabilities, multi_class="ovr", average="macro"), abs=1e-12
    )
    assert result.metrics["f1_macro"] == pytest.approx(f1_score(y, predicted, average="macro"))
    assert result.details["confusion_matrix"] == confusion_matrix(y, predicted, labels=[0, 1, 2]).tolist()
    assert [result.per_class[name]["n"] for name in ("Normal", "CP", "NCP")] == np.bincount(y, minlength=3).tolist()


def test_multiclass_class_absent_from_truth_is_excluded_from_ovr():
    y = np.array([0, 1, 0, 1, 1])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.4, 0.3, 0.3], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]])
    result = classification_scores("multiclass", y, probabilities, ["a", "b", "c"])
    assert result.details["auc_ovr_excluded"] == ["c"]
    expected = np.mean([roc_auc_score(y == k, probabilities[:, k]) for k in (0, 1)])
    assert result.metrics["auc_ovr"] == pytest.approx(expected, abs=1e-12)
    assert result.metrics["accuracy"] == 0.8


def test_classification_scores_rejects_bad_input():
    with pytest.raises(ValueError, match="kind"):
        classification_scores("regression", np.zeros(3), np.zeros(3), ["x"])
    with pytest.raises(ValueError, match="label names"):
        classification_scores("multilabel", np.zeros((3, 2), int), np.zeros((3, 2)), ["x"])
    with pytest.raises(ValueError, match="class ids"):
        classification_scores("multiclass", np.array([0, 3]), np.full((2, 3), 1 / 3), ["a", "b", "c"])


@pytest.mark.parametrize("kind", ["multilabel", "binary", "multiclass"])
def test_primary_score_equals_the_full_scores_primary_metric(kind):
    from simcrop_bench.stats.metrics import primary_score

    rng = np.random.default_rng(7)
    if kind == "multiclass":
        y = rng.integers(0, 3, 40)
        s = rng.dirichlet(np.ones(3), 40)
        names, primary = ["a", "b", "c"], "accuracy"
    elif kind == "binary":
        y = rng.integers(0, 2, 40)
        s = rng.random(40)
        names, primary = ["x"], "auc"
    else:
        y = rng.integers(0, 2, (40, 4))
        y[:, 3] = 0  # an undefined class: excluded from both macro means
        s = rng.random((40, 4))
        names, primary = list("abcd"), "auc"
    full = classification_scores(kind, y, s, names).metrics[primary]
    assert primary_score(kind, y, s) == pytest.approx(full, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_f1_equals_sklearn_with_empty_columns_and_unseen_classes(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((30, 5)) < 0.3).astype(int)
    s = rng.random((30, 5))
    y[:, 1], s[:, 1] = 0, 0.1  # never true, never predicted: F1 0 (zero_division=0)
    y[:, 2], s[:, 2] = 0, 0.9  # predicted, never true
    result = classification_scores("multilabel", y, s, list("abcde"))
    predicted = (s > 0.5).astype(int)
    for average in ("micro", "macro"):
        assert result.metrics[f"f1_{average}"] == pytest.approx(
            f1_score(y, predicted, average=average, zero_division=0), abs=1e-12
        )
    labels = rng.integers(0, 2, 25)  # class 2 of 4 never true; class 3 never true nor predicted
    probs = rng.dirichlet(np.ones(4), 25)
    probs[:, 3] = 0.0
    multi = classification_scores("multiclass", labels, probs, list("wxyz"))
    assert multi.metrics["f1_macro"] == pytest.approx(
        f1_score(labels, probs.argmax(1), average="macro", zero_division=0), abs=1e-12
    )
