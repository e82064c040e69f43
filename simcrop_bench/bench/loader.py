"""``bench loader``: pretraining input throughput per core at the paper input, next to its floor.

One CT-RATE-sized volume (:mod:`~simcrop_bench.bench.ct_volumes`) is written, RAS-stored, as the prepared store
writes it (uncompressed ``.nii``) and as the reference store (``.nii.gz``), and as a raw ``.npy``. Each chain runs in
this process on one thread, repeat by repeat in turn, from a warm page cache (the files were just written; a cold
disk or a network file system adds its own read time):

* **before**: the pre-#16 order — MONAI's loader (whole volume to float32), window, then the crops;
* **after**: :func:`~simcrop_bench.data.volume_transforms.training_transforms` — memory-mapped load, crops, window;
* **floor**: the same crop read from a ``.npy`` memory map and windowed with plain NumPy, nothing else. One floor
  holds the NIfTI's bytes in the NIfTI's order (x fastest): the same bytes the prepared store holds. The other holds
  them z fastest, the layout of the training input, which a NIfTI store whose array is RAS cannot have; it is the
  least any loader can do, and "× floor" divides by it.

Every row ends as training does: the sample is collated into a batch tensor (``default_collate``, which stacks it
into C order). That step is part of a loader's cost and depends on what the chain hands over: stacking an x-fastest
sample is a transposing float32 copy, stacking a C-ordered one a plain copy, so a row that skipped it would look
cheaper than it is.

Times are CPU seconds of this process (user + system, page faults included), which is what a core spends on a
volume even on a machine that other work shares; wall time there would measure the other work.

It also turns the analytic FLOPs of one training sample (:mod:`~simcrop_bench.bench.flops`) into the volumes/s an
H100 consumes and so the cores per GPU each chain needs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simcrop_bench.bench.ct_volumes import CT_RATE_SHAPE, PAPER_ROI, ct_sized_volume
from simcrop_bench.data.intensity import HU_WINDOW


@dataclass(frozen=True)
class LoaderTiming:
    chain: str
    store: str
    seconds: list[float]  # per volume, one per repeat
    reference: bool = False  # the floor that "× floor" divides by

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def volumes_per_s(self) -> float:
        return 1.0 / self.median_s


def window_first_chain(roi: tuple[int, int, int]):
    """The training chain as it was before #16 (window, then crop), for the before row and the identity test."""
    from monai import transforms as mt

    lo, hi = HU_WINDOW
    return mt.Compose(
        [
            mt.LoadImaged(keys="image", image_only=True),
            mt.EnsureChannelFirstd(keys="image", channel_dim="no_channel"),
            mt.ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=-1.0, b_max=1.0, clip=True),
            mt.RandScaleCropd(keys="image", roi_scale=0.8, max_roi_scale=1.0, random_center=True, random_size=True),
            mt.RandSpatialCropd(keys="image", roi_size=roi, random_center=True, random_size=False),
            mt.SpatialPadd(keys="image", spatial_size=roi, mode="reflect"),
            *[mt.RandFlipd(keys="image", prob=0.2, spatial_axis=axis) for axis in range(3)],
            mt.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.1),
        ]
    )


def floor_crop(volume: np.ndarray, start: tuple[int, ...], roi: tuple[int, int, int]) -> np.ndarray:
    """The ``roi`` crop of ``volume`` at ``start``, windowed to [-1, 1] float32 in plain NumPy, in its stored order."""
    lo, hi = HU_WINDOW
    crop = volume[tuple(slice(s, s + r) for s, r in zip(start, roi))].astype(np.float32)
    return np.clip((crop - lo) / (hi - lo) * 2.0 - 1.0, -1.0, 1.0)


def floor_reader(path: Path, roi: tuple[int, int, int]) -> Callable[[np.random.Generator], np.ndarray]:
    """Read a random ``roi`` crop from a ``.npy`` memory map with :func:`floor_crop`: the least a loader does."""

    def read(rng: np.random.Generator) -> np.ndarray:
        volume = np.load(path, mmap_mode="r")
        return floor_crop(volume, tuple(int(rng.integers(0, n - r + 1)) for n, r in zip(volume.shape, roi)), roi)

    return read


def collated(sample) -> object:
    """``sample`` as training hands it to the model: a plain float32 tensor collated into a batch."""
    import torch
    from torch.utils.data import default_collate

    tensor = sample.as_tensor() if hasattr(sample, "as_tensor") else torch.as_tensor(sample)
    return default_collate([tensor.float()])


def _interleaved(runs: list[tuple[Callable[[int], object], int]]) -> list[list[float]]:
    """CPU seconds of each run (this process, user + system: what one core spends, however busy the machine),
    repeat by repeat in turn (A B C A B C …), so that cache and memory contention hit all runs alike."""
    seconds: list[list[float]] = [[] for _ in runs]
    for i in range(max(n for _, n in runs)):
        for (run, n), out in zip(runs, seconds):
            if i < n:
                start = time.process_time()
                run(i)
                out.append(time.process_time() - start)
    return seconds


def bench_loader(
    shape: tuple[int, int, int] = CT_RATE_SHAPE,
    roi: tuple[int, int, int] = PAPER_ROI,
    repeats: int = 20,
    slow_repeats: int = 3,
    workdir: Path | None = None,
) -> tuple[list[LoaderTiming], dict[str, int]]:
    """Timings of the before / after chains and the floor, and the bytes each store takes for the volume."""
    import torch

    from simcrop_bench.data.formats.nifti import write_stored_volume
    from simcrop_bench.data.prepare.ctrate import to_ras
    from simcrop_bench.data.volume_transforms import training_transforms

    torch.set_num_threads(1)  # per core
    with tempfile.TemporaryDirectory(dir=workdir, prefix="bench-loader-") as tmp:
        folder = Path(tmp)
        lps, affine = ct_sized_volume(shape)
        ras, ras_affine = to_ras(lps, affine)
        del lps
        # one folder per format: a store holds one format of a volume (write_stored_volume removes the other)
        files = {fmt: write_stored_volume(folder / fmt / "v.nii.gz", ras, ras_affine, fmt) for fmt in ("nii.gz", "nii")}
        files["npy"] = folder / "v.npy"
        np.save(files["npy"], ras)  # x fastest, as to_ras returns it and the NIfTI stores it
        files["npy, z fastest"] = folder / "v-z-fastest.npy"
        np.save(files["npy, z fastest"], np.ascontiguousarray(ras))
        del ras
        sizes = {fmt: path.stat().st_size for fmt, path in files.items()}

        def chain_runner(chain, path: Path) -> Callable[[int], object]:
            def run(i: int) -> object:
                chain.set_random_state(seed=i)
                return collated(chain({"image": str(path)})["image"])

            return run

        def floor_runner(path: Path) -> Callable[[int], object]:
            floor, rng = floor_reader(path, roi), np.random.default_rng(0)
            return lambda i: collated(floor(rng))

        after = training_transforms(roi, gaussian_noise=False)
        before = window_first_chain(roi)

        runs = [
            ("before: load all, window, crop", ".nii.gz", chain_runner(before, files["nii.gz"]), slow_repeats),
            ("before: load all, window, crop", ".nii", chain_runner(before, files["nii"]), slow_repeats),
            ("after: memmap, crop, window", ".nii.gz", chain_runner(after, files["nii.gz"]), slow_repeats),
            ("after: memmap, crop, window", ".nii (prepared)", chain_runner(after, files["nii"]), repeats),
            ("floor: memmap crop + window", ".npy, x fastest (same bytes)", floor_runner(files["npy"]), repeats),
            ("floor: memmap crop + window", ".npy, z fastest", floor_runner(files["npy, z fastest"]), repeats),
        ]
        seconds = _interleaved([(run, n) for _, _, run, n in runs])
        timings = [
            LoaderTiming(chain, store, s, reference=i == len(runs) - 1)
            for i, ((chain, store, _, _), s) in enumerate(zip(runs, seconds))
        ]
    return timings, sizes
