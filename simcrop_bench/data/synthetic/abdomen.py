"""Deterministic analytic abdominal phantom (portal-venous phase) with the 13 BTCV organs (datasets.md §7.9).

An :class:`AbdomenCase` (JSON-serialisable dataclasses) describes one patient: torso, lumbar spine and lower
ribs, lung bases, bowel loops and colon with air, and the 13 labelled organs. :func:`build_abdomen_scene`
turns it into ordered paints (later paints win) and :func:`render_abdomen` samples them on a voxel grid
with 2× supersampling (partial volume), a majority-vote label map and Gaussian acquisition noise.

Frame: LPS patient millimetres (+x patient LEFT, +y posterior, +z superior); origin on the midline at the
body's A-P centre, at about the level of the renal hila. The liver, gallbladder, IVC, right kidney and right
adrenal lie at negative x; spleen, stomach, left kidney and left adrenal at positive x. Arrays are indexed
(x, y, z) like the chest phantom's ("LPS-stored").

The phantom is sized for coarse grids: thin structures (adrenals, esophagus, veins) are drawn at least
about 10 mm thick so that every organ keeps voxels at about 6 mm in-plane spacing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

# The chest phantom's shapes, grid and supersampling helpers are reused as they are (same package).
from simcrop_bench.data.synthetic.phantom import (
    DATASET_CODES,
    Acquisition,
    Paint,
    Torso,
    VoxelGrid,
    block_majority,
    block_mean,
    case_rngs,
    from_plain,
    paint_scene,
)
from simcrop_bench.data.synthetic.shapes import FAR, Box, Ellipsoid, EllipticCylinder, RibCage, Tube, Vec3

ABDOMEN_GENERATOR_VERSION = "1"  # bump on any change of the rendered output
# BTCV label ids (datasets.md §6.3); "right"/"left" are the patient's.
ORGAN_LABELS = {
    "spleen": 1,
    "right_kidney": 2,
    "left_kidney": 3,
    "gallbladder": 4,
    "esophagus": 5,
    "liver": 6,
    "stomach": 7,
    "aorta": 8,
    "ivc": 9,
    "portal_splenic_veins": 10,
    "pancreas": 11,
    "right_adrenal": 12,
    "left_adrenal": 13,
}
LABEL_VALUES = tuple(range(14))
# Portal-venous HU ranges of datasets.md §7.9 (stomach: its wall; kidneys: the cortex). Case HU values are
# drawn strictly inside these ranges.
ORGAN_HU_RANGES = {
    1: (110, 140),
    2: (150, 200),
    3: (150, 200),
    4: (0, 20),
    5: (40, 60),
    6: (100, 130),
    7: (70, 90),
    8: (150, 200),
    9: (120, 150),
    10: (150, 180),
    11: (80, 110),
    12: (40, 60),
    13: (40, 60),
}


@dataclass(frozen=True)
class Kidney:
    outline: Ellipsoid  # cortex (label = the kidney)
    medulla: tuple[Ellipsoid, ...]  # pyramids, less enhanced than the cortex
    sinus: Ellipsoid  # medial hilum notch of sinus fat (label 0): makes the bean shape


@dataclass(frozen=True)
class Stomach:
    outline: Ellipsoid
    wall_mm: float
    air_fraction: float  # anterior (non-dependent, patient supine) share of the lumen's A-P depth that is air


@dataclass(frozen=True)
class BowelLoop:
    path: Tube  # outer wall
    wall_mm: float
    content: str  # "air" | "bowel_fluid"


@dataclass(frozen=True)
class AbdomenCase:
    seed: tuple[int, int, int]  # [root_seed, dataset_code, case_index]
    torso: Torso
    spine_y_mm: float  # centre of the vertebral bodies
    lung_bases: tuple[Ellipsoid, ...]  # right, left
    liver: tuple[Ellipsoid, ...]  # right lobe, left lobe
    gallbladder: tuple[Ellipsoid, ...]  # fundus + body, neck: a pear
    stomach: Stomach
    esophagus: Tube
    spleen: Ellipsoid
    right_kidney: Kidney
    left_kidney: Kidney
    right_adrenal: tuple[Tube, ...]  # stem + two limbs: a Y
    left_adrenal: tuple[Tube, ...]
    pancreas: tuple[Tube, ...]  # head-neck, neck-body, body-tail
    pancreas_lobules: tuple[Ellipsoid, ...]  # head bulk and small bumps along the band
    veins: tuple[Tube, ...]  # portal trunk, its right/left branches, splenic vein
    aorta: Tube  # ends at the bifurcation
    iliac_arteries: tuple[Tube, ...]  # not labelled
    ivc: Tube
    bowel: tuple[BowelLoop, ...]  # colon segments and small-bowel loops
    hu: dict[str, float]  # material name -> HU; "air" first
    acquisition: Acquisition
    generator_version: str = ABDOMEN_GENERATOR_VERSION
    synthetic: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AbdomenCase:
        return from_plain(cls, data)


def abdominal_cavity(torso: Torso) -> EllipticCylinder:
    wall = torso.fat_mm + torso.muscle_mm
    return EllipticCylinder((0.0, 0.0), (torso.lr_mm / 2 - wall, torso.ap_mm / 2 - wall))


def sample_abdomen_case(root_seed: int, case_index: int, dataset_code: int = DATASET_CODES["btcv"]) -> AbdomenCase:
    """Draw a plausible adult abdomen; a pure function of its arguments (streams of :func:`case_rngs`)."""
    rngs = case_rngs(root_seed, dataset_code, case_index)
    r = rngs["anatomy"]

    def u(lo: float, hi: float) -> float:  # plain floats keep the spec JSON-ready and round-trip exact
        return float(r.uniform(lo, hi))

    def v(*xyz: float) -> Vec3:
        return tuple(float(c) for c in xyz)

    a, b = u(140, 165), u(100, 122)
    torso = Torso(2 * a, 2 * b, u(12, 30), u(8, 12), b)
    cav = abdominal_cavity(torso)
    ca, cb = cav.semi_xy
    ys = b - u(62, 70)  # vertebral body centre (y)

    # Liver: right lobe + left lobe draped over the stomach; the dome sets the top of the scan.
    zl, szl = u(58, 70), u(60, 68)
    liver = (
        Ellipsoid(v(-0.42 * ca + u(-5, 5), u(-5, 5), zl), v(0.55 * ca * u(0.95, 1.08), 0.86 * cb, szl)),
        Ellipsoid(
            v(0.05 * ca + u(-5, 5), -0.58 * cb, zl + u(20, 30)), v(0.36 * ca * u(0.9, 1.1), 0.25 * cb, u(26, 34))
        ),
    )
    dome = zl + szl
    lung_bases = tuple(
        Ellipsoid(v(s * 0.5 * ca, 0.15 * cb, dome + u(55, 65)), v(0.42 * ca, 0.8 * cb, 80.0)) for s in (-1, 1)
    )
    # Gallbladder in the fossa on the liver's inferior surface, anterior-right.
    fundus = v(-0.42 * ca + u(-6, 6), -0.6 * cb + u(-5, 5), zl - 0.62 * szl + u(-5, 5))
    gall_size = u(0.85, 1.15)
    gallbladder = (
        Ellipsoid(fundus, v(14 * gall_size, 16 * gall_size, 22 * gall_size)),
        Ellipsoid(v(fundus[0] + 8, fundus[1] + 12, fundus[2] + 22 * gall_size), v(9.0, 9.0, 14.0)),
    )
    # Stomach in the left upper quadrant, anterior; air anteriorly (patient supine).
    zs, szs = u(62, 76), u(40, 48)
    stomach = Stomach(
        Ellipsoid(v(0.42 * ca + u(-5, 5), -0.3 * cb, zs), v(0.3 * ca * u(0.9, 1.1), 0.42 * cb, szs)),
        u(5.5, 7.0),
        u(0.2, 0.5),
    )
    so = stomach.outline
    gej = v(so.center[0] - 0.55 * so.semi_axes[0], so.center[1] + 0.3 * so.semi_axes[1], zs + 0.6 * szs)
    esophagus = Tube((v(6.0, ys - 50, FAR), v(14.0, ys - 52, gej[2] + 25), gej), u(7.5, 9.0))
    spleen = Ellipsoid(
        v(0.72 * ca + u(-4, 4), 0.3 * cb + u(-4, 4), u(50, 64)), v(0.2 * ca * u(0.9, 1.15), 0.42 * cb, u(42, 52))
    )
    # Kidneys: posterior, paravertebral, the right one lower (under the liver).
    zr = u(-22, -8)
    right_kidney = _kidney(v(-0.45 * ca + u(-4, 4), ys + u(0, 8), zr), v(u(22, 26), u(18, 22), u(48, 56)), medial=+1)
    left_kidney = _kidney(
        v(0.45 * ca + u(-4, 4), ys + u(0, 8), zr + u(8, 18)), v(u(22, 26), u(18, 22), u(48, 56)), medial=-1
    )
    # Adrenals: Y shapes sitting on the upper poles, superomedially.
    thick = u(5.6, 6.4)
    right_adrenal = _adrenal(right_kidney.outline, medial=+1, radius=thick)
    left_adrenal = _adrenal(left_kidney.outline, medial=-1, radius=thick)
    # Pancreas: head right of the midline next to the duodenal loop, tail towards the splenic hilum.
    zp = u(8, 20)
    head, neck = v(-0.22 * ca, ys - 50, zp - 8), v(-2.0, ys - 68, zp)
    body, tail = v(0.3 * ca, ys - 62, zp + 8), v(0.6 * ca, ys - 30, zp + 14)
    pancreas = (Tube((head, neck), u(10, 12)), Tube((neck, body), u(9, 10.5)), Tube((body, tail), u(8, 9.5)))
    lobules = [Ellipsoid(head, v(u(14, 17), u(13, 16), u(17, 21)))]
    for t in r.uniform(0.1, 0.95, 5):  # lobulated contour: bumps along neck-body-tail
        p = np.asarray(neck) + (np.asarray(tail) - np.asarray(neck)) * t + r.uniform(-6, 6, 3)
        lobules.append(Ellipsoid(v(*p), (u(5, 7),) * 3))
    # Portal venous system: confluence behind the pancreatic neck; trunk to the hilum, splenic vein along
    # the pancreas' posterior surface to the splenic hilum.
    conf = v(0.0, ys - 56, zp - 2)
    hilum = v(-0.4 * ca, -8.0, zp + 40)
    (spx, spy, spz), (spa, spb, _) = spleen.center, spleen.semi_axes
    splenic_hilum = v(spx - 0.75 * spa, spy - 0.3 * spb, spz - 8)
    veins = (
        Tube((conf, v(-0.25 * ca, -12.0, zp + 22), hilum), u(6.5, 7.5)),
        Tube((hilum, v(hilum[0] - 28, hilum[1] + 8, hilum[2] + 8)), u(5, 5.5)),
        Tube((hilum, v(hilum[0] + 25, hilum[1] - 18, hilum[2] + 14)), u(4.8, 5.3)),
        Tube((conf, v(body[0], ys - 50, body[2] - 2), v(tail[0], ys - 22, tail[2] + 2), splenic_hilum), u(5, 5.8)),
    )
    z_bif = u(-100, -85)
    aorta_xy = (12.0 + u(-3, 3), ys - 32)
    aorta = Tube((v(*aorta_xy, FAR), v(aorta_xy[0] - 2, aorta_xy[1] - 2, z_bif)), u(10.5, 12.5))
    iliac_arteries = tuple(Tube((aorta.points[-1], v(s * 45, ys - 25, z_bif - 80)), 7.0) for s in (-1, 1))
    ivc = Tube((v(-22.0, ys - 26, -FAR), v(-22.0, ys - 28, zp + 40), v(-16.0, ys - 40, FAR)), u(10, 12))
    bowel = _bowel(r, ca, cb, zp)
    hu = {
        "air": -1000.0,
        "fat": u(-110, -90),
        "muscle": u(45, 55),
        "soft_tissue": 40.0,
        "lung": u(-870, -830),
        "bone_cortical": u(800, 1200),
        "bone_cancellous": u(250, 400),
        "rib": u(500, 900),
        "disc": 80.0,
        "table": 200.0,
        "bowel_wall": u(35, 50),
        "bowel_fluid": u(5, 20),
        "artery": 0.0,
        "liver": u(104, 126),
        "spleen": u(114, 136),
        "kidney_cortex": u(158, 192),
        "kidney_medulla": u(95, 125),
        "gallbladder": u(3, 17),
        "esophagus": u(43, 57),
        "stomach_wall": u(73, 87),
        "stomach_fluid": u(5, 20),
        "aorta": u(158, 192),
        "ivc": u(124, 146),
        "veins": u(154, 176),
        "pancreas": u(85, 105),
        "adrenal": u(46, 58),
    }
    hu["artery"] = hu["aorta"]
    acq = rngs["acquisition"]
    shift = tuple(float(s) for s in acq.uniform(-1, 1, 3) * (6, 6, 8))
    acquisition = Acquisition(float(acq.uniform(8, 20)), shift, None)
    return AbdomenCase(
        seed=(int(root_seed), int(dataset_code), int(case_index)),
        torso=torso,
        spine_y_mm=ys,
        lung_bases=lung_bases,
        liver=liver,
        gallbladder=gallbladder,
        stomach=stomach,
        esophagus=esophagus,
        spleen=spleen,
        right_kidney=right_kidney,
        left_kidney=left_kidney,
        right_adrenal=right_adrenal,
        left_adrenal=left_adrenal,
        pancreas=pancreas,
        pancreas_lobules=tuple(lobules),
        veins=veins,
        aorta=aorta,
        iliac_arteries=iliac_arteries,
        ivc=ivc,
        bowel=bowel,
        hu=hu,
        acquisition=acquisition,
    )


def _kidney(center: Vec3, semi: Vec3, medial: int) -> Kidney:
    """Bean: ellipsoid cortex, three medullary pyramids, and a sinus-fat notch on the medial (hilar) side."""
    (cx, cy, cz), (sx, sy, sz) = center, semi
    pyramid = (0.35 * sx, 0.4 * sy, 0.2 * sz)
    pyramids = tuple(Ellipsoid((cx + medial * 0.15 * sx, cy, cz + t * 0.5 * sz), pyramid) for t in (-1, 0, 1))
    sinus = Ellipsoid((cx + medial * 0.9 * sx, cy - 0.25 * sy, cz), (0.45 * sx, 0.45 * sy, 0.3 * sz))
    return Kidney(Ellipsoid(center, semi), pyramids, sinus)


def _adrenal(kidney: Ellipsoid, medial: int, radius: float) -> tuple[Tube, ...]:
    """Inverted Y over the upper pole: a stem above an anterior junction, two limbs running back and down."""
    (kx, ky, kz), (sx, sy, sz) = kidney.center, kidney.semi_axes
    jx, jy = kx + medial * 0.5 * sx, ky - 0.55 * sy
    # Height of the kidney's surface under the limbs' ends, so that the Y rests on the pole.
    reach = 1.0 - ((jx - kx) / sx) ** 2 - ((jy + 14 - ky) / sy) ** 2
    jz = kz + sz * float(np.sqrt(max(reach, 0.0))) + 14.0
    junction = (float(jx), float(jy), float(jz))
    return (
        Tube(((jx, jy - 3.0, jz + 14.0), junction), radius),
        Tube((junction, (jx + medial * 4.0, jy + 16.0, jz - 8.0)), radius),
        Tube((junction, (jx - medial * 10.0, jy + 14.0, jz - 6.0)), radius),
    )


def _bowel(r: np.random.Generator, ca: float, cb: float, zp: float) -> tuple[BowelLoop, ...]:
    """Colon frame (ascending, transverse, descending) with air, plus 5-8 random small-bowel loops."""

    def f(x) -> float:
        return float(x)

    z_hf, z_sf = f(r.uniform(-10, 10)), f(r.uniform(22, 38))
    colon = [
        ((-0.68 * ca, -0.05 * cb, -FAR), (-0.68 * ca, -0.1 * cb, z_hf)),
        (
            (-0.68 * ca, -0.1 * cb, z_hf),
            (-0.55 * ca, -0.5 * cb, z_hf + 4),
            (0.0, -0.72 * cb, zp - 28 + f(r.uniform(-6, 6))),
            (0.55 * ca, -0.5 * cb, z_sf - 4),
            (0.72 * ca, 0.0, z_sf),
        ),
        ((0.72 * ca, 0.0, z_sf), (0.72 * ca, 0.05 * cb, -FAR)),
    ]
    loops = [
        BowelLoop(Tube(tuple(tuple(f(c) for c in p) for p in pts), f(r.uniform(16, 21))), 3.0, "air") for pts in colon
    ]
    for _ in range(int(r.integers(5, 9))):
        p = np.array([r.uniform(-0.45, 0.45) * ca, r.uniform(-0.75, -0.15) * cb, r.uniform(-115, zp - 25)])
        pts = [p]
        for _step in range(int(r.integers(2, 4))):
            d = r.normal(size=3)
            pts.append(pts[-1] + d / np.linalg.norm(d) * r.uniform(22, 34))
        content = "air" if r.random() < 0.4 else "bowel_fluid"
        loops.append(BowelLoop(Tube(tuple(tuple(f(c) for c in q) for q in pts), f(r.uniform(10, 14))), 3.0, content))
    return tuple(loops)


def build_abdomen_scene(case: AbdomenCase) -> list[Paint]:
    """Ordered paints: body, gut, organs (solid organs over gut, vessels over organs), skeleton last."""
    t, ys = case.torso, case.spine_y_mm
    a, b = t.lr_mm / 2, t.ap_mm / 2
    cav = abdominal_cavity(t)
    inside = (cav,)
    L = ORGAN_LABELS
    scene = [
        Paint(EllipticCylinder((0.0, 0.0), (a, b)), "fat", 0),
        Paint(EllipticCylinder((0.0, 0.0), (a - t.fat_mm, b - t.fat_mm)), "muscle"),
        Paint(Box((-FAR, b + 10, -FAR), (FAR, b + 18, FAR)), "table"),
        Paint(cav, "fat"),  # visceral fat fills whatever the organs leave
    ]
    body_wall = (EllipticCylinder((0.0, 0.0), (a - t.fat_mm, b - t.fat_mm)),)
    for x in (-1, 1):  # paraspinal and psoas muscles
        scene.append(Paint(EllipticCylinder((x * 38.0, ys + 52.0), (26.0, 22.0)), "muscle", within=body_wall))
        scene.append(
            Paint(Tube(((x * 30.0, ys + 2, 30.0), (x * 48.0, ys - 12, -160.0)), 17.0), "muscle", within=inside)
        )
    for lung in case.lung_bases:  # diaphragm rim, then the posterior lung bases around the liver dome
        below = Box((-FAR, -FAR, -FAR), (FAR, FAR, lung.center[2]))
        scene.append(Paint(lung.grown(6.0), "muscle", within=(cav, below)))
        scene.append(Paint(lung, "lung", within=(cav.grown(-3.0),)))
    for loop in case.bowel:
        lumen = Tube(loop.path.points, loop.path.radius - loop.wall_mm)
        scene += [Paint(loop.path, "bowel_wall", within=inside), Paint(lumen, loop.content, within=inside)]
    scene.append(Paint(case.esophagus, "esophagus", L["esophagus"]))
    st = case.stomach
    lumen = st.outline.grown(-st.wall_mm)
    air_below_y = lumen.center[1] - lumen.semi_axes[1] + 2 * st.air_fraction * lumen.semi_axes[1]
    scene += [
        Paint(st.outline, "stomach_wall", L["stomach"], within=inside),
        Paint(lumen, "stomach_fluid", within=inside),
        Paint(lumen, "air", within=(Box((-FAR, -FAR, -FAR), (FAR, air_below_y, FAR)),)),
    ]
    scene += [Paint(lobe, "liver", L["liver"], within=inside) for lobe in case.liver]
    scene += [Paint(part, "gallbladder", L["gallbladder"], within=inside) for part in case.gallbladder]
    scene.append(Paint(case.spleen, "spleen", L["spleen"], within=inside))
    for kidney, label in ((case.right_kidney, L["right_kidney"]), (case.left_kidney, L["left_kidney"])):
        scene.append(Paint(kidney.outline, "kidney_cortex", label))
        scene += [Paint(p, "kidney_medulla", label) for p in kidney.medulla]
        scene.append(Paint(kidney.sinus, "fat", 0, within=(kidney.outline,)))
    scene += [Paint(limb, "adrenal", L["right_adrenal"]) for limb in case.right_adrenal]
    scene += [Paint(limb, "adrenal", L["left_adrenal"]) for limb in case.left_adrenal]
    scene += [Paint(s, "pancreas", L["pancreas"], within=inside) for s in (*case.pancreas, *case.pancreas_lobules)]
    scene += [Paint(vein, "veins", L["portal_splenic_veins"]) for vein in case.veins]
    scene += [Paint(case.ivc, "ivc", L["ivc"]), Paint(case.aorta, "aorta", L["aorta"])]
    scene += [Paint(artery, "artery", 0) for artery in case.iliac_arteries]
    vertebra = dict(period_mm=34.0, block_mm=26.0)  # lumbar bodies and discs
    transverse = dict(period_mm=34.0, block_mm=10.0)
    ribs = RibCage(
        cav.grown(1.0), 7.0, case.liver[0].center[2] + case.liver[0].semi_axes[2] + 15.0, 27.0, 6, 5.0, 18.0, 2.3
    )
    scene += [
        Paint(EllipticCylinder((0.0, ys), (24.0, 18.0)), "disc", 0),
        Paint(EllipticCylinder((0.0, ys), (24.0, 18.0), **vertebra), "bone_cortical", 0),
        Paint(EllipticCylinder((0.0, ys), (20.0, 14.0), **vertebra), "bone_cancellous", 0),
        Paint(EllipticCylinder((0.0, ys + 30.0), (15.0, 13.0), **vertebra), "bone_cortical", 0),  # neural arch
        Paint(EllipticCylinder((0.0, ys + 30.0), (9.0, 9.0)), "soft_tissue", 0),  # spinal canal
        Paint(EllipticCylinder((0.0, ys + 55.0), (5.0, 14.0), **vertebra), "bone_cortical", 0),  # spinous process
        Paint(
            EllipticCylinder((0.0, ys + 26.0), (40.0, 5.0), **transverse), "bone_cortical", 0
        ),  # transverse processes
        Paint(ribs, "rib", 0),  # lower ribs, from just above the liver dome
    ]
    return scene


@dataclass
class RenderedAbdomen:
    hu: np.ndarray  # int16 (x, y, z)
    labels: np.ndarray  # uint8 (x, y, z), BTCV ids 0-13


def render_abdomen(case: AbdomenCase, grid: VoxelGrid) -> RenderedAbdomen:
    """Sample the scene with SUPERSAMPLE× per axis (partial-volume HU, majority labels), then add noise."""
    names = list(case.hu)
    ids = {n: i for i, n in enumerate(names)}
    lut = np.asarray([case.hu[n] for n in names], np.float32)
    mats, labels = paint_scene(build_abdomen_scene(case), ids, grid)
    hu = block_mean(lut[mats])
    hu += case_rngs(*case.seed)["noise"].standard_normal(grid.shape, dtype=np.float32) * np.float32(
        case.acquisition.noise_hu
    )
    hu_int = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return RenderedAbdomen(hu_int, block_majority(labels, LABEL_VALUES))
