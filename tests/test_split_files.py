"""Split importer on synthetic SimCroP-like split files (no real split rows anywhere)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from simcrop_bench.config import stable_hash
from simcrop_bench.data.splits.files import (
    SPLIT_FILES,
    ctrate_group,
    heldout_lists,
    import_splits,
    read_split_csv,
    verify_sha256,
)
from simcrop_bench.data.splits.fractions import fraction_subset
from simcrop_bench.errors import DataError, RegistryError

CLS = "Down-stream/Classification_Linear/datasets"
SEG = "Down-stream/Segmentation/datasets"
LUNA_UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.9999999999999999999999999999{:02d}"


def csv_text(header, rows, final_newline=True) -> str:
    text = "\n".join([",".join(header)] + [",".join([i, *map(str, labels)]) for i, labels in rows])
    return text + ("\n" if final_newline else "")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())


def write_cls(folder: Path, task: str, train, val, test, *, test_final_newline=True) -> None:
    """train/val/test are lists of (id, labels); fraction lists follow the real §4 recipe."""
    header = SPLIT_FILES[task].header
    write(folder / "train_list.csv", csv_text(header, train))
    for role, fraction in (("train_list_10.csv", 0.10), ("train_list_1.csv", 0.01)):
        if role == "train_list_1.csv" and not any(f.role == "train_1" for f in SPLIT_FILES[task].files):
            continue
        write(folder / role, csv_text(header, [train[i] for i in fraction_subset(len(train), fraction)]))
    write(folder / "val_list.csv", csv_text(header, val, test_final_newline))
    write(folder / "test_list.csv", csv_text(header, test, test_final_newline))


def ctrate_rows(rng, prefix, patients, n_labels=18):
    rows = []
    for pid in patients:
        for letter in "ab"[: rng.randint(1, 3)]:
            for recon in rng.choice([1, 2, 3, 10, 11], size=rng.randint(1, 3), replace=False):
                rows.append((f"{prefix}_{pid}_{letter}_{recon}.nii.gz", rng.randint(0, 2, n_labels)))
    return rows


def radchest_rows(rng, prefix, start, n):
    rows = []
    for k in range(n):
        labels = rng.randint(0, 2, 16)
        labels[11] = labels[3]  # the published files' duplicated column (H5)
        rows.append((f"{prefix}{start + k}", labels))
    return rows


def seg_entry(uid):
    return {"image": f"images/{uid}.nii.gz", "label": f"masks_processed/{uid}.nii.gz"}


def build_checkout(root: Path) -> Path:
    rng = np.random.RandomState(0)
    cls = root / CLS
    ct_train = ctrate_rows(rng, "train", range(90001, 90041))
    ct_test = ctrate_rows(rng, "valid", range(90001, 90006))
    write_cls(cls / "CT-Rate", "ctrate_cls", ct_train, ct_test, ct_test, test_final_newline=False)
    write_cls(
        cls / "RadChestCT",
        "radchestct_cls",
        radchest_rows(rng, "trn", 90001, 40),
        radchest_rows(rng, "val", 90001, 10),
        radchest_rows(rng, "tst", 90001, 8),
    )
    cc_train = [(f"{9001 + k}.nii.gz", [rng.randint(0, 3)]) for k in range(60)]
    cc_test = [(f"{9101 + k}.nii.gz", [rng.randint(0, 3)]) for k in range(12)]
    write_cls(cls / "CC-CCII", "ccccii_cls", cc_train, cc_test, cc_test)
    luna_train = [(LUNA_UID.format(k) + ".nii.gz", [rng.randint(0, 2)]) for k in range(30)]
    luna_test = [(LUNA_UID.format(k) + ".nii.gz", [rng.randint(0, 2)]) for k in range(30, 40)]
    write_cls(cls / "LUNA16", "luna16_cls", luna_train, luna_test, luna_test)
    uids = [LUNA_UID.format(k) for k in range(40)]
    labels = {"0": "background", "1": "left lung", "2": "right lung", "3": "trachea"}
    for name, training in (("dataset_10.json", uids[:3]), ("dataset_100.json", uids[:29])):
        doc = {
            "name": "LUNA16",
            "labels": labels,
            "numTraining": 621,
            "numTest": 267,
            "training": [seg_entry(u) for u in training],
            "validation": [seg_entry(u) for u in uids[30:32]],
            "testing": [seg_entry(u) for u in uids[30:]],
        }
        write(root / SEG / "LUNA16" / name, json.dumps(doc, indent=1))
    case = lambda k: {"image": f"imagesTr/btcv_{k:03d}.nii.gz", "label": f"labelsTr/btcv_{k:03d}.nii.gz"}  # noqa: E731
    btcv = {
        "name": "BTCV",
        "numTraining": 80,
        "numTest": 20,
        "training": [case(k) for k in (1, 2, 21, 22)],
        "validation": [case(k) for k in (35, 36)],
        "test": [f"imagesTs/img{k:04d}.nii.gz" for k in (61, 62)],
    }
    write(root / SEG / "BTCV" / "dataset.json", json.dumps(btcv))
    return root


@pytest.fixture
def checkout(tmp_path) -> Path:
    return build_checkout(tmp_path / "SimCroP")


def manifest(dest: Path, task: str) -> dict:
    return json.loads((dest / task / "manifest.json").read_text())


def test_split_file_table_matches_protocol():
    assert set(SPLIT_FILES) == {"ctrate_cls", "radchestct_cls", "ccccii_cls", "luna16_cls", "lung_seg", "btcv_seg"}
    for spec in SPLIT_FILES.values():
        assert all(re.fullmatch(r"[0-9a-f]{64}", f.sha256) for f in spec.files)
    for task in ("ctrate_cls", "ccccii_cls", "luna16_cls"):  # val ≡ test: one published hash
        assert SPLIT_FILES[task].file("val").sha256 == SPLIT_FILES[task].file("test").sha256
    ct = SPLIT_FILES["ctrate_cls"]
    assert ct.file("train").relpath == f"{CLS}/CT-Rate/train_list.csv"
    assert ct.file("train").sha256 == "e0482330934158ebaa42abff2d9b0d9d83f427bea0a12ac021c6320c8680021f"
    assert [ct.file(r).rows for r in ("train", "train_10", "train_1", "val", "test")] == [46363, 4636, 464, 3009, 3009]
    assert len(ct.header) == 19 and ct.header[0] == "VolumeName" and ct.header[6] == "Hiatal hernia"
    rad = SPLIT_FILES["radchestct_cls"]
    assert len(rad.header) == 17 and rad.header[5] == "Hietal Hernia" and rad.header[4] == "Pericardial effusion"
    assert {f.role for f in rad.files} == {"train", "train_10", "val", "test"}
    assert SPLIT_FILES["ccccii_cls"].header == ("img_list", "label")
    assert SPLIT_FILES["luna16_cls"].header == ("image_id", "label")
    assert SPLIT_FILES["lung_seg"].file("dataset_100").relpath == f"{SEG}/LUNA16/dataset_100.json"
    assert SPLIT_FILES["btcv_seg"].file("dataset").rows["training"] == 24


def test_verify_sha256_on_known_bytes(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"img_list,label\n9001.nii.gz,2\n")
    known = hashlib.sha256(b"img_list,label\n9001.nii.gz,2\n").hexdigest()
    assert verify_sha256(path, known) == (known, True)
    assert verify_sha256(path, known.upper()) == (known, True)
    assert verify_sha256(path, "0" * 64) == (known, False)


def test_import_checkout_writes_manifests(checkout, tmp_path):
    dest = tmp_path / "splits"
    report = import_splits(checkout, dest)
    assert report.ok and {t.status for t in report.tasks.values()} == {"imported"}
    for task, spec in SPLIT_FILES.items():
        m = manifest(dest, task)
        assert m["task"] == task and m["manifest_hash"] == report.tasks[task].manifest_hash
        assert stable_hash({k: v for k, v in m.items() if k != "manifest_hash"}) == m["manifest_hash"]
        assert all(not f["published_match"] for f in m["files"])
        assert "SHA-256 differs" in m["warnings"][0] and "sizes differ" in m["warnings"][1]
        for f in spec.files:  # byte-exact copies
            assert (dest / task / f.name).read_bytes() == (checkout / f.relpath).read_bytes()
            entry = next(e for e in m["files"] if e["role"] == f.role)
            assert entry["sha256"] == hashlib.sha256((checkout / f.relpath).read_bytes()).hexdigest()
    ct = manifest(dest, "ctrate_cls")["checks"]
    assert ct["train_10_matches_recipe"] and ct["train_1_matches_recipe"] and ct["val_equals_test"]
    assert ct["patient_overlap_train_test"] == 0 and ct["duplicated_columns"] == []
    assert manifest(dest, "radchestct_cls")["checks"]["val_equals_test"] is False
    assert manifest(dest, "ccccii_cls")["checks"]["label_counts"]["train"].keys() <= {"0", "1", "2"}
    seg = manifest(dest, "lung_seg")["checks"]
    assert seg["training_10_in_training_100"] and seg["dataset_10_validation_is_testing_prefix"]
    assert manifest(dest, "btcv_seg")["checks"]["dataset_has_testing"] is False
    assert "ctrate_cls" in report.format() and "warning: ctrate_cls: SHA-256 differs" in report.format()


def test_radchestct_duplicated_column_is_named(checkout, tmp_path):
    report = import_splits(checkout, tmp_path / "d", tasks=["radchestct_cls"])
    dup = manifest(tmp_path / "d", "radchestct_cls")["checks"]["duplicated_columns"]
    assert dup == [{"columns": [3, 11], "names": ["Pericardial effusion", "Pleural effusion"]}]
    warnings = report.tasks["radchestct_cls"].warnings
    assert any("'Pericardial effusion'" in w and "'Pleural effusion'" in w for w in warnings)


def test_other_layouts_give_the_same_manifest(checkout, tmp_path):
    import_splits(checkout, tmp_path / "a", tasks=["ccccii_cls"])
    report = import_splits(checkout / CLS, tmp_path / "b")  # the datasets/ folder
    imported = {t for t, r in report.tasks.items() if r.status == "imported"}
    assert imported == {"ctrate_cls", "radchestct_cls", "ccccii_cls", "luna16_cls"}
    flat = import_splits(checkout / CLS / "CC-CCII", tmp_path / "c")  # one dataset's folder
    assert [t for t, r in flat.tasks.items() if r.status == "imported"] == ["ccccii_cls"]
    assert flat.tasks["ctrate_cls"].status == "missing"
    hashes = {manifest(tmp_path / d, "ccccii_cls")["manifest_hash"] for d in "abc"}
    assert len(hashes) == 1


def test_broken_nesting_is_a_hard_error(checkout, tmp_path):
    path = checkout / CLS / "CT-Rate" / "train_list_10.csv"
    lines = path.read_text().splitlines()
    lines[2], lines[3] = lines[3], lines[2]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train_list_10\.csv:3: row '.*' is not train_list\.csv line"):
        import_splits(checkout, tmp_path / "d", tasks=["ctrate_cls"])
    report = import_splits(checkout, tmp_path / "d", strict=False)
    assert report.tasks["ctrate_cls"].status == "error" and not (tmp_path / "d" / "ctrate_cls").exists()
    assert report.tasks["luna16_cls"].status == "imported" and not report.ok


def test_failed_reimport_keeps_previous_import(checkout, tmp_path):
    dest = tmp_path / "d"
    import_splits(checkout, dest, tasks=["luna16_cls"])
    before = (dest / "luna16_cls" / "manifest.json").read_bytes()
    path = checkout / CLS / "LUNA16" / "train_list_10.csv"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")  # one row short
    with pytest.raises(DataError, match="rows, but the §4 recipe"):
        import_splits(checkout, dest, tasks=["luna16_cls"])
    assert (dest / "luna16_cls" / "manifest.json").read_bytes() == before


def test_id_starting_with_im_names_file_and_line(checkout, tmp_path):
    path = checkout / CLS / "CC-CCII" / "test_list.csv"
    path.write_text(path.read_text().replace("9103.nii.gz", "img9103.nii.gz"))
    with pytest.raises(DataError, match=r"test_list\.csv:4: id 'img9103\.nii\.gz' starts with 'im'") as exc:
        import_splits(checkout, tmp_path / "d", tasks=["ccccii_cls"])
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "bad_header",
    [
        "NoteAcc_DEID,Medical material,Calcification,Cardiomegaly,Pericardial effusion,Hiatal hernia",  # too short
        None,  # 'Hietal Hernia' corrected to 'Hiatal hernia'
    ],
)
def test_wrong_header_is_rejected(tmp_path, bad_header):
    header = ",".join(SPLIT_FILES["radchestct_cls"].header).replace("Hietal Hernia", "Hiatal hernia")
    path = tmp_path / "train_list.csv"
    path.write_text((bad_header or header) + "\ntrn90001," + ",".join("0" * 16) + "\n")
    with pytest.raises(DataError, match=r"train_list\.csv:1: header does not match radchestct_cls"):
        read_split_csv(path, "radchestct_cls")


def test_blank_lines_crlf_and_missing_final_newline_are_tolerated(tmp_path):
    path = tmp_path / "val_list.csv"
    path.write_bytes(
        b"\nimage_id,label\r\n\r\n"
        + LUNA_UID.format(1).encode()
        + b".nii.gz,1\n\n"
        + LUNA_UID.format(2).encode()
        + b".nii.gz,0"
    )
    table = read_split_csv(path, "luna16_cls")
    assert table.ids == (LUNA_UID.format(1) + ".nii.gz", LUNA_UID.format(2) + ".nii.gz")
    assert table.labels.tolist() == [[1], [0]] and table.lines == (4, 6) and table.label_names == ("label",)


@pytest.mark.parametrize(
    "row, message",
    [
        ("9001.nii.gz,x", r":3: non-integer label 'x' in column 'label'"),
        ("9001.nii.gz,1.0", r":3: non-integer label '1\.0'"),
        ("9001.nii.gz,1,0", r":3: 3 columns, the header has 2"),
        ("9001.nii.gz,3", r":3: label 3 in column 'label' is not one of 0, 1, 2"),
        ("VolumeName_1.nii.gz,1", r":3: id 'VolumeName_1\.nii\.gz' starts with 'VolumeName'"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "train_list.csv"
    path.write_text(f"img_list,label\n9000.nii.gz,0\n{row}\n")
    with pytest.raises(DataError, match=re.escape(str(path)) + message):
        read_split_csv(path, "ccccii_cls")


def test_val_differing_from_test_is_detected(checkout, tmp_path):
    path = checkout / CLS / "CC-CCII" / "test_list.csv"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    report = import_splits(checkout, tmp_path / "d", tasks=["ccccii_cls"])
    assert manifest(tmp_path / "d", "ccccii_cls")["checks"]["val_equals_test"] is False
    assert any("differs from test_list.csv" in w for w in report.tasks["ccccii_cls"].warnings)


def test_ctrate_patient_overlap_is_counted(checkout, tmp_path):
    folder = checkout / CLS / "CT-Rate"
    train_row = (folder / "train_list.csv").read_text().splitlines()[5]
    leaked = train_row.split(",")[0].replace(".nii.gz", "").rsplit("_", 1)[0] + "_99.nii.gz"
    for name in ("val_list.csv", "test_list.csv"):
        (folder / name).write_text((folder / name).read_text() + "\n" + leaked + train_row[train_row.index(",") :])
    report = import_splits(checkout, tmp_path / "d", tasks=["ctrate_cls"])
    checks = manifest(tmp_path / "d", "ctrate_cls")["checks"]
    assert checks["patient_overlap_train_test"] == 1 and checks["id_overlap_train_test"] == 0
    assert any("1 patient(s) appear in both" in w for w in report.tasks["ctrate_cls"].warnings)


def test_requested_but_missing_and_unknown_tasks(tmp_path):
    (tmp_path / "empty").mkdir()
    assert import_splits(tmp_path / "empty", tmp_path / "d").tasks["btcv_seg"].status == "missing"
    with pytest.raises(DataError, match="no split files of btcv_seg found"):
        import_splits(tmp_path / "empty", tmp_path / "d", tasks=["btcv_seg"])
    with pytest.raises(RegistryError, match="unknown split task"):
        import_splits(tmp_path / "empty", tmp_path / "d", tasks=["ctrate"])


def test_partial_file_set_is_an_error(checkout, tmp_path):
    (checkout / CLS / "CT-Rate" / "train_list_1.csv").unlink()
    with pytest.raises(DataError, match="incomplete; missing train_list_1.csv"):
        import_splits(checkout, tmp_path / "d", tasks=["ctrate_cls"])


def test_heldout_carve(checkout):
    folder = checkout / CLS / "CT-Rate"
    full = read_split_csv(folder / "train_list.csv", "ctrate_cls")
    ten = read_split_csv(folder / "train_list_10.csv", "ctrate_cls")
    train, val = heldout_lists(full, ten, ctrate_group)
    val_groups = {ctrate_group(i) for i in val.ids}
    assert len(val_groups) == round(0.1 * len({ctrate_group(i) for i in full.ids}))
    assert not val_groups & {ctrate_group(i) for i in ten.ids}
    assert not val_groups & {ctrate_group(i) for i in train.ids}  # whole patients move
    assert set(train.ids) | set(val.ids) == set(full.ids) and len(train) + len(val) == len(full)
    order = {i: k for k, i in enumerate(full.ids)}
    assert [order[i] for i in val.ids] == sorted(order[i] for i in val.ids)  # file order kept
    for i, labels in zip(val.ids, val.labels):
        assert np.array_equal(labels, full.labels[order[i]])
    again_train, again_val = heldout_lists(full, ten, ctrate_group)
    assert again_val.ids == val.ids and again_train.ids == train.ids
    assert heldout_lists(full, ten, ctrate_group, seed=7)[1].ids != val.ids


def test_heldout_carve_needs_an_eligible_group(tmp_path):
    path = tmp_path / "train_list.csv"
    path.write_text("img_list,label\n9001.nii.gz,0\n9002.nii.gz,1\n")
    full = read_split_csv(path, "ccccii_cls")
    with pytest.raises(DataError, match="no group is left"):
        heldout_lists(full, full, lambda volume_id: volume_id)


def test_cli_import_and_bad_source(checkout, tmp_path):
    from .conftest import run_cli

    dest = tmp_path / "imported"
    done = run_cli("data", "splits", "import", "--from", str(checkout), "--to", str(dest))
    assert done.returncode == 0, done.stderr
    assert "ctrate_cls" in done.stdout and "imported" in done.stdout
    assert (dest / "ctrate_cls" / "manifest.json").is_file()
    missing = run_cli("data", "splits", "import", "--from", str(tmp_path / "nowhere"), "--to", str(dest))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
