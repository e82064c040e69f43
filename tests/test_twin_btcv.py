"""BTCV synthetic twin: both layouts, dataset.json, labels, HU, laterality, determinism, split reader."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from simcrop_bench.data.btcv import btcv_case_id, btcv_seg_splits
from simcrop_bench.data.formats.nifti import array_sha256
from simcrop_bench.data.splits.fractions import carve_validation_groups
from simcrop_bench.data.synthetic.abdomen import ORGAN_HU_RANGES, ORGAN_LABELS, AbdomenCase, sample_abdomen_case
from simcrop_bench.data.synthetic.btcv import (
    LABEL_NAMES,
    MANIFEST,
    MARKER,
    btcv_case_numbers,
    btcv_twin_is_complete,
    official_paths,
    simcrop_paths,
    write_btcv_twin,
)
from simcrop_bench.errors import ConfigError, DataError, UserError

SEED = 20251128
N_TRAIN, N_TEST = 8, 2  # -> training btcv_001–006, validation btcv_035–036, test img0061–0062
REAL_KEYS = [  # the UNETR/SimCroP dataset.json, alphabetical like the real file
    "description",
    "labels",
    "licence",
    "modality",
    "name",
    "numTest",
    "numTraining",
    "reference",
    "release",
    "tensorImageSize",
    "test",
    "training",
    "validation",
]


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("btcv") / "root"
    return root, write_btcv_twin(root, n_train=N_TRAIN, n_test=N_TEST, seed=SEED)


def _load(path):
    image = nib.load(str(path))
    return image, np.asarray(image.dataobj)


def _labelled(manifest) -> list[int]:
    return [c["number"] for c in manifest["cases"] if c["split"] != "test"]


def _interior(mask: np.ndarray) -> np.ndarray:
    """Voxels whose 6 neighbours share the mask: free of partial volume with the surroundings."""
    out = mask.copy()
    for axis in range(3):
        for step in (1, -1):
            out &= np.roll(mask, step, axis=axis)
    return out


def test_case_numbers_follow_the_real_split():
    full = btcv_case_numbers(30, 20)
    assert full["training"] == [*range(1, 11), *range(21, 35)] and full["validation"] == list(range(35, 41))
    assert full["test"] == list(range(61, 81))
    assert btcv_case_numbers(N_TRAIN, N_TEST) == {
        "training": list(range(1, 7)),
        "validation": [35, 36],
        "test": [61, 62],
    }
    assert btcv_case_numbers(2, 0) == {"training": [1], "validation": [35], "test": []}
    for bad in ((1, 2), (31, 2), (8, 21)):
        with pytest.raises(UserError):
            btcv_case_numbers(*bad)


def test_layouts_marker_and_dataset_json(twin):
    root, manifest = twin
    assert "SYNTHETIC" in (root / MARKER).read_text() and manifest["synthetic"] is True and manifest["layout"] == "both"
    for n in _labelled(manifest):
        for rel in (*official_paths(n, True).values(), *simcrop_paths(n, True).values()):
            assert (root / rel).is_file()
    assert (root / "RawData/Training/img/img0001.nii.gz").is_file() and (
        root / "RawData/Training/label/label0035.nii.gz"
    ).is_file()
    assert (root / "imagesTr/btcv_036.nii.gz").is_file() and (root / "RawData/Testing/img/img0062.nii.gz").is_file()
    assert sorted(p.name for p in (root / "imagesTs").iterdir()) == ["img0061.nii.gz", "img0062.nii.gz"]
    assert not (root / "labelsTr/btcv_061.nii.gz").exists() and not (root / "RawData/Testing/label").exists()

    doc = json.loads((root / "dataset.json").read_text())
    assert list(doc) == REAL_KEYS
    assert doc["labels"] == LABEL_NAMES and (doc["labels"]["7"], doc["labels"]["2"], doc["labels"]["9"]) == (
        "sto",
        "rkid",
        "IVC",
    )
    assert (
        doc["modality"] == {"0": "CT"}
        and doc["tensorImageSize"] == "3D"
        and (doc["numTraining"], doc["numTest"]) == (80, 20)
    )
    assert doc["test"] == ["imagesTs/img0061.nii.gz", "imagesTs/img0062.nii.gz"]
    assert [btcv_case_id(e["image"]) for e in doc["training"]] == [f"btcv_{n:03d}" for n in range(1, 7)]
    assert doc["validation"] == [
        {"image": f"imagesTr/btcv_{n:03d}.nii.gz", "label": f"labelsTr/btcv_{n:03d}.nii.gz"} for n in (35, 36)
    ]
    assert "testing" not in doc


def test_official_and_monai_trees_hold_identical_volumes(twin):
    root, manifest = twin
    for n in [*_labelled(manifest), 61]:
        labelled = n != 61
        official, simcrop = official_paths(n, labelled), simcrop_paths(n, labelled)
        for kind in official:
            a, b = (root / official[kind]).read_bytes(), (root / simcrop[kind]).read_bytes()
            assert a == b
            image, data = _load(root / simcrop[kind])
            assert manifest["files"][simcrop[kind]] == manifest["files"][official[kind]] == array_sha256(data)


def test_nifti_headers_are_lps_stored(twin):
    root, manifest = twin
    case = manifest["cases"][0]
    for rel, dtype in zip(simcrop_paths(case["number"], True).values(), (np.int16, np.uint8)):
        image, data = _load(root / rel)
        assert data.dtype == dtype and data.shape == (64, 64, 32)
        assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
        assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1
        np.testing.assert_allclose(image.header.get_zooms(), (5.5, 5.5, 8.0))
        ox, oy, oz = case["lps_offset_mm"]
        np.testing.assert_allclose(image.affine[:3, 3], (-ox, -oy, oz), atol=1e-3)


def test_every_class_in_every_labelled_case_and_organ_hu(twin):
    root, manifest = twin
    for n in _labelled(manifest):
        _i, labels = _load(root / simcrop_paths(n, True)["label"])
        _i, hu = _load(root / simcrop_paths(n, True)["image"])
        assert set(np.unique(labels).tolist()) == set(range(14)), n
        assert (hu > 0).sum() > 1000 and (hu > 300).any()  # MONAI's HU > 0 foreground crop keeps the body; bone
        for label, (lo, hi) in ORGAN_HU_RANGES.items():
            mask = labels == label
            if label == ORGAN_LABELS["stomach"]:  # a wall around air and fluid: check the wall and the air
                assert 40 <= np.percentile(hu[mask], 90) <= 130 and hu[mask].min() < -500, n
                continue
            core = _interior(mask)
            median = np.median(hu[core if core.sum() >= 10 else mask])  # thin organs: all voxels
            assert lo - 30 <= median <= hi + 30, (n, label, median)


def test_laterality_after_monai_reorientation_to_ras(twin):
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd

    root, manifest = twin
    load = Compose(
        [
            LoadImaged(keys="label"),
            EnsureChannelFirstd(keys="label"),
            Orientationd(keys="label", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        ]
    )
    for n in _labelled(manifest)[:3]:
        for tree in (official_paths, simcrop_paths):
            ras = np.asarray(load({"label": str(root / tree(n, True)["label"])})["label"])[0]

            def x(label: int, ras=ras) -> float:
                return float(np.argwhere(ras == label)[:, 0].mean())

            # RAS: axis 0 increases towards the patient's right.
            assert x(6) > x(1) and x(6) > x(3) and x(2) > x(1) and x(2) > x(3), (n, tree.__name__)
            assert x(12) > x(13) and x(9) > x(8)  # right adrenal, IVC on the right of left adrenal, aorta


def test_manifest_meta_and_completeness(twin):
    root, manifest = twin
    assert json.loads((root / MANIFEST).read_text()) == manifest
    assert btcv_twin_is_complete(root) and btcv_twin_is_complete(
        root, seed=SEED, n_train=N_TRAIN, shape=(64, 64, 32), layout="both"
    )
    assert not btcv_twin_is_complete(root, seed=SEED + 1) and not btcv_twin_is_complete(root, layout="official")
    assert not btcv_twin_is_complete(root.parent / "nowhere")
    meta = json.loads((root / "synthetic_meta/img0035.json").read_text())
    assert meta["synthetic"] is True and meta["split"] == "validation" and meta["case"]["seed"] == [SEED, 5, 35]
    case = AbdomenCase.from_dict(meta["case"])
    assert case == sample_abdomen_case(SEED, 35)
    assert all(int(meta["derived"]["label_voxels"][str(k)]) > 0 for k in range(14))


def test_determinism_and_seed_dependence(twin, tmp_path):
    root, manifest = twin
    again = write_btcv_twin(tmp_path / "again", n_train=N_TRAIN, n_test=N_TEST, seed=SEED)
    assert again == manifest
    for rel in manifest["files"]:
        assert (tmp_path / "again" / rel).read_bytes() == (root / rel).read_bytes(), rel  # gzip mtime 0
    write_btcv_twin(tmp_path / "other", n_train=2, n_test=0, seed=SEED + 1, layout="simcrop")
    a = _load(tmp_path / "other/imagesTr/btcv_001.nii.gz")[1]
    assert not np.array_equal(a, _load(root / "imagesTr/btcv_001.nii.gz")[1])
    assert not (tmp_path / "other/RawData").exists() and btcv_twin_is_complete(tmp_path / "other", layout="simcrop")


def test_official_only_layout_and_coarse_grid_refused(tmp_path):
    manifest = write_btcv_twin(tmp_path / "official", n_train=2, n_test=1, layout="official")
    assert set(manifest["files"]) >= {"RawData/Training/img/img0001.nii.gz", "RawData/Testing/img/img0061.nii.gz"}
    assert not (tmp_path / "official/dataset.json").exists() and not (tmp_path / "official/imagesTr").exists()
    with pytest.raises(DataError, match="loses classes"):
        write_btcv_twin(tmp_path / "coarse", n_train=2, n_test=0, shape=(12, 12, 6), spacing=(30.0, 30.0, 44.0))
    assert not (tmp_path / "coarse/RawData").exists()  # nothing written before the check
    (tmp_path / "real/RawData").mkdir(parents=True)
    with pytest.raises(DataError, match="refusing"):
        write_btcv_twin(tmp_path / "real", n_train=2, n_test=0)


def test_splits_for_both_protocols(twin):
    root, _manifest = twin

    def ids(entries):
        return [btcv_case_id(e["image"]) for e in entries]

    legacy = btcv_seg_splits(root, "legacy")
    assert legacy.sizes() == {"training": 6, "validation": 2, "testing": 2} and legacy.selection_on_test
    assert ids(legacy.validation) == ids(legacy.testing) == ["btcv_035", "btcv_036"]
    assert all(e["label"].endswith(f"labelsTr/{i}.nii.gz") for e, i in zip(legacy.training, ids(legacy.training)))
    heldout = btcv_seg_splits(root, "heldout")
    assert heldout.sizes() == {"training": 6, "validation": 0, "testing": 2} and not heldout.selection_on_test
    assert heldout.training == legacy.training and heldout.testing == legacy.testing
    carved = btcv_seg_splits(root, "heldout", val_carve=2)
    train_ids = ids(legacy.training)
    expected = carve_validation_groups(train_ids, (), val_fraction=2 / 6, seed=42)
    assert sorted(ids(carved.validation)) == sorted(expected) and len(expected) == 2
    assert ids(carved.validation) == [i for i in train_ids if i in expected]  # file order
    assert ids(carved.training) == [i for i in train_ids if i not in expected] and carved.testing == legacy.testing
    for bad in ({"protocol": "legacy", "val_carve": 1}, {"protocol": "heldout", "val_carve": 6}, {"protocol": "nope"}):
        with pytest.raises(ConfigError):
            btcv_seg_splits(root, **bad)


def test_split_sizes_of_the_real_file(tmp_path):
    numbers = btcv_case_numbers(30, 20)
    doc = {
        "training": [simcrop_paths(n, True) for n in numbers["training"]],
        "validation": [simcrop_paths(n, True) for n in numbers["validation"]],
        "test": [simcrop_paths(n, False)["image"] for n in numbers["test"]],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(doc))
    for entry in doc["training"] + doc["validation"]:
        for rel in entry.values():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).touch()
    assert btcv_seg_splits(tmp_path, "legacy").sizes() == {"training": 24, "validation": 6, "testing": 6}
    assert btcv_seg_splits(tmp_path, "heldout").sizes() == {"training": 24, "validation": 0, "testing": 6}
    carved = btcv_seg_splits(tmp_path, "heldout", val_carve=3)
    assert carved.sizes() == {"training": 21, "validation": 3, "testing": 6}
    assert not {btcv_case_id(e["image"]) for e in carved.validation} & {
        btcv_case_id(e["image"]) for e in carved.training
    }


def test_missing_listed_file_names_it(twin, tmp_path):
    root, _manifest = twin
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    missing = copy / "labelsTr/btcv_003.nii.gz"
    missing.unlink()
    with pytest.raises(DataError, match="btcv_003"):
        btcv_seg_splits(copy, "heldout")
    (copy / "dataset.json").unlink()
    with pytest.raises(DataError, match="dataset.json"):
        btcv_seg_splits(copy, "legacy")


def test_prepared_official_layout_matches_the_monai_twin(tmp_path):
    import json as _json

    from simcrop_bench.data.btcv import btcv_seg_splits
    from simcrop_bench.data.check.btcv import check_btcv_simcrop
    from simcrop_bench.data.prepare.btcv import convert_btcv_official_to_simcrop

    official, monai_twin, prepared = tmp_path / "official", tmp_path / "monai", tmp_path / "prepared"
    write_btcv_twin(official, n_train=6, n_test=2, layout="official")
    write_btcv_twin(monai_twin, n_train=6, n_test=2, layout="simcrop")
    summary = convert_btcv_official_to_simcrop(official, prepared)
    assert summary["converted"] == 6 * 2 + 2
    assert convert_btcv_official_to_simcrop(official, prepared)["converted"] == 0  # resumable
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        names = sorted(p.name for p in (monai_twin / folder).iterdir())
        assert names == sorted(p.name for p in (prepared / folder).iterdir())
        for name in names:
            assert (monai_twin / folder / name).read_bytes() == (prepared / folder / name).read_bytes()
    ours, theirs = (_json.loads((root / "dataset.json").read_text()) for root in (prepared, monai_twin))
    for key in ("training", "validation", "test"):
        assert ours[key] == theirs[key]
    assert (prepared / "SYNTHETIC.md").is_file() and check_btcv_simcrop(prepared).ok
    assert btcv_seg_splits(prepared, "legacy").sizes() == btcv_seg_splits(monai_twin, "legacy").sizes()
