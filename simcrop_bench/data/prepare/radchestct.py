"""Convert RAD-ChestCT ``.npz`` volumes into the NIfTI store SimCroP reads (datasets.md §3.3, §3.6).

Source: ``<src>/images/<NoteAcc_DEID>.npz`` (key ``ct``, int16 HU clipped to [−1000, 1000], ``[slices, rows, cols]``,
0.8 mm isotropic, no affine). Output: ``<dst>/images/<NoteAcc_DEID>.nii.gz`` (``.nii`` in the default uncompressed
store, :mod:`~simcrop_bench.data.formats.stored`), int16 HU, **RAS-stored** (the
classification reader ignores the affine, §1.4). The real axis directions are unverified (§3.3), so the permutation
and flips are arguments (``transpose``, ``flip``; defaults = our twin's convention, see
:func:`~simcrop_bench.data.radchestct.npz_to_ras`) and are recorded in ``prepare_manifest.json``.

Affine: diagonal at the source spacing (0.8 mm, or the grid recorded by a synthetic twin in
``synthetic_meta/<id>.json``, whose LPS origin is then used too; otherwise the volume is centred on the origin, as
the ``.npz`` stores none). ``spacing`` optionally resamples (MONAI ``Spacing``, bilinear) to a benchmark spacing.
Resumable: a rerun skips volumes whose source stamp, settings and output are unchanged; cases run in this process,
in worker processes or as array shards (:mod:`~simcrop_bench.data.prepare.cases`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel.affines import voxel_sizes

from simcrop_bench.data.formats.nifti import write_stored_volume
from simcrop_bench.data.formats.stored import DEFAULT_STORE_FORMAT, STORE_FORMATS, with_format
from simcrop_bench.data.prepare.cases import Case, Distribution, run_cases
from simcrop_bench.data.prepare.ctrate import resample_hu
from simcrop_bench.data.prepare.manifest import PREPARE_MANIFEST, copy_marker, load_prepare_manifest, source_stamp
from simcrop_bench.data.radchestct import npz_to_ras, read_radchestct_npz
from simcrop_bench.errors import DataError
from simcrop_bench.util.hashing import file_sha256

SOURCE_SPACING_MM = (0.8, 0.8, 0.8)  # datasets.md §3.3 (reported)
INTENSITY = "int16 HU as stored in the .npz (clipped to [-1000, 1000] by the source)"


def find_npz_volumes(src_root: Path) -> list[Path]:
    paths = sorted(p for p in (Path(src_root) / "images").glob("*.npz") if not p.name.startswith("."))
    if not paths:
        raise DataError(f"{Path(src_root) / 'images'}: no <NoteAcc_DEID>.npz files; expected the RAD-ChestCT layout")
    return paths


def _twin_grid(src_root: Path, note_acc: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(spacing, LPS origin) recorded by the synthetic twin for this volume, or None for real data."""
    path = Path(src_root) / "synthetic_meta" / f"{note_acc}.json"
    if not path.is_file():
        return None
    try:
        grid = json.loads(path.read_text(encoding="utf-8"))["grid"]
        return tuple(map(float, grid["spacing_mm"])), tuple(map(float, grid["lps_offset_mm"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable twin metadata ({type(exc).__name__}: {exc})") from None


def ras_affine(shape: Sequence[int], spacing: Sequence[float], lps_origin: Sequence[float] | None) -> np.ndarray:
    """Affine of a RAS-stored array; RAS voxel 0 is LPS voxel (nx−1, ny−1, 0) of a grid at ``lps_origin``.

    Without an origin the grid is centred on (0, 0, 0): orientation and spacing are what the readers rely on.
    """
    (nx, ny, _), (sx, sy, sz) = shape, spacing
    if lps_origin is None:
        t = [-(n - 1) / 2 * s for n, s in zip(shape, spacing)]
    else:
        ox, oy, oz = lps_origin
        t = [-(ox + (nx - 1) * sx), -(oy + (ny - 1) * sy), oz]
    return np.array([[sx, 0, 0, t[0]], [0, sy, 0, t[1]], [0, 0, sz, t[2]], [0, 0, 0, 1]], dtype=np.float64)


def _floats(values: Sequence[float] | None) -> tuple[float, ...] | None:
    return tuple(map(float, values)) if values is not None else None


@dataclass(frozen=True)
class _Conversion:
    """What every RadChestCT case needs (picklable: it travels to worker processes and array tasks)."""

    src_root: Path
    dst_root: Path
    transpose: tuple[int, ...]
    flip: tuple[bool, ...]
    source_spacing: tuple[float, ...] | None
    spacing: tuple[float, ...] | None
    store_format: str

    def __call__(self, case: Case) -> dict:
        (source,) = case.args
        note_acc = source.name[: -len(".npz")]
        ct = read_radchestct_npz(source)
        if not np.issubdtype(ct.dtype, np.integer) or (ct.size and (ct.min() < -32768 or ct.max() > 32767)):
            raise DataError(f"{source}: 'ct' has dtype {ct.dtype} / range outside int16; expected int16 HU")
        ras = npz_to_ras(ct.astype(np.int16, copy=False), transpose=self.transpose, flip=self.flip)
        twin = _twin_grid(self.src_root, note_acc) if self.source_spacing is None else None
        voxel = self.source_spacing if self.source_spacing is not None else twin[0] if twin else SOURCE_SPACING_MM
        affine = ras_affine(ras.shape, voxel, twin[1] if twin else None)
        if self.spacing is not None:
            ras, affine = resample_hu(ras, affine, self.spacing)
        reference = self.dst_root / "images" / f"{note_acc}.nii.gz"
        output = write_stored_volume(reference, ras, affine, self.store_format, "simcrop-bench RadChestCT RAS int16 HU")
        return {
            "output": f"images/{output.name}",
            "shape": list(ras.shape),
            "spacing_mm": [float(v) for v in voxel_sizes(affine)],
            "spacing_from": "argument" if self.source_spacing is not None else "twin" if twin else "0.8 mm default",
            "file_sha256": file_sha256(output),  # what `sha256sum` prints; hashing the array cost a transposed copy
        }


def convert_radchestct_npz_to_simcrop(
    src_root: Path,
    dst_root: Path,
    *,
    transpose: Sequence[int] = (2, 1, 0),
    flip: Sequence[bool] = (True, True, True),
    source_spacing: Sequence[float] | None = None,
    spacing: Sequence[float] | None = None,
    store_format: str = DEFAULT_STORE_FORMAT,
    distribution: Distribution | None = None,
) -> dict:
    """Convert every ``images/<id>.npz`` under ``src_root`` into ``dst_root/images/<id>.nii.gz``; returns a summary.

    ``transpose``/``flip``: ``[slices, rows, cols]`` → RAS (x, y, z), as :func:`npz_to_ras` applies them.
    ``source_spacing``: (x, y, z) mm of the RAS array (default: the twin's recorded grid, else 0.8 mm isotropic).
    ``spacing``: resample to this (x, y, z) mm; None keeps the source spacing.
    """
    src_root, dst_root = Path(src_root), Path(dst_root)
    transpose, flip = tuple(int(a) for a in transpose), tuple(bool(f) for f in flip)
    if sorted(transpose) != [0, 1, 2] or len(flip) != 3:
        raise DataError(
            f"transpose must be a permutation of (0, 1, 2) and flip three booleans, got {transpose}, {flip}"
        )
    volumes = find_npz_volumes(src_root)
    settings = {
        "npz_to_ras": {"transpose": list(transpose), "flip": list(flip)},
        "orientation": "RAS-stored (axis codes R, A, S)",
        "source_spacing_mm": list(map(float, source_spacing)) if source_spacing is not None else "twin-recorded or 0.8",
        "spacing_mm": list(map(float, spacing)) if spacing is not None else "source",
        "intensity": INTENSITY,
        "store_format": store_format,
    }
    if store_format not in STORE_FORMATS:
        raise DataError(f"store format must be one of {', '.join(STORE_FORMATS)}, not {store_format!r}")
    manifest = load_prepare_manifest(dst_root, settings)
    manifest["source_root"] = str(src_root)
    synthetic = copy_marker(
        src_root, dst_root, "simcrop_bench.data.prepare.radchestct.convert_radchestct_npz_to_simcrop"
    )
    cases = [
        Case(
            source.name[: -len(".npz")],
            with_format(dst_root / "images" / source.name.replace(".npz", ".nii.gz"), store_format),
            source_stamp(source),
            (source,),
        )
        for source in volumes
    ]
    floats = lambda values: tuple(map(float, values)) if values is not None else None  # noqa: E731
    conversion = _Conversion(src_root, dst_root, transpose, flip, floats(source_spacing), floats(spacing), store_format)
    converted = run_cases(conversion, cases, dst_root, manifest, distribution or Distribution(), "RadChestCT → NIfTI")
    return {
        "src_root": str(src_root),
        "dst_root": str(dst_root),
        "synthetic": synthetic,
        "cases": len(volumes),
        "converted": converted,
        "skipped": len(volumes) - converted,
        "transpose": list(transpose),
        "flip": list(flip),
        "manifest": PREPARE_MANIFEST,
    }
