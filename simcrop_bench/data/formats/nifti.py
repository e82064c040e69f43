"""NIfTI helpers shared by the synthetic writers and the prediction savers."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np

from simcrop_bench.util.atomic import atomic_path


def lps_nifti_affine(spacing, origin) -> np.ndarray:
    """nibabel (RAS) affine of an identity-direction MetaImage with LPS ``Offset`` = origin (datasets.md §1.1)."""
    (sx, sy, sz), (ox, oy, oz) = spacing, origin
    return np.array([[-sx, 0, 0, -ox], [0, -sy, 0, -oy], [0, 0, sz, oz], [0, 0, 0, 1]], dtype=np.float64)


def array_sha256(array: np.ndarray) -> str:
    """Hash of a decoded volume: C-ordered bytes of the (x, y, z) array in its stored dtype."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def write_nifti_gz(path: Path, array: np.ndarray, affine: np.ndarray, description: str = "simcrop-bench") -> None:
    """Atomic NIfTI-1 write with qform/sform (code 1, scanner) and a gzip stream with mtime 0 (reproducible bytes)."""
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = description.encode()[:79]
    data = gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
