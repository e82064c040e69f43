"""The "add your method" path of docs/add-a-method.md, as a user follows it.

The complete example is taken verbatim from the documentation, written to a file outside the
repository, checked with ``check-method``, run with ``--plugin`` next to a (tiny) SimCroP run, and
must appear beside ``simcrop`` in the leaderboard.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from simcrop_bench.data.synthetic.luna16 import write_luna16_twin

from .conftest import REPO, run_cli

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
    "method.train.epochs=1",
    "--device",
    "cpu",
]


def documented_example() -> str:
    """The Python block under '## A complete example' in docs/add-a-method.md."""
    doc = (REPO / "docs" / "add-a-method.md").read_text()
    section = doc.split("## A complete example", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def plugin(tmp_path) -> Path:
    path = tmp_path / "outside" / "my_method.py"
    path.parent.mkdir()
    path.write_text(documented_example())
    assert REPO not in path.resolve().parents
    return path


def test_documented_example_imports_only_the_documented_api(plugin):
    source = plugin.read_text()
    imported = set(re.findall(r"^\s*from (simcrop_bench[\w.]*) import", source, re.M))
    doc = (REPO / "docs" / "add-a-method.md").read_text()
    prose = doc.replace(source, "")  # the API must be described outside the example itself
    assert len(imported) >= 5 and [m for m in imported if m not in prose] == []
    assert not re.search(r"^(import|from) (torch|monai|transformers)", source, re.M)  # no heavy import at top


def test_documented_example_passes_check_method(plugin):
    result = run_cli("check-method", "mine", "--plugin", str(plugin))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mine satisfies the method contract" in result.stdout
    assert result.stdout.count("  ok ") == 3  # encoder, step and export were all checked


@pytest.mark.slow
def test_plugin_method_runs_and_appears_next_to_simcrop_in_the_leaderboard(plugin, tmp_path):
    twin = tmp_path / "luna16"
    write_luna16_twin(twin, n_cases=8)
    results = tmp_path / "results"
    common = ["--task", "lung_seg", "--data-root", str(twin), "--results", str(results), *FAST]

    listed = run_cli("list", "methods", "--plugin", str(plugin), env={"COLUMNS": "200"})
    assert "mine" in listed.stdout and "Denoising" in listed.stdout, listed.stderr
    mine = run_cli("run", "--plugin", str(plugin), "--method", "mine", *common)
    assert mine.returncode == 0, mine.stderr
    simcrop = run_cli("run", "--method", "simcrop", "--set", "method.simcrop.max_text_len=128", *common)
    assert simcrop.returncode == 0, simcrop.stderr

    board = run_cli("leaderboard", "--results", str(results), "--task", "lung_seg", "--format", "json")
    assert board.returncode == 0, board.stderr
    rows = json.loads(board.stdout)
    rows = rows if isinstance(rows, list) else rows["rows"]
    by_method = {row["method"]: row for row in rows}
    assert set(by_method) == {"mine", "simcrop"}
    assert by_method["mine"]["task"] == by_method["simcrop"]["task"] == "lung_seg"
    assert 0.0 <= by_method["mine"]["mean"] <= 1.0

    table = run_cli("leaderboard", "--results", str(results), "--task", "lung_seg", env={"COLUMNS": "200"})
    lines = [line for line in table.stdout.splitlines() if "lung_seg" in line]
    assert any("mine" in line for line in lines) and any("simcrop" in line for line in lines), table.stdout

    record = json.loads(next((results / "runs" / "lung_seg" / "mine").glob("**/record.json")).read_text())
    assert record["method_kind"] == "self-supervised" and record["details"]["encoder_load"]["loaded"]
    assert record["checkpoint"]["path"].startswith(str(results / "checkpoints" / "mine"))
