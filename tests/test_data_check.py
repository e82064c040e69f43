"""`data check` finds every kind of damage, each with its file; a clean twin has none."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from simcrop_bench.data.check.luna16 import check_luna16_simcrop
from simcrop_bench.data.synthetic.luna16 import write_luna16_twin

from .conftest import run_cli


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("check") / "luna16"
    write_luna16_twin(root, n_cases=6)
    return root


def listed(root):
    doc = json.loads((root / "dataset_100.json").read_text())
    return [(root / e["image"], root / e["label"]) for e in doc["training"] + doc["testing"]]


def rewrite(path, array, like):
    nib.save(nib.Nifti1Image(array, nib.load(str(like)).affine), str(path))


def test_clean_twin_has_no_problems(twin):
    report = check_luna16_simcrop(twin)
    assert report.ok, report.problems
    assert report.counts["cases"] == 6 and report.label_values == {0, 1, 2, 3}


def test_every_damage_is_reported_with_its_file(twin, tmp_path):
    root = tmp_path / "damaged"
    shutil.copytree(twin, root)
    cases = listed(root)
    damage = {}

    (image, label) = cases[0]
    label.unlink()
    damage["missing"] = (label, "label file is missing")

    extra = root / "images" / "1.3.6.1.4.1.14519.5.2.1.6279.6001.9999extra.nii.gz"
    shutil.copy(cases[1][0], extra)
    damage["extra"] = (extra, "not listed in any split file")

    (image, label) = cases[1]
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    damage["truncated"] = (image, "not a readable NIfTI volume")

    (image, label) = cases[2]
    mask = np.asanyarray(nib.load(str(label)).dataobj).astype(np.float32)
    mask[0, 0, 0] = 0.5
    rewrite(label, mask, label)
    damage["dtype"] = (label, "holds non-integer values")

    (image, label) = cases[3]
    hu = np.asanyarray(nib.load(str(image)).dataobj).astype(np.float32)
    hu[1, 1, 1] = np.nan
    rewrite(image, hu, image)
    mask = np.asanyarray(nib.load(str(label)).dataobj).copy()
    mask[5, 5, 5] = 7
    rewrite(label, mask, label)
    damage["nan"] = (image, "NaN or infinite voxels")
    damage["label value"] = (label, "unknown label values [7]")

    (image, label) = cases[4]
    mask = np.asanyarray(nib.load(str(label)).dataobj)
    rewrite(label, mask[:, :, :-1], label)
    damage["mismatch"] = (label, "differs from its image")

    (image, label) = cases[5]
    hu = np.asanyarray(nib.load(str(image)).dataobj)
    rewrite(image, hu[..., None], image)
    damage["shape"] = (image, "expected a 3-D volume")

    report = check_luna16_simcrop(root)
    found = [str(p) for p in report.problems]
    for kind, (path, message) in damage.items():
        assert any(p.startswith(str(path)) and message in p for p in found), (kind, found)
    assert len(report.problems) == len(damage)

    result = run_cli("data", "check", "--dataset", "luna16", "--root", str(root))
    assert result.returncode == 1
    assert f"{len(damage)} problem(s)" in result.stdout
    for path, _ in damage.values():
        assert str(path) in result.stdout


def test_cli_synth_is_deterministic_and_checks_clean(tmp_path):
    for name in ("a", "b"):
        done = run_cli("data", "synth", "--dataset", "luna16", "--out", str(tmp_path / name), "--cases", "4")
        assert done.returncode == 0, done.stderr
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    check = run_cli("data", "check", "--dataset", "luna16", "--root", str(tmp_path / "a"))
    assert check.returncode == 0 and "0 problems" in check.stdout, check.stdout + check.stderr
    unknown = run_cli("data", "synth", "--dataset", "mnist", "--out", str(tmp_path / "c"))
    assert unknown.returncode == 2 and "unknown dataset 'mnist'" in unknown.stderr
    assert not (tmp_path / "c").exists()


def test_official_luna16_layout_check(tmp_path):
    from simcrop_bench.data.check.luna16 import check_luna16_official
    from simcrop_bench.data.formats.metaimage import read_mhd, write_mhd
    from simcrop_bench.data.synthetic.luna16 import write_luna16_official

    root = tmp_path / "official"
    write_luna16_official(root, n_cases=5)
    clean = check_luna16_official(root)
    assert clean.ok, clean.problems
    assert clean.counts["images"] == 5 and clean.label_values == {0, 3, 4, 5}

    raw = sorted(root.glob("subset*/*.raw"))[0]
    raw.write_bytes(raw.read_bytes()[:1000])
    masks = sorted((root / "seg-lungs-LUNA16").glob("*.mhd"))
    missing = masks[0]
    (root / "seg-lungs-LUNA16" / read_mhd(missing).header["ElementDataFile"]).unlink()
    missing.unlink()
    bad = read_mhd(masks[1])
    array = bad.array.copy()
    array[0, 0, 0] = 9
    write_mhd(masks[1], array, bad.spacing, bad.offset, compressed=True)
    annotations = root / "CSVFILES" / "annotations.csv"
    annotations.write_text(annotations.read_text().replace("diameter_mm", "diam"))

    found = [str(p) for p in check_luna16_official(root).problems]
    expected = [
        (raw, "data bytes"),
        (missing, "lung mask is missing"),
        (masks[1], "unknown label values [9]"),
        (annotations, "is not seriesuid"),
    ]
    for path, message in expected:
        assert any(p.startswith(str(path)) and message in p for p in found), (path, found)
    assert len(found) == len(expected)


def test_classification_store_check(tmp_path):
    from simcrop_bench.data.check.classification import check_ccccii_simcrop
    from simcrop_bench.data.synthetic.ccccii import write_ccccii_twin

    root = tmp_path / "cc"
    write_ccccii_twin(root, n_patients=3, layout="simcrop")
    assert check_ccccii_simcrop(root).ok
    volumes = sorted((root / "images_resized").glob("*.nii.gz"))
    volumes[0].unlink()
    hu = np.asanyarray(nib.load(str(volumes[1])).dataobj).astype(np.float32)
    hu[0, 0, 0] = np.nan
    rewrite(volumes[1], hu, volumes[1])
    bad_csv = root / "train_list_10.csv"
    bad_csv.write_text(bad_csv.read_text().rstrip("\n") + "\nimage9.nii.gz,1\n")
    found = [str(p) for p in check_ccccii_simcrop(root).problems]
    for path, message in ((volumes[0], "image file is missing"), (volumes[1], "NaN"), (bad_csv, "im")):
        assert any(p.startswith(str(path)) and message in p for p in found), (path, found)

    eight_bit = tmp_path / "cc8"
    write_ccccii_twin(eight_bit, n_patients=3, layout="simcrop", resized_intensity="uint8")
    report = check_ccccii_simcrop(eight_bit)
    assert report.ok and report.notes and "0..255" in report.notes[0]
