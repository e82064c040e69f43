"""Convert the official BTCV download (``RawData/``) into the MONAI/SimCroP layout tasks read.

BTCV volumes are already NIfTI, so conversion is a rename (``img00NN`` → ``btcv_0NN``, as
the UNETR ``dataset_0.json`` and SimCroP's ``dataset.json`` name them) plus the split file:
SimCroP's own ``dataset.json`` when given (``--split-file``, e.g. after ``data splits
import``), otherwise the standard split (validation = cases 35–40, training = the other
labelled cases, test = the unlabelled ones). Copies are atomic and skipped when done.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from simcrop_bench.data.btcv import LABEL_NAMES, SPLIT_FILE, VALIDATION_NUMBERS, official_paths, simcrop_paths
from simcrop_bench.errors import DataError
from simcrop_bench.util.atomic import atomic_path, write_json
from simcrop_bench.util.progress import track

_NUMBER = re.compile(r"img(\d{4})\.nii\.gz$")


def _numbers(folder: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in folder.glob("img*.nii.gz") if (m := _NUMBER.search(p.name)))


def _copy(src: Path, dst: Path) -> bool:
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        return False
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return True


def standard_split(labelled: list[int], unlabelled: list[int]) -> dict:
    """The UNETR/SimCroP split for the cases present: validation 35–40, the rest training."""
    validation = [n for n in labelled if n in VALIDATION_NUMBERS]
    return {
        "description": "BTCV abdominal organs, split of the UNETR dataset_0.json (written by simcrop-bench)",
        "labels": dict(LABEL_NAMES),
        "modality": {"0": "CT"},
        "name": "btcv",
        "tensorImageSize": "3D",
        "test": [simcrop_paths(n, False)["image"] for n in unlabelled],
        "training": [simcrop_paths(n, True) for n in labelled if n not in validation],
        "validation": [simcrop_paths(n, True) for n in validation],
    }


def convert_btcv_official_to_simcrop(src_root: Path, dst_root: Path, *, split_file: Path | None = None) -> dict:
    src_root, dst_root = Path(src_root), Path(dst_root)
    labelled = _numbers(src_root / "RawData" / "Training" / "img")
    unlabelled = _numbers(src_root / "RawData" / "Testing" / "img")
    if not labelled:
        raise DataError(
            f"{src_root / 'RawData/Training/img'}: no img00NN.nii.gz files; expected the official BTCV layout"
        )
    pairs = []
    for number in labelled:
        src, dst = official_paths(number, True), simcrop_paths(number, True)
        if not (src_root / src["label"]).is_file():
            raise DataError(f"{src_root / src['label']}: missing label for {src_root / src['image']}")
        pairs += [(src_root / src[k], dst_root / dst[k]) for k in ("image", "label")]
    pairs += [
        (src_root / official_paths(n, False)["image"], dst_root / simcrop_paths(n, False)["image"]) for n in unlabelled
    ]
    copied = sum(_copy(src, dst) for src, dst in track(pairs, "BTCV → MONAI layout"))
    if split_file is not None:
        if not Path(split_file).is_file():
            raise DataError(f"{split_file}: split file not found")
        _copy(Path(split_file), dst_root / SPLIT_FILE)
    else:
        write_json(dst_root / SPLIT_FILE, standard_split(labelled, unlabelled))
    marker = src_root / "SYNTHETIC.md"
    if marker.is_file():  # a converted twin is still synthetic
        _copy(marker, dst_root / "SYNTHETIC.md")
    return {"cases": len(labelled) + len(unlabelled), "converted": copied, "skipped": len(pairs) - copied}
