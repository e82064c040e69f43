"""CT-RATE finding specs (datasets.md §2.6, §7.2, §7.5, §7.6).

A :class:`Finding` is one entry of a case spec's ``findings`` list: a plain, JSON-serialisable record from which the
report (``reports.py``), the 18 CT-RATE labels (:func:`ctrate_labels`) and, later, the masks are rendered.
Sampling them (the copula over the 18 labels, one attribute sampler per type) is in
:mod:`~simcrop_bench.data.synthetic.finding_sampling`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

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
