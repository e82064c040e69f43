"""Classification split layer (protocol.md §1–§5, §11) on the synthetic twins of the four linear-probe tasks."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from simcrop_bench.data.datasets import synthesize
from simcrop_bench.data.splits.classification import (
    ClassificationSplits,
    load_classification_splits,
    split_folder,
    task_fractions,
)
from simcrop_bench.data.splits.files import import_splits, read_split_csv
from simcrop_bench.data.splits.fractions import fraction_subset
from simcrop_bench.data.synthetic.ccccii import write_ccccii_twin
from simcrop_bench.data.synthetic.radchestct import write_radchestct_twin
from simcrop_bench.errors import ConfigError, DataError

TASKS = {"ctrate_cls": "ctrate", "radchestct_cls": "radchestct", "ccccii_cls": "ccccii", "luna16_cls": "luna16"}
CSVS = ("train_list.csv", "train_list_10.csv", "train_list_1.csv", "val_list.csv", "test_list.csv")


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> dict[str, Path]:
    """The default SimCroP-layout twins (what `run` generates), plus a CC-CCII twin with the official tree."""
    base = tmp_path_factory.mktemp("cls_twins")
    roots = {}
    for task, dataset in TASKS.items():
        synthesize(dataset, "simcrop", base / dataset)
        roots[task] = base / dataset
    write_ccccii_twin(base / "ccccii_both", n_patients=6, layout="both")
    roots["ccccii_both"] = base / "ccccii_both"
    return roots


def load(twins, task, fraction, protocol, **kwargs) -> ClassificationSplits:
    return load_classification_splits(task, twins[task], fraction, protocol, **kwargs)


def csv_ids(root: Path, name: str, task: str) -> list[str]:
    return list(read_split_csv(root / name, task).ids)


@pytest.mark.parametrize("task", TASKS)
def test_sizes_nesting_and_unchanged_lists(twins, task):
    root = twins[task]
    full = csv_ids(root, "train_list.csv", task)
    test = csv_ids(root, "test_list.csv", task)
    fractions = task_fractions(task)
    assert fractions == ((1, 10, 100) if task in ("ctrate_cls", "ccccii_cls") else (10, 100))
    previous: list[str] = []
    for fraction in fractions:
        legacy = load(twins, task, fraction, "legacy")
        heldout = load(twins, task, fraction, "heldout")
        assert legacy.test.ids == heldout.test.ids == test  # test rows never change (§5.3)
        if fraction == 100:
            assert legacy.train.ids == full
        else:  # §4: a prefix of RandomState(42).permutation(N), at least one row on the tiny twins
            n = len(legacy.train)
            assert n == max(len(fraction_subset(len(full), fraction / 100)), 1 if task != "luna16_cls" else 2)
            assert legacy.train.ids == [full[i] for i in np.random.RandomState(42).permutation(len(full))[:n]]
            assert heldout.train.ids == legacy.train.ids  # 1 % and 10 % unchanged by heldout
            assert legacy.train.ids[: len(previous)] == previous  # 1 % is the head of 10 %
            previous = legacy.train.ids
        for split in (legacy, heldout):
            for rows in (split.train, split.val, split.test):
                assert len(rows.ids) == len(rows.groups) == len(rows.paths) == rows.labels.shape[0] > 0
                assert all(p.is_file() for p in rows.paths)


@pytest.mark.parametrize("task", ["ctrate_cls", "ccccii_cls", "luna16_cls", "ccccii_both"])
def test_heldout_validation_groups_are_disjoint(twins, task):
    name = "ccccii_cls" if task == "ccccii_both" else task
    root = twins[task]
    full = load_classification_splits(name, root, 100, "heldout")
    ten = load_classification_splits(name, root, 10, "heldout")
    val_groups = set(full.val.groups)
    assert val_groups and full.val.ids == ten.val.ids  # one carve per task, whatever the fraction
    assert not val_groups & set(full.train.groups) and not val_groups & set(ten.train.groups)
    assert not set(full.val.ids) & set(full.test.ids)
    assert sorted(full.train.ids + full.val.ids) == sorted(csv_ids(root, "train_list.csv", name))
    again = load_classification_splits(name, root, 100, "heldout", seed=42)
    assert again.val.ids == full.val.ids  # deterministic
    if name != "luna16_cls":  # distinct carve with another seed where there is more than one eligible group
        other = load_classification_splits(name, root, 100, "heldout", val_fraction=0.5)
        assert len(set(other.val.groups)) >= len(val_groups)


def test_selection_on_test_flags(twins):
    for task in TASKS:
        legacy, heldout = load(twins, task, 100, "legacy"), load(twins, task, 100, "heldout")
        assert legacy.selection_on_test is (task != "radchestct_cls"), task
        assert heldout.selection_on_test is False
        if task == "radchestct_cls":  # official validation list under both protocols
            assert legacy.val.ids == heldout.val.ids and not set(legacy.val.ids) & set(legacy.test.ids)
        else:
            assert legacy.val.ids == legacy.test.ids


def test_ctrate_groups_paths_and_labels(twins):
    splits = load(twins, "ctrate_cls", 100, "heldout")
    assert splits.grouping == "patient" and splits.label_names[5] == "Hiatal hernia" and len(splits.label_names) == 18
    for rows in (splits.train, splits.val, splits.test):
        for volume_id, group, path in zip(rows.ids, rows.groups, rows.paths):
            split, pid, scan, _ = volume_id[: -len(".nii.gz")].split("_")
            assert group == f"{split}_{pid}"
            assert path == twins["ctrate_cls"] / f"{split}_preprocessed" / group / f"{group}{scan}" / volume_id
        assert rows.labels.shape == (len(rows.ids), 18) and set(np.unique(rows.labels)) <= {0, 1}
    groups = splits.train.groups + splits.val.groups
    assert max(groups.count(g) for g in groups) >= 2  # several volumes share a patient
    assert not set(groups) & set(splits.test.groups) and not splits.warnings  # patient-disjoint twin
    test = splits.test.labels
    both = ((test == 0).any(axis=0) & (test == 1).any(axis=0)).sum()
    assert both >= 10, test.sum(axis=0)  # the twin's test list has both values for most labels


def test_label_shapes_grouping_and_transpose(twins):
    expected = {
        "ctrate_cls": (18, "patient"),
        "radchestct_cls": (16, "volume"),
        "ccccii_cls": (None, "scan"),
        "luna16_cls": (1, "series"),
    }
    for task, (width, grouping) in expected.items():
        splits = load(twins, task, 100, "legacy")
        assert splits.grouping == grouping and splits.transpose_dhw is (task == "ccccii_cls")
        labels = splits.train.labels
        assert labels.shape == ((len(labels),) if width is None else (len(labels), width))
        assert splits.source["kind"] == "data_root" and "train_list.csv" in splits.source["files"]
    luna = load(twins, "luna16_cls", 100, "legacy")
    assert all(g == i[: -len(".nii.gz")] and "." in g for g, i in zip(luna.train.groups, luna.train.ids))
    assert set(load(twins, "ccccii_cls", 100, "legacy").test.labels.tolist()) == {0, 1, 2}


def test_twin_fraction_lists_see_both_label_values(twins):
    luna = load(twins, "luna16_cls", 10, "legacy")
    assert sorted(luna.train.labels[:, 0].tolist()) == [0, 1]
    assert set(load(twins, "luna16_cls", 100, "legacy").test.labels[:, 0].tolist()) == {0, 1}
    ctrate = load(twins, "ctrate_cls", 1, "legacy")
    assert ctrate.train.labels.sum() >= 3  # the single 1 % row is not an all-negative one


def test_ccccii_groups_by_patient_with_unzip_filenames(twins):
    splits = load_classification_splits("ccccii_cls", twins["ccccii_both"], 100, "heldout")
    assert splits.grouping == "patient" and all(re.fullmatch(r"patient_\d+", g) for g in splits.train.groups)
    assert any("leakage audit" in w for w in splits.warnings)  # per-scan split: patients straddle train/test (H6)
    assert load(twins, "ccccii_cls", 100, "heldout").grouping == "scan"


def test_radchestct_duplicated_column_warning(twins, tmp_path):
    assert not load(twins, "radchestct_cls", 100, "legacy").warnings  # the twin's token mapping keeps 3 and 11 apart
    root = tmp_path / "rad"
    write_radchestct_twin(root, layout="simcrop", mapping="simcrop_files")  # copies column 11 into 3 like SimCroP
    splits = load_classification_splits("radchestct_cls", root, 10, "legacy")
    assert len(splits.warnings) == 1
    assert "column 3 'Pericardial effusion' is identical to column 11 'Pleural effusion'" in splits.warnings[0]
    assert np.array_equal(splits.test.labels[:, 3], splits.test.labels[:, 11])


def test_missing_volumes_name_the_first_and_count(twins, tmp_path):
    root = tmp_path / "luna"
    shutil.copytree(twins["luna16_cls"], root)
    test = csv_ids(root, "test_list.csv", "luna16_cls")
    for volume_id in test[:2]:
        (root / "images" / volume_id).unlink()
    with pytest.raises(DataError, match=rf"^{re.escape(str(root / 'images' / test[0]))}: volume file missing \(2 of"):
        load_classification_splits("luna16_cls", root, 10, "legacy")


def test_missing_split_files_and_fractions(twins, tmp_path):
    empty = tmp_path / "root"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        load_classification_splits("ctrate_cls", empty, 100, "legacy", splits_dir=tmp_path / "splits")
    message = str(info.value)
    assert str(tmp_path / "splits" / "ctrate_cls") in message and "\n" not in message
    assert "simcrop-bench data splits import --from" in message
    for task in ("radchestct_cls", "luna16_cls"):
        with pytest.raises(DataError, match="not 1 "):
            load(twins, task, 1, "legacy")
    with pytest.raises(ConfigError, match="protocol"):
        load(twins, "ctrate_cls", 100, "best")
    root = tmp_path / "ct"
    shutil.copytree(twins["ctrate_cls"], root)
    (root / "train_list_1.csv").unlink()
    assert load_classification_splits("ctrate_cls", root, 10, "heldout").train  # 1 % file not needed here
    with pytest.raises(DataError, match=rf"^{re.escape(str(root / 'train_list_1.csv'))}: split file is missing"):
        load_classification_splits("ctrate_cls", root, 1, "legacy")


def test_fraction_list_must_be_a_recipe_prefix(twins, tmp_path):
    root = tmp_path / "ct"
    shutil.copytree(twins["ctrate_cls"], root)
    header, *rows = (root / "train_list.csv").read_text().splitlines()
    chosen = (root / "train_list_10.csv").read_text().splitlines()[1:]
    (root / "train_list_10.csv").write_text("\n".join([header, next(r for r in rows if r not in chosen)]) + "\n")
    with pytest.raises(DataError, match="train_list_10.csv"):
        load_classification_splits("ctrate_cls", root, 10, "legacy")


def test_imported_split_folder_fallback(twins, tmp_path):
    source = twins["luna16_cls"]
    root, splits_dir = tmp_path / "root", tmp_path / "splits"
    shutil.copytree(source, root, ignore=shutil.ignore_patterns(*CSVS))
    report = import_splits(source, splits_dir, tasks=["luna16_cls"])  # the twin's lists follow §4 exactly
    assert report.tasks["luna16_cls"].status == "imported"
    assert split_folder("luna16_cls", root, splits_dir) == (splits_dir / "luna16_cls", "imported")
    imported = load_classification_splits("luna16_cls", root, 100, "heldout", splits_dir=splits_dir)
    direct = load(twins, "luna16_cls", 100, "heldout")
    for split in ("train", "val", "test"):
        assert getattr(imported, split).ids == getattr(direct, split).ids
    assert all(p.is_relative_to(root) for p in imported.test.paths)
    manifest = json.loads((splits_dir / "luna16_cls" / "manifest.json").read_text())
    assert imported.source["kind"] == "imported" and imported.source["manifest_hash"] == manifest["manifest_hash"]
    assert imported.source["files"] == direct.source["files"]  # same bytes, same SHA-256

    # A plain copy (no manifest) of another task's lists works too; the default folder is <cache>/splits.
    ctrate_root = tmp_path / "ct"
    shutil.copytree(twins["ctrate_cls"], ctrate_root, ignore=shutil.ignore_patterns(*CSVS))
    from simcrop_bench.data.roots import cache_dir

    folder = cache_dir() / "splits" / "ctrate_cls"
    folder.mkdir(parents=True, exist_ok=True)
    for name in CSVS:
        shutil.copy(twins["ctrate_cls"] / name, folder / name)
    splits = load_classification_splits("ctrate_cls", ctrate_root, 1, "legacy")
    assert splits.source["folder"] == str(folder) and "manifest_hash" not in splits.source
    assert splits.train.ids == load(twins, "ctrate_cls", 1, "legacy").train.ids


def test_columns_pick_labels_by_name_in_the_asked_order(twins):
    full = load(twins, "ctrate_cls", 10, "heldout")
    names = ("Lung nodule", "Emphysema")
    root = twins["ctrate_cls"]
    picked = load_classification_splits("ctrate_cls", root, 10, "heldout", columns=names, task="ctrate_two")
    assert picked.label_names == names and picked.task == "ctrate_two"
    index = [full.label_names.index(n) for n in names]
    for split in ("train", "val", "test"):
        assert getattr(picked, split).ids == getattr(full, split).ids
        assert np.array_equal(getattr(picked, split).labels, getattr(full, split).labels[:, index])
    with pytest.raises(ConfigError, match="task ctrate_two: labels 'Lung nodules' are not columns of the ctrate_cls"):
        load_classification_splits("ctrate_cls", root, 10, "heldout", columns=("Lung nodules",), task="ctrate_two")


def test_a_probe_task_takes_split_set_and_fractions_from_its_dataset_and_checks_its_labels():
    from simcrop_bench.errors import RegistryError
    from simcrop_bench.protocols.probe.task import LinearProbeTask

    class Two(LinearProbeTask):
        dataset = "radchestct"
        labels = ("Emphysema", "Hiatal hernia")
        label_columns = ("Emphysema", "Hietal Hernia")  # as the published header spells it

    assert (Two.split_set, Two.fractions, Two.columns()) == ("radchestct_cls", (10, 100), Two.label_columns)
    with pytest.raises(RegistryError, match="'Hiatal hernia' not among the label columns of the radchestct split"):
        type("Misspelt", (LinearProbeTask,), {"dataset": "radchestct", "labels": ("Emphysema", "Hiatal hernia")})
    with pytest.raises(RegistryError, match=r"fractions \(1, 100\); the radchestct split files publish \(10, 100\)"):
        type("One", (LinearProbeTask,), {"dataset": "radchestct", "labels": ("Emphysema",), "fractions": (1, 100)})
    with pytest.raises(RegistryError, match="no published classification split files; known: ccccii, ctrate"):
        type("Nowhere", (LinearProbeTask,), {"dataset": "btcv", "labels": ("spleen",)})
