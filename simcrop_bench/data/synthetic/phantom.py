"""Deterministic analytic chest phantom and its voxel renderer (datasets.md §7.3, §7.4, §7.8).

A :class:`ChestCase` (JSON-serialisable dataclasses) describes one patient: torso, skeleton,
lungs, airways, heart, great vessels, upper abdomen and LUNA16-style nodules.
:func:`build_scene` turns it into an ordered list of analytic shapes painted with materials
(painter's algorithm: later paints win), and :func:`render_case` samples that scene on a voxel grid.

Frame: LPS patient millimetres (+x patient left, +y posterior, +z superior), origin at the carina
on the midline. Arrays are indexed (x, y, z): voxel (i, j, k) sits at ``origin + (i, j, k) * spacing``,
i.e. a MetaImage volume transposed to (x, y, z), the "LPS-stored" layout.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from simcrop_bench.data.synthetic.shapes import FAR, Box, Ellipsoid, EllipticCylinder, RibCage, Shape, Tube, Vec3

GENERATOR_VERSION = "2"  # 2: CT-RATE valid patients chosen by label coverage; classification split CSVs
# Dataset codes enter every case seed; never renumber, only append.
DATASET_CODES = {"ctrate": 1, "radchestct": 2, "ccccii": 3, "luna16": 4, "btcv": 5}
# Child streams per case, spawned in this order; append only, so existing streams never change.
STREAM_NAMES = ("anatomy", "findings", "acquisition", "noise", "report", "label_noise")
# Raw LUNA16 ``seg-lungs`` convention; main bronchi count as trachea (extrapulmonary airway lumen).
LABEL_LEFT_LUNG, LABEL_RIGHT_LUNG, LABEL_TRACHEA = 3, 4, 5
SUPERSAMPLE = 2  # sub-samples per axis for partial-volume averaging


def case_rngs(root_seed: int, dataset_code: int, case_index: int) -> dict[str, np.random.Generator]:
    """Independent generators per purpose for one case (no global RNG state)."""
    children = np.random.SeedSequence([root_seed, dataset_code, case_index]).spawn(len(STREAM_NAMES))
    return {name: np.random.default_rng(child) for name, child in zip(STREAM_NAMES, children)}


# ---------------------------------------------------------------- the case spec


@dataclass(frozen=True)
class Torso:
    lr_mm: float  # left-right diameter of the skin ellipse
    ap_mm: float  # anterior-posterior diameter
    fat_mm: float  # skin + subcutaneous fat
    muscle_mm: float  # chest-wall muscle (thicker posteriorly, see thoracic_cavity)
    posterior_y_mm: float  # y of the posterior skin (the patient lies on the table here)


@dataclass(frozen=True)
class Airway:
    trachea_radius_mm: float
    wall_mm: float
    right_bronchus: tuple[Vec3, ...]  # polyline from the carina (shorter, steeper, wider)
    left_bronchus: tuple[Vec3, ...]


@dataclass(frozen=True)
class Wave:
    """One plane wave of the smooth lung texture."""

    wavevector: Vec3  # rad/mm
    phase: float
    amplitude_hu: float


@dataclass(frozen=True)
class Nodule:
    center_mm: Vec3  # LPS world
    diameter_mm: float
    hu: float
    side: str  # "left" | "right"


@dataclass(frozen=True)
class Acquisition:
    noise_hu: float
    fov_shift_mm: Vec3  # patient position relative to the nominal field of view
    fov_padding_hu: int | None  # value outside a circular field of view, or None for no circle


@dataclass(frozen=True)
class ChestCase:
    seed: tuple[int, int, int]  # [root_seed, dataset_code, case_index]
    torso: Torso
    spine_y_mm: float  # centre of the vertebral bodies
    right_lung: Ellipsoid
    left_lung: Ellipsoid
    heart: Ellipsoid
    aorta_radius_mm: float
    airway: Airway
    liver: Ellipsoid
    stomach: Ellipsoid
    spleen: Ellipsoid
    hu: dict[str, float]  # material name -> HU; "air" must come first (material id 0)
    texture: tuple[Wave, ...]
    dependent_density_hu: float  # posterior (gravity-dependent) lung is denser by up to this much
    nodules: tuple[Nodule, ...]
    acquisition: Acquisition
    generator_version: str = GENERATOR_VERSION
    synthetic: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ChestCase:
        return from_plain(cls, data)


def from_plain(tp, value):
    """Rebuild dataclasses and tuples from JSON-style dicts and lists, following the type hints."""
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(
            **{f.name: from_plain(hints[f.name], value[f.name]) for f in dataclasses.fields(tp) if f.name in value}
        )
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(from_plain(t, v) for t, v in zip(items, value))
    return value


def thoracic_cavity(torso: Torso) -> EllipticCylinder:
    """Inner border of the chest wall; shifted forward so that the back muscles are thicker."""
    a, b = torso.lr_mm / 2, torso.ap_mm / 2
    back = 10.0
    wall = torso.fat_mm + torso.muscle_mm
    return EllipticCylinder((0.0, torso.posterior_y_mm - b - back), (a - wall, b - wall - back))


def sample_chest_case(root_seed: int, dataset_code: int, case_index: int) -> ChestCase:
    """Draw a plausible adult chest with 0-4 LUNA16-style nodules; a pure function of its three arguments."""
    rngs = case_rngs(root_seed, dataset_code, case_index)
    r = rngs["anatomy"]

    def u(lo: float, hi: float) -> float:  # plain floats keep the spec JSON-ready and round-trip exact
        return float(r.uniform(lo, hi))

    spine_y = u(40, 50)
    torso = Torso(u(300, 360), u(200, 260), u(8, 22), u(9, 14), spine_y + u(60, 70))
    cav = thoracic_cavity(torso)
    (_, ccy), (ca, cb) = cav.center_xy, cav.semi_xy
    lung_y, lung_b = ccy + 0.1 * cb, 0.98 * cb
    right_z, right_c = u(-40, -28), u(120, 135)
    right = Ellipsoid((-0.55 * ca, lung_y, right_z), (0.5 * ca * u(1.0, 1.06), lung_b, right_c))
    left = Ellipsoid(
        (0.56 * ca, lung_y, right_z - u(5, 12)), (0.46 * ca * u(1.0, 1.06), 0.96 * lung_b, right_c * u(0.97, 1.02))
    )
    hs = u(0.9, 1.1)
    heart = Ellipsoid((0.18 * ca, ccy - 0.3 * cb, u(-80, -65)), (0.4 * ca * hs, 0.55 * cb * hs, u(50, 60)))
    tr = u(7.5, 10.0)
    airway = Airway(
        tr,
        u(2.0, 3.0),
        right_bronchus=((0.0, 0.0, 0.0), (-22.0, 4.0, -18.0), (-40.0 - u(0, 6), 8.0, -30.0 - u(0, 6))),
        left_bronchus=((0.0, 0.0, 0.0), (30.0, 6.0, -22.0), (50.0 + u(0, 6), 10.0, -38.0 - u(0, 6))),
    )
    right_base, left_base = right_z - right_c, left.center[2] - left.semi_axes[2]
    liver = Ellipsoid((-0.35 * ca, ccy + 0.1 * cb, right_base - u(40, 50)), (0.7 * ca, 0.95 * cb, u(75, 85)))
    stomach = Ellipsoid((0.45 * ca, ccy - 0.1 * cb, left_base - u(15, 25)), (0.35 * ca, 0.5 * cb, u(40, 50)))
    spleen = Ellipsoid((0.68 * ca, ccy + 0.55 * cb, left_base - u(25, 35)), (0.2 * ca, 0.45 * cb, u(45, 55)))
    hu = {
        "air": -1000.0,
        "fat": u(-110, -90),
        "muscle": u(40, 60),
        "soft_tissue": 40.0,
        "disc": 80.0,
        "bone_cortical": u(800, 1200),
        "bone_cancellous": u(250, 400),
        "rib": u(500, 900),
        "parenchyma": u(-870, -830),
        "heart": u(30, 45),
        "blood": 40.0,
        "liver": u(55, 65),
        "spleen": u(45, 55),
        "fluid": 10.0,
        "table": 200.0,
    }
    texture = []
    for _ in range(4):
        direction = r.normal(size=3)
        k = 2 * np.pi / u(40, 120) * direction / np.linalg.norm(direction)
        texture.append(Wave(tuple(float(v) for v in k), u(0, 2 * np.pi), u(5, 12)))
    a = rngs["acquisition"]
    shift = tuple(float(v) for v in a.uniform(-1, 1, 3) * (10, 10, 15))
    acquisition = Acquisition(float(a.uniform(10, 30)), shift, [None, -2000, -3024][int(a.integers(3))])
    case = ChestCase(
        seed=(int(root_seed), int(dataset_code), int(case_index)),
        torso=torso,
        spine_y_mm=spine_y,
        right_lung=right,
        left_lung=left,
        heart=heart,
        aorta_radius_mm=u(12.5, 15.0),
        airway=airway,
        liver=liver,
        stomach=stomach,
        spleen=spleen,
        hu=hu,
        texture=tuple(texture),
        dependent_density_hu=u(15, 35),
        nodules=(),
        acquisition=acquisition,
    )
    return dataclasses.replace(case, nodules=_sample_nodules(case, rngs["findings"]))


def _sample_nodules(case: ChestCase, rng: np.random.Generator, margin_mm: float = 4.0) -> tuple[Nodule, ...]:
    """0-4 nodules of 3-30 mm, each wholly inside one lung's parenchyma and apart from the others."""
    count = int(rng.choice(5, p=[0.3, 0.35, 0.2, 0.1, 0.05]))
    scene = build_scene(case)
    parenchyma = list(case.hu).index("parenchyma")
    nodules: list[Nodule] = []
    for _ in range(count):
        diameter = float(np.clip(rng.lognormal(np.log(7.0), 0.55), 3.0, 30.0))
        side = "right" if rng.random() < 0.55 else "left"
        lung = case.right_lung if side == "right" else case.left_lung
        label = LABEL_RIGHT_LUNG if side == "right" else LABEL_LEFT_LUNG
        reach = diameter / 2 + margin_mm
        for _attempt in range(200):
            center = np.asarray(lung.center) + rng.uniform(-1, 1, 3) * np.asarray(lung.semi_axes) * 0.85
            probes = center + np.vstack([np.zeros(3), np.eye(3) * reach, -np.eye(3) * reach])
            mats, labels = classify_points(scene, case, probes)
            apart = all(np.linalg.norm(center - n.center_mm) > (diameter + n.diameter_mm) / 2 + 3 for n in nodules)
            if apart and np.all(mats == parenchyma) and np.all(labels == label):
                nodules.append(Nodule(tuple(float(c) for c in center), diameter, float(rng.uniform(-20, 60)), side))
                break
    return tuple(nodules)


# ---------------------------------------------------------------- scene


class Paint(NamedTuple):
    shape: Shape
    material: str
    label: int | None = None  # None keeps the label underneath (nodules stay lung)
    within: tuple[Shape, ...] = ()  # paint only where all of these also hold

    def mask(self, x, y, z):
        mask = self.shape.inside(x, y, z)
        for other in self.within:
            mask = mask & other.inside(x, y, z)
        return mask


def build_scene(case: ChestCase) -> list[Paint]:
    """Ordered paints (later wins). Mediastinal structures carry label 0 so that they cut the lungs."""
    t, sy = case.torso, case.spine_y_mm
    a, b = t.lr_mm / 2, t.ap_mm / 2
    body_cy = t.posterior_y_mm - b
    cav = thoracic_cavity(t)
    (_, ccy), (_, cb) = cav.center_xy, cav.semi_xy
    h, hc = case.heart.center, case.heart.semi_axes
    dy = sy - 45.0  # great vessels follow the spine's A-P position
    aw = case.airway
    lungs = ((case.right_lung, LABEL_RIGHT_LUNG), (case.left_lung, LABEL_LEFT_LUNG))
    scene = [
        Paint(EllipticCylinder((0.0, body_cy), (a, b)), "fat", 0),
        Paint(EllipticCylinder((0.0, body_cy), (a - t.fat_mm, b - t.fat_mm)), "muscle"),
        Paint(Box((-FAR, t.posterior_y_mm + 12, -FAR), (FAR, t.posterior_y_mm + 20, FAR)), "table"),
        Paint(cav, "fat"),  # mediastinal fat fills whatever the organs leave
        Paint(RibCage(cav.grown(1.0), 8.0, 130.0, 28.0, 11, 5.0, 25.0, 2.4), "rib"),
        Paint(EllipticCylinder((0.0, ccy - cb - 6.0), (14.0, 6.0), (-130.0, 50.0)), "rib"),  # sternum
        Paint(case.spleen, "spleen"),
        Paint(case.liver, "liver"),
        Paint(case.stomach, "fluid"),
        Paint(
            case.stomach,
            "air",
            within=(Box((-FAR, -FAR, -FAR), (FAR, case.stomach.center[1] - 0.4 * case.stomach.semi_axes[1], FAR)),),
        ),
    ]
    for lung, _ in lungs:  # diaphragm: a muscle rim under each lung dome
        below = Box((-FAR, -FAR, -FAR), (FAR, FAR, lung.center[2]))
        scene.append(Paint(lung.grown(6.0), "muscle", within=(cav, below)))
    scene += [Paint(lung, "parenchyma", label, within=(cav.grown(-3.0),)) for lung, label in lungs]
    scene += [
        Paint(EllipticCylinder((5.0, ccy - 0.2 * cb), (22.0, 0.8 * cb)), "fat", 0),  # mediastinum
        Paint(case.heart, "heart", 0),
        Paint(
            Tube(
                (
                    (-12.0, h[1] + 5, h[2] + 0.6 * hc[2]),
                    (-16.0, -32.0 + dy, 30.0),
                    (0.0, -34.0 + dy, 46.0),
                    (22.0, -24.0 + dy, 50.0),
                    (34.0, -2.0 + dy, 44.0),
                    (30.0, 20.0 + dy, 30.0),
                    (26.0, 30.0 + dy, 10.0),
                    (26.0, 32.0 + dy, -150.0),
                    (10.0, 26.0 + dy, -260.0),
                ),
                case.aorta_radius_mm,
            ),
            "blood",
            0,
        ),
        Paint(Tube(((-30.0, -25.0 + dy, 90.0), (-28.0, -22.0 + dy, -20.0)), 9.0), "blood", 0),  # superior vena cava
        Paint(
            Tube(((h[0] - 5, h[1] - 10, h[2] + 0.7 * hc[2]), (8.0, -30.0 + dy, -12.0), (18.0, -16.0 + dy, -6.0)), 12.0),
            "blood",
            0,
        ),
        Paint(
            Tube(((18.0, -16.0 + dy, -6.0), (-10.0, -14.0 + dy, -12.0), (-40.0, -4.0, -22.0)), 8.0), "blood", 0
        ),  # right PA
        Paint(Tube(((18.0, -16.0 + dy, -6.0), (42.0, -2.0, -10.0)), 8.0), "blood", 0),  # left PA
        Paint(
            Tube(((6.0, sy - 24.0, FAR), (6.0, sy - 24.0, -150.0), (20.0, sy - 30.0, -200.0)), 7.0), "soft_tissue", 0
        ),
        Paint(Tube(((6.0, sy - 24.0, FAR), (6.0, sy - 24.0, -150.0)), 2.0), "air", 0),  # oesophageal air
    ]
    airways = [((0.0, 0.0, FAR), (0.0, 0.0, 0.0)), aw.right_bronchus, aw.left_bronchus]
    radii = [aw.trachea_radius_mm, 0.7 * aw.trachea_radius_mm, 0.62 * aw.trachea_radius_mm]
    scene += [Paint(Tube(p, r + aw.wall_mm), "soft_tissue", 0) for p, r in zip(airways, radii)]
    scene += [Paint(Tube(p, r), "air", LABEL_TRACHEA) for p, r in zip(airways, radii)]
    vertebra = dict(period_mm=30.0, block_mm=24.0)
    scene += [
        Paint(EllipticCylinder((0.0, sy), (20.0, 16.0)), "disc", 0),
        Paint(EllipticCylinder((0.0, sy), (20.0, 16.0), **vertebra), "bone_cortical"),
        Paint(EllipticCylinder((0.0, sy), (17.0, 13.0), **vertebra), "bone_cancellous"),
        Paint(EllipticCylinder((0.0, sy + 28.0), (14.0, 13.0), **vertebra), "bone_cortical", 0),  # neural arch
        Paint(EllipticCylinder((0.0, sy + 28.0), (8.0, 8.0)), "soft_tissue", 0),  # spinal canal
        Paint(EllipticCylinder((0.0, sy + 50.0), (5.0, 12.0), **vertebra), "bone_cortical", 0),  # spinous process
    ]
    scene += [
        Paint(Ellipsoid(n.center_mm, (n.diameter_mm / 2,) * 3), f"nodule_{i}") for i, n in enumerate(case.nodules)
    ]
    return scene


def material_table(case: ChestCase) -> tuple[list[str], np.ndarray]:
    """Material names (index = id, "air" = 0) and their HU, nodules appended as their own materials."""
    names = list(case.hu) + [f"nodule_{i}" for i in range(len(case.nodules))]
    hu = [case.hu[n] for n in case.hu] + [n.hu for n in case.nodules]
    return names, np.asarray(hu, np.float32)


def classify_points(scene: list[Paint], case: ChestCase, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Material ids and raw labels of the scene at world points (N, 3), without partial volume."""
    ids = {n: i for i, n in enumerate(material_table(case)[0])}
    x, y, z = (np.asarray(points, float)[:, i] for i in range(3))
    mats, labels = np.zeros(len(x), np.uint8), np.zeros(len(x), np.uint8)
    for paint in scene:
        mask = paint.mask(x, y, z)
        mats[mask] = ids[paint.material]
        if paint.label is not None:
            labels[mask] = paint.label
    return mats, labels


# ---------------------------------------------------------------- rendering


@dataclass(frozen=True)
class VoxelGrid:
    shape: tuple[int, int, int]  # (nx, ny, nz)
    spacing: Vec3  # mm
    origin: Vec3  # LPS world position of the centre of voxel (0, 0, 0)

    def axes(self, supersample: int = 1) -> list[np.ndarray]:
        """World coordinates along x, y, z; with supersampling, sub-voxel centres (voxel-major order)."""
        out = []
        for n, s, o in zip(self.shape, self.spacing, self.origin):
            f = (np.arange(n * supersample) + 0.5) / supersample - 0.5
            out.append((o + f * s).astype(np.float32))
        return out


@dataclass
class RenderedCase:
    hu: np.ndarray  # int16 (x, y, z)
    labels: np.ndarray  # uint8 (x, y, z), raw LUNA16 values 0/3/4/5
    nodules: list[dict]  # nodules whose centre lies in the grid: LPS world mm + diameter, annotations.csv style


def paint_scene(scene: list[Paint], material_ids: dict[str, int], grid: VoxelGrid) -> tuple[np.ndarray, np.ndarray]:
    """Material ids and labels of ``scene`` on the grid supersampled SUPERSAMPLE× per axis (later paints win)."""
    fx, fy, fz = grid.axes(SUPERSAMPLE)
    fine_shape = (len(fx), len(fy), len(fz))
    mats, labels = np.zeros(fine_shape, np.uint8), np.zeros(fine_shape, np.uint8)
    for paint in scene:
        # Each paint touches only the sub-block of its bounding box: most structures are small.
        sl = tuple(slice(*np.searchsorted(ax, lim)) for ax, lim in zip((fx, fy, fz), paint.shape.bounds()))
        mask = paint.mask(fx[sl[0], None, None], fy[None, sl[1], None], fz[None, None, sl[2]])
        np.copyto(mats[sl], material_ids[paint.material], where=mask)
        if paint.label is not None:
            np.copyto(labels[sl], paint.label, where=mask)
    return mats, labels


def render_case(case: ChestCase, grid: VoxelGrid) -> RenderedCase:
    """Sample the scene with 2x supersampling per axis, add lung texture and acquisition noise."""
    names, lut = material_table(case)
    ids = {n: i for i, n in enumerate(names)}
    mats, labels = paint_scene(build_scene(case), ids, grid)

    hu = block_mean(lut[mats])
    x, y, z = grid.axes()
    hu += block_mean(mats == ids["parenchyma"]) * lung_texture(
        case, x[:, None, None], y[None, :, None], z[None, None, :]
    )
    hu += grid_noise(case, grid.shape)
    if case.acquisition.fov_padding_hu is not None:
        cx, cy = x.mean(), y.mean()
        radius = min(x.max() - x.min(), y.max() - y.min()) / 2
        outside = (x[:, None] - cx) ** 2 + (y[None, :] - cy) ** 2 > radius**2
        hu[outside] = case.acquisition.fov_padding_hu
    hu_int = np.clip(np.rint(hu), -3024, 3071).astype(np.int16)

    lo = [o - s / 2 for o, s in zip(grid.origin, grid.spacing)]
    hi = [o + (n - 0.5) * s for o, n, s in zip(grid.origin, grid.shape, grid.spacing)]
    nodules = [
        {
            "coordX": n.center_mm[0],
            "coordY": n.center_mm[1],
            "coordZ": n.center_mm[2],
            "diameter_mm": n.diameter_mm,
            "side": n.side,
        }
        for n in case.nodules
        if all(low <= c <= high for low, c, high in zip(lo, n.center_mm, hi))
    ]
    return RenderedCase(hu_int, block_majority(labels, (0, LABEL_LEFT_LUNG, LABEL_RIGHT_LUNG, LABEL_TRACHEA)), nodules)


def grid_noise(case: ChestCase, shape: tuple[int, int, int]) -> np.ndarray:
    """White Gaussian acquisition noise from the case's own noise stream."""
    rng = case_rngs(*case.seed)["noise"]
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(case.acquisition.noise_hu)


def lung_texture(case: ChestCase, x, y, z) -> np.ndarray:
    """Smooth low-frequency HU variation plus a gravity-dependent (posterior) density gradient."""
    lungs = (case.right_lung, case.left_lung)
    y_mid = np.mean([lung.center[1] for lung in lungs])
    half_ap = np.mean([lung.semi_axes[1] for lung in lungs])
    tex = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), np.float32)
    tex += case.dependent_density_hu * np.clip((y - y_mid) / half_ap, -1.0, 1.0)
    for w in case.texture:
        kx, ky, kz = w.wavevector
        tex = tex + w.amplitude_hu * np.cos(kx * x + ky * y + kz * z + w.phase)
    return tex


def block_sum(a: np.ndarray) -> np.ndarray:
    """Sum over each voxel's SUPERSAMPLE**3 sub-samples (strided slices: much faster than reshape + reduce)."""
    s = SUPERSAMPLE
    a = sum(a[i::s] for i in range(s))
    a = sum(a[:, i::s] for i in range(s))
    return sum(a[:, :, i::s] for i in range(s))


def block_mean(a: np.ndarray) -> np.ndarray:
    return block_sum(a.astype(np.float32, copy=False)) / np.float32(SUPERSAMPLE**3)


def block_majority(labels: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    """Most frequent label among each voxel's sub-samples (ties go to the earlier value, i.e. background)."""
    counts = np.stack([block_sum((labels == v).view(np.uint8)) for v in values])
    return np.asarray(values, np.uint8)[np.argmax(counts, axis=0)]
