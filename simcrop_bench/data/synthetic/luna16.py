"""LUNA16 "synthetic twin" in two layouts (datasets.md §5, §7.8, §7.13; protocol.md §11.3).

SimCroP segmentation layout (:func:`write_luna16_twin`, datasets.md §5.5): ``images/<uid>.nii.gz`` (int16 HU)
and ``masks_processed/<uid>.nii.gz`` (uint8: 0 background, 1 left lung, 2 right lung, 3 trachea = raw LUNA16
value − 2), ``dataset_10.json`` / ``dataset_100.json``. NIfTI affines are those of a MetaImage → NIfTI
conversion: LPS-stored, axis codes ('L', 'P', 'S'), so a reader must reorient to RAS (left lung then at low
axis-0 indices).

Official layout (:func:`write_luna16_official`, datasets.md §5.2): ``subsetK/<uid>.mhd + .raw`` (MET_SHORT HU),
``seg-lungs-LUNA16/<uid>.mhd + .zraw`` (MET_UCHAR 0/3/4/5), ``CSVFILES/{annotations,candidates_V2,seriesuids}.csv``
and SimCroP's split files. For one seed both layouts hold the same uids and the same rendered volumes
(:func:`render_luna16_cases`), so converting the official twin gives the SimCroP twin's arrays and affines.

Both write, outside the real layout, a ``SYNTHETIC.md`` marker plus ``synthetic_meta/`` (per-case specs and a
manifest hashing every file).
"""

from __future__ import annotations

import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simcrop_bench.data.formats.metaimage import write_mhd
from simcrop_bench.data.formats.nifti import array_sha256, lps_nifti_affine, write_nifti_gz
from simcrop_bench.data.splits.fractions import covering_row_order, fraction_subset
from simcrop_bench.data.splits.published import CSV_NAMES, SPLIT_FILES
from simcrop_bench.data.synthetic.phantom import (
    DATASET_CODES,
    GENERATOR_VERSION,
    LABEL_LEFT_LUNG,
    LABEL_RIGHT_LUNG,
    ChestCase,
    RenderedCase,
    VoxelGrid,
    case_rngs,
    render_case,
    sample_chest_case,
)
from simcrop_bench.errors import DataError, UserError
from simcrop_bench.util.atomic import write_json, write_text

UID_PREFIX = "1.3.6.1.4.1.14519.5.2.1.6279.6001.9999"  # + 26 digits: cannot collide with real LIDC UIDs
SEG_LABELS = {"0": "background", "1": "left lung", "2": "right lung", "3": "trachea"}
MANIFEST = "synthetic_meta/manifest.json"
MARKER = "SYNTHETIC.md"
# Nominal field-of-view centre in phantom mm (carina = origin): covers lung apices to the upper abdomen.
FOV_CENTER_MM = (0.0, -5.0, -45.0)
SPLIT_SEED = 42  # sklearn/pandas random_state of the real split files
SEG_SPLIT_FILES = ("dataset_10.json", "dataset_100.json")
CLS_SPLIT_FILES = tuple(CSV_NAMES[r] for r in ("train", "train_10", "val", "test"))  # luna16_cls, protocol.md §11.2
ANNOTATED_MIN_MM = 3.0  # LUNA16's reference standard lists nodules >= 3 mm (datasets.md §5.1)
TEN_PERCENT_MIN_ROWS = 2  # the tiny twins' 10 % lists keep at least two scans
# Paths whose presence without a marker means "real data lives here".
SIMCROP_PATHS = ("images", "masks_processed", *SEG_SPLIT_FILES)
SEG_LUNGS = "seg-lungs-LUNA16"
OFFICIAL_PATHS = ("CSVFILES", SEG_LUNGS, "subset0", *SEG_SPLIT_FILES)
MAX_SUBSETS = 10  # subset0 … subset9 in the real download


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
    training_10 = [training[i] for i in fraction_subset(len(training), 0.10, SPLIT_SEED, min_rows=TEN_PERCENT_MIN_ROWS)]
    n_val = min(n_test, max(2, round(26 / 267 * n_test)))  # 26 of 267 in the real files
    return {"training_100": training, "training_10": training_10, "validation": testing[:n_val], "testing": testing}


def annotated_nodules(rendered: RenderedCase) -> list[dict]:
    """The nodules ``CSVFILES/annotations.csv`` lists: those of at least 3 mm (the reference standard's limit).
    ``luna16_cls`` labels a scan 1 iff it has one (protocol.md §2.4)."""
    return [n for n in rendered.nodules if n["diameter_mm"] >= ANNOTATED_MIN_MM]


@dataclass(frozen=True)
class TwinCase:
    """One rendered case, shared by both layouts."""

    index: int
    uid: str
    case: ChestCase
    grid: VoxelGrid  # LPS origin = MetaImage Offset of voxel (0, 0, 0)
    rendered: RenderedCase  # hu int16 and raw labels 0/3/4/5, both (x, y, z)


def render_luna16_cases(
    *, n_cases: int, shape: tuple[int, int, int], spacing: tuple[float, float, float], seed: int
) -> list[TwinCase]:
    """Sample and render the twin's cases (a pure function of the arguments); refuses grids that miss anatomy."""
    if n_cases < 2:
        raise UserError(f"n_cases must be at least 2 (one training and one test case), got {n_cases}")
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in spacing)
    uids = [synthetic_uid(seed, i) for i in range(n_cases)]
    if len(set(uids)) != n_cases:
        raise RuntimeError("synthetic UID collision")  # astronomically unlikely; never write ambiguous data

    def render(i: int) -> TwinCase:
        case = sample_chest_case(seed, DATASET_CODES["luna16"], i)
        shift = case.acquisition.fov_shift_mm
        origin = tuple(round(c + d - (n - 1) / 2 * s, 3) for c, d, n, s in zip(FOV_CENTER_MM, shift, shape, spacing))
        grid = VoxelGrid(shape, spacing, origin)
        return TwinCase(i, uids[i], case, grid, render_case(case, grid))

    with ThreadPoolExecutor(max_workers=2) as pool:  # numpy releases the GIL in the heavy array operations
        cases = list(pool.map(render, range(n_cases)))
    for t in cases:
        if not {3, 4, 5} <= set(np.unique(t.rendered.labels).tolist()) or not (t.rendered.hu > 0).any():
            raise DataError(
                f"grid {shape} at {spacing} mm misses lung, trachea or body of case {t.uid}; use a larger field of view"
            )
    return cases


def write_luna16_twin(
    root: Path,
    *,
    n_cases: int = 30,
    shape: tuple[int, int, int] = (64, 64, 32),
    spacing: tuple[float, float, float] = (5.25, 5.25, 10.5),
    seed: int = 20251128,
) -> dict:
    """Generate the SimCroP-layout twin under ``root`` and return its manifest. Files are written atomically,
    the manifest last, so :func:`luna16_twin_is_complete` is true only after a finished run."""
    root = Path(root)
    _refuse_real_data(root, SIMCROP_PATHS)
    twins = render_luna16_cases(n_cases=n_cases, shape=shape, spacing=spacing, seed=seed)
    shape, spacing = twins[0].grid.shape, twins[0].grid.spacing
    write_text(root / MARKER, _marker_text(seed, n_cases, shape, spacing))
    files: dict[str, str] = {}
    cases = []
    for t in twins:
        uid, out = t.uid, t.rendered
        affine = lps_nifti_affine(spacing, t.grid.origin)
        mask = np.where(out.labels > 0, out.labels - 2, 0).astype(np.uint8)
        for rel, array in ((f"images/{uid}.nii.gz", out.hu), (f"masks_processed/{uid}.nii.gz", mask)):
            write_nifti_gz(root / rel, array, affine, description="simcrop-bench SYNTHETIC")
            files[rel] = array_sha256(array)
        files[f"synthetic_meta/{uid}.json"] = _write_json_hashed(root / f"synthetic_meta/{uid}.json", _case_meta(t))
        cases.append({"uid": uid, "case_index": t.index, "lps_offset_mm": list(t.grid.origin), "nodules": out.nodules})

    splits = _write_split_files(root, [t.uid for t in twins], files)
    labels = {t.uid: int(bool(annotated_nodules(t.rendered))) for t in twins}
    for name, text in luna16_cls_csvs(splits, labels).items():
        write_text(root / name, text)
        files[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        splits[name] = text.splitlines()[1:]
    manifest = {
        "synthetic": True,
        "generator_version": GENERATOR_VERSION,
        "dataset": "LUNA16",
        "seed": seed,
        "n_cases": n_cases,
        "shape": list(shape),
        "spacing": list(spacing),
        "splits": {k: len(v) for k, v in splits.items()},
        "cases": cases,
        "files": files,
    }
    _remove_stale_files(root, set(files))
    write_json(root / MANIFEST, manifest)
    return manifest


def write_luna16_official(
    root: Path,
    *,
    n_cases: int = 30,
    shape: tuple[int, int, int] = (64, 64, 32),
    spacing: tuple[float, float, float] = (5.25, 5.25, 10.5),
    seed: int = 20251128,
) -> dict:
    """Generate the twin in the official LUNA16 layout (datasets.md §5.2, §5.6) and return its manifest.

    Same uids and volumes as :func:`write_luna16_twin` with the same arguments. Cases go round-robin into
    ``subset0`` … ``subsetK`` (about ten per subset, at most ten subsets). ``dataset_10.json`` /
    ``dataset_100.json`` (SimCroP's split files, not part of the download) sit in the root, where
    :func:`simcrop_bench.data.prepare.luna16.convert_official_to_simcrop` looks for them.
    """
    root = Path(root)
    _refuse_real_data(root, OFFICIAL_PATHS)
    twins = render_luna16_cases(n_cases=n_cases, shape=shape, spacing=spacing, seed=seed)
    shape, spacing = twins[0].grid.shape, twins[0].grid.spacing
    n_subsets = min(MAX_SUBSETS, max(2, math.ceil(n_cases / 10)))
    write_text(
        root / MARKER,
        _marker_text(
            seed,
            n_cases,
            shape,
            spacing,
            writer="write_luna16_official",
            layout="in its official layout (subsetK/, seg-lungs-LUNA16/, CSVFILES/) plus SimCroP's split files",
            hashes="every decoded array (.mhd: header + data) and of the bytes of every other file",
        ),
    )
    files: dict[str, str] = {}
    cases, annotations, candidates, by_subset = [], [], [], {}
    for t in twins:
        uid, out, origin = t.uid, t.rendered, t.grid.origin
        subset = f"subset{t.index % n_subsets}"
        for folder, array, compressed in ((subset, out.hu, False), (SEG_LUNGS, out.labels, True)):
            write_mhd(root / folder / f"{uid}.mhd", array, spacing, origin, compressed=compressed)
            files[f"{folder}/{uid}.mhd"] = array_sha256(array)
            data = f"{folder}/{uid}.{'zraw' if compressed else 'raw'}"
            files[data] = hashlib.sha256((root / data).read_bytes()).hexdigest()
        files[f"synthetic_meta/{uid}.json"] = _write_json_hashed(root / f"synthetic_meta/{uid}.json", _case_meta(t))
        nodules = annotated_nodules(out)
        annotations += [[uid, n["coordX"], n["coordY"], n["coordZ"], n["diameter_mm"]] for n in nodules]
        rows = _candidates(t, nodules)
        candidates += rows
        by_subset.setdefault(subset, []).append(uid)
        cases.append(
            {
                "uid": uid,
                "case_index": t.index,
                "subset": subset,
                "lps_offset_mm": list(origin),
                "nodules": out.nodules,
                "false_candidates": sum(1 for r in rows if r[-1] == 0),
            }
        )

    csvs = {
        "CSVFILES/annotations.csv": _csv(["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"], annotations),
        "CSVFILES/candidates_V2.csv": _csv(["seriesuid", "coordX", "coordY", "coordZ", "class"], candidates),
        # The evaluation script reads this file without a header: one uid per line.
        "CSVFILES/seriesuids.csv": "".join(f"{u}\n" for k in range(n_subsets) for u in by_subset.get(f"subset{k}", [])),
    }
    for rel, text in csvs.items():
        write_text(root / rel, text)
        files[rel] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    splits = _write_split_files(root, [t.uid for t in twins], files)
    manifest = {
        "synthetic": True,
        "generator_version": GENERATOR_VERSION,
        "dataset": "LUNA16",
        "layout": "official",
        "seed": seed,
        "n_cases": n_cases,
        "shape": list(shape),
        "spacing": list(spacing),
        "subsets": n_subsets,
        "splits": {k: len(v) for k, v in splits.items()},
        "cases": cases,
        "files": files,
    }
    _remove_stale_files(root, set(files))
    write_json(root / MANIFEST, manifest)
    return manifest


def _candidates(t: TwinCase, nodules: list[dict]) -> list[list]:
    """candidates_V2 rows of one scan: each nodule as class 1 (a detector's slightly off-centre hit) plus 4-12
    false candidates (class 0) on the lung surface next to the mediastinum, hila and chest wall, where vessels
    and fissures trigger real detectors. Drawn from the case's own "label_noise" stream, so images never change."""
    rng = case_rngs(*t.case.seed)["label_noise"]
    spacing, origin = np.asarray(t.grid.spacing), np.asarray(t.grid.origin)
    rows = []
    for n in nodules:
        jitter = rng.uniform(-0.1, 0.1, 3) * n["diameter_mm"]
        rows.append([n["coordX"] + jitter[0], n["coordY"] + jitter[1], n["coordZ"] + jitter[2], 1])
    lung = np.isin(t.rendered.labels, (LABEL_LEFT_LUNG, LABEL_RIGHT_LUNG))
    surface = np.argwhere(lung & ~_eroded(lung))  # C order: deterministic
    world = origin + surface * spacing
    for n in nodules:  # a false candidate never sits on a nodule
        centre = np.array([n["coordX"], n["coordY"], n["coordZ"]])
        keep = np.linalg.norm(world - centre, axis=1) > n["diameter_mm"] / 2 + 5.0
        surface, world = surface[keep], world[keep]
    picks = np.sort(rng.choice(len(world), size=min(len(world), int(rng.integers(4, 13))), replace=False))
    jitter = rng.uniform(-0.5, 0.5, (len(picks), 3)) * spacing
    rows += [[*(float(v) for v in world[i] + j), 0] for i, j in zip(picks, jitter)]
    rows.sort(
        key=lambda r: (-r[2], r[1], r[0])
    )  # head to feet, as a detector lists them: class not readable from order
    return [[t.uid, *r] for r in rows]


def _eroded(mask: np.ndarray) -> np.ndarray:
    """6-neighbour binary erosion with numpy only (the border counts as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    out = mask.copy()
    for axis in range(3):
        for step in (-1, 1):
            out &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return out


def _csv(columns: list[str], rows: list[list]) -> str:
    """LUNA16 CSV text: comma-separated, no quoting (uids have no commas), floats to 10 significant digits."""

    def cell(v) -> str:
        return f"{v:.10g}" if isinstance(v, float) else str(v)

    return "".join(",".join(map(cell, r)) + "\n" for r in [columns, *rows])


def luna16_twin_is_complete(
    root: Path,
    *,
    seed: int | None = None,
    n_cases: int | None = None,
    shape=None,
    spacing=None,
    layout: str = "simcrop",
) -> bool:
    """True if a finished twin of the current generator version, in ``layout`` ("simcrop" or "official") and
    with the given parameters, is at ``root``."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = {"seed": seed, "n_cases": n_cases, "shape": shape, "spacing": spacing}
    if not manifest.get("synthetic") or manifest.get("generator_version") != GENERATOR_VERSION:
        return False
    if manifest.get("layout", "simcrop") != layout:  # SimCroP-layout manifests predate the key
        return False
    for key, value in wanted.items():
        if value is not None and manifest.get(key) != (list(value) if isinstance(value, (tuple, list)) else value):
            return False
    if layout == "simcrop" and not set(CLS_SPLIT_FILES) <= set(manifest.get("files", {})):
        return False
    return (Path(root) / MARKER).is_file() and all((Path(root) / rel).is_file() for rel in manifest.get("files", {}))


def luna16_official_is_complete(root: Path, **wanted) -> bool:
    """:func:`luna16_twin_is_complete` for the official layout (the form the dataset registry names)."""
    return luna16_twin_is_complete(root, layout="official", **wanted)


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


def _case_meta(t: TwinCase) -> dict:
    annotations = [{k: v for k, v in n.items() if k != "side"} for n in t.rendered.nodules]
    return {
        "synthetic": True,
        "generator_version": GENERATOR_VERSION,
        "uid": t.uid,
        "grid": {"shape": list(t.grid.shape), "spacing_mm": list(t.grid.spacing), "lps_offset_mm": list(t.grid.origin)},
        "case": t.case.to_dict(),
        "derived": {"luna16": {"label": int(bool(annotated_nodules(t.rendered))), "annotations": annotations}},
    }


def luna16_cls_csvs(splits: dict[str, list[str]], labels: dict[str, int]) -> dict[str, str]:
    """``luna16_cls`` split files (``image_id,label``, protocol.md §11.2) on the scans of the lung_seg split.

    Train = the 100 % segmentation training scans, test = val = its test scans (val ≡ test as published).
    The 10 % list is the §4 prefix (at least two scans); when the segmentation 10 % scans all carry one
    label, the train rows are reordered (:func:`covering_row_order`) so that the prefix sees both labels,
    and the two 10 % lists then differ.
    """
    header = ",".join(SPLIT_FILES["luna16_cls"].header)
    training = splits["training_100"]
    n_ten = len(splits["training_10"])
    train = [training[i] for i in covering_row_order(np.array([[labels[u]] for u in training]), n_ten, SPLIT_SEED)]

    def text(uids: list[str]) -> str:
        return "".join(f"{line}\n" for line in [header, *(f"{u}.nii.gz,{labels[u]}" for u in uids)])

    test = text(splits["testing"])
    ten = [train[i] for i in fraction_subset(len(train), 0.10, SPLIT_SEED, min_rows=TEN_PERCENT_MIN_ROWS)]
    return {
        CSV_NAMES["train"]: text(train),
        CSV_NAMES["train_10"]: text(ten),
        CSV_NAMES["val"]: test,
        CSV_NAMES["test"]: test,
    }


def _write_split_files(root: Path, uids: list[str], files: dict[str, str]) -> dict[str, list[str]]:
    splits = luna16_seg_splits(uids)
    for name, training in zip(SEG_SPLIT_FILES, (splits["training_10"], splits["training_100"])):
        doc = _decathlon_json(
            training, splits["validation"], splits["testing"], n_train_full=len(splits["training_100"])
        )
        files[name] = _write_json_hashed(root / name, doc)
    return splits


def _refuse_real_data(root: Path, paths: tuple[str, ...]) -> None:
    """Never write synthetic files into a folder that looks like a real LUNA16 root."""
    real_looking = any((root / p).exists() for p in paths)
    if real_looking and not (root / MARKER).is_file():
        raise DataError(
            f"{root}: holds LUNA16-style data without a {MARKER} marker; refusing to write a synthetic twin there"
        )


def _remove_stale_files(root: Path, keep: set[str]) -> None:
    """Delete files that an earlier twin's manifest listed and this one does not (only our own files)."""
    try:
        old = json.loads((root / MANIFEST).read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError):
        return
    for rel in old:
        if rel not in keep and ".." not in Path(rel).parts and not Path(rel).is_absolute():
            (root / rel).unlink(missing_ok=True)


def _marker_text(
    seed: int,
    n_cases: int,
    shape,
    spacing,
    *,
    writer: str = "write_luna16_twin",
    layout: str = "in the SimCroP segmentation layout",
    hashes: str = "every decoded array and JSON file",
) -> str:
    return (
        "# SYNTHETIC DATA\n\n"
        "Everything under this folder was generated by `simcrop-bench` "
        f"(`simcrop_bench.data.synthetic.luna16.{writer}`). It is an analytic chest phantom laid out like "
        f"LUNA16 {layout}; it contains no patient data, and results computed on it "
        "must never be mixed with results on real data.\n\n"
        f"- generator version: {GENERATOR_VERSION}\n- seed: {seed}\n- cases: {n_cases}\n"
        f"- grid: {list(shape)} voxels at {list(spacing)} mm (x, y, z)\n"
        f"- manifest: `{MANIFEST}` (SHA-256 of {hashes})\n"
    )
