"""Draw CT-RATE findings into the chest phantom (datasets.md §7.3, §7.5).

:func:`lesion_paints` turns a case's :class:`~.findings.Finding` list into extra paints laid over the phantom scene
(painter's algorithm, later wins); each paint carries the finding's mask value (its index in the list + 1).
:func:`render_ctrate_case` renders scene + lesions with 2x supersampling and returns HU, the per-finding mask and
the lung labels; :func:`acquire` adds a reconstruction's kernel and noise to the clean render.

Lobes, the extra shapes and the placement helpers are in :mod:`~simcrop_bench.data.synthetic.lesion_geometry`.
Placement randomness comes from a per-finding stream derived from ``case.seed``, so rendering is a pure function
of (case, findings, grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simcrop_bench.data.synthetic.findings import Finding
from simcrop_bench.data.synthetic.lesion_geometry import (
    Checker,
    Difference,
    LatticeSpheres,
    LesionPaint,
    Lobe,
    SheetLattice,
    aorta_tube,
    bronchus_tubes,
    hilum,
    lobe_point,
    lung_of_side,
    lung_paints,
    random_offset,
    sphere,
)
from simcrop_bench.data.synthetic.phantom import (
    LABEL_LEFT_LUNG,
    LABEL_RIGHT_LUNG,
    SUPERSAMPLE,
    ChestCase,
    VoxelGrid,
    block_majority,
    block_mean,
    block_sum,
    build_scene,
    lung_texture,
    material_table,
    thoracic_cavity,
)
from simcrop_bench.data.synthetic.shapes import FAR, Box, Ellipsoid, EllipticCylinder, Tube

LUNG_LABELS = (LABEL_LEFT_LUNG, LABEL_RIGHT_LUNG)
SMOOTH_SIGMA_VOXELS = 0.7  # §7.3: smooth kernel = Gaussian blur of about 0.7 voxel
PLACEMENT_STREAM = 9001  # SeedSequence key for lesion placement: [*case.seed, PLACEMENT_STREAM, finding index]
REGION_LOBES = {
    "both_lungs": ("right_upper", "right_middle", "right_lower", "left_upper", "left_lower"),
    "right_lung": ("right_upper", "right_middle", "right_lower"),
    "left_lung": ("left_upper", "left_lower"),
    "both_lower_lobes": ("right_lower", "left_lower"),
    "both_upper_lobes": ("right_upper", "left_upper"),
}
DIFFUSE_TYPES = (
    "mosaic_attenuation_pattern",
    "emphysema",
    "interlobular_septal_thickening",
    "pulmonary_fibrotic_sequela",
)
DENSE_TISSUE = ("bone_cortical", "bone_cancellous", "disc", "rib")
METAL_HU = 3071.0


@dataclass
class CtrateRender:
    hu: np.ndarray  # int16 (x, y, z), LPS-stored
    finding_mask: np.ndarray  # uint8 (x, y, z): finding index + 1, 0 elsewhere
    labels: np.ndarray  # uint8 (x, y, z): raw LUNA16 lung labels 0/3/4/5 after lesions (effusion removes lung)
    finding_ids: list[str]  # mask value v belongs to finding_ids[v - 1]


@dataclass
class CleanRender:
    """Scene sampled on the grid before kernel and noise (shared by all reconstructions of one scan)."""

    hu: np.ndarray  # float32
    finding_mask: np.ndarray
    labels: np.ndarray
    finding_ids: list[str]
    fov_padding_hu: int | None
    fov_outside: np.ndarray  # bool (x, y), outside the circular field of view


def lesion_paints(case: ChestCase, findings: list[Finding]) -> list[LesionPaint]:
    """Paints for every finding, in list order (cardiomegaly before pericardial effusion: the rim follows the heart)."""
    scene = build_scene(case)
    state = {"heart": case.heart}
    paints: list[LesionPaint] = []
    # Diffuse lung patterns first so that focal lesions drawn later stay visible (painter's order, later wins).
    order = sorted(range(len(findings)), key=lambda i: findings[i].type not in DIFFUSE_TYPES)
    for index in order:
        finding = findings[index]
        rng = np.random.default_rng(np.random.SeedSequence([*case.seed, PLACEMENT_STREAM, index]))
        paints += draw_finding(case, scene, finding, index + 1, rng, state)
    return paints


def render_clean(case: ChestCase, findings: list[Finding], grid: VoxelGrid) -> CleanRender:
    """Sample phantom scene + lesion paints (2x supersampling per axis) and add the lung texture; no noise."""
    if case.nodules:
        raise ValueError("CT-RATE cases draw nodules from findings; pass a case with nodules=()")
    names, lut = material_table(case)
    extra = lesion_paints(case, findings)
    lut = np.concatenate([lut, np.asarray([p.hu for p in extra], np.float32)])
    if len(lut) > 255:
        raise ValueError(f"too many materials ({len(lut)}) for a uint8 material map")
    ids = {n: i for i, n in enumerate(names)}
    fx, fy, fz = grid.axes(SUPERSAMPLE)
    fine = (len(fx), len(fy), len(fz))
    mats, labels, owner = np.zeros(fine, np.uint8), np.zeros(fine, np.uint8), np.zeros(fine, np.uint8)

    def window(bounds):
        return tuple(slice(*np.searchsorted(ax, lim)) for ax, lim in zip((fx, fy, fz), bounds))

    for paint in build_scene(case):
        sl = window(paint.shape.bounds())
        mask = paint.mask(fx[sl[0], None, None], fy[None, sl[1], None], fz[None, None, sl[2]])
        np.copyto(mats[sl], ids[paint.material], where=mask)
        if paint.label is not None:
            np.copyto(labels[sl], paint.label, where=mask)
    base_labels = labels.copy()  # lung confinement refers to the anatomy before lesions
    for k, paint in enumerate(extra):
        sl = window(paint.shape.bounds())
        x, y, z = fx[sl[0], None, None], fy[None, sl[1], None], fz[None, None, sl[2]]
        mask = paint.shape.inside(x, y, z)
        for other in paint.within:
            mask = mask & other.inside(x, y, z)
        if paint.confine_labels:
            mask = mask & np.isin(base_labels[sl], paint.confine_labels)
        if paint.avoid_materials:
            mask = mask & ~np.isin(mats[sl], [ids[m] for m in paint.avoid_materials])
        np.copyto(mats[sl], len(names) + k, where=mask)
        if paint.label is not None:
            np.copyto(labels[sl], paint.label, where=mask)
        if paint.finding_value:
            np.copyto(owner[sl], paint.finding_value, where=mask)

    hu = block_mean(lut[mats])
    x, y, z = grid.axes()
    hu += block_mean(mats == ids["parenchyma"]) * lung_texture(
        case, x[:, None, None], y[None, :, None], z[None, None, :]
    )
    finding_mask = _block_any_majority(owner, len(findings))
    _stamp_point_findings(finding_mask, extra, grid)
    radius = min(x.max() - x.min(), y.max() - y.min()) / 2
    outside = (x[:, None] - x.mean()) ** 2 + (y[None, :] - y.mean()) ** 2 > radius**2
    lung_labels = block_majority(labels, (0, LABEL_LEFT_LUNG, LABEL_RIGHT_LUNG, 5))
    return CleanRender(
        hu, finding_mask, lung_labels, [f.id for f in findings], case.acquisition.fov_padding_hu, outside
    )


def acquire(clean: CleanRender, *, kernel: str, noise_hu: float, rng: np.random.Generator) -> np.ndarray:
    """One reconstruction: optional smooth kernel, white noise, field-of-view padding, int16 HU."""
    hu = clean.hu
    if kernel == "smooth":
        hu = gaussian_blur(hu, SMOOTH_SIGMA_VOXELS)
    elif kernel != "sharp":
        raise ValueError(f"unknown kernel {kernel!r} (expected 'smooth' or 'sharp')")
    hu = hu + rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(noise_hu)
    if clean.fov_padding_hu is not None:
        hu[clean.fov_outside] = clean.fov_padding_hu
    return np.clip(np.rint(hu), -3024, 3071).astype(np.int16)


def render_ctrate_case(
    case: ChestCase,
    findings: list[Finding],
    grid: VoxelGrid,
    *,
    kernel: str = "sharp",
    noise_hu: float | None = None,
    noise_seed: int = 0,
) -> CtrateRender:
    """Render one CT-RATE-style volume: deterministic in (case, findings, grid, kernel, noise_hu, noise_seed)."""
    clean = render_clean(case, findings, grid)
    rng = np.random.default_rng(np.random.SeedSequence([*case.seed, PLACEMENT_STREAM + 1, noise_seed]))
    sigma = case.acquisition.noise_hu if noise_hu is None else noise_hu
    hu = acquire(clean, kernel=kernel, noise_hu=sigma, rng=rng)
    return CtrateRender(hu, clean.finding_mask, clean.labels, clean.finding_ids)


def gaussian_blur(volume: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur in voxels (edge-replicated borders), numpy only."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    out = volume.astype(np.float32)
    for axis in range(3):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(i, i + n), axis=axis) for i, w in enumerate(taps))
    return out


def _block_any_majority(owner: np.ndarray, n_values: int) -> np.ndarray:
    """Per voxel, the finding covering most sub-samples; background only where no sub-sample belongs to a finding
    (a plain majority would erase small lesions that the image still shows through partial volume)."""
    shape = tuple(n // SUPERSAMPLE for n in owner.shape)
    best, best_count = np.zeros(shape, np.uint8), np.zeros(shape, np.int32)
    for value in range(1, n_values + 1):
        count = block_sum((owner == value).view(np.uint8)).astype(np.int32)
        better = count > best_count
        best[better], best_count[better] = value, count[better]
    return best


def _stamp_point_findings(mask: np.ndarray, paints: list[LesionPaint], grid: VoxelGrid) -> None:
    """A finding smaller than the sub-sample spacing still gets its centre voxel, so every drawn finding has a mask."""
    present = set(np.unique(mask).tolist())
    for paint in paints:
        if paint.finding_value and paint.anchor is not None and paint.finding_value not in present:
            idx = [int(round((c - o) / s)) for c, o, s in zip(paint.anchor, grid.origin, grid.spacing)]
            if all(0 <= i < n for i, n in zip(idx, grid.shape)):
                mask[tuple(idx)] = paint.finding_value
                present.add(paint.finding_value)


# ---------------------------------------------------------------- one drawer per finding type (§7.5 "how to draw")


def draw_finding(case: ChestCase, scene, f: Finding, value: int, rng: np.random.Generator, state: dict) -> list:
    """Paints of one finding; ``state["heart"]`` is the current heart (cardiomegaly enlarges it)."""
    t, cav = case.torso, thoracic_cavity(case.torso)
    (_, ccy), (ca, cb) = cav.center_xy, cav.semi_xy
    sy, dy = case.spine_y_mm, case.spine_y_mm - 45.0
    kind, out = f.type, []
    severity = {"mild": 0, "small": 0, "moderate": 1, "marked": 2, "large": 2}.get(f.severity or "", 1)
    if kind in ("lung_nodule", "micronodule"):
        radius = max(float(f.size_mm or 2.0), 1.0) / 2
        for _ in range(int(f.attrs.get("count", 1)) if kind == "micronodule" else 1):
            centre = lobe_point(case, scene, f.lobe, radius + 3.0, rng)
            label = lung_of_side(case, f.side)[1]
            density = f.attrs.get("density", "solid")
            outer_hu = -500.0 if density in ("ground-glass", "part-solid") else float(rng.uniform(0, 60))
            out.append(LesionPaint(sphere(centre, radius), outer_hu, value, confine_labels=(label,), anchor=centre))
            if density == "part-solid":
                out.append(LesionPaint(sphere(centre, 0.55 * radius), 30.0, value, confine_labels=(label,)))
    elif kind in ("lung_opacity", "consolidation"):
        lung, label = lung_of_side(case, f.side)
        centre = lobe_point(case, scene, f.lobe, 12.0, rng)
        patch = Ellipsoid(centre, tuple(float(v) for v in rng.uniform(20, 34, 3)))
        hu = 35.0 if kind == "consolidation" else (-550.0 if f.attrs.get("pattern") != "hazy" else -650.0)
        out.append(LesionPaint(patch, hu, value, within=(Lobe(lung, f.lobe),), confine_labels=(label,), anchor=centre))
        if kind == "consolidation" and f.attrs.get("air_bronchograms"):
            start = np.asarray(hilum(case, f.side))
            end = start + 1.8 * (np.asarray(centre) - start)
            out.append(
                LesionPaint(
                    Tube((tuple(start), tuple(end)), 2.5),
                    -1000.0,
                    value,
                    within=(patch, Lobe(lung, f.lobe)),
                    confine_labels=(label,),
                )
            )
    elif kind == "atelectasis":
        lung, label = lung_of_side(case, f.side)
        if f.lobe.endswith("lower"):
            base = lung.center[2] - lung.semi_axes[2]
            band = Box((-FAR, -FAR, base), (FAR, FAR, base + 30.0))
            out.append(LesionPaint(Lobe(lung, f.lobe), 25.0, value, within=(band,), confine_labels=(label,)))
        else:
            centre = lobe_point(case, scene, f.lobe, 9.0, rng)
            plate = Ellipsoid(centre, (32.0, 28.0, 9.0))
            out.append(
                LesionPaint(plate, 25.0, value, within=(Lobe(lung, f.lobe),), confine_labels=(label,), anchor=centre)
            )
    elif kind == "pleural_effusion":
        depths = f.attrs.get("depths_mm") or {f.side: f.size_mm}
        for side, depth in sorted(depths.items()):
            lung = lung_of_side(case, side)[0]
            moved = EllipticCylinder((cav.center_xy[0], ccy - float(depth)), cav.semi_xy)
            x_lo, x_hi = (-FAR, -20.0) if side == "right" else (20.0, FAR)
            lowest = Box((x_lo, -FAR, -FAR), (x_hi, FAR, lung.center[2] + 0.25 * lung.semi_axes[2]))
            anchor = (
                (-0.6 if side == "right" else 0.6) * ca,
                ccy + cb - float(depth) / 2,
                lung.center[2] - 0.5 * lung.semi_axes[2],
            )
            out.append(
                LesionPaint(
                    Difference(cav, moved),
                    12.0,
                    value,
                    within=(lowest,),
                    label=0,
                    avoid_materials=DENSE_TISSUE + ("blood", "heart", "soft_tissue", "air"),
                    anchor=anchor,
                )
            )
    elif kind == "pericardial_effusion":
        heart = state["heart"]
        rim = Difference(heart.grown(float(f.size_mm)), heart)
        anchor = (heart.center[0] + heart.semi_axes[0] + f.size_mm / 2, heart.center[1], heart.center[2])
        out.append(
            LesionPaint(rim, 10.0, value, label=0, avoid_materials=DENSE_TISSUE + ("air", "blood"), anchor=anchor)
        )
    elif kind == "cardiomegaly":
        heart = state["heart"]
        scale = max(1.05, min(1.6, float(f.attrs.get("ctr", 0.6)) * ca / heart.semi_axes[0]))
        grow = (scale - 1.0) * heart.semi_axes[0]
        big = Ellipsoid(
            (heart.center[0] + 0.4 * grow, heart.center[1] - 0.2 * grow, heart.center[2] - 0.2 * grow),
            (heart.semi_axes[0] * scale, heart.semi_axes[1] * scale, heart.semi_axes[2] * min(scale, 1.25)),
        )
        state["heart"] = big
        out.append(
            LesionPaint(
                big,
                case.hu["heart"],
                value,
                label=0,
                avoid_materials=DENSE_TISSUE + ("air", "blood"),
                anchor=big.center,
            )
        )
    elif kind == "coronary_artery_wall_calcification":
        heart = state["heart"]
        courses = {"left_anterior_descending": (0.35, -1.0), "right": (-1.0, -0.45), "circumflex": (0.9, 0.5)}
        for vessel in f.attrs.get("vessels", ["left_anterior_descending"]):
            ux, uy = courses[vessel]
            for w in np.linspace(0.5, -0.4, 2 + severity):
                d = np.array([ux, uy, w])
                d = d / np.linalg.norm(d)
                spot = np.asarray(heart.center) + (np.asarray(heart.semi_axes) + 1.0) * d
                out.append(LesionPaint(sphere(spot, 3.0), float(rng.uniform(500, 900)), value, anchor=tuple(spot)))
    elif kind == "arterial_wall_calcification":
        points = np.asarray(aorta_tube(scene, case).points)
        parts = {"ascending": (0, 2), "arch": (2, 5), "descending": (5, 7)}
        for segment in f.attrs.get("segments", ["arch"]):
            lo, hi = parts[segment]
            for _ in range(2 + severity):
                k = int(rng.integers(lo, hi))
                core = points[k] + rng.uniform(0.1, 0.9) * (points[k + 1] - points[k])
                d = rng.normal(size=3)
                spot = core + case.aorta_radius_mm * d / np.linalg.norm(d)
                out.append(LesionPaint(sphere(spot, 3.0), float(rng.uniform(400, 1000)), value, anchor=tuple(spot)))
    elif kind == "hiatal_hernia":
        semi = (16.0 + 6 * severity, 14.0 + 4 * severity, 20.0 + 6 * severity)
        base = case.left_lung.center[2] - case.left_lung.semi_axes[2]
        sac = Ellipsoid((14.0, sy - 30.0, base + 0.8 * semi[2]), semi)
        air = Box((-FAR, -FAR, -FAR), (FAR, sac.center[1] - 0.25 * semi[1], FAR))
        common = dict(label=0, avoid_materials=DENSE_TISSUE)
        out += [
            LesionPaint(sac, 40.0, value, anchor=sac.center, **common),
            LesionPaint(sac.grown(-3.0), 10.0, value, **common),
            LesionPaint(sac.grown(-3.0), -1000.0, value, within=(air,), **common),
        ]
    elif kind in ("lymphadenopathy", "small_lymph_node"):
        s = float(f.size_mm)
        tr = case.airway.trachea_radius_mm + case.airway.wall_mm
        axilla = t.lr_mm / 2 - t.fat_mm / 2 - s / 4
        stations = {
            "prevascular": (0.0, -34.0 + dy - case.aorta_radius_mm - s / 2 - 3, 40.0),
            "right_paratracheal": (-(tr + s / 2 + 2), 0.0, 25.0),
            "left_paratracheal": (tr + s / 2 + 2, 2.0, 25.0),
            "subcarinal": (0.0, 14.0, -25.0 - s / 2),
            "right_hilar": (-45.0, 5.0, -30.0),
            "left_hilar": (48.0, 8.0, -32.0),
            "right_axillary": (-axilla, ccy - 0.3 * cb, 40.0),
            "left_axillary": (axilla, ccy - 0.3 * cb, 40.0),
        }
        x0, y0, z0 = stations[f.region]
        for k in range(int(f.attrs.get("count", 1)) if kind == "small_lymph_node" else 1):
            node = Ellipsoid((x0, y0, z0 - k * (1.6 * s + 3)), (0.6 * s, 0.5 * s, 0.75 * s))
            out.append(
                LesionPaint(node, 40.0, value, label=0, avoid_materials=DENSE_TISSUE + ("air",), anchor=node.center)
            )
    elif kind == "emphysema":
        kind_ = f.attrs.get("kind", "centrilobular")
        period, radius = {
            "centrilobular": (16.0 - 2 * severity, 4.5),
            "paraseptal": (14.0, 5.5),
            "panlobular": (11.0, 4.5),
        }[kind_]
        holes = LatticeSpheres(period, radius, random_offset(rng))
        out += lung_paints(case, f.attrs.get("lobes", [f.lobe]), value, -990.0, (holes,), shell=kind_ == "paraseptal")
    elif kind == "mosaic_attenuation_pattern":
        offset, lobes = random_offset(rng), REGION_LOBES[f.region]
        out += lung_paints(case, lobes, value, -930.0, (Checker(22.0, offset, 0),))
        out += lung_paints(case, lobes, value, -740.0, (Checker(22.0, offset, 1),))
    elif kind == "interlobular_septal_thickening":
        out += lung_paints(
            case, REGION_LOBES[f.region], value, -150.0, (SheetLattice(14.0, 3.0, random_offset(rng)),), shell=True
        )
    elif kind == "pulmonary_fibrotic_sequela":
        out += lung_paints(
            case, [f.lobe], value, -200.0, (SheetLattice(12.0, 3.0, random_offset(rng), (0, 2)),), shell=True
        )
    elif kind == "peribronchial_thickening":
        for lobe in REGION_LOBES[f.region]:
            out += bronchus_tubes(case, scene, lobe, rng, 2, 4.5, 1.8, value)
    elif kind == "bronchiectasis":
        out += bronchus_tubes(case, scene, f.lobe, rng, 2 + severity % 2, 7.0, 5.0, value)
    elif kind == "medical_material":
        out += _device(case, f.attrs.get("device", "sternotomy_wires"), value, cav, dy)
    elif kind in ("liver_cyst", "gallstone", "adrenal_nodule", "thyroid_nodule", "osteophytes"):
        out += _distractor(case, f, value, rng, sy)
    return out


def _device(case: ChestCase, device: str, value: int, cav: EllipticCylinder, dy: float) -> list:
    t = case.torso
    (_, ccy), (ca, cb) = cav.center_xy, cav.semi_xy
    front = t.posterior_y_mm - t.ap_mm + t.fat_mm * 0.6  # inside the anterior subcutaneous fat
    heart = case.heart
    if device == "sternotomy_wires":
        y = ccy - cb - 6.0
        return [
            LesionPaint(
                Tube(((-17.0, y + 2, z), (0.0, y - 9.0, z), (17.0, y + 2, z)), 2.5),
                METAL_HU,
                value,
                anchor=(0.0, y - 8.0, z),
            )
            for z in (30.0, 0.0, -30.0, -60.0, -90.0)
        ]
    side = 1.0 if device == "pacemaker" else -1.0
    box_c = (side * 0.55 * ca, front, 40.0)
    box = Box((box_c[0] - 18, box_c[1] - 4, box_c[2] - 20), (box_c[0] + 18, box_c[1] + 4, box_c[2] + 20))
    svc_top, svc_low = (-30.0, -25.0 + dy, 60.0), (-28.0, -22.0 + dy, -20.0)
    if device == "pacemaker":  # lead through the superior vena cava into the right heart
        lead = (
            box_c,
            (0.0, -30.0 + dy, 70.0),
            svc_top,
            svc_low,
            (heart.center[0] - 0.5 * heart.semi_axes[0], heart.center[1], heart.center[2]),
        )
    else:  # port: catheter from the chest-wall reservoir, tip in the superior vena cava
        lead = (box_c, (-40.0, -30.0 + dy, 70.0), svc_top, svc_low)
    return [LesionPaint(box, METAL_HU, value, anchor=box_c), LesionPaint(Tube(lead, 2.0), METAL_HU, value)]


def _distractor(case: ChestCase, f: Finding, value: int, rng, sy: float) -> list:
    r = float(f.size_mm or 6.0) / 2
    liver = case.liver
    if f.type == "liver_cyst":
        c = tuple(np.asarray(liver.center) + np.asarray(liver.semi_axes) * (0.1, -0.2, 0.3))
        return [LesionPaint(sphere(c, r), 5.0, value, anchor=c)]
    if f.type == "gallstone":
        c = tuple(np.asarray(liver.center) + np.asarray(liver.semi_axes) * (0.35, -0.55, -0.5))
        return [LesionPaint(sphere(c, r), 400.0, value, anchor=c)]
    side = 1.0 if f.side == "left" else -1.0
    if f.type == "adrenal_nodule":
        c = (side * 40.0, sy - 5.0, case.stomach.center[2])
        return [LesionPaint(sphere(c, r), 20.0, value, avoid_materials=DENSE_TISSUE, anchor=c)]
    if f.type == "thyroid_nodule":
        c = (side * 18.0, -15.0, 110.0)
        return [LesionPaint(sphere(c, r), 60.0, value, avoid_materials=("air",), anchor=c)]
    return [
        LesionPaint(sphere((sx * 21.0, sy - 8.0, z), 4.0), 700.0, value, anchor=(sx * 21.0, sy - 8.0, z))
        for sx in (-1.0, 1.0)
        for z in (-30.0, -90.0)
    ]  # osteophytes at vertebral body margins
