"""``btcv_seg``: BTCV abdominal multi-organ segmentation (13 organs) by UNETR fine-tuning.

Dataset: BTCV in the SimCroP/MONAI layout (``imagesTr/btcv_0NN.nii.gz``, ``labelsTr/``, ``dataset.json``
with 24 training and 6 validation cases, no ``testing``; ``protocol.md`` §2.6, §5, §7).
Preprocessing: RAS, 1.5 × 1.5 × 3.0 mm, HU −1000…1000 → −1…1 (the reference's window, not the common
−175…250), foreground crop (HU > 0).
Protocol: ``legacy`` selects on the 6 validation cases and reports them (H2); ``heldout`` trains the fixed
epoch budget and tests the final model on them (``task.val_carve = k`` carves k training cases for
selection instead).
Metric: test Dice, mean over cases of the foreground-class mean (background excluded, H3).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from simcrop_bench.api import Task
from simcrop_bench.data.splits.published import SPLIT_FILES
from simcrop_bench.protocols.segmentation.config import SegmentationConfig
from simcrop_bench.registry import register_task


@dataclass
class BTCVConfig(SegmentationConfig):
    val_carve: int = 0  # heldout: carve k training cases for selection (0: no selection, final epoch)


@register_task("btcv_seg")
class BTCVSeg(Task):
    """BTCV 13-organ abdominal segmentation (UNETR fine-tuning, Dice)."""

    kind = "segmentation"
    dataset = "btcv"
    labels = (
        "background",
        "spleen",
        "right kidney",
        "left kidney",
        "gallbladder",
        "esophagus",
        "liver",
        "stomach",
        "aorta",
        "inferior vena cava",
        "portal and splenic veins",
        "pancreas",
        "right adrenal gland",
        "left adrenal gland",
    )
    fractions = SPLIT_FILES["btcv_seg"].fractions  # those with a published dataset*.json
    metric = "dice"
    higher_is_better = True
    Config = BTCVConfig

    # protocol.md §7.7: spacing, epochs and validation interval of the reference run.sh.
    profiles = {
        "paper": {"spacing": (1.5, 1.5, 3.0), "max_epochs": 2000, "val_every": 50, "warmup_epochs": 50},
        # demo: the same code on the tiny synthetic twin (64×64×32 at its stored spacing).
        "demo": {
            "roi_size": (64, 64, 32),
            "spacing": None,
            "feature_size": 8,
            "crops_per_volume": 2,
            "max_epochs": 12,
            "warmup_epochs": 2,
            "val_every": 4,
            "lr": 1e-3,
        },
    }

    def run(self, ctx):
        from simcrop_bench.data.btcv import btcv_seg_splits
        from simcrop_bench.protocols.segmentation.finetune import run_segmentation

        splits = btcv_seg_splits(ctx.data_root, ctx.protocol, val_carve=self.config.val_carve)
        # Without a selection set (heldout default) the final epoch is tested.
        cfg = dataclasses.replace(self.config, select_on_validation=bool(splits.validation))
        return run_segmentation(ctx, cfg, splits, self.labels)
