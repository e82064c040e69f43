"""CC-CCII and RadChestCT synthetic twins and their readers: layouts, splits, labels, laterality, determinism."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from simcrop_bench.data.ccccii import ccccii_intensity_stats, read_ccccii_resized, read_ccccii_slices
from simcrop_bench.data.labels import RADCHESTCT_LABELS
from simcrop_bench.data.radchestct import abn_loc_labels, map_to_16, npz_to_ras, read_radchestct_npz
from simcrop_bench.data.splits.files import read_split_csv
from simcrop_bench.data.synthetic.ccccii import CLASS_LABELS, MANIFEST, MARKER, write_ccccii_twin
from simcrop_bench.data.synthetic.radchestct import write_radchestct_twin
from simcrop_bench.errors import DataError

SEED = 20251128
CC_KW = dict(n_patients=6, seed=SEED)
RC_KW = dict(n_train=5, n_valid=2, n_test=2, seed=SEED)
SPLITS = ("train_list.csv", "train_list_10.csv", "train_list_1.csv", "val_list.csv", "test_list.csv")


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cc(tmp_path_factory):
    root = tmp_path_factory.mktemp("ccccii") / "root"
    return root, write_ccccii_twin(root, **CC_KW)


@pytest.fixture(scope="module")
def rc(tmp_path_factory):
    base = tmp_path_factory.mktemp("radchestct")
    return {m: (base / m, write_radchestct_twin(base / m, mapping=m, **RC_KW)) for m in ("token", "simcrop_files")}


def _findings_ras(root: Path, scan_id: int) -> np.ndarray:
    stored = np.asanyarray(nib.load(root / f"synthetic_meta/{scan_id}_findings.nii.gz").dataobj)
    return stored.transpose(1, 2, 0)  # same convention as images_resized


# ---------------------------------------------------------------- CC-CCII


def test_ccccii_layout_and_csv_headers(cc):
    root, manifest = cc
    assert (root / MARKER).is_file() and json.loads((root / MANIFEST).read_text())["synthetic"] is True
    assert set(manifest["files"]) <= set(_tree_bytes(root))
    unzip = pd.read_csv(root / "unzip_filenames.csv")
    assert list(unzip.columns) == ["zip_file", "label", "patient_id", "scan_id", "n_slice"]
    assert len(unzip) == manifest["n_scans"] > CC_KW["n_patients"]  # several scans per patient somewhere
    for row in unzip.itertuples():
        folder = root / row.label / str(row.patient_id) / str(row.scan_id)
        assert len(list(folder.glob("*.png"))) == row.n_slice
        assert (root / f"images_resized/{row.scan_id}.nii.gz").is_file() and row.scan_id >= 90000
    lines = (root / "lesions_slices.csv").read_text().splitlines()
    assert lines[0] == "path" and len(lines) > 1
    assert all((root / rel).is_file() and rel.split("/")[0] in ("NCP", "CP") for rel in lines[1:])
    for name in SPLITS:
        text = (root / name).read_text()
        assert text.startswith("img_list,label\n") and text.endswith("\n") and "\nim" not in text
        read_split_csv(root / name, "ccccii_cls")  # the importer's grammar accepts it


def test_ccccii_splits_val_test_fractions_and_labels(cc):
    root, manifest = cc
    assert (root / "val_list.csv").read_bytes() == (root / "test_list.csv").read_bytes()
    rows = {n: (root / n).read_text().splitlines()[1:] for n in SPLITS}
    n = manifest["n_scans"]
    assert len(rows["test_list.csv"]) == math.ceil(0.3 * n) and len(rows["train_list.csv"]) == n - math.ceil(0.3 * n)
    assert not set(rows["train_list.csv"]) & set(rows["test_list.csv"])
    train = rows["train_list.csv"]
    perm = np.random.RandomState(42).permutation(len(train))
    for name, f in (("train_list_10.csv", 10), ("train_list_1.csv", 1)):
        k = max(1, round(f / 100 * len(train)))
        assert rows[name] == [train[i] for i in perm[:k]]
    assert rows["train_list_10.csv"][: len(rows["train_list_1.csv"])] == rows["train_list_1.csv"]  # nesting
    drawn = {s["scan_id"]: CLASS_LABELS[s["class"]] for s in manifest["scans"]}
    for line in train + rows["test_list.csv"]:
        scan, label = line.split(",")
        assert int(label) == drawn[int(scan.removesuffix(".nii.gz"))]
    assert set(drawn.values()) == {0, 1, 2}


def test_ccccii_laterality_of_drawn_classes(cc):
    root, manifest = cc
    for s in manifest["scans"]:
        mask = _findings_ras(root, s["scan_id"]) > 0
        half = mask.shape[0] // 2  # RAS: patient left at low axis-0 indices
        left, right = mask[:half].any(), mask[half:].any()
        meta = json.loads((root / f"synthetic_meta/{s['scan_id']}.json").read_text())
        if s["class"] == "NCP":
            assert left and right
        elif s["class"] == "CP":
            side = meta["lesions"][0]["side"]
            assert (left, right) == ((True, False) if side == "left" else (False, True))
        else:
            assert not mask.any() and meta["lesions"] == []


def test_ccccii_reader_hu_and_slices_round_trip(cc, tmp_path):
    root, manifest = cc
    scan = manifest["scans"][0]
    hu = read_ccccii_resized(root, scan["scan_id"])
    assert hu.dtype == np.int16 and hu.shape == (64, 64, 32)
    stats = ccccii_intensity_stats(hu)
    assert not stats["looks_uint8"] and stats["warning"] is None and stats["min"] < -500
    lesion = _findings_ras(root, scan["scan_id"]) == 1  # ground glass: −700…−400 HU plus noise
    assert -760 < hu[lesion].mean() < -340
    slices = read_ccccii_slices(root, scan["class"], scan["patient_id"], scan["scan_id"])
    # uint8 switch: same scan windowed, and identical to the stacked official slices
    other = tmp_path / "u8"
    write_ccccii_twin(other, layout="simcrop", resized_intensity="uint8", **CC_KW)
    u8 = read_ccccii_resized(other, f"{scan['scan_id']}.nii.gz")
    assert u8.dtype == np.uint8 and np.array_equal(u8, slices)
    stats = ccccii_intensity_stats(u8)
    assert stats["looks_uint8"] and "8-bit" in stats["warning"]
    assert not (other / "NCP").exists() and not (other / "unzip_filenames.csv").exists()


def test_ccccii_determinism_byte_identical(cc, tmp_path):
    root, _ = cc
    again = tmp_path / "again"
    write_ccccii_twin(again, **CC_KW)
    assert _tree_bytes(again) == _tree_bytes(root)


def test_ccccii_reader_errors_name_files(tmp_path):
    with pytest.raises(DataError, match="images_resized/5.nii.gz"):
        read_ccccii_resized(tmp_path, 5)
    with pytest.raises(DataError, match="NCP/1/2"):
        read_ccccii_slices(tmp_path, "NCP", 1, 2)


# ---------------------------------------------------------------- RadChestCT


def test_radchestct_layout_headers_and_ids(rc):
    root, manifest = rc["token"]
    assert (root / MARKER).is_file() and manifest["synthetic"] is True
    header = "NoteAcc_DEID," + ",".join(RADCHESTCT_LABELS)
    assert "Hietal Hernia" in header
    for name, prefix in (
        ("train_list.csv", "trn"),
        ("val_list.csv", "val"),
        ("test_list.csv", "tst"),
        ("train_list_10.csv", "trn"),
    ):
        lines = (root / name).read_text().splitlines()
        assert lines[0] == header and all(
            row.startswith(prefix) and row[3:8].isdigit() and int(row[3:8]) >= 90000 for row in lines[1:]
        )
        read_split_csv(root / name, "radchestct_cls")
    train = (root / "train_list.csv").read_text().splitlines()[1:]
    assert (root / "train_list_10.csv").read_text().splitlines()[1:] == [
        train[np.random.RandomState(42).permutation(len(train))[0]]
    ]
    for split, n in (("imgtrain", 5), ("imgvalid", 2), ("imgtest", 2)):
        tokens = abn_loc_labels(root / f"{split}_Abnormality_and_Location_Labels.csv")
        assert len(tokens) == n and tokens.columns.names == ["abnormality", "location"]
        assert ("pleural_effusion", "right_lung") in tokens.columns
    for c in manifest["cases"]:
        assert (root / f"images/{c['NoteAcc_DEID']}.npz").is_file() and (
            root / f"images/{c['NoteAcc_DEID']}.nii.gz"
        ).is_file()


def test_radchestct_npz_round_trip_to_hu(rc):
    root, manifest = rc["token"]
    for c in manifest["cases"][:3]:
        ct = read_radchestct_npz(root / f"images/{c['NoteAcc_DEID']}.npz")
        assert ct.dtype == np.int16 and ct.min() >= -1000 and ct.max() <= 1000
        image = nib.load(root / f"images/{c['NoteAcc_DEID']}.nii.gz")
        assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
        ras = np.asanyarray(image.dataobj)
        assert np.array_equal(npz_to_ras(ct), ras)
        # heart (soft tissue, left of the midline) -> more soft tissue in the patient-left half of a mid slice
        mid = ras[:, :, ras.shape[2] // 3]
        assert (mid[: ras.shape[0] // 2] > 0).sum() > (mid[ras.shape[0] // 2 :] > 0).sum()


def test_radchestct_mapping_hazard_column_3_equals_11(rc):
    files = {m: pd.read_csv(root / "train_list.csv").iloc[:, 1:] for m, (root, _) in rc.items()}
    for m in files:
        val = pd.read_csv(rc[m][0] / "val_list.csv").iloc[:, 1:]
        test = pd.read_csv(rc[m][0] / "test_list.csv").iloc[:, 1:]
        files[m] = pd.concat([files[m], val, test])
    dup = files["simcrop_files"]
    assert (dup.iloc[:, 3] == dup.iloc[:, 11]).all()
    assert not (files["token"].iloc[:, 3] == files["token"].iloc[:, 11]).all()
    others = [i for i in range(16) if i != 3]
    assert files["token"].iloc[:, others].equals(dup.iloc[:, others])
    # labels match the drawn findings
    tokens = abn_loc_labels(rc["token"][0] / "imgtrain_Abnormality_and_Location_Labels.csv")
    labels = map_to_16(tokens, "token")
    for c in rc["token"][1]["cases"]:
        if c["NoteAcc_DEID"] in labels.index:
            drawn = {f.split("*")[0] for f in c["findings"]}
            assert labels.loc[c["NoteAcc_DEID"], "Pleural effusion"] == int("pleural_effusion" in drawn)
            assert labels.loc[c["NoteAcc_DEID"], "Lung nodule"] == int(bool(drawn & {"nodule", "nodulegr1cm"}))


def test_radchestct_determinism_byte_identical(rc, tmp_path):
    root, _ = rc["token"]
    again = tmp_path / "again"
    write_radchestct_twin(again, mapping="token", **RC_KW)
    assert _tree_bytes(again) == _tree_bytes(root)


def test_radchestct_errors_name_files(tmp_path):
    bad = tmp_path / "trn90000.npz"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match="trn90000.npz"):
        read_radchestct_npz(bad)
    wrong_key = tmp_path / "trn90001.npz"
    np.savez_compressed(wrong_key, arr_0=np.zeros((2, 2, 2), np.int16))
    with pytest.raises(DataError, match="trn90001.npz.*'ct'"):
        read_radchestct_npz(wrong_key)
    csv = tmp_path / "imgtrain_Abnormality_and_Location_Labels.csv"
    csv.write_text("VolumeName,nodule*left_lower\ntrn90000,1\n")
    with pytest.raises(DataError, match="imgtrain_Abnormality_and_Location_Labels.csv.*NoteAcc_DEID"):
        abn_loc_labels(csv)
