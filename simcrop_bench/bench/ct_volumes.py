"""CT-RATE-sized synthetic volumes for the data-path benchmarks (``bench loader``, ``bench prepare``).

A full-resolution phantom render of 512 × 512 × 300 voxels would need several GB (the twins supersample 2× per
axis), so the CT-RATE twin's chest is rendered on a grid 4× coarser per axis, interpolated up (trilinear) and
given its acquisition noise at full resolution: anatomy-like structure plus per-voxel noise, which is what sets
the gzip ratio and so the decode cost. Peak memory is about 2.5× the int16 volume's size as float32.
"""

from __future__ import annotations

import numpy as np

from simcrop_bench.data.synthetic.ctrate import plan_ctrate_twin, scan_case, scan_grid
from simcrop_bench.data.synthetic.lesions import render_clean

CT_RATE_SHAPE = (512, 512, 300)  # a typical CT-RATE volume (x, y, z)
CT_RATE_SPACING = (0.7, 0.7, 1.0)  # mm
PAPER_ROI = (224, 224, 112)


def ct_sized_volume(
    shape: tuple[int, int, int] = CT_RATE_SHAPE,
    spacing: tuple[float, float, float] = CT_RATE_SPACING,
    seed: int = 0,
    noise_hu: float = 15.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(int16 HU array stored LPS like CT-RATE v2, its LPS-stored nibabel affine)."""
    from scipy import ndimage

    from simcrop_bench.data.formats.nifti import lps_nifti_affine

    plan = plan_ctrate_twin(2, seed)[0]
    case, findings = scan_case(plan, seed)
    coarse_shape = tuple(max(8, n // 4) for n in shape)
    coarse_spacing = tuple(s * n / c for s, n, c in zip(spacing, shape, coarse_shape))
    grid = scan_grid(case, coarse_shape, coarse_spacing)
    coarse = render_clean(case, findings, grid).hu.astype(np.float32)
    hu = ndimage.zoom(coarse, [n / c for n, c in zip(shape, coarse_shape)], order=1, prefilter=False)
    hu = hu[: shape[0], : shape[1], : shape[2]]
    rng = np.random.default_rng(seed)
    for z in range(hu.shape[2]):  # slice by slice: no second full-size float array
        hu[:, :, z] += rng.standard_normal(hu.shape[:2], dtype=np.float32) * np.float32(noise_hu)
    volume = np.clip(np.rint(hu, out=hu), -1024, 3071).astype(np.int16)
    return volume, lps_nifti_affine(spacing, grid.origin)
