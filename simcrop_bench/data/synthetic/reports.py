"""Render a CT-RATE-style report and its sentence index from a finding list (datasets.md §2.7, §7.10, §7.12).

:func:`render_report` walks the fixed CT-RATE section order; every section gets at least one sentence: positives
for present findings, near-miss and distractor descriptions, hard negatives (the same finding type explicitly
negated where it is absent, e.g. the other lung) and negatives covering every absent label type of the section.
Each sentence carries its polarity, finding ids and region, its character span, and the sentence ids that
SimCroP's period rule (simcrop-method.md §3.3) would give it. Wording and noise come only from the ``rng``
passed in (the case's "report" stream), so changing templates never changes images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from simcrop_bench.data.sentences import simcrop_sentence_spans, split_sentence_spans
from simcrop_bench.data.synthetic.findings import (
    AORTIC_SEGMENTS,
    CORONARY_VESSELS,
    LABEL_TYPES,
    Finding,
    counts_as_label,
    side_of_lobe,
    side_of_region,
    with_defaults,
)
from simcrop_bench.data.synthetic.report_phrases import (
    AORTA_NAMES,
    CLINICAL_INFORMATION,
    CORONARY_NAMES,
    DETAIL_SENTENCES,
    NEGATION_FORMS,
    NEGATION_NOUNS,
    NORMAL_IMPRESSIONS,
    NORMAL_SENTENCES,
    OTHERWISE_SENTENCES,
    TECHNIQUE,
    TRANSITIONS,
    TRANSITIONS_WITH_COLON,
    Phrasing,
    negative_sentence,
)
from simcrop_bench.data.synthetic.report_templates import (
    SECTION_OF_TYPE,
    describe,
    impression_item,
    incidental_item,
    section_of,
)

SECTIONS: tuple[str, ...] = (
    "airways",
    "heart_vessels",
    "aorta",
    "pericardium",
    "esophagus",
    "lymph_nodes",
    "lung_window",
    "lungs",
    "pleura",
    "upper_abdomen",
    "bones",
)
# Label types whose absence each section must state (medical material is negated optionally, see _section).
SECTION_LABELS: dict[str, tuple[str, ...]] = {
    "heart_vessels": ("cardiomegaly", "coronary_artery_wall_calcification"),
    "aorta": ("arterial_wall_calcification",),
    "pericardium": ("pericardial_effusion",),
    "esophagus": ("hiatal_hernia",),
    "lymph_nodes": ("lymphadenopathy",),
    "pleura": ("pleural_effusion",),
    "lungs": tuple(t for t in LABEL_TYPES if SECTION_OF_TYPE.get(t) == "lungs"),
}
# Anatomical region of a section's normal sentences (finding sentences use the finding's own region).
SECTION_REGIONS: dict[str, str] = {
    "airways": "airways",
    "heart_vessels": "heart",
    "aorta": "aorta",
    "pericardium": "pericardium",
    "esophagus": "esophagus",
    "lymph_nodes": "mediastinum",
    "lung_window": "none",
    "lungs": "lungs",
    "pleura": "pleural_space",
    "upper_abdomen": "upper_abdomen",
    "bones": "bones",
    "impression": "thorax",
}
SUBJECTS = {"lungs": ("the lungs", "both lungs", "the lung parenchyma"), "pleura": ("both pleural spaces",)}
POLARITIES = ("positive", "negative", "distractor", "transition")
NOT_GIVEN = "Not given."


@dataclass(frozen=True)
class SentenceInfo:
    """One report sentence as the project's splitter sees it (§7.12).

    ``index`` counts sentences over findings then impression, from 0, in the order of
    :func:`~simcrop_bench.data.sentences.split_sentences`. ``span`` is the character span inside its section's
    text. ``simcrop_ids`` are the §3.3 sentence ids (from 1) of the findings text that overlap this sentence —
    two sentences share one id where the period rule merges them, one sentence gets several where it splits
    ("12.25", "approx."), none for impression sentences or text after the last qualifying period.
    """

    index: int
    section: str
    text: str
    polarity: str
    finding_ids: list[str]
    region: str
    span: tuple[int, int] = (0, 0)
    simcrop_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Report:
    findings_text: str
    impression_text: str
    clinical_information: str
    technique: str
    sentences: list[SentenceInfo] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ReportOptions:
    noise_probability: float = 0.3  # share of reports with typographic noise
    long_report_share: float = 0.10  # share padded with detail sentences beyond 512 WordPiece tokens
    detail_probability: float = 0.25  # per section, one optional detail sentence in ordinary reports
    hard_negative_probability: float = 0.5  # per eligible finding type
    impression_not_given: float = 0.08
    clinical_not_given: float = 0.3
    technique_not_given: float = 0.3


@dataclass
class _Draft:
    section: str
    text: str
    polarity: str
    finding_ids: list[str]
    region: str


def finding_region(finding: Finding) -> str:
    """Region key a finding's sentence points at: lobe, lung region, station, pleural side or structure."""
    if finding.type == "emphysema":
        return "+".join(finding.attrs["lobes"])
    if finding.lobe:
        return finding.lobe
    if finding.type == "pleural_effusion":
        return "pleural_space" if finding.side == "bilateral" else f"pleural_space_{finding.side}"
    return finding.region or "none"


def _groups(findings: Sequence[Finding]) -> list[list[Finding]]:
    """One group per sentence: nodules of the same lobe share a sentence, everything else stands alone."""
    groups: dict[tuple, list[Finding]] = {}
    for f in findings:
        key = ("lung_nodule", f.lobe) if f.type == "lung_nodule" else (f.id,)
        groups.setdefault(key, []).append(f)
    return list(groups.values())


def _draft(section: str, group: Sequence[Finding], ph: Phrasing) -> _Draft:
    polarity = "positive" if counts_as_label(group[0]) else "distractor"
    return _Draft(section, describe(group, ph), polarity, [f.id for f in group], finding_region(group[0]))


def _negation(
    section: str,
    types: Sequence[str],
    ph: Phrasing,
    forms: Sequence[str],
    subject: str = "",
    where: str = "",
    region: str | None = None,
    otherwise: bool = False,
) -> _Draft:
    nouns = [ph.pick(NEGATION_NOUNS[t]) for t in types]
    text = negative_sentence(nouns, subject or "the examination", ph.pick(forms), ph, where, otherwise)
    return _Draft(section, text, "negative", [], region or SECTION_REGIONS[section])


_LOCAL_FORMS = ("no", "there_is_no", "not_seen", "absent")  # forms that accept a location ("in the left lung")
_PLAIN_FORMS = ("no", "there_is_no", "not_seen", "absent", "negative_for")


def _lung_side(finding: Finding) -> str:
    if finding.type == "emphysema":
        return finding.side or "bilateral"
    return side_of_lobe(finding.lobe) if finding.lobe else side_of_region(finding.region)


def _hard_negatives(section: str, present: Sequence[Finding], ph: Phrasing, p: float) -> list[_Draft]:
    """Explicit negation of a finding type present elsewhere (other lung, other side, other segment)."""
    out: list[_Draft] = []
    by_type: dict[str, list[Finding]] = {}
    for f in present:
        if counts_as_label(f):
            by_type.setdefault(f.type, []).append(f)
    for kind, group in by_type.items():
        if not ph.chance(p):
            continue
        if section == "lungs":
            sides = {_lung_side(f) for f in group}
            if len(sides) == 1 and (side := sides.pop()) in ("left", "right"):
                other = "left" if side == "right" else "right"
                out.append(
                    _negation(section, [kind], ph, _LOCAL_FORMS, where=f"in the {other} lung", region=f"{other}_lung")
                )
        elif kind == "pleural_effusion" and group[0].side != "bilateral":
            other = "left" if group[0].side == "right" else "right"
            out.append(
                _negation(
                    section, [kind], ph, _LOCAL_FORMS, where=f"on the {other} side", region=f"pleural_space_{other}"
                )
            )
        elif kind == "arterial_wall_calcification":
            missing = [s for s in AORTIC_SEGMENTS if s not in group[0].attrs["segments"]]
            if missing:
                segment = ph.pick(missing)
                text = ph.pick(
                    (
                        f"No calcification is seen in the {AORTA_NAMES[segment]}.",
                        f"The {AORTA_NAMES[segment]} is free of calcified plaque.",
                    )
                )
                out.append(_Draft(section, text, "negative", [], f"aorta_{segment}"))
        elif kind == "coronary_artery_wall_calcification":
            missing = [v for v in CORONARY_VESSELS if v not in group[0].attrs["vessels"]]
            if missing:
                vessel = ph.pick(missing)
                text = f"No calcification is seen in the {CORONARY_NAMES[vessel]} coronary artery."
                out.append(_Draft(section, text, "negative", [], f"coronary_{vessel}"))
        elif kind == "lymphadenopathy":
            groups = {
                "mediastinal": ("prevascular", "paratracheal", "subcarinal"),
                "hilar": ("hilar",),
                "axillary": ("axillary",),
            }
            free = [g for g, keys in groups.items() if not any(k in f.region for f in group for k in keys)]
            if free:
                name = ph.pick(free)
                text = ph.pick(
                    (f"No enlarged lymph node is seen in the {name} region.", f"There is no {name} lymphadenopathy.")
                )
                out.append(_Draft(section, text, "negative", [], f"{name}_lymph_nodes"))
    return out


def _section(
    section: str, findings: Sequence[Finding], ph: Phrasing, opts: ReportOptions, long: bool, colon: bool
) -> list[_Draft]:
    if section == "lung_window":
        text = ph.pick(TRANSITIONS_WITH_COLON) + ph.pick((":", ";")) if colon else ph.pick(TRANSITIONS)
        return [_Draft(section, text, "transition", [], "none")]
    mine = [f for f in findings if section_of(f) == section]
    present_types = {f.type for f in findings if counts_as_label(f)}
    body = [_draft(section, g, ph) for g in _groups(mine)]
    has_positive = any(d.polarity == "positive" for d in body)
    body += _hard_negatives(section, mine, ph, opts.hard_negative_probability)
    absent = [t for t in SECTION_LABELS.get(section, ()) if t not in present_types]
    lead: list[_Draft] = []
    if section == "lungs":
        if not has_positive and ph.chance(0.5):
            lead.append(_Draft(section, ph.pick(NORMAL_SENTENCES["lungs"][1:]), "negative", [], "lungs"))
        absent = ph.shuffled(absent)
        while absent:
            size = min(len(absent), int(ph.rng.integers(2, 5)))
            chunk, absent = absent[:size], absent[size:]
            subject = ph.pick(SUBJECTS["lungs"])
            body.append(_negation(section, chunk, ph, NEGATION_FORMS, subject, otherwise=has_positive))
    elif section == "heart_vessels":
        if "cardiomegaly" in absent:
            lead.append(_Draft(section, ph.pick(NORMAL_SENTENCES[section]), "negative", [], "heart"))
        if "coronary_artery_wall_calcification" in absent:
            body.append(
                _negation(section, ["coronary_artery_wall_calcification"], ph, _PLAIN_FORMS, region="coronary_arteries")
            )
        devices = {f.attrs["device"] for f in findings if f.type == "medical_material"}
        if not devices & {"pacemaker", "port_catheter"} and ph.chance(0.4):
            body.append(_negation(section, ["medical_material"], ph, _PLAIN_FORMS))
    elif absent:  # one label type per section: its normal sentence or a negation frame
        if section in NORMAL_SENTENCES and ph.chance(0.6):
            lead.append(_Draft(section, ph.pick(NORMAL_SENTENCES[section]), "negative", [], SECTION_REGIONS[section]))
        else:
            subject = ph.pick(SUBJECTS.get(section, ("the examination",)))
            lead.append(_negation(section, absent, ph, _PLAIN_FORMS, subject))
    if ph.chance(0.5):
        body = ph.shuffled(body)
    drafts = lead + body
    if not any(d.polarity in ("negative", "positive") for d in drafts):  # airways, upper abdomen, bones
        drafts.insert(0, _Draft(section, ph.pick(NORMAL_SENTENCES[section]), "negative", [], SECTION_REGIONS[section]))
    elif mine and section in OTHERWISE_SENTENCES and ph.chance(0.6):
        drafts.append(_Draft(section, ph.pick(OTHERWISE_SENTENCES[section]), "negative", [], SECTION_REGIONS[section]))
    details = list(DETAIL_SENTENCES.get(section, ()))
    if long:
        extra = ph.shuffled(details)
    else:
        extra = [ph.pick(details)] if details and ph.chance(opts.detail_probability) else []
    drafts += [_Draft(section, text, "negative", [], SECTION_REGIONS[section]) for text in extra]
    return drafts


def _impression(findings: Sequence[Finding], ph: Phrasing, opts: ReportOptions) -> list[_Draft]:
    if ph.chance(opts.impression_not_given):
        return [_Draft("impression", NOT_GIVEN, "transition", [], "none")]
    order = {s: i for i, s in enumerate(SECTIONS)}
    positives = _groups([f for f in findings if counts_as_label(f)])
    positives.sort(key=lambda g: order[section_of(g[0])])
    drafts = [
        _Draft("impression", impression_item(g, ph), "positive", [f.id for f in g], finding_region(g[0]))
        for g in positives
    ]
    if not drafts:
        drafts.append(_Draft("impression", ph.pick(NORMAL_IMPRESSIONS), "negative", [], "thorax"))
    for f in findings:
        if f.is_distractor and ph.chance(0.4):
            drafts.append(_Draft("impression", incidental_item(f), "distractor", [f.id], finding_region(f)))
    return drafts


def _join(drafts: Sequence[_Draft], separators: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    parts, spans, cursor = [], [], 0
    for i, draft in enumerate(drafts):
        if i:
            parts.append(separators[i - 1])
            cursor += len(separators[i - 1])
        parts.append(draft.text)
        spans.append((cursor, cursor + len(draft.text)))
        cursor += len(draft.text)
    return "".join(parts), spans


def render_report(
    findings: Sequence[Finding], rng: np.random.Generator, options: ReportOptions | None = None
) -> Report:
    """Report texts and sentence index for one case; a pure function of ``findings`` and the generator state."""
    opts = options or ReportOptions()
    findings = [with_defaults(f) for f in findings]
    noisy = bool(rng.random() < opts.noise_probability)
    long = bool(rng.random() < opts.long_report_share)
    ph = Phrasing(rng, approx=noisy)
    colon = noisy and ph.chance(0.4)
    drafts = [d for section in SECTIONS for d in _section(section, findings, ph, opts, long, colon)]
    separators = []
    for before in drafts[:-1]:
        if before.section == "lung_window" and colon:
            separators.append("\n")  # the project splitter breaks here; SimCroP's period rule does not
        else:
            separators.append("  " if noisy and ph.chance(0.15) else " ")
    findings_text, spans = _join(drafts, separators)
    if noisy and ph.chance(0.5):
        findings_text += ph.pick((' "', " •", "•"))  # stray mark between findings and impression
    impression = _impression(findings, ph, opts)
    bullets = noisy and len(impression) > 1 and ph.chance(0.4)
    impression_text, impression_spans = _join(impression, [" • " if bullets else " "] * (len(impression) - 1))
    if bullets:
        impression_text, impression_spans = "• " + impression_text, [(a + 2, b + 2) for a, b in impression_spans]
    _check_split(findings_text, spans)
    _check_split(impression_text, impression_spans)
    simcrop_spans = simcrop_sentence_spans(findings_text)
    rows = [(d, s, True) for d, s in zip(drafts, spans)] + [(d, s, False) for d, s in zip(impression, impression_spans)]
    sentences = []
    for index, (draft, span, in_findings) in enumerate(rows):
        overlapping = (k + 1 for k, (a, b) in enumerate(simcrop_spans) if a < span[1] and b > span[0])
        sentences.append(
            SentenceInfo(
                index,
                draft.section,
                draft.text,
                draft.polarity,
                list(draft.finding_ids),
                draft.region,
                span,
                tuple(overlapping) if in_findings else (),
            )
        )
    clinical = NOT_GIVEN if ph.chance(opts.clinical_not_given) else ph.pick(CLINICAL_INFORMATION)
    technique = NOT_GIVEN if ph.chance(opts.technique_not_given) else ph.pick(TECHNIQUE)
    return Report(findings_text, impression_text, clinical, technique, sentences)


def _check_split(text: str, spans: list[tuple[int, int]]) -> None:
    """Every drafted sentence must be exactly one piece of the project splitter (a template bug otherwise)."""
    found = split_sentence_spans(text)
    if found != spans:
        raise AssertionError(f"report sentences do not split as drafted: {found} != {spans} in {text!r}")
