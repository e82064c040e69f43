"""BTCV in the SimCroP/MONAI layout: ``imagesTr/``, ``labelsTr/``, ``imagesTs/``, ``dataset.json``.

Organ-segmentation splits for both protocols (``protocol.md`` §5.2–5.3). The reference
``dataset.json`` has ``training`` (24 cases) and ``validation`` (6) but no ``testing``:

- ``legacy``: train on ``training``, select on ``validation`` and report on the same cases
  (``selection_on_test`` is true);
- ``heldout``: train on ``training`` for the fixed epoch budget with no selection set, test the final
  checkpoint on the ``validation`` cases; ``val_carve = k`` instead carves k training cases for
  selection (``carve_validation_groups`` with groups = cases, every case eligible).
"""

from __future__ import annotations

from pathlib import Path

from simcrop_bench.data.formats.decathlon import SegSplits, case_id, read_split_json
from simcrop_bench.data.splits.fractions import carve_validation_groups
from simcrop_bench.errors import ConfigError, DataError

SPLIT_FILE = "dataset.json"
PROTOCOLS = ("legacy", "heldout")
TRAIN_NUMBERS = (*range(1, 11), *range(21, 41))  # img0001–0010, img0021–0040
VALIDATION_NUMBERS = tuple(range(35, 41))  # btcv_035–040 in dataset.json
TEST_NUMBERS = tuple(range(61, 81))  # img0061–0080
# Class names of the UNETR/SimCroP dataset.json (protocol.md §2.6).
LABEL_NAMES = {
    "0": "background",
    "1": "spleen",
    "2": "rkid",
    "3": "lkid",
    "4": "gall",
    "5": "eso",
    "6": "liver",
    "7": "sto",
    "8": "aorta",
    "9": "IVC",
    "10": "veins",
    "11": "pancreas",
    "12": "rad",
    "13": "lad",
}


def official_paths(number: int, labelled: bool) -> dict[str, str]:
    if labelled:
        return {
            "image": f"RawData/Training/img/img{number:04d}.nii.gz",
            "label": f"RawData/Training/label/label{number:04d}.nii.gz",
        }
    return {"image": f"RawData/Testing/img/img{number:04d}.nii.gz"}


def simcrop_paths(number: int, labelled: bool) -> dict[str, str]:
    if labelled:
        return {"image": f"imagesTr/btcv_{number:03d}.nii.gz", "label": f"labelsTr/btcv_{number:03d}.nii.gz"}
    return {"image": f"imagesTs/img{number:04d}.nii.gz"}


def btcv_case_id(path: str) -> str:
    """Case id of an ``imagesTr/btcv_0NN.nii.gz`` path: ``btcv_0NN``."""
    return case_id(path)


def btcv_seg_splits(root: Path, protocol: str, *, val_carve: int = 0, seed: int = 42) -> SegSplits:
    """Training, selection (``validation``) and test lists of ``btcv_seg`` for ``protocol``.

    Entries are ``{"image": abs path, "label": abs path}``; every listed file must exist
    (otherwise a :class:`DataError` names it).
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if val_carve < 0:
        raise ConfigError(f"btcv.val_carve must be >= 0, got {val_carve}")
    if val_carve and protocol == "legacy":
        raise ConfigError(
            "btcv.val_carve applies to the heldout protocol only (legacy selects on the validation cases)"
        )
    root = Path(root)
    lists = read_split_json(root, SPLIT_FILE, ("training", "validation"))
    training, reported = lists["training"], lists["validation"]
    if not training or not reported:
        raise DataError(f"{root / SPLIT_FILE}: needs non-empty 'training' and 'validation' lists")
    if protocol == "legacy":
        note = "legacy: dataset.json has no 'testing'; its validation cases are both the selection and the test set"
        return SegSplits(training, reported, list(reported), True, [note])

    if not val_carve:
        note = "heldout: no selection set; the final checkpoint is tested on the dataset.json validation cases"
        return SegSplits(training, [], reported, False, [note])
    ids = [btcv_case_id(c["image"]) for c in training]
    if val_carve >= len(set(ids)):
        raise ConfigError(f"btcv.val_carve = {val_carve} leaves no training case ({len(set(ids))} in {SPLIT_FILE})")
    # val_fraction = k / n gives exactly k groups through the shared algorithm's round(val_fraction * n).
    carved = set(carve_validation_groups(ids, (), val_fraction=val_carve / len(set(ids)), seed=seed))
    validation = [c for c, i in zip(training, ids) if i in carved]  # file order kept (protocol.md §5.3 step 5)
    kept = [c for c, i in zip(training, ids) if i not in carved]
    note = (
        f"heldout: {val_carve} training cases carved for selection (seed {seed}); test = dataset.json validation cases"
    )
    return SegSplits(kept, validation, reported, False, [note])
