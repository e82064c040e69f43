"""Sentence templates of synthetic CT-RATE-style reports (datasets.md §7.10), written for this project.

Each builder takes the finding(s) a sentence describes and a :class:`Phrasing` and returns one sentence that
names side, lobe, station, size and count exactly as the spec says. Every label type has 3-4 paraphrases; near-miss
and distractor types have their own templates; :func:`impression_item` gives the short impression form.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from simcrop_bench.data.synthetic.findings import Finding
from simcrop_bench.data.synthetic.report_phrases import (
    COUNT_WORDS,
    LOBE_NAMES,
    REGION_NAMES,
    Phrasing,
    aorta_phrase,
    cap,
    coronary_phrase,
    lobe_phrase,
    lobes_phrase,
    mm,
    segment_phrase,
    station_phrase,
)

Builder = Callable[[Sequence[Finding], Phrasing], str]

# Report section of every finding type (device-dependent for medical material, see section_of).
SECTION_OF_TYPE: dict[str, str] = {
    "arterial_wall_calcification": "aorta",
    "cardiomegaly": "heart_vessels",
    "pericardial_effusion": "pericardium",
    "coronary_artery_wall_calcification": "heart_vessels",
    "hiatal_hernia": "esophagus",
    "lymphadenopathy": "lymph_nodes",
    "emphysema": "lungs",
    "atelectasis": "lungs",
    "lung_nodule": "lungs",
    "lung_opacity": "lungs",
    "pulmonary_fibrotic_sequela": "lungs",
    "pleural_effusion": "pleura",
    "mosaic_attenuation_pattern": "lungs",
    "peribronchial_thickening": "lungs",
    "consolidation": "lungs",
    "bronchiectasis": "lungs",
    "interlobular_septal_thickening": "lungs",
    "micronodule": "lungs",
    "small_lymph_node": "lymph_nodes",
    "liver_cyst": "upper_abdomen",
    "adrenal_nodule": "upper_abdomen",
    "gallstone": "upper_abdomen",
    "osteophytes": "bones",
    "thyroid_nodule": "airways",
}


def section_of(finding: Finding) -> str:
    if finding.type == "medical_material":
        return "bones" if finding.attrs.get("device") == "sternotomy_wires" else "heart_vessels"
    return SECTION_OF_TYPE[finding.type]


# ---------------------------------------------------------------- positive paraphrases, one builder per label


def _medical_material(group, ph):
    device = group[0].attrs["device"]
    if device == "pacemaker":
        return ph.pick(
            (
                f"A cardiac pacemaker {ph.seen()} in the left anterior chest wall, "
                "with its lead ending in the right heart.",
                "A pacemaker generator lies in the left pectoral region, and its lead ends in the right ventricle.",
                "Pacemaker in situ, with the generator in the left chest wall and the lead in the right heart.",
            )
        )
    if device == "sternotomy_wires":
        return ph.pick(
            (
                "Sternotomy wires are noted.",
                f"Median sternotomy wires {ph.seen(True)} along the sternum.",
                "Postoperative changes of sternotomy are seen, with intact sternal wires.",
            )
        )
    return ph.pick(
        (
            "A port catheter tip projects over the superior vena cava.",
            "A right-sided port catheter is present, with its tip in the superior vena cava.",
            "A central venous port catheter ends in the superior vena cava.",
        )
    )


def _arterial(group, ph):
    where = aorta_phrase(group[0].attrs["segments"])
    return ph.pick(
        (
            f"Atherosclerotic calcification is present in the wall of the {where}.",
            f"Calcified plaques line the {where}.",
            f"{cap(group[0].severity)} calcified atherosclerotic plaques {ph.seen(True)} in the {where}.",
            f"There are calcific plaques along the wall of the {where}.",
        )
    )


def _cardiomegaly(group, ph):
    ctr = f"{group[0].attrs['ctr']:.2f}"
    return ph.pick(
        (
            "The heart is enlarged.",
            f"Cardiomegaly is present, with a cardiothoracic ratio of about {ctr}.",
            f"Heart size is increased ({group[0].severity} cardiomegaly).",
            f"The cardiac silhouette is enlarged, with a cardiothoracic ratio of {ctr}.",
        )
    )


def _pericardial(group, ph):
    t = mm(group[0].size_mm)
    return ph.pick(
        (
            f"A pericardial effusion up to {t} mm thick is present.",
            f"Fluid surrounds the heart within the pericardium, {ph.measuring(group[0].size_mm)}.",
            f"There is a pericardial effusion with a maximum thickness of {t} mm.",
            f"Pericardial fluid {ph.seen()}, up to {t} mm in depth.",
        )
    )


def _coronary(group, ph):
    f = group[0]
    vessels = coronary_phrase(f.attrs["vessels"])
    return ph.pick(
        (
            f"Calcification is seen along the {vessels}.",
            f"Coronary artery wall calcifications are present ({vessels}).",
            f"Calcified plaques {ph.seen(True)} in the {vessels}.",
            f"There is {f.severity} coronary artery calcification, involving the {vessels}.",
        )
    )


def _hiatal(group, ph):
    size = group[0].severity
    return ph.pick(
        (
            f"A {size} hiatal hernia is present.",
            f"Part of the stomach lies above the diaphragm, consistent with a {size} hiatal hernia.",
            f"A {size} sliding hiatus hernia {ph.seen()}.",
        )
    )


def _lymphadenopathy(group, ph):
    f = group[0]
    station, s = station_phrase(f.region), mm(f.size_mm)
    return ph.pick(
        (
            f"An enlarged {station} lymph node measures {s} mm in short axis.",
            f"Lymphadenopathy {ph.seen()} at the {station} station ({s} mm).",
            f"There is a pathologically enlarged {station} lymph node, {s} mm in short axis.",
            f"An enlarged lymph node is seen in the {station} region, {ph.measuring(f.size_mm)} in short axis.",
        )
    )


def _emphysema(group, ph):
    f = group[0]
    kind, where = f.attrs["kind"], lobes_phrase(f.attrs["lobes"])
    options = [
        f"{cap(kind)} emphysema is seen, most marked in {where}.",
        f"There are {kind} emphysematous changes in {where}.",
        f"{cap(f.severity)} {kind} emphysema {ph.seen()} in {where}.",
    ]
    if kind == "paraseptal":
        options.append(f"Paraseptal emphysema with small subpleural bullae is present in {where}.")
    return ph.pick(options)


def _atelectasis(group, ph):
    f = group[0]
    kind, where = f.attrs["kind"], lobe_phrase(f, ph)
    return ph.pick(
        (
            f"There is {kind} atelectasis in {where}.",
            f"A band of atelectasis {ph.seen()} in {where}.",
            f"{cap(kind)} atelectatic changes are noted in {where}.",
            f"Linear densities in {where} likely represent {kind} atelectasis.",
        )
    )


def _nodules(group, ph):
    largest = max(group, key=lambda f: f.size_mm)
    density = largest.attrs["density"]
    if len(group) == 1:
        return ph.pick(
            (
                f"A {mm(largest.size_mm)} mm {density} nodule {ph.seen()} in {segment_phrase(largest)}.",
                f"In {lobe_phrase(largest, ph)}, there is a {density} nodule {ph.measuring(largest.size_mm)}.",
                f"A {density} pulmonary nodule of {mm(largest.size_mm)} mm {ph.seen()} in {segment_phrase(largest)}.",
            )
        )
    count = COUNT_WORDS[len(group)]
    where = (
        lobe_phrase(largest, ph) if all(f.attrs.get("lingula") for f in group) else f"the {LOBE_NAMES[largest.lobe]}"
    )
    return ph.pick(
        (
            f"{cap(count)} nodules are present in {where}, the largest {ph.measuring(largest.size_mm)}.",
            f"There are {count} nodules in {where}, up to {mm(largest.size_mm)} mm in diameter.",
            f"{cap(count)} pulmonary nodules {ph.seen(True)} in {where}; "
            f"the largest measures {mm(largest.size_mm)} mm.",
        )
    )


def _opacity(group, ph):
    where = lobe_phrase(group[0], ph)
    if group[0].attrs["pattern"] == "hazy":
        return ph.pick(
            (
                f"There is hazy increased attenuation in {where}.",
                f"Hazy ground-glass opacities {ph.seen(True)} in {where}.",
            )
        )
    return ph.pick(
        (
            f"Ground-glass opacity is present in {where}.",
            f"Patchy ground glass attenuation {ph.seen()} in {where}.",
            f"A focal area of GGO {ph.seen()} in {where}.",
        )
    )


def _consolidation(group, ph):
    f = group[0]
    where = lobe_phrase(f, ph)
    if f.attrs["air_bronchograms"]:
        return ph.pick(
            (
                f"Consolidation with air bronchograms is present in {where}.",
                f"An area of consolidation containing air bronchograms {ph.seen()} in {where}.",
            )
        )
    return ph.pick(
        (
            f"An area of consolidation occupies part of {where}.",
            f"Consolidative changes {ph.seen(True)} in {where}.",
            f"{cap(where)} shows airspace consolidation.",
        )
    )


def _fibrotic(group, ph):
    where = lobe_phrase(group[0], ph)
    return ph.pick(
        (
            f"Fibrotic bands and scarring are seen in {where}.",
            f"Linear fibrotic sequelae are present in {where}.",
            f"Parenchymal scarring with fibrotic strands {ph.seen()} in {where}.",
            f"Post-inflammatory fibrotic changes are noted in {where}.",
        )
    )


def _pleural(group, ph):
    f = group[0]
    if f.side == "bilateral":
        right, left = mm(f.attrs["depths_mm"]["right"]), mm(f.attrs["depths_mm"]["left"])
        return ph.pick(
            (
                f"Bilateral pleural effusions are present, {right} mm on the right and {left} mm on the left.",
                f"There is pleural fluid on both sides (right {right} mm, left {left} mm).",
                f"Pleural effusions {ph.seen(True)} on both sides, "
                f"up to {right} mm on the right and {left} mm on the left.",
            )
        )
    t = mm(f.size_mm)
    return ph.pick(
        (
            f"A {f.side} pleural effusion is present, up to {t} mm deep.",
            f"There is {f.side} pleural fluid {ph.measuring(f.size_mm)}.",
            f"Pleural effusion {ph.seen()} on the {f.side}, with a depth of {t} mm.",
        )
    )


def _mosaic(group, ph):
    where = REGION_NAMES[group[0].region]
    return ph.pick(
        (
            f"A mosaic attenuation pattern {ph.seen()} in {where}.",
            f"Alternating areas of lower and higher lung attenuation give a mosaic appearance in {where}.",
            f"Mosaic attenuation is present in {where}.",
        )
    )


def _peribronchial(group, ph):
    f = group[0]
    where = REGION_NAMES[f.region]
    return ph.pick(
        (
            f"Peribronchial wall thickening is present in {where}.",
            f"The bronchial walls in {where} are thickened.",
            f"There is {f.severity} peribronchial thickening in {where}.",
        )
    )


def _bronchiectasis(group, ph):
    f = group[0]
    where = lobe_phrase(f, ph)
    return ph.pick(
        (
            f"{cap(f.attrs['kind'])} bronchiectasis is present in {where}.",
            f"Dilated bronchi consistent with bronchiectasis {ph.seen(True)} in {where}.",
            f"{cap(f.attrs['kind'])} bronchiectatic changes are noted in {where}.",
        )
    )


def _septal(group, ph):
    where = REGION_NAMES[group[0].region]
    return ph.pick(
        (
            f"Interlobular septal thickening {ph.seen()} in {where}.",
            f"Thickened interlobular septa are present in {where}.",
            f"There is smooth thickening of the interlobular septa in {where}.",
        )
    )


# ---------------------------------------------------------------- near misses and distractors (never labels)


def _micronodule(group, ph):
    f = group[0]
    where = lobe_phrase(f, ph)
    return ph.pick(
        (
            f"A few punctate densities under 3 mm are seen in {where}; no nodule requiring follow-up.",
            f"Tiny micronodules of up to {mm(f.size_mm)} mm are noted in {where}.",
            f"A {mm(f.size_mm)} mm nodule is seen in {where}, too small to require follow-up.",
            f"Scattered micronodules smaller than 3 mm are present in {where}.",
        )
    )


def _small_lymph_node(group, ph):
    f = group[0]
    station, s = station_phrase(f.region), mm(f.size_mm)
    return ph.pick(
        (
            f"Several lymph nodes under 10 mm are seen in the {station} region.",
            f"A {s} mm lymph node is present at the {station} station, within normal size limits.",
            f"Subcentimetric lymph nodes are noted in the {station} region, the largest {s} mm in short axis.",
            f"A few small {station} lymph nodes are seen, none exceeding {s} mm.",
        )
    )


def _distractor(group, ph):
    f = group[0]
    s = mm(f.size_mm) if f.size_mm is not None else ""
    if f.type == "liver_cyst":
        return ph.pick(
            (
                f"A {s} mm simple cyst {ph.seen()} in the right lobe of the liver.",
                f"A well-defined hypodense hepatic lesion of {s} mm is compatible with a cyst.",
            )
        )
    if f.type == "adrenal_nodule":
        return ph.pick(
            (
                f"A {s} mm nodule {ph.seen()} in the {f.side} adrenal gland.",
                f"There is a {f.side} adrenal nodule {ph.measuring(f.size_mm)}.",
            )
        )
    if f.type == "thyroid_nodule":
        return ph.pick(
            (
                f"A {s} mm hypodense nodule {ph.seen()} in the {f.side} lobe of the thyroid gland.",
                f"The {f.side} thyroid lobe contains a nodule of {s} mm.",
            )
        )
    if f.type == "gallstone":
        return ph.pick(
            (
                f"A {s} mm calcified gallstone {ph.seen()} in the gallbladder.",
                f"The gallbladder contains a dense stone of {s} mm.",
            )
        )
    return ph.pick(
        (
            f"Degenerative osteophytes {ph.seen(True)} at the thoracic vertebrae.",
            f"{cap(f.severity)} marginal osteophytes are present along the thoracic spine.",
        )
    )


POSITIVE_BUILDERS: dict[str, Builder] = {
    "medical_material": _medical_material,
    "arterial_wall_calcification": _arterial,
    "cardiomegaly": _cardiomegaly,
    "pericardial_effusion": _pericardial,
    "coronary_artery_wall_calcification": _coronary,
    "hiatal_hernia": _hiatal,
    "lymphadenopathy": _lymphadenopathy,
    "emphysema": _emphysema,
    "atelectasis": _atelectasis,
    "lung_nodule": _nodules,
    "lung_opacity": _opacity,
    "pulmonary_fibrotic_sequela": _fibrotic,
    "pleural_effusion": _pleural,
    "mosaic_attenuation_pattern": _mosaic,
    "peribronchial_thickening": _peribronchial,
    "consolidation": _consolidation,
    "bronchiectasis": _bronchiectasis,
    "interlobular_septal_thickening": _septal,
}
OTHER_BUILDERS: dict[str, Builder] = {
    "micronodule": _micronodule,
    "small_lymph_node": _small_lymph_node,
    "liver_cyst": _distractor,
    "adrenal_nodule": _distractor,
    "osteophytes": _distractor,
    "thyroid_nodule": _distractor,
    "gallstone": _distractor,
}


def describe(group: Sequence[Finding], ph: Phrasing) -> str:
    """The sentence for one finding (or several nodules of one lobe)."""
    kind = group[0].type
    return (POSITIVE_BUILDERS.get(kind) or OTHER_BUILDERS[kind])(group, ph)


# ---------------------------------------------------------------- impression short forms


def impression_item(group: Sequence[Finding], ph: Phrasing) -> str:
    """Short impression form of a positive finding group.

    For example "Right pleural effusion." or "Left lower lobe nodule, 9 mm."
    """
    f = group[0]
    lobe = f.lobe.replace("_", " ") + " lobe" if f.lobe else ""
    kind = f.type
    if kind == "lung_nodule":
        largest = max(group, key=lambda g: g.size_mm)
        if len(group) > 1:
            return f"Multiple {lobe} nodules, the largest {mm(largest.size_mm)} mm."
        return f"{cap(lobe)} nodule, {mm(largest.size_mm)} mm."
    if kind == "pleural_effusion":
        return "Bilateral pleural effusions." if f.side == "bilateral" else f"{cap(f.side)} pleural effusion."
    if kind == "lymphadenopathy":
        return f"{cap(station_phrase(f.region))} lymphadenopathy, {mm(f.size_mm)} mm."
    if kind == "medical_material":
        return {
            "pacemaker": "Cardiac pacemaker in situ.",
            "sternotomy_wires": "Status after sternotomy.",
            "port_catheter": "Port catheter in the superior vena cava.",
        }[f.attrs["device"]]
    fixed = {
        "arterial_wall_calcification": "Atherosclerotic calcification of the thoracic aorta.",
        "coronary_artery_wall_calcification": ph.pick(
            ("Coronary artery calcification.", "Coronary artery wall calcifications.")
        ),
        "cardiomegaly": "Cardiomegaly.",
        "pericardial_effusion": "Pericardial effusion.",
        "hiatal_hernia": "Hiatal hernia.",
        "emphysema": f"{cap(f.attrs.get('kind', ''))} emphysema.",
        "mosaic_attenuation_pattern": "Mosaic attenuation pattern.",
        "peribronchial_thickening": "Peribronchial thickening.",
        "interlobular_septal_thickening": "Interlobular septal thickening.",
    }
    if kind in fixed:
        return fixed[kind]
    noun = {
        "atelectasis": "Atelectasis",
        "lung_opacity": "Ground-glass opacity",
        "consolidation": "Consolidation",
        "pulmonary_fibrotic_sequela": "Fibrotic sequelae",
        "bronchiectasis": "Bronchiectasis",
    }[kind]
    return f"{noun} in the {lobe}."


def incidental_item(finding: Finding) -> str:
    """Impression line for an incidental distractor (never a label)."""
    return {
        "liver_cyst": "Incidental simple liver cyst.",
        "gallstone": "Cholelithiasis.",
        "adrenal_nodule": f"{cap(finding.side or '')} adrenal nodule, {mm(finding.size_mm or 0)} mm, indeterminate.",
        "thyroid_nodule": "Incidental thyroid nodule.",
        "osteophytes": "Degenerative changes of the thoracic spine.",
    }[finding.type]
