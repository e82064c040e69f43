"""``data check`` for LUNA16 in the SimCroP layout (``images/``, ``masks_processed/``, split JSONs, and the
``luna16_cls`` split CSVs when the root holds them)."""

from __future__ import annotations

from pathlib import Path

from simcrop_bench.data.check.root import CheckReport, check_decathlon, require_root
from simcrop_bench.data.luna16 import SEG_SPLIT_FILES

LUNG_LABELS = (0, 1, 2, 3)
SPLIT_KEYS = ("training", "validation", "testing")


def check_luna16_simcrop(root: Path) -> CheckReport:
    from simcrop_bench.data.check.classification import check_listed_volumes_exist, check_split_csvs

    report = check_decathlon(
        root, "luna16", tuple(SEG_SPLIT_FILES.values()), SPLIT_KEYS, LUNG_LABELS, ("images", "masks_processed")
    )
    tables = check_split_csvs(root, "luna16_cls", report)
    # Images the JSONs list were checked above; a classification-only scan only needs to exist.
    listed = _json_images(root)
    check_listed_volumes_exist(
        root, tables, lambda r, i: r / "images" / i, report, reported=lambda path: path.resolve() in listed
    )
    if tables:  # scans only the classification lists name (one on real data, §3) are not "extra" files
        ids = {i for t in tables.values() for i in t.ids}
        report.problems[:] = [
            p for p in report.problems if not (p.message == "not listed in any split file" and Path(p.file).name in ids)
        ]
    return report


def _json_images(root: Path) -> set[Path]:
    import json

    images: set[Path] = set()
    for name in SEG_SPLIT_FILES.values():
        try:
            doc = json.loads((root / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # reported by check_decathlon
        for key in SPLIT_KEYS:
            entries = doc.get(key) if isinstance(doc, dict) else None
            images |= {
                (root / e["image"]).resolve()
                for e in entries or []
                if isinstance(e, dict) and isinstance(e.get("image"), str)
            }
    return images


RAW_MASK_VALUES = (0, 3, 4, 5)
ANNOTATION_COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]


def check_luna16_official(root: Path) -> CheckReport:
    """``subsetK/*.mhd`` + ``seg-lungs-LUNA16/*.mhd`` + ``CSVFILES/annotations.csv``."""
    import csv

    import numpy as np

    from simcrop_bench.data.formats.metaimage import read_mhd
    from simcrop_bench.errors import DataError

    require_root(root)
    report = CheckReport("luna16", "official", root)
    images = {p.name[: -len(".mhd")]: p for p in sorted(root.glob("subset*/*.mhd"))}
    masks = {p.name[: -len(".mhd")]: p for p in sorted((root / "seg-lungs-LUNA16").glob("*.mhd"))}
    if not images:
        report.add(root, "no subset*/<seriesuid>.mhd files")

    def read(path: Path):
        try:
            return read_mhd(path)
        except DataError as exc:
            report.add(*_file_and_message(exc))
            return None

    for uid, path in images.items():
        image = read(path)
        if image is not None:
            report.counts["images"] += 1
            report.shapes[image.array.shape] += 1
            report.spacings[tuple(round(float(s), 3) for s in image.spacing)] += 1
            if np.issubdtype(image.array.dtype, np.floating) and not np.isfinite(image.array).all():
                report.add(path, "NaN or infinite voxels")
        if uid not in masks:
            report.add(root / "seg-lungs-LUNA16" / f"{uid}.mhd", "lung mask is missing")
            continue
        mask = read(masks[uid])  # checked even when its image is unreadable: report every problem
        if mask is None:
            continue
        report.counts["masks"] += 1
        if image is not None and mask.array.shape != image.array.shape:
            report.add(masks[uid], f"shape {mask.array.shape} differs from its image {image.array.shape}")
        values = {int(v) for v in np.unique(mask.array)}
        report.label_values |= values
        if values - set(RAW_MASK_VALUES):
            report.add(
                masks[uid],
                f"unknown label values {sorted(values - set(RAW_MASK_VALUES))} (allowed {list(RAW_MASK_VALUES)})",
            )
    for uid in sorted(set(masks) - set(images)):
        report.add(masks[uid], "lung mask without a scan in any subset")
    annotations = root / "CSVFILES" / "annotations.csv"
    if not annotations.is_file():
        report.add(annotations, "annotation file is missing")
        return report
    with open(annotations, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0] != ANNOTATION_COLUMNS:
        report.add(annotations, f"header {rows[0] if rows else []} is not {','.join(ANNOTATION_COLUMNS)}")
        return report
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(ANNOTATION_COLUMNS):
            report.add(annotations, f"line {line}: expected {len(ANNOTATION_COLUMNS)} columns, got {len(row)}")
        elif row[0] not in images:
            report.add(annotations, f"line {line}: series {row[0]} is not in any subset")
    report.counts["annotations"] = len(rows) - 1
    return report


def _file_and_message(exc: Exception) -> tuple[str, str]:
    # DataErrors read "<file>: <problem>"; the file may be the header or its data file.
    file, _, message = str(exc).partition(": ")
    return file, message
