"""Negation-aware rule-based labeller for the 18 CT-RATE labels (datasets.md §7.11).

Steps: split findings and impression into sentences (:func:`~simcrop_bench.data.sentences.split_sentences`), each
sentence into clauses (at ";", "but", "however", "although", "except", "while", "whereas"), find label mentions
with regex patterns, then drop a mention when

* it is **negated**: a cue ("no", "not", "without", "absent", "free of", "negative for", "ruled out", …) precedes it
  in the clause with no verb in between — so a coordinated list after one cue ("no A, B or C") is negated as a
  whole — or a post-cue follows it ("A and B are not seen", "A is absent") with no verb in between;
* it is **uncertain** ("possible", "likely", "cannot be excluded", …) and uncertain mentions are configured as
  negative (default: positive);
* it is **below threshold**: nodules < 3 mm and lymph nodes < 10 mm short axis (largest size in the clause);
* it is an **extrapulmonary nodule** (adrenal, thyroid, … and no lung word in the clause).

A label is positive if any mention survives in either section. Used by the synthetic twin's tests (the labeller
must recover the spec labels from every generated report) and as a debugging aid (:func:`label_mentions`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from simcrop_bench.data.sentences import split_sentences
from simcrop_bench.data.synthetic.findings import LABEL_INDEX, LABEL_TYPES, LYMPH_NODE_MIN_SHORT_AXIS_MM, NODULE_MIN_MM

_FLAGS = re.IGNORECASE


@dataclass(frozen=True)
class Pattern:
    """A mention pattern; the mention starts at group ``m`` if the regex has one, else at the match."""

    regex: re.Pattern
    anchor: re.Pattern | None = None  # the clause must also mention this (e.g. the aorta for arterial calcification)
    requires_size: bool = False  # a bare "lymph node" is a mention only with a measured size


def _p(regex: str, anchor: str | None = None, requires_size: bool = False) -> Pattern:
    return Pattern(re.compile(regex, _FLAGS), re.compile(anchor, _FLAGS) if anchor else None, requires_size)


_CALCIFICATION = r"\bcalci\w*|\batherosclero\w*"
_AORTIC = r"\baort\w*|\barch\b|great vessels|supra-?aortic|brachiocephalic|subclavian|carotid"
_CORONARY = r"\bcoronar\w*|\bLAD\b"

LABEL_PATTERNS: dict[str, tuple[Pattern, ...]] = {
    "medical_material": (
        _p(
            r"\bpacemakers?\b|\bdefibrillators?\b|\bsternotom\w*|\bsternal\s+wires?\b|\bcatheters?\b|\bstents?\b"
            r"|\btubes?\b|\bimplanted\s+devices?\b|\bdevices?\b"
        ),
    ),
    "arterial_wall_calcification": (_p(_CALCIFICATION, anchor=_AORTIC),),
    "cardiomegaly": (
        _p(r"\bcardiomegal\w*|\bcardiac\s+enlargement|\benlarged\s+heart\b"),
        _p(r"\b(?:heart|cardiac\s+silhouette)\s+(?:is|appears)\s+(?P<m>enlarged)\b"),
        _p(r"\bheart\s+size\s+is\s+(?P<m>increased)\b"),
    ),
    "pericardial_effusion": (
        _p(r"\bpericardial\s+(?P<m>effusions?|fluid)\b|\bhemopericardium\b"),
        _p(r"\b(?P<m>fluid)\b[^.;]{0,40}?\bpericardi\w*"),
        _p(r"\bpericardi\w*\b[^.;]{0,40}?\b(?P<m>fluid|effusions?)\b"),
    ),
    "coronary_artery_wall_calcification": (_p(_CALCIFICATION, anchor=_CORONARY),),
    "hiatal_hernia": (_p(r"\bhernia\w*|\bherniation\b"),),
    "lymphadenopathy": (
        _p(r"\b(?:lymph)?adenopath\w*"),
        _p(r"\benlarged\s+(?:[\w-]+\s+){0,3}?(?:lymph\s+)?nodes?\b"),
        _p(r"\blymph\s+nodes?\s+(?:[\w-]+\s+){0,5}?(?:is|are)\s+(?P<m>enlarged)\b|\blymph\s+node\s+enlargement"),
        _p(r"\blymph\s+nodes?\b", requires_size=True),
    ),
    "emphysema": (_p(r"\bemphysem\w*|\bbullae\b|\bbullous\b|\bbulla\b"),),
    "atelectasis": (_p(r"\batelecta\w*"),),
    "lung_nodule": (_p(r"\bnodules?\b"),),
    "lung_opacity": (
        _p(
            r"\bground[- ]glass\b(?![- ](?:density\s+|pulmonary\s+)?nodul)|\bGGOs?\b|\bopacit(?:y|ies)\b"
            r"|\bopacification\b|\bhazy\s+(?:increased\s+)?attenuation\b"
        ),
    ),
    "pulmonary_fibrotic_sequela": (_p(r"\bfibro\w*|\bscar(?:s|ring|red)?\b|\bsequelae?\b"),),
    "pleural_effusion": (
        _p(r"\bpleural\s+(?P<m>effusions?|fluid)\b|\bhydrothora\w*"),
        _p(r"\bpleural\s+spaces?\b[^.;]{0,30}?\b(?P<m>fluid|effusions?)\b"),
        _p(r"\b(?:right|left|bilateral)(?:[- ]sided)?\s+(?P<m>effusions?)\b"),
    ),
    "mosaic_attenuation_pattern": (_p(r"\bmosaic\w*"),),
    "peribronchial_thickening": (
        _p(
            r"\bperibronchial\s+(?:wall\s+)?thickening|\bbronchial\s+wall\s+thickening|\bthickened\s+bronchial\s+walls?"
        ),
        _p(r"\bbronchial\s+walls?\b[^.;]{0,40}?\b(?P<m>thickened)\b"),
    ),
    "consolidation": (_p(r"\bconsolidat\w*"),),
    "bronchiectasis": (_p(r"\bbronchiecta\w*|\bdilated\s+bronchi\b|\bbronchial\s+dilat\w*"),),
    "interlobular_septal_thickening": (
        _p(
            r"\b(?:interlobular\s+)?septal\s+(?:thickening|lines)\b|\bthickened\s+(?:interlobular\s+)?septa\b"
            r"|\bthickening\s+of\s+the\s+interlobular\s+septa\b"
        ),
    ),
}

CLAUSE_BOUNDARY = re.compile(r";|\b(?:but|however|although|except|while|whereas)\b", _FLAGS)
NEGATION_CUES = re.compile(
    r"\b(?:no|not|without|absent|free\s+of|negative\s+for|ruled\s+out|none\s+of|neither|nor)\b", _FLAGS
)
# A negation that follows its mention: "A and B are not seen", "A is absent".
POST_NEGATION_CUES = re.compile(
    r"\b(?:is|are|was|were)\s+(?:not\s+(?:seen|observed|identified|detected|present|noted|evident|demonstrated"
    r"|visuali[sz]ed)|absent|excluded|ruled\s+out)\b|\bha(?:s|ve)\s+been\s+ruled\s+out\b",
    _FLAGS,
)
# A verb between a cue and a mention ends the cue's scope ("no A is seen, and B is present").
SCOPE_TERMINATORS = re.compile(
    r"\b(?:is|are|was|were|has|have|shows?|measur\w*|seen|noted|present|observed|identified)\b", _FLAGS
)
UNCERTAINTY_CUES = re.compile(
    r"\b(?:possible|possibly|probable|probably|likely|suspicious\s+for|suspected|questionable|equivocal"
    r"|may\s+represent|might\s+represent|suggestive\s+of|cannot\s+exclude)\b",
    _FLAGS,
)
POST_UNCERTAINTY_CUES = re.compile(
    r"\b(?:cannot|can\s+not|could\s+not)\s+be\s+(?:excluded|ruled\s+out)\b|\b(?:is|are)\s+(?:suspected|possible)\b",
    _FLAGS,
)
MEASUREMENT = re.compile(
    r"(?:(?P<bound>under|below|less\s+than|smaller\s+than|<|over|more\s+than|larger\s+than|greater\s+than"
    r"|exceeding|>)\s*)?(?:approx\.\s*|approximately\s+|about\s+)?(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>mm|cm)\b",
    _FLAGS,
)
_UPPER_BOUNDS = ("under", "below", "less", "smaller", "<")
NON_LUNG_ORGANS = re.compile(r"\b(?:adrenal|thyroid|liver|hepatic|renal|kidney|splenic|spleen|breast)\b", _FLAGS)
LUNG_WORDS = re.compile(
    r"\b(?:lungs?|pulmonary|lingula\w*|(?:upper|middle|lower)\s+lobes?|parenchym\w*|subpleural|perifissural)\b", _FLAGS
)
SIZE_THRESHOLDS_MM = {"lung_nodule": NODULE_MIN_MM, "lymphadenopathy": LYMPH_NODE_MIN_SHORT_AXIS_MM}


@dataclass(frozen=True)
class Mention:
    """One pattern match and the reasons it does or does not count."""

    label: str
    text: str
    clause: str
    source: str  # "findings" | "impression"
    negated: bool
    uncertain: bool
    excluded: str | None  # "below_threshold", "extrapulmonary", "no_size" or None
    positive: bool


def split_clauses(sentence: str) -> list[str]:
    return [c for c in CLAUSE_BOUNDARY.split(sentence) if c.strip()]


def largest_size_mm(clause: str) -> float | None:
    """Largest measurement in a clause, in mm; "under 3 mm" counts as just below 3, "exceeding 8 mm" just above."""
    sizes = []
    for match in MEASUREMENT.finditer(clause):
        value = float(match["num"]) * (10.0 if match["unit"].lower() == "cm" else 1.0)
        bound = (match["bound"] or "").lower()
        if bound:
            value += -0.01 if bound.startswith(_UPPER_BOUNDS) else 0.01
        sizes.append(value)
    return max(sizes) if sizes else None


def _cue_reaches(clause: str, position: int) -> bool:
    """Whether the last negation cue before ``position`` still scopes over it (no verb in between)."""
    cues = list(NEGATION_CUES.finditer(clause, 0, position))
    return bool(cues) and not SCOPE_TERMINATORS.search(clause, cues[-1].end(), position)


def _is_negated(clause: str, match_start: int, head_start: int, head_end: int) -> bool:
    # Checked at the match start ("No lymph nodes are enlarged") and at the head word inside it
    # ("the pericardium contains no fluid").
    if _cue_reaches(clause, match_start) or _cue_reaches(clause, head_start):
        return True
    post = POST_NEGATION_CUES.search(clause, head_end)
    return bool(post and not SCOPE_TERMINATORS.search(clause[head_end : post.start()]))


def _is_uncertain(clause: str, start: int, end: int) -> bool:
    return bool(UNCERTAINTY_CUES.search(clause, 0, start) or POST_UNCERTAINTY_CUES.search(clause, end))


def _exclusion(label: str, pattern: Pattern, clause: str) -> str | None:
    size = largest_size_mm(clause) if label in SIZE_THRESHOLDS_MM else None
    if pattern.requires_size and (size is None or size < SIZE_THRESHOLDS_MM[label]):
        return "no_size" if size is None else "below_threshold"
    if size is not None and size < SIZE_THRESHOLDS_MM[label]:
        return "below_threshold"
    if label == "lung_nodule" and NON_LUNG_ORGANS.search(clause) and not LUNG_WORDS.search(clause):
        return "extrapulmonary"
    return None


def _clause_mentions(clause: str, source: str, uncertain_positive: bool) -> list[Mention]:
    out = []
    for label, patterns in LABEL_PATTERNS.items():
        for pattern in patterns:
            if pattern.anchor is not None and not pattern.anchor.search(clause):
                continue
            for match in pattern.regex.finditer(clause):
                start, end = match.span("m") if "m" in pattern.regex.groupindex else match.span()
                negated = _is_negated(clause, match.start(), start, end)
                uncertain = _is_uncertain(clause, start, end)
                excluded = _exclusion(label, pattern, clause)
                positive = not negated and excluded is None and (uncertain_positive or not uncertain)
                out.append(
                    Mention(label, match.group(), clause.strip(), source, negated, uncertain, excluded, positive)
                )
    return out


def label_mentions(findings_text: str, impression_text: str = "", *, uncertain_positive: bool = True) -> list[Mention]:
    """Every label mention in findings and impression, with its negation/uncertainty/threshold verdict."""
    mentions: list[Mention] = []
    for source, text in (("findings", findings_text), ("impression", impression_text)):
        for sentence in split_sentences(text or ""):
            for clause in split_clauses(sentence):
                mentions.extend(_clause_mentions(clause, source, uncertain_positive))
    return mentions


def label_report(findings_text: str, impression_text: str = "", *, uncertain_positive: bool = True) -> list[int]:
    """The 18 CT-RATE labels (order of protocol.md §2.1) read from a report."""
    labels = [0] * len(LABEL_TYPES)
    for mention in label_mentions(findings_text, impression_text, uncertain_positive=uncertain_positive):
        if mention.positive:
            labels[LABEL_INDEX[mention.label]] = 1
    return labels
