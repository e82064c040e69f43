"""``data check`` for the classification stores SimCroP reads: split CSVs plus one volume per id.

Classification readers ignore the affine (``protocol.md`` §6.2), so beyond readability the
check looks at what the array itself must satisfy: 3-D, finite, and in HU rather than an
8-bit window (``protocol.md`` H13, reported as a note since CC-CCII stores may be either).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import DataError
from .check import CheckReport, extra_files, read_volume, require_root

SPLITS = ("train_list.csv", "train_list_10.csv", "train_list_1.csv", "val_list.csv", "test_list.csv")
OPTIONAL = ("train_list_1.csv",)  # only CT-RATE and CC-CCII have a 1 % list


def check_classification_store(
    root: Path, dataset: str, task: str, volume_path: Callable[[Path, str], Path], folder: str
) -> CheckReport:
    from .split_files import read_split_csv

    require_root(root)
    report = CheckReport(dataset, "simcrop", root)
    present = [name for name in SPLITS if (root / name).is_file()]
    if not present:
        # Split files usually come from `data splits import`; then every stored volume is checked.
        report.notes.append(f"{root}: no split CSVs here; checked every volume in {folder}/ "
                            "(import the split files with `simcrop-bench data splits import`)")
        paths = sorted((root / folder).glob("*.nii.gz"))
        if not paths:
            report.add(root / folder, "no volumes found")
    else:
        ids: set[str] = set()
        for name in SPLITS:
            path = root / name
            if name not in present:
                if name not in OPTIONAL:
                    report.add(path, "split file is missing")
                continue
            try:
                table = read_split_csv(path, task)
            except DataError as exc:
                file, _, message = str(exc).partition(": ")
                report.add(file, message)
                continue
            report.counts[name] = len(table)
            ids |= set(table.ids)
        paths = [volume_path(root, volume_id) for volume_id in sorted(ids)]
    for path in paths:
        volume = read_volume(path, report, kind="image")
        if volume is None:
            continue
        report.counts["volumes"] += 1
        if volume.array.size and float(volume.array.min()) >= 0 and float(volume.array.max()) <= 255:
            report.notes.append(f"{path}: intensities lie in 0..255 (8-bit window, not HU); "
                                "the −1000…1000 HU window squashes them")
    if present:
        extra_files(root / folder, {p.resolve() for p in paths}, report)
    return report


def check_ccccii_simcrop(root: Path) -> CheckReport:
    return check_classification_store(root, "ccccii", "ccccii_cls", lambda r, i: r / "images_resized" / i,
                                      "images_resized")


def check_radchestct_simcrop(root: Path) -> CheckReport:
    return check_classification_store(root, "radchestct", "radchestct_cls",
                                      lambda r, i: r / "images" / f"{i}.nii.gz", "images")
