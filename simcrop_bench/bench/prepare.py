"""``bench prepare``: the cost of ``data prepare`` per CT-RATE-sized volume, against decoding the official file.

``volumes`` copies of one CT-RATE-sized synthetic volume (:mod:`~simcrop_bench.bench.ct_volumes`) form an official
v2 tree (``train_fixed/…/*.nii.gz``, LPS-stored int16 HU, gzip level 6 as nibabel writes by default). Measured:

* **decode**: reading one official file into memory (``nibabel``), the least any preparation must spend;
* **before**: the pre-#16 path — one process, gzip level 6 output;
* **after**: the default store (uncompressed ``.nii``) with 1 and 2 worker processes, and gzip level 1 output.

Every run converts the same volumes into a fresh folder; the cost per volume is wall time ÷ volumes, so worker
start-up is included, and CPU time (this process and its exited workers) ÷ volumes, which is what the work costs on
a machine that other jobs share. Wall-time scaling needs idle cores: compare rows of one run, not runs.
"""

from __future__ import annotations

import gzip
import shutil
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from simcrop_bench.bench.ct_volumes import CT_RATE_SHAPE, ct_sized_volume


@dataclass(frozen=True)
class PrepareTiming:
    what: str
    workers: int
    seconds_per_volume: float  # wall
    cpu_seconds_per_volume: float  # this process and its finished workers, user + system
    bytes_per_volume: int | None = None


def _cpu_seconds() -> float:
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@contextmanager
def _gzip_level(level: int):
    """The NIfTI writer at another gzip level (the before row reproduces the old level 6)."""
    from simcrop_bench.data.formats import nifti

    saved = nifti.GZIP_LEVEL
    nifti.GZIP_LEVEL = level
    try:
        yield
    finally:
        nifti.GZIP_LEVEL = saved


def official_tree(root: Path, volumes: int, shape: tuple[int, int, int]) -> list[Path]:
    """``volumes`` CT-RATE v2 files under ``root`` (one patient each), the same voxels in each."""
    from simcrop_bench.data.formats.nifti import nifti_bytes

    array, affine = ct_sized_volume(shape)
    data = gzip.compress(nifti_bytes(array, affine, "simcrop-bench SYNTHETIC v2 (bench)"), compresslevel=6, mtime=0)
    del array
    paths = []
    for i in range(volumes):
        path = root / "train_fixed" / f"train_{i + 1}" / f"train_{i + 1}_a" / f"train_{i + 1}_a_1.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


def _decode_seconds(paths: list[Path]) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of decoding each file."""
    import nibabel as nib
    import numpy as np

    wall, cpu = [], []
    for path in paths:
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        np.asarray(nib.load(str(path)).dataobj)
        wall.append(time.perf_counter() - start)
        cpu.append(_cpu_seconds() - start_cpu)
    return wall, cpu


def _prepare_seconds(src: Path, dst: Path, store_format: str, workers: int) -> tuple[float, float]:
    """Wall and CPU seconds of one ``data prepare`` run (workers have exited, so their CPU time is counted)."""
    from simcrop_bench.data.prepare.cases import Distribution
    from simcrop_bench.data.prepare.ctrate import convert_ctrate_official_to_simcrop

    start, start_cpu = time.perf_counter(), _cpu_seconds()
    summary = convert_ctrate_official_to_simcrop(
        src, dst, store_format=store_format, distribution=Distribution(workers=workers)
    )
    elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - start_cpu
    assert summary["converted"] == summary["cases"], summary
    return elapsed, cpu


def _store_bytes(dst: Path) -> int:
    files = [p for p in dst.rglob("*.nii*") if p.is_file()]
    return sum(p.stat().st_size for p in files) // max(1, len(files))


def bench_prepare(
    volumes: int = 4, shape: tuple[int, int, int] = CT_RATE_SHAPE, workdir: Path | None = None
) -> list[PrepareTiming]:
    """Decode, before and after rows for ``volumes`` CT-RATE-sized volumes."""
    import simcrop_bench.data.prepare.ctrate  # noqa: F401 - imported before the clock starts, as for every row

    with tempfile.TemporaryDirectory(dir=workdir, prefix="bench-prepare-") as tmp:
        root = Path(tmp)
        paths = official_tree(root / "official", volumes, shape)
        wall, cpu = _decode_seconds(paths)
        rows = [PrepareTiming("decode the official .nii.gz", 1, statistics.median(wall), statistics.median(cpu))]
        runs = [
            ("before: serial, .nii.gz gzip 6", "nii.gz", 1, 6),
            ("after: .nii.gz gzip 1", "nii.gz", 1, 1),
            ("after: .nii (default store)", "nii", 1, 1),
            ("after: .nii (default store)", "nii", 2, 1),
        ]
        for i, (what, store_format, workers, level) in enumerate(runs):
            dst = root / f"out{i}"
            with _gzip_level(level):
                seconds, cpu = _prepare_seconds(root / "official", dst, store_format, workers)
            rows.append(PrepareTiming(what, workers, seconds / volumes, cpu / volumes, _store_bytes(dst)))
            shutil.rmtree(dst)
    return rows
