"""CT-RATE "synthetic twin" in the official and the SimCroP layouts (datasets.md §2, §7.13–§7.15).

Official tree: ``{train,valid}/<split>_<pid>/<split>_<pid>_<scan>/<VolumeName>`` with v1 semantics (stored =
HU − RescaleIntercept, slope 1, default 1 mm header spacing: the true spacing is only in the metadata CSV) and
``{train,valid}_fixed/…`` with v2 semantics (int16 HU, correct LPS-stored header), plus the metadata, report and
label CSVs. SimCroP tree: ``{train,valid}_preprocessed/<split>_<pid>/<split>_<pid><scan>/<VolumeName>`` (no
underscore before the scan letter), int16 HU stored RAS (the classification reader ignores the affine), plus
SimCroP's split files ``train_list{,_10,_1}.csv``, ``val_list.csv`` = ``test_list.csv`` in the root.

One patient = one phantom body (case index ``100 · patient``); each scan is its own case (index ``100 · patient +
scan``) with its own findings, report and noise; reconstructions of a scan share findings, report and labels and
differ only in kernel and noise. Patient ids start at 90001 (train) and 95001 (valid), outside the real ranges.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np

from simcrop_bench.data.ctrate import LABEL_COLUMNS, METADATA_COLUMNS, REPORT_COLUMNS
from simcrop_bench.data.formats.nifti import array_sha256, lps_nifti_affine, write_nifti_gz
from simcrop_bench.data.splits.fractions import covering_row_order, fraction_size, fraction_subset, label_coverage
from simcrop_bench.data.splits.published import CSV_NAMES, SPLIT_FILES
from simcrop_bench.data.synthetic.finding_sampling import sample_findings
from simcrop_bench.data.synthetic.findings import Finding, ctrate_labels
from simcrop_bench.data.synthetic.lesions import acquire, render_clean
from simcrop_bench.data.synthetic.phantom import (
    DATASET_CODES,
    GENERATOR_VERSION,
    ChestCase,
    VoxelGrid,
    case_rngs,
    sample_chest_case,
)
from simcrop_bench.data.synthetic.reports import NOT_GIVEN, render_report
from simcrop_bench.errors import DataError
from simcrop_bench.util.atomic import write_json, write_text

MARKER, MANIFEST = "SYNTHETIC.md", "synthetic_meta/manifest.json"
FOV_CENTER_MM = (0.0, -5.0, -45.0)
TRAIN_PID0, VALID_PID0 = 90001, 95001
PLAN_STREAM = 7001  # SeedSequence key of the per-patient acquisition plan
CSV_FILES = {  # note the inconsistent prefixes of the real download (§2.10)
    "train": (
        "metadata/train_metadata.csv",
        "radiology_text_reports/train_reports.csv",
        "multi_abnormality_labels/train_predicted_labels.csv",
    ),
    "valid": (
        "metadata/validation_metadata.csv",
        "radiology_text_reports/validation_reports.csv",
        "multi_abnormality_labels/valid_predicted_labels.csv",
    ),
}
LAYOUTS = ("both", "official", "simcrop")


@dataclasses.dataclass(frozen=True)
class ReconPlan:
    recon: int
    kernel: str  # "smooth" | "sharp"
    noise_hu: float
    intercept: int  # v1 RescaleIntercept (-1024, occasionally -8192)


@dataclasses.dataclass(frozen=True)
class ScanPlan:
    split: str
    pid: int
    patient_index: int
    scan: str  # letter
    case_index: int
    recons: tuple[ReconPlan, ...]

    def volume_name(self, recon: ReconPlan) -> str:
        return f"{self.split}_{self.pid}_{self.scan}_{recon.recon}.nii.gz"


def plan_ctrate_twin(n_cases: int, seed: int) -> list[ScanPlan]:
    """Patients → scans → reconstructions; a pure function of (n_cases, seed).

    A quarter of the patients (at least one) are ``valid``; which ones is chosen from the scans'
    labels (:func:`_choose_valid_patients`) so that the test list of the twin holds both values of
    most labels. Train and valid patients are numbered in patient order from 90001 and 95001.
    """
    if n_cases < 2:
        raise ValueError(f"n_cases must be at least 2 (one train and one valid patient), got {n_cases}")
    n_valid = max(1, round(n_cases / 4))
    drafts: list[ScanPlan] = []
    for p in range(n_cases):
        rng = np.random.default_rng(np.random.SeedSequence([seed, DATASET_CODES["ctrate"], 100 * p, PLAN_STREAM]))
        for s in range(int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))):
            n_recon = int(rng.choice([1, 2], p=[0.45, 0.55]))
            ids = sorted(
                int(i) for i in rng.choice(np.arange(1, 12), size=n_recon, replace=False, p=_recon_id_weights())
            )
            recons = tuple(
                ReconPlan(
                    i,
                    ("smooth", "sharp")[k % 2],
                    round(float(rng.uniform(10, 30)), 2),
                    -8192 if rng.random() < 0.15 else -1024,
                )
                for k, i in enumerate(ids)
            )
            drafts.append(ScanPlan("train", 0, p, "abc"[s], 100 * p + s, recons))
    valid = _choose_valid_patients(drafts, n_cases, n_valid, seed)
    numbers = {
        "train": iter(range(TRAIN_PID0, TRAIN_PID0 + n_cases)),
        "valid": iter(range(VALID_PID0, VALID_PID0 + n_cases)),
    }
    pids = {p: next(numbers["valid" if p in valid else "train"]) for p in range(n_cases)}  # in patient order
    plans = [
        dataclasses.replace(d, split="valid" if d.patient_index in valid else "train", pid=pids[d.patient_index])
        for d in drafts
    ]
    first = plans[0]  # guarantee the hazards the readers must survive: a two-digit id, a -8192 intercept
    if not any(r.recon >= 10 for sp in plans for r in sp.recons):
        plans[0] = dataclasses.replace(
            first, recons=(ReconPlan(1, "smooth", 12.0, -1024), ReconPlan(10, "sharp", 25.0, -8192))
        )
    elif not any(r.intercept == -8192 for sp in plans for r in sp.recons):
        plans[0] = dataclasses.replace(
            first, recons=(dataclasses.replace(first.recons[0], intercept=-8192), *first.recons[1:])
        )
    return plans


def _choose_valid_patients(drafts: list[ScanPlan], n_cases: int, n_valid: int, seed: int) -> set[int]:
    """Greedy choice of the valid (= test) patients: maximise the number of labels with both values in the
    smaller of train and test, then in both together; ties go to later patients. Labels depend on the
    patient index only, so the choice never changes images, reports or labels."""
    volume_labels: dict[int, list[list[int]]] = {p: [] for p in range(n_cases)}
    for d in drafts:
        volume_labels[d.patient_index] += [ctrate_labels(scan_case(d, seed)[1])] * len(d.recons)

    def score(valid: list[int]) -> tuple[int, int]:
        test = [row for p in valid for row in volume_labels[p]]
        train = [row for p in range(n_cases) if p not in valid for row in volume_labels[p]]
        both_test, both_train = label_coverage(np.array(test))[0], label_coverage(np.array(train))[0]
        return min(both_test, both_train), both_test + both_train

    chosen: list[int] = []
    for _ in range(n_valid):
        chosen.append(max((p for p in range(n_cases) if p not in chosen), key=lambda p: (score(chosen + [p]), p)))
    return set(chosen)


def _recon_id_weights() -> np.ndarray:
    w = np.array([6, 5, 3, 2, 1, 1, 1, 1, 1, 1.5, 1.5])
    return w / w.sum()


def scan_case(plan: ScanPlan, seed: int) -> tuple[ChestCase, list[Finding]]:
    """The scan's phantom (the patient's body, the scan's seed) and its findings (the scan's findings stream)."""
    code = DATASET_CODES["ctrate"]
    body = sample_chest_case(seed, code, 100 * plan.patient_index)
    case = dataclasses.replace(body, nodules=(), seed=(int(seed), code, plan.case_index))
    return case, sample_findings(case_rngs(seed, code, plan.case_index)["findings"])


def scan_grid(case: ChestCase, shape, spacing) -> VoxelGrid:
    shift = case.acquisition.fov_shift_mm
    origin = tuple(round(c + d - (n - 1) / 2 * s, 3) for c, d, n, s in zip(FOV_CENTER_MM, shift, shape, spacing))
    return VoxelGrid(tuple(int(n) for n in shape), tuple(float(s) for s in spacing), origin)


def recon_rng(plan: ScanPlan, recon: ReconPlan, seed: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([seed, DATASET_CODES["ctrate"], plan.case_index, 1000 + recon.recon])
    )


def ras_stored(array: np.ndarray) -> np.ndarray:
    """LPS-stored (x, y, z) → RAS-stored: flip axes 0 and 1 (the patient's left then sits at low axis-0 indices)."""
    return np.ascontiguousarray(array[::-1, ::-1, :])


def ras_affine(grid: VoxelGrid) -> np.ndarray:
    (sx, sy, sz), (nx, ny, _) = grid.spacing, grid.shape
    ox, oy, oz = grid.origin
    corner_lps = (ox + (nx - 1) * sx, oy + (ny - 1) * sy, oz)  # voxel (0, 0, 0) of the flipped array
    return np.array([[sx, 0, 0, -corner_lps[0]], [0, sy, 0, -corner_lps[1]], [0, 0, sz, oz], [0, 0, 0, 1]], float)


def write_ctrate_twin(
    root: Path,
    *,
    n_cases: int = 8,
    shape=(64, 64, 32),
    spacing=(5.25, 5.25, 10.5),
    seed: int = 20251128,
    layout: str = "both",
) -> dict:
    """Write the twin under ``root`` and return its manifest (written last; byte-identical for the same seed)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    root = Path(root)
    if any((root / p).exists() for p in ("train", "train_preprocessed", "metadata")) and not (root / MARKER).is_file():
        raise DataError(
            f"{root}: holds CT-RATE-style data without a {MARKER} marker; refusing to write a synthetic twin"
        )
    official, simcrop = layout in ("both", "official"), layout in ("both", "simcrop")
    files: dict[str, str] = {}
    rows = {split: {"metadata": [], "reports": [], "labels": []} for split in ("train", "valid")}
    volumes = []
    for plan in plan_ctrate_twin(n_cases, seed):
        case, findings = scan_case(plan, seed)
        grid = scan_grid(case, shape, spacing)
        clean = render_clean(case, findings, grid)
        report = render_report(findings, case_rngs(seed, DATASET_CODES["ctrate"], plan.case_index)["report"])
        labels = ctrate_labels(findings)
        for recon in plan.recons:
            name = plan.volume_name(recon)
            stem = name[: -len(".nii.gz")]
            hu = acquire(clean, kernel=recon.kernel, noise_hu=recon.noise_hu, rng=recon_rng(plan, recon, seed))
            patient_dir, official_scan = f"{plan.split}_{plan.pid}", f"{plan.split}_{plan.pid}_{plan.scan}"
            if official:
                stored = (hu.astype(np.int32) - recon.intercept).astype(np.int16)  # HU = 1 * stored + intercept
                rel_v1 = f"{plan.split}/{patient_dir}/{official_scan}/{name}"
                write_nifti_gz(root / rel_v1, stored, np.eye(4), "simcrop-bench SYNTHETIC v1")  # default 1 mm header
                rel_v2 = f"{plan.split}_fixed/{patient_dir}/{official_scan}/{name}"
                write_nifti_gz(
                    root / rel_v2, hu, lps_nifti_affine(grid.spacing, grid.origin), "simcrop-bench SYNTHETIC v2"
                )
                files[rel_v1], files[rel_v2] = array_sha256(stored), array_sha256(hu)
            if simcrop:
                rel = f"{plan.split}_preprocessed/{patient_dir}/{plan.split}_{plan.pid}{plan.scan}/{name}"
                ras = ras_stored(hu)
                write_nifti_gz(root / rel, ras, ras_affine(grid), "simcrop-bench SYNTHETIC")
                files[rel] = array_sha256(ras)
            mask_rel = f"synthetic_meta/{stem}_findings.nii.gz"
            mask = ras_stored(clean.finding_mask)
            write_nifti_gz(root / mask_rel, mask, ras_affine(grid), "simcrop-bench SYNTHETIC finding mask")
            files[mask_rel] = array_sha256(mask)
            meta = _volume_meta(plan, recon, case, findings, report, labels, grid, seed)
            files[f"synthetic_meta/{stem}.json"] = _write_json_hashed(root / f"synthetic_meta/{stem}.json", meta)
            table = rows[plan.split]
            table["metadata"].append(_metadata_row(name, plan, recon, case, grid))
            table["reports"].append(
                [
                    name,
                    report.clinical_information,
                    report.technique,
                    report.findings_text or NOT_GIVEN,
                    report.impression_text or NOT_GIVEN,
                ]
            )
            table["labels"].append([name, *labels])
            volumes.append({"volume": name, "split": plan.split, "case_index": plan.case_index, "labels": labels})
    for split, (meta_csv, report_csv, label_csv) in CSV_FILES.items():
        # Reports and labels sit beside either layout (pretraining and the task read them); the metadata
        # CSV only matters for the v1 volumes of the official tree.
        tables = [(report_csv, REPORT_COLUMNS, "reports"), (label_csv, LABEL_COLUMNS, "labels")]
        for rel, columns, key in ([(meta_csv, METADATA_COLUMNS, "metadata")] if official else []) + tables:
            text = _csv_text(columns, rows[split][key])
            write_text(root / rel, text)
            files[rel] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    split_sizes = {}
    if simcrop:  # SimCroP's classification split files (protocol.md §11.2) sit in the root of the store
        for name, text in ctrate_split_csvs(rows["train"]["labels"], rows["valid"]["labels"]).items():
            write_text(root / name, text)
            files[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
            split_sizes[name] = len(text.splitlines()) - 1  # data rows
    write_text(root / MARKER, _marker_text(seed, n_cases, shape, spacing, layout))
    manifest = {
        "synthetic": True,
        "generator_version": GENERATOR_VERSION,
        "dataset": "CT-RATE",
        "layout": layout,
        "seed": seed,
        "n_cases": n_cases,
        "shape": list(shape),
        "spacing": list(spacing),
        "splits": split_sizes,
        "volumes": volumes,
        "files": dict(sorted(files.items())),
    }
    write_json(root / MANIFEST, manifest)
    return manifest


def ctrate_split_csvs(train_rows: list[list], valid_rows: list[list]) -> dict[str, str]:
    """``train_list{,_10,_1}.csv``, ``val_list.csv`` = ``test_list.csv`` from ``[VolumeName, *18 labels]`` rows.

    Train = the train volumes, ordered so that the §4 fraction prefixes (at least one row each) hold both
    values of as many labels as possible; val = test = the valid volumes, without a newline after the last
    row like the published CT-Rate files (protocol.md §3, §4, §11.2).
    """
    header = ",".join(SPLIT_FILES["ctrate_cls"].header)
    lines = [",".join(map(str, row)) for row in train_rows]
    order = covering_row_order(np.array([row[1:] for row in train_rows]), fraction_size(len(lines), 0.10, min_rows=1))
    train = [lines[i] for i in order]
    out = {CSV_NAMES["train"]: "\n".join([header, *train]) + "\n"}
    for role, fraction in (("train_10", 0.10), ("train_1", 0.01)):
        rows = [train[i] for i in fraction_subset(len(train), fraction, min_rows=1)]
        out[CSV_NAMES[role]] = "\n".join([header, *rows]) + "\n"
    test = "\n".join([header, *(",".join(map(str, row)) for row in valid_rows)])
    return {**out, CSV_NAMES["val"]: test, CSV_NAMES["test"]: test}


def _csv_text(columns, rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def _bracket(values) -> str:
    return "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values) + "]"


def _metadata_row(name: str, plan: ScanPlan, recon: ReconPlan, case: ChestCase, grid: VoxelGrid) -> list:
    rng = np.random.default_rng(np.random.SeedSequence([*case.seed, 2000 + recon.recon]))
    sex = "F" if case.seed[2] // 100 % 2 else "M"
    age = 40 + (plan.patient_index * 7) % 45
    (sx, sy, sz), (nx, ny, nz) = grid.spacing, grid.shape
    kvp_ma = int(rng.integers(80, 300))
    values = {
        "VolumeName": name,
        "Manufacturer": "SYNTHETIC",
        "SeriesDescription": f"SYNTHETIC CHEST {recon.kernel.upper()}",
        "ManufacturerModelName": "simcrop-bench phantom",
        "PatientSex": sex,
        "PatientAge": f"{age:03d}Y",
        "ReconstructionDiameter": round(sx * nx, 2),
        "DistanceSourceToDetector": 1085.6,
        "DistanceSourceToPatient": 595.0,
        "GantryDetectorTilt": 0.0,
        "TableHeight": 150.0,
        "RotationDirection": "CW",
        "ExposureTime": 500,
        "XRayTubeCurrent": kvp_ma,
        "Exposure": kvp_ma // 2,
        "FilterType": "BODY FILTER",
        "GeneratorPower": 40000,
        "FocalSpots": _bracket([1.2, 1.2]),
        "ConvolutionKernel": f"SYN-{recon.kernel.upper()}",
        "PatientPosition": "HFS",
        "RevolutionTime": 0.5,
        "SingleCollimationWidth": 0.625,
        "TotalCollimationWidth": 40.0,
        "TableSpeed": 78.75,
        "TableFeedPerRotation": 39.375,
        "SpiralPitchFactor": 0.984375,
        "DataCollectionCenterPatient": _bracket([0.0, 0.0, float(grid.origin[2])]),
        "ReconstructionTargetCenterPatient": _bracket([0.0, 0.0, float(grid.origin[2])]),
        "ExposureModulationType": "XYZ_EC",
        "CTDIvol": round(float(rng.uniform(3, 12)), 2),
        "ImagePositionPatient": _bracket([float(v) for v in grid.origin]),
        "ImageOrientationPatient": "[1, 0, 0, 0, 1, 0]",
        "SliceLocation": float(grid.origin[2]),
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "Rows": ny,
        "Columns": nx,
        "XYSpacing": _bracket([float(sx), float(sy)]),
        "RescaleIntercept": recon.intercept,
        "RescaleSlope": 1,
        "RescaleType": "HU",
        "NumberofSlices": nz,
        "ZSpacing": float(sz),
        "StudyDate": 20990101 + plan.case_index % 28,
    }
    return [values[c] for c in METADATA_COLUMNS]


def _volume_meta(plan, recon, case, findings, report, labels, grid, seed) -> dict:
    values = {f.id: i + 1 for i, f in enumerate(findings)}
    sentences = []
    for s in report.sentences:
        entry = dataclasses.asdict(s)
        entry["region"] = {
            "key": s.region,
            "mask": "findings",
            "values": [values[i] for i in s.finding_ids if i in values],
        }
        sentences.append(entry)
    return {
        "synthetic": True,
        "generator_version": GENERATOR_VERSION,
        "style": "ctrate",
        "seed": [seed, *case.seed[1:]],
        "volume": plan.volume_name(recon),
        "split": plan.split,
        "patient": f"{plan.split}_{plan.pid}",
        "scan": plan.scan,
        "recon": dataclasses.asdict(recon),
        "grid": {"shape": list(grid.shape), "spacing_mm": list(grid.spacing), "lps_origin_mm": list(grid.origin)},
        "case": case.to_dict(),
        "findings": [f.to_dict() for f in findings],
        "finding_mask": {
            "file": f"{plan.volume_name(recon)[:-7]}_findings.nii.gz",
            "orientation": "RAS-stored",
            "values": values,
        },
        "derived": {"ctrate18": labels, "sentences": sentences},
        "report": {"findings": report.findings_text, "impression": report.impression_text},
    }


def _write_json_hashed(path: Path, obj: dict) -> str:
    text = json.dumps(obj, indent=2) + "\n"
    write_text(path, text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _marker_text(seed, n_cases, shape, spacing, layout) -> str:
    return (
        "# SYNTHETIC DATA\n\nEverything under this folder was generated by `simcrop-bench` "
        "(`simcrop_bench.data.synthetic.ctrate.write_ctrate_twin`): an analytic chest phantom with drawn findings "
        f"and template reports laid out like CT-RATE (layout: {layout}). It contains no patient data or real text; "
        "results computed on it must never be mixed with results on real data.\n\n"
        f"- generator version: {GENERATOR_VERSION}\n- seed: {seed}\n- patients: {n_cases}\n"
        f"- grid: {list(shape)} voxels at {list(spacing)} mm (x, y, z)\n- manifest: `{MANIFEST}`\n"
    )
