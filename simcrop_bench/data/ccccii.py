"""CC-CCII readers: SimCroP's ``images_resized`` volumes and the official PNG/JPG slice tree.

``images_resized/<scan_id>.nii.gz`` is stored (D, H, W); the reference loads the voxel array without its affine
and transposes it (1, 2, 0) to (H, W, D) (protocol.md §11.2). Its intensity scale is undocumented (hazard H13):
:func:`ccccii_intensity_stats` records min/max/mean and flags volumes that look like 0-255 display values, which
the −1000…1000 HU window would squash into [0, 0.255].

The official tree ``{NCP,CP,Normal}/<patient>/<scan>/<slice>.{png,jpg}`` holds 8-bit windowed axial slices.
:func:`read_ccccii_slices` stacks them in numeric slice order and, assuming radiological display (row 0 anterior,
column 0 patient right, slice 0 inferior, as in our twin), returns RAS (x, y, z) like :func:`read_ccccii_resized`.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from simcrop_bench.data.formats.stored import stored_volume
from simcrop_bench.errors import DataError

CLASSES = ("Normal", "CP", "NCP")  # index = label value (protocol.md §2.3, inferred)
SLICE_SUFFIXES = (".png", ".jpg", ".jpeg")


def resized_path(root: Path, scan_id: int | str) -> Path:
    """``root/images_resized/<id>`` as the reference builds it (ids in split files carry ``.nii.gz``)."""
    name = str(scan_id)
    return Path(root) / "images_resized" / (name if name.endswith(".nii.gz") else f"{name}.nii.gz")


def read_ccccii_resized(root: Path, scan_id: int | str) -> np.ndarray:
    """The (H, W, D) array of one resized scan, dtype as stored (int16 HU or uint8), affine ignored."""
    path = stored_volume(resized_path(root, scan_id))
    try:
        stored = np.asanyarray(nib.load(path).dataobj)
    except FileNotFoundError:
        raise DataError(f"{path}: CC-CCII resized volume not found") from None
    except Exception as exc:  # nibabel raises several types for damaged files
        raise DataError(f"{path}: unreadable NIfTI ({type(exc).__name__}: {exc})") from None
    if stored.ndim != 3:
        raise DataError(f"{path}: expected a 3-D (D, H, W) array, got shape {stored.shape}")
    return np.ascontiguousarray(stored.transpose(1, 2, 0))


def ccccii_intensity_stats(array: np.ndarray) -> dict:
    """min / max / mean plus a warning when the values look like 0-255 display values rather than HU (H13)."""
    lo, hi, mean = float(array.min()), float(array.max()), float(array.mean())
    looks_uint8 = lo >= 0 and hi <= 255
    warning = (
        (
            f"values lie in [{lo:g}, {hi:g}]: looks like 8-bit display values, not HU; "
            "the −1000…1000 window would squash them into [0, 0.255]"
        )
        if looks_uint8
        else None
    )
    return {
        "min": lo,
        "max": hi,
        "mean": mean,
        "dtype": str(array.dtype),
        "looks_uint8": looks_uint8,
        "warning": warning,
    }


def read_ccccii_slices(root: Path, cls: str, patient_id: int | str, scan_id: int | str) -> np.ndarray:
    """Stack one scan's official slices into a uint8 RAS (x, y, z) = (H, W, D) array."""
    folder = Path(root) / cls / str(patient_id) / str(scan_id)
    if not folder.is_dir():
        raise DataError(f"{folder}: CC-CCII scan folder not found")
    paths = [p for p in folder.iterdir() if p.suffix.lower() in SLICE_SUFFIXES]
    if not paths:
        raise DataError(f"{folder}: no .png/.jpg slices")
    try:
        paths.sort(key=lambda p: int(p.stem))  # numeric order: never rely on listing order
    except ValueError:
        raise DataError(
            f"{folder}: slice names must be integers, found e.g. {sorted(p.name for p in paths)[0]}"
        ) from None
    images = []
    for p in paths:
        try:
            with Image.open(p) as image:
                images.append(np.asarray(image.convert("L")))
        except OSError as exc:
            raise DataError(f"{p}: unreadable slice image ({exc})") from None
    if len({i.shape for i in images}) != 1:
        raise DataError(f"{folder}: slices differ in size")
    stack = np.stack(images, axis=-1)  # (rows = posterior, cols = patient left, slices = superior)
    return np.ascontiguousarray(stack.transpose(1, 0, 2)[::-1, ::-1, :])
