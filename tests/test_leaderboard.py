"""Tests for loading run records, aggregating seeds into cells and rendering."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from simcrop_bench.errors import UserError
from simcrop_bench.reporting.leaderboard import (
    aggregate,
    format_mean_std,
    leaderboard,
    load_records,
    records_frame,
    rich_table,
    to_csv,
    to_json,
    to_latex,
    to_markdown,
)


def make_record(
    *,
    task: str = "lung_seg",
    method: str = "scratch",
    fraction: int = 100,
    seed: int = 42,
    value: float = 0.8,
    metric: str = "dice",
    higher_is_better: bool = True,
    profile: str = "demo",
    protocol: str = "heldout",
    synthetic: bool = True,
    cell_hash: str | None = None,
) -> dict:
    cell_hash = cell_hash or f"{method[:4]}{task[:4]}{fraction}"
    return {
        "schema_version": 1,
        "run_id": f"{task}/{method}/f{fraction}/s{seed}/{profile}-{protocol}-{cell_hash}",
        "method": method,
        "task": task,
        "fraction": fraction,
        "seed": seed,
        "profile": profile,
        "protocol": protocol,
        "synthetic": synthetic,
        "primary_metric": metric,
        "higher_is_better": higher_is_better,
        "metrics": {metric: value, "loss": 0.1},
        "per_class": {metric: {"left lung": value}},
        "config": {"lr": 1e-3},
        "config_hash": "3fa9c2d1e4b7",
        "cell_hash": cell_hash,
        "checkpoint": None,
        "data": {"dataset": "luna16", "root": "/x", "fingerprint": "f", "synthetic": synthetic},
        "provenance": {"git_commit": "abc", "git_dirty": False, "packages": {}, "device": "cpu", "hostname": "h"},
        "wall_time_s": 1.0,
        "peak_memory_mb": 10.0,
        "created_utc": "2026-11-28T12:00:00Z",
    }


def write_record(results: Path, record: dict) -> Path:
    path = results / "runs" / record["run_id"] / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- loading


def test_load_records_finds_nested_records_and_skips_dotfiles(tmp_path: Path) -> None:
    for seed in (1, 2):
        write_record(tmp_path, make_record(seed=seed))
    # An atomic-write temporary and a staging dir must not be read.
    (tmp_path / "runs" / ".record.json.abc.tmp").write_text("{half")
    staging = tmp_path / "runs" / ".staging" / "x" / "record.json"
    staging.parent.mkdir(parents=True)
    staging.write_text("{half")

    records = load_records(tmp_path)

    assert sorted(r["seed"] for r in records) == [1, 2]


def test_load_records_empty_and_missing_dirs(tmp_path: Path) -> None:
    assert load_records(tmp_path) == []
    with pytest.raises(UserError, match="does not exist"):
        load_records(tmp_path / "nope")


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    write_record(tmp_path, make_record(seed=1))
    bad = tmp_path / "runs" / "broken" / "record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"schema_version": 1,', encoding="utf-8")

    with pytest.raises(UserError) as info:
        load_records(tmp_path)

    message = str(info.value)
    assert str(bad) in message and "not valid JSON" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.pop("seed"), "missing required key(s) 'seed'"),
        (lambda r: r.update(schema_version=2), "unsupported schema_version 2"),
        (lambda r: r.update(seed=True), "key 'seed' should be int"),
        (lambda r: r.update(metrics={"loss": 0.1}), "primary metric 'dice' not found"),
        (lambda r: r["metrics"].update(dice=None), "metrics['dice'] should be a number"),
    ],
)
def test_invalid_record_names_file_and_problem(tmp_path: Path, mutate, expected) -> None:
    record = make_record()
    mutate(record)
    path = write_record(tmp_path, record)

    with pytest.raises(UserError) as info:
        load_records(tmp_path)

    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_duplicate_run_id_is_rejected(tmp_path: Path) -> None:
    record = make_record()
    write_record(tmp_path, record)
    copy = tmp_path / "runs" / "copy" / "record.json"
    copy.parent.mkdir(parents=True)
    copy.write_text(json.dumps(record))

    with pytest.raises(UserError, match="already used"):
        load_records(tmp_path)


# ------------------------------------------------------------------------ aggregation


def test_records_frame_columns() -> None:
    frame = records_frame([make_record(value=0.5, seed=7)])

    assert list(frame.columns) == [
        "task",
        "method",
        "fraction",
        "seed",
        "profile",
        "protocol",
        "synthetic",
        "cell_hash",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "higher_is_better",
        "run_id",
    ]
    row = frame.iloc[0]
    assert (row["metric"], row["value"], row["seed"]) == ("dice", 0.5, 7)
    assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])  # the record has no interval


def test_variant_is_part_of_the_protocol_label_and_filter(tmp_path: Path) -> None:
    paper = make_record(task="ctrate_cls", metric="auc", cell_hash="aaa")
    cached = {**make_record(task="ctrate_cls", metric="auc", cell_hash="bbb", value=0.6), "variant": "lp-cached"}
    cached["run_id"] += "-cached"
    for record in (paper, cached):
        write_record(tmp_path, record)
    board = leaderboard(tmp_path)
    assert sorted(board["protocol"]) == ["heldout", "heldout+lp-cached"]
    assert len(leaderboard(tmp_path, protocol="heldout")) == 2  # the base protocol selects its variants
    assert list(leaderboard(tmp_path, protocol="heldout+lp-cached")["mean"]) == [0.6]


def test_single_seed_shows_its_bootstrap_interval_several_seeds_do_not(tmp_path: Path) -> None:
    one = {
        **make_record(seed=1, value=0.8, cell_hash="one"),
        "intervals": {"dice": {"low": 0.71, "high": 0.86, "unit": "group"}},
    }
    write_record(tmp_path, one)
    for seed in (1, 2):
        rec = {
            **make_record(seed=seed, value=0.7 + seed / 10, method="other", cell_hash="two"),
            "intervals": {"dice": {"low": 0.1, "high": 0.9}},
        }
        write_record(tmp_path, rec)
    board = leaderboard(tmp_path)
    single = board[board["method"] == "scratch"].iloc[0]
    assert (single["ci_low"], single["ci_high"]) == (0.71, 0.86)
    assert np.isnan(board[board["method"] == "other"].iloc[0]["ci_high"])
    text = to_markdown(board)
    assert "0.800 [0.710, 0.860] (n=1)" in text and "0.850 ± 0.071 (n=2)" in text


def test_aggregate_mean_std_over_three_seeds(tmp_path: Path) -> None:
    for seed, value in ((3, 0.80), (1, 0.70), (2, 0.90)):
        write_record(tmp_path, make_record(seed=seed, value=value))

    agg = aggregate(records_frame(load_records(tmp_path)))

    assert len(agg) == 1
    row = agg.iloc[0]
    # By hand: mean = 2.4 / 3 = 0.8; squared deviations 0.01 + 0.01 + 0 = 0.02,
    # sample variance 0.02 / (3 - 1) = 0.01, std = 0.1.
    assert row["mean"] == pytest.approx(0.8)
    assert row["std"] == pytest.approx(0.1)
    assert row["n_seeds"] == 3
    assert row["seeds"] == [1, 2, 3]


def test_single_seed_has_nan_std() -> None:
    agg = aggregate(records_frame([make_record(value=0.6)]))

    assert agg.iloc[0]["n_seeds"] == 1
    assert math.isnan(agg.iloc[0]["std"])


def test_grouping_keeps_cell_hash_profile_protocol_and_data_apart() -> None:
    records = [
        make_record(seed=1, value=0.1, cell_hash="aaa"),
        make_record(seed=2, value=0.2, cell_hash="aaa"),
        make_record(seed=1, value=0.3, cell_hash="bbb"),
        make_record(seed=1, value=0.4, cell_hash="aaa", profile="full"),
        make_record(seed=1, value=0.5, cell_hash="aaa", protocol="cv5"),
        make_record(seed=1, value=0.6, cell_hash="aaa", synthetic=False),
    ]

    agg = aggregate(records_frame(records))

    assert len(agg) == 5
    assert sorted(agg["n_seeds"]) == [1, 1, 1, 1, 2]
    merged = agg[agg["n_seeds"] == 2].iloc[0]
    assert (merged["cell_hash"], merged["profile"]) == ("aaa", "demo")
    assert merged["mean"] == pytest.approx(0.15)


def test_duplicate_seed_in_one_cell_is_rejected() -> None:
    a = make_record(seed=1, value=0.1)
    b = dict(make_record(seed=1, value=0.2), run_id="other")
    with pytest.raises(UserError, match="same seed"):
        aggregate(records_frame([a, b]))


def test_sorting_is_direction_aware() -> None:
    records = (
        [make_record(task="a_seg", method=m, value=v) for m, v in (("low", 0.5), ("high", 0.9), ("mid", 0.7))]
        + [
            make_record(task="b_hd", method=m, value=v, metric="hd95", higher_is_better=False)
            for m, v in (("low", 5.0), ("high", 9.0), ("mid", 7.0))
        ]
        + [make_record(task="a_seg", method="few", fraction=10, value=0.1)]
    )

    agg = aggregate(records_frame(records))

    assert list(zip(agg["task"], agg["fraction"], agg["method"])) == [
        ("a_seg", 10, "few"),
        ("a_seg", 100, "high"),
        ("a_seg", 100, "mid"),
        ("a_seg", 100, "low"),
        ("b_hd", 100, "low"),
        ("b_hd", 100, "mid"),
        ("b_hd", 100, "high"),
    ]


def test_leaderboard_filters(tmp_path: Path) -> None:
    for method in ("scratch", "simcrop"):
        for profile in ("demo", "full"):
            write_record(tmp_path, make_record(method=method, profile=profile))
    write_record(tmp_path, make_record(task="nodule_cls", metric="auc"))

    assert len(leaderboard(tmp_path)) == 5
    only = leaderboard(tmp_path, method="simcrop", profile="full")
    assert list(zip(only["method"], only["profile"])) == [("simcrop", "full")]
    assert set(leaderboard(tmp_path, task="nodule_cls")["metric"]) == {"auc"}
    assert len(leaderboard(tmp_path, method=["scratch", "simcrop"], task="lung_seg")) == 4
    assert leaderboard(tmp_path, protocol="cv5").empty


# -------------------------------------------------------------------------- renderers


@pytest.fixture
def agg():
    records = [make_record(seed=s, value=v) for s, v in ((1, 0.7), (2, 0.8), (3, 0.9))]
    records.append(make_record(method="simcrop", value=0.85, synthetic=False))
    records.append(make_record(task="lung_hd", metric="hd95", higher_is_better=False, value=12.3456))
    return aggregate(records_frame(records))


def test_format_mean_std_digits() -> None:
    assert format_mean_std(0.8, 0.1) == "0.800 ± 0.100"
    assert format_mean_std(0.8, float("nan")) == "0.800"
    assert format_mean_std(12.3456, 1.0) == "12.35 ± 1.00"
    assert format_mean_std(0.81234, 0.01, digits=2, pm=r"$\pm$") == r"0.81 $\pm$ 0.01"


def test_markdown(agg) -> None:
    text = to_markdown(agg)
    lines = text.splitlines()

    assert lines[0].startswith("| task | fraction | method |")
    assert set(lines[1].replace("|", "").split()) <= {":---", "---:"}
    assert "0.800 ± 0.100 (n=3)" in text
    assert "0.850 (n=1)" in text and "0.850 ±" not in text
    assert "12.35 (n=1)" in text and "hd95 ↓" in text
    scratch = next(line for line in lines if "| scratch |" in line and "0.800" in line)
    simcrop = next(line for line in lines if "| simcrop |" in line)
    assert "| synthetic |" in scratch and "| real |" in simcrop
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_latex(agg) -> None:
    text = to_latex(agg)

    assert text.startswith(r"\begin{tabular}") and text.rstrip().endswith(r"\end{tabular}")
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert rule in text
    assert r"lung\_seg" in text and "lung_seg" not in text
    assert r"0.800 $\pm$ 0.100 (n=3)" in text
    assert r"100\%" in text and r"hd95 $\downarrow$" in text


def test_csv_and_json(agg) -> None:
    csv = to_csv(agg)
    assert csv.splitlines()[0].split(",")[:3] == ["task", "fraction", "method"]
    assert "1;2;3" in csv

    rows = json.loads(to_json(agg))
    scratch = next(r for r in rows if r["method"] == "scratch" and r["n_seeds"] == 3)
    assert scratch["mean"] == pytest.approx(0.8) and scratch["seeds"] == [1, 2, 3]
    assert next(r for r in rows if r["method"] == "simcrop")["std"] is None


def test_rich_table(agg) -> None:
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(rich_table(agg))
    text = console.export_text()

    assert "mean ± std (n)" in text
    assert "0.800 ± 0.100 (n=3)" in text and "0.850 (n=1)" in text
    assert "synthetic" in text and "real" in text


def test_renderers_handle_empty_frame() -> None:
    empty = aggregate(records_frame([]))

    assert empty.empty and "mean" in empty.columns
    assert to_markdown(empty).count("\n") == 2
    assert json.loads(to_json(empty)) == []
    rich_table(empty)
