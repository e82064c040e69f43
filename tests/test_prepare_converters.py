"""Official → SimCroP converters for CT-RATE, RadChestCT and CC-CCII, checked against the synthetic twins.

For each dataset the official and the SimCroP twin are written with the same seed; the converted arrays must equal
the SimCroP twin's exactly (CT-RATE v1 and v2 including the affine; RadChestCT including the affine, thanks to the
twin's recorded grid; CC-CCII with ``resized_intensity="uint8"``, since PNG slices are 8-bit). Also: resumability,
a corrupt source → DataError naming it, laterality after the classification reader (no affine).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from simcrop_bench.data.ccccii import read_ccccii_resized
from simcrop_bench.data.formats.stored import stored_volume, with_format
from simcrop_bench.data.prepare.cases import Distribution
from simcrop_bench.data.prepare.ccccii import convert_ccccii_slices_to_simcrop
from simcrop_bench.data.prepare.ctrate import convert_ctrate_official_to_simcrop
from simcrop_bench.data.prepare.radchestct import convert_radchestct_npz_to_simcrop
from simcrop_bench.data.synthetic.ccccii import write_ccccii_twin
from simcrop_bench.data.synthetic.ctrate import write_ctrate_twin
from simcrop_bench.data.synthetic.radchestct import write_radchestct_twin
from simcrop_bench.errors import DataError

SHAPE, SPACING, SEED = (48, 40, 24), (7.0, 8.0, 14.0), 11


def _nifti_pairs(expected_root: Path, actual_root: Path, pattern: str) -> list[tuple[nib.Nifti1Image, nib.Nifti1Image]]:
    """The twin's ``.nii.gz`` files and the converted ones, which the default store writes as ``.nii``."""
    expected = sorted(expected_root.glob(pattern))
    assert expected
    assert sorted(p.relative_to(actual_root) for p in actual_root.glob(pattern.replace(".nii.gz", ".nii"))) == [
        with_format(p.relative_to(expected_root), "nii") for p in expected
    ]
    return [(nib.load(p), nib.load(stored_volume(actual_root / p.relative_to(expected_root)))) for p in expected]


def _assert_same(pairs, *, affine: bool = True) -> None:
    for want, got in pairs:
        assert got.get_data_dtype() == want.get_data_dtype()
        np.testing.assert_array_equal(np.asanyarray(got.dataobj), np.asanyarray(want.dataobj))
        if affine:
            np.testing.assert_allclose(got.affine, want.affine, atol=1e-6)


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


@pytest.fixture(scope="module")
def ctrate(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctrate")
    write_ctrate_twin(root / "official", n_cases=2, shape=SHAPE, spacing=SPACING, seed=SEED, layout="official")
    write_ctrate_twin(root / "simcrop", n_cases=2, shape=SHAPE, spacing=SPACING, seed=SEED, layout="simcrop")
    return root


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_ctrate_matches_twin_and_resumes(ctrate, tmp_path, version):
    out = tmp_path / "out"
    summary = convert_ctrate_official_to_simcrop(ctrate / "official", out, version=version)
    assert summary["converted"] == summary["cases"] > 0 and summary["skipped"] == 0
    _assert_same(_nifti_pairs(ctrate / "simcrop", out, "*_preprocessed/*/*/*.nii.gz"))  # v1: rescaled exactly once
    assert (out / "SYNTHETIC.md").is_file() and (out / "prepare_manifest.json").is_file()
    entries = json.loads((out / "prepare_manifest.json").read_text())["cases"].values()
    for entry in entries:  # the manifest's hash is the written file's, as `sha256sum` checks it
        assert entry["file_sha256"] == hashlib.sha256((out / entry["output"]).read_bytes()).hexdigest()
    again = convert_ctrate_official_to_simcrop(ctrate / "official", out, version=version)
    assert again["converted"] == 0 and again["skipped"] == summary["cases"]


def test_ctrate_resampling_and_laterality(ctrate, tmp_path):
    src = tmp_path / "src"
    write_ctrate_twin(src, n_cases=2, shape=SHAPE, spacing=SPACING, seed=SEED, layout="official")
    name = sorted((src / "train_fixed").glob("*/*/*.nii.gz"))[0]
    lps = nib.load(name)
    marked = np.asanyarray(lps.dataobj).copy()
    marked[-6:, :, :] = 3000  # LPS-stored: high axis-0 indices are the patient's left
    nib.save(nib.Nifti1Image(marked, lps.affine), name)
    convert_ctrate_official_to_simcrop(src, tmp_path / "out", spacing=(10.0, 10.0, 20.0))
    out = nib.load(next((tmp_path / "out").rglob(name.name.replace(".nii.gz", ".nii"))))
    assert nib.aff2axcodes(out.affine) == ("R", "A", "S") and out.get_data_dtype() == np.int16
    np.testing.assert_allclose(out.header.get_zooms(), (10.0, 10.0, 20.0))
    assert out.shape == (round(SHAPE[0] * 7 / 10), round(SHAPE[1] * 8 / 10), round(SHAPE[2] * 14 / 20))
    ras = np.asanyarray(out.dataobj)  # the classification reader: voxels only, no affine
    assert (ras[:3] > 2500).all() and not (ras[-3:] > 2500).any()


def test_ctrate_corrupt_source_names_file(ctrate, tmp_path):
    src = tmp_path / "src"
    write_ctrate_twin(src, n_cases=2, shape=SHAPE, spacing=SPACING, seed=SEED, layout="official")
    bad = sorted((src / "train_fixed").glob("*/*/*.nii.gz"))[1]
    _corrupt(bad)
    with pytest.raises(DataError, match=bad.name):
        convert_ctrate_official_to_simcrop(src, tmp_path / "out")


def test_radchestct_matches_twin_resumes_and_fails_on_corrupt(tmp_path):
    kwargs = dict(n_train=2, n_valid=1, n_test=1, shape=SHAPE, spacing=SPACING, seed=SEED)
    write_radchestct_twin(tmp_path / "official", layout="official", **kwargs)
    write_radchestct_twin(tmp_path / "simcrop", layout="simcrop", **kwargs)
    summary = convert_radchestct_npz_to_simcrop(tmp_path / "official", tmp_path / "out")
    assert summary["converted"] == summary["cases"] == 4
    _assert_same(_nifti_pairs(tmp_path / "simcrop", tmp_path / "out", "images/*.nii.gz"))
    assert convert_radchestct_npz_to_simcrop(tmp_path / "official", tmp_path / "out")["converted"] == 0
    # Without the twin's metadata the real-data default applies: 0.8 mm isotropic, same voxels.
    (tmp_path / "official" / "synthetic_meta").rename(tmp_path / "meta_aside")
    convert_radchestct_npz_to_simcrop(tmp_path / "official", tmp_path / "real_like")
    image = nib.load(next((tmp_path / "real_like" / "images").glob("*.nii")))
    np.testing.assert_allclose(image.header.get_zooms(), (0.8, 0.8, 0.8))
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    # A different axis convention is a recorded setting: changing it reconverts everything.
    flipped = convert_radchestct_npz_to_simcrop(tmp_path / "official", tmp_path / "real_like", flip=(False, True, True))
    assert flipped["converted"] == 4
    bad = sorted((tmp_path / "official" / "images").glob("*.npz"))[0]
    _corrupt(bad)
    with pytest.raises(DataError, match=bad.name):
        convert_radchestct_npz_to_simcrop(tmp_path / "official", tmp_path / "out2")


def test_radchestct_laterality(tmp_path):
    write_radchestct_twin(
        tmp_path / "src", n_train=1, n_valid=1, n_test=1, shape=SHAPE, spacing=SPACING, seed=SEED, layout="official"
    )
    npz = sorted((tmp_path / "src" / "images").glob("*.npz"))[0]
    ct = np.load(npz)["ct"].copy()
    ct[:, :, -6:] = 1000  # cols run from the patient's right: the last columns are the patient's left
    np.savez_compressed(npz, ct=ct)
    convert_radchestct_npz_to_simcrop(tmp_path / "src", tmp_path / "out")
    ras = np.asanyarray(nib.load(tmp_path / "out" / "images" / f"{npz.stem}.nii").dataobj)
    assert (ras[:3] == 1000).all() and not (ras[-3:] == 1000).all()


def test_ccccii_matches_twin_resumes_splits_and_laterality(tmp_path):
    kwargs = dict(n_patients=3, shape=SHAPE, spacing=SPACING, seed=SEED, resized_intensity="uint8")
    write_ccccii_twin(tmp_path / "official", layout="official", **kwargs)
    write_ccccii_twin(tmp_path / "simcrop", layout="simcrop", **kwargs)
    summary = convert_ccccii_slices_to_simcrop(tmp_path / "official", tmp_path / "out")
    assert summary["converted"] == summary["cases"] > 0 and summary["split_files"] == []
    assert "not HU" in summary["intensity"] and not list((tmp_path / "out").glob("*.csv"))
    _assert_same(_nifti_pairs(tmp_path / "simcrop", tmp_path / "out", "images_resized/*.nii.gz"))
    assert convert_ccccii_slices_to_simcrop(tmp_path / "official", tmp_path / "out")["converted"] == 0
    with_splits = convert_ccccii_slices_to_simcrop(
        tmp_path / "official", tmp_path / "out", split_files=tmp_path / "simcrop"
    )
    assert (
        with_splits["split_files"]
        and not with_splits["split_ids_missing"]
        and not with_splits["split_label_mismatches"]
    )
    for name in with_splits["split_files"]:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "simcrop" / name).read_bytes()
    # Laterality: brighten the patient's left in every slice (radiological display: the right-hand columns).
    slices = sorted((tmp_path / "official").glob("*/*/*/*.png"))
    scan_dir = slices[0].parent
    for png in scan_dir.glob("*.png"):
        image = np.asarray(Image.open(png)).copy()
        image[:, -6:] = 255
        Image.fromarray(image).save(png)
    convert_ccccii_slices_to_simcrop(tmp_path / "official", tmp_path / "out")
    hwd = read_ccccii_resized(tmp_path / "out", scan_dir.name)  # reference reader: (D, H, W) → (H, W, D)
    assert (hwd[:3] == 255).all() and not (hwd[-3:] == 255).all()
    _corrupt(slices[-1])
    with pytest.raises(DataError, match=slices[-1].name):
        convert_ccccii_slices_to_simcrop(tmp_path / "official", tmp_path / "out")


def _store(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.nii*"))}


def test_ctrate_workers_write_the_serial_store_and_resume_per_case(ctrate, tmp_path):
    src = tmp_path / "src"
    write_ctrate_twin(src, n_cases=3, shape=SHAPE, spacing=SPACING, seed=SEED, layout="official")
    serial = convert_ctrate_official_to_simcrop(src, tmp_path / "serial")
    parallel = convert_ctrate_official_to_simcrop(src, tmp_path / "parallel", distribution=Distribution(workers=2))
    assert parallel["converted"] == serial["converted"] == serial["cases"] >= 3
    assert _store(tmp_path / "parallel") == _store(tmp_path / "serial")
    manifest = json.loads((tmp_path / "parallel" / "prepare_manifest.json").read_text())
    assert manifest["cases"] == json.loads((tmp_path / "serial" / "prepare_manifest.json").read_text())["cases"]
    assert not (tmp_path / "parallel" / ".prepare_cases").exists()
    # An interrupted run keeps the cases it finished: the third source is broken, the first two are recorded.
    names = sorted(manifest["cases"])
    bad = next(src.glob(f"train_fixed/*/*/{names[2]}"))
    good = bad.read_bytes()
    _corrupt(bad)
    with pytest.raises(DataError, match=bad.name):
        convert_ctrate_official_to_simcrop(src, tmp_path / "resumed")
    kept = json.loads((tmp_path / "resumed" / "prepare_manifest.json").read_text())["cases"]
    assert sorted(kept) == names[:2]
    bad.write_bytes(good)
    again = convert_ctrate_official_to_simcrop(src, tmp_path / "resumed", distribution=Distribution(workers=2))
    assert again["converted"] == serial["cases"] - 2 and again["skipped"] == 2
    assert _store(tmp_path / "resumed") == _store(tmp_path / "serial")


def test_store_format_switch_replaces_the_other_format(ctrate, tmp_path):
    out = tmp_path / "out"
    convert_ctrate_official_to_simcrop(ctrate / "official", out, store_format="nii.gz")
    expected = sorted((ctrate / "simcrop").glob("*_preprocessed/*/*/*.nii.gz"))
    assert [p.relative_to(out) for p in sorted(out.glob("*_preprocessed/*/*/*.nii.gz"))] == [
        p.relative_to(ctrate / "simcrop") for p in expected
    ]
    assert list(out.rglob("*.nii.gz")) and not list(out.rglob("*.nii"))
    summary = convert_ctrate_official_to_simcrop(ctrate / "official", out)  # a new setting: everything again
    assert summary["converted"] == summary["cases"]
    assert list(out.rglob("*.nii")) and not list(out.rglob("*.nii.gz"))
