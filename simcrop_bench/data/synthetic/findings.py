"""CT-RATE finding specs and their sampling (datasets.md §2.6, §7.2, §7.5, §7.6).

A :class:`Finding` is one entry of a case spec's ``findings`` list: a plain, JSON-serialisable record from which the
report (``reports.py``), the 18 CT-RATE labels (:func:`ctrate_labels`) and, later, the masks are rendered.
:func:`sample_findings` draws the 18 binary labels from a Gaussian copula calibrated to the aggregate prevalences and
pairwise correlations of §2.6 (the only statistics the project may use), then each finding's attributes
independently, then sub-threshold near-misses and distractors that must never become labels.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from simcrop_bench.data.synthetic.copula import (
    STANDARD_NORMAL,
    latent_for_binary_correlation,
    nearest_positive_definite,
)

# ---------------------------------------------------------------- vocabulary

# Type ids of the 18 labels, in the column order of protocol.md §2.1.
LABEL_TYPES: tuple[str, ...] = (
    "medical_material",
    "arterial_wall_calcification",
    "cardiomegaly",
    "pericardial_effusion",
    "coronary_artery_wall_calcification",
    "hiatal_hernia",
    "lymphadenopathy",
    "emphysema",
    "atelectasis",
    "lung_nodule",
    "lung_opacity",
    "pulmonary_fibrotic_sequela",
    "pleural_effusion",
    "mosaic_attenuation_pattern",
    "peribronchial_thickening",
    "consolidation",
    "bronchiectasis",
    "interlobular_septal_thickening",
)
LABEL_INDEX: dict[str, int] = {t: i for i, t in enumerate(LABEL_TYPES)}
NEAR_MISS_TYPES: tuple[str, ...] = ("micronodule", "small_lymph_node")
DISTRACTOR_TYPES: tuple[str, ...] = ("liver_cyst", "adrenal_nodule", "osteophytes", "thyroid_nodule", "gallstone")
FINDING_TYPES: tuple[str, ...] = LABEL_TYPES + NEAR_MISS_TYPES + DISTRACTOR_TYPES

LOBES: tuple[str, ...] = ("right_upper", "right_middle", "right_lower", "left_upper", "left_lower")
LUNG_SIDES: tuple[str, ...] = ("right", "left")
SIDES: tuple[str, ...] = ("right", "left", "bilateral")
# Segments per lobe; the lingula is part of the left upper lobe (attr "lingula": True on the finding).
LOBE_SEGMENTS: dict[str, tuple[str, ...]] = {
    "right_upper": ("apical", "posterior", "anterior"),
    "right_middle": ("lateral", "medial"),
    "right_lower": ("superior", "anterior_basal", "lateral_basal", "posterior_basal"),
    "left_upper": ("apicoposterior", "anterior", "superior_lingular", "inferior_lingular"),
    "left_lower": ("superior", "anteromedial_basal", "lateral_basal", "posterior_basal"),
}
LINGULAR_SEGMENTS: tuple[str, ...] = ("superior_lingular", "inferior_lingular")
# Stations with a side name the side in the patient frame; the others are midline.
LYMPH_NODE_STATIONS: tuple[str, ...] = (
    "prevascular",
    "right_paratracheal",
    "left_paratracheal",
    "subcarinal",
    "right_hilar",
    "left_hilar",
    "right_axillary",
    "left_axillary",
)
# Diffuse findings are placed in one of these lung regions rather than one lobe.
LUNG_REGIONS: tuple[str, ...] = ("both_lungs", "right_lung", "left_lung", "both_lower_lobes", "both_upper_lobes")
AORTIC_SEGMENTS: tuple[str, ...] = ("ascending", "arch", "descending")
CORONARY_VESSELS: tuple[str, ...] = ("left_anterior_descending", "circumflex", "right")
DEVICES: tuple[str, ...] = ("pacemaker", "sternotomy_wires", "port_catheter")
SEVERITIES: tuple[str, ...] = ("mild", "moderate", "marked")

# Project rules (§7.5, §7.11): smaller objects are drawn and described but never positive.
NODULE_MIN_MM = 3.0
LYMPH_NODE_MIN_SHORT_AXIS_MM = 10.0

# ---------------------------------------------------------------- aggregate statistics (§2.6)

PREVALENCE: dict[str, float] = dict(
    zip(
        LABEL_TYPES,
        (
            0.122,
            0.281,
            0.108,
            0.072,
            0.251,
            0.143,
            0.257,
            0.194,
            0.258,
            0.455,
            0.370,
            0.268,
            0.121,
            0.075,
            0.106,
            0.177,
            0.101,
            0.079,
        ),
    )
)
# Largest pairwise Pearson correlations of the binary labels; all other pairs are left to the baseline below.
TARGET_CORRELATIONS: dict[tuple[str, str], float] = {
    ("arterial_wall_calcification", "coronary_artery_wall_calcification"): 0.74,
    ("arterial_wall_calcification", "cardiomegaly"): 0.33,
    ("lung_opacity", "consolidation"): 0.33,
    ("cardiomegaly", "coronary_artery_wall_calcification"): 0.32,
    ("pericardial_effusion", "pleural_effusion"): 0.32,
    ("peribronchial_thickening", "bronchiectasis"): 0.30,
    ("cardiomegaly", "pleural_effusion"): 0.28,
    ("arterial_wall_calcification", "emphysema"): 0.28,
}
# Latent correlation shared by every pair not listed above: a weak "sick patient" factor. With it about 11 % of the
# draws have no positive label (§2.6: 11.1 %); independent labels would give about 3 %. Unlisted pairs then
# reach a phi correlation of about 0.1, below the smallest listed one.
BASELINE_LATENT_CORRELATION = 0.20
MIN_EIGENVALUE = 1e-3  # floor used when nudging the latent matrix to positive definite

NEAR_MISS_PROBABILITY = {"micronodule": 0.18, "small_lymph_node": 0.25}
DISTRACTOR_PROBABILITY = {
    "liver_cyst": 0.08,
    "adrenal_nodule": 0.05,
    "osteophytes": 0.12,
    "thyroid_nodule": 0.05,
    "gallstone": 0.05,
}


# ---------------------------------------------------------------- the spec record


@dataclass(frozen=True)
class Finding:
    """One finding of a case spec; ``attrs`` holds type-specific plain-JSON details (count, segment, kind, …)."""

    id: str
    type: str
    side: str | None = None
    lobe: str | None = None
    region: str | None = None
    size_mm: float | None = None
    severity: str | None = None
    attrs: dict = field(default_factory=dict)

    @property
    def is_label(self) -> bool:
        return self.type in LABEL_INDEX

    @property
    def is_near_miss(self) -> bool:
        return self.type in NEAR_MISS_TYPES

    @property
    def is_distractor(self) -> bool:
        return self.type in DISTRACTOR_TYPES

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Finding:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def __hash__(self) -> int:  # attrs is a dict; identity within a case is (id, type)
        return hash((self.id, self.type))


# Fallbacks for hand-written specs (tests, other twins): what render_report needs but a spec may omit.
_DEFAULT_SIZE_MM = {
    "lung_nodule": 6.0,
    "lymphadenopathy": 15.0,
    "pericardial_effusion": 8.0,
    "pleural_effusion": 20.0,
    "micronodule": 2.0,
    "small_lymph_node": 7.0,
    "liver_cyst": 10.0,
    "adrenal_nodule": 12.0,
    "thyroid_nodule": 10.0,
    "gallstone": 8.0,
}
_DEFAULT_ATTRS = {
    "medical_material": {"device": "sternotomy_wires"},
    "arterial_wall_calcification": {"segments": ["descending"]},
    "cardiomegaly": {"ctr": 0.6},
    "coronary_artery_wall_calcification": {"vessels": ["left_anterior_descending"]},
    "emphysema": {"kind": "centrilobular"},
    "atelectasis": {"kind": "subsegmental"},
    "lung_nodule": {"density": "solid"},
    "lung_opacity": {"pattern": "ground-glass"},
    "consolidation": {"air_bronchograms": False},
    "bronchiectasis": {"kind": "cylindrical"},
    "micronodule": {"count": 1},
    "small_lymph_node": {"count": 1},
}
_LOBE_TYPES = (
    "atelectasis",
    "lung_nodule",
    "lung_opacity",
    "consolidation",
    "pulmonary_fibrotic_sequela",
    "bronchiectasis",
    "micronodule",
)
_REGION_TYPES = ("mosaic_attenuation_pattern", "peribronchial_thickening", "interlobular_septal_thickening")
_SEVERITY_TYPES = (
    "arterial_wall_calcification",
    "cardiomegaly",
    "coronary_artery_wall_calcification",
    "hiatal_hernia",
    "emphysema",
    "osteophytes",
    *_REGION_TYPES,
)


def with_defaults(finding: Finding) -> Finding:
    """The finding with every slot the report needs filled in (sampled findings are returned unchanged)."""
    kind, changes = finding.type, {}
    attrs = {**_DEFAULT_ATTRS.get(kind, {}), **finding.attrs}
    lobe = finding.lobe or ("right_lower" if kind in _LOBE_TYPES else None)
    if kind in _LOBE_TYPES:
        attrs.setdefault("segment", LOBE_SEGMENTS[lobe][0])
    if kind == "emphysema":
        attrs.setdefault("lobes", [lobe or "right_upper"])
        lobe = lobe or attrs["lobes"][0]
    region = finding.region
    if kind in ("lymphadenopathy", "small_lymph_node"):
        region = region or "subcarinal"
    elif kind in _REGION_TYPES:
        region = region or "both_lungs"
    size = finding.size_mm if finding.size_mm is not None else _DEFAULT_SIZE_MM.get(kind)
    side = finding.side
    if side is None and lobe:
        side = side_of_lobe(lobe)
    elif side is None and kind in ("lymphadenopathy", "small_lymph_node"):
        side = side_of_station(region)
    elif side is None and kind in ("adrenal_nodule", "thyroid_nodule", "pleural_effusion"):
        side = "right"
    if kind == "pleural_effusion" and side == "bilateral":
        attrs.setdefault("depths_mm", {"right": size, "left": size})
    severity = finding.severity
    if severity is None and kind in _SEVERITY_TYPES:
        severity = "small" if kind == "hiatal_hernia" else "moderate"
    for name, value in (
        ("lobe", lobe),
        ("region", region),
        ("size_mm", size),
        ("side", side),
        ("severity", severity),
        ("attrs", attrs),
    ):
        if value != getattr(finding, name):
            changes[name] = value
    return dataclasses.replace(finding, **changes) if changes else finding


def counts_as_label(finding: Finding) -> bool:
    """Whether the finding makes its CT-RATE label positive (§7.6: non-distractor and above threshold)."""
    if not finding.is_label:
        return False
    size = finding.size_mm
    if finding.type == "lung_nodule" and size is not None and size < NODULE_MIN_MM:
        return False
    if finding.type == "lymphadenopathy" and size is not None and size < LYMPH_NODE_MIN_SHORT_AXIS_MM:
        return False
    return True


def ctrate_labels(findings: Iterable[Finding]) -> list[int]:
    """The 18 CT-RATE labels derived from the spec, in the order of :data:`CTRATE_LABELS`."""
    labels = [0] * len(LABEL_TYPES)
    for finding in findings:
        if counts_as_label(finding):
            labels[LABEL_INDEX[finding.type]] = 1
    return labels


def side_of_lobe(lobe: str) -> str:
    return lobe.split("_", 1)[0]


def side_of_station(station: str) -> str | None:
    head = station.split("_", 1)[0]
    return head if head in LUNG_SIDES else None


def side_of_region(region: str) -> str:
    return {"right_lung": "right", "left_lung": "left"}.get(region, "bilateral")


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
