"""`data check` for CT-RATE (both layouts) and the official BTCV, CC-CCII and RadChestCT trees: a clean twin has
no problems; each kind of damage is reported with its file."""

from __future__ import annotations

import csv
import io
import shutil
import zipfile

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from simcrop_bench.data.check.ctrate import check_ctrate_official, check_ctrate_simcrop
from simcrop_bench.data.check.official_other import (
    check_btcv_official,
    check_ccccii_official,
    check_radchestct_official,
)
from simcrop_bench.data.synthetic.btcv import write_btcv_twin
from simcrop_bench.data.synthetic.ccccii import write_ccccii_twin
from simcrop_bench.data.synthetic.ctrate import write_ctrate_twin
from simcrop_bench.data.synthetic.radchestct import write_radchestct_twin

SEED = 1  # 3 CT-RATE cases give 7 train volumes with this seed (the damage tests need 4)


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    write_ctrate_twin(base / "ctrate", n_cases=3, seed=SEED, layout="both")
    write_btcv_twin(base / "btcv", n_train=2, n_test=1, seed=SEED, layout="official")
    write_ccccii_twin(base / "ccccii", n_patients=3, seed=SEED, layout="official")
    write_radchestct_twin(base / "radchestct", n_train=2, n_valid=1, n_test=1, seed=SEED, layout="official")
    return base


def damaged_copy(twins, name, tmp_path):
    root = tmp_path / name
    shutil.copytree(twins / name, root)
    return root


def assert_reported(report, damage: dict) -> None:
    """Every damage (file, message fragment) appears as a problem of exactly that file."""
    for kind, (file, fragment) in damage.items():
        hits = [p for p in report.problems if p.file == str(file) and fragment in p.message]
        assert hits, f"{kind}: no problem '{fragment}' for {file}; got {[str(p) for p in report.problems]}"


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_csv(path, edit) -> None:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    rows = edit(rows)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


@pytest.mark.parametrize(
    "check, name",
    [
        (check_ctrate_official, "ctrate"),
        (check_ctrate_simcrop, "ctrate"),
        (check_btcv_official, "btcv"),
        (check_ccccii_official, "ccccii"),
        (check_radchestct_official, "radchestct"),
    ],
)
def test_clean_twin_has_no_problems(twins, check, name):
    report = check(twins / name)
    assert report.ok, [str(p) for p in report.problems]
    assert sum(report.counts.values()) > 0


def test_ctrate_official_damage(twins, tmp_path):
    root = damaged_copy(twins, "ctrate", tmp_path)
    damage = {}
    reports_csv = root / "radiology_text_reports/validation_reports.csv"
    edit_csv(reports_csv, lambda rows: [r[:2] + r[3:] for r in rows])  # drop Technique_EN
    damage["missing column"] = (reports_csv, "missing column(s) Technique_EN")

    train_reports = root / "radiology_text_reports/train_reports.csv"
    names = [r[0] for r in csv.reader(train_reports.open())][1:]
    empty, gone, broken = names[0], names[1], names[2]

    def blank_findings(rows):
        return [r[:3] + [""] + r[4:] if r[0] == empty else r for r in rows]

    edit_csv(train_reports, blank_findings)
    damage["empty report"] = (train_reports, f"{empty}: empty report")

    split, patient, scan, _ = gone[: -len(".nii.gz")].split("_")
    missing = root / f"train_fixed/train_{patient}/train_{patient}_{scan}/{gone}"
    missing.unlink()
    damage["missing volume"] = (missing, "v2 volume is missing")

    split, patient, scan, _ = broken[: -len(".nii.gz")].split("_")
    truncated = root / f"train/train_{patient}/train_{patient}_{scan}/{broken}"
    truncate(truncated)
    damage["truncated gzip"] = (truncated, "not a readable NIfTI volume")

    extra = truncated.with_name(f"train_{patient}_{scan}_99.nii.gz")
    shutil.copy(root / "train" / missing.relative_to(root / "train_fixed"), extra)
    damage["extra volume"] = (extra, "volume without a label row")

    metadata = root / "metadata/train_metadata.csv"

    def blank_slope(rows):
        slope = rows[0].index("RescaleSlope")
        return [r[:slope] + [""] + r[slope + 1 :] if r[0] == names[3] else r for r in rows]

    edit_csv(metadata, blank_slope)
    damage["v1 metadata"] = (metadata, f"{names[3]}: v1 volume needs numeric RescaleSlope")

    report = check_ctrate_official(root)
    assert_reported(report, damage)
    assert len(report.problems) == len(damage), [str(p) for p in report.problems]


def test_ctrate_simcrop_damage(twins, tmp_path):
    root = damaged_copy(twins, "ctrate", tmp_path)
    volumes = sorted((root / "train_preprocessed").rglob("*.nii.gz"))
    damage = {}
    first = volumes[0]
    split, patient, scan, _ = first.name[: -len(".nii.gz")].split("_")
    underscored = first.parent.parent / f"{split}_{patient}_{scan}" / first.name
    underscored.parent.mkdir()
    first.rename(underscored)
    damage["underscore"] = (underscored, "underscore before the scan letter")

    truncate(volumes[1])
    damage["truncated gzip"] = (volumes[1], "not a readable NIfTI volume")

    image = nib.load(str(volumes[2]))
    windowed = np.clip(np.asanyarray(image.dataobj), 0, 255).astype(np.int16)
    nib.save(nib.Nifti1Image(windowed, image.affine), str(volumes[2]))
    damage["windowed"] = (volumes[2], "looks windowed")

    stray = volumes[3].with_name("train_1a_4.npz")
    stray.write_bytes(b"")
    damage["not nifti"] = (stray, "not a NIfTI volume")

    report = check_ctrate_simcrop(root)
    assert_reported(report, damage)
    assert len(report.problems) == len(damage), [str(p) for p in report.problems]


def test_btcv_official_damage(twins, tmp_path):
    root = damaged_copy(twins, "btcv", tmp_path)
    img, label = root / "RawData/Training/img", root / "RawData/Training/label"
    first, second = sorted(img.iterdir())[:2]
    damage = {}
    wrong = label / first.name.replace("img", "label")
    image = nib.load(str(wrong))
    values = np.asanyarray(image.dataobj).copy()
    values[0, 0, 0] = 14
    nib.save(nib.Nifti1Image(values, image.affine), str(wrong))
    damage["label value"] = (wrong, "unknown label values [14]")

    gone = label / second.name.replace("img", "label")
    gone.unlink()
    damage["missing label"] = (gone, "label file is missing")

    test_image = next((root / "RawData/Testing/img").iterdir())
    truncate(test_image)
    damage["truncated gzip"] = (test_image, "not a readable NIfTI volume")

    misnamed = img / "img_0002.nii.gz"
    misnamed.write_bytes(b"")
    damage["bad name"] = (misnamed, "name is not imgNNNN.nii.gz")

    report = check_btcv_official(root)
    assert_reported(report, damage)
    assert len(report.problems) == len(damage), [str(p) for p in report.problems]


def test_ccccii_official_damage(twins, tmp_path):
    root = damaged_copy(twins, "ccccii", tmp_path)
    unzip = root / "unzip_filenames.csv"
    rows = list(csv.reader(unzip.open()))
    damage = {}
    _, cls, patient, scan, _ = rows[1]
    folder = root / cls / patient / scan
    slices = sorted(folder.iterdir())
    slices[0].write_bytes(b"\x89PNG\r\n\x1a\n not really")
    damage["unreadable png"] = (slices[0], "unreadable slice image")

    _, cls2, patient2, scan2, _ = rows[2]
    folder2 = root / cls2 / patient2 / scan2
    big = next(folder2.iterdir())
    with Image.open(big) as image:
        image.resize((image.width + 2, image.height)).save(big)
    damage["size"] = (folder2, "slices differ in size")

    def wrong_count(table):
        table[3][4] = str(int(table[3][4]) + 1)
        return table

    edit_csv(unzip, wrong_count)
    damage["n_slice"] = (unzip, "line 4: n_slice")

    report = check_ccccii_official(root)
    assert_reported(report, damage)
    assert len(report.problems) == len(damage), [str(p) for p in report.problems]

    edit_csv(unzip, lambda table: [r[:3] + r[4:] for r in table])  # drop scan_id
    report = check_ccccii_official(root)
    assert_reported(report, {"missing column": (unzip, "missing column(s) scan_id")})


def test_radchestct_official_damage(twins, tmp_path):
    root = damaged_copy(twins, "radchestct", tmp_path)
    volumes = sorted((root / "images").glob("*.npz"))
    damage = {}
    with zipfile.ZipFile(volumes[0], "w") as archive:  # a valid .npz whose array has the wrong key
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((2, 2, 2), np.int16))
        archive.writestr("arr_0.npy", buffer.getvalue())
    damage["bad key"] = (volumes[0], "no 'ct' array")

    np.savez_compressed(volumes[1], ct=np.full((4, 4, 4), 2000, np.int16))
    damage["range"] = (volumes[1], "outside the released range")

    volumes[3].unlink()
    damage["missing volume"] = (volumes[3], "volume is missing")

    test_csv = root / "imgtest_Abnormality_and_Location_Labels.csv"
    edit_csv(test_csv, lambda rows: [r[1:] + r[:1] for r in rows])
    damage["first column"] = (test_csv, "not NoteAcc_DEID")

    report = check_radchestct_official(root)
    assert_reported(report, damage)
    # the test volume loses its row with the header: reported too, and nothing else
    orphan = [p for p in report.problems if "without a row" in p.message]
    assert len(orphan) == 1 and orphan[0].file.endswith("tst90000.npz")
    assert len(report.problems) == len(damage) + 1, [str(p) for p in report.problems]
