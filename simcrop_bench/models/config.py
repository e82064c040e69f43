"""Encoder configuration (no torch import: the CLI reads it at start-up)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from simcrop_bench.errors import ConfigError

LAYER_NORM_EPS = 1e-6  # every LayerNorm of the encoder and of the heads on it

# Encoder sizes per profile, shared by every method so that comparisons use one backbone.
PROFILE_SIZES: dict[str, dict[str, Any]] = {
    "paper": {},  # ViT-B/(16,16,8) at 224×224×112: the EncoderConfig defaults
    "demo": {"img_size": (64, 64, 32), "embed_dim": 96, "depth": 4, "num_heads": 4},
}


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

    @staticmethod
    def profile_overrides(profile: str, prefix: str = "encoder.") -> dict[str, Any]:
        """The profile's sizes as config overrides (``encoder.depth`` …) of a method config."""
        return {prefix + key: value for key, value in PROFILE_SIZES.get(profile, {}).items()}

    def validate(self, where: str = "method.encoder") -> None:
        """Raise :class:`ConfigError` for an encoder that cannot be built (heads, patch grid)."""
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"{where}.embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        try:
            self.grid()
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None

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
