"""``ccccii_cls``: CC-CCII three-class classification (Normal / CP / NCP) by linear probing.

Dataset: CC-CCII in the SimCroP layout (``images_resized/<scan_id>.nii.gz`` stored (D, H, W), transposed
to (H, W, D) on load; ``img_list,label`` split CSVs; ``protocol.md`` §2.3, §3). Class names are inferred
(H7): metrics use the integer values. In ``legacy`` the selection list is the test list (H1).
Metric: accuracy (argmax), selection keeps strictly better accuracy; macro one-vs-rest AUROC and the
confusion matrix are reported as secondary (§8).
"""

from __future__ import annotations

from simcrop_bench.protocols.probe.task import LinearProbeTask, cell
from simcrop_bench.registry import register_task


@register_task("ccccii_cls")
class CCCCIICls(LinearProbeTask):
    """CC-CCII Normal / CP / NCP classification (linear probe, accuracy)."""

    dataset = "ccccii"
    labels = ("Normal", "CP", "NCP")
    metric = "accuracy"
    target_kind = "multiclass"
    fraction_profiles = {
        ("paper", 1): cell(29, 1.5e-3, 20, 200, 20, 64),
        ("paper", 10): cell(32, 1.5e-3, 150, 2000, 20, 64),
        ("paper", 100): cell(128, 1.5e-3, 200, 2000, 20, 128),
    }
