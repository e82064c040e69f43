"""LUNA16 in the SimCroP layout: ``images/``, ``masks_processed/``, ``dataset_{10,100}.json``.

Lung-segmentation splits for both protocols (``protocol.md`` §5):
``legacy`` takes the JSON lists as published (selection cases are a subset of the
test cases); ``heldout`` carves the selection cases from the 100 % training list
instead, so that no test case influences model selection.
"""

from __future__ import annotations

from pathlib import Path

from simcrop_bench.data.formats.decathlon import SegSplits, case_id, read_split_json
from simcrop_bench.data.splits.fractions import carve_validation_groups
from simcrop_bench.errors import DataError

SEG_SPLIT_FILES = {10: "dataset_10.json", 100: "dataset_100.json"}


def series_uid(path: str) -> str:
    """Series UID of an ``images/<uid>.nii.gz`` path (UIDs contain dots: strip by suffix)."""
    return case_id(path)


def lung_seg_splits(
    root: Path, fraction: int, protocol: str, *, validation_cases: int, val_fraction: float, seed: int = 42
) -> SegSplits:
    if fraction not in SEG_SPLIT_FILES:
        raise DataError(f"lung_seg has split files for fractions {sorted(SEG_SPLIT_FILES)}, not {fraction}")
    keys = ("training", "validation", "testing")
    lists = read_split_json(root, SEG_SPLIT_FILES[fraction], keys)
    if protocol == "legacy":
        test_ids = {series_uid(c["image"]) for c in lists["testing"]}
        overlap = any(series_uid(c["image"]) in test_ids for c in lists["validation"])
        return SegSplits(lists["training"], lists["validation"], lists["testing"], overlap, [])

    # heldout: groups are series UIDs of the 100 % training list; the 10 % cases stay in training.
    full = read_split_json(root, SEG_SPLIT_FILES[100], ("training",))["training"]
    ten = (
        read_split_json(root, SEG_SPLIT_FILES[10], ("training",))["training"]
        if (root / SEG_SPLIT_FILES[10]).is_file()
        else []
    )
    val_groups = carve_validation_groups(
        [series_uid(c["image"]) for c in full],
        [series_uid(c["image"]) for c in ten],
        val_fraction=val_fraction,
        seed=seed,
    )
    by_uid = {series_uid(c["image"]): c for c in full}
    validation = [by_uid[g] for g in val_groups][:validation_cases]
    held = set(val_groups)
    training = [c for c in lists["training"] if series_uid(c["image"]) not in held]
    notes = [
        "heldout validation carved from dataset_100.json training (groups = series UIDs); "
        "the luna16_cls carve over train_list.csv can differ by the one scan missing from the JSON"
    ]
    if not validation:
        raise DataError(f"{root}: too few training cases to carve a held-out validation set")
    return SegSplits(training, validation, lists["testing"], False, notes)
