"""``luna16_cls``: LUNA16 nodule presence (binary) by linear probing.

Dataset: LUNA16 in the SimCroP layout (``images/<seriesuid>.nii.gz``; ``image_id,label`` split CSVs;
``protocol.md`` §2.4, §3). Label 1 = at least one annotated nodule ≥ 3 mm (inferred, H7). In ``legacy``
the selection list is the test list (H1).
Preprocessing: the stored arrays as they are (no affine, no resampling: the reference's behaviour), then
HU −1000…1000 → −1…1, crops and reflect-padding to the probe input (§6.2).
Metric: AUROC of the single logit's sigmoid, bootstrap over series (§8–§9).
"""

from __future__ import annotations

from simcrop_bench.protocols.probe.task import LinearProbeTask, cell
from simcrop_bench.registry import register_task


@register_task("luna16_cls")
class Luna16Cls(LinearProbeTask):
    """LUNA16 scan-level nodule presence (linear probe, AUROC)."""

    dataset = "luna16"
    labels = ("nodule",)
    metric = "auc"
    target_kind = "binary"
    # images/ keep the MetaImage (LPS) affines for lung_seg's resampling; the reference probe reads the
    # arrays without them, so the probe takes the stored array order as it is.
    stored_ras = False
    fraction_profiles = {
        ("paper", 10): cell(31, 1.5e-3, 20, 200, 200, 64),
        ("paper", 100): cell(32, 1.5e-3, 200, 2000, 20, 128),
    }
