"""``data check`` for BTCV in the MONAI/SimCroP layout (``imagesTr/``, ``labelsTr/``, ``dataset.json``)."""

from __future__ import annotations

from pathlib import Path

from simcrop_bench.data.check.root import CheckReport, check_decathlon

ORGAN_LABELS = tuple(range(14))  # 0 background + 13 organs (protocol.md §2.6)


def check_btcv_simcrop(root: Path) -> CheckReport:
    return check_decathlon(
        root, "btcv", ("dataset.json",), ("training", "validation"), ORGAN_LABELS, ("imagesTr", "labelsTr")
    )
