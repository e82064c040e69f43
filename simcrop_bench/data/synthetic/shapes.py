"""Analytic shapes of the chest phantom (datasets.md §7.3): ``inside(x, y, z)`` broadcasts over coordinate arrays.

Frame: LPS patient millimetres, as in :mod:`~simcrop_bench.data.synthetic.phantom`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

FAR = 1.0e4  # "unbounded" extent in mm, finite so that specs stay plain JSON
Vec3 = tuple[float, float, float]

# ---------------------------------------------------------------- shapes: inside() broadcasts over x, y, z


@dataclass(frozen=True)
class Ellipsoid:
    center: Vec3
    semi_axes: Vec3

    def grown(self, mm: float) -> Ellipsoid:
        return Ellipsoid(self.center, tuple(s + mm for s in self.semi_axes))

    def bounds(self) -> list[tuple[float, float]]:
        return [(c - s, c + s) for c, s in zip(self.center, self.semi_axes)]

    def inside(self, x, y, z):
        (cx, cy, cz), (a, b, c) = self.center, self.semi_axes
        return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + ((z - cz) / c) ** 2 <= 1.0


@dataclass(frozen=True)
class EllipticCylinder:
    """Axial ellipse extruded along z; with ``period_mm`` only blocks of ``block_mm`` per period (vertebrae)."""

    center_xy: tuple[float, float]
    semi_xy: tuple[float, float]
    z_range: tuple[float, float] = (-FAR, FAR)
    period_mm: float = 0.0
    block_mm: float = 0.0

    def grown(self, mm: float) -> EllipticCylinder:
        return dataclasses.replace(self, semi_xy=(self.semi_xy[0] + mm, self.semi_xy[1] + mm))

    def bounds(self) -> list[tuple[float, float]]:
        (cx, cy), (a, b) = self.center_xy, self.semi_xy
        return [(cx - a, cx + a), (cy - b, cy + b), self.z_range]

    def inside(self, x, y, z):
        (cx, cy), (a, b) = self.center_xy, self.semi_xy
        in_z = (z >= self.z_range[0]) & (z <= self.z_range[1])
        if self.period_mm:
            in_z = in_z & (np.mod(z, self.period_mm) < self.block_mm)
        return (((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0) & in_z


@dataclass(frozen=True)
class Box:
    lo: Vec3
    hi: Vec3

    def bounds(self) -> list[tuple[float, float]]:
        return list(zip(self.lo, self.hi))

    def inside(self, x, y, z):
        (x0, y0, z0), (x1, y1, z1) = self.lo, self.hi
        return ((x >= x0) & (x <= x1)) & ((y >= y0) & (y <= y1)) & ((z >= z0) & (z <= z1))


@dataclass(frozen=True)
class Tube:
    """Capsule around a polyline (airways, vessels, oesophagus)."""

    points: tuple[Vec3, ...]
    radius: float

    def bounds(self) -> list[tuple[float, float]]:
        p = np.asarray(self.points, float)
        return [(lo - self.radius, hi + self.radius) for lo, hi in zip(p.min(0), p.max(0))]

    def inside(self, x, y, z):
        hit = False
        for a, b in zip(self.points[:-1], self.points[1:]):
            d = [float(q - p) for p, q in zip(a, b)]  # plain floats keep float32 inputs float32
            rx, ry, rz = x - a[0], y - a[1], z - a[2]
            t = np.clip((rx * d[0] + ry * d[1] + rz * d[2]) / (d[0] ** 2 + d[1] ** 2 + d[2] ** 2), 0.0, 1.0)
            hit = hit | ((rx - t * d[0]) ** 2 + (ry - t * d[1]) ** 2 + (rz - t * d[2]) ** 2 <= self.radius**2)
        return hit


@dataclass(frozen=True)
class RibCage:
    """Rib pairs as elliptic arcs just outside ``inner``, sloping down towards the front, open anteriorly."""

    inner: EllipticCylinder
    thickness_mm: float
    z_top: float
    pitch_mm: float
    n_pairs: int
    half_height_mm: float
    slope_mm_per_rad: float
    max_angle_rad: float

    def bounds(self) -> list[tuple[float, float]]:
        x, y, _ = self.inner.grown(self.thickness_mm).bounds()
        lowest = self.z_top - self.pitch_mm * (self.n_pairs - 1) - self.slope_mm_per_rad * self.max_angle_rad
        return [x, y, (lowest - self.half_height_mm, self.z_top + self.half_height_mm)]

    def inside(self, x, y, z):
        (cx, cy), (a, b) = self.inner.center_xy, self.inner.semi_xy
        rho = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2)
        in_ring = (rho >= 1.0) & (rho <= 1.0 + 2 * self.thickness_mm / (a + b))
        angle = np.abs(np.arctan2(x - cx, y - cy))  # 0 posterior (spine), pi anterior (sternum)
        u = (self.z_top - z - self.slope_mm_per_rad * angle) / self.pitch_mm
        n = np.rint(u)
        in_rib = (n >= 0) & (n < self.n_pairs) & (np.abs(u - n) * self.pitch_mm <= self.half_height_mm)
        return in_ring & (angle <= self.max_angle_rad) & in_rib


Shape = Ellipsoid | EllipticCylinder | Box | Tube | RibCage
