"""`run` end to end on a small LUNA16 twin, through the CLI as a user calls it."""

from __future__ import annotations

import csv
import gzip
import json
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from simcrop_bench.data.roots import resolve_data_root
from simcrop_bench.data.synthetic.luna16 import write_luna16_twin
from simcrop_bench.stats.metrics import dice_per_class

from .conftest import run_cli

FAST = [
    "--set",
    "task.max_epochs=2",
    "--set",
    "task.val_every=1",
    "--set",
    "task.crops_per_volume=1",
    "--set",
    "task.warmup_epochs=1",
]


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("luna16_twin")
    write_luna16_twin(root, n_cases=8)
    return root


def records_under(results: Path) -> list[Path]:
    return sorted(results.glob("runs/**/record.json"))


def assert_clean_failure(result, *expected: str) -> None:
    assert result.returncode != 0
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and "Warning" not in line and not line.startswith("  warn")
    ]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in errors[0], errors[0]


@pytest.mark.slow
def test_run_seeds_skip_leaderboard_and_table(twin, tmp_path):
    results = tmp_path / "results"
    args = [
        "run",
        "-m",
        "scratch",
        "-t",
        "lung_seg",
        "--data-root",
        str(twin),
        "--results",
        str(results),
        "--seed",
        "1",
        "--seed",
        "2",
        "--device",
        "cpu",
        *FAST,
    ]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    paths = records_under(results)
    assert len(paths) == 2
    record = json.loads(paths[0].read_text())
    assert record["method"] == "scratch" and record["task"] == "lung_seg" and record["synthetic"] is True
    assert record["protocol"] == "heldout" and record["details"]["selection_on_test"] is False
    assert 0.0 <= record["metrics"]["dice"] <= 1.0
    assert set(record["per_class"]["dice"]) == {"left lung", "right lung", "trachea"}
    for key in ("config_hash", "cell_hash", "wall_time_s", "peak_memory_mb"):
        assert record[key]
    assert record["provenance"]["packages"]["torch"] and "git_commit" in record["provenance"]
    assert record["data"]["fingerprint"] and record["checkpoint"] is None
    sizes = record["details"]["splits"]
    assert sizes["testing"] == 3 and sizes["training"] + sizes["validation"] == 5
    # the terminal's story: one line per finished cell, then mean ± std over the seeds per metric
    done = [line for line in first.stdout.splitlines() if line.startswith("done: scratch → lung_seg f100 ")]
    assert len(done) == 2 and all("encoder none" in line for line in done), first.stdout
    low, high = record["intervals"]["dice"]["low"], record["intervals"]["dice"]["high"]
    assert f"dice {record['metrics']['dice']:.3f} [{low:.3f}, {high:.3f}]" in done[0]
    assert done[0].endswith(f"record {paths[0].parent}/record.json")
    seed_dices = [json.loads(p.read_text())["metrics"]["dice"] for p in paths]
    summary = [line for line in first.stdout.splitlines() if "(mean ± std over seeds 1, 2, n=2)" in line]
    assert f"dice {np.mean(seed_dices):.3f} ± {np.std(seed_dices, ddof=1):.3f}" in summary[0], first.stdout
    assert summary[0].startswith("scratch → lung_seg f100: dice ")  # the primary metric first

    again = run_cli(*args)
    assert again.returncode == 0 and again.stdout.count("exists, skipped") == 2, again.stdout

    board = run_cli("leaderboard", "--results", str(results), "--format", "json")
    assert board.returncode == 0, board.stderr
    rows = json.loads(board.stdout)
    rows = rows if isinstance(rows, list) else rows["rows"]
    assert len(rows) == 1 and rows[0]["n_seeds"] == 2 and sorted(rows[0]["seeds"]) == [1, 2]
    dices = [json.loads(p.read_text())["metrics"]["dice"] for p in paths]
    assert rows[0]["mean"] == pytest.approx(np.mean(dices))
    assert rows[0]["std"] == pytest.approx(np.std(dices, ddof=1))

    latex = run_cli("table", "--results", str(results), "--format", "latex")
    assert latex.returncode == 0 and "\\toprule" in latex.stdout and "scratch" in latex.stdout


@pytest.mark.slow
def test_metric_recomputes_from_saved_predictions(twin, tmp_path):
    from simcrop_bench.protocols.segmentation.config import SegmentationConfig
    from simcrop_bench.protocols.segmentation.finetune import preprocessing

    results = tmp_path / "results"
    done = run_cli(
        "run",
        "-m",
        "scratch",
        "-t",
        "lung_seg",
        "--data-root",
        str(twin),
        "--results",
        str(results),
        "--protocol",
        "legacy",
        "--device",
        "cpu",
        *FAST,
    )
    assert done.returncode == 0, done.stderr
    folder = records_under(results)[0].parent
    record = json.loads((folder / "record.json").read_text())
    assert record["protocol"] == "legacy" and record["details"]["selection_on_test"] is True
    task_cfg = {k: v for k, v in record["config"]["task"].items() if k != "name"}
    cfg = SegmentationConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in task_cfg.items()})
    pipeline = preprocessing(cfg)
    with open(folder / "per_case.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    for row in rows:
        item = {
            "image": str(twin / "images" / f"{row['case']}.nii.gz"),
            "label": str(twin / "masks_processed" / f"{row['case']}.nii.gz"),
        }
        label = pipeline(item)["label"][0].numpy()
        pred = np.asanyarray(nib.load(folder / "predictions" / f"{row['case']}.nii.gz").dataobj)
        dice = dice_per_class(pred, label, 4)
        assert float(row["dice"]) == pytest.approx(np.nanmean(dice[1:]))
        assert float(row["left lung"]) == pytest.approx(dice[1])
    assert record["metrics"]["dice"] == pytest.approx(np.mean([float(r["dice"]) for r in rows]))


def test_bad_data_roots_fail_cleanly(twin, tmp_path):
    results = tmp_path / "results"
    base = ["run", "-m", "scratch", "-t", "lung_seg", "--results", str(results), "--device", "cpu", *FAST]

    missing = run_cli(*base, "--data-root", str(tmp_path / "nowhere"))
    assert_clean_failure(missing, "nowhere", "does not exist")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_failure(run_cli(*base, "--data-root", str(empty)), "dataset_10", "split file is missing")

    broken = tmp_path / "broken"
    broken.mkdir()
    for item in twin.iterdir():
        (broken / item.name).symlink_to(item)
    (broken / "images").unlink()
    (broken / "images").mkdir()
    for image in (twin / "images").iterdir():
        (broken / "images" / image.name).symlink_to(image)
    spec = json.loads((twin / "dataset_100.json").read_text())
    victim = broken / spec["testing"][0]["image"]
    victim.unlink()
    victim.write_bytes(gzip.compress(b"this is not a NIfTI file"))
    assert_clean_failure(run_cli(*base, "--data-root", str(broken)), victim.name, "not a readable NIfTI")
    assert records_under(results) == []


def test_bad_names_and_settings_fail_cleanly(tmp_path):
    assert_clean_failure(run_cli("run", "-m", "simcorp", "-t", "lung_seg"), "unknown method 'simcorp'")
    assert_clean_failure(run_cli("run", "-m", "scratch", "-t", "lung"), "unknown task 'lung'", "lung_seg")
    assert_clean_failure(run_cli("run", "-m", "scratch", "-t", "lung_seg", "--set", "task.lr"), "expected key=value")
    assert_clean_failure(run_cli("leaderboard", "--results", str(tmp_path)), "no run records")


def test_twin_is_generated_once_and_marked_synthetic():
    first = resolve_data_root("luna16")
    assert first.synthetic and first.source == "twin"
    assert (first.path / "SYNTHETIC.md").is_file() and (first.path / "dataset_10.json").is_file()
    stamp = (first.path / "dataset_100.json").stat().st_mtime_ns
    again = resolve_data_root("luna16")
    assert again.path == first.path and (again.path / "dataset_100.json").stat().st_mtime_ns == stamp


TOY_METHOD = textwrap.dedent(
    '''
    """A pretraining method that only draws seeded weights: exercises the checkpoint store."""
    from simcrop_bench.api import Method
    from simcrop_bench.api import MethodConfig
    from simcrop_bench.registry import register_method

    CALLS = []

    @register_method("toy_pretrain")
    class Toy(Method):
        """Seeded random encoder written in the released format."""
        kind = "self-supervised"
        Config = MethodConfig

        def pretrain(self, ctx):
            import torch
            from simcrop_bench.models.vit3d import ViT3D
            from simcrop_bench.models.vit3d import export_released
            CALLS.append(ctx.seed)
            torch.manual_seed(ctx.seed)
            path = ctx.workdir / "encoder.pth"
            torch.save(export_released(ViT3D(self.config.encoder)), path)
            return path
    '''
)


@pytest.mark.slow
def test_pretrained_checkpoint_is_stored_and_reused(twin, tmp_path):
    import sys

    from simcrop_bench.run.cell import RunRequest, run_job

    plugin = tmp_path / "toy_pretrain.py"
    plugin.write_text(TOY_METHOD)
    results = tmp_path / "results"
    overrides = [FAST[i + 1] for i in range(0, len(FAST), 2)]
    common = dict(
        method="toy_pretrain",
        task="lung_seg",
        data_root=str(twin),
        results=str(results),
        plugins=[str(plugin)],
        device="cpu",
        overrides=overrides,
    )
    first = run_job(RunRequest(seed=1, **common))
    second = run_job(RunRequest(seed=2, **common))
    module = next(m for name, m in sys.modules.items() if name.startswith("simcrop_bench_plugins.toy_pretrain"))
    assert module.CALLS == [42]  # pretrained once, reused for the second seed
    assert first["checkpoint"]["sha256"] == second["checkpoint"]["sha256"]
    assert first["checkpoint"]["pretrain_hash"] == second["checkpoint"]["pretrain_hash"]
    assert second["details"]["encoder_load"]["loaded"]  # the task loaded the stored blocks
    # One stored pretraining (hidden names are the store's bookkeeping: its lock file, work folders).
    stored = [p for p in (results / "checkpoints" / "toy_pretrain").iterdir() if not p.name.startswith(".")]
    assert len(stored) == 1


@pytest.mark.slow
def test_official_layout_prepared_runs_like_the_simcrop_twin(twin, tmp_path):
    official, prepared = tmp_path / "official", tmp_path / "prepared"
    assert (
        run_cli(
            "data", "synth", "--dataset", "luna16", "--layout", "official", "--out", str(official), "--cases", "8"
        ).returncode
        == 0
    )
    done = run_cli("data", "prepare", "--dataset", "luna16", "--from", str(official), "--out", str(prepared), "-j", "3")
    assert done.returncode == 0, done.stderr
    dice = {}
    for name, root in (("simcrop", twin), ("prepared", prepared)):
        results = tmp_path / f"results-{name}"
        ran = run_cli(
            "run",
            "-m",
            "scratch",
            "-t",
            "lung_seg",
            "--data-root",
            str(root),
            "--results",
            str(results),
            "--seed",
            "3",
            "--device",
            "cpu",
            "--set",
            "run.cache=false",
            *FAST,
        )
        assert ran.returncode == 0, ran.stderr
        record = json.loads(records_under(results)[0].read_text())
        assert record["synthetic"] is True
        dice[name] = record["per_class"]["dice"]
    # the same cases in two layouts: the same numbers
    assert dice["prepared"] == pytest.approx(dice["simcrop"], abs=1e-6)


@pytest.mark.slow
def test_simcrop_pretrains_on_the_ctrate_twin_and_fine_tunes(twin, tmp_path):
    results = tmp_path / "results"
    done = run_cli(
        "run",
        "-m",
        "simcrop",
        "-t",
        "lung_seg",
        "--data-root",
        str(twin),
        "--results",
        str(results),
        "--device",
        "cpu",
        "--set",
        "method.train.epochs=1",
        "--set",
        "method.simcrop.max_text_len=128",
        *FAST,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(records_under(results)[0].read_text())
    assert record["method"] == "simcrop" and record["method_kind"] == "vision-language"
    checkpoint = record["checkpoint"]
    assert checkpoint["sha256"] and checkpoint["synthetic"] is True and "ctrate" in checkpoint["data"]
    assert record["details"]["encoder_load"]["loaded"]  # the pretrained blocks reached the UNETR
    folder = Path(checkpoint["path"]).parent
    steps = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert steps and {"loss", "loss_mim", "loss_mlm", "loss_align"} <= set(steps[-1])
