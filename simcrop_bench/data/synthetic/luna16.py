"""LUNA16 "synthetic twin" in the SimCroP segmentation layout (datasets.md §5.5, protocol.md §11.3).

Writes ``images/<uid>.nii.gz`` (int16 HU) and ``masks_processed/<uid>.nii.gz`` (uint8: 0 background,
1 left lung, 2 right lung, 3 trachea = raw LUNA16 value − 2), ``dataset_10.json`` / ``dataset_100.json``,
and, outside the real layout, a ``SYNTHETIC.md`` marker plus ``synthetic_meta/`` (per-case specs and a
manifest hashing every file). NIfTI affines are those of a MetaImage → NIfTI conversion: LPS-stored,
axis codes ('L', 'P', 'S'), so a reader must reorient to RAS (left lung then at low axis-0 indices).
"""

from __future__ import annotations

import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ...atomic import write_json, write_text
from ...errors import DataError, UserError
from ..nifti import array_sha256, lps_nifti_affine, write_nifti_gz
from .phantom import DATASET_CODES, GENERATOR_VERSION, ChestCase, RenderedCase, VoxelGrid, render_case, sample_chest_case

UID_PREFIX = "1.3.6.1.4.1.14519.5.2.1.6279.6001.9999"  # + 26 digits: cannot collide with real LIDC UIDs
SEG_LABELS = {"0": "background", "1": "left lung", "2": "right lung", "3": "trachea"}
MANIFEST = "synthetic_meta/manifest.json"
MARKER = "SYNTHETIC.md"
# Nominal field-of-view centre in phantom mm (carina = origin): covers lung apices to the upper abdomen.
FOV_CENTER_MM = (0.0, -5.0, -45.0)
SPLIT_SEED = 42  # sklearn/pandas random_state of the real split files


def synthetic_uid(seed: int, case_index: int) -> str:
    """Deterministic dotted series UID with a ``9999`` + 26-digit suffix."""
    words = np.random.SeedSequence([seed, DATASET_CODES["luna16"], case_index]).generate_state(2, np.uint64)
    number = ((int(words[0]) << 64) | int(words[1])) % 10**26
    return f"{UID_PREFIX}{number:026d}"


def luna16_seg_splits(uids: list[str]) -> dict[str, list[str]]:
    """Mimic the real lists: sklearn ``train_test_split(test_size=0.3, random_state=42)`` at scan level,
    a 10 % training prefix of ``RandomState(42).permutation``, validation = first cases of the test list."""
    n = len(uids)
    n_test = math.ceil(0.3 * n)  # sklearn's expression, float quirks included
    perm = np.random.RandomState(SPLIT_SEED).permutation(n)
    testing = [uids[i] for i in perm[:n_test]]
    training = [uids[i] for i in perm[n_test:]]
    n_ten = min(len(training), max(2, round(0.1 * len(training))))
    training_10 = [training[i] for i in np.random.RandomState(SPLIT_SEED).permutation(len(training))[:n_ten]]
    n_val = min(n_test, max(2, round(26 / 267 * n_test)))  # 26 of 267 in the real files
    return {"training_100": training, "training_10": training_10, "validation": testing[:n_val], "testing": testing}


def write_luna16_twin(
    root: Path,
    *,
    n_cases: int = 30,
    shape: tuple[int, int, int] = (64, 64, 32),
    spacing: tuple[float, float, float] = (5.25, 5.25, 10.5),
    seed: int = 20251128,
) -> dict:
    """Generate the twin under ``root`` and return its manifest. Files are written atomically, the manifest
    last, so :func:`luna16_twin_is_complete` is true only after a finished run."""
    root = Path(root)
    if n_cases < 2:
        raise UserError(f"n_cases must be at least 2 (one training and one test case), got {n_cases}")
    _refuse_real_data(root)
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in spacing)
    uids = [synthetic_uid(seed, i) for i in range(n_cases)]
    if len(set(uids)) != n_cases:
        raise RuntimeError("synthetic UID collision")  # astronomically unlikely; never write ambiguous data

    def render(i: int) -> tuple[ChestCase, VoxelGrid, RenderedCase]:
        case = sample_chest_case(seed, DATASET_CODES["luna16"], i)
        shift = case.acquisition.fov_shift_mm
        origin = tuple(round(c + d - (n - 1) / 2 * s, 3) for c, d, n, s in zip(FOV_CENTER_MM, shift, shape, spacing))
        grid = VoxelGrid(shape, spacing, origin)
        return case, grid, render_case(case, grid)

    with ThreadPoolExecutor(max_workers=2) as pool:  # numpy releases the GIL in the heavy array operations
        rendered = list(pool.map(render, range(n_cases)))
    for uid, (_case, _grid, out) in zip(uids, rendered):
        if not {3, 4, 5} <= set(np.unique(out.labels).tolist()) or not (out.hu > 0).any():
            raise DataError(f"grid {shape} at {spacing} mm misses lung, trachea or body of case {uid}; use a larger field of view")

    write_text(root / MARKER, _marker_text(seed, n_cases, shape, spacing))
    files: dict[str, str] = {}
    cases = []
    for i, (uid, (case, grid, out)) in enumerate(zip(uids, rendered)):
        affine = lps_nifti_affine(spacing, grid.origin)
        mask = np.where(out.labels > 0, out.labels - 2, 0).astype(np.uint8)
        for rel, array in ((f"images/{uid}.nii.gz", out.hu), (f"masks_processed/{uid}.nii.gz", mask)):
            write_nifti_gz(root / rel, array, affine, description="simcrop-bench SYNTHETIC")
            files[rel] = array_sha256(array)
        annotations = [{k: v for k, v in n.items() if k != "side"} for n in out.nodules]
        meta = {
            "synthetic": True, "generator_version": GENERATOR_VERSION, "uid": uid,
            "grid": {"shape": list(shape), "spacing_mm": list(spacing), "lps_offset_mm": list(grid.origin)},
            "case": case.to_dict(),
            "derived": {"luna16": {"label": int(bool(annotations)), "annotations": annotations}},
        }
        files[f"synthetic_meta/{uid}.json"] = _write_json_hashed(root / f"synthetic_meta/{uid}.json", meta)
        cases.append({"uid": uid, "case_index": i, "lps_offset_mm": list(grid.origin), "nodules": out.nodules})

    splits = luna16_seg_splits(uids)
    for name, training in (("dataset_10.json", splits["training_10"]), ("dataset_100.json", splits["training_100"])):
        doc = _decathlon_json(training, splits["validation"], splits["testing"], n_train_full=len(splits["training_100"]))
        files[name] = _write_json_hashed(root / name, doc)

    manifest = {
        "synthetic": True, "generator_version": GENERATOR_VERSION, "dataset": "LUNA16",
        "seed": seed, "n_cases": n_cases, "shape": list(shape), "spacing": list(spacing),
        "splits": {k: len(v) for k, v in splits.items()},
        "cases": cases, "files": files,
    }
    _remove_stale_files(root, set(files))
    write_json(root / MANIFEST, manifest)
    return manifest


def luna16_twin_is_complete(
    root: Path, *, seed: int | None = None, n_cases: int | None = None, shape=None, spacing=None
) -> bool:
    """True if a finished twin of the current generator version (and the given parameters) is at ``root``."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = {"seed": seed, "n_cases": n_cases, "shape": shape, "spacing": spacing}
    if not manifest.get("synthetic") or manifest.get("generator_version") != GENERATOR_VERSION:
        return False
    for key, value in wanted.items():
        if value is not None and manifest.get(key) != (list(value) if isinstance(value, (tuple, list)) else value):
            return False
    return (Path(root) / MARKER).is_file() and all((Path(root) / rel).is_file() for rel in manifest.get("files", {}))


def _decathlon_json(training: list[str], validation: list[str], testing: list[str], *, n_train_full: int) -> dict:
    def pairs(uids: list[str]) -> list[dict[str, str]]:
        return [{"image": f"images/{u}.nii.gz", "label": f"masks_processed/{u}.nii.gz"} for u in uids]

    return {
        "description": "SYNTHETIC LUNA16 lung segmentation twin generated by simcrop-bench (not patient data)",
        "labels": dict(SEG_LABELS),
        "licence": "synthetic data, no restrictions",
        "modality": {"0": "CT"},
        "name": "LUNA16",
        # Like the real files (621/267 in both), the counts describe the full split, not these lists.
        "numTraining": n_train_full,
        "numTest": len(testing),
        "tensorImageSize": "3D",
        "training": pairs(training),
        "validation": pairs(validation),
        "testing": pairs(testing),
    }


def _write_json_hashed(path: Path, obj: dict) -> str:
    text = json.dumps(obj, indent=2) + "\n"
    write_text(path, text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _refuse_real_data(root: Path) -> None:
    """Never write synthetic files into a folder that looks like a real LUNA16 root."""
    real_looking = any((root / p).exists() for p in ("images", "masks_processed", "dataset_10.json", "dataset_100.json"))
    if real_looking and not (root / MARKER).is_file():
        raise DataError(f"{root}: holds LUNA16-style data without a {MARKER} marker; refusing to write a synthetic twin there")


def _remove_stale_files(root: Path, keep: set[str]) -> None:
    """Delete files that an earlier twin's manifest listed and this one does not (only our own files)."""
    try:
        old = json.loads((root / MANIFEST).read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError):
        return
    for rel in old:
        if rel not in keep and ".." not in Path(rel).parts and not Path(rel).is_absolute():
            (root / rel).unlink(missing_ok=True)


def _marker_text(seed: int, n_cases: int, shape, spacing) -> str:
    return (
        "# SYNTHETIC DATA\n\n"
        "Everything under this folder was generated by `simcrop-bench` "
        "(`simcrop_bench.data.synthetic.luna16.write_luna16_twin`). It is an analytic chest phantom laid out like "
        "LUNA16 in the SimCroP segmentation layout; it contains no patient data, and results computed on it "
        "must never be mixed with results on real data.\n\n"
        f"- generator version: {GENERATOR_VERSION}\n- seed: {seed}\n- cases: {n_cases}\n"
        f"- grid: {list(shape)} voxels at {list(spacing)} mm (x, y, z)\n"
        f"- manifest: `{MANIFEST}` (SHA-256 of every decoded array and JSON file)\n"
    )
