"""Stored volumes of the layouts tasks read: the reference's ``.nii.gz`` or the prepared store's ``.nii``.

``data prepare`` writes uncompressed NIfTI by default (``bench loader`` chose it: nibabel memory-maps it, so a
training crop reads only its own bytes, at 2 bytes per int16 voxel on disk), under the reference's paths with
``.nii`` for ``.nii.gz``. Readers build the reference path and resolve it here, so both stores read alike.
"""

from __future__ import annotations

from pathlib import Path

STORE_FORMATS = {"nii": ".nii", "nii.gz": ".nii.gz"}
DEFAULT_STORE_FORMAT = "nii"


def with_format(path: str | Path, store_format: str) -> Path:
    """``path`` (a reference ``.nii.gz`` or ``.nii`` name) with the suffix of ``store_format``."""
    path = Path(path)
    stem = path.name.removesuffix(".gz").removesuffix(".nii")
    return path.with_name(stem + STORE_FORMATS[store_format])


def stored_volume(path: str | Path) -> Path:
    """The file that holds the volume of reference path ``path``: itself if present, else its other format if
    present, else ``path`` unchanged (so a missing volume is reported under the name the reference uses)."""
    path = Path(path)
    if path.is_file() or not path.name.endswith((".nii.gz", ".nii")):
        return path
    for suffix in STORE_FORMATS:
        other = with_format(path, suffix)
        if other != path and other.is_file():
            return other
    return path
