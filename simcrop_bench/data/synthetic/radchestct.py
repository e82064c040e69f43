"""RadChestCT "synthetic twin": official ``.npz`` + ``abn*loc`` CSVs and SimCroP's NIfTI + 16-label layout.

Findings (a subset of the 84 tokens, each with a location token, datasets.md §3.4): phantom nodules
(``nodule`` / ``nodulegr1cm`` at ``<side>_<upper|mid|lower>``), ``consolidation``, ``emphysema`` and
``calcification`` (granuloma) at a lobe, ``pleural_effusion`` at ``<side>_lung``, ``cardiomegaly`` and
``pericardial_effusion`` at ``heart``. Lobes are thirds of each lung ellipsoid's height.

Layouts (datasets.md §3.7):
- official: ``images/<id>.npz`` with ``ct`` = int16 HU clipped to [−1000, 1000], ``[slices, rows, cols]`` with
  slice 0 most superior, row 0 most anterior, column 0 the patient's right (read back with
  :func:`simcrop_bench.data.radchestct.npz_to_ras` defaults);
  ``img{train,valid,test}_Abnormality_and_Location_Labels.csv``.
- simcrop: ``images/<id>.nii.gz`` (int16 HU clipped the same way, RAS-stored, RAS affine at the grid spacing;
  the real data are 0.8 mm isotropic, the twin keeps the profile's grid) and 16-label split CSVs
  (``train_list.csv``, ``train_list_10.csv``, ``val_list.csv``, ``test_list.csv``), mapped with ``mapping``.
Ids: ``trn9xxxx`` / ``val9xxxx`` / ``tst9xxxx``. Plus ``SYNTHETIC.md`` and ``synthetic_meta/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from simcrop_bench.data.formats.nifti import array_sha256, write_nifti_gz
from simcrop_bench.data.labels import RADCHESTCT_LABELS
from simcrop_bench.data.radchestct import ID_COLUMN, MAPPINGS, abn_loc_labels, map_to_16
from simcrop_bench.data.synthetic.ccccii import (
    FOV_CENTER_MM,
    draw_lesion,
    draw_lesions,
    lps_to_ras,
    side_lung,
    world_axes,
)
from simcrop_bench.data.synthetic.phantom import (
    DATASET_CODES,
    GENERATOR_VERSION,
    VoxelGrid,
    render_case,
    sample_chest_case,
)
from simcrop_bench.data.synthetic.shapes import Ellipsoid
from simcrop_bench.errors import DataError, UserError
from simcrop_bench.util.atomic import atomic_path, write_json, write_text

SPLITS = {"trn": "imgtrain", "val": "imgvalid", "tst": "imgtest"}  # id prefix -> official CSV prefix
ID_BASE = 90000
LOBES = tuple(f"{s}_{level}" for s in ("right", "left") for level in ("upper", "mid", "lower"))
LOCATIONS = {  # token -> locations it may carry; fixes the CSV columns (same header in all three files)
    "calcification": LOBES,
    "cardiomegaly": ("heart",),
    "consolidation": LOBES,
    "emphysema": LOBES,
    "nodule": LOBES,
    "nodulegr1cm": LOBES,
    "pericardial_effusion": ("heart",),
    "pleural_effusion": ("right_lung", "left_lung"),
}
PREVALENCE = {
    "pleural_effusion": 0.25,
    "pericardial_effusion": 0.2,
    "consolidation": 0.2,
    "emphysema": 0.3,
    "cardiomegaly": 0.15,
    "calcification": 0.5,
}
MARKER, MANIFEST = "SYNTHETIC.md", "synthetic_meta/manifest.json"
HU_RANGE = (-1000, 1000)


def label_columns() -> list[str]:
    return [f"{t}*{loc}" for t in sorted(LOCATIONS) for loc in LOCATIONS[t]]


def lobe_of(case, side: str, z_mm: float) -> str:
    lung, _ = side_lung(case, side)
    rel = (z_mm - lung.center[2]) / lung.semi_axes[2]
    return f"{side}_{'upper' if rel > 1 / 3 else 'lower' if rel < -1 / 3 else 'mid'}"


def sample_findings(case, rng: np.random.Generator) -> list[dict]:
    """Finding specs (token, location, geometry) for one case; nodules come from the phantom."""
    findings = []
    for n in case.nodules:
        token = "nodulegr1cm" if n.diameter_mm >= 10 else "nodule"
        findings.append(
            {
                "token": token,
                "location": lobe_of(case, n.side, n.center_mm[2]),
                "drawn_by": "phantom",
                "center_mm": None,
                "nodule_center_mm": list(n.center_mm),
            }
        )
    for token, p in PREVALENCE.items():
        if rng.random() >= p:
            continue
        side = "right" if rng.random() < 0.55 else "left"
        lung, _ = side_lung(case, side)
        if token == "pleural_effusion":
            findings.append(
                {
                    "token": token,
                    "location": f"{side}_lung",
                    "type": "pleural_effusion",
                    "side": side,
                    "depth_fraction": float(rng.uniform(0.2, 0.4)),
                }
            )
        elif token in ("cardiomegaly", "pericardial_effusion"):
            findings.append(
                {
                    "token": token,
                    "location": "heart",
                    "scale": float(rng.uniform(1.25, 1.4)),
                    "thickness_mm": float(rng.uniform(8, 14)),
                }
            )
        else:
            dz = {"emphysema": (0.3, 0.7)}.get(token, (-0.7, 0.7))
            rel = (rng.uniform(-0.5, 0.5), rng.uniform(-0.4, 0.4), rng.uniform(*dz))
            center = [float(c + r * s) for c, r, s in zip(lung.center, rel, lung.semi_axes)]
            size = {"calcification": (3, 4), "consolidation": (18, 30), "emphysema": (20, 35)}[token]
            semi = [float(rng.uniform(*size)) for _ in range(3)]
            findings.append(
                {
                    "token": token,
                    "location": lobe_of(case, side, center[2]),
                    "side": side,
                    "center_mm": center,
                    "semi_axes_mm": semi,
                    "hu": {"calcification": 600.0, "consolidation": float(rng.uniform(20, 50)), "emphysema": -960.0}[
                        token
                    ],
                }
            )
    return findings


def draw_findings(hu: np.ndarray, labels: np.ndarray, case, grid: VoxelGrid, findings: list[dict]) -> None:
    """Paint the non-phantom findings into the LPS-stored ``hu`` (in place)."""
    x, y, z = world_axes(grid)
    base = case.hu["parenchyma"]
    for f in findings:
        if f["token"] == "pleural_effusion":
            draw_lesions(hu, labels, case, grid, [f])
        elif f["token"] == "pericardial_effusion":  # fluid rim around the heart, outside the lungs
            rim = case.heart.grown(f["thickness_mm"]).inside(x, y, z) & ~case.heart.inside(x, y, z) & (labels == 0)
            hu[rim & (hu > -300)] = 10
        elif f.get("center_mm") is not None:
            _, label = side_lung(case, f["side"])
            mask = Ellipsoid(tuple(f["center_mm"]), tuple(f["semi_axes_mm"])).inside(x, y, z) & (labels == label)
            draw_lesion(hu, mask, f["hu"], base)


@dataclasses.dataclass(frozen=True)
class RadChestCase:
    note_acc: str
    case_index: int
    grid: VoxelGrid
    findings: list
    hu: np.ndarray  # int16 LPS-stored (x, y, z), clipped to HU_RANGE
    case_spec: dict


def render_radchestct_cases(*, n_cases: dict[str, int], shape, spacing, seed: int) -> list[RadChestCase]:
    code = DATASET_CODES["radchestct"]
    out, index = [], 0
    for prefix in SPLITS:
        for j in range(n_cases[prefix]):
            case = sample_chest_case(seed, code, index)
            rng = np.random.default_rng(np.random.SeedSequence([seed, code, index]).spawn(2)[1].spawn(1)[0])
            findings = sample_findings(case, rng)
            big = [f for f in findings if f["token"] == "cardiomegaly"]
            if big:  # an enlarged heart is part of the scene, not a post-process
                h = case.heart
                case = dataclasses.replace(
                    case,
                    heart=Ellipsoid(
                        h.center, (h.semi_axes[0] * big[0]["scale"], h.semi_axes[1] * big[0]["scale"], h.semi_axes[2])
                    ),
                )
            shift = case.acquisition.fov_shift_mm
            origin = tuple(
                round(c + d - (n - 1) / 2 * s, 3) for c, d, n, s in zip(FOV_CENTER_MM, shift, shape, spacing)
            )
            grid = VoxelGrid(shape, spacing, origin)
            rendered = render_case(case, grid)
            seen = {tuple(round(v, 6) for v in (n["coordX"], n["coordY"], n["coordZ"])) for n in rendered.nodules}
            findings = [
                f
                for f in findings
                if "nodule_center_mm" not in f  # only nodules inside the field of view
                or tuple(round(v, 6) for v in f["nodule_center_mm"]) in seen
            ]
            hu = rendered.hu.copy()
            draw_findings(hu, rendered.labels, case, grid, findings)
            hu = np.clip(hu, *HU_RANGE).astype(np.int16)
            out.append(RadChestCase(f"{prefix}{ID_BASE + j}", index, grid, findings, hu, case.to_dict()))
            index += 1
    return out


def npz_array(hu_lps: np.ndarray) -> np.ndarray:
    """LPS (x, y, z) -> ``[slices, rows, cols]``: slices superior first, rows anterior first, cols right first."""
    return np.ascontiguousarray(hu_lps.transpose(2, 1, 0)[::-1])


def ras_affine(grid: VoxelGrid) -> np.ndarray:
    """Affine of the RAS-stored array: RAS voxel 0 is LPS voxel (nx-1, ny-1, 0)."""
    (nx, ny, _), (sx, sy, sz), (ox, oy, oz) = grid.shape, grid.spacing, grid.origin
    return np.array(
        [[sx, 0, 0, -(ox + (nx - 1) * sx)], [0, sy, 0, -(oy + (ny - 1) * sy)], [0, 0, sz, oz], [0, 0, 0, 1]], float
    )


def write_radchestct_twin(
    root: Path,
    *,
    n_train: int = 8,
    n_valid: int = 4,
    n_test: int = 4,
    shape=(64, 64, 32),
    spacing=(5.25, 5.25, 10.5),
    seed: int = 20251128,
    layout: str = "both",
    mapping: str = "token",
) -> dict:
    """Write the twin under ``root`` and return its manifest (written last; byte-identical per arguments)."""
    if layout not in ("both", "official", "simcrop"):
        raise UserError(f"layout must be 'both', 'official' or 'simcrop', not {layout!r}")
    if mapping not in MAPPINGS:
        raise UserError(f"mapping must be one of {MAPPINGS}, not {mapping!r}")
    if min(n_train, n_valid, n_test) < 1:
        raise UserError("n_train, n_valid and n_test must each be at least 1")
    root = Path(root)
    if ((root / "images").exists() or any(root.glob("img*_Abnormality_and_Location_Labels.csv"))) and not (
        root / MARKER
    ).is_file():
        raise DataError(
            f"{root}: holds RadChestCT-style data without a {MARKER} marker; refusing to write a synthetic twin there"
        )
    shape, spacing = tuple(int(n) for n in shape), tuple(float(s) for s in spacing)
    cases = render_radchestct_cases(
        n_cases={"trn": n_train, "val": n_valid, "tst": n_test}, shape=shape, spacing=spacing, seed=seed
    )
    files: dict[str, str] = {}

    def text_file(rel: str, text: str) -> None:
        write_text(root / rel, text)
        files[rel] = hashlib.sha256(text.encode("utf-8")).hexdigest()

    text_file(MARKER, _marker_text(seed, len(cases), shape, spacing, layout, mapping))
    columns = label_columns()
    csv_text = {}
    for prefix, name in SPLITS.items():
        rows = [c for c in cases if c.note_acc.startswith(prefix)]
        lines = [",".join([ID_COLUMN, *columns])]
        for c in rows:
            present = {f"{f['token']}*{f['location']}" for f in c.findings}
            lines.append(",".join([c.note_acc, *("1" if col in present else "0" for col in columns)]))
        csv_text[prefix] = "\n".join(lines) + "\n"
        text_file(f"{name}_Abnormality_and_Location_Labels.csv", csv_text[prefix])
    for c in cases:
        if layout in ("both", "official"):
            rel = f"images/{c.note_acc}.npz"
            _write_npz(root / rel, npz_array(c.hu))
            files[rel] = array_sha256(npz_array(c.hu))
        if layout in ("both", "simcrop"):
            rel = f"images/{c.note_acc}.nii.gz"
            write_nifti_gz(root / rel, lps_to_ras(c.hu), ras_affine(c.grid), description="simcrop-bench SYNTHETIC")
            files[rel] = array_sha256(lps_to_ras(c.hu))
        meta = {
            "synthetic": True,
            "generator_version": GENERATOR_VERSION,
            "NoteAcc_DEID": c.note_acc,
            "grid": {"shape": list(shape), "spacing_mm": list(spacing), "lps_offset_mm": list(c.grid.origin)},
            "npz_axes": ["slices (superior first)", "rows (anterior first)", "cols (patient right first)"],
            "case": c.case_spec,
            "findings": c.findings,
            "derived": {"radchest_tokens": {f"{f['token']}*{f['location']}": 1 for f in c.findings}},
        }
        text_file(f"synthetic_meta/{c.note_acc}.json", json.dumps(meta, indent=2) + "\n")
    if layout in ("both", "simcrop"):
        labels16 = {p: _labels16(root / f"{SPLITS[p]}_Abnormality_and_Location_Labels.csv", mapping) for p in SPLITS}
        train = labels16["trn"]
        n10 = max(1, round(0.1 * len(train)))
        for name, lines in (
            ("train_list.csv", train),
            ("val_list.csv", labels16["val"]),
            ("test_list.csv", labels16["tst"]),
            ("train_list_10.csv", [train[i] for i in np.random.RandomState(42).permutation(len(train))[:n10]]),
        ):
            text_file(name, ",".join([ID_COLUMN, *RADCHESTCT_LABELS]) + "\n" + "".join(lines))
    manifest = {
        "synthetic": True,
        "generator_version": GENERATOR_VERSION,
        "dataset": "RadChestCT",
        "layout": layout,
        "mapping": mapping,
        "seed": seed,
        "n_cases": {"trn": n_train, "val": n_valid, "tst": n_test},
        "shape": list(shape),
        "spacing": list(spacing),
        "hu_range": list(HU_RANGE),
        "cases": [
            {
                "NoteAcc_DEID": c.note_acc,
                "case_index": c.case_index,
                "findings": [f"{f['token']}*{f['location']}" for f in c.findings],
            }
            for c in cases
        ],
        "files": files,
    }
    write_json(root / MANIFEST, manifest)
    return manifest


def _labels16(csv_path: Path, mapping: str) -> list[str]:
    """Split-file rows via the reader's own parser and mapping (one source of truth for §3.5)."""
    table = map_to_16(abn_loc_labels(csv_path), mapping)
    return [",".join([str(i), *map(str, row)]) + "\n" for i, row in zip(table.index, table.to_numpy().tolist())]


def _write_npz(path: Path, ct: np.ndarray) -> None:
    """``savez_compressed`` equivalent with fixed zip timestamps, so the bytes are reproducible."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("ct.npy", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as member:
            np.lib.format.write_array(member, ct, allow_pickle=False)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _marker_text(seed, n_cases, shape, spacing, layout, mapping) -> str:
    return (
        "# SYNTHETIC DATA\n\n"
        "Everything under this folder was generated by `simcrop-bench` "
        "(`simcrop_bench.data.synthetic.radchestct.write_radchestct_twin`). It is an analytic chest phantom with "
        "drawn findings laid out like RAD-ChestCT; it contains no patient data, and results computed on it must "
        "never be mixed with results on real data.\n\n"
        f"- generator version: {GENERATOR_VERSION}\n- seed: {seed}\n- cases: {n_cases}\n"
        f"- layout: {layout}; 16-label mapping: {mapping}\n"
        f"- grid: {list(shape)} voxels at {list(spacing)} mm (x, y, z; real data: 0.8 mm isotropic)\n"
        "- npz axes: [slices (superior first), rows (anterior first), cols (patient right first)]\n"
        f"- manifest: `{MANIFEST}`\n"
    )
