"""``btcv_seg`` end to end on the BTCV twin: heldout tests the final epoch, legacy selects on the test cases."""

from __future__ import annotations

import json

import pytest

from .conftest import run_cli

FAST = [
    "--set",
    "task.max_epochs=1",
    "--set",
    "task.val_every=1",
    "--set",
    "task.crops_per_volume=1",
    "--set",
    "task.warmup_epochs=1",
    "--set",
    "task.bootstrap_resamples=100",
    "--device",
    "cpu",
]


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["heldout", "legacy"])
def test_btcv_seg_runs_with_the_protocols_selection_rule(tmp_path, protocol):
    result = run_cli(
        "run", "-m", "scratch", "-t", "btcv_seg", "--protocol", protocol, "--results", str(tmp_path), *FAST
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(next(tmp_path.glob("runs/btcv_seg/**/record.json")).read_text())
    assert set(record["per_class"]["dice"]) >= {"spleen", "liver", "left adrenal gland"}
    assert len(record["per_class"]["dice"]) == 13  # background excluded from test Dice (H3)
    assert record["details"]["splits"]["testing"] == 6
    ci = record["intervals"]["dice"]
    assert ci["n_groups"] == 6 and ci["low"] <= record["metrics"]["dice"] <= ci["high"] + 1e-12
    if protocol == "heldout":  # no selection set: the final epoch is tested
        assert record["details"]["splits"]["validation"] == 0 and "selection_dice" not in record["metrics"]
        assert record["details"]["selection_on_test"] is False
    else:
        assert record["details"]["selection_on_test"] is True and "selection_dice" in record["metrics"]
