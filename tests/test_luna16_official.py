"""Official LUNA16 layout: MetaImage IO, the official twin, conversion to the SimCroP layout, orientation (§1.5)."""

from __future__ import annotations

import csv
import json
import zlib

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientation, Orientationd

from simcrop_bench.data.formats.metaimage import mhd_to_nifti_affine, read_mhd, write_mhd
from simcrop_bench.data.formats.nifti import array_sha256, lps_nifti_affine, write_nifti_gz
from simcrop_bench.data.prepare.luna16 import PREPARE_MANIFEST, convert_official_to_simcrop
from simcrop_bench.data.synthetic.luna16 import (
    MARKER,
    luna16_official_is_complete,
    luna16_twin_is_complete,
    render_luna16_cases,
    write_luna16_official,
    write_luna16_twin,
)
from simcrop_bench.errors import DataError

N_CASES = 6  # 2 subsets; scans with and without nodules
SEED = 20251128
SHAPE, SPACING = (64, 64, 32), (5.25, 5.25, 10.5)
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # nibabel world: MONAI must not assume its LPS default
HEADER_KEYS = [
    "ObjectType",
    "NDims",
    "BinaryData",
    "BinaryDataByteOrderMSB",
    "CompressedData",
    "TransformMatrix",
    "Offset",
    "CenterOfRotation",
    "AnatomicalOrientation",
    "ElementSpacing",
    "DimSize",
    "ElementType",
    "ElementDataFile",
]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("luna16-official")
    official = write_luna16_official(base / "official", n_cases=N_CASES, seed=SEED)
    simcrop = write_luna16_twin(base / "simcrop", n_cases=N_CASES, seed=SEED)
    summary = convert_official_to_simcrop(base / "official", base / "converted")
    return base, official, simcrop, summary


def _header_keys(path) -> list[str]:
    return [line.split(" = ")[0] for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- MetaImage IO


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8])
def test_metaimage_round_trip(tmp_path, compressed, dtype):
    info = np.iinfo(dtype)
    array = np.random.default_rng(0).integers(info.min, info.max, (7, 5, 3), endpoint=True).astype(dtype)
    path = tmp_path / "1.3.6.1.4.1.14519.5.2.1.6279.6001.9999123.mhd"  # many dots: suffixes stripped by name
    write_mhd(path, array, (0.7, 0.7, 2.5), (-195.0, -180.5, -300.25), compressed=compressed)
    image = read_mhd(path)
    assert image.array.shape == (7, 5, 3) and image.array.dtype == dtype and np.array_equal(image.array, array)
    assert image.spacing == (0.7, 0.7, 2.5) and image.offset == (-195.0, -180.5, -300.25)
    assert np.array_equal(image.direction, np.eye(3))
    assert image.element_type == {np.int16: "MET_SHORT", np.uint8: "MET_UCHAR"}[dtype]
    keys = HEADER_KEYS[:5] + ["CompressedDataSize"] * compressed + HEADER_KEYS[5:]
    assert _header_keys(path) == keys  # datasets.md §5.3 order, ElementDataFile last
    data = tmp_path / ("1.3.6.1.4.1.14519.5.2.1.6279.6001.9999123" + (".zraw" if compressed else ".raw"))
    assert image.header["ElementDataFile"] == data.name and image.header["AnatomicalOrientation"] == "RAI"
    payload = zlib.decompress(data.read_bytes()) if compressed else data.read_bytes()
    assert payload == array.transpose().astype(np.dtype(dtype).newbyteorder("<")).tobytes()  # x fastest, LE
    if compressed:
        assert int(image.header["CompressedDataSize"]) == data.stat().st_size


def test_nifti_affine_of_a_metaimage(tmp_path):
    spacing, offset = (0.7, 0.8, 2.5), (-195.0, -180.5, -300.25)
    affine = mhd_to_nifti_affine(spacing, offset)
    assert np.array_equal(affine, lps_nifti_affine(spacing, offset)) and nib.aff2axcodes(affine) == ("L", "P", "S")
    flip = np.diag([-1.0, -1.0, 1.0])  # LPS world -> RAS world
    ijk = np.array([3.0, 4.0, 5.0])
    direction = np.diag([-1.0, -1.0, 1.0])  # some LIDC scans are stored flipped in-plane
    write_mhd(tmp_path / "f.mhd", np.zeros((4, 5, 6), np.int16), spacing, offset, compressed=False, direction=direction)
    image = read_mhd(tmp_path / "f.mhd")
    assert np.array_equal(image.direction, direction) and image.header["AnatomicalOrientation"] == "LPI"
    cyclic = np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])  # not symmetric: catches a transposed TransformMatrix
    write_mhd(tmp_path / "c.mhd", np.zeros((4, 5, 6), np.int16), spacing, offset, compressed=False, direction=cyclic)
    assert (
        read_mhd(tmp_path / "c.mhd").header["TransformMatrix"] == "0 1 0 0 0 1 1 0 0"
    )  # ITK: axis 0's direction first
    assert np.array_equal(read_mhd(tmp_path / "c.mhd").direction, cyclic)
    for d in (np.eye(3), direction, cyclic):
        lps_world = np.asarray(offset) + d @ (ijk * spacing)
        np.testing.assert_allclose(
            mhd_to_nifti_affine(spacing, offset, d) @ np.append(ijk, 1), np.append(flip @ lps_world, 1)
        )


def _expect_error(path, fragment: str) -> None:
    with pytest.raises(DataError) as info:
        read_mhd(path)
    message = str(info.value)
    assert fragment in message and "\n" not in message, message


def test_corrupt_metaimages_raise_data_error_naming_the_file(tmp_path):
    array = np.arange(60, dtype=np.int16).reshape(5, 4, 3)
    for name, compressed in (("a", False), ("b", True)):
        write_mhd(tmp_path / f"{name}.mhd", array, (1, 1, 1), (0, 0, 0), compressed=compressed)
    raw, zraw = tmp_path / "a.raw", tmp_path / "b.zraw"
    good_raw, good_zraw, header = raw.read_bytes(), zraw.read_bytes(), (tmp_path / "a.mhd").read_text()

    raw.write_bytes(good_raw[:-10])
    _expect_error(tmp_path / "a.mhd", "a.raw")  # truncated raw
    raw.write_bytes(good_raw + b"\0\0")
    _expect_error(tmp_path / "a.mhd", "a.raw")  # size mismatch
    raw.unlink()
    _expect_error(tmp_path / "a.mhd", "a.raw")  # missing data file
    zraw.write_bytes(b"not zlib at all" * 4)
    (tmp_path / "b.mhd").write_text(
        (tmp_path / "b.mhd").read_text().replace(f"CompressedDataSize = {len(good_zraw)}", "CompressedDataSize = 60")
    )
    _expect_error(tmp_path / "b.mhd", "b.zraw")  # bad zlib
    (tmp_path / "b.mhd").write_text(
        (tmp_path / "b.mhd").read_text().replace("CompressedDataSize = 60", f"CompressedDataSize = {len(good_zraw)}")
    )
    zraw.write_bytes(good_zraw[: len(good_zraw) // 2])
    _expect_error(tmp_path / "b.mhd", "b.zraw")  # truncated zraw
    raw.write_bytes(good_raw)
    for broken, what in (
        (header.replace("NDims = 3", "NDims 3"), "line 2"),
        (header.replace("MET_SHORT", "MET_FANCY"), "MET_FANCY"),
        (header.replace("DimSize = 5 4 3", "DimSize = 5 4"), "DimSize"),
        (header.replace("ElementSpacing = 1 1 1", "ElementSpacing = 1 x 1"), "ElementSpacing"),
    ):
        (tmp_path / "c.mhd").write_text(broken)
        _expect_error(tmp_path / "c.mhd", "c.mhd")
        _expect_error(tmp_path / "c.mhd", what)
    _expect_error(tmp_path / "nowhere.mhd", "nowhere.mhd")


# ---------------------------------------------------------------- the official twin


def test_official_layout(roots):
    base, manifest, simcrop, _ = roots
    root = base / "official"
    assert (root / MARKER).is_file() and manifest["layout"] == "official" and manifest["subsets"] == 2
    assert [c["uid"] for c in manifest["cases"]] == [c["uid"] for c in simcrop["cases"]]
    assert {c["subset"] for c in manifest["cases"]} == {"subset0", "subset1"}
    for case in manifest["cases"]:
        uid, subset = case["uid"], case["subset"]
        assert sorted(p.name for p in root.glob(f"subset*/{uid}.*")) == [f"{uid}.mhd", f"{uid}.raw"]
        image, mask = read_mhd(root / subset / f"{uid}.mhd"), read_mhd(root / "seg-lungs-LUNA16" / f"{uid}.mhd")
        assert image.element_type == "MET_SHORT" and mask.element_type == "MET_UCHAR"
        assert image.header["CompressedData"] == "False" and mask.header["CompressedData"] == "True"
        assert mask.header["ElementDataFile"] == f"{uid}.zraw"
        assert image.spacing == SPACING and image.array.shape == SHAPE and all(o != 0 for o in image.offset)
        assert image.offset == tuple(case["lps_offset_mm"]) == mask.offset
        assert set(np.unique(mask.array).tolist()) == {0, 3, 4, 5}
    csvs = root / "CSVFILES"
    assert (csvs / "annotations.csv").read_text().splitlines()[0] == "seriesuid,coordX,coordY,coordZ,diameter_mm"
    assert (csvs / "candidates_V2.csv").read_text().splitlines()[0] == "seriesuid,coordX,coordY,coordZ,class"
    assert sorted((csvs / "seriesuids.csv").read_text().split()) == sorted(c["uid"] for c in manifest["cases"])
    assert luna16_official_is_complete(root, seed=SEED, n_cases=N_CASES) and not luna16_twin_is_complete(root)
    assert luna16_twin_is_complete(base / "simcrop") and not luna16_official_is_complete(base / "simcrop")


def _rows(path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_annotations_and_candidates_land_in_the_right_lung(roots):
    base, manifest, _, _ = roots
    root = base / "official"
    annotations, candidates = _rows(root / "CSVFILES/annotations.csv"), _rows(root / "CSVFILES/candidates_V2.csv")
    with_nodules = {r["seriesuid"] for r in annotations}
    assert 0 < len(with_nodules) < N_CASES  # some scans without nodules
    sides = set()
    for case in manifest["cases"]:
        uid = case["uid"]
        mask = read_mhd(root / "seg-lungs-LUNA16" / f"{uid}.mhd")
        hu = read_mhd(root / case["subset"] / f"{uid}.mhd").array
        rows = [r for r in annotations if r["seriesuid"] == uid]
        assert len(rows) == len(case["nodules"])
        for row, nodule in zip(rows, case["nodules"]):
            world = np.array([float(row[k]) for k in ("coordX", "coordY", "coordZ")])
            diameter = float(row["diameter_mm"])
            assert 3.0 <= diameter <= 30.0
            voxel = tuple(np.rint((world - mask.offset) / mask.spacing).astype(int))  # datasets.md §5.3
            assert mask.array[voxel] == (3 if nodule["side"] == "left" else 4)
            assert (world[0] > 0) == (nodule["side"] == "left")  # LPS +x is patient-left
            if diameter >= 15:
                assert hu[voxel] > -500
            hits = [
                c
                for c in candidates
                if c["seriesuid"] == uid
                and c["class"] == "1"
                and np.linalg.norm(world - [float(c[k]) for k in ("coordX", "coordY", "coordZ")]) < diameter / 2
            ]
            assert len(hits) == 1
            sides.add(nodule["side"])
        mine = [c for c in candidates if c["seriesuid"] == uid]
        assert sum(c["class"] == "1" for c in mine) == len(rows) and sum(c["class"] == "0" for c in mine) >= 4
        for c in mine:
            if c["class"] == "0":  # false candidates sit near the lung surface, inside the grid
                voxel = np.rint(
                    ([float(c[k]) for k in ("coordX", "coordY", "coordZ")] - np.asarray(mask.offset)) / mask.spacing
                )
                assert np.all(voxel >= 0) and np.all(voxel < SHAPE)
    assert sides == {"left", "right"}


def test_official_twin_is_byte_identical_for_the_same_seed(roots, tmp_path):
    base, manifest, _, _ = roots
    again = write_luna16_official(tmp_path / "again", n_cases=N_CASES, seed=SEED)
    assert again == manifest
    files = sorted(p.relative_to(base / "official") for p in (base / "official").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    for rel in files:
        assert (tmp_path / "again" / rel).read_bytes() == (base / "official" / rel).read_bytes(), rel
    other = write_luna16_official(tmp_path / "other", n_cases=2, seed=SEED + 1)
    assert other["cases"][0]["uid"] != manifest["cases"][0]["uid"]


# ---------------------------------------------------------------- conversion official -> SimCroP layout


def _load_ras(path: str) -> MetaTensor:
    """The segmentation path of the harness: load with the affine, reorient to RAS."""
    load = Compose(
        [
            LoadImaged(keys="x", image_only=True),
            EnsureChannelFirstd(keys="x", channel_dim="no_channel"),
            Orientationd(keys="x", axcodes="RAS", labels=RAS_LABELS),
        ]
    )
    return load({"x": path})["x"]


def test_conversion_reproduces_the_simcrop_twin(roots):
    base, _, simcrop, summary = roots
    assert (summary["cases"], summary["converted"], summary["skipped"]) == (N_CASES, N_CASES, 0)
    assert summary["split_files"] == ["dataset_10.json", "dataset_100.json"] and not summary["split_uids_missing"]
    converted = base / "converted"
    assert (converted / MARKER).is_file()  # a converted twin stays marked synthetic
    records = json.loads((converted / PREPARE_MANIFEST).read_text())["cases"]
    for case in simcrop["cases"]:
        for rel in (f"images/{case['uid']}.nii.gz", f"masks_processed/{case['uid']}.nii.gz"):
            ours, twin = nib.load(str(converted / rel)), nib.load(str(base / "simcrop" / rel))
            assert np.asanyarray(ours.dataobj).dtype == np.asanyarray(twin.dataobj).dtype
            np.testing.assert_array_equal(ours.affine, twin.affine)
            assert nib.aff2axcodes(ours.affine) == ("L", "P", "S")
            a, b = _load_ras(str(converted / rel)), _load_ras(str(base / "simcrop" / rel))
            assert torch.equal(a.as_tensor(), b.as_tensor())
            np.testing.assert_array_equal(np.asarray(a.affine), np.asarray(b.affine))
            assert array_sha256(np.asanyarray(ours.dataobj)) == simcrop["files"][rel]
        assert records[case["uid"]]["image_sha256"] == simcrop["files"][f"images/{case['uid']}.nii.gz"]
    for name in ("dataset_10.json", "dataset_100.json"):
        assert (converted / name).read_bytes() == (base / "simcrop" / name).read_bytes()


def test_conversion_resumes_and_redoes_changed_sources(roots, tmp_path):
    base, manifest, _, _ = roots
    dst = tmp_path / "dst"
    convert_official_to_simcrop(base / "official", dst, split_files=base / "simcrop")
    again = convert_official_to_simcrop(base / "official", dst, split_files=base / "simcrop")
    assert (again["converted"], again["skipped"]) == (0, N_CASES)
    first, second = manifest["cases"][0], manifest["cases"][1]
    (dst / "images" / f"{first['uid']}.nii.gz").unlink()  # lost output
    src = tmp_path / "src"  # an edited source mask
    for p in (base / "official").rglob("*"):
        if p.is_file():
            (src / p.relative_to(base / "official")).parent.mkdir(parents=True, exist_ok=True)
            (src / p.relative_to(base / "official")).write_bytes(p.read_bytes())
    edited = read_mhd(src / "seg-lungs-LUNA16" / f"{second['uid']}.mhd")
    write_mhd(
        src / "seg-lungs-LUNA16" / f"{second['uid']}.mhd",
        np.where(edited.array == 5, 0, edited.array).astype(np.uint8),
        edited.spacing,
        edited.offset,
        compressed=True,
    )
    third = convert_official_to_simcrop(src, dst)
    assert (third["converted"], third["skipped"]) == (2, N_CASES - 2)
    relabelled = np.asanyarray(nib.load(str(dst / "masks_processed" / f"{second['uid']}.nii.gz")).dataobj)
    assert set(np.unique(relabelled).tolist()) == {0, 1, 2}


def _tiny_official(root, *, mask_values=(0, 3, 4, 5), mask_shape=(4, 4, 2)):
    labels = np.resize(np.asarray(mask_values, np.uint8), mask_shape)
    write_mhd(root / "subset0" / "1.2.3.mhd", np.zeros((4, 4, 2), np.int16), (1, 1, 2), (-5, -5, -9), compressed=False)
    write_mhd(root / "seg-lungs-LUNA16" / "1.2.3.mhd", labels, (1, 1, 2), (-5, -5, -9), compressed=True)


@pytest.mark.parametrize(
    "problem, fragment",
    [
        ("no_subsets", "subset"),
        ("no_mask", "seg-lungs-LUNA16"),
        ("bad_values", "1.2.3.mhd"),
        ("bad_shape", "DimSize"),
        ("bad_zlib", "1.2.3.zraw"),
        ("bad_split", "dataset_10.json"),
        ("empty_split_dir", "splits"),
    ],
)
def test_conversion_errors_name_the_file(tmp_path, problem, fragment):
    src, splits = tmp_path / "src", tmp_path / "splits"
    splits.mkdir()
    if problem != "no_subsets":
        _tiny_official(
            src,
            mask_values=(0, 3, 7) if problem == "bad_values" else (0, 3, 4, 5),
            mask_shape=(4, 4, 3) if problem == "bad_shape" else (4, 4, 2),
        )
    else:
        src.mkdir()
    if problem == "no_mask":
        (src / "seg-lungs-LUNA16" / "1.2.3.mhd").unlink()
    if problem == "bad_zlib":
        (src / "seg-lungs-LUNA16" / "1.2.3.zraw").write_bytes(b"\x00" * 40)
    if problem == "bad_split":
        (splits / "dataset_10.json").write_text("{not json")
    with pytest.raises(DataError) as info:
        convert_official_to_simcrop(src, tmp_path / "dst", split_files=splits if "split" in problem else None)
    assert fragment in str(info.value), str(info.value)


# ---------------------------------------------------------------- mandatory orientation test (datasets.md §1.5)


def _x_centroid(array) -> float:
    return float(np.argwhere(np.asarray(array) > 0)[:, 0].mean())


def test_left_lung_marker_lands_at_low_axis0_indices(tmp_path):
    """A marker only in the patient-LEFT lung, written three ways, must end at low axis-0 indices in RAS.

    Segmentation path (affine used): every file is reoriented with its affine, so all three agree.
    Classification path (no affine): the array is taken as stored and orientation transforms do nothing, so
    the path expects volumes STORED RAS; LPS-stored sources (NIfTI or MetaImage) come out mirrored and must
    be rewritten in stored RAS (``nib.as_closest_canonical``) before a classification store holds them.
    """
    twin = render_luna16_cases(n_cases=2, shape=SHAPE, spacing=SPACING, seed=SEED)[0]
    marker = (twin.rendered.labels == 3).astype(np.uint8)  # (x, y, z) in LPS index order: left = high x
    assert _x_centroid(marker) > SHAPE[0] / 2
    lps_affine = lps_nifti_affine(SPACING, twin.grid.origin)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(marker, lps_affine))
    ras_array, ras_affine = np.asarray(canonical.dataobj), canonical.affine
    assert nib.aff2axcodes(ras_affine) == ("R", "A", "S")
    write_nifti_gz(tmp_path / "lps.nii.gz", marker, lps_affine)
    write_nifti_gz(tmp_path / "ras.nii.gz", ras_array, ras_affine)
    write_mhd(tmp_path / "lps.mhd", marker, SPACING, twin.grid.origin, compressed=True)

    # Segmentation path: reader + affine + Orientation to RAS.
    mhd = read_mhd(tmp_path / "lps.mhd")
    from_mhd = MetaTensor(
        torch.from_numpy(np.ascontiguousarray(mhd.array))[None],
        affine=torch.from_numpy(mhd_to_nifti_affine(mhd.spacing, mhd.offset, mhd.direction)),
    )
    segmentation = {
        "LPS-stored NIfTI": _load_ras(str(tmp_path / "lps.nii.gz"))[0],
        "RAS-stored NIfTI": _load_ras(str(tmp_path / "ras.nii.gz"))[0],
        "LPS MetaImage": Orientation(axcodes="RAS", labels=RAS_LABELS)(from_mhd)[0],
    }
    for name, volume in segmentation.items():
        assert _x_centroid(volume) < SHAPE[0] / 2, name
        assert torch.equal(volume.as_tensor(), segmentation["RAS-stored NIfTI"].as_tensor()), name

    # Classification path: array as stored, no affine (identity), so Orientation is a no-op.
    def classification(array) -> np.ndarray:
        no_affine = MetaTensor(
            torch.from_numpy(np.ascontiguousarray(array))[None], affine=torch.eye(4, dtype=torch.float64)
        )
        return np.asarray(Orientation(axcodes="RAS", labels=RAS_LABELS)(no_affine)[0])

    stored = {
        "LPS-stored NIfTI": np.asarray(nib.load(str(tmp_path / "lps.nii.gz")).dataobj),
        "RAS-stored NIfTI": np.asarray(nib.load(str(tmp_path / "ras.nii.gz")).dataobj),
        "LPS MetaImage": read_mhd(tmp_path / "lps.mhd").array,
    }
    assert _x_centroid(classification(stored["RAS-stored NIfTI"])) < SHAPE[0] / 2
    for name in ("LPS-stored NIfTI", "LPS MetaImage"):
        assert _x_centroid(classification(stored[name])) > SHAPE[0] / 2, name  # mirrored: must not be stored so
    # ... and rewriting them in stored RAS (what a classification store must hold) fixes it.
    for path in ("lps.nii.gz", "ras.nii.gz"):
        fixed = np.asarray(nib.as_closest_canonical(nib.load(str(tmp_path / path))).dataobj)
        assert _x_centroid(classification(fixed)) < SHAPE[0] / 2
    fixed_mhd = nib.as_closest_canonical(nib.Nifti1Image(mhd.array, mhd_to_nifti_affine(mhd.spacing, mhd.offset)))
    assert np.array_equal(np.asarray(fixed_mhd.dataobj), ras_array)
