"""Fixed sin-cos position tables of the 3D ViT and detection of their variant.

Both variants are defined in ``simcrop-method.md`` §2.6. Positions are enumerated
in token order: grid (h, w, d), h-major, d fastest (§1).

- Variant A, "3-axis": six blocks of ``dim / 6`` columns,
  ``[sin(h·ω), cos(h·ω), sin(w·ω), cos(w·ω), sin(d·ω), cos(d·ω)]`` with
  ``ω_k = 10000^(−k / (dim/6))``.
- Variant B, "2-axis": column ``2k`` is ``sin(h·ω_k)``, column ``2k+1`` is
  ``cos(w·ω_k)`` with ``ω_k = 10000^(−2k / dim)``; there is no depth term.

Kept free of torch so that metadata tools can inspect checkpoints' tables cheaply;
torch tensors are accepted by duck typing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

VARIANTS = ("A", "B")

# Tolerances of the detection rules in §2.6.
_ZERO_TOL = 1e-6  # "row 0 must be zero", "all rows are zero"
_CONSTANT_ALONG_D_TOL = 1e-5
_MATCH_TOL = 1e-4


def _grid_positions(grid: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (h, w, d) coordinates of every token, in token order (d fastest)."""
    h, w, d = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in grid), indexing="ij")
    return h.ravel(), w.ravel(), d.ravel()


def _variant_a(grid: tuple[int, int, int], dim: int) -> np.ndarray:
    if dim % 6:
        raise ValueError(f"variant A needs an embedding dimension divisible by 6, got {dim}")
    block = dim // 6
    omega = 10000.0 ** (-np.arange(block, dtype=np.float64) / block)
    columns = []
    for coord in _grid_positions(grid):
        angles = np.outer(coord, omega)
        columns += [np.sin(angles), np.cos(angles)]
    return np.concatenate(columns, axis=1)


def _variant_b(grid: tuple[int, int, int], dim: int) -> np.ndarray:
    if dim % 2:
        raise ValueError(f"variant B needs an even embedding dimension, got {dim}")
    h, w, _ = _grid_positions(grid)
    omega = 10000.0 ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    table = np.empty((h.size, dim), dtype=np.float64)
    table[:, 0::2] = np.sin(np.outer(h, omega))
    table[:, 1::2] = np.cos(np.outer(w, omega))
    return table


def sincos_pos_embed(grid: tuple[int, int, int], dim: int, variant: str = "B", cls_token: bool = False) -> np.ndarray:
    """Fixed position table of shape ``(prod(grid) [+1], dim)``, float32.

    With ``cls_token`` an all-zero row is prepended for the cls position.
    """
    grid = tuple(int(n) for n in grid)  # type: ignore[assignment]
    if len(grid) != 3 or min(grid) < 1:
        raise ValueError(f"grid must be three positive sizes, got {grid}")
    if variant == "A":
        table = _variant_a(grid, dim)
    elif variant == "B":
        table = _variant_b(grid, dim)
    else:
        raise ValueError(f"unknown position-embedding variant {variant!r} (expected one of {VARIANTS})")
    if cls_token:
        table = np.concatenate([np.zeros((1, dim)), table], axis=0)
    # float32 is what every model stores; the closed form is evaluated in float64 first.
    return table.astype(np.float32)


def _as_2d_array(table: Any) -> np.ndarray:
    if hasattr(table, "detach"):  # torch tensor, possibly bf16/fp16 or on a GPU
        table = table.detach().float().cpu().numpy()
    arr = np.asarray(table, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"a position table must be (N, D) or (1, N, D), got shape {arr.shape}")
    return arr


def _cube_root(n: int) -> int | None:
    root = round(n ** (1 / 3)) if n > 0 else 0
    return root if root > 0 and root**3 == n else None


def _split_cls_and_grid(
    rows: int, grid: tuple[int, int, int] | None
) -> tuple[bool | None, tuple[int, int, int] | None]:
    """Whether row 0 is a cls row, and the patch grid, from the row count (and grid if given)."""
    if grid is not None:
        grid = tuple(int(n) for n in grid)  # type: ignore[assignment]
        n = math.prod(grid)
        if rows == n + 1:
            return True, grid
        if rows == n:
            return False, grid
        raise ValueError(f"a table of {rows} rows does not fit grid {grid} ({n} tokens, optionally +1 cls)")
    side = _cube_root(rows - 1)
    if side is not None:
        return True, (side, side, side)
    side = _cube_root(rows)
    if side is not None:
        return False, (side, side, side)
    return None, None


def detect_pos_embed_variant(table: Any, grid: tuple[int, int, int] | None = None) -> str:
    """Classify a position table as ``"A"``, ``"B"``, ``"absent"`` or ``"unknown"`` (§2.6).

    ``table`` is (N[+1], D) or (1, N[+1], D), numpy or torch; ``None`` means the
    checkpoint has no table (``"absent"``). Without ``grid`` a cubic grid is
    inferred from the row count (with a cls row if N−1 is a cube). A table
    without a cls row (segmentation) skips the row-0 rule.
    """
    if table is None:
        return "absent"
    arr = _as_2d_array(table)
    rows, dim = arr.shape
    has_cls, grid = _split_cls_and_grid(rows, grid)
    if has_cls:
        if np.abs(arr[0]).max() > _ZERO_TOL:
            return "unknown"
        arr = arr[1:]
    if arr.size == 0 or np.abs(arr).max() <= _ZERO_TOL:
        return "absent"
    if grid is None:
        return "unknown"

    by_position = arr.reshape(*grid, dim)
    constant_along_d = np.abs(by_position - by_position[:, :, :1]).max() < _CONSTANT_ALONG_D_TOL
    if dim % 2 == 0 and constant_along_d and np.abs(arr - _variant_b(grid, dim)).max() < _MATCH_TOL:
        return "B"
    if dim % 6 == 0 and np.abs(arr - _variant_a(grid, dim)).max() < _MATCH_TOL:
        return "A"
    return "unknown"
