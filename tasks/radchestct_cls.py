"""``radchestct_cls``: RadChestCT abnormality classification (16 labels) by linear probing.

Dataset: RadChestCT in the SimCroP layout (``images/<NoteAcc_DEID>.nii.gz`` + 16-label split CSVs;
``protocol.md`` §2.2, §3). Selection = the official validation list (disjoint from test).
Hazard H5: column 3 ("Pericardial effusion") equals column 11 ("Pleural effusion") in every published
row, so the 16-label macro AUROC counts pleural effusion twice; ``auc_15`` (without column 3) is
reported next to it, with per-class AUROC.
Metric: macro AUROC over the 16 labels (paper-comparable), bootstrap over volumes (§9).
"""

from __future__ import annotations

from simcrop_bench.data.labels import RADCHESTCT_LABELS
from simcrop_bench.protocols.probe.task import LinearProbeTask, cell
from simcrop_bench.registry import register_task


@register_task("radchestct_cls")
class RadChestCTCls(LinearProbeTask):
    """RadChestCT 16-label abnormality classification (linear probe, macro AUROC; 15-label secondary)."""

    dataset = "radchestct"
    # The published header's typo corrected for display; the columns keep the header's spelling.
    labels = tuple("Hiatal hernia" if name == "Hietal Hernia" else name for name in RADCHESTCT_LABELS)
    label_columns = RADCHESTCT_LABELS  # as the split files spell them ("Hietal Hernia")
    metric = "auc"
    target_kind = "multilabel"
    column_subsets = (("auc_15", tuple(i for i in range(16) if i != 3)),)
    fraction_profiles = {
        ("paper", 10): cell(32, 1.5e-3, 80, 2000, 10, 64),
        ("paper", 100): cell(128, 3e-3, 200, 2000, 10, 128),
    }
