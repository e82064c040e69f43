import numpy as np
import torch
from monai.metrics import DiceMetric
from monai.networks.utils import one_hot

from simcrop_bench.metrics import case_score, dice_per_class


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
