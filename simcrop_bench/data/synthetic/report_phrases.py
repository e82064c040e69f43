"""Word-level phrase banks for synthetic CT-RATE-style reports (datasets.md §7.10).

All wording is written for this project (no real report text). Slots such as lobes, stations and sizes are
rendered from the :class:`~simcrop_bench.data.synthetic.findings.Finding` they describe, so that identical wording
with different slots points at different regions (the "hard negatives across cases" rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simcrop_bench.data.synthetic.findings import Finding

LOBE_NAMES = {
    "right_upper": "right upper lobe",
    "right_middle": "right middle lobe",
    "right_lower": "right lower lobe",
    "left_upper": "left upper lobe",
    "left_lower": "left lower lobe",
}
SEGMENT_NAMES = {
    "apical": "apical",
    "posterior": "posterior",
    "anterior": "anterior",
    "lateral": "lateral",
    "medial": "medial",
    "superior": "superior",
    "anterior_basal": "anterior basal",
    "lateral_basal": "lateral basal",
    "posterior_basal": "posterior basal",
    "apicoposterior": "apicoposterior",
    "superior_lingular": "superior lingular",
    "inferior_lingular": "inferior lingular",
    "anteromedial_basal": "anteromedial basal",
}
STATION_NAMES = {
    "prevascular": "prevascular",
    "right_paratracheal": "right paratracheal",
    "left_paratracheal": "left paratracheal",
    "subcarinal": "subcarinal",
    "right_hilar": "right hilar",
    "left_hilar": "left hilar",
    "right_axillary": "right axillary",
    "left_axillary": "left axillary",
}
REGION_NAMES = {  # with their determiner: "in both lungs", "in the right lung"
    "both_lungs": "both lungs",
    "right_lung": "the right lung",
    "left_lung": "the left lung",
    "both_lower_lobes": "both lower lobes",
    "both_upper_lobes": "both upper lobes",
}
AORTA_NAMES = {"ascending": "ascending aorta", "arch": "aortic arch", "descending": "descending aorta"}
CORONARY_NAMES = {"left_anterior_descending": "left anterior descending", "circumflex": "circumflex", "right": "right"}
COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}

VERBS_ONE = ("is seen", "is noted", "is present", "is observed", "is identified")
VERBS_MANY = ("are seen", "are noted", "are present", "are observed", "are identified")


def mm(value: float) -> str:
    """A size without trailing zeros: 12.0 -> "12", 12.25 -> "12.25"."""
    return f"{value:g}"


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def join_list(items: Sequence[str], conjunction: str = "and") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


@dataclass
class Phrasing:
    """Random choices of one report: the report's own generator plus its typographic-noise switches."""

    rng: np.random.Generator
    approx: bool = False  # noise: sizes sometimes written "approx. 12 mm"

    def pick(self, options: Sequence):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def seen(self, plural: bool = False) -> str:
        return self.pick(VERBS_MANY if plural else VERBS_ONE)

    def measuring(self, value: float) -> str:
        """ "measuring 12 mm", or with the noise switch "measuring approx. 12 mm"."""
        prefix = "approx. " if self.approx and self.chance(0.6) else ""
        return f"measuring {prefix}{mm(value)} mm"

    def shuffled(self, items: list) -> list:
        order = self.rng.permutation(len(items))
        return [items[i] for i in order]


# ---------------------------------------------------------------- slots


def lobe_phrase(finding: Finding, ph: Phrasing) -> str:
    """ "the right lower lobe"; a lingular finding is sometimes called "the lingula"."""
    if finding.attrs.get("lingula") and ph.chance(0.5):
        return "the lingula"
    return f"the {LOBE_NAMES[finding.lobe]}"


def lobes_phrase(lobes: Sequence[str]) -> str:
    """ "the right upper lobe", "both upper lobes", "the right upper and left lower lobes"."""
    if sorted(lobes) == ["left_upper", "right_upper"]:
        return "both upper lobes"
    if sorted(lobes) == ["left_lower", "right_lower"]:
        return "both lower lobes"
    short = [LOBE_NAMES[lobe].removesuffix(" lobe") for lobe in lobes]
    return f"the {join_list(short)} lobe{'s' if len(short) > 1 else ''}"


def segment_phrase(finding: Finding) -> str:
    return f"the {SEGMENT_NAMES[finding.attrs['segment']]} segment of the {LOBE_NAMES[finding.lobe]}"


def aorta_phrase(segments: Sequence[str]) -> str:
    names = [AORTA_NAMES[s] for s in segments]
    if names == ["ascending aorta", "descending aorta"]:
        return "ascending and descending aorta"
    return join_list(names)


def coronary_phrase(vessels: Sequence[str]) -> str:
    names = join_list([CORONARY_NAMES[v] for v in vessels])
    return f"{names} coronary arter{'ies' if len(vessels) > 1 else 'y'}"


def station_phrase(station: str) -> str:
    return STATION_NAMES[station]


# ---------------------------------------------------------------- negation frames (§7.10 "Negations")

# How an absent label type is named inside a negation; every name is matched by the labeller's patterns.
NEGATION_NOUNS: dict[str, tuple[str, ...]] = {
    "medical_material": ("pacemaker or other implanted device", "indwelling catheter"),
    "arterial_wall_calcification": ("aortic wall calcification", "calcification of the aortic wall"),
    "cardiomegaly": ("cardiomegaly", "cardiac enlargement"),
    "pericardial_effusion": ("pericardial effusion", "pericardial fluid"),
    "coronary_artery_wall_calcification": ("coronary artery calcification", "calcification of the coronary arteries"),
    "hiatal_hernia": ("hiatal hernia", "hiatus hernia"),
    "lymphadenopathy": ("enlarged lymph node", "lymphadenopathy"),
    "emphysema": ("emphysema", "emphysematous change"),
    "atelectasis": ("atelectasis",),
    "lung_nodule": ("nodule", "pulmonary nodule"),
    "lung_opacity": ("ground-glass opacity", "ground glass attenuation", "GGO", "focal opacity"),
    "pulmonary_fibrotic_sequela": ("fibrotic change", "scarring"),
    "pleural_effusion": ("pleural effusion", "pleural fluid"),
    "mosaic_attenuation_pattern": ("mosaic attenuation", "mosaic attenuation pattern"),
    "peribronchial_thickening": ("peribronchial thickening", "bronchial wall thickening"),
    "consolidation": ("consolidation",),
    "bronchiectasis": ("bronchiectasis",),
    "interlobular_septal_thickening": ("interlobular septal thickening", "septal thickening"),
}
NEGATION_FORMS = ("no", "there_is_no", "without", "not_seen", "absent", "free_of", "negative_for")


def negative_sentence(
    nouns: Sequence[str], subject: str, form: str, ph: Phrasing, where: str = "", otherwise: bool = False
) -> str:
    """One sentence negating every noun in ``nouns`` with the given negation form.

    ``subject`` names the structure ("the lungs", "both pleural spaces"); ``where`` is an optional location
    ("in the left lung"); ``otherwise`` marks a section that also has positive findings.
    The coordinated list follows the cue (or precedes "is not seen"/"is absent"), so the
    labeller must negate the whole list.
    """
    many = len(nouns) > 1
    listed = join_list(nouns, "or")
    tail = f" {where}" if where else ""
    if form == "no":
        return cap(f"no {listed} {ph.pick(('is seen', 'is identified', 'is evident', 'is detected'))}{tail}.")
    if form == "there_is_no":
        return f"There is no {ph.pick(('', 'evidence of '))}{listed}{tail}."
    if form == "without":
        clear = "otherwise clear" if otherwise else "clear"
        return cap(f"{subject} {'are' if subject_is_plural(subject) else 'is'} {clear}{tail}, without {listed}.")
    if form == "not_seen":
        verb = ph.pick(("seen", "observed", "identified"))
        return cap(f"{join_list(nouns, 'and')} {'are' if many else 'is'} not {verb}{tail}.")
    if form == "absent":
        return cap(f"{join_list(nouns, 'and')} {'are' if many else 'is'} absent{tail}.")
    if form == "free_of":
        return cap(
            f"{subject} {'are' if subject_is_plural(subject) else 'is'} free of {join_list(nouns, 'and')}{tail}."
        )
    if form == "negative_for":
        return cap(f"{ph.pick(('the examination', 'the study'))} is negative for {listed}{tail}.")
    raise ValueError(f"unknown negation form {form!r}")


def subject_is_plural(subject: str) -> bool:
    last = subject.split()[-1]
    return last.endswith("s") and not last.endswith("ss")


# ---------------------------------------------------------------- normal sentences per section

NORMAL_SENTENCES: dict[str, tuple[str, ...]] = {
    "airways": (
        "The central airways, trachea and main bronchi, are patent.",
        "No endoluminal lesion is seen in the trachea or the main bronchi.",
        "The trachea and both main bronchi are patent and of normal calibre.",
        "Trachea and main bronchi are midline, with no intraluminal content.",
    ),
    "heart_vessels": (
        "Heart size is normal.",
        "The heart is not enlarged, and the mediastinal vessels have normal calibre.",
        "Heart size and the calibre of the mediastinal vessels are within normal limits.",
        "The heart has normal dimensions.",
    ),
    "aorta": (
        "The thoracic aorta is of normal diameter without wall calcification.",
        "The thoracic aorta has a normal calibre, and no calcified plaque is seen in its wall.",
        "No atherosclerotic calcification is seen in the thoracic aorta, which has a normal diameter.",
        "The aortic wall is free of calcification, and the aortic diameter is normal.",
    ),
    "pericardium": (
        "No pericardial fluid or thickening is seen.",
        "The pericardium is not thickened and contains no fluid.",
        "There is no pericardial effusion.",
        "Pericardial effusion is absent.",
    ),
    "esophagus": (
        "The esophagus is unremarkable within the scanned field, and no hiatal hernia is present.",
        "The esophagus has a normal course and calibre, without hiatal hernia.",
        "No hiatus hernia is seen; the esophagus is unremarkable.",
        "The esophageal hiatus is negative for herniation of the stomach.",
    ),
    "lymph_nodes": (
        "No enlarged lymph node is seen in the mediastinal, hilar or axillary regions.",
        "There is no mediastinal, hilar or axillary lymphadenopathy.",
        "Mediastinal and hilar lymph nodes are not enlarged.",
        "Lymph nodes of pathological size are not observed in the mediastinum, hila or axillae.",
    ),
    "lungs": (
        "Both lungs are clear, without nodule, consolidation or ground-glass opacity.",
        "The lung parenchyma is clear.",
        "Both lungs are normally aerated.",
    ),
    "pleura": (
        "There is no pleural effusion or pleural thickening.",
        "No pleural fluid is seen on either side.",
        "Both pleural spaces are free of effusion.",
        "Pleural effusion is not observed.",
    ),
    "upper_abdomen": (
        "The visualised upper abdominal organs are unremarkable.",
        "The imaged parts of the liver, spleen and adrenal glands are unremarkable.",
        "No abnormality is seen in the upper abdominal sections included in the scan.",
    ),
    "bones": (
        "No lytic or sclerotic bone lesion is identified.",
        "The bony structures show no lytic or destructive lesion.",
        "The bones within the field of view are free of focal lesions.",
    ),
}
# Closing sentences for a section that also has positive findings.
OTHERWISE_SENTENCES: dict[str, tuple[str, ...]] = {
    "airways": ("The trachea and main bronchi are otherwise patent.",),
    "heart_vessels": ("The mediastinal vessels have normal calibre.", "The main pulmonary artery is of normal width."),
    "aorta": ("The aortic diameter is within normal limits.",),
    "esophagus": ("The esophagus is otherwise unremarkable.",),
    "lungs": ("The remaining lung parenchyma is unremarkable.", "The rest of the lung parenchyma is normally aerated."),
    "upper_abdomen": ("The other visualised upper abdominal organs are unremarkable.",),
    "bones": ("No lytic or sclerotic bone lesion is identified.", "No destructive bone lesion is seen."),
}
# Optional detail sentences (no finding words at all); long reports use many of them (§7.10 "Length").
DETAIL_SENTENCES: dict[str, tuple[str, ...]] = {
    "airways": (
        "The carina is sharp and lies in the midline.",
        "The lobar bronchi are patent on both sides.",
        "The tracheal wall has a normal thickness throughout its course.",
    ),
    "heart_vessels": (
        "The main pulmonary artery is of normal width.",
        "The superior vena cava is unremarkable.",
        "The cardiac chambers appear proportionate to each other.",
        "The pulmonary veins drain normally into the left atrium.",
    ),
    "aorta": (
        "The aortic arch shows a normal branching pattern.",
        "The descending thoracic aorta follows a normal course along the spine.",
    ),
    "pericardium": ("The pericardial recesses are unremarkable.",),
    "esophagus": ("The esophageal wall has a normal thickness.", "There is no air-fluid level in the esophagus."),
    "lymph_nodes": (
        "The thyroid gland is of normal size within the imaged field.",
        "The mediastinal fat planes are preserved.",
    ),
    "lungs": (
        "The fissures are in normal position.",
        "The lung volumes are preserved on both sides.",
        "The segmental bronchi are patent.",
        "The pulmonary vasculature tapers normally towards the periphery.",
    ),
    "pleura": ("The costophrenic angles are sharp.", "The diaphragmatic domes are in normal position."),
    "upper_abdomen": (
        "The spleen is of normal size.",
        "The adrenal glands are of normal thickness.",
        "The liver contour is smooth in the imaged sections.",
    ),
    "bones": (
        "The thoracic vertebral bodies have preserved height.",
        "The sternum and ribs are intact.",
        "The soft tissues of the chest wall are unremarkable.",
    ),
}
TRANSITIONS = (
    "The lung parenchyma was evaluated in the lung window.",
    "Assessment in the lung window follows.",
    "Lung window images were reviewed.",
)
TRANSITIONS_WITH_COLON = ("Review of the lung window images", "In the lung window", "Lung window evaluation")

CLINICAL_INFORMATION = (
    "Cough and shortness of breath.",
    "Fever for three days.",
    "Chest pain.",
    "Follow-up examination.",
    "Preoperative evaluation.",
    "Weight loss.",
    "Dyspnea on exertion.",
)
TECHNIQUE = (
    "Non-contrast thin-section chest CT.",
    "Axial images of the thorax were obtained without intravenous contrast, with multiplanar reconstructions.",
    "Helical chest CT without contrast medium, 1 mm reconstructions.",
)
NORMAL_IMPRESSIONS = (
    "No acute thoracic abnormality.",
    "No significant abnormality in the thorax.",
    "Unremarkable chest CT.",
)
