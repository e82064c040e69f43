"""``lung_seg``: LUNA16 lung and trachea segmentation by UNETR fine-tuning.

Dataset: LUNA16 in the SimCroP layout (``images/<uid>.nii.gz``,
``masks_processed/<uid>.nii.gz`` with 1 = left lung, 2 = right lung, 3 = trachea,
``dataset_10.json`` / ``dataset_100.json``); ``protocol.md`` §2.5, §7.
Preprocessing: RAS, 1 mm spacing, HU −1000…1000 → −1…1, foreground crop (HU > 0).
Metric: test Dice, mean over cases of the foreground-class mean (background excluded).
"""

from __future__ import annotations

from simcrop_bench.api import Task
from simcrop_bench.data.splits.published import SPLIT_FILES
from simcrop_bench.protocols.segmentation.config import SegmentationConfig
from simcrop_bench.registry import register_task


@register_task("lung_seg")
class LungSeg(Task):
    """LUNA16 lung + trachea segmentation (UNETR fine-tuning, Dice)."""

    kind = "segmentation"
    dataset = "luna16"
    column_label = "LUNA16 lungs"  # beside luna16_cls's "LUNA16"
    labels = ("background", "left lung", "right lung", "trachea")
    fractions = SPLIT_FILES["lung_seg"].fractions  # those with a published dataset*.json
    metric = "dice"
    higher_is_better = True
    Config = SegmentationConfig

    # protocol.md §7.7: per-fraction epochs and validation interval of the reference run.sh.
    fraction_profiles = {
        ("paper", 10): {"max_epochs": 400, "val_every": 20, "warmup_epochs": 50},
        ("paper", 100): {"max_epochs": 50, "val_every": 5, "warmup_epochs": 50},
    }
    # demo: the same code on the tiny synthetic twin (64×64×32 at its stored spacing).
    profiles = {
        "demo": {
            "roi_size": (64, 64, 32),
            "spacing": None,
            "feature_size": 8,
            "crops_per_volume": 2,
            "max_epochs": 16,
            "warmup_epochs": 2,
            "val_every": 4,
            "lr": 1e-3,
            "validation_cases": 3,
        },
    }

    def run(self, ctx):
        from simcrop_bench.data.luna16 import lung_seg_splits
        from simcrop_bench.protocols.segmentation.finetune import run_segmentation

        splits = lung_seg_splits(
            ctx.data_root,
            ctx.fraction,
            ctx.protocol,
            validation_cases=self.config.validation_cases,
            val_fraction=self.config.val_fraction,
        )
        return run_segmentation(ctx, self.config, splits, self.labels)
