"""LUNA16 synthetic twin: layout, splits, orientation, labels, HU statistics, determinism."""

from __future__ import annotations

import hashlib
import json
import re

import nibabel as nib
import numpy as np
import pytest

from simcrop_bench.data.synthetic.luna16 import (
    MANIFEST,
    MARKER,
    UID_PREFIX,
    array_sha256,
    luna16_seg_splits,
    luna16_twin_is_complete,
    write_luna16_twin,
)
from simcrop_bench.data.synthetic.phantom import (
    DATASET_CODES,
    GENERATOR_VERSION,
    ChestCase,
    VoxelGrid,
    render_case,
    sample_chest_case,
)
from simcrop_bench.errors import DataError

N_CASES = 8  # -> 3 test, 5 training, 2 in the 10 % list, 2 validation
SEED = 20251128
JSON_KEYS = [
    "description",
    "labels",
    "licence",
    "modality",
    "name",
    "numTraining",
    "numTest",
    "tensorImageSize",
    "training",
    "validation",
    "testing",
]


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("luna16") / "root"
    return root, write_luna16_twin(root, n_cases=N_CASES, seed=SEED)


def _uids(entries: list[dict]) -> list[str]:
    return [re.fullmatch(r"images/(.+)\.nii\.gz", e["image"]).group(1) for e in entries]


def _load(root, rel):
    image = nib.load(str(root / rel))
    return image, np.asarray(image.dataobj)


def test_layout_and_decathlon_json(twin):
    root, manifest = twin
    assert (root / MARKER).is_file() and "SYNTHETIC" in (root / MARKER).read_text()
    assert (
        manifest["synthetic"] is True
        and manifest["generator_version"] == GENERATOR_VERSION
        and manifest["seed"] == SEED
    )
    docs = {f: json.loads((root / f).read_text()) for f in ("dataset_10.json", "dataset_100.json")}
    for doc in docs.values():
        assert list(doc) == JSON_KEYS
        assert doc["labels"] == {"0": "background", "1": "left lung", "2": "right lung", "3": "trachea"}
        assert doc["modality"] == {"0": "CT"} and doc["name"] == "LUNA16" and doc["tensorImageSize"] == "3D"
        assert (doc["numTraining"], doc["numTest"]) == (5, 3)  # full split, as in the real files (621/267)
        for key in ("training", "validation", "testing"):
            for entry in doc[key]:
                assert list(entry) == ["image", "label"]
                uid = _uids([entry])[0]
                assert entry["label"] == f"masks_processed/{uid}.nii.gz"
                assert (root / entry["image"]).is_file() and (root / entry["label"]).is_file()
    full, ten = docs["dataset_100.json"], docs["dataset_10.json"]
    train, train10, test, val = (
        _uids(full["training"]),
        _uids(ten["training"]),
        _uids(full["testing"]),
        _uids(full["validation"]),
    )
    assert (len(train), len(train10), len(test), len(val)) == (5, 2, 3, 2)
    assert set(train10) <= set(train) and not set(train) & set(test)
    assert val == test[:2] and ten["validation"] == full["validation"] and ten["testing"] == full["testing"]
    assert sorted(train + test) == sorted(c["uid"] for c in manifest["cases"])


def test_splits_mimic_sklearn_and_real_sizes():
    from sklearn.model_selection import train_test_split

    for n in (8, 10, 30, 888):
        uids = [f"u{i}" for i in range(n)]
        splits = luna16_seg_splits(uids)
        train, test = train_test_split(uids, test_size=0.3, random_state=42)
        assert splits["training_100"] == train and splits["testing"] == test
    assert {k: len(v) for k, v in luna16_seg_splits([str(i) for i in range(888)]).items()} == {
        "training_100": 621,
        "training_10": 62,
        "validation": 26,
        "testing": 267,
    }


def test_uids_are_synthetic_and_unique(twin):
    _root, manifest = twin
    uids = [c["uid"] for c in manifest["cases"]]
    assert len(set(uids)) == len(uids)
    for uid in uids:
        assert uid.startswith(UID_PREFIX) and re.fullmatch(r"\d{26}", uid[len(UID_PREFIX) :])


def test_nifti_header_is_lps_stored(twin):
    root, manifest = twin
    case = manifest["cases"][0]
    for folder, dtype in (("images", np.int16), ("masks_processed", np.uint8)):
        image, data = _load(root, f"{folder}/{case['uid']}.nii.gz")
        assert data.dtype == dtype and data.shape == (64, 64, 32)
        assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
        assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1
        np.testing.assert_allclose(image.header.get_zooms(), (5.25, 5.25, 10.5))
        ox, oy, oz = case["lps_offset_mm"]
        np.testing.assert_allclose(image.affine[:3, 3], (-ox, -oy, oz), atol=1e-3)


def test_left_lung_at_low_axis0_after_reorientation_to_ras(twin):
    root, manifest = twin
    rel = f"masks_processed/{manifest['cases'][0]['uid']}.nii.gz"
    _image, stored = _load(root, rel)

    def x_centroid(mask, value):
        return np.argwhere(mask == value)[:, 0].mean()

    # Stored LPS: index 0 increases towards patient-left, so the left lung sits at high indices ...
    assert x_centroid(stored, 1) > stored.shape[0] / 2 > x_centroid(stored, 2)
    # ... and a reader that reorients to RAS must find it at low indices.
    canonical = np.asarray(nib.as_closest_canonical(nib.load(str(root / rel))).dataobj)
    assert x_centroid(canonical, 1) < canonical.shape[0] / 2 < x_centroid(canonical, 2)

    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd

    load = Compose(
        [
            LoadImaged(keys="label"),
            EnsureChannelFirstd(keys="label"),
            Orientationd(keys="label", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        ]
    )
    ras = np.asarray(load({"label": str(root / rel)})["label"])[0]
    assert x_centroid(ras, 1) < ras.shape[0] / 2 < x_centroid(ras, 2)


def test_nodule_world_coordinates_land_in_the_right_lung(twin):
    root, manifest = twin
    assert any(c["nodules"] for c in manifest["cases"]) and any(not c["nodules"] for c in manifest["cases"])
    checked = 0
    for case in manifest["cases"]:
        mask_image, mask = _load(root, f"masks_processed/{case['uid']}.nii.gz")
        _image, hu = _load(root, f"images/{case['uid']}.nii.gz")
        for nodule in case["nodules"]:
            assert 3.0 <= nodule["diameter_mm"] <= 30.0
            lps = np.array([nodule["coordX"], nodule["coordY"], nodule["coordZ"]])
            ras = lps * [-1, -1, 1]
            ijk = np.rint(np.linalg.inv(mask_image.affine) @ np.append(ras, 1))[:3].astype(int)
            assert mask[tuple(ijk)] == (1 if nodule["side"] == "left" else 2)
            assert (nodule["coordX"] > 0) == (nodule["side"] == "left")  # LPS +x is patient-left
            if nodule["diameter_mm"] >= 15:
                assert hu[tuple(ijk)] > -500
            checked += 1
    assert checked > 0


def test_labels_and_hu_statistics(twin):
    root, manifest = twin
    for case in manifest["cases"]:
        _i, mask = _load(root, f"masks_processed/{case['uid']}.nii.gz")
        _i, hu = _load(root, f"images/{case['uid']}.nii.gz")
        assert set(np.unique(mask).tolist()) == {0, 1, 2, 3}
        lung = hu[(mask == 1) | (mask == 2)]
        assert -950 < lung.mean() < -750
        assert (hu > 0).sum() > 1000  # soft tissue and bone survive MONAI's HU > 0 foreground crop
        assert (hu > 300).any()  # bone
        assert hu[mask == 3].mean() < -700  # trachea lumen is air
        assert (mask == 2).sum() > 0.9 * (mask == 1).sum()  # right lung not smaller than the left (notch)


def test_manifest_hashes_and_completeness(twin):
    root, manifest = twin
    assert luna16_twin_is_complete(root) and luna16_twin_is_complete(
        root, seed=SEED, n_cases=N_CASES, shape=(64, 64, 32)
    )
    assert not luna16_twin_is_complete(root, seed=SEED + 1)
    assert not luna16_twin_is_complete(root.parent / "nowhere")
    for rel, digest in manifest["files"].items():
        if rel.endswith(".nii.gz"):
            assert array_sha256(_load(root, rel)[1]) == digest
        else:
            assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest
    assert json.loads((root / MANIFEST).read_text()) == manifest


def test_determinism_and_seed_dependence(twin, tmp_path):
    root, manifest = twin
    again = write_luna16_twin(tmp_path / "again", n_cases=N_CASES, seed=SEED)
    assert again == manifest
    for rel in manifest["files"]:
        assert (tmp_path / "again" / rel).read_bytes() == (root / rel).read_bytes()  # gzip mtime 0: byte-identical
    other = write_luna16_twin(tmp_path / "other", n_cases=2, seed=SEED + 1)
    first = other["cases"][0]["uid"]
    assert first != manifest["cases"][0]["uid"]
    assert not np.array_equal(
        _load(tmp_path / "other", f"images/{first}.nii.gz")[1],
        _load(root, f"images/{manifest['cases'][0]['uid']}.nii.gz")[1],
    )
    assert luna16_twin_is_complete(tmp_path / "other") and not luna16_twin_is_complete(
        tmp_path / "other", n_cases=N_CASES
    )


def test_case_spec_round_trips_through_json():
    case = sample_chest_case(SEED, DATASET_CODES["luna16"], 3)
    again = ChestCase.from_dict(json.loads(json.dumps(case.to_dict())))
    assert again == case
    grid = VoxelGrid((32, 32, 16), (10.5, 10.5, 21.0), (-160.0, -165.0, -200.0))
    a, b = render_case(case, grid), render_case(again, grid)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.labels, b.labels)


def test_nodule_counts_and_sizes_across_cases():
    counts = [len(sample_chest_case(SEED, DATASET_CODES["luna16"], i).nodules) for i in range(40)]
    assert max(counts) <= 4 and counts.count(0) > 0 and sum(c > 0 for c in counts) > 10


def test_refuses_to_write_into_a_real_looking_root(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError):
        write_luna16_twin(tmp_path, n_cases=2)


def test_classification_split_csvs(twin):
    """luna16_cls files (protocol.md §11.2): the lung_seg scans, label 1 iff an annotated (>= 3 mm) nodule."""
    from simcrop_bench.data.splits.files import read_split_csv
    from simcrop_bench.data.splits.fractions import fraction_subset

    root, manifest = twin
    tables = {
        n: read_split_csv(root / n, "luna16_cls")
        for n in ("train_list.csv", "train_list_10.csv", "val_list.csv", "test_list.csv")
    }
    for name in tables:
        text = (root / name).read_text()
        assert text.startswith("image_id,label\n") and text.endswith("\n") and "\n\n" not in text
    assert (root / "val_list.csv").read_bytes() == (root / "test_list.csv").read_bytes()
    full = json.loads((root / "dataset_100.json").read_text())
    uid = lambda i: i[: -len(".nii.gz")]  # noqa: E731
    train = [uid(i) for i in tables["train_list.csv"].ids]
    assert sorted(train) == sorted(_uids(full["training"]))
    assert [uid(i) for i in tables["test_list.csv"].ids] == _uids(full["testing"])
    perm = np.random.RandomState(42).permutation(len(train))
    ten = [uid(i) for i in tables["train_list_10.csv"].ids]
    assert len(ten) == 2 and ten == [train[i] for i in perm[:2]]
    assert len(fraction_subset(len(train), 0.10)) <= 2
    labels = {c["uid"]: int(any(n["diameter_mm"] >= 3 for n in c["nodules"])) for c in manifest["cases"]}
    for table in tables.values():
        assert table.labels[:, 0].tolist() == [labels[uid(i)] for i in table.ids]
    assert luna16_twin_is_complete(root)
    (root / "train_list.csv").rename(root / "moved.csv")
    try:
        assert not luna16_twin_is_complete(root)  # an older twin without the lists is regenerated
    finally:
        (root / "moved.csv").rename(root / "train_list.csv")
