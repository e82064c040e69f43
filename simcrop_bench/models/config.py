"""Encoder configuration (no torch import: the CLI reads it at start-up)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

LAYER_NORM_EPS = 1e-6  # every LayerNorm of the encoder and of the heads on it


@dataclass
class EncoderConfig:
    """The 3D ViT shared by every method (``simcrop-method.md`` §2.1).

    ``img_size`` is the pretraining / linear-probe input (X, Y, Z) in RAS voxel
    order; segmentation recomputes the position table for its own ROI grid.
    """

    img_size: tuple[int, int, int] = (224, 224, 112)
    patch_size: tuple[int, int, int] = (16, 16, 8)
    in_chans: int = 1
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    pos_embed: Literal["A", "B"] = "B"
    drop_path_rate: float = 0.0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EncoderConfig:
        """From JSON-like values (lists for the size tuples); keys that are not fields are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names})

    def grid(self, spatial: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
        """Patch grid (h, w, d) for an input of ``spatial`` voxels (default ``img_size``)."""
        spatial = tuple(spatial or self.img_size)
        for s, p in zip(spatial, self.patch_size):
            if s % p:
                raise ValueError(f"input size {spatial} is not divisible by patch size {self.patch_size}")
        return tuple(s // p for s, p in zip(spatial, self.patch_size))  # type: ignore[return-value]
