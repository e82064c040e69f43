"""MONAI transform chains for whole-volume inputs: SimCroP pretraining (``simcrop-method.md`` §5.3)
and linear probing (``protocol.md`` §6.2), which share all steps but the probe's Gaussian noise.

The reference reads the voxel array without its affine, so stores must already be RAS at the
intended spacing; :class:`AssertRASd` checks that instead of silently relying on it (§5.2).

The chains crop before they window: the window is element-wise, so the output is bit-identical to the reference
order (window, then crop) while only the crop is converted. :class:`LoadVolumed` keeps the stored dtype and, for the
prepared store's uncompressed NIfTI, a memory map, so the crops read only their own bytes from disk.
"""

from __future__ import annotations

from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai import transforms as mt
from monai.data import MetaTensor
from monai.transforms import MapTransform

from simcrop_bench.data.formats.stored import stored_volume
from simcrop_bench.data.intensity import HU_WINDOW
from simcrop_bench.errors import DataError


class AssertRASd(MapTransform):
    """Refuse a loaded volume whose affine is not RAS (or, if given, not at ``spacing``)."""

    def __init__(self, keys, spacing: tuple[float, float, float] | None = None):
        super().__init__(keys)
        self.spacing = spacing

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        for key in self.key_iterator(data):
            affine = np.asarray(data[key].affine)
            source = data[key].meta.get("filename_or_obj", key)
            codes = "".join(nib.aff2axcodes(affine))
            if codes != "RAS":
                raise DataError(f"{source}: stored with axis codes {codes}, expected RAS (run `data prepare`)")
            if self.spacing is not None:
                zooms = tuple(round(float(z), 3) for z in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
                if not np.allclose(zooms, self.spacing, atol=1e-3):
                    raise DataError(f"{source}: spacing {zooms} mm, expected {tuple(self.spacing)}")
        return data


class LoadVolumed(MapTransform):
    """Open a stored NIfTI volume as a channel-first ``MetaTensor`` in its stored dtype, without reading it.

    Uncompressed NIfTI stays a copy-on-write memory map (nibabel ``mmap="c"``), so later crops are views and
    only the window reads voxels; ``.nii.gz`` is decoded whole, as before. The path is resolved with
    :func:`~simcrop_bench.data.formats.stored.stored_volume`, so reference and prepared stores load alike.
    """

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        out = dict(data)
        for key in self.key_iterator(out):
            path = stored_volume(out[key])
            image = nib.load(str(path), mmap="c")
            array = np.asanyarray(image.dataobj)  # a memmap unless gzip-compressed or scaled (scl_slope)
            if array.ndim != 3:
                raise ValueError(f"expected a 3-D volume, got shape {array.shape}")
            tensor = torch.from_numpy(array)[None]
            out[key] = MetaTensor(tensor, affine=torch.as_tensor(image.affine), meta={"filename_or_obj": str(path)})
        return out


def _c_order(values: torch.Tensor, tile: int = 16) -> torch.Tensor:
    """A C-contiguous copy of a crop view in its stored dtype. NIfTI stores x fastest: the crop of a memory map is
    gathered in that order first (a sequential read), then transposed while still int16 (half the bytes of float32),
    ``tile`` slices of the last axis at a time so that each piece of the transposing copy stays in cache; this is
    about 2x faster than one transposing gather straight from the map (``bench loader``)."""
    if values.is_contiguous():
        return values
    order = sorted(range(values.ndim), key=lambda d: values.stride(d), reverse=True)
    inverse = sorted(range(values.ndim), key=order.__getitem__)
    dense = values.permute(order).contiguous().permute(inverse)
    out = torch.empty(values.shape, dtype=values.dtype)
    for start in range(0, values.shape[-1], tile):
        out[..., start : start + tile] = dense[..., start : start + tile]
    return out


class Windowd(MapTransform):
    """The HU window (``protocol.md`` §6.2) to [-1, 1] as float32, computed as MONAI's ``ScaleIntensityRanged``
    computes it — subtract, divide, scale, shift, clip, in that order, so the values are bit-identical — but in
    place on one float32 copy of the crop: MONAI's version sends every step through ``MetaTensor`` dispatch and
    allocates per step, which cost more than the whole floor on a paper-size crop (``bench loader``)."""

    def __init__(self, keys, window: tuple[float, float] = HU_WINDOW, out_range: tuple[float, float] = (-1.0, 1.0)):
        super().__init__(keys)
        self.window, self.out_range = window, out_range

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        (lo, hi), (b_min, b_max) = self.window, self.out_range
        out = dict(data)
        for key in self.key_iterator(out):
            image = out[key]
            values = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
            x = _c_order(values).to(torch.float32, copy=True)
            x.sub_(lo).div_(hi - lo).mul_(b_max - b_min).add_(b_min).clamp_(b_min, b_max)
            if isinstance(image, MetaTensor):
                x = MetaTensor(x, meta=image.meta, applied_operations=image.applied_operations)
            out[key] = x
        return out


def window() -> Windowd:
    return Windowd(keys="image")


def _load(transpose_dhw: bool, spacing, assert_ras: bool = True) -> list:
    steps: list = [LoadVolumed(keys="image")]
    if transpose_dhw:  # CC-CCII images_resized are stored (D, H, W)
        steps.append(mt.Transposed(keys="image", indices=(0, 2, 3, 1)))
    elif assert_ras:
        steps.append(AssertRASd(keys="image", spacing=spacing))
    return steps


def training_transforms(
    roi: tuple[int, int, int],
    *,
    gaussian_noise: bool,
    transpose_dhw: bool = False,
    spacing: tuple[float, float, float] | None = None,
    assert_ras: bool = True,
) -> mt.Compose:
    """Load → random 80–100 % crop → crop to ≤ roi → window → reflect-pad to roi → flips → shift (→ noise).

    ``assert_ras=False`` takes the stored array as it is, as the reference does for layouts that are not
    stored RAS (LUNA16's ``images/`` keep their MetaImage LPS affines).
    """
    steps = _load(transpose_dhw, spacing, assert_ras) + [
        mt.RandScaleCropd(keys="image", roi_scale=0.8, max_roi_scale=1.0, random_center=True, random_size=True),
        mt.RandSpatialCropd(keys="image", roi_size=roi, random_center=True, random_size=False),
        window(),
        mt.SpatialPadd(keys="image", spatial_size=roi, mode="reflect"),
        *[mt.RandFlipd(keys="image", prob=0.2, spatial_axis=axis) for axis in range(3)],
        mt.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.1),
    ]
    if gaussian_noise:  # probe only (protocol.md §6.2 step 8): std drawn from [0, 0.1]
        steps.append(mt.RandGaussianNoised(keys="image", prob=0.2, mean=0.0, std=0.1, sample_std=True))
    return mt.Compose(steps)


def evaluation_transforms(
    roi: tuple[int, int, int],
    *,
    transpose_dhw: bool = False,
    spacing: tuple[float, float, float] | None = None,
    assert_ras: bool = True,
) -> mt.Compose:
    """Load → centre crop to ≤ roi → window → reflect-pad to roi."""
    return mt.Compose(
        _load(transpose_dhw, spacing, assert_ras)
        + [
            mt.CenterSpatialCropd(keys="image", roi_size=roi),
            window(),
            mt.SpatialPadd(keys="image", spatial_size=roi, mode="reflect"),
        ]
    )


def evaluation_transforms_with_mask(roi: tuple[int, int, int], mask_key: str = "mask") -> mt.Compose:
    """:func:`evaluation_transforms` on ``image`` and the same geometry on a label volume ``mask_key`` stored on the
    image's grid (RAS); the mask is padded with 0 (no finding) where the image is reflect-padded."""
    both = ["image", mask_key]
    lo, hi = HU_WINDOW
    return mt.Compose(
        [
            mt.LoadImaged(keys=both, image_only=True),
            mt.EnsureChannelFirstd(keys=both, channel_dim="no_channel"),
            AssertRASd(keys=both),
            mt.ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=-1.0, b_max=1.0, clip=True),
            mt.CenterSpatialCropd(keys=both, roi_size=roi),
            mt.SpatialPadd(keys="image", spatial_size=roi, mode="reflect"),
            mt.SpatialPadd(keys=mask_key, spatial_size=roi),
        ]
    )


def apply_chain(chain: mt.Compose, item: dict[str, Any]) -> dict[str, Any]:
    """Run ``chain`` on ``item``; MONAI wraps errors in RuntimeError, so unwrap ours (and name the file)."""
    try:
        return chain(item)
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, DataError):
                raise cause from None
            cause = cause.__cause__
        raise DataError(f"{item.get('image')}: cannot be loaded ({type(exc).__name__}: {exc})") from exc
