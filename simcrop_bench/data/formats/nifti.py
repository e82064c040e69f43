"""NIfTI helpers shared by the synthetic writers and the prediction savers."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np

from simcrop_bench.data.formats.stored import STORE_FORMATS, with_format
from simcrop_bench.util.atomic import atomic_path


def lps_nifti_affine(spacing, origin) -> np.ndarray:
    """nibabel (RAS) affine of an identity-direction MetaImage with LPS ``Offset`` = origin (datasets.md §1.1)."""
    (sx, sy, sz), (ox, oy, oz) = spacing, origin
    return np.array([[-sx, 0, 0, -ox], [0, -sy, 0, -oy], [0, 0, sz, oz], [0, 0, 0, 1]], dtype=np.float64)


def array_sha256(array: np.ndarray) -> str:
    """Hash of a decoded volume: C-ordered bytes of the (x, y, z) array in its stored dtype."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# gzip level 1: 5-6x faster to write than level 6 for a file about 2 % larger (issue #16, `bench prepare`).
GZIP_LEVEL = 1


def nifti_bytes(array: np.ndarray, affine: np.ndarray, description: str = "simcrop-bench") -> bytes:
    """Uncompressed NIfTI-1 with qform/sform (code 1, scanner) and mm units."""
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = description.encode()[:79]
    return image.to_bytes()


def write_nifti_gz(path: Path, array: np.ndarray, affine: np.ndarray, description: str = "simcrop-bench") -> None:
    """Atomic gzip NIfTI-1 write, the gzip stream with mtime 0 (reproducible bytes)."""
    data = gzip.compress(nifti_bytes(array, affine, description), compresslevel=GZIP_LEVEL, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_stored_volume(
    path: Path, array: np.ndarray, affine: np.ndarray, store_format: str, description: str = "simcrop-bench"
) -> Path:
    """Write the volume of reference path ``path`` in ``store_format`` (see :mod:`~simcrop_bench.data.formats.stored`)
    and remove its other format, so that a store never holds two versions of one volume; returns the file written."""
    target = with_format(path, store_format)
    if store_format == "nii.gz":
        write_nifti_gz(target, array, affine, description)
    else:
        data = nifti_bytes(array, affine, description)
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    for other in STORE_FORMATS:
        if other != store_format:
            with_format(path, other).unlink(missing_ok=True)
    return target
