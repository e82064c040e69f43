"""Convert the official CT-RATE download into the store SimCroP's classification code reads (datasets.md §2.5, §2.8).

Source: v2 ``{train,valid}_fixed/<split>_<pid>/<split>_<pid>_<scan>/<VolumeName>`` (int16 HU, correct LPS header;
the default) or v1 ``{train,valid}/…`` (stored values; HU = RescaleSlope · stored + RescaleIntercept from the metadata
CSV, applied exactly once by :func:`~simcrop_bench.data.ctrate.read_ctrate_official_volume`; spacing from
``XYSpacing``/``ZSpacing``; the header is a default, so the array is assumed stored like v2, axis codes
('L', 'P', 'S'), with the LPS origin from ``ImagePositionPatient``; recorded in the manifest).

Output: ``{train,valid}_preprocessed/<split>_<pid>/<split>_<pid><scan>/<VolumeName>`` (no underscore before the scan
letter; ``.nii`` for ``.nii.gz`` in the default uncompressed store, :mod:`~simcrop_bench.data.formats.stored`),
int16 HU, **RAS-stored** (the classification reader ignores the affine, §1.4) with the matching RAS affine in the
header, optionally resampled (MONAI ``Spacing``, bilinear) to ``spacing`` = (x, y, z) mm. HU are not clipped: the
pipeline clips to [−1000, 1000] itself. ``prepare_manifest.json`` records the conventions and, per volume, the source
stamp (size, mtime) and settings; a rerun skips volumes whose stamp, settings and output are unchanged. Cases run in
this process, in local worker processes or as array shards (:mod:`~simcrop_bench.data.prepare.cases`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from simcrop_bench.data.ctrate import (
    VERSIONS,
    official_volume_path,
    parse_volume_name,
    read_ctrate_official_volume,
    read_metadata_row,
    simcrop_volume_path,
)
from simcrop_bench.data.formats.nifti import lps_nifti_affine, write_stored_volume
from simcrop_bench.data.formats.stored import DEFAULT_STORE_FORMAT, STORE_FORMATS, with_format
from simcrop_bench.data.prepare.cases import Case, Distribution, run_cases
from simcrop_bench.data.prepare.manifest import PREPARE_MANIFEST, copy_marker, load_prepare_manifest, source_stamp
from simcrop_bench.errors import DataError
from simcrop_bench.util.hashing import file_sha256

SPLITS = ("train", "valid")
INTENSITY = "int16 HU, not clipped (v1: RescaleSlope * stored + RescaleIntercept applied once; v2: as stored)"


# ---------------------------------------------------------------- geometry


def to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact reorientation (axis permutation and flips only) to axis codes ('R', 'A', 'S'), with the new affine.

    The copy is x-fastest (Fortran order), as NIfTI stores voxels and nibabel decodes them: no transposition here
    nor when the result is written (each costs about as much as decoding a CT-RATE volume, ``bench prepare``)."""
    current = nib.orientations.io_orientation(affine)
    transform = nib.orientations.ornt_transform(current, nib.orientations.axcodes2ornt(("R", "A", "S")))
    ras = nib.orientations.apply_orientation(array, transform)
    return np.asfortranarray(ras), affine @ nib.orientations.inv_ornt_aff(transform, array.shape)


def resample_hu(array: np.ndarray, affine: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear resampling of a RAS array to ``spacing`` mm with MONAI ``Spacing``; rounded back to int16 HU."""
    import torch  # heavy imports only when resampling is asked for
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    image = MetaTensor(
        torch.from_numpy(array.astype(np.float32))[None], affine=torch.as_tensor(affine, dtype=torch.float64)
    )
    out = Spacing(pixdim=tuple(float(s) for s in spacing), mode="bilinear", padding_mode="border")(image)
    data = np.rint(out[0].numpy()).clip(-32768, 32767).astype(np.int16)
    return data, np.asarray(out.affine, dtype=np.float64)


# ---------------------------------------------------------------- conversion


def find_official_volumes(src_root: Path, version: str) -> list[str]:
    """Volume names of the chosen version's tree, sorted; names are validated by the reader's parser."""
    names = []
    for split in SPLITS:
        for path in sorted((Path(src_root) / f"{split}{VERSIONS[version]}").glob(f"{split}_*/{split}_*_*/*.nii.gz")):
            if not path.name.startswith("."):
                parse_volume_name(path.name)
                names.append(path.name)
    if not names:
        folders = " and ".join(f"{s}{VERSIONS[version]}/" for s in SPLITS)
        raise DataError(f"{src_root}: no volumes under {folders}; expected the official CT-RATE layout ({version})")
    return names


def _lps_origin(src_root: Path, name: str) -> tuple[float, float, float]:
    """v1 origin from ``ImagePositionPatient`` (LPS mm); (0, 0, 0) when the column is absent or unparsable."""
    text = read_metadata_row(src_root, name).get("ImagePositionPatient", "")
    try:
        values = [float(v) for v in text.strip().strip("[]").split(",") if v.strip()]
    except ValueError:
        values = []
    return tuple(values[:3]) if len(values) >= 3 else (0.0, 0.0, 0.0)


def _read_source(src_root: Path, name: str, version: str) -> tuple[np.ndarray, np.ndarray]:
    """(int16 HU array as stored, its true affine)."""
    hu, spacing = read_ctrate_official_volume(src_root, name, version)
    if hu.ndim != 3:
        raise DataError(f"{official_volume_path(src_root, name, version)}: expected a 3-D volume, got shape {hu.shape}")
    if version == "v2":
        return hu, nib.load(str(official_volume_path(src_root, name, version))).affine
    # v1 headers are defaults: the array is assumed stored like v2 (axis codes L, P, S, as DICOM is stored).
    return hu, lps_nifti_affine(spacing, _lps_origin(src_root, name))


@dataclass(frozen=True)
class _Conversion:
    """What every CT-RATE case needs (picklable: it travels to worker processes and array tasks)."""

    src_root: Path
    dst_root: Path
    version: str
    spacing: tuple[float, ...] | None
    store_format: str

    def __call__(self, case: Case) -> dict:
        (name,) = case.args
        hu, affine = _read_source(self.src_root, name, self.version)
        ras, ras_aff = to_ras(hu, affine)
        if self.spacing is not None:
            ras, ras_aff = resample_hu(ras, ras_aff, self.spacing)
        description = f"simcrop-bench CT-RATE {self.version} RAS int16 HU"
        output = write_stored_volume(
            simcrop_volume_path(self.dst_root, name), ras, ras_aff, self.store_format, description
        )
        return {
            "output": str(output.relative_to(self.dst_root)),
            "shape": list(ras.shape),
            "spacing_mm": [float(v) for v in nib.affines.voxel_sizes(ras_aff)],
            "file_sha256": file_sha256(output),  # what `sha256sum` prints; hashing the array cost a transposed copy
        }


def convert_ctrate_official_to_simcrop(
    src_root: Path,
    dst_root: Path,
    *,
    version: str = "v2",
    spacing: Sequence[float] | None = None,
    store_format: str = DEFAULT_STORE_FORMAT,
    distribution: Distribution | None = None,
) -> dict:
    """Convert every volume of the official ``version`` tree into ``dst_root``; returns a summary dict."""
    src_root, dst_root = Path(src_root), Path(dst_root)
    if version not in VERSIONS:
        raise DataError(f"CT-RATE version must be 'v1' or 'v2', not {version!r}")
    if store_format not in STORE_FORMATS:
        raise DataError(f"store format must be one of {', '.join(STORE_FORMATS)}, not {store_format!r}")
    if not src_root.is_dir():
        raise DataError(f"{src_root}: CT-RATE source root does not exist or is not a folder")
    names = find_official_volumes(src_root, version)
    settings = {
        "source_version": version,
        "spacing_mm": list(map(float, spacing)) if spacing is not None else "source",
        "orientation": "RAS-stored (axis codes R, A, S)",
        "intensity": INTENSITY,
        "v1_assumed_axcodes": ["L", "P", "S"] if version == "v1" else None,
        "resampling": "MONAI Spacing, bilinear, border padding, rounded to int16" if spacing is not None else None,
        "store_format": store_format,
    }
    manifest = load_prepare_manifest(dst_root, settings)
    manifest["source_root"] = str(src_root)
    synthetic = copy_marker(src_root, dst_root, "simcrop_bench.data.prepare.ctrate.convert_ctrate_official_to_simcrop")
    cases = [
        Case(
            name,
            with_format(simcrop_volume_path(dst_root, name), store_format),
            source_stamp(official_volume_path(src_root, name, version)),
            (name,),
        )
        for name in names
    ]
    conversion = _Conversion(src_root, dst_root, version, tuple(map(float, spacing)) if spacing else None, store_format)
    converted = run_cases(
        conversion, cases, dst_root, manifest, distribution or Distribution(), "CT-RATE → preprocessed"
    )
    return {
        "src_root": str(src_root),
        "dst_root": str(dst_root),
        "synthetic": synthetic,
        "version": version,
        "cases": len(names),
        "converted": converted,
        "skipped": len(names) - converted,
        "spacing_mm": settings["spacing_mm"],
        "store_format": store_format,
        "manifest": PREPARE_MANIFEST,
    }
