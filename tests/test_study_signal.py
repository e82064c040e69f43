"""The learning-signal study (issue #15): settings, input errors, and a tiny version end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simcrop_bench.errors import UserError
from simcrop_bench.study.signal import METHODS, SignalStudy, check
from tests.conftest import run_cli


def test_design_settings_and_what_makes_a_pilot():
    design = SignalStudy()
    assert design.is_design and design.patients >= 256 and len(design.seeds) >= 5
    assert set(design.methods) == set(METHODS) and set(design.fractions) == {1, 10, 100}
    for pilot in (
        SignalStudy(patients=64),
        SignalStudy(epochs=1),
        SignalStudy(seeds=(42, 43)),
        SignalStudy(methods=("scratch", "simcrop")),
        SignalStudy(extra=["task.num_steps=10"]),
    ):
        assert not pilot.is_design


def test_the_budget_reaches_every_pretraining_method_and_not_scratch():
    from simcrop_bench import registry

    registry.discover([])
    study = SignalStudy(epochs=3)
    for method in METHODS:
        overrides = study.overrides(registry.get_method(method))
        assert "task.probe=cached" in overrides
        assert ("method.train.epochs=3" in overrides) == (method != "scratch")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"patients": 4}, "--patients 4"),
        ({"epochs": 0}, "--epochs 0"),
        ({"seeds": (42, 42)}, "repeated"),
        ({"methods": ()}, "at least one method"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(UserError, match=message):
        check(SignalStudy(**settings))


def test_cli_refuses_bad_input_in_one_line(tmp_path):
    for args, expected in (
        (["--seeds", "42,x"], "--seeds 42,x"),
        (["--out", str(tmp_path / "results.txt")], ".md"),
        (["--methods", "scratch,nosuch", "--patients", "8"], "nosuch"),
        (["--report-only"], "no ctrate_cls records"),
    ):
        done = run_cli("study", "signal", "--results", str(tmp_path / "r"), *args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error:") and expected in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r" / "runs").exists()


@pytest.mark.slow
def test_a_tiny_study_end_to_end(tmp_path):
    out = tmp_path / "docs" / "results.md"
    args = ["--patients", "8", "--epochs", "1", "--methods", "scratch,simcrop", "--seeds", "42,43"]
    done = run_cli("study", "signal", *args, "--fractions", "100", "--results", str(tmp_path / "r"), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "PILOT" in text and "Synthetic data" in text and "not comparable to published results" in text
    assert "test against `scratch`" in text and "test against `simcrop`" in text
    records = [json.loads(p.read_text()) for p in (tmp_path / "r" / "runs").rglob("record.json")]
    assert sorted((r["method"], r["seed"]) for r in records) == [
        (m, s) for m in ("scratch", "simcrop") for s in (42, 43)
    ]
    assert all(r["synthetic"] and r["variant"] == "lp-cached" for r in records)
    (checkpoint,) = {r["checkpoint"]["path"] for r in records if r["method"] == "simcrop"}
    folder = Path(checkpoint).parent
    info = json.loads((folder / "pretrain_info.json").read_text())
    manifest = json.loads((Path(records[0]["data"]["root"]) / "synthetic_meta" / "manifest.json").read_text())
    assert manifest["n_cases"] == 8
    train_volumes = sum(v["split"] == "train" for v in manifest["volumes"])
    assert info["steps"] == train_volumes // 2  # 1 epoch of batch 2 over the twin's training volumes
    monitor = [json.loads(line) for line in (folder / "monitor.jsonl").read_text().splitlines()]
    assert monitor[0]["step"] == 0 and monitor[-1]["step"] == info["steps"]
    row = next(line for line in text.splitlines() if line.startswith("| simcrop |") and "step 0" in line)
    assert f"(step {info['steps']})" in row
    assert out.with_name("results-efficiency.png").is_file()
    assert "### Grounding at the end" in text and "(75% of patches masked," in text  # SimCroP's mask ratio (§3.1)
    assert (
        sum(
            line.startswith("| simcrop | fresh") or line.startswith("| simcrop | trained") for line in text.splitlines()
        )
        == 2
    )
    again = tmp_path / "again.md"
    done = run_cli(
        "study",
        "signal",
        *args,
        "--fractions",
        "100",
        "--results",
        str(tmp_path / "r"),
        "--out",
        str(again),
        "--report-only",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Written from the records" in again.read_text()
    tables = [line for line in text.splitlines() if line.startswith(("| scratch |", "| simcrop |"))]
    assert tables and all(line in again.read_text() for line in tables)


def test_collapse_measures_on_known_features():
    import numpy as np

    from simcrop_bench.study.diagnostics import effective_rank, mean_pairwise_cosine

    rng = np.random.default_rng(0)
    line = np.outer(rng.normal(size=50), rng.normal(size=8))  # every volume on one line
    spread = rng.normal(size=(2000, 8))  # isotropic
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    assert 7.5 < effective_rank(spread) <= 8.0
    assert effective_rank(np.ones((5, 4))) == 1.0
    same = np.tile(rng.normal(size=(1, 8)), (10, 1))
    assert mean_pairwise_cosine(same) == pytest.approx(1.0)
    assert abs(mean_pairwise_cosine(spread[:200])) < 0.05
