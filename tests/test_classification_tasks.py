"""The four linear-probe tasks end to end on their twins, through the CLI as a user calls it.

Every metric in a record must be recomputable from the saved predictions (``per_case.csv``) with
scikit-learn; the ``cached`` protocol is labelled as a variant; ``--weights`` evaluates an external
checkpoint; the feature cache is keyed by what determines the features.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, roc_auc_score

from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.models.vit3d import ViT3D, export_released

from .conftest import run_cli
from .test_end_to_end import assert_clean_failure

# A short probe: validation from the first epoch, a few dozen updates.
QUICK = [
    "--set",
    "task.num_steps=12",
    "--set",
    "task.start_epoch=0",
    "--set",
    "task.warmup_steps=2",
    "--set",
    "task.bootstrap_resamples=200",
    "--device",
    "cpu",
]


def run_task(task: str, results: Path, *extra: str, method: str = "scratch", env: dict | None = None) -> dict:
    args = ["run", "-t", task, "--results", str(results), *QUICK, *extra]
    if "--weights" not in extra:
        args[1:1] = ["-m", method]
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    records = sorted(results.glob(f"runs/{task}/**/record.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(records[-1].read_text()) | {"_dir": str(records[-1].parent), "_stderr": result.stderr}


def run_warm_without_torch(task: str, results: Path, *extra: str) -> dict:
    """A rerun on a warm feature cache: every feature a hit, and torch never imported by the process."""
    record = run_task(task, results, *extra, "--force", env={"PYTHONPROFILEIMPORTTIME": "1"})
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in record["_stderr"].splitlines() if line.startswith("import time:")
    }
    assert "numpy" in imported and "simcrop_bench.protocols.probe.numpy_head" in imported  # the import log is real
    assert not {name for name in imported if name == "torch" or name.startswith("torch.")}
    assert set(record["details"]["feature_cache_hits"].values()) == {True}
    assert record["details"]["encoder_built"] is False and record["details"]["head_impl"] == "numpy"
    assert record["provenance"]["torch_threads"] is None
    return record


def predictions(record: dict) -> list[dict[str, str]]:
    with open(Path(record["_dir"]) / "per_case.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def recomputed_macro_auc(rows: list[dict[str, str]], labels: list[str]) -> float:
    aucs = []
    for name in labels:
        y = np.array([int(r[f"y:{name}"]) for r in rows])
        p = np.array([float(r[f"p:{name}"]) for r in rows])
        if len(set(y)) == 2:  # classes with one label value are excluded (protocol.md §8)
            aucs.append(roc_auc_score(y, p))
    return float(np.mean(aucs))


@pytest.mark.slow
def test_ctrate_paper_probe_metric_recomputes_from_predictions(tmp_path):
    record = run_task("ctrate_cls", tmp_path / "r")
    assert record["variant"] == "" and record["details"]["probe"] == "paper"
    assert record["details"]["grouping"] == "patient" and record["details"]["selection_on_test"] is False
    labels = list(record["per_class"]["test"])
    assert len(labels) == 18
    rows = predictions(record)
    assert len(rows) == record["details"]["splits"]["test"]
    assert record["metrics"]["auc"] == pytest.approx(recomputed_macro_auc(rows, labels), abs=1e-6)
    ci = record["intervals"]["auc"]
    assert ci["unit"] == "group" and ci["n_groups"] == len({r["group"] for r in rows})
    assert ci["low"] <= record["metrics"]["auc"] + 1e-9 and ci["n_resamples"] == 200
    history = record["details"]["history"]
    assert history and history[0]["step"] == record["details"]["steps"] // record["details"]["epochs"]


@pytest.mark.slow
def test_cached_protocol_is_a_labelled_variant_and_logreg_works(tmp_path):
    results = tmp_path / "r"
    cached = run_task("luna16_cls", results, "--set", "task.probe=cached")
    assert cached["variant"] == "lp-cached"
    assert cached["details"]["feature_cache_hits"] == {"selection": False, "test": False, "train": False}
    rows = predictions(cached)
    y = np.array([int(r["y:nodule"]) for r in rows])
    p = np.array([float(r["p:nodule"]) for r in rows])
    assert cached["metrics"]["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    assert cached["details"]["encoder_built"] is True and cached["details"]["head_impl"] == "numpy"

    # The same cell on the warm cache: no torch, and exactly the cold run's predictions.
    warm = run_warm_without_torch("luna16_cls", results, "--set", "task.probe=cached")
    assert warm["metrics"] == cached["metrics"] and predictions(warm) == rows
    assert warm["details"]["history"] == cached["details"]["history"]
    # The reused features name how they were computed: by the cold run, on the CPU, in fp32.
    assert warm["details"]["feature_origins"] == cached["details"]["feature_origins"]
    assert {(o["device"], o["precision"]) for o in warm["details"]["feature_origins"].values()} == {("cpu", "fp32")}

    logreg = run_task("luna16_cls", results, "--set", "task.probe=cached", "--set", "task.head=logreg")
    assert logreg["variant"] == "lp-cached-logreg"
    # Same encoder (scratch, seed 42), same volumes, same chain: every feature set comes from the cache.
    assert logreg["details"]["feature_cache_hits"] == {"selection": True, "test": True, "train": True}

    board = run_cli("leaderboard", "--results", str(results), "--format", "json")
    protocols = sorted(row["protocol"] for row in json.loads(board.stdout))
    assert protocols == ["heldout+lp-cached", "heldout+lp-cached-logreg"]


@pytest.mark.slow
def test_ccccii_accuracy_and_legacy_selection_on_test(tmp_path):
    record = run_task("ccccii_cls", tmp_path / "r", "--protocol", "legacy", "--set", "task.probe=cached")
    assert record["details"]["selection_on_test"] is True and record["protocol"] == "legacy"
    rows = predictions(record)
    names = ["Normal", "CP", "NCP"]
    probs = np.array([[float(r[f"p:{n}"]) for n in names] for r in rows])
    truth = np.array([int(r["label"]) for r in rows])
    assert record["metrics"]["accuracy"] == pytest.approx(accuracy_score(truth, probs.argmax(1)))
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    matrix = np.array(record["details"]["metric_details"]["confusion_matrix"])
    assert matrix.sum() == len(rows) and np.trace(matrix) == int((truth == probs.argmax(1)).sum())


@pytest.mark.slow
def test_radchestct_reports_the_15_label_secondary_metric(tmp_path):
    record = run_task("radchestct_cls", tmp_path / "r", "--fraction", "10", "--set", "task.probe=cached")
    assert record["fraction"] == 10 and "auc_15" in record["metrics"]
    rows = predictions(record)
    labels = list(record["per_class"]["test"])
    without_3 = [name for i, name in enumerate(labels) if i != 3]
    assert record["metrics"]["auc_15"] == pytest.approx(recomputed_macro_auc(rows, without_3), abs=1e-6)


def _export(path: Path, encoder: EncoderConfig, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    torch.save(export_released(ViT3D(encoder), {"method": "test"}), path)
    return path


@pytest.mark.slow
def test_external_weights_are_evaluated_without_pretraining_and_reuse_cached_features(tmp_path):
    demo = EncoderConfig(img_size=(64, 64, 32), embed_dim=96, depth=4, num_heads=4)
    weights = _export(tmp_path / "encoder.pth", demo)
    results = tmp_path / "r"
    first = run_task("luna16_cls", results, "--weights", str(weights), "--set", "task.probe=cached")
    assert (
        first["method"] == "external" and first["checkpoint"]["sha256"] == first["config"]["method"]["weights_sha256"]
    )
    assert first["config"]["method"]["encoder"]["num_heads"] == 4  # from the exported config, not D / 64
    # Fixed weights: a new seed changes nothing the features depend on. The checkpoint's architecture is
    # remembered by its hash, so this run reads neither the checkpoint nor torch.
    second = run_warm_without_torch(
        "luna16_cls", results, "--weights", str(weights), "--set", "task.probe=cached", "--seed", "7"
    )
    assert second["config"]["method"] == first["config"]["method"]


def test_external_weights_bad_input_is_one_line(tmp_path):
    missing = run_cli("run", "-t", "luna16_cls", "--weights", str(tmp_path / "nope.pth"), "--results", str(tmp_path))
    assert_clean_failure(missing, "nope.pth", "no such file")
    wrong = run_cli(
        "run", "-m", "scratch", "-t", "luna16_cls", "--weights", str(tmp_path / "x.pth"), "--results", str(tmp_path)
    )
    assert_clean_failure(wrong, "--weights", "use --method external")
    neither = run_cli("run", "-t", "luna16_cls", "--results", str(tmp_path))
    assert_clean_failure(neither, "--method")


@pytest.mark.slow
def test_aggregate_scan_and_patient_score_mean_probabilities_per_unit(tmp_path):
    """protocol.md §9: the same head's volume probabilities, averaged per scan / patient before scoring."""
    results = tmp_path / "r"
    base = ("--set", "task.probe=cached", "--set", "task.head=logreg")  # deterministic: the same head every run
    volume = run_task("ctrate_cls", results, *base)
    volume_rows = predictions(volume)
    labels = list(volume["per_class"]["test"])
    for aggregate, unit_of in (
        ("scan", lambda r: "_".join(r["case"].split("_")[:3])),
        ("patient", lambda r: r["group"]),
    ):
        record = run_task("ctrate_cls", results, *base, "--set", f"task.aggregate={aggregate}")
        assert record["variant"] == f"lp-cached-logreg+agg-{aggregate}"
        units: dict[str, list[dict]] = {}
        for row in volume_rows:
            units.setdefault(unit_of(row), []).append(row)
        rows = predictions(record)
        assert [r["case"] for r in rows] == list(units) and len(rows) < len(volume_rows)
        assert record["details"]["aggregation"]["units"] == len(units)
        for row in rows:
            members = units[row["case"]]
            for name in labels:
                assert float(row[f"p:{name}"]) == pytest.approx(
                    np.mean([float(m[f"p:{name}"]) for m in members]), abs=1e-6
                )
                assert int(row[f"y:{name}"]) == max(int(m[f"y:{name}"]) for m in members)
        assert record["metrics"]["auc"] == pytest.approx(recomputed_macro_auc(rows, labels), abs=1e-6)


def test_aggregate_patient_is_refused_without_patient_ids(tmp_path):
    result = run_cli(
        "run",
        "-m",
        "scratch",
        "-t",
        "luna16_cls",
        "--results",
        str(tmp_path / "r"),
        *QUICK,
        "--set",
        "task.probe=cached",
        "--set",
        "task.aggregate=patient",
    )
    assert_clean_failure(result, "task.aggregate=patient needs patient ids")


@pytest.mark.slow
def test_purge_test_patients_from_train_drops_their_rows(tmp_path):
    """A copy of the twin whose test list also holds a training patient's volume (a §5.3 leak)."""
    import shutil

    from simcrop_bench.data.roots import ensure_twin
    from simcrop_bench.data.splits.classification import load_classification_splits

    root = tmp_path / "ctrate"
    shutil.copytree(ensure_twin("ctrate"), root)
    train_lines = (root / "train_list.csv").read_text().splitlines()
    volume = train_lines[-1].split(",")[0]  # the last training row: not in the 1 % / 10 % prefixes
    test_lines = (root / "test_list.csv").read_text().splitlines()
    test_lines.append(",".join([volume] + ["0"] * (len(test_lines[0].split(",")) - 1)))
    (root / "test_list.csv").write_text("\n".join(test_lines) + "\n")
    patient = "_".join(volume.split("_")[:2])

    plain = load_classification_splits("ctrate_cls", root, 100, "heldout")
    assert any("leakage audit" in w for w in plain.warnings)
    purged = load_classification_splits("ctrate_cls", root, 100, "heldout", purge_test_patients=True)
    assert patient not in purged.train.groups + purged.val.groups
    assert purged.train.ids == [i for i, g in zip(plain.train.ids, plain.train.groups) if g != patient]
    assert purged.val.ids == [i for i, g in zip(plain.val.ids, plain.val.groups) if g != patient]
    assert purged.test.ids == plain.test.ids and len(purged.train) + len(purged.val) < len(plain.train) + len(plain.val)
    assert any("purge_test_patients_from_train removed" in w for w in purged.warnings)

    record = run_task(
        "ctrate_cls",
        tmp_path / "r",
        "--set",
        "task.probe=cached",
        "--set",
        "task.purge_test_patients_from_train=true",
        "--data-root",
        str(root),
    )
    assert record["variant"] == "lp-cached+purged"
    assert record["details"]["splits"]["train"] == len(purged.train)


def test_aggregate_rows_multiclass_takes_the_most_frequent_class_and_counts_disagreements():
    from simcrop_bench.data.splits.classification import SplitRows
    from simcrop_bench.protocols.probe.aggregate import aggregate_rows, unit_of

    rows = SplitRows(
        ids=["s1_a", "s1_b", "s1_c", "s2_a"],
        groups=["p1", "p1", "p1", "p2"],
        labels=np.array([2, 2, 0, 1]),
        paths=[Path(f"{i}.nii.gz") for i in range(4)],
    )
    probs = np.array([[0.1, 0.1, 0.8], [0.2, 0.2, 0.6], [0.6, 0.2, 0.2], [0.1, 0.8, 0.1]])
    units, unit_probs, conflicts = aggregate_rows(rows, probs, unit_of("patient", "patient", None), multiclass=True)
    assert units.ids == ["p1", "p2"] and units.labels.tolist() == [2, 1] and conflicts == 1
    np.testing.assert_allclose(unit_probs, [[0.3, 1 / 6, 1.6 / 3], [0.1, 0.8, 0.1]])
    same, _, none = aggregate_rows(rows, probs, unit_of("scan", "patient", None), multiclass=True)
    assert same.ids == rows.ids and none == 0  # no scan_of: every volume is its own scan


SUBSET_TASK = '''
"""A task on three of CT-RATE's 18 labels: one plugin file, nothing else."""
from simcrop_bench.protocols.probe.task import LinearProbeTask
from simcrop_bench.registry import register_task


@register_task("ctrate_three")
class CTRateThree(LinearProbeTask):
    """Emphysema, atelectasis and lung nodule on CT-RATE (linear probe, macro AUROC)."""

    dataset = "ctrate"
    labels = ("Lung nodule", "Emphysema", "Atelectasis")
    metric = "auc"
    target_kind = "multilabel"
'''


@pytest.mark.slow
def test_a_plugin_task_on_a_subset_of_ctrate_labels_runs_end_to_end(tmp_path):
    plugin = tmp_path / "ctrate_three.py"
    plugin.write_text(SUBSET_TASK)
    listed = run_cli("list", "tasks", "--plugin", str(plugin))
    assert listed.returncode == 0 and "ctrate_three" in listed.stdout

    record = run_task("ctrate_three", tmp_path / "r", "--plugin", str(plugin), "--fraction", "10")
    labels = ["Lung nodule", "Emphysema", "Atelectasis"]
    assert record["task"] == "ctrate_three" and record["fraction"] == 10
    assert list(record["per_class"]["test"]) == labels
    rows = predictions(record)
    assert {k for k in rows[0] if k.startswith(("y:", "p:"))} == {f"{c}:{n}" for c in "yp" for n in labels}
    assert record["metrics"]["auc"] == pytest.approx(recomputed_macro_auc(rows, labels), abs=1e-6)
    assert record["details"]["grouping"] == "patient"  # CT-RATE's layout, not restated by the task

    # Each truth is the split file's column of that name (the columns are picked by name, not position).
    with open(Path(record["data"]["root"]) / "test_list.csv", newline="") as handle:
        published = {row["VolumeName"]: row for row in csv.DictReader(handle)}
    assert all(row[f"y:{n}"] == published[row["case"]][n] for row in rows for n in labels)
