"""Sampling CT-RATE findings (datasets.md §2.6, §7.2, §7.5, §7.6): :func:`sample_findings`.

The 18 binary labels come from a Gaussian copula calibrated to the aggregate prevalences and pairwise correlations of
§2.6 (the only statistics the project may use); then each finding's attributes are drawn independently, one sampler
per type; then sub-threshold near-misses and distractors that must never become labels. The records themselves and
the vocabulary are in :mod:`~simcrop_bench.data.synthetic.findings`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from simcrop_bench.data.synthetic.copula import (
    STANDARD_NORMAL,
    latent_for_binary_correlation,
    nearest_positive_definite,
)
from simcrop_bench.data.synthetic.findings import (
    AORTIC_SEGMENTS,
    BASELINE_LATENT_CORRELATION,
    CORONARY_VESSELS,
    DEVICES,
    DISTRACTOR_PROBABILITY,
    DISTRACTOR_TYPES,
    LABEL_INDEX,
    LABEL_TYPES,
    LINGULAR_SEGMENTS,
    LOBE_SEGMENTS,
    LOBES,
    LUNG_REGIONS,
    LUNG_SIDES,
    LYMPH_NODE_STATIONS,
    MIN_EIGENVALUE,
    NEAR_MISS_PROBABILITY,
    NEAR_MISS_TYPES,
    NODULE_MIN_MM,
    PREVALENCE,
    SEVERITIES,
    SIDES,
    TARGET_CORRELATIONS,
    Finding,
    side_of_lobe,
    side_of_region,
    side_of_station,
)

# ---------------------------------------------------------------- Gaussian copula over the 18 labels


@lru_cache(maxsize=1)
def latent_correlation_matrix() -> np.ndarray:
    """Latent correlation of the copula: calibrated listed pairs, baseline elsewhere, nudged to positive definite.

    The listed pairs alone are not consistent (e.g. arterial~coronary ≈ 0.9 latent and arterial~emphysema ≈ 0.45
    but coronary~emphysema at baseline is not positive definite); eigenvalue clipping spreads the difference.
    """
    n = len(LABEL_TYPES)
    matrix = np.full((n, n), BASELINE_LATENT_CORRELATION)
    np.fill_diagonal(matrix, 1.0)
    for (first, second), target in TARGET_CORRELATIONS.items():
        i, j = LABEL_INDEX[first], LABEL_INDEX[second]
        matrix[i, j] = matrix[j, i] = latent_for_binary_correlation(PREVALENCE[first], PREVALENCE[second], target)
    fixed = nearest_positive_definite(matrix, MIN_EIGENVALUE)
    np.linalg.cholesky(fixed)  # raises if the nudge failed
    fixed.setflags(write=False)
    return fixed


@lru_cache(maxsize=1)
def _copula_factors() -> tuple[np.ndarray, np.ndarray]:
    thresholds = np.array([STANDARD_NORMAL.inv_cdf(1.0 - PREVALENCE[t]) for t in LABEL_TYPES])
    return np.linalg.cholesky(latent_correlation_matrix()), thresholds


def sample_label_vector(rng: np.random.Generator) -> np.ndarray:
    """One draw of the 18 binary labels (bool array in label order)."""
    chol, thresholds = _copula_factors()
    return chol @ rng.standard_normal(len(LABEL_TYPES)) > thresholds


# ---------------------------------------------------------------- attributes, one sampler per type

IdMaker = Callable[[], str]


def _size(rng: np.random.Generator, value: float, lo: float, hi: float) -> float:
    """Clip, then round to 1 mm (mostly), 0.5 mm or 0.25 mm: decimals such as 3.5 and 12.25 reach the reports."""
    step = float(rng.choice([1.0, 0.5, 0.25], p=[0.75, 0.18, 0.07]))
    rounded = round(float(np.clip(value, lo, hi)) / step) * step
    return float(min(max(rounded, lo), hi))


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str], p: list[float] | None = None) -> str:
    return str(options[int(rng.choice(len(options), p=p))])


def _subset(rng: np.random.Generator, options: tuple[str, ...], max_count: int) -> list[str]:
    count = int(rng.integers(1, max_count + 1))
    chosen = set(rng.choice(len(options), size=count, replace=False).tolist())
    return [o for i, o in enumerate(options) if i in chosen]  # canonical order, not draw order


def _lobe_finding(rng, new_id, finding_type: str, weights: list[float], **attrs) -> Finding:
    lobe = _pick(rng, LOBES, weights)
    segment = _pick(rng, LOBE_SEGMENTS[lobe])
    extra = {"segment": segment, **attrs}
    if segment in LINGULAR_SEGMENTS:
        extra["lingula"] = True
    return Finding(new_id(), finding_type, side=side_of_lobe(lobe), lobe=lobe, attrs=extra)


def _medical_material(rng, new_id) -> list[Finding]:
    device = _pick(rng, DEVICES, [0.35, 0.35, 0.30])
    side, region = {
        "pacemaker": ("left", "left_chest_wall"),
        "sternotomy_wires": (None, "sternum"),
        "port_catheter": ("right", "superior_vena_cava"),
    }[device]
    return [Finding(new_id(), "medical_material", side=side, region=region, attrs={"device": device})]


def _arterial(rng, new_id) -> list[Finding]:
    segments = _subset(rng, AORTIC_SEGMENTS, 3)
    return [
        Finding(
            new_id(),
            "arterial_wall_calcification",
            region="aorta",
            severity=_pick(rng, SEVERITIES),
            attrs={"segments": segments},
        )
    ]


def _cardiomegaly(rng, new_id) -> list[Finding]:
    ctr = round(float(rng.uniform(0.55, 0.70)), 2)
    return [Finding(new_id(), "cardiomegaly", region="heart", severity=_pick(rng, SEVERITIES), attrs={"ctr": ctr})]


def _pericardial(rng, new_id) -> list[Finding]:
    return [
        Finding(new_id(), "pericardial_effusion", region="pericardium", size_mm=_size(rng, rng.uniform(5, 20), 5, 20))
    ]


def _coronary(rng, new_id) -> list[Finding]:
    vessels = _subset(rng, CORONARY_VESSELS, 3)
    return [
        Finding(
            new_id(),
            "coronary_artery_wall_calcification",
            region="coronary_arteries",
            severity=_pick(rng, SEVERITIES),
            attrs={"vessels": vessels},
        )
    ]


def _hiatal(rng, new_id) -> list[Finding]:
    return [
        Finding(
            new_id(),
            "hiatal_hernia",
            region="esophageal_hiatus",
            severity=_pick(rng, ("small", "moderate", "large"), [0.6, 0.3, 0.1]),
        )
    ]


def _lymphadenopathy(rng, new_id) -> list[Finding]:
    count = 1 if rng.random() < 0.7 else 2
    stations = rng.choice(len(LYMPH_NODE_STATIONS), size=count, replace=False)
    return [
        Finding(
            new_id(),
            "lymphadenopathy",
            side=side_of_station(LYMPH_NODE_STATIONS[s]),
            region=LYMPH_NODE_STATIONS[s],
            size_mm=_size(rng, rng.uniform(12, 30), 12, 30),
        )
        for s in sorted(stations.tolist())
    ]


def _emphysema(rng, new_id) -> list[Finding]:
    kind = _pick(rng, ("centrilobular", "paraseptal", "panlobular"), [0.6, 0.3, 0.1])
    lobes = _subset(rng, ("right_upper", "left_upper", "right_lower", "left_lower"), 3)
    sides = {side_of_lobe(lobe) for lobe in lobes}
    side = sides.pop() if len(sides) == 1 else "bilateral"
    return [
        Finding(
            new_id(),
            "emphysema",
            side=side,
            lobe=lobes[0],
            severity=_pick(rng, SEVERITIES),
            attrs={"kind": kind, "lobes": lobes},
        )
    ]


def _atelectasis(rng, new_id) -> list[Finding]:
    kind = _pick(rng, ("subsegmental", "linear", "plate-like", "passive"))
    return [_lobe_finding(rng, new_id, "atelectasis", [0.05, 0.15, 0.35, 0.15, 0.30], kind=kind)]


def _lung_nodule(rng, new_id) -> list[Finding]:
    count = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    out = []
    for _ in range(count):
        base = _lobe_finding(
            rng,
            new_id,
            "lung_nodule",
            [0.28, 0.1, 0.24, 0.18, 0.2],
            density=_pick(rng, ("solid", "part-solid", "ground-glass"), [0.7, 0.15, 0.15]),
        )
        size = _size(rng, rng.lognormal(np.log(6.0), 0.5), NODULE_MIN_MM, 30.0)
        out.append(dataclasses.replace(base, size_mm=size))
    return out


def _lung_opacity(rng, new_id) -> list[Finding]:
    return [
        _lobe_finding(
            rng, new_id, "lung_opacity", [0.2, 0.1, 0.3, 0.15, 0.25], pattern=_pick(rng, ("ground-glass", "hazy"))
        )
    ]


def _consolidation(rng, new_id) -> list[Finding]:
    return [
        _lobe_finding(
            rng, new_id, "consolidation", [0.15, 0.15, 0.3, 0.1, 0.3], air_bronchograms=bool(rng.random() < 0.6)
        )
    ]


def _fibrotic(rng, new_id) -> list[Finding]:
    return [_lobe_finding(rng, new_id, "pulmonary_fibrotic_sequela", [0.3, 0.1, 0.15, 0.3, 0.15])]


def _pleural(rng, new_id) -> list[Finding]:
    side = _pick(rng, SIDES, [0.4, 0.3, 0.3])
    depths = {s: _size(rng, rng.uniform(5, 60), 5, 60) for s in LUNG_SIDES if side in (s, "bilateral")}
    attrs = {"depths_mm": depths} if side == "bilateral" else {}
    return [
        Finding(
            new_id(), "pleural_effusion", side=side, region="pleural_space", size_mm=max(depths.values()), attrs=attrs
        )
    ]


def _diffuse(kind: str) -> Callable[..., list[Finding]]:
    def sample(rng, new_id) -> list[Finding]:
        region = _pick(rng, LUNG_REGIONS)
        return [Finding(new_id(), kind, side=side_of_region(region), region=region, severity=_pick(rng, SEVERITIES))]

    return sample


def _bronchiectasis(rng, new_id) -> list[Finding]:
    return [
        _lobe_finding(
            rng,
            new_id,
            "bronchiectasis",
            [0.15, 0.15, 0.3, 0.1, 0.3],
            kind=_pick(rng, ("cylindrical", "varicose", "traction"), [0.7, 0.15, 0.15]),
        )
    ]


_LABEL_SAMPLERS: dict[str, Callable[..., list[Finding]]] = {
    "medical_material": _medical_material,
    "arterial_wall_calcification": _arterial,
    "cardiomegaly": _cardiomegaly,
    "pericardial_effusion": _pericardial,
    "coronary_artery_wall_calcification": _coronary,
    "hiatal_hernia": _hiatal,
    "lymphadenopathy": _lymphadenopathy,
    "emphysema": _emphysema,
    "atelectasis": _atelectasis,
    "lung_nodule": _lung_nodule,
    "lung_opacity": _lung_opacity,
    "pulmonary_fibrotic_sequela": _fibrotic,
    "pleural_effusion": _pleural,
    "mosaic_attenuation_pattern": _diffuse("mosaic_attenuation_pattern"),
    "peribronchial_thickening": _diffuse("peribronchial_thickening"),
    "consolidation": _consolidation,
    "bronchiectasis": _bronchiectasis,
    "interlobular_septal_thickening": _diffuse("interlobular_septal_thickening"),
}


def _near_miss(kind: str, rng, new_id, used_stations: set[str]) -> Finding:
    if kind == "micronodule":
        base = _lobe_finding(
            rng, new_id, "micronodule", [0.25, 0.1, 0.25, 0.2, 0.2], count=int(rng.integers(1, 6)), below_threshold=True
        )
        return dataclasses.replace(base, size_mm=float(rng.choice([1.0, 1.5, 2.0])))
    free = [s for s in LYMPH_NODE_STATIONS if s not in used_stations]
    station = _pick(rng, free)
    return Finding(
        new_id(),
        "small_lymph_node",
        side=side_of_station(station),
        region=station,
        size_mm=_size(rng, rng.uniform(4, 9), 4, 9),
        attrs={"count": int(rng.integers(1, 4)), "below_threshold": True},
    )


def _distractor(kind: str, rng, new_id) -> Finding:
    if kind == "liver_cyst":
        return Finding(new_id(), kind, side="right", region="liver", size_mm=_size(rng, rng.uniform(5, 30), 5, 30))
    if kind == "adrenal_nodule":
        side = _pick(rng, LUNG_SIDES)
        size = _size(rng, rng.uniform(8, 25), 8, 25)
        return Finding(new_id(), kind, side=side, region=f"{side}_adrenal", size_mm=size)
    if kind == "osteophytes":
        return Finding(new_id(), kind, region="thoracic_spine", severity=_pick(rng, SEVERITIES))
    if kind == "thyroid_nodule":
        side = _pick(rng, LUNG_SIDES)
        return Finding(
            new_id(), kind, side=side, region=f"{side}_thyroid_lobe", size_mm=_size(rng, rng.uniform(5, 25), 5, 25)
        )
    return Finding(new_id(), "gallstone", region="gallbladder", size_mm=_size(rng, rng.uniform(4, 20), 4, 20))


def sample_findings(rng: np.random.Generator) -> list[Finding]:
    """Findings of one CT-RATE-style case: copula labels, their attributes, then near-misses and distractors.

    Ids are ``f1, f2, …`` for label findings and near-misses and ``d1, …`` for distractors. The draw order is fixed
    (labels in protocol order, near-misses, distractors), so the result is a pure function of the generator state.
    """
    present = sample_label_vector(rng)
    finding_ids, distractor_ids = itertools.count(1), itertools.count(1)

    def new_id() -> str:
        return f"f{next(finding_ids)}"

    def new_distractor_id() -> str:
        return f"d{next(distractor_ids)}"

    findings: list[Finding] = []
    for kind, is_present in zip(LABEL_TYPES, present):
        if is_present:
            findings.extend(_LABEL_SAMPLERS[kind](rng, new_id))
    used_stations = {f.region for f in findings if f.type == "lymphadenopathy"}
    for kind in NEAR_MISS_TYPES:
        if rng.random() < NEAR_MISS_PROBABILITY[kind]:
            findings.append(_near_miss(kind, rng, new_id, used_stations))
    for kind in DISTRACTOR_TYPES:
        if rng.random() < DISTRACTOR_PROBABILITY[kind]:
            findings.append(_distractor(kind, rng, new_distractor_id))
    return findings
