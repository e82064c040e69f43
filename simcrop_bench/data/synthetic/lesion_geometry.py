"""Shapes and placement helpers for drawing findings into the chest phantom (datasets.md §7.3, §7.5).

Lobes are the lung ellipsoid cut by planes in normalised lung coordinates (u, v, w) = ((x, y, z) − centre) / semi-axes
(LPS: +v posterior, +w superior): the oblique fissure ``w = OBLIQUE_W0 + OBLIQUE_SLOPE · v`` separates the
posterior-inferior lower lobe; on the right the horizontal fissure ``w = HORIZONTAL_W`` splits upper from middle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simcrop_bench.data.synthetic.phantom import LABEL_LEFT_LUNG, LABEL_RIGHT_LUNG, ChestCase, classify_points
from simcrop_bench.data.synthetic.shapes import Ellipsoid, Tube

# Fissure planes in normalised lung coordinates (see module docstring).
OBLIQUE_W0, OBLIQUE_SLOPE, HORIZONTAL_W = -0.15, 0.6, 0.05
LOBE_CENTROIDS = {  # fallback placement (u, v, w), inside each lobe
    "right_upper": (0.0, 0.0, 0.5),
    "right_middle": (0.0, -0.6, -0.3),
    "right_lower": (0.0, 0.5, -0.5),
    "left_upper": (0.0, -0.3, 0.4),
    "left_lower": (0.0, 0.5, -0.5),
}


# ---------------------------------------------------------------- extra shapes (inside() broadcasts like phantom's)


def in_lobe(lobe: str, v, w):
    """Lobe membership from normalised A-P (v, +posterior) and S-I (w, +superior) lung coordinates."""
    lower = w < OBLIQUE_W0 + OBLIQUE_SLOPE * v
    if lobe.endswith("lower"):
        return lower
    if lobe == "right_middle":
        return ~lower & (w < HORIZONTAL_W)
    if lobe == "right_upper":
        return ~lower & (w >= HORIZONTAL_W)
    return ~lower  # left upper lobe, lingula included


@dataclass(frozen=True)
class Lobe:
    lung: Ellipsoid
    lobe: str

    def bounds(self):
        return self.lung.bounds()

    def inside(self, x, y, z):
        (_, cy, cz), (_, b, c) = self.lung.center, self.lung.semi_axes
        return self.lung.inside(x, y, z) & in_lobe(self.lobe, (y - cy) / b, (z - cz) / c)


@dataclass(frozen=True)
class Difference:
    keep: object
    cut: object

    def bounds(self):
        return self.keep.bounds()

    def inside(self, x, y, z):
        return self.keep.inside(x, y, z) & ~self.cut.inside(x, y, z)


@dataclass(frozen=True)
class LatticeSpheres:
    """Unbounded cubic lattice of spheres (emphysema holes); use inside ``within`` of a bounded paint."""

    period_mm: float
    radius_mm: float
    offset: tuple[float, float, float]

    def inside(self, x, y, z):
        p, h = self.period_mm, self.period_mm / 2
        d = [np.mod(q - o, p) - h for q, o in zip((x, y, z), self.offset)]
        return d[0] ** 2 + d[1] ** 2 + d[2] ** 2 <= self.radius_mm**2


@dataclass(frozen=True)
class SheetLattice:
    """Unbounded periodic sheets normal to the given axes (septal lines, fibrotic strands)."""

    period_mm: float
    thickness_mm: float
    offset: tuple[float, float, float]
    axes: tuple[int, ...] = (0, 1, 2)

    def inside(self, x, y, z):
        coords = (x, y, z)
        hit = False
        for axis in self.axes:
            hit = hit | (np.mod(coords[axis] - self.offset[axis], self.period_mm) < self.thickness_mm)
        return hit


@dataclass(frozen=True)
class Checker:
    """3D checkerboard cells of one parity (mosaic attenuation)."""

    period_mm: float
    offset: tuple[float, float, float]
    parity: int

    def inside(self, x, y, z):
        cells = sum(np.floor((q - o) / self.period_mm) for q, o in zip((x, y, z), self.offset))
        return np.mod(cells, 2) == self.parity


@dataclass(frozen=True)
class LesionPaint:
    shape: object  # bounded shape: its bounds() limit the painted window
    hu: float
    finding_value: int  # finding index + 1 (0: no mask)
    within: tuple = ()
    label: int | None = None  # None keeps the lung label underneath
    confine_labels: tuple[int, ...] = ()  # paint only where the anatomy (before lesions) has these labels
    avoid_materials: tuple[str, ...] = ()
    anchor: tuple[float, float, float] | None = None  # centre voxel stamped into the mask if nothing else is


# ---------------------------------------------------------------- placement helpers


def lung_of_side(case: ChestCase, side: str) -> tuple[Ellipsoid, int]:
    return (case.right_lung, LABEL_RIGHT_LUNG) if side == "right" else (case.left_lung, LABEL_LEFT_LUNG)


def lobe_point(case: ChestCase, scene, lobe: str, reach_mm: float, rng: np.random.Generator) -> tuple:
    """A centre whose probes at ±reach along each axis all lie in the lobe and in that lung's parenchyma."""
    lung, label = lung_of_side(case, lobe.split("_")[0])
    c, s = np.asarray(lung.center), np.asarray(lung.semi_axes)
    shape = Lobe(lung, lobe)
    for _ in range(300):
        centre = c + rng.uniform(-0.9, 0.9, 3) * s
        probes = centre + np.vstack([np.zeros(3), np.eye(3) * reach_mm, -np.eye(3) * reach_mm])
        if not np.all(shape.inside(*probes.T)):
            continue
        _, labels = classify_points(scene, case, probes)
        if np.all(labels == label):
            return tuple(float(v) for v in centre)
    return tuple(float(v) for v in c + np.asarray(LOBE_CENTROIDS[lobe]) * s)


def hilum(case: ChestCase, side: str) -> tuple:
    return (case.airway.right_bronchus if side == "right" else case.airway.left_bronchus)[-1]


def sphere(center, radius) -> Ellipsoid:
    return Ellipsoid(tuple(center), (float(radius),) * 3)


def random_offset(rng, span=30.0) -> tuple:
    return tuple(float(v) for v in rng.uniform(0, span, 3))


def aorta_tube(scene, case: ChestCase) -> Tube:
    return next(
        p.shape
        for p in scene
        if isinstance(p.shape, Tube) and p.material == "blood" and p.shape.radius == case.aorta_radius_mm
    )


def lung_paints(case, lobes, value, hu, within=(), shell=False):
    """One paint per lobe, confined to that lung's parenchyma; ``shell`` keeps only the subpleural rim."""
    out = []
    for lobe in lobes:
        lung, label = lung_of_side(case, lobe.split("_")[0])
        extra = (Difference(lung, Ellipsoid(lung.center, tuple(0.72 * a for a in lung.semi_axes))),) if shell else ()
        out.append(LesionPaint(Lobe(lung, lobe), hu, value, within=extra + tuple(within), confine_labels=(label,)))
    return out


def bronchus_tubes(case, scene, lobe, rng, n, wall_r, lumen_r, value):
    side = lobe.split("_")[0]
    label = lung_of_side(case, side)[1]
    start = np.asarray(hilum(case, side))
    out = []
    for _ in range(n):
        end = np.asarray(lobe_point(case, scene, lobe, wall_r, rng))
        pts = (tuple(start + 0.35 * (end - start)), tuple(end))
        out.append(LesionPaint(Tube(pts, wall_r), 40.0, value, confine_labels=(label,), anchor=pts[1]))
        out.append(LesionPaint(Tube(pts, lumen_r), -1000.0, value, confine_labels=(label,)))
    return out
