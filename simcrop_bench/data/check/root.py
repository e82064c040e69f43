"""``data check``: every problem of a dataset root, each with its file — nothing skipped silently.

A check walks a layout, reads every volume fully (so a truncated gzip is found
here, not hours into a run) and collects :class:`Problem` entries instead of
stopping at the first one; the summary counts what was seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simcrop_bench.data.formats.stored import stored_volume, with_format
from simcrop_bench.errors import DataError

PURGEABLE = "purgeable"  # train/test leakage of split CSVs: `task.purge_test_patients_from_train` removes it


@dataclass(frozen=True)
class Problem:
    file: str
    message: str
    kind: str = ""  # PURGEABLE, or "" for a problem no setting resolves

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass
class CheckReport:
    dataset: str
    layout: str
    root: Path
    problems: list[Problem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    shapes: Counter = field(default_factory=Counter)
    spacings: Counter = field(default_factory=Counter)
    label_values: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)  # worth knowing, not wrong (e.g. an 8-bit store)

    def add(self, file: Path | str, message: str, kind: str = "") -> None:
        self.problems.append(Problem(str(file), message, kind))

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Volume:
    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, ...]


def read_volume(path: Path, report: CheckReport, *, kind: str) -> Volume | None:
    """Read a NIfTI fully; record unreadable files, NaNs, non-3D shapes and bad affines."""
    import nibabel as nib

    path = stored_volume(path)  # the prepared store's .nii under the reference .nii.gz name
    if not path.is_file():
        report.add(path, f"{kind} file is missing")
        return None
    try:
        image = nib.load(str(path))
        array = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        report.add(path, f"not a readable NIfTI volume ({type(exc).__name__}: {exc})")
        return None
    if array.ndim != 3:
        report.add(path, f"expected a 3-D volume, got shape {array.shape}")
        return None
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        report.add(path, f"{int((~np.isfinite(array)).sum())} NaN or infinite voxels")
    affine = np.asarray(image.affine)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        report.add(path, "affine is singular or not finite")
    spacing = tuple(round(float(s), 3) for s in image.header.get_zooms()[:3])
    report.shapes[array.shape] += 1
    report.spacings[spacing] += 1
    return Volume(array, affine, spacing)


def check_image_label(
    image_path: Path, label_path: Path, report: CheckReport, *, allowed_labels: Iterable[int]
) -> None:
    """One image/label pair: dtypes, matching geometry, known label values, HU-like intensities."""
    image = read_volume(image_path, report, kind="image")
    label = read_volume(label_path, report, kind="label")
    if image is not None:
        report.counts["images"] += 1
        if not (np.issubdtype(image.array.dtype, np.integer) or np.issubdtype(image.array.dtype, np.floating)):
            report.add(image_path, f"unexpected image dtype {image.array.dtype}")
        elif image.array.size and float(image.array.max()) <= 255 and float(image.array.min()) >= 0:
            report.add(image_path, "intensities lie in 0..255: looks windowed, not HU")
    if label is None:
        return
    report.counts["labels"] += 1
    if not np.issubdtype(label.array.dtype, np.integer):
        if np.issubdtype(label.array.dtype, np.floating) and np.array_equal(label.array, np.round(label.array)):
            pass  # integer-valued floats load fine; masks are often stored so
        else:
            report.add(label_path, f"label dtype {label.array.dtype} holds non-integer values")
            return
    values = {int(v) for v in np.unique(label.array[np.isfinite(label.array)])}
    report.label_values |= values
    unknown = sorted(values - set(allowed_labels))
    if unknown:
        report.add(label_path, f"unknown label values {unknown} (allowed {sorted(allowed_labels)})")
    if image is not None:
        if image.array.shape != label.array.shape:
            report.add(label_path, f"shape {label.array.shape} differs from its image {image.array.shape}")
        elif not np.allclose(image.affine, label.affine, atol=1e-3):
            report.add(label_path, "affine differs from its image's")


def report_leakage(path: Path, listed: dict[str, list[str]], report: CheckReport, train_key: str = "training") -> None:
    """Cases of the training list that another list of the same split file also holds: one line per case.

    Selection and test lists may share cases (LUNA16's ``validation`` is its ``testing``); neither may
    share one with training.
    """
    training = set(listed.get(train_key, ()))
    for key, images in listed.items():
        if key == train_key:
            continue
        for image in dict.fromkeys(images):
            if image in training:
                report.add(path, f"{image} is in both '{train_key}' and '{key}' (train/test leakage)")


def extra_files(folder: Path, listed: set[Path], report: CheckReport, pattern: str = "*.nii.gz") -> None:
    """Files in ``folder`` that no split lists: a sign of a partial copy or a wrong root."""
    if not folder.is_dir():
        return
    listed = {with_format(p, "nii.gz") if p.name.endswith(".nii") else p for p in listed}
    for path in sorted(folder.glob(pattern)) + (sorted(folder.glob("*.nii")) if pattern == "*.nii.gz" else []):
        if (with_format(path, "nii.gz") if path.name.endswith(".nii") else path).resolve() not in listed:
            report.add(path, "not listed in any split file")


def require_root(root: Path) -> None:
    if not root.is_dir():
        raise DataError(f"{root}: data root does not exist or is not a folder")


def check_decathlon(
    root: Path,
    dataset: str,
    split_files: tuple[str, ...],
    keys: tuple[str, ...],
    allowed_labels: Iterable[int],
    folders: tuple[str, str],
) -> CheckReport:
    """A MSD-style layout: split JSONs listing image/label pairs, and the two folders holding them."""
    import json

    require_root(root)
    report = CheckReport(dataset, "simcrop", root)
    cases: dict[Path, Path] = {}
    for name in split_files:
        path = root / name
        if not path.is_file():
            report.add(path, "split file is missing")
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            report.add(path, f"not valid JSON ({exc})")
            continue
        listed: dict[str, list[str]] = {}
        for key in keys:
            entries = doc.get(key) if isinstance(doc, dict) else None
            if not isinstance(entries, list):
                report.add(path, f"missing list '{key}'")
                continue
            report.counts[f"{name}:{key}"] = len(entries)
            listed[key] = []
            for i, entry in enumerate(entries):
                if not (
                    isinstance(entry, dict)
                    and isinstance(entry.get("image"), str)
                    and isinstance(entry.get("label"), str)
                ):
                    report.add(path, f"entry {i} of '{key}' needs string fields 'image' and 'label'")
                    continue
                cases[(root / entry["image"]).resolve()] = (root / entry["label"]).resolve()
                listed[key].append(entry["image"])
        report_leakage(path, listed, report)
    for image, label in sorted(cases.items()):
        check_image_label(image, label, report, allowed_labels=allowed_labels)
    extra_files(root / folders[0], set(cases), report)
    extra_files(root / folders[1], set(cases.values()), report)
    report.counts["cases"] = len(cases)
    return report
