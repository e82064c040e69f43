"""Convert the official LUNA16 download into the layout SimCroP's segmentation code reads (datasets.md §5.5).

Official (§5.2): ``subsetK/<uid>.mhd + .raw`` (HU) and ``seg-lungs-LUNA16/<uid>.mhd + .zraw`` (0 background,
3 left lung, 4 right lung, 5 trachea). Output: ``images/<uid>.nii.gz`` (int16 HU) and
``masks_processed/<uid>.nii.gz`` (uint8, raw − 2 for non-zero values: 1 left, 2 right, 3 trachea), both with
the nibabel affine of the image's MetaImage header (LPS-stored, axis codes ('L', 'P', 'S') for the usual
identity direction; the segmentation pipeline reorients and resamples with it), plus SimCroP's
``dataset_10.json`` / ``dataset_100.json`` copied from ``split_files`` or the source root.

Resumable: every output is written atomically, and ``prepare_manifest.json`` records the SHA-256 of each
case's source files (headers and data); a rerun skips cases whose outputs exist and whose sources still hash
the same. A ``SYNTHETIC.md`` marker in the source is carried over, so a converted twin stays marked.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simcrop_bench.data.formats.metaimage import (
    MetaImage,
    data_file_path,
    mhd_to_nifti_affine,
    read_mhd,
    read_mhd_header,
)
from simcrop_bench.data.formats.nifti import array_sha256, write_nifti_gz
from simcrop_bench.data.prepare.manifest import PREPARE_MANIFEST, save_prepare_manifest
from simcrop_bench.errors import DataError
from simcrop_bench.util.atomic import atomic_path, write_text
from simcrop_bench.util.progress import log, progress

PREPARE_VERSION = 1  # bump when the outputs for the same sources change
SEG_LUNGS = "seg-lungs-LUNA16"
SPLIT_FILES = ("dataset_10.json", "dataset_100.json")
MARKER = "SYNTHETIC.md"
RAW_MASK_VALUES = {0, 3, 4, 5}  # background, left lung, right lung, trachea
HEADER_TOLERANCE_MM = 1e-3  # image and mask headers must agree to this (text rounding only)


@dataclass(frozen=True)
class OfficialScan:
    uid: str
    image: Path  # subsetK/<uid>.mhd
    mask: Path  # seg-lungs-LUNA16/<uid>.mhd


def find_official_scans(src_root: Path) -> list[OfficialScan]:
    """Every ``subset*/<uid>.mhd`` with its lung mask, sorted by uid; DataError for gaps and duplicates."""
    src_root = Path(src_root)
    images: dict[str, Path] = {}
    for path in sorted(src_root.glob("subset*/*.mhd")):
        if path.name.startswith("."):
            continue  # temporary or hidden files
        uid = path.name[: -len(".mhd")]  # strip by suffix: uids are full of dots
        if uid in images:
            raise DataError(f"{path}: series {uid} also in {images[uid]}; each scan must be in one subset only")
        images[uid] = path
    if not images:
        raise DataError(
            f"{src_root}: no subset*/<seriesuid>.mhd files; expected the official LUNA16 layout (subset0/ … subset9/)"
        )
    if not (src_root / SEG_LUNGS).is_dir():
        raise DataError(
            f"{src_root / SEG_LUNGS}: missing; the lung masks (seg-lungs-LUNA16.zip) are needed for lung_seg"
        )
    scans = []
    for uid in sorted(images):
        mask = src_root / SEG_LUNGS / f"{uid}.mhd"
        if not mask.is_file():
            raise DataError(f"{mask}: missing lung mask for {images[uid]}")
        scans.append(OfficialScan(uid, images[uid], mask))
    return scans


def convert_official_to_simcrop(
    src_root: Path, dst_root: Path, *, split_files: Path | None = None, workers: int = 2
) -> dict:
    """Convert ``src_root`` (official layout) into ``dst_root`` (SimCroP layout); returns a summary dict.

    ``split_files``: folder holding ``dataset_10.json`` / ``dataset_100.json`` (SimCroP's lists); without it they
    are copied from ``src_root`` when present. ``workers`` threads convert cases in parallel (zlib and gzip
    release the GIL). Any unreadable or inconsistent input raises :class:`DataError` naming the file.
    """
    src_root, dst_root = Path(src_root), Path(dst_root)
    if not src_root.is_dir():
        raise DataError(f"{src_root}: LUNA16 source root does not exist or is not a folder")
    synthetic = (src_root / MARKER).is_file()
    _refuse_mixing(src_root, dst_root, synthetic)
    scans = find_official_scans(src_root)
    split_sources = _split_sources(src_root, dst_root, split_files)

    manifest = _load_manifest(dst_root)
    manifest["source_root"] = str(src_root)
    records: dict[str, dict] = manifest["cases"]
    converted = skipped = 0
    if synthetic and src_root.resolve() != dst_root.resolve():
        text = (src_root / MARKER).read_text(encoding="utf-8")
        write_text(
            dst_root / MARKER,
            text.rstrip("\n") + "\n\nConverted to the SimCroP layout by "
            "`simcrop_bench.data.prepare.luna16.convert_official_to_simcrop` "
            f"(per-case specs and the twin's manifest stay in {src_root}).\n",
        )
    with progress() as bar, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        task = bar.add_task("LUNA16 → SimCroP layout", total=len(scans), status="")
        jobs = {pool.submit(_convert_case, scan, src_root, dst_root, records.get(scan.uid)): scan for scan in scans}
        try:
            for job in as_completed(jobs):
                record, did_convert = job.result()
                records[jobs[job].uid] = record
                converted += did_convert
                skipped += not did_convert
                if did_convert:  # record progress at once, so an interrupted run resumes here
                    save_prepare_manifest(dst_root, manifest)
                bar.update(task, advance=1, status=jobs[job].uid[-12:])
        except BaseException:
            for job in jobs:
                job.cancel()
            save_prepare_manifest(dst_root, manifest)
            raise

    uids = {scan.uid for scan in scans}
    manifest["split_files"] = {}
    missing: set[str] = set()
    for name, source in split_sources.items():
        data = source.read_bytes()
        missing |= _split_uids(source, data) - uids
        if not (dst_root / name).is_file() or (dst_root / name).read_bytes() != data:
            with atomic_path(dst_root / name) as tmp:
                tmp.write_bytes(data)
        manifest["split_files"][name] = hashlib.sha256(data).hexdigest()
    if missing:
        log(
            f"warning: {len(missing)} series listed in the split files are not in {src_root} "
            f"(e.g. {sorted(missing)[0]})"
        )
    save_prepare_manifest(dst_root, manifest)
    return {
        "src_root": str(src_root),
        "dst_root": str(dst_root),
        "synthetic": synthetic,
        "cases": len(scans),
        "converted": converted,
        "skipped": skipped,
        "split_files": sorted(split_sources),
        "split_uids_missing": sorted(missing),
        "manifest": PREPARE_MANIFEST,
    }


def _convert_case(scan: OfficialScan, src_root: Path, dst_root: Path, previous: dict | None) -> tuple[dict, bool]:
    """Convert one scan unless the recorded source hash matches and both outputs exist."""
    outputs = (dst_root / "images" / f"{scan.uid}.nii.gz", dst_root / "masks_processed" / f"{scan.uid}.nii.gz")
    source_sha = _source_sha256(scan.image, scan.mask)
    if previous and previous.get("source_sha256") == source_sha and all(p.is_file() for p in outputs):
        return previous, False

    image, mask = read_mhd(scan.image), read_mhd(scan.mask)
    hu = _hu_array(scan.image, image)
    _check_mask_matches(scan, image, mask)
    values = set(np.unique(mask.array).tolist())
    if not values <= RAW_MASK_VALUES:
        raise DataError(
            f"{scan.mask}: unexpected mask values {sorted(values - RAW_MASK_VALUES)}; LUNA16 lung masks hold 0, 3, 4, 5"
        )
    labels = np.where(mask.array > 0, mask.array.astype(np.int16) - 2, 0).astype(np.uint8)
    # The image header defines the affine of both outputs, so image and label grids match exactly.
    affine = mhd_to_nifti_affine(image.spacing, image.offset, image.direction)
    write_nifti_gz(outputs[0], hu, affine, description="simcrop-bench from LUNA16 MetaImage")
    write_nifti_gz(outputs[1], labels, affine, description="simcrop-bench from LUNA16 seg-lungs")
    record = {
        "subset": scan.image.parent.name,
        "source_sha256": source_sha,
        "image": f"images/{scan.uid}.nii.gz",
        "image_sha256": array_sha256(hu),
        "label": f"masks_processed/{scan.uid}.nii.gz",
        "label_sha256": array_sha256(labels),
        "shape": list(hu.shape),
        "spacing": list(image.spacing),
        "lps_offset_mm": list(image.offset),
    }
    return record, True


def _hu_array(path: Path, image: MetaImage) -> np.ndarray:
    """The image as int16 HU; other integer types are accepted when every value fits."""
    array = image.array
    if array.dtype == np.int16:
        return array
    if not np.issubdtype(array.dtype, np.integer) or (array.size and (array.min() < -32768 or array.max() > 32767)):
        raise DataError(
            f"{path}: ElementType {image.element_type} does not hold int16 HU values (LUNA16 uses MET_SHORT)"
        )
    return array.astype(np.int16)


def _check_mask_matches(scan: OfficialScan, image: MetaImage, mask: MetaImage) -> None:
    if mask.array.shape != image.array.shape:
        raise DataError(
            f"{scan.mask}: DimSize {mask.array.shape} differs from the image's {image.array.shape} ({scan.image})"
        )
    for what, a, b in (
        ("ElementSpacing", mask.spacing, image.spacing),
        ("Offset", mask.offset, image.offset),
        ("TransformMatrix", mask.direction.ravel(), image.direction.ravel()),
    ):
        if not np.allclose(a, b, rtol=0, atol=HEADER_TOLERANCE_MM):
            raise DataError(
                f"{scan.mask}: {what} {tuple(np.round(a, 4))} differs from the image's "
                f"{tuple(np.round(b, 4))} ({scan.image})"
            )
    if not np.issubdtype(mask.array.dtype, np.integer):
        raise DataError(f"{scan.mask}: ElementType {mask.element_type} is not an integer label type")


def _source_sha256(*headers: Path) -> str:
    """SHA-256 over each header's bytes and its data file's bytes (streamed: real volumes are large)."""
    digest = hashlib.sha256()
    for header in headers:
        data = data_file_path(header, read_mhd_header(header))
        for path in (header, data):
            try:
                with open(path, "rb") as stream:
                    while chunk := stream.read(1 << 24):
                        digest.update(chunk)
            except OSError as exc:
                raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def _split_sources(src_root: Path, dst_root: Path, split_files: Path | None) -> dict[str, Path]:
    if split_files is not None:
        folder = Path(split_files)
        found = {n: folder / n for n in SPLIT_FILES if (folder / n).is_file()}
        if not found:
            raise DataError(f"{folder}: holds neither {' nor '.join(SPLIT_FILES)}")
        return found
    if src_root.resolve() == dst_root.resolve():
        return {}  # already in place
    return {n: src_root / n for n in SPLIT_FILES if (src_root / n).is_file()}


def _split_uids(path: Path, data: bytes) -> set[str]:
    """Series uids named by a decathlon-style split file (validated, so a broken file fails here, not in training)."""
    try:
        doc = json.loads(data)
        entries = [e for key in ("training", "validation", "testing") for e in doc.get(key, [])]
        names = [Path(e["image"]).name for e in entries]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DataError(
            f"{path}: not a decathlon-style split file ({type(exc).__name__}: {exc})".splitlines()[0]
        ) from None
    return {n[: -len(".nii.gz")] for n in names if n.endswith(".nii.gz")}


def _refuse_mixing(src_root: Path, dst_root: Path, synthetic: bool) -> None:
    """Never let real and synthetic volumes share a root (results on them must never be mixed)."""
    dst_marked = (dst_root / MARKER).is_file()
    if dst_marked and not synthetic and src_root.resolve() != dst_root.resolve():
        raise DataError(
            f"{dst_root}: is marked {MARKER} (synthetic) but {src_root} is real data; choose another destination"
        )
    has_data = any((dst_root / d).is_dir() for d in ("images", "masks_processed"))
    if synthetic and has_data and not dst_marked:
        raise DataError(
            f"{dst_root}: holds unmarked (real) volumes but {src_root} is synthetic; choose another destination"
        )


def _load_manifest(dst_root: Path) -> dict:
    path = dst_root / PREPARE_MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"version": PREPARE_VERSION, "cases": {}}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); delete it to convert everything again".splitlines()[0]) from None
    if manifest.get("version") != PREPARE_VERSION or not isinstance(manifest.get("cases"), dict):
        return {"version": PREPARE_VERSION, "cases": {}}  # older converter: redo every case
    return manifest
