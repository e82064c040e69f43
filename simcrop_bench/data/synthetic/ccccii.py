"""CC-CCII "synthetic twin": Normal / CP / NCP chest phantoms in the official and SimCroP layouts.

Classes (datasets.md §7.7; label values of protocol.md §2.3): Normal = 0 (no findings), CP = 1 (unilateral
lobar consolidation, 20-50 HU, with air bronchograms, sometimes a small dependent effusion), NCP = 2 (bilateral,
peripheral, lower-lobe-predominant ground glass, −700…−400 HU, sometimes with a consolidated core or crazy
paving). Lesions are drawn by post-processing the rendered HU with masks computed in world mm and clipped to the
lung labels of the phantom; lesion values replace the parenchyma baseline, so texture and noise are kept.

Official layout (datasets.md §4.2): ``{NCP,CP,Normal}/<patient_id>/<scan_id>/<slice>.png`` (uint8, lung window
level −600 / width 1500; row 0 = anterior, column 0 = patient right, i.e. radiological display; slice ``0000``
is the most inferior), ``unzip_filenames.csv`` and ``lesions_slices.csv``.
SimCroP layout (§4.3): ``images_resized/<scan_id>.nii.gz`` holding the RAS (x, y, z) array transposed to
(D, H, W) = (z, x, y), so that loading + ``transpose(1, 2, 0)`` gives RAS (H, W, D); HU (int16) or the
lung-windowed uint8 values (``resized_intensity``); plus ``img_list,label`` split CSVs.
Outside both layouts: ``SYNTHETIC.md``, ``synthetic_meta/<scan_id>.json`` (case spec, findings, class) and
``synthetic_meta/<scan_id>_findings.nii.gz`` (finding mask stored like ``images_resized``), and the manifest.

Several scans per patient share the patient's anatomy and lesion geometry; each scan has its own noise
(phantom seed index ``SCAN_SEED_OFFSET + 100 * patient + scan``) and field-of-view shift.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from simcrop_bench.data.formats.nifti import array_sha256, write_nifti_gz
from simcrop_bench.data.synthetic.phantom import (
    DATASET_CODES,
    GENERATOR_VERSION,
    LABEL_LEFT_LUNG,
    LABEL_RIGHT_LUNG,
    Acquisition,
    ChestCase,
    VoxelGrid,
    case_rngs,
    render_case,
    sample_chest_case,
)
from simcrop_bench.data.synthetic.shapes import Ellipsoid, Tube
from simcrop_bench.errors import DataError, UserError
from simcrop_bench.util.atomic import atomic_path, write_json, write_text

CLASS_LABELS = {"Normal": 0, "CP": 1, "NCP": 2}  # protocol.md §2.3 (inferred mapping)
CLASS_ORDER = ("NCP", "CP", "Normal")  # patient p gets CLASS_ORDER[p % 3]: every class present from 3 patients
LUNG_WINDOW = (-600.0, 1500.0)  # level, width (HU)
FOV_CENTER_MM = (0.0, -5.0, -45.0)  # carina = origin; apices to upper abdomen (as the LUNA16 twin)
PATIENT_ID_BASE, SCAN_ID_BASE = 80000, 90000  # outside the real ranges (scan ids 90-5779)
SCAN_SEED_OFFSET = 1_000_000  # phantom case index of a scan's noise stream, never a patient index
SPLIT_SEED = 42
MARKER, MANIFEST = "SYNTHETIC.md", "synthetic_meta/manifest.json"
# Finding-mask values (synthetic_meta/<scan>_findings.nii.gz)
GGO, CONSOLIDATION, CRAZY_PAVING, AIR_BRONCHOGRAM, EFFUSION = 1, 2, 3, 4, 5
SPLIT_NAMES = ("train_list.csv", "train_list_10.csv", "train_list_1.csv", "val_list.csv", "test_list.csv")
REAL_PATHS = ("NCP", "CP", "Normal", "images_resized", "unzip_filenames.csv")


def lung_window_uint8(hu: np.ndarray, level: float = LUNG_WINDOW[0], width: float = LUNG_WINDOW[1]) -> np.ndarray:
    """HU -> uint8 display values of a window (what the official PNG slices hold)."""
    lo = level - width / 2
    return np.rint((np.clip(hu.astype(np.float32), lo, lo + width) - lo) * np.float32(255.0 / width)).astype(np.uint8)


def lps_to_ras(array: np.ndarray) -> np.ndarray:
    """Phantom arrays are LPS-stored (x towards the left, y posterior): flip both to get RAS (x, y, z)."""
    return np.ascontiguousarray(array[::-1, ::-1, :])


def ras_to_dhw(array: np.ndarray) -> np.ndarray:
    """RAS (x, y, z) -> the stored (D, H, W) = (z, x, y); ``transpose(1, 2, 0)`` undoes it."""
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def dhw_affine(spacing) -> np.ndarray:
    """Affine of the (z, x, y)-stored array: axis codes ('S', 'R', 'A'); readers ignore it (datasets.md §1.4)."""
    sx, sy, sz = spacing
    return np.array([[0, sx, 0, 0], [0, 0, sy, 0], [sz, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


# ---------------------------------------------------------------- lesions (world mm, LPS)


def world_axes(grid: VoxelGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcastable voxel-centre coordinates x[:, None, None], y[None, :, None], z[None, None, :]."""
    x, y, z = grid.axes()
    return x[:, None, None], y[None, :, None], z[None, None, :]


def side_lung(case: ChestCase, side: str) -> tuple[Ellipsoid, int]:
    return (case.left_lung, LABEL_LEFT_LUNG) if side == "left" else (case.right_lung, LABEL_RIGHT_LUNG)


def draw_lesion(hu: np.ndarray, mask: np.ndarray, target_hu: float, parenchyma_hu: float) -> None:
    """Replace the parenchyma baseline by ``target_hu`` inside ``mask`` (keeps texture and noise)."""
    hu[mask] = np.clip(hu[mask].astype(np.float32) - parenchyma_hu + target_hu, -1024, 3071).astype(hu.dtype)


def sample_lesions(case: ChestCase, cls: str, rng: np.random.Generator) -> list[dict]:
    """JSON-ready lesion specs of a class; geometry relative to the lung ellipsoids."""
    lesions: list[dict] = []
    if cls == "NCP":
        for side in ("right", "left"):  # bilateral by construction
            lung, _ = side_lung(case, side)
            lateral = -1.0 if side == "right" else 1.0  # LPS: the right lung is at negative x
            for _ in range(int(rng.integers(2, 4))):
                rel = (lateral * rng.uniform(0.45, 0.7), rng.uniform(0.0, 0.6), -rng.uniform(0.15, 0.6))
                center = [c + r * s for c, r, s in zip(lung.center, rel, lung.semi_axes)]
                semi = [float(rng.uniform(22, 38)), float(rng.uniform(22, 38)), float(rng.uniform(28, 45))]
                lesions.append(
                    {
                        "type": "ground_glass",
                        "side": side,
                        "center_mm": [float(c) for c in center],
                        "semi_axes_mm": semi,
                        "hu": float(rng.uniform(-700, -400)),
                        "consolidation_hu": float(rng.uniform(20, 50)) if rng.random() < 0.35 else None,
                        "crazy_paving": bool(rng.random() < 0.4),
                    }
                )
    elif cls == "CP":
        side = "right" if rng.random() < 0.55 else "left"
        lung, _ = side_lung(case, side)
        lobe = "lower" if rng.random() < 0.65 else "upper"
        dz = -0.5 if lobe == "lower" else 0.45
        center = [lung.center[0], lung.center[1] + 0.15 * lung.semi_axes[1], lung.center[2] + dz * lung.semi_axes[2]]
        semi = [0.85 * lung.semi_axes[0], 0.85 * lung.semi_axes[1], float(rng.uniform(0.3, 0.4)) * lung.semi_axes[2]]
        hilum = (
            0.45 * lung.center[0],
            lung.center[1] - 0.1 * lung.semi_axes[1],
            lung.center[2] + 0.2 * lung.semi_axes[2],
        )
        bronchi = []
        for _ in range(int(rng.integers(2, 4))):  # air bronchograms: branches from the hilum into the lobe
            tip = [c + s * rng.uniform(-0.6, 0.6) for c, s in zip(center, semi)]
            bronchi.append([list(hilum), [float(t) for t in tip]])
        lesions.append(
            {
                "type": "consolidation",
                "side": side,
                "lobe": lobe,
                "center_mm": [float(c) for c in center],
                "semi_axes_mm": [float(s) for s in semi],
                "hu": float(rng.uniform(20, 50)),
                "air_bronchograms": bronchi,
            }
        )
        if rng.random() < 0.5:
            lesions.append({"type": "pleural_effusion", "side": side, "depth_fraction": float(rng.uniform(0.2, 0.35))})
    return lesions


def draw_lesions(
    hu: np.ndarray, labels: np.ndarray, case: ChestCase, grid: VoxelGrid, lesions: list[dict]
) -> np.ndarray:
    """Paint ``lesions`` into ``hu`` (in place, LPS-stored) and return the finding mask (uint8, same layout)."""
    x, y, z = world_axes(grid)
    base = case.hu["parenchyma"]
    findings = np.zeros(hu.shape, np.uint8)
    for lesion in lesions:
        lung, label = side_lung(case, lesion["side"])
        in_lung = labels == label
        if lesion["type"] == "ground_glass":
            mask = Ellipsoid(tuple(lesion["center_mm"]), tuple(lesion["semi_axes_mm"])).inside(x, y, z) & in_lung
            draw_lesion(hu, mask, lesion["hu"], base)
            findings[mask] = GGO
            if lesion["crazy_paving"]:  # septal lines on a ~12 mm lattice inside the ground glass
                septa = mask & ((np.mod(x, 12.0) < 4.0) | (np.mod(y, 12.0) < 4.0))
                hu[septa] = np.clip(hu[septa] + 150, -1024, 3071)
                findings[septa] = CRAZY_PAVING
            if lesion["consolidation_hu"] is not None:
                core = Ellipsoid(tuple(lesion["center_mm"]), tuple(0.5 * s for s in lesion["semi_axes_mm"]))
                mask = core.inside(x, y, z) & in_lung
                draw_lesion(hu, mask, lesion["consolidation_hu"], base)
                findings[mask] = CONSOLIDATION
        elif lesion["type"] == "consolidation":
            mask = Ellipsoid(tuple(lesion["center_mm"]), tuple(lesion["semi_axes_mm"])).inside(x, y, z) & in_lung
            draw_lesion(hu, mask, lesion["hu"], base)
            findings[mask] = CONSOLIDATION
            for a, b in lesion["air_bronchograms"]:
                air = Tube((tuple(a), tuple(b)), 3.5).inside(x, y, z) & mask
                hu[air] = np.clip(hu[air] - lesion["hu"] - 900, -1024, 3071)
                findings[air] = AIR_BRONCHOGRAM
        elif lesion["type"] == "pleural_effusion":  # dependent (posterior, inferior) fluid layer
            y_cut = lung.center[1] + (1 - 2 * lesion["depth_fraction"]) * lung.semi_axes[1]
            mask = in_lung & (y > y_cut) & (z < lung.center[2])
            draw_lesion(hu, mask, 10.0, base)
            findings[mask] = EFFUSION
    return findings


# ---------------------------------------------------------------- cases


@dataclasses.dataclass(frozen=True)
class CcciiScan:
    patient_index: int
    scan_index: int  # within the patient
    patient_id: int
    scan_id: int
    cls: str
    case: ChestCase
    grid: VoxelGrid
    lesions: list
    hu: np.ndarray  # int16 LPS-stored (x, y, z)
    findings: np.ndarray  # uint8, same layout

    @property
    def label(self) -> int:
        return CLASS_LABELS[self.cls]


def render_ccccii_scans(*, n_patients: int, shape, spacing, seed: int) -> list[CcciiScan]:
    """All scans of the twin, a pure function of the arguments."""
    if n_patients < 3:
        raise UserError(f"n_patients must be at least 3 (one per class), got {n_patients}")
    code = DATASET_CODES["ccccii"]
    scans: list[CcciiScan] = []
    for p in range(n_patients):
        cls = CLASS_ORDER[p % 3]
        patient = dataclasses.replace(sample_chest_case(seed, code, p), nodules=())  # CC-CCII: pneumonia only
        rng = np.random.default_rng(
            np.random.SeedSequence([seed, code, p]).spawn(2)[1].spawn(1)[0]
        )  # child of "findings"
        lesions = sample_lesions(patient, cls, rng)
        for k in range(int(rng.integers(1, 4))):
            scan_seed = (int(seed), code, SCAN_SEED_OFFSET + 100 * p + k)
            acq = case_rngs(*scan_seed)["acquisition"]
            shift = tuple(float(v) for v in acq.uniform(-1, 1, 3) * (8, 8, 10))
            case = dataclasses.replace(
                patient, seed=scan_seed, acquisition=Acquisition(float(acq.uniform(10, 30)), shift, None)
            )
            origin = tuple(
                round(c + d - (n - 1) / 2 * s, 3) for c, d, n, s in zip(FOV_CENTER_MM, shift, shape, spacing)
            )
            grid = VoxelGrid(tuple(shape), tuple(spacing), origin)
            out = render_case(case, grid)
            hu = out.hu.copy()
            findings = draw_lesions(hu, out.labels, case, grid, lesions)
            if cls != "Normal" and not findings.any():
                raise DataError(
                    f"grid {shape} at {spacing} mm misses the lesions of patient {p}; use a larger field of view"
                )
            scans.append(
                CcciiScan(p, k, PATIENT_ID_BASE + p, SCAN_ID_BASE + len(scans), cls, case, grid, lesions, hu, findings)
            )
    return scans


def ccccii_splits(n: int) -> dict[str, list[int]]:
    """Row indices per split file: sklearn ``train_test_split(test_size=0.3, random_state=42)`` order, fractions
    as prefixes of ``RandomState(42).permutation(len(train))`` (protocol.md §4), at least one row each."""
    n_test = math.ceil(0.3 * n)
    perm = np.random.RandomState(SPLIT_SEED).permutation(n)
    test, train = [int(i) for i in perm[:n_test]], [int(i) for i in perm[n_test:]]
    sub = np.random.RandomState(SPLIT_SEED).permutation(len(train))
    frac = {f: [train[i] for i in sub[: max(1, round(f / 100 * len(train)))]] for f in (10, 1)}
    return {
        "train_list.csv": train,
        "train_list_10.csv": frac[10],
        "train_list_1.csv": frac[1],
        "val_list.csv": test,
        "test_list.csv": test,
    }


# ---------------------------------------------------------------- writer


def write_ccccii_twin(
    root: Path,
    *,
    n_patients: int = 12,
    shape=(64, 64, 32),
    spacing=(5.25, 5.25, 10.5),
    seed: int = 20251128,
    layout: str = "both",
    resized_intensity: str = "hu",
) -> dict:
    """Write the twin under ``root`` and return its manifest (written last; byte-identical per arguments)."""
    if layout not in ("both", "official", "simcrop"):
        raise UserError(f"layout must be 'both', 'official' or 'simcrop', not {layout!r}")
    if resized_intensity not in ("hu", "uint8"):
        raise UserError(f"resized_intensity must be 'hu' or 'uint8', not {resized_intensity!r}")
    root = Path(root)
    if any((root / p).exists() for p in REAL_PATHS) and not (root / MARKER).is_file():
        raise DataError(
            f"{root}: holds CC-CCII-style data without a {MARKER} marker; refusing to write a synthetic twin there"
        )
    shape, spacing = tuple(int(n) for n in shape), tuple(float(s) for s in spacing)
    scans = render_ccccii_scans(n_patients=n_patients, shape=shape, spacing=spacing, seed=seed)
    files: dict[str, str] = {}

    def text_file(rel: str, text: str) -> None:
        write_text(root / rel, text)
        files[rel] = hashlib.sha256(text.encode("utf-8")).hexdigest()

    text_file(MARKER, _marker_text(seed, n_patients, len(scans), shape, spacing, layout, resized_intensity))
    if layout in ("both", "official"):
        _write_official(root, scans, files, text_file)
    if layout in ("both", "simcrop"):
        for s in scans:
            ras = lps_to_ras(s.hu)
            stored = lung_window_uint8(ras) if resized_intensity == "uint8" else ras
            rel = f"images_resized/{s.scan_id}.nii.gz"
            write_nifti_gz(root / rel, ras_to_dhw(stored), dhw_affine(spacing), description="simcrop-bench SYNTHETIC")
            files[rel] = array_sha256(ras_to_dhw(stored))
        rows = [f"{s.scan_id}.nii.gz,{s.label}\n" for s in scans]
        for name, idx in ccccii_splits(len(scans)).items():
            text_file(name, "img_list,label\n" + "".join(rows[i] for i in idx))
    for s in scans:
        rel = f"synthetic_meta/{s.scan_id}_findings.nii.gz"
        write_nifti_gz(
            root / rel, ras_to_dhw(lps_to_ras(s.findings)), dhw_affine(spacing), description="simcrop-bench SYNTHETIC"
        )
        files[rel] = array_sha256(ras_to_dhw(lps_to_ras(s.findings)))
        text_file(f"synthetic_meta/{s.scan_id}.json", json.dumps(_scan_meta(s), indent=2) + "\n")
    manifest = {
        "synthetic": True,
        "generator_version": GENERATOR_VERSION,
        "dataset": "CC-CCII",
        "layout": layout,
        "resized_intensity": resized_intensity,
        "seed": seed,
        "n_patients": n_patients,
        "n_scans": len(scans),
        "shape": list(shape),
        "spacing": list(spacing),
        "label_values": dict(CLASS_LABELS),
        "scans": [{"scan_id": s.scan_id, "patient_id": s.patient_id, "class": s.cls, "label": s.label} for s in scans],
        "files": files,
    }
    write_json(root / MANIFEST, manifest)
    return manifest


def _write_official(root: Path, scans: list[CcciiScan], files: dict[str, str], text_file) -> None:
    unzip, lesion_slices = ["zip_file,label,patient_id,scan_id,n_slice\n"], ["path\n"]
    for s in scans:
        folder = f"{s.cls}/{s.patient_id}/{s.scan_id}"
        png = lung_window_uint8(s.hu)
        for k in range(png.shape[2]):  # radiological display: rows = y (anterior first), cols = x (patient right first)
            rel = f"{folder}/{k:04d}.png"
            data = _png_bytes(png[:, :, k].T)
            with atomic_path(root / rel) as tmp:
                tmp.write_bytes(data)
            files[rel] = hashlib.sha256(data).hexdigest()
            if s.findings[:, :, k].any():
                lesion_slices.append(rel + "\n")
        zip_name = {"NCP": "COVID19", "CP": "CP", "Normal": "Normal"}[s.cls] + f"-{s.patient_index // 50 + 1}.zip"
        unzip.append(f"{zip_name},{s.cls},{s.patient_id},{s.scan_id},{png.shape[2]}\n")
    text_file("unzip_filenames.csv", "".join(unzip))
    text_file("lesions_slices.csv", "".join(lesion_slices))


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _scan_meta(s: CcciiScan) -> dict:
    return {
        "synthetic": True,
        "generator_version": GENERATOR_VERSION,
        "scan_id": s.scan_id,
        "patient_id": s.patient_id,
        "grid": {"shape": list(s.grid.shape), "spacing_mm": list(s.grid.spacing), "lps_offset_mm": list(s.grid.origin)},
        "case": s.case.to_dict(),
        "lesions": s.lesions,
        "findings_mask_values": {
            "ground_glass": GGO,
            "consolidation": CONSOLIDATION,
            "crazy_paving": CRAZY_PAVING,
            "air_bronchogram": AIR_BRONCHOGRAM,
            "pleural_effusion": EFFUSION,
        },
        "derived": {"ccccii_class": s.cls, "label": s.label},
    }


def _marker_text(seed, n_patients, n_scans, shape, spacing, layout, intensity) -> str:
    return (
        "# SYNTHETIC DATA\n\n"
        "Everything under this folder was generated by `simcrop-bench` "
        "(`simcrop_bench.data.synthetic.ccccii.write_ccccii_twin`). It is an analytic chest phantom with drawn "
        "NCP / CP / Normal patterns laid out like CC-CCII; it contains no patient data, and results computed on it "
        "must never be mixed with results on real data.\n\n"
        f"- generator version: {GENERATOR_VERSION}\n- seed: {seed}\n- patients: {n_patients}, scans: {n_scans}\n"
        f"- layout: {layout}; images_resized intensity: {intensity}\n"
        f"- grid: {list(shape)} voxels at {list(spacing)} mm (x, y, z)\n"
        f"- labels: {json.dumps(CLASS_LABELS)}\n- manifest: `{MANIFEST}`\n"
    )
