"""``data check`` for the official downloads of BTCV (datasets.md §6.2), CC-CCII (§4.2) and RadChestCT
(§3.2–§3.4).

These are the trees the importers read before anything is converted, so each check reads every file fully
(a truncated gzip, PNG or zip shows up here) and keeps going after a problem to report all of them.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from simcrop_bench.data.btcv import TEST_NUMBERS, TRAIN_NUMBERS
from simcrop_bench.data.ccccii import CLASSES, SLICE_SUFFIXES
from simcrop_bench.data.check.btcv import ORGAN_LABELS
from simcrop_bench.data.check.root import CheckReport, check_image_label, read_volume, require_root
from simcrop_bench.data.radchestct import ID_COLUMN, read_radchestct_npz
from simcrop_bench.errors import DataError


def _read_rows(path: Path, report: CheckReport) -> list[list[str]] | None:
    """All CSV rows, or None after reporting why the file cannot be read."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        report.add(path, f"unreadable CSV ({type(exc).__name__}: {exc})")
        return None


# ------------------------------------------------------------------------------------------------ BTCV


def _numbered(folder: Path, prefix: str, report: CheckReport) -> dict[int, Path]:
    """``<prefix>NNNN.nii.gz`` files by number; anything else in the folder is reported."""
    found: dict[int, Path] = {}
    if not folder.is_dir():
        return found
    pattern = re.compile(rf"{prefix}(\d{{4}})\.nii\.gz")
    for path in sorted(folder.iterdir()):
        match = pattern.fullmatch(path.name)
        if match is None:
            report.add(path, f"name is not {prefix}NNNN.nii.gz")
        else:
            found[int(match.group(1))] = path
    return found


def check_btcv_official(root: Path) -> CheckReport:
    """``RawData/Training/{img,label}`` pairs and ``RawData/Testing/img``; labels 0..13, shapes match."""
    root = Path(root)
    require_root(root)
    report = CheckReport("btcv", "official", root)
    training = root / "RawData" / "Training"
    images = _numbered(training / "img", "img", report)
    labels = _numbered(training / "label", "label", report)
    tests = _numbered(root / "RawData" / "Testing" / "img", "img", report)
    if not images:
        report.add(training / "img", "no training images img00NN.nii.gz")
    for number, image in images.items():
        if number not in TRAIN_NUMBERS:
            report.add(image, f"number {number} is not a BTCV training case (0001–0010, 0021–0040)")
        label = training / "label" / f"label{number:04d}.nii.gz"
        check_image_label(image, label, report, allowed_labels=ORGAN_LABELS)  # a missing label is reported there
    for number in sorted(set(labels) - set(images)):
        report.add(labels[number], "label without its training image")
    for number, image in tests.items():
        if number not in TEST_NUMBERS:
            report.add(image, f"number {number} is not a BTCV test case (0061–0080)")
        volume = read_volume(image, report, kind="test image")
        if volume is not None:
            report.counts["test images"] += 1
    if len(images) < len(TRAIN_NUMBERS):  # twins and partial copies are legitimate, so only noted
        report.notes.append(f"{len(images)} of {len(TRAIN_NUMBERS)} training cases present")
    report.counts["training cases"] = len(images)
    return report


# ------------------------------------------------------------------------------------------------ CC-CCII

UNZIP_COLUMNS = ["zip_file", "label", "patient_id", "scan_id", "n_slice"]
EIGHT_BIT_MODES = ("L", "P", "RGB", "RGBA", "LA")  # 8 bits per channel; 16-bit/float modes are not display slices


def _check_scan_slices(folder: Path, report: CheckReport) -> int:
    """Read every slice of one scan; return how many slice files it holds."""
    slices = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SLICE_SUFFIXES)
    others = [p for p in folder.iterdir() if p not in slices]
    for path in others:
        report.add(path, "not a .png/.jpg slice")
    if not slices:
        report.add(folder, "scan folder holds no .png/.jpg slices")
    sizes: Counter = Counter()
    for path in slices:
        if not path.stem.isdigit():
            report.add(path, "slice name is not an integer (slices are ordered numerically)")
        try:
            with Image.open(path) as image:
                image.load()  # decode fully: a truncated file fails here, not at open
                mode, size = image.mode, image.size
        except (OSError, SyntaxError, ValueError) as exc:
            report.add(path, f"unreadable slice image ({type(exc).__name__}: {exc})")
            continue
        if mode not in EIGHT_BIT_MODES:
            report.add(path, f"image mode {mode} is not an 8-bit display image")
        sizes[size] += 1
        report.counts["slices"] += 1
    if len(sizes) > 1:
        report.add(folder, f"slices differ in size: {dict(sizes)}")
    elif sizes:
        width, height = next(iter(sizes))
        report.shapes[(height, width, len(slices))] += 1
    return len(slices)


def check_ccccii_official(root: Path) -> CheckReport:
    """``{NCP,CP,Normal}/<patient>/<scan>/<slice>`` folders agree with ``unzip_filenames.csv``; slices readable."""
    root = Path(root)
    require_root(root)
    report = CheckReport("ccccii", "official", root)
    folders = {
        (cls, p.name, s.name): s
        for cls in CLASSES
        if (root / cls).is_dir()
        for p in sorted((root / cls).iterdir())
        if p.is_dir()
        for s in sorted(p.iterdir())
        if s.is_dir()
    }
    if not folders:
        report.add(root, f"no scan folders <class>/<patient>/<scan> for classes {', '.join(CLASSES)}")
    n_slices = {key: _check_scan_slices(folder, report) for key, folder in folders.items()}
    report.counts["scans"] = len(folders)
    listed: set[tuple[str, str, str]] = set()
    table = root / "unzip_filenames.csv"
    if not table.is_file():
        report.add(table, "scan list is missing")
    elif (rows := _read_rows(table, report)) is not None:
        header = rows[0] if rows else []
        missing = [c for c in UNZIP_COLUMNS if c not in header]
        if missing:
            report.add(table, f"missing column(s) {', '.join(missing)}")
        else:
            at = {c: header.index(c) for c in UNZIP_COLUMNS}
            for line, row in enumerate(rows[1:], start=2):
                if len(row) != len(header):
                    report.add(table, f"line {line}: expected {len(header)} fields, got {len(row)}")
                    continue
                key = (row[at["label"]], row[at["patient_id"]], row[at["scan_id"]])
                if key[0] not in CLASSES:
                    report.add(table, f"line {line}: label {key[0]!r} is not one of {', '.join(CLASSES)}")
                if key in listed:
                    report.add(table, f"line {line}: scan {'/'.join(key)} listed twice")
                listed.add(key)
                if key not in folders:
                    report.add(table, f"line {line}: no scan folder {'/'.join(key)}")
                elif row[at["n_slice"]] != str(n_slices[key]):
                    report.add(
                        table,
                        f"line {line}: n_slice {row[at['n_slice']]} but {'/'.join(key)} holds {n_slices[key]} slices",
                    )
            for key in sorted(set(folders) - listed):
                report.add(folders[key], "scan folder not listed in unzip_filenames.csv")
    lesions = root / "lesions_slices.csv"
    if lesions.is_file():  # optional in the spec's list of files; when present its paths must exist
        lines = lesions.read_text(encoding="utf-8").splitlines()[1:]
        for line, rel in enumerate(lines, start=2):
            if rel.strip() and not (root / rel.strip()).is_file():
                report.add(lesions, f"line {line}: slice {rel.strip()} does not exist")
        report.counts["lesion slices"] = len(lines)
    return report


# ------------------------------------------------------------------------------------------------ RadChestCT

LABEL_FILES = {
    "trn": "imgtrain_Abnormality_and_Location_Labels.csv",
    "val": "imgvalid_Abnormality_and_Location_Labels.csv",
    "tst": "imgtest_Abnormality_and_Location_Labels.csv",
}
HU_RANGE = (-1000, 1000)  # the public release is clipped to this (datasets.md §3.3)


def _radchestct_ids(path: Path, prefix: str, report: CheckReport) -> list[str]:
    """Ids of one label CSV after checking its header and 0/1 flags."""
    rows = _read_rows(path, report)
    if rows is None:
        return []
    header = rows[0] if rows else []
    if not header or header[0] != ID_COLUMN:
        report.add(path, f"first column is {header[0] if header else 'missing'!r}, not {ID_COLUMN}")
        return []
    bad = [c for c in header[1:] if "*" not in c]
    if bad:
        report.add(path, f"columns without '<abnormality>*<location>' form: {', '.join(bad[:5])}")
    ids = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            report.add(path, f"line {line}: expected {len(header)} fields, got {len(row)}")
            continue
        if not row[0].startswith(prefix):
            report.add(path, f"line {line}: id {row[0]!r} does not start with {prefix!r}")
        if set(row[1:]) - {"0", "1"}:
            report.add(path, f"line {line}: flags other than 0/1")
        ids.append(row[0])
    return ids


def _check_npz(path: Path, report: CheckReport) -> None:
    try:
        ct = read_radchestct_npz(path)
    except DataError as exc:
        file, _, message = str(exc).partition(": ")
        report.add(file, message)
        return
    report.counts["volumes"] += 1
    report.shapes[ct.shape] += 1
    if not np.issubdtype(ct.dtype, np.integer):
        report.add(path, f"dtype {ct.dtype}, expected int16 HU")
        if not np.isfinite(ct).all():
            report.add(path, "NaN or infinite voxels")
            return
    elif ct.dtype != np.int16:
        report.notes.append(f"{path}: dtype {ct.dtype} (int16 expected; values are still integers)")
    low, high = float(ct.min()), float(ct.max())
    if low < HU_RANGE[0] or high > HU_RANGE[1]:
        report.add(path, f"values span [{low:g}, {high:g}], outside the released range {list(HU_RANGE)}")


def check_radchestct_official(root: Path) -> CheckReport:
    """``<id>.npz`` volumes (key ``ct``) and the three ``img*_Abnormality_and_Location_Labels.csv`` files."""
    root = Path(root)
    require_root(root)
    report = CheckReport("radchestct", "official", root)
    volumes: dict[str, Path] = {}
    for path in sorted(root.rglob("*.npz")):  # the release's unpacked folder layout is not fixed
        if path.stem in volumes:
            report.add(path, f"second copy of {path.stem} (also {volumes[path.stem]})")
            continue
        volumes[path.stem] = path
    ids: set[str] = set()
    for prefix, name in LABEL_FILES.items():
        path = root / name
        if not path.is_file():
            report.add(path, "label file is missing")
            continue
        found = _radchestct_ids(path, prefix, report)
        for volume_id in found:
            if volume_id in ids:
                report.add(path, f"id {volume_id} appears more than once")
            elif volume_id not in volumes:
                report.add(root / "images" / f"{volume_id}.npz", f"volume is missing for a row of {name}")
            ids.add(volume_id)
        report.counts[name] = len(found)
    for volume_id, path in sorted(volumes.items()):
        _check_npz(path, report)
        if volume_id not in ids:
            report.add(path, "volume without a row in any label file")
    return report
