import numpy as np
import pytest
import torch

from simcrop_bench.data.formats.nifti import write_nifti_gz
from simcrop_bench.data.volume_transforms import apply_chain, evaluation_transforms, training_transforms
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
