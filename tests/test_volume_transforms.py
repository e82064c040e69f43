import numpy as np
import pytest
import torch
from monai import transforms as mt

from simcrop_bench.data.formats.nifti import write_nifti_gz, write_stored_volume
from simcrop_bench.data.volume_transforms import Windowd, apply_chain, evaluation_transforms, training_transforms
from simcrop_bench.errors import DataError


def volume(tmp_path, shape=(40, 36, 20), affine=None):
    hu = np.linspace(-1500, 1500, np.prod(shape)).reshape(shape).astype(np.int16)
    path = tmp_path / "v.nii.gz"
    write_nifti_gz(path, hu, np.diag([2.0, 2.0, 4.0, 1.0]) if affine is None else affine)
    return path, hu


def test_training_output_shape_range_and_determinism(tmp_path):
    path, _ = volume(tmp_path)
    chain = training_transforms((32, 32, 16), gaussian_noise=True)
    chain.set_random_state(seed=5)
    a = chain({"image": str(path)})["image"]
    chain.set_random_state(seed=5)
    b = chain({"image": str(path)})["image"]
    assert tuple(a.shape) == (1, 32, 32, 16) and torch.equal(a, b)
    assert a.min() >= -1.6 and a.max() <= 1.6  # window, then at most shift 0.1 + noise


def test_evaluation_pads_small_volumes_by_reflection(tmp_path):
    path, hu = volume(tmp_path, shape=(24, 24, 12))
    out = evaluation_transforms((32, 32, 16))({"image": str(path)})["image"][0].numpy()
    assert out.shape == (32, 32, 16)
    scaled = np.clip(hu, -1000, 1000) / 1000
    np.testing.assert_allclose(out[4:28, 4:28, 2:14], scaled, atol=1e-6)  # symmetric padding
    np.testing.assert_allclose(out[3], out[5], atol=1e-6)  # reflect, not edge or zero


def test_non_ras_store_is_refused(tmp_path):
    path, _ = volume(tmp_path, affine=np.diag([-2.0, -2.0, 4.0, 1.0]))
    with pytest.raises(DataError, match="axis codes LPS, expected RAS"):
        apply_chain(evaluation_transforms((32, 32, 16)), {"image": str(path)})
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    good, _ = volume(good_dir)
    with pytest.raises(DataError, match=r"spacing \(2.0, 2.0, 4.0\) mm, expected"):
        apply_chain(evaluation_transforms((32, 32, 16), spacing=(1.5, 1.5, 3.0)), {"image": str(good)})
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"not a volume")
    with pytest.raises(DataError, match="corrupt.nii.gz: cannot be loaded"):
        apply_chain(evaluation_transforms((32, 32, 16)), {"image": str(corrupt)})


def test_dhw_stores_are_transposed(tmp_path):
    path, hu = volume(tmp_path, shape=(12, 40, 36))  # stored (D, H, W)
    out = evaluation_transforms((40, 36, 12), transpose_dhw=True)({"image": str(path)})["image"][0].numpy()
    np.testing.assert_allclose(out, np.clip(hu, -1000, 1000).transpose(1, 2, 0) / 1000, atol=1e-6)


def reference_order(roi, *, train: bool) -> mt.Compose:
    """The chains as they were before #16: MONAI's float32 loader, then the window on the whole volume, then crops."""
    steps = [
        mt.LoadImaged(keys="image", image_only=True),
        mt.EnsureChannelFirstd(keys="image", channel_dim="no_channel"),
        mt.ScaleIntensityRanged(keys="image", a_min=-1000.0, a_max=1000.0, b_min=-1.0, b_max=1.0, clip=True),
    ]
    if not train:
        return mt.Compose(
            steps
            + [
                mt.CenterSpatialCropd(keys="image", roi_size=roi),
                mt.SpatialPadd(keys="image", spatial_size=roi, mode="reflect"),
            ]
        )
    return mt.Compose(
        steps
        + [
            mt.RandScaleCropd(keys="image", roi_scale=0.8, max_roi_scale=1.0, random_center=True, random_size=True),
            mt.RandSpatialCropd(keys="image", roi_size=roi, random_center=True, random_size=False),
            mt.SpatialPadd(keys="image", spatial_size=roi, mode="reflect"),
            *[mt.RandFlipd(keys="image", prob=0.2, spatial_axis=axis) for axis in range(3)],
            mt.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.1),
            mt.RandGaussianNoised(keys="image", prob=0.2, mean=0.0, std=0.1, sample_std=True),
        ]
    )


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_crop_before_window_is_bit_identical_to_window_before_crop(tmp_path, suffix):
    rng = np.random.default_rng(7)
    hu = rng.integers(-2048, 3072, size=(44, 38, 22), dtype=np.int16)  # outside the window on both sides
    path = write_stored_volume(tmp_path / "v.nii.gz", hu, np.diag([2.0, 2.0, 4.0, 1.0]), suffix.lstrip("."))
    roi = (32, 32, 24)  # smaller in x, y (crops), larger in z (reflect padding)
    for train in (True, False):
        old = reference_order(roi, train=train)
        new = training_transforms(roi, gaussian_noise=True) if train else evaluation_transforms(roi)
        for seed in range(8):  # enough draws that flips, shift and noise fire
            old.set_random_state(seed=seed)
            new.set_random_state(seed=seed)
            a, b = old({"image": str(path)})["image"], new({"image": str(path)})["image"]
            assert a.dtype == b.dtype == torch.float32
            assert torch.equal(a.as_tensor(), b.as_tensor()), (train, seed)


def test_prepared_store_is_found_under_the_reference_name(tmp_path):
    hu = np.arange(40 * 36 * 20, dtype=np.int16).reshape(40, 36, 20) - 8000
    reference = tmp_path / "v.nii.gz"
    written = write_stored_volume(reference, hu, np.diag([2.0, 2.0, 4.0, 1.0]), "nii")
    assert written.name == "v.nii" and not reference.exists()
    out = evaluation_transforms((32, 32, 16))({"image": str(reference)})["image"]
    assert out.meta["filename_or_obj"] == str(written)
    np.testing.assert_allclose(out[0].numpy(), np.clip(hu[4:36, 2:34, 2:18], -1000, 1000) / 1000, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int8, np.uint8, np.float32])
@pytest.mark.parametrize("window", [(-1000.0, 1000.0), (-1150.0, 350.0), (-0.5, 7.25)])
def test_window_of_every_stored_value_is_monais_to_the_bit(dtype, window):
    # every value a ≤ 16-bit integer store can hold, and float stores: Windowd's arithmetic is MONAI's to the bit
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.arange(info.min, info.max + 1, dtype=np.int64).astype(dtype)
    else:
        values = np.random.default_rng(3).normal(0, 2000, 4096).astype(dtype)
    volume = values.reshape(4, 4, -1)
    stored = torch.from_numpy(np.asfortranarray(volume))[None]  # x fastest, as a NIfTI map: not contiguous
    assert not stored.is_contiguous()
    got = Windowd(keys="image", window=window)({"image": stored})["image"]
    expected = mt.ScaleIntensityRange(a_min=window[0], a_max=window[1], b_min=-1.0, b_max=1.0, clip=True)(
        torch.from_numpy(volume.astype(np.float32))[None]
    )
    assert got.dtype == torch.float32 and got.is_contiguous()
    assert torch.equal(got, torch.as_tensor(expected).contiguous())
