"""CT-RATE synthetic twin: determinism, layouts and naming, CSVs, v1/v2 rescale, labels, laterality, masks."""

from __future__ import annotations

import csv
import dataclasses
import json
import re

import nibabel as nib
import numpy as np
import pytest

from simcrop_bench.data.ctrate import (
    read_ctrate_official_volume,
    read_labels,
    read_reports,
    simcrop_volume_path,
)
from simcrop_bench.data.labeller import label_report
from simcrop_bench.data.synthetic.ctrate import (
    LABEL_COLUMNS,
    METADATA_COLUMNS,
    REPORT_COLUMNS,
    plan_ctrate_twin,
    recon_rng,
    scan_case,
    scan_grid,
    write_ctrate_twin,
)
from simcrop_bench.data.synthetic.findings import Finding, ctrate_labels
from simcrop_bench.data.synthetic.lesions import acquire, render_clean, render_ctrate_case
from simcrop_bench.data.synthetic.phantom import DATASET_CODES, sample_chest_case
from simcrop_bench.errors import DataError

SEED = 20251128
SHAPE, SPACING = (64, 64, 32), (5.25, 5.25, 10.5)


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctrate") / "root"
    return root, write_ctrate_twin(root, seed=SEED)


def _csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_byte_identical_for_same_seed(twin, tmp_path):
    root, manifest = twin
    again = write_ctrate_twin(tmp_path / "again", seed=SEED)
    assert again == manifest
    for rel in manifest["files"]:
        assert (root / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes(), rel


def test_layout_naming_and_patient_disjoint(twin):
    root, manifest = twin
    assert "SYNTHETIC" in (root / "SYNTHETIC.md").read_text()
    names = [v["volume"] for v in manifest["volumes"]]
    pattern = re.compile(r"(train|valid)_(9\d{4})_([a-c])_(\d{1,2})\.nii\.gz")
    assert all(pattern.fullmatch(n) for n in names)
    assert any(int(pattern.fullmatch(n).group(4)) >= 10 for n in names)
    patients = {s: {pattern.fullmatch(n).group(2) for n in names if n.startswith(s)} for s in ("train", "valid")}
    assert patients["train"] and patients["valid"] and not patients["train"] & patients["valid"]
    for name in names:
        split, pid, scan, _ = name[:-7].split("_")
        path = simcrop_volume_path(str(root) + "/", name)
        assert path == root / f"{split}_preprocessed" / f"{split}_{pid}" / f"{split}_{pid}{scan}" / name
        assert path.is_file()
        for folder in (split, f"{split}_fixed"):
            assert (root / folder / f"{split}_{pid}" / f"{split}_{pid}_{scan}" / name).is_file()
        assert (root / "synthetic_meta" / f"{name[:-7]}.json").is_file()


def test_csv_headers_exact(twin):
    root, _ = twin
    assert len(METADATA_COLUMNS) == 44
    for meta, reports, labels in (
        ("train_metadata", "train_reports", "train_predicted_labels"),
        ("validation_metadata", "validation_reports", "valid_predicted_labels"),
    ):
        assert tuple(_csv(root / "metadata" / f"{meta}.csv")[0]) == METADATA_COLUMNS
        assert tuple(_csv(root / "radiology_text_reports" / f"{reports}.csv")[0]) == REPORT_COLUMNS
        assert tuple(_csv(root / "multi_abnormality_labels" / f"{labels}.csv")[0]) == LABEL_COLUMNS
    row = dict(zip(METADATA_COLUMNS, _csv(root / "metadata/train_metadata.csv")[1]))
    assert row["XYSpacing"] == "[5.25, 5.25]" and row["ZSpacing"] == "10.5" and row["RescaleSlope"] == "1"


def test_v1_roundtrip_and_v2_not_rescaled(twin):
    root, manifest = twin
    plans = {p.volume_name(r): (p, r) for p in plan_ctrate_twin(8, SEED) for r in p.recons}
    intercepts = set()
    for entry in manifest["volumes"][:6] + manifest["volumes"][-2:]:
        name = entry["volume"]
        plan, recon = plans[name]
        case, findings = scan_case(plan, SEED)
        clean = render_clean(case, findings, scan_grid(case, SHAPE, SPACING))
        expected = acquire(clean, kernel=recon.kernel, noise_hu=recon.noise_hu, rng=recon_rng(plan, recon, SEED))
        hu_v1, spacing_v1 = read_ctrate_official_volume(root, name, "v1")
        hu_v2, spacing_v2 = read_ctrate_official_volume(root, name, "v2")
        assert np.array_equal(hu_v1, expected) and np.array_equal(hu_v2, expected)
        assert spacing_v1 == pytest.approx(SPACING) and spacing_v2 == pytest.approx(SPACING)
        assert nib.load(
            str(root / plan.split / f"{plan.split}_{plan.pid}" / f"{plan.split}_{plan.pid}_{plan.scan}" / name)
        ).header.get_zooms() == (1.0, 1.0, 1.0)  # v1 header spacing is a default
        intercepts.add(recon.intercept)
    all_intercepts = {r.intercept for p in plans.values() for r in [p[1]]}
    assert -1024 in all_intercepts and -8192 in all_intercepts
    # v2 must not be rescaled although its metadata row carries a non-zero intercept: reader output == stored values.
    name = manifest["volumes"][0]["volume"]
    plan, _ = plans[name]
    hu_v2, _ = read_ctrate_official_volume(root, name, "v2")
    stored = np.asarray(
        nib.load(
            str(
                root
                / f"{plan.split}_fixed"
                / f"{plan.split}_{plan.pid}"
                / f"{plan.split}_{plan.pid}_{plan.scan}"
                / name
            )
        ).dataobj
    )
    assert np.array_equal(hu_v2, stored) and plans[name][1].intercept != 0


def test_labels_reports_and_reconstructions(twin):
    root, manifest = twin
    for split in ("train", "valid"):
        labels, reports = read_labels(root, split), read_reports(root, split)
        assert set(labels) == set(reports)
        for name, row in reports.items():
            meta = json.loads((root / "synthetic_meta" / f"{name[:-7]}.json").read_text())
            findings = [Finding.from_dict(f) for f in meta["findings"]]
            assert labels[name] == ctrate_labels(findings)
            assert label_report(row["Findings_EN"], row["Impressions_EN"]) == labels[name], name
        by_scan: dict[str, list[str]] = {}
        for name in labels:
            by_scan.setdefault(name.rsplit("_", 1)[0], []).append(name)
        for names in by_scan.values():
            assert all(labels[n] == labels[names[0]] and reports[n] == reports[names[0]] for n in names)
    scans: dict[str, list[str]] = {}
    for v in manifest["volumes"]:
        scans.setdefault(v["volume"].rsplit("_", 1)[0], []).append(v["volume"])
    pairs = [names for names in scans.values() if len(names) >= 2]
    assert pairs, "no scan with two reconstructions"
    a, b = pairs[0][:2]  # same report and labels (above) but different kernel/noise
    assert not np.array_equal(
        read_ctrate_official_volume(root, a, "v2")[0], read_ctrate_official_volume(root, b, "v2")[0]
    )


def test_left_finding_lands_at_low_axis0_in_simcrop_store(tmp_path):
    case = dataclasses.replace(sample_chest_case(SEED, DATASET_CODES["ctrate"], 0), nodules=())
    grid = scan_grid(case, SHAPE, SPACING)
    findings = [
        Finding("f1", "lung_nodule", side="left", lobe="left_lower", size_mm=15.0, attrs={"density": "solid"}),
        Finding("f2", "pleural_effusion", side="left", region="pleural_space", size_mm=30.0),
    ]
    rendered = render_ctrate_case(case, findings, grid)
    from simcrop_bench.data.formats.nifti import write_nifti_gz
    from simcrop_bench.data.synthetic.ctrate import ras_affine, ras_stored

    path = tmp_path / "v.nii.gz"
    write_nifti_gz(path, ras_stored(rendered.finding_mask), ras_affine(grid))
    image = nib.load(str(path))
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    mask = np.asarray(image.dataobj)  # classification path: array only, no affine
    for value in (1, 2):
        xs = np.nonzero(mask == value)[0]
        assert xs.size and xs.mean() < SHAPE[0] / 2, value


def test_finding_masks_nonempty_for_drawn_findings(twin):
    root, manifest = twin
    seen = 0
    for entry in manifest["volumes"]:
        stem = entry["volume"][:-7]
        meta = json.loads((root / "synthetic_meta" / f"{stem}.json").read_text())
        mask = np.asarray(nib.load(str(root / "synthetic_meta" / f"{stem}_findings.nii.gz")).dataobj)
        for finding in meta["findings"]:
            if finding["id"].startswith("d"):  # distractors (abdomen, thyroid) may lie outside the tiny field of view
                continue
            assert (mask == meta["finding_mask"]["values"][finding["id"]]).any(), (stem, finding["type"])
            seen += 1
    assert seen > 10


def test_missing_file_and_column_raise_dataerror(twin, tmp_path):
    root, _ = twin
    with pytest.raises(DataError, match="validation_reports.csv"):
        read_reports(tmp_path, "valid")
    bad = tmp_path / "multi_abnormality_labels" / "train_predicted_labels.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("VolumeName,Cardiomegaly\ntrain_90001_a_1.nii.gz,0\n")
    with pytest.raises(DataError, match="train_predicted_labels.csv"):
        read_labels(tmp_path, "train")


def test_classification_split_csvs(twin):
    """ctrate_cls files in the grammar of protocol.md §11.2: train volumes, val = test = valid volumes."""
    from simcrop_bench.data.splits.files import SPLIT_FILES, read_split_csv

    root, manifest = twin
    header = ",".join(SPLIT_FILES["ctrate_cls"].header) + "\n"
    names = ("train_list.csv", "train_list_10.csv", "train_list_1.csv", "val_list.csv", "test_list.csv")
    texts = {n: (root / n).read_text() for n in names}
    assert all(t.startswith(header) for t in texts.values())
    assert all(texts[n].endswith("\n") for n in names[:3]) and not texts["test_list.csv"].endswith("\n")
    assert texts["val_list.csv"] == texts["test_list.csv"]
    tables = {n: read_split_csv(root / n, "ctrate_cls") for n in names}
    labels = {v["volume"]: v["labels"] for v in manifest["volumes"]}
    by_split = {s: sorted(v["volume"] for v in manifest["volumes"] if v["split"] == s) for s in ("train", "valid")}
    assert sorted(tables["train_list.csv"].ids) == by_split["train"]
    assert sorted(tables["test_list.csv"].ids) == by_split["valid"]
    for table in tables.values():
        assert [labels[i] for i in table.ids] == table.labels.tolist()
    train = tables["train_list.csv"].ids
    perm = np.random.RandomState(42).permutation(len(train))
    for name in ("train_list_10.csv", "train_list_1.csv"):
        n = len(tables[name])
        assert n == max(1, round((0.1 if "10" in name else 0.01) * len(train)))
        assert tables[name].ids == tuple(train[i] for i in perm[:n])
    assert manifest["splits"] == {n: len(t) for n, t in tables.items()}
