"""``ctrate_cls``: CT-RATE multi-abnormality classification (18 labels) by linear probing.

Dataset: CT-RATE in the SimCroP layout (``{train,valid}_preprocessed/…/<VolumeName>``, RAS, stored at the
probe's spacing), split lists ``train_list{,_10,_1}.csv`` / ``val_list.csv`` / ``test_list.csv``
(``protocol.md`` §2.1, §3, §11). Test = the official validation set (3,009 volumes of 1,304 patients);
in ``legacy`` the selection list is the test list (H1).
Preprocessing: HU −1000…1000 → −1…1, random 80–100 % crop, crop/reflect-pad to 224×224×112 (§6.2).
Metric: macro AUROC over the 18 labels, with a patient-level bootstrap interval (§8–§9).
"""

from __future__ import annotations

from simcrop_bench.data.labels import CTRATE_LABELS
from simcrop_bench.protocols.probe.task import LinearProbeTask, cell
from simcrop_bench.registry import register_task


@register_task("ctrate_cls")
class CTRateCls(LinearProbeTask):
    """CT-RATE 18-label abnormality classification (linear probe, macro AUROC)."""

    dataset = "ctrate"
    labels = CTRATE_LABELS  # the split files' header order (protocol.md §2.1)
    metric = "auc"
    target_kind = "multilabel"
    # protocol.md §6.5 (reference run.sh): batch, lr, warm-up, num_steps, patience, eval batch.
    fraction_profiles = {
        ("paper", 1): cell(32, 1.5e-3, 150, 1000, 10, 64),
        ("paper", 10): cell(64, 3e-3, 1500, 10000, 10, 64),
        ("paper", 100): cell(64, 3e-3, 1500, 10000, 10, 64),
    }
