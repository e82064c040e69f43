"""The results index: the same rows as reading every record, kept fresh by publishing and by seed-folder mtimes."""

from __future__ import annotations

import json
import math
import os
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from simcrop_bench.errors import UserError
from simcrop_bench.reporting import results_index
from simcrop_bench.reporting.leaderboard import leaderboard, load_records, records_frame
from simcrop_bench.util.atomic import staged_dir

from .test_leaderboard import make_record, write_record


def indexed(results: Path) -> pd.DataFrame:
    return results_index.indexed_frame(results)


def from_records(results: Path) -> pd.DataFrame:
    return records_frame(load_records(results))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    for seed, value in ((1, 0.8), (2, math.nan), (3, 0.7)):
        write_record(tmp_path, make_record(seed=seed, value=value))
    record = make_record(task="ctrate_cls", method="clip", fraction=0.5, seed=1, metric="auc", synthetic=False)
    record["intervals"] = {"auc": {"low": 0.61, "high": 0.72}}
    record["variant"] = "lp-cached"
    write_record(tmp_path, record)
    write_record(tmp_path, make_record(metric="hd95", higher_is_better=False, value=12.5, method="mae", seed=7))
    return tmp_path


def test_index_rows_equal_the_rows_read_from_every_record(results: Path):
    pd.testing.assert_frame_equal(indexed(results), from_records(results).sort_values("run_id", ignore_index=True))
    assert results_index.index_path(results).is_file()


def test_a_fresh_index_is_answered_without_reading_any_record(results: Path):
    before = indexed(results)
    # Rewritten in place (no folder renamed): the index has no reason to look, so it cannot have read it.
    (results / "runs" / make_record(seed=1)["run_id"] / "record.json").write_text("{broken")
    pd.testing.assert_frame_equal(indexed(results), before)
    with pytest.raises(UserError, match=r"record\.json: not valid JSON"):
        results_index.indexed_frame(results, reindex=True)


def remove(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    folder.rmdir()


def test_new_and_removed_seed_folders_are_picked_up_by_fraction_folder_mtimes(results: Path):
    indexed(results)
    write_record(results, make_record(seed=9))  # a new seed folder
    remove(results / "runs" / Path(make_record(method="mae", seed=7)["run_id"]).parent)
    for run_id in (make_record(seed=9)["run_id"], make_record(method="mae", seed=7)["run_id"]):
        os.utime(results / "runs" / Path(run_id).parents[1], ns=(1, 1))  # whatever the clock's resolution
    pd.testing.assert_frame_equal(indexed(results), from_records(results).sort_values("run_id", ignore_index=True))
    assert len(indexed(results)) == 5


def test_a_run_copied_by_hand_into_an_existing_seed_folder_needs_reindex(results: Path):
    indexed(results)
    write_record(results, make_record(seed=1, profile="paper"))  # leaves the fraction folder's mtime alone
    assert len(indexed(results)) == 5
    assert len(results_index.indexed_frame(results, reindex=True)) == 6


def test_publishing_a_record_updates_the_index_in_place(results: Path):
    indexed(results)
    record = make_record(seed=5)
    final = results / "runs" / record["run_id"]
    with staged_dir(final) as staging:
        (staging / "record.json").write_text(json.dumps(record))
    results_index.record_published(results, final)
    with sqlite3.connect(results_index.index_path(results)) as connection:
        stored = dict(connection.execute("SELECT folder, mtime_ns FROM folders"))
        run_ids = {row[0] for row in connection.execute("SELECT run_id FROM rows")}
    assert record["run_id"] in run_ids
    fraction_folder = final.parents[1]
    assert stored[fraction_folder.relative_to(results / "runs").as_posix()] == fraction_folder.stat().st_mtime_ns


def test_a_run_published_while_the_index_is_locked_is_read_at_the_next_refresh(results: Path):
    indexed(results)
    record = make_record(seed=1, profile="paper")  # the same seed folder as an indexed run
    final = results / "runs" / record["run_id"]
    with staged_dir(final) as staging:
        (staging / "record.json").write_text(json.dumps(record))
    with pytest.MonkeyPatch.context() as patch:  # the index is locked: the hook only sets the mtime

        def locked(*args, **kwargs):
            raise sqlite3.OperationalError("database is locked")

        patch.setattr(results_index, "_reindex", locked)
        results_index.record_published(results, final)
    os.utime(final.parents[1], ns=(2, 2))  # as the hook did, whatever the clock's resolution
    assert record["run_id"] in set(indexed(results)["run_id"])


def test_a_copied_run_folder_is_refused_as_it_is_without_the_index(results: Path):
    indexed(results)
    record = make_record(seed=3)
    copy = results / "runs" / "lung_seg" / "scratch" / "f100" / "s99" / "copy"  # a new seed folder: seen
    copy.mkdir(parents=True)
    (copy / "record.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="already used by"):
        indexed(results)
    with pytest.raises(UserError, match="already used by"):
        load_records(results)


def test_a_corrupt_or_older_index_is_rebuilt(results: Path):
    expected = indexed(results)
    results_index.index_path(results).write_bytes(b"not a database")
    pd.testing.assert_frame_equal(indexed(results), expected)
    with sqlite3.connect(results_index.index_path(results)) as connection:
        connection.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
    pd.testing.assert_frame_equal(indexed(results), expected)


def test_leaderboard_aggregates_from_the_index(results: Path):
    board = leaderboard(results, task="lung_seg", method="scratch")
    assert list(board["n_seeds"]) == [3] and math.isnan(board["mean"].iloc[0])  # a NaN seed shows
    assert board["seeds"].iloc[0] == [1, 2, 3]
    assert (results / ".index.sqlite").is_file()


@pytest.mark.parametrize(
    "filters", [{}, {"task": "lung_seg"}, {"method": ["clip", "mae"]}, {"protocol": "heldout"}, {"profile": "paper"}]
)
def test_leaderboard_from_the_stored_cells_equals_aggregating_every_record(results: Path, filters: dict):
    from simcrop_bench.reporting.leaderboard import aggregate, filter_frame

    for seed in (4, 5):  # a second cell in the scratch folder, written after the first
        write_record(results, make_record(seed=seed, value=0.5 + seed / 100, cell_hash="second"))
    expected = aggregate(filter_frame(from_records(results), **filters))
    pd.testing.assert_frame_equal(leaderboard(results, **filters), expected)
    pd.testing.assert_frame_equal(leaderboard(results, reindex=True, **filters), expected)


def test_a_seed_twice_in_one_cell_is_refused_unless_filtered_out(results: Path):
    twin = make_record(seed=1, value=0.3)
    twin["run_id"] += "-copy"
    folder = results / "runs" / twin["run_id"]
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(twin))
    with pytest.raises(UserError, match="the same seed appears more than once in one cell"):
        leaderboard(results, reindex=True)
    with pytest.raises(UserError, match="the same seed appears more than once in one cell"):
        aggregate_every_record(results)
    assert list(leaderboard(results, task="ctrate_cls")["method"]) == ["clip"]


def aggregate_every_record(results: Path) -> pd.DataFrame:
    from simcrop_bench.reporting.leaderboard import aggregate

    return aggregate(from_records(results))
