"""CT-RATE readers: official v1/v2 volumes, SimCroP path construction, reports and labels (datasets.md §2;
protocol.md §11.2).

- v1 (``train/``, ``valid/``): HU = RescaleSlope · stored + RescaleIntercept, slope/intercept and spacing from the
  metadata CSV (the NIfTI header scaling and spacing are defaults); applied exactly once here.
- v2 (``train_fixed/``, ``valid_fixed/``): already int16 HU with a correct header; the CSV rescale is never applied
  (double rescaling is the known pitfall, CT-CLIP issues #28 and #50).
Arrays are returned as stored (no reorientation). Missing files or columns raise :class:`DataError` naming the file.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import nibabel as nib
import numpy as np

from simcrop_bench.data.formats.stored import stored_volume
from simcrop_bench.data.labels import CTRATE_LABELS
from simcrop_bench.errors import DataError

METADATA_CSV = {"train": "metadata/train_metadata.csv", "valid": "metadata/validation_metadata.csv"}
REPORTS_CSV = {
    "train": "radiology_text_reports/train_reports.csv",
    "valid": "radiology_text_reports/validation_reports.csv",
}
LABELS_CSV = {
    "train": "multi_abnormality_labels/train_predicted_labels.csv",
    "valid": "multi_abnormality_labels/valid_predicted_labels.csv",
}
REPORT_COLUMNS = ("VolumeName", "ClinicalInformation_EN", "Technique_EN", "Findings_EN", "Impressions_EN")
# datasets.md §2.4: the 44 metadata columns in order.
METADATA_COLUMNS = (
    "VolumeName",
    "Manufacturer",
    "SeriesDescription",
    "ManufacturerModelName",
    "PatientSex",
    "PatientAge",
    "ReconstructionDiameter",
    "DistanceSourceToDetector",
    "DistanceSourceToPatient",
    "GantryDetectorTilt",
    "TableHeight",
    "RotationDirection",
    "ExposureTime",
    "XRayTubeCurrent",
    "Exposure",
    "FilterType",
    "GeneratorPower",
    "FocalSpots",
    "ConvolutionKernel",
    "PatientPosition",
    "RevolutionTime",
    "SingleCollimationWidth",
    "TotalCollimationWidth",
    "TableSpeed",
    "TableFeedPerRotation",
    "SpiralPitchFactor",
    "DataCollectionCenterPatient",
    "ReconstructionTargetCenterPatient",
    "ExposureModulationType",
    "CTDIvol",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SliceLocation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "XYSpacing",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "NumberofSlices",
    "ZSpacing",
    "StudyDate",
)
LABEL_COLUMNS = ("VolumeName", *CTRATE_LABELS)
METADATA_NEEDED = ("VolumeName", "XYSpacing", "ZSpacing", "RescaleIntercept", "RescaleSlope")
VERSIONS = {"v1": "", "v2": "_fixed"}


def parse_volume_name(volume_name: str) -> tuple[str, str, str, str]:
    """``<split>_<patient>_<scan>_<recon>.nii.gz`` → (split, patient, scan, recon); split on ``_``, never by
    character position (two-digit reconstruction ids)."""
    stem = volume_name[: -len(".nii.gz")] if volume_name.endswith(".nii.gz") else volume_name
    parts = stem.split("_")
    if len(parts) != 4 or parts[0] not in ("train", "valid") or not parts[1].isdigit() or not parts[3].isdigit():
        raise DataError(f"{volume_name}: not a CT-RATE volume name (<split>_<patient>_<scan>_<recon>.nii.gz)")
    return parts[0], parts[1], parts[2], parts[3]


def simcrop_volume_path(root: str | Path, volume_name: str) -> Path:
    """The reference path construction of protocol.md §11.2: ``root + p0 + "_preprocessed/" + p0 + "_" + p1 + "/"
    + p0 + "_" + p1 + p2 + "/" + id`` (no underscore before the scan letter)."""
    p0, p1, p2, _ = parse_volume_name(volume_name)
    return Path(
        str(root).rstrip("/")
        + "/"
        + p0
        + "_preprocessed/"
        + p0
        + "_"
        + p1
        + "/"
        + p0
        + "_"
        + p1
        + p2
        + "/"
        + volume_name
    )


def official_volume_path(root: str | Path, volume_name: str, version: str = "v1") -> Path:
    if version not in VERSIONS:
        raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
    split, patient, scan, _ = parse_volume_name(volume_name)
    return Path(root) / f"{split}{VERSIONS[version]}" / f"{split}_{patient}" / f"{split}_{patient}_{scan}" / volume_name


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
        return list(reader)


@functools.lru_cache(maxsize=8)
def _metadata_index(path: Path, mtime: float) -> dict[str, dict[str, str]]:
    return {row["VolumeName"]: row for row in _read_csv(path, METADATA_NEEDED)}


def read_metadata_row(root: str | Path, volume_name: str) -> dict[str, str]:
    path = Path(root) / METADATA_CSV[parse_volume_name(volume_name)[0]]
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows = _metadata_index(path, path.stat().st_mtime)
    if volume_name not in rows:
        raise DataError(f"{path}: no row for {volume_name}")
    return rows[volume_name]


def _floats(text: str, path: Path, column: str) -> list[float]:
    try:
        return [float(v) for v in text.strip().strip("[]").split(",") if v.strip()]
    except ValueError:
        raise DataError(f"{path}: column {column} is not a number list: {text!r}") from None


def read_ctrate_official_volume(
    root: str | Path, volume_name: str, version: str = "v1"
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(HU array as stored, (x, y, z) spacing in mm). v1: rescale and spacing from the metadata CSV; v2: the
    stored int16 HU and the header spacing, no rescale."""
    path = official_volume_path(root, volume_name, version)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        image = nib.load(str(path))
        stored = np.asarray(image.dataobj)  # header scl_* are unset/defaults, so no scaling happens here
    except Exception as error:  # nibabel raises many types for broken files
        raise DataError(f"{path}: unreadable NIfTI ({error})") from None
    if version == "v2":
        spacing = tuple(float(v) for v in image.header.get_zooms()[:3])
        return stored.astype(np.int16, copy=False), spacing
    row = read_metadata_row(root, volume_name)
    csv_path = Path(root) / METADATA_CSV[parse_volume_name(volume_name)[0]]
    xy = _floats(row["XYSpacing"], csv_path, "XYSpacing")
    z = _floats(row["ZSpacing"], csv_path, "ZSpacing")
    slope = _floats(row["RescaleSlope"], csv_path, "RescaleSlope")[0]
    intercept = _floats(row["RescaleIntercept"], csv_path, "RescaleIntercept")[0]
    hu = np.rint(slope * stored.astype(np.float64) + intercept)
    spacing = (xy[0], xy[1] if len(xy) > 1 else xy[0], z[0])
    return np.clip(hu, -32768, 32767).astype(np.int16), spacing


def read_reports(root: str | Path, split: str) -> dict[str, dict[str, str]]:
    """VolumeName → the report row (CT-RATE's ``"Not given."`` kept verbatim)."""
    path = Path(root) / REPORTS_CSV[_split(split)]
    return {row["VolumeName"]: {c: row[c] for c in REPORT_COLUMNS[1:]} for row in _read_csv(path, REPORT_COLUMNS)}


def read_labels(root: str | Path, split: str) -> dict[str, list[int]]:
    """VolumeName → the 18 labels in protocol order."""
    path = Path(root) / LABELS_CSV[_split(split)]
    rows = _read_csv(path, ("VolumeName", *CTRATE_LABELS))
    try:
        return {row["VolumeName"]: [int(row[c]) for c in CTRATE_LABELS] for row in rows}
    except ValueError:
        raise DataError(f"{path}: non-integer label value") from None


def _split(split: str) -> str:
    key = {"train": "train", "valid": "valid", "validation": "valid"}.get(split)
    if key is None:
        raise DataError(f"unknown CT-RATE split {split!r} (expected train or valid)")
    return key


def pretraining_samples(root: str | Path, *, volumes: list[str] | None = None) -> list[dict[str, str]]:
    """CT-RATE pretraining samples (``simcrop-method.md`` §5.1, §6): every training volume of the
    SimCroP store that has a report, as ``{"image", "volume_name", "patient_id", "findings", "impression"}``.

    Only the ``train`` split is ever used: validation volumes are the downstream test set.
    ``volumes`` restricts the list (e.g. to SimCroP's ``train_list.csv``); a listed volume without a
    file or a report is a :class:`DataError` naming it.
    """
    root = Path(root)
    reports = read_reports(root, "train")
    names = sorted(reports) if volumes is None else list(volumes)
    samples = []
    for name in names:
        path = stored_volume(simcrop_volume_path(root, name))  # the prepared .nii or the reference .nii.gz
        if volumes is None and not path.is_file():
            continue  # reports cover the whole release; the local store may hold a subset
        if not path.is_file():
            raise DataError(f"{path}: listed for pretraining but not found")
        if name not in reports:
            raise DataError(f"{root / REPORTS_CSV['train']}: no report for {name}")
        split, pid, _, _ = parse_volume_name(name)
        if split != "train":
            raise DataError(f"{name}: only training volumes may be used for pretraining (validation is the test set)")
        samples.append(
            {
                "image": str(path),
                "volume_name": name,
                "patient_id": f"{split}_{pid}",
                "findings": reports[name]["Findings_EN"],
                "impression": reports[name]["Impressions_EN"],
            }
        )
    if not samples:
        raise DataError(f"{root}: no training volumes with reports in train_preprocessed/")
    return samples
