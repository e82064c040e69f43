"""BTCV "synthetic twin" in the official and the SimCroP/MONAI layouts (datasets.md §6, §7.9, §7.13).

Official tree (``layout="official"``)::

    RawData/Training/img/img00NN.nii.gz     RawData/Training/label/label00NN.nii.gz
    RawData/Testing/img/img00NN.nii.gz

SimCroP/MONAI tree (``layout="simcrop"``), as in the UNETR ``dataset_0.json`` split::

    imagesTr/btcv_0NN.nii.gz   labelsTr/btcv_0NN.nii.gz   imagesTs/img00NN.nii.gz   dataset.json

``layout="both"`` (default) writes both trees, with identical arrays and affines for the same case. Case
numbers are the real ones: training img0001–0010 and img0021–0040, testing img0061–0080; ``dataset.json``
trains on btcv_001–010 + 021–034 and validates on btcv_035–040. Smaller twins (``n_train < 30``) keep the
real numbering and proportions: ``n_val = max(1, round(n_train / 5))`` validation cases taken from
btcv_035 upwards, the other ``n_train - n_val`` from the start of the training numbers (001, 002, …), and
the first ``n_test`` testing numbers. A case's seed stream is keyed by its number, so a case renders the same
in every twin size.

Images are int16 HU, labels uint8 0–13, NIfTI affines LPS-stored (axis codes L, P, S), gzip with mtime 0.
Outside the real layout: a ``SYNTHETIC.md`` marker and ``synthetic_meta/`` (one case-spec JSON per case and
``manifest.json`` with a hash of every file's decoded array), the manifest written last.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from simcrop_bench.data.btcv import (
    LABEL_NAMES,
    TEST_NUMBERS,
    TRAIN_NUMBERS,
    VALIDATION_NUMBERS,
    official_paths,
    simcrop_paths,
)
from simcrop_bench.data.formats.nifti import array_sha256, lps_nifti_affine, write_nifti_gz
from simcrop_bench.data.synthetic.abdomen import (
    ABDOMEN_GENERATOR_VERSION,
    LABEL_VALUES,
    AbdomenCase,
    RenderedAbdomen,
    render_abdomen,
    sample_abdomen_case,
)
from simcrop_bench.data.synthetic.phantom import VoxelGrid
from simcrop_bench.errors import DataError, UserError
from simcrop_bench.util.atomic import atomic_path, write_json, write_text

LAYOUTS = ("both", "official", "simcrop")
SPLIT_FILE = "dataset.json"
MANIFEST = "synthetic_meta/manifest.json"
MARKER = "SYNTHETIC.md"
# 64 × 64 × 32 at 5.5 × 5.5 × 8 mm = 352 × 352 × 256 mm: the whole torso in-plane, liver dome to the lower
# poles of the kidneys in z; every organ, adrenals and esophagus included, keeps at least ~10 voxels.
DEFAULT_SHAPE = (64, 64, 32)
DEFAULT_SPACING = (5.5, 5.5, 8.0)
FOV_CENTER_MM = (0.0, 5.0, 5.0)  # nominal field-of-view centre in phantom mm (origin ≈ renal hila)
REAL_LOOKING = ("RawData", "imagesTr", "labelsTr", "imagesTs", SPLIT_FILE)


def btcv_case_numbers(n_train: int = 30, n_test: int = 20) -> dict[str, list[int]]:
    """Case numbers per split: ``training`` and ``validation`` (labelled) and ``test`` (unlabelled)."""
    if not 2 <= n_train <= len(TRAIN_NUMBERS):
        raise UserError(f"n_train must be between 2 and {len(TRAIN_NUMBERS)} (real BTCV numbering), got {n_train}")
    if not 0 <= n_test <= len(TEST_NUMBERS):
        raise UserError(f"n_test must be between 0 and {len(TEST_NUMBERS)}, got {n_test}")
    n_val = max(1, round(n_train * len(VALIDATION_NUMBERS) / len(TRAIN_NUMBERS)))
    training = [n for n in TRAIN_NUMBERS if n not in VALIDATION_NUMBERS][: n_train - n_val]
    return {"training": training, "validation": list(VALIDATION_NUMBERS[:n_val]), "test": list(TEST_NUMBERS[:n_test])}


def case_grid(case: AbdomenCase, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> VoxelGrid:
    """The case's scan grid: nominal field of view moved by the case's patient-position shift."""
    shift = case.acquisition.fov_shift_mm
    origin = tuple(round(c + d - (n - 1) / 2 * s, 3) for c, d, n, s in zip(FOV_CENTER_MM, shift, shape, spacing))
    return VoxelGrid(shape, spacing, origin)


def write_btcv_twin(
    root: Path,
    *,
    n_train: int = 30,
    n_test: int = 20,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] = DEFAULT_SPACING,
    seed: int = 20251128,
    layout: str = "both",
) -> dict:
    """Generate the twin under ``root`` and return its manifest (written last, so
    :func:`btcv_twin_is_complete` is true only after a finished run). Same arguments → byte-identical files."""
    root = Path(root)
    if layout not in LAYOUTS:
        raise UserError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    numbers = btcv_case_numbers(n_train, n_test)
    _refuse_real_data(root)
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in spacing)
    trees = (
        [official_paths, simcrop_paths]
        if layout == "both"
        else [official_paths if layout == "official" else simcrop_paths]
    )
    previous = _previous_files(root)
    (root / MANIFEST).unlink(missing_ok=True)  # an overwrite in progress never looks complete

    def render(item: tuple[str, int]) -> tuple[str, int, AbdomenCase, VoxelGrid, RenderedAbdomen]:
        split, number = item
        case = sample_abdomen_case(seed, number)
        grid = case_grid(case, shape, spacing)
        return split, number, case, grid, render_abdomen(case, grid)

    def write(item: tuple[str, int, AbdomenCase, VoxelGrid, RenderedAbdomen]) -> dict[str, str]:
        split, number, case, grid, out = item
        labelled = split != "test"
        affine = lps_nifti_affine(spacing, grid.origin)
        arrays = {"image": out.hu, "label": out.labels}
        hashes = {}
        first: dict[str, Path] = {}  # kind -> file of the first tree; other trees get the same bytes
        for paths in trees:
            for kind, rel in paths(number, labelled).items():
                if kind in first:
                    with atomic_path(root / rel) as tmp:
                        shutil.copyfile(first[kind], tmp)
                else:
                    write_nifti_gz(root / rel, arrays[kind], affine, description="simcrop-bench SYNTHETIC")
                    first[kind] = root / rel
                hashes[rel] = array_sha256(arrays[kind])
        counts = np.bincount(out.labels.ravel(), minlength=len(LABEL_VALUES))
        meta = {
            "synthetic": True,
            "generator_version": ABDOMEN_GENERATOR_VERSION,
            "case_number": number,
            "split": split,
            "files": list(hashes),
            "grid": {"shape": list(shape), "spacing_mm": list(spacing), "lps_offset_mm": list(grid.origin)},
            "case": case.to_dict(),
            "derived": {"label_voxels": {str(k): int(c) for k, c in enumerate(counts)}, "labels_written": labelled},
        }
        rel = f"synthetic_meta/img{number:04d}.json"
        hashes[rel] = _write_json_hashed(root / rel, meta)
        return hashes

    items = [(split, n) for split, split_numbers in numbers.items() for n in split_numbers]
    with ThreadPoolExecutor(max_workers=2) as pool:  # numpy and zlib release the GIL
        # Render and check every case before writing anything: a grid that loses a class fails cleanly.
        rendered = list(pool.map(render, items))
        for _split, number, _case, _grid, out in rendered:
            _check_case(out, number, shape, spacing)
        write_text(root / MARKER, _marker_text(seed, numbers, shape, spacing, layout))
        files: dict[str, str] = {}
        for hashes in pool.map(write, rendered):  # map keeps case order: the manifest is deterministic
            files.update(hashes)
    cases = [{"number": n, "split": sp, "lps_offset_mm": list(g.origin)} for sp, n, _c, g, _o in rendered]

    if simcrop_paths in trees:
        files[SPLIT_FILE] = _write_json_hashed(root / SPLIT_FILE, _dataset_json(numbers))
    manifest = {
        "synthetic": True,
        "generator_version": ABDOMEN_GENERATOR_VERSION,
        "dataset": "BTCV",
        "seed": seed,
        "n_train": n_train,
        "n_test": n_test,
        "layout": layout,
        "shape": list(shape),
        "spacing": list(spacing),
        "splits": numbers,
        "cases": cases,
        "files": files,
    }
    _remove_stale_files(root, previous - set(files))
    write_json(root / MANIFEST, manifest)
    return manifest


def btcv_twin_is_complete(
    root: Path,
    *,
    seed: int | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    shape=None,
    spacing=None,
    layout: str | None = None,
) -> bool:
    """True if a finished twin of the current generator version (and the given parameters) is at ``root``."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not manifest.get("synthetic") or manifest.get("generator_version") != ABDOMEN_GENERATOR_VERSION:
        return False
    wanted = {"seed": seed, "n_train": n_train, "n_test": n_test, "shape": shape, "spacing": spacing, "layout": layout}
    for key, value in wanted.items():
        if value is not None and manifest.get(key) != (list(value) if isinstance(value, (tuple, list)) else value):
            return False
    return (root / MARKER).is_file() and all((root / rel).is_file() for rel in manifest.get("files", {}))


def _check_case(out: RenderedAbdomen, number: int, shape, spacing) -> None:
    """Refuse grids on which a class vanishes: MONAI's crop sampling and per-class Dice need all 13."""
    missing = sorted(set(range(1, 14)) - set(np.unique(out.labels).tolist()))
    if missing or not (out.hu > 0).any():
        raise DataError(
            f"grid {list(shape)} at {list(spacing)} mm loses classes {missing} of case img{number:04d}; "
            "use finer spacing"
        )


def _dataset_json(numbers: dict[str, list[int]]) -> dict:
    """The UNETR/SimCroP ``dataset.json``: the real file's keys in its (alphabetical) order; ``numTraining``
    and ``numTest`` copy the real values (80/20), which never described the lists (protocol.md §11.3)."""
    return {
        "description": "SYNTHETIC BTCV abdominal organ twin generated by simcrop-bench (not patient data)",
        "labels": dict(LABEL_NAMES),
        "licence": "synthetic data, no restrictions",
        "modality": {"0": "CT"},
        "name": "btcv",
        "numTest": 20,
        "numTraining": 80,
        "reference": "simcrop-bench synthetic abdominal phantom",
        "release": f"synthetic generator {ABDOMEN_GENERATOR_VERSION}",
        "tensorImageSize": "3D",
        "test": [simcrop_paths(n, False)["image"] for n in numbers["test"]],
        "training": [simcrop_paths(n, True) for n in numbers["training"]],
        "validation": [simcrop_paths(n, True) for n in numbers["validation"]],
    }


def _write_json_hashed(path: Path, obj: dict) -> str:
    text = json.dumps(obj, indent=2) + "\n"
    write_text(path, text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _refuse_real_data(root: Path) -> None:
    """Never write synthetic files into a folder that looks like a real BTCV root."""
    if any((root / p).exists() for p in REAL_LOOKING) and not (root / MARKER).is_file():
        raise DataError(
            f"{root}: holds BTCV-style data without a {MARKER} marker; refusing to write a synthetic twin there"
        )


def _previous_files(root: Path) -> set[str]:
    """Files listed by an earlier twin's manifest at ``root`` (empty if there is none)."""
    try:
        return set(json.loads((root / MANIFEST).read_text(encoding="utf-8")).get("files", {}))
    except (OSError, ValueError, AttributeError):
        return set()


def _remove_stale_files(root: Path, stale: set[str]) -> None:
    """Delete an earlier twin's files that this one does not write (only our own, listed files)."""
    for rel in sorted(stale):
        if ".." not in Path(rel).parts and not Path(rel).is_absolute():
            (root / rel).unlink(missing_ok=True)


def _marker_text(seed: int, numbers: dict[str, list[int]], shape, spacing, layout: str) -> str:
    sizes = ", ".join(f"{k} {len(v)}" for k, v in numbers.items())
    return (
        "# SYNTHETIC DATA\n\n"
        "Everything under this folder was generated by `simcrop-bench` "
        "(`simcrop_bench.data.synthetic.btcv.write_btcv_twin`). It is an analytic abdominal phantom with the 13 BTCV "
        "organ labels, laid out like BTCV; it contains no patient data, and results computed on it must never be "
        "mixed with results on real data.\n\n"
        f"- generator version: {ABDOMEN_GENERATOR_VERSION}\n- seed: {seed}\n- layout: {layout}\n- cases: {sizes}\n"
        f"- grid: {list(shape)} voxels at {list(spacing)} mm (x, y, z)\n"
        f"- manifest: `{MANIFEST}` (SHA-256 of every decoded array and JSON file)\n"
    )
