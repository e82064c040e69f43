"""The published SimCroP split files (``protocol.md`` §3): where each lives, its SHA-256, rows and grammar.

One entry per *split set*: the files one dataset publishes for one kind of task, named after the task
that introduced them (``ctrate_cls`` …); imported copies live in ``<splits>/<split set>/``. Any task on
the dataset's files reads that set (a task on a subset of CT-RATE's labels reads ``ctrate_cls``).
Plain data, no numpy: task files read it when they are registered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from simcrop_bench.data.labels import CTRATE_LABELS, RADCHESTCT_LABELS
from simcrop_bench.errors import RegistryError

CLS_ROOT = "Down-stream/Classification_Linear/datasets"
SEG_ROOT = "Down-stream/Segmentation/datasets"
FRACTIONS = {"train_10": 0.10, "train_1": 0.01}  # role -> fraction of train_list.csv (§4)
FRACTION_ROLES = {100: "train", 10: "train_10", 1: "train_1"}  # training fraction (%) -> CSV role
CSV_NAMES = {
    "train": "train_list.csv",
    "train_10": "train_list_10.csv",
    "train_1": "train_list_1.csv",
    "val": "val_list.csv",
    "test": "test_list.csv",
}


@dataclass(frozen=True)
class SplitFile:
    """One published split file: where it lives in a checkout, its SHA-256 and its size (§3)."""

    role: str  # train / train_10 / train_1 / val / test, or dataset / dataset_10 / dataset_100
    folder: str  # dataset folder inside the checkout (CT-Rate, RadChestCT, CC-CCII, LUNA16, BTCV)
    name: str
    sha256: str
    rows: int | Mapping[str, int]  # CSV: data rows; JSON: list length per key
    root: str = CLS_ROOT

    @property
    def relpath(self) -> str:
        return f"{self.root}/{self.folder}/{self.name}"

    @property
    def short(self) -> str:
        return f"{self.folder}/{self.name}"


@dataclass(frozen=True)
class TaskSplitFiles:
    """All split files of one split set plus the grammar its CSV files must follow."""

    task: str  # the split set's name: the task that introduced it
    dataset: str
    kind: str  # "csv" or "json"
    files: tuple[SplitFile, ...]
    header: tuple[str, ...] = ()
    label_values: frozenset[int] = frozenset()
    id_pattern: str = ""
    val_equals_test: bool | None = None  # as published (§3)

    def file(self, role: str) -> SplitFile:
        return next(f for f in self.files if f.role == role)

    @property
    def fractions(self) -> tuple[int, ...]:
        """Training fractions (%) with a published list (§1): a CSV ``train_list{,_10,_1}.csv`` or a
        ``dataset{,_10,_100}.json``."""
        roles = {f.role for f in self.files}
        if self.kind == "csv":
            return tuple(f for f, role in sorted(FRACTION_ROLES.items()) if role in roles)
        return tuple(sorted(int(r.removeprefix("dataset_")) if r != "dataset" else 100 for r in roles))


def _csv_task(
    task: str,
    dataset: str,
    folder: str,
    header: Sequence[str],
    values: Iterable[int],
    id_pattern: str,
    val_equals_test: bool,
    **rows_and_hashes: tuple[int, str],
) -> TaskSplitFiles:
    files = tuple(SplitFile(role, folder, CSV_NAMES[role], sha, rows) for role, (rows, sha) in rows_and_hashes.items())
    return TaskSplitFiles(task, dataset, "csv", files, tuple(header), frozenset(values), id_pattern, val_equals_test)


_CTRATE_TEST = "507ab69d1288af30c39914e90954900d95fe96aafea7959246cfe6552a766093"
_CCCCII_TEST = "f32df0d9602a00b27fb898350787fa487192bfcbe9b55c3807958055ac3fa604"
_LUNA16_TEST = "bd26d0bf1b71bb4823889d193f5d20b94424e0cc57d7d02b1e1caae22395e0dd"
SPLIT_FILES: dict[str, TaskSplitFiles] = {
    "ctrate_cls": _csv_task(
        "ctrate_cls",
        "ctrate",
        "CT-Rate",
        ("VolumeName", *CTRATE_LABELS),
        (0, 1),
        r"(train|valid)_\d+_[a-z]+_\d+\.nii\.gz",
        True,
        train=(46363, "e0482330934158ebaa42abff2d9b0d9d83f427bea0a12ac021c6320c8680021f"),
        train_10=(4636, "060cf42a82b35d360dca001d5b8d83305b963337587143113014be02682cc0d5"),
        train_1=(464, "6b22c20925c9d0f91a217075a2f6b0a30e71e3118f506be1dea664302e1b08fd"),
        val=(3009, _CTRATE_TEST),
        test=(3009, _CTRATE_TEST),
    ),
    "radchestct_cls": _csv_task(
        "radchestct_cls",
        "radchestct",
        "RadChestCT",
        ("NoteAcc_DEID", *RADCHESTCT_LABELS),
        (0, 1),
        r"(trn|val|tst)\d+",
        False,
        train=(2286, "39d265646e4a5ac88296f02d2596cf91526ad5ab8ad1a0f65a05cabe31e2f48a"),
        train_10=(229, "ddd74177dbad61354043bd80deec649d02e15a2409cf934e0a0fc89ec6add9fe"),
        val=(984, "1a982d6ce1437a2699c578bda372e45fcd89368ee856ed1036c37f82d8823e74"),
        test=(360, "9805368fd542ca033fe82b01495632c326f34dd9cdc015f8c34ef38ea633bf58"),
    ),
    "ccccii_cls": _csv_task(
        "ccccii_cls",
        "ccccii",
        "CC-CCII",
        ("img_list", "label"),
        (0, 1, 2),
        r"\d+\.nii\.gz",
        True,
        train=(2899, "da033dbcee9fa2bf0ba8ccfed3f234cbaa72533563752e3d3d91faf313de58d5"),
        train_10=(290, "3a8a78217d96c18b6d85928fce784f8a68f4b613709ed81bcf3bfee8e165af52"),
        train_1=(29, "300fe9e45f8f0909bbd6ca5bce78d5390088a445ce0fe1a8fa5f8faaab1fa6bd"),
        val=(1243, _CCCCII_TEST),
        test=(1243, _CCCCII_TEST),
    ),
    "luna16_cls": _csv_task(
        "luna16_cls",
        "luna16",
        "LUNA16",
        ("image_id", "label"),
        (0, 1),
        r"\d+(\.\d+)+\.nii\.gz",
        True,
        train=(621, "c73584b65ad47b5737acc3b66a813f2869b60ce0f3a45351a8c3c3a9d6e0fa64"),
        train_10=(62, "664bf2902b81f516f6a88a8745fc1d4ccbaf790ca416063cfdeb8a28cb240ccb"),
        val=(267, _LUNA16_TEST),
        test=(267, _LUNA16_TEST),
    ),
    "lung_seg": TaskSplitFiles(
        "lung_seg",
        "luna16",
        "json",
        (
            SplitFile(
                "dataset_10",
                "LUNA16",
                "dataset_10.json",
                "e190539f44d7cadec48c086520b79356fdcb3f6c08071ba02d23912e363dfe21",
                {"training": 62, "validation": 26, "testing": 267},
                SEG_ROOT,
            ),
            SplitFile(
                "dataset_100",
                "LUNA16",
                "dataset_100.json",
                "f9a9004887c80db9f899a8b015f6a4aee54dbbed391889325330542fead7329a",
                {"training": 620, "validation": 26, "testing": 267},
                SEG_ROOT,
            ),
        ),
    ),
    "btcv_seg": TaskSplitFiles(
        "btcv_seg",
        "btcv",
        "json",
        (
            SplitFile(
                "dataset",
                "BTCV",
                "dataset.json",
                "5e97b4f569f678bb4bd21f83b3998b9f09941c6b1d27e1cb6d5466e865dec379",
                {"training": 24, "validation": 6, "test": 20},
                SEG_ROOT,
            ),
        ),
    ),
}


def classification_split_set(dataset: str) -> str:
    """The split set of the linear-probe tasks on ``dataset`` (its published CSV lists)."""
    for name, spec in SPLIT_FILES.items():
        if spec.kind == "csv" and spec.dataset == dataset:
            return name
    known = sorted(s.dataset for s in SPLIT_FILES.values() if s.kind == "csv")
    raise RegistryError(f"dataset '{dataset}' has no published classification split files; known: {', '.join(known)}")
