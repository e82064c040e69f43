"""`bench loader`: every row delivers the same batch, and the table divides by the z-fastest floor."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch

from simcrop_bench.bench.loader import bench_loader, collated, floor_crop
from simcrop_bench.data.formats.nifti import write_stored_volume
from simcrop_bench.data.volume_transforms import Windowd

from .conftest import run_cli


def test_floor_and_chain_collate_the_same_crop_into_the_same_batch(tmp_path):
    rng = np.random.default_rng(11)
    hu = np.asfortranarray(rng.integers(-2048, 3072, size=(30, 26, 18), dtype=np.int16))  # as to_ras returns it
    nifti = write_stored_volume(tmp_path / "v.nii.gz", hu, np.diag([1.0, 1.0, 2.0, 1.0]), "nii")
    np.save(tmp_path / "x.npy", hu)
    np.save(tmp_path / "z.npy", np.ascontiguousarray(hu))
    start, roi = (3, 5, 2), (16, 12, 9)
    mapped = np.asanyarray(nib.load(str(nifti), mmap="c").dataobj)
    assert isinstance(mapped, np.memmap) and mapped.flags.f_contiguous  # the NIfTI's bytes, x fastest
    crop = torch.from_numpy(mapped[tuple(slice(s, s + r) for s, r in zip(start, roi))])[None]
    chain = collated(Windowd(keys="image")({"image": crop})["image"][0])
    assert type(chain) is torch.Tensor and chain.shape == (1, *roi) and chain.is_contiguous()
    for name in ("x.npy", "z.npy"):
        floor = collated(floor_crop(np.load(tmp_path / name, mmap_mode="r"), start, roi))
        assert floor.dtype == torch.float32 and floor.is_contiguous()
        assert torch.equal(floor, chain), name


def test_bench_loader_times_every_chain_against_the_z_fastest_floor(tmp_path):
    timings, sizes = bench_loader((40, 36, 30), (16, 16, 8), repeats=2, slow_repeats=1, workdir=tmp_path)
    rows = [(t.chain.split(":")[0], t.store, len(t.seconds)) for t in timings]
    assert rows == [
        ("before", ".nii.gz", 1),
        ("before", ".nii", 1),
        ("after", ".nii.gz", 1),
        ("after", ".nii (prepared)", 2),
        ("floor", ".npy, x fastest (same bytes)", 2),
        ("floor", ".npy, z fastest", 2),
    ]
    assert [t.reference for t in timings] == [False] * 5 + [True]
    assert all(s > 0 for t in timings for s in t.seconds)
    voxels = 40 * 36 * 30
    assert sizes["npy"] == sizes["npy, z fastest"] and 2 * voxels < sizes["nii"] < 2 * voxels + 1024
    assert list(tmp_path.iterdir()) == []  # the temporary volumes are gone


def test_bench_loader_command_prints_the_reference_floor_as_one():
    args = ("bench", "loader", "--shape", "40,36,30", "--roi", "16,16,8", "--repeats", "2")
    result = run_cli(*args, env={"COLUMNS": "240"})  # one line per row, whatever the terminal
    assert result.returncode == 0, result.stderr
    floor_rows = [line for line in result.stdout.splitlines() if "floor: memmap" in line]
    assert len(floor_rows) == 2 and "z fastest" in floor_rows[1]
    assert floor_rows[1].split("│")[5].strip() == "1.0"  # the × floor column of the reference floor


def test_data_path_benchmarks_refuse_a_missing_workdir_and_a_crop_larger_than_the_volume(tmp_path):
    from .test_end_to_end import assert_clean_failure

    missing = str(tmp_path / "no-such-folder")
    small = ("--shape", "40,36,30")
    assert_clean_failure(run_cli("bench", "loader", *small, "--roi", "16,16,8", "--workdir", missing), missing)
    assert_clean_failure(run_cli("bench", "prepare", *small, "--workdir", missing), missing, "not an existing folder")
    assert_clean_failure(run_cli("bench", "loader", *small, "--roi", "64,64,8"), "--roi 64,64,8: larger than")
    assert list(tmp_path.iterdir()) == []
