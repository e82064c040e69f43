"""Convert the official CC-CCII slice tree into SimCroP's ``images_resized`` store (datasets.md §4.2–§4.4).

Source: ``{NCP,CP,Normal}/<patient_id>/<scan_id>/<slice>.{png,jpg}`` (8-bit windowed slices, not HU).
Output: ``images_resized/<scan_id>.nii.gz`` (``.nii`` in the default uncompressed store) holding the **(D, H, W)**
array SimCroP expects (its reader transposes (1, 2, 0) to (H, W, D) = RAS (x, y, z)). Slices are stacked in numeric
order and oriented by :func:`~simcrop_bench.data.ccccii.read_ccccii_slices` (radiological display assumed: row 0
anterior, column 0 patient right, slice 0 inferior). Intensities stay **uint8 display values**: there is no way back
to HU, and the pipeline's −1000…1000 HU window squashes them into [0, 0.255] (hazard H13); the manifest records this
and per-volume min/max/mean. No resampling: the slices carry no spacing (the header gets 1 mm, or the grid a
synthetic twin recorded).

Split files (``img_list,label``, 0 = Normal, 1 = CP, 2 = NCP) are written only from ``split_files=`` (a folder of
SimCroP's CSVs); they are validated and checked against the class folders. Resumable like the other converters.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simcrop_bench.data.ccccii import CLASSES, ccccii_intensity_stats, read_ccccii_slices, resized_path
from simcrop_bench.data.formats.nifti import write_stored_volume
from simcrop_bench.data.formats.stored import DEFAULT_STORE_FORMAT, STORE_FORMATS, with_format
from simcrop_bench.data.prepare.cases import Case, Distribution, run_cases
from simcrop_bench.data.prepare.manifest import PREPARE_MANIFEST, copy_marker, load_prepare_manifest, source_stamp
from simcrop_bench.errors import DataError
from simcrop_bench.util.atomic import atomic_path
from simcrop_bench.util.hashing import file_sha256

SPLIT_NAMES = ("train_list.csv", "train_list_10.csv", "train_list_1.csv", "val_list.csv", "test_list.csv")
SPLIT_HEADER = "img_list,label"
INTENSITY = (
    "uint8 windowed display values copied from the slices (not HU; a -1000..1000 HU window maps them into [0, 0.255])"
)


def find_scans(src_root: Path) -> list[tuple[str, str, str]]:
    """(class, patient_id, scan_id) of every scan folder, sorted; scan ids must be unique across classes."""
    scans, seen = [], {}
    for cls in CLASSES:
        for folder in sorted((Path(src_root) / cls).glob("*/*")):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            if folder.name in seen:
                raise DataError(f"{folder}: scan id {folder.name} also in {seen[folder.name]}")
            seen[folder.name] = folder
            scans.append((cls, folder.parent.name, folder.name))
    if not scans:
        raise DataError(
            f"{src_root}: no {{NCP,CP,Normal}}/<patient>/<scan>/ folders; expected the official CC-CCII layout"
        )
    return scans


def dhw_affine(spacing) -> np.ndarray:
    """Affine of the (z, x, y)-stored array, axis codes ('S', 'R', 'A'); the reference reader ignores it."""
    sx, sy, sz = spacing
    return np.array([[0, sx, 0, 0], [0, 0, sy, 0], [sz, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def _twin_spacing(src_root: Path, scan_id: str) -> tuple[float, float, float] | None:
    path = Path(src_root) / "synthetic_meta" / f"{scan_id}.json"
    if not path.is_file():
        return None
    try:
        return tuple(float(v) for v in json.loads(path.read_text(encoding="utf-8"))["grid"]["spacing_mm"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable twin metadata ({type(exc).__name__}: {exc})") from None


def _folder_stamp(folder: Path) -> dict:
    """Stamp of a scan folder: each slice's size and mtime (a replaced or added slice triggers reconversion)."""
    return {p.name: source_stamp(p) for p in sorted(folder.iterdir()) if p.is_file()}


def copy_split_files(folder: Path, dst_root: Path, scan_labels: dict[str, int]) -> dict:
    """Validate and copy SimCroP's ``img_list,label`` CSVs; report ids absent from the tree and label mismatches."""
    folder = Path(folder)
    found = [folder / n for n in SPLIT_NAMES if (folder / n).is_file()]
    if not found:
        raise DataError(f"{folder}: holds none of {', '.join(SPLIT_NAMES)}")
    missing, mismatched = set(), set()
    for path in found:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines or lines[0].strip() != SPLIT_HEADER:
            raise DataError(f"{path}: first line must be '{SPLIT_HEADER}'")
        for number, line in enumerate(lines[1:], start=2):
            parts = line.strip().split(",")
            if len(parts) != 2 or not parts[0].endswith(".nii.gz") or parts[1] not in ("0", "1", "2"):
                raise DataError(f"{path}: line {number} is not '<scan id>.nii.gz,<0|1|2>': {line!r}")
            scan_id = parts[0][: -len(".nii.gz")]
            if scan_id not in scan_labels:
                missing.add(scan_id)
            elif scan_labels[scan_id] != int(parts[1]):
                mismatched.add(scan_id)
        with atomic_path(Path(dst_root) / path.name) as tmp:
            shutil.copyfile(path, tmp)
    return {
        "split_files": [p.name for p in found],
        "split_ids_missing": sorted(missing),
        "split_label_mismatches": sorted(mismatched),
    }


@dataclass(frozen=True)
class _Conversion:
    """What every CC-CCII case needs (picklable: it travels to worker processes and array tasks)."""

    src_root: Path
    dst_root: Path
    store_format: str

    def __call__(self, case: Case) -> dict:
        cls, patient_id, scan_id = case.args
        ras = read_ccccii_slices(self.src_root, cls, patient_id, scan_id)  # uint8 (H, W, D) = RAS (x, y, z)
        stored = np.ascontiguousarray(ras.transpose(2, 0, 1))  # (D, H, W)
        spacing = _twin_spacing(self.src_root, scan_id) or (1.0, 1.0, 1.0)
        output = write_stored_volume(
            resized_path(self.dst_root, scan_id),
            stored,
            dhw_affine(spacing),
            self.store_format,
            "simcrop-bench CC-CCII uint8 (D,H,W)",
        )
        return {
            "class": cls,
            "label": CLASSES.index(cls),
            "patient_id": patient_id,
            "output": f"images_resized/{output.name}",
            "shape_dhw": list(stored.shape),
            "file_sha256": file_sha256(output),  # what `sha256sum` prints; hashing the array cost a transposed copy
            "intensity": {k: v for k, v in ccccii_intensity_stats(stored).items() if k != "warning"},
        }


def convert_ccccii_slices_to_simcrop(
    src_root: Path,
    dst_root: Path,
    *,
    split_files: Path | None = None,
    store_format: str = DEFAULT_STORE_FORMAT,
    distribution: Distribution | None = None,
) -> dict:
    """Convert every scan folder under ``src_root`` into ``dst_root/images_resized/<scan_id>.nii.gz``."""
    src_root, dst_root = Path(src_root), Path(dst_root)
    if not src_root.is_dir():
        raise DataError(f"{src_root}: CC-CCII source root does not exist or is not a folder")
    scans = find_scans(src_root)
    settings = {
        "stored_axes": "(D, H, W) = (z, x, y) of RAS; reader transposes (1, 2, 0)",
        "slice_convention": "row 0 anterior, column 0 patient right, slice 0 inferior (assumed)",
        "intensity": INTENSITY,
        "resampling": None,
        "store_format": store_format,
    }
    if store_format not in STORE_FORMATS:
        raise DataError(f"store format must be one of {', '.join(STORE_FORMATS)}, not {store_format!r}")
    manifest = load_prepare_manifest(dst_root, settings)
    manifest["source_root"] = str(src_root)
    synthetic = copy_marker(src_root, dst_root, "simcrop_bench.data.prepare.ccccii.convert_ccccii_slices_to_simcrop")
    cases = [
        Case(
            scan_id,
            with_format(resized_path(dst_root, scan_id), store_format),
            _folder_stamp(src_root / cls / patient_id / scan_id),
            (cls, patient_id, scan_id),
        )
        for cls, patient_id, scan_id in scans
    ]
    conversion = _Conversion(src_root, dst_root, store_format)
    converted = run_cases(
        conversion, cases, dst_root, manifest, distribution or Distribution(), "CC-CCII → images_resized"
    )
    splits = {"split_files": [], "split_ids_missing": [], "split_label_mismatches": []}
    if split_files is not None:
        splits = copy_split_files(split_files, dst_root, {s: CLASSES.index(c) for c, _, s in scans})
    return {
        "src_root": str(src_root),
        "dst_root": str(dst_root),
        "synthetic": synthetic,
        "cases": len(scans),
        "converted": converted,
        "skipped": len(scans) - converted,
        "intensity": INTENSITY,
        **splits,
        "manifest": PREPARE_MANIFEST,
    }
