"""Train / selection / test rows of the four linear-probe tasks (``protocol.md`` §1–§5, §9, §11).

The split CSVs come from the data root itself when it holds ``train_list.csv`` (synthetic twins, or a
user who put the files there), otherwise from the folder ``simcrop-bench data splits import`` wrote
(``<splits_dir>/<task>/``). Volume paths follow the reference construction of §11.2, so a data root
in the SimCroP layout works unchanged.

Protocols (§5): ``legacy`` takes the published lists (selection on ``val_list.csv``, which equals the
test list for CT-RATE, CC-CCII and LUNA16); ``heldout`` carves the selection rows by group from
``train_list.csv`` (§5.3), leaving the 1 % / 10 % lists and the test list untouched. RadChestCT keeps
its official, disjoint validation list under both protocols.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simcrop_bench.data.formats.decathlon import case_id
from simcrop_bench.data.formats.stored import stored_volume
from simcrop_bench.data.splits.files import (
    MANIFEST_NAME,
    SplitTable,
    check_fraction_list,
    ctrate_group,
    ctrate_scan,
    duplicated_columns,
    heldout_lists,
    read_split_csv,
)
from simcrop_bench.data.splits.published import CSV_NAMES, FRACTION_ROLES, SPLIT_FILES, TaskSplitFiles
from simcrop_bench.errors import ConfigError, DataError

PROTOCOLS = ("legacy", "heldout")
UNZIP_FILENAMES = "unzip_filenames.csv"  # official CC-CCII scan -> patient table (datasets.md §4.2)
IMPORT_HINT = "run `simcrop-bench data splits import --from <SimCroP checkout>`"


@dataclass
class SplitRows:
    """One split: volume ids as in the CSVs, their groups (§5.3 step 1, §9), labels and volume files."""

    ids: list[str]
    groups: list[str]
    labels: np.ndarray  # (N, C) int for multi-label and LUNA16 (C = 18 / 16 / 1); (N,) class ids for CC-CCII
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.ids)

    def without_groups(self, drop: set[str]) -> SplitRows:
        keep = [i for i, group in enumerate(self.groups) if group not in drop]
        return SplitRows(
            [self.ids[i] for i in keep],
            [self.groups[i] for i in keep],
            self.labels[keep],
            [self.paths[i] for i in keep],
        )


@dataclass
class ClassificationSplits:
    task: str
    label_names: tuple[str, ...]
    train: SplitRows
    val: SplitRows
    test: SplitRows
    protocol: str
    selection_on_test: bool  # legacy with selection rows among the test rows (hazard H1)
    grouping: str  # "patient" | "scan" | "series" | "volume"
    source: dict  # folder the CSVs came from, their SHA-256, the import manifest hash if any
    warnings: list[str] = field(default_factory=list)
    transpose_dhw: bool = False  # CC-CCII arrays are stored (D, H, W): transpose (1, 2, 0) after loading
    scan_of: Callable[[str], str] | None = None  # volume id -> scan id; None: every volume is its own scan

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


@dataclass(frozen=True)
class VolumeLayout:
    """How a dataset's split rows become volumes and groups: the same for every task on its files."""

    volume_path: Callable[[Path, str], Path]  # (root, id) -> file, §11.2
    grouping: str
    group: Callable[[str], str]
    transpose_dhw: bool = False
    scan: Callable[[str], str] | None = None  # several volumes per scan (CT-RATE reconstructions)
    class_ids: bool = False  # one column of class ids (CC-CCII): labels are (N,) class ids, not (N, C)
    official_validation: bool = False  # a disjoint published validation list, kept under both protocols
    # Label columns the published files duplicate (protocol.md §2.2, hazard H5). Only these pairs are
    # tested here: on a tiny synthetic twin other columns coincide by chance; the importer tests every pair.
    known_duplicates: tuple[tuple[int, int], ...] = ()
    # (root, listed ids, warnings) -> (group of an id, grouping): groups read from a table in the root
    groups_from_root: Callable[[Path, list[str], list[str]], tuple[Callable[[str], str], str]] | None = None


def _ctrate_path(root: Path, volume_id: str) -> Path:
    from simcrop_bench.data.ctrate import simcrop_volume_path  # readers import nibabel: deferred to first use

    return simcrop_volume_path(root, volume_id)


def _ccccii_path(root: Path, volume_id: str) -> Path:
    from simcrop_bench.data.ccccii import resized_path

    return resized_path(root, volume_id)


VOLUME_LAYOUTS = {  # dataset -> layout of the published classification lists (SPLIT_FILES)
    "ctrate": VolumeLayout(_ctrate_path, "patient", ctrate_group, scan=ctrate_scan),
    "radchestct": VolumeLayout(
        lambda root, i: root / "images" / f"{i}.nii.gz",
        "volume",
        str,
        official_validation=True,
        known_duplicates=((3, 11),),
    ),
    "ccccii": VolumeLayout(
        _ccccii_path,
        "scan",
        case_id,
        transpose_dhw=True,
        class_ids=True,
        groups_from_root=lambda root, ids, warnings: _ccccii_groups(root, ids, warnings),
    ),
    "luna16": VolumeLayout(lambda root, i: root / "images" / i, "series", case_id),
}


def task_fractions(split_set: str) -> tuple[int, ...]:
    """Training fractions (%) with a published split file (§1): 1 % only for CT-RATE and CC-CCII."""
    return _spec(split_set)[0].fractions


def split_folder(task: str, root: Path, splits_dir: Path | None = None) -> tuple[Path, str]:
    """Folder holding the task's CSVs and its kind: the data root (``"data_root"``) or the import (``"imported"``)."""
    root = Path(root)
    if (root / CSV_NAMES["train"]).is_file():
        return root, "data_root"
    if splits_dir is None:
        from simcrop_bench.data.roots import cache_dir

        splits_dir = cache_dir() / "splits"
    imported = Path(splits_dir) / task
    if (imported / CSV_NAMES["train"]).is_file():
        return imported, "imported"
    raise DataError(f"{imported}: no {CSV_NAMES['train']} for {task} there nor in the data root {root}; {IMPORT_HINT}")


def load_classification_splits(
    split_set: str,
    root: Path,
    fraction: int,
    protocol: str,
    *,
    columns: tuple[str, ...] | None = None,
    task: str | None = None,
    val_fraction: float = 0.10,
    seed: int = 42,
    splits_dir: Path | None = None,
    purge_test_patients: bool = False,
) -> ClassificationSplits:
    """Rows of the published ``split_set`` (e.g. ``ctrate_cls``) for one training fraction (%) and protocol.

    ``columns``: the label columns to keep, by header name, in this order (a task on a subset of the
    labels); None keeps them all. ``task`` names the task in messages (default: the split set).
    See the module docstring for the protocols.

    ``purge_test_patients`` (§5.3 ``purge_test_patients_from_train``) drops training and selection rows
    of patients who also have test rows; it needs patient groups and says so when there are none.

    Raises :class:`DataError` for a fraction without a split file, a missing or malformed CSV, a fraction
    list that is not a §4 prefix of ``train_list.csv``, or missing volume files (first path and count).
    """
    spec, layout = _spec(split_set)
    task = task or split_set
    keep = _label_columns(spec, columns, task)
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, not '{protocol}'")
    if fraction not in spec.fractions:
        raise DataError(
            f"{task} has split files for training fractions {', '.join(map(str, spec.fractions))} "
            f"(%), not {fraction} (protocol.md §1)"
        )
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root for {task} does not exist or is not a folder")
    folder, kind = split_folder(split_set, root, splits_dir)
    needed = {"train", "val", "test", FRACTION_ROLES[fraction]}
    if protocol == "heldout" and not layout.official_validation:
        needed.add("train_10")  # eligible validation groups have no row in the 10 % list (§5.3 step 3)
    hint = f"; {IMPORT_HINT}" if kind == "imported" else ""
    tables: dict[str, SplitTable] = {}
    for role in (r for r in CSV_NAMES if r in needed):
        path = folder / CSV_NAMES[role]
        if not path.is_file():
            raise DataError(f"{path}: split file is missing (needed for {task} at {fraction} %, {protocol}){hint}")
        tables[role] = read_split_csv(path, split_set)
    train_full = tables["train"]
    for role in ("train_10", "train_1"):
        if role in tables:  # §4: a fraction list is a prefix of the RandomState(42) permutation of train_list.csv
            check_fraction_list(train_full, tables[role], {"train_10": 0.10, "train_1": 0.01}[role], exact_size=False)

    warnings: list[str] = []
    group_of, grouping = layout.group, layout.grouping
    if layout.groups_from_root is not None:
        listed = [*train_full.ids, *tables["test"].ids, *tables["val"].ids]
        group_of, grouping = layout.groups_from_root(root, listed, warnings)
    found: list[str] = []
    pairs = duplicated_columns(spec, tables, found)
    warnings += [
        w
        for pair, w in zip(pairs, found)
        if tuple(pair["columns"]) in layout.known_duplicates and set(pair["columns"]) <= set(keep)
    ]

    train, val = tables[FRACTION_ROLES[fraction]], tables["val"]
    if protocol == "heldout" and not layout.official_validation:
        remainder, val = heldout_lists(train_full, tables["train_10"], group_of, val_fraction=val_fraction, seed=seed)
        if fraction == 100:
            train = remainder
    test = tables["test"]
    selection_on_test = protocol == "legacy" and bool(set(val.ids) & set(test.ids))
    rows = {
        name: _rows(table, root, layout, group_of, keep)
        for name, table in (("train", train), ("val", val), ("test", test))
    }
    _require_volumes(rows, root, task)
    if grouping == "patient":  # §5.3 leakage audit
        test_patients = set(rows["test"].groups)
        shared = sorted(set(rows["train"].groups) & test_patients)
        if shared and purge_test_patients:
            before = {name: len(rows[name]) for name in ("train", "val")}
            rows["train"], rows["val"] = (rows[name].without_groups(test_patients) for name in ("train", "val"))
            warnings.append(
                f"{task}: purge_test_patients_from_train removed {before['train'] - len(rows['train'])} "
                f"training and {before['val'] - len(rows['val'])} selection row(s) of {len(shared)} "
                "patient(s) who have test rows (protocol.md §5.3)"
            )
        elif shared:
            warnings.append(
                f"{task}: {len(shared)} patient(s) have rows in both the training and the test list "
                f"(e.g. {shared[0]}); protocol.md §5.3 leakage audit"
            )
    elif purge_test_patients:
        warnings.append(
            f"{task}: purge_test_patients_from_train needs patient ids, but rows are grouped by "
            f"{grouping}: nothing was purged (protocol.md §5.3)"
        )
    source = _source(folder, kind, tables)
    return ClassificationSplits(
        task=task,
        label_names=tuple(spec.header[1:][i] for i in keep),
        train=rows["train"],
        val=rows["val"],
        test=rows["test"],
        protocol=protocol,
        selection_on_test=selection_on_test,
        grouping=grouping,
        source=source,
        warnings=list(dict.fromkeys(source.pop("warnings") + warnings)),
        transpose_dhw=layout.transpose_dhw,
        scan_of=layout.scan,
    )


def _spec(split_set: str) -> tuple[TaskSplitFiles, VolumeLayout]:
    spec = SPLIT_FILES.get(split_set)
    if spec is None or spec.dataset not in VOLUME_LAYOUTS:
        known = [name for name, s in SPLIT_FILES.items() if s.dataset in VOLUME_LAYOUTS and s.kind == "csv"]
        raise ConfigError(f"unknown classification split set '{split_set}'; known: {', '.join(known)}")
    return spec, VOLUME_LAYOUTS[spec.dataset]


def _label_columns(spec: TaskSplitFiles, columns: tuple[str, ...] | None, task: str) -> list[int]:
    """Indices of ``columns`` among the split files' label columns (all of them for None)."""
    names = spec.header[1:]
    if columns is None:
        return list(range(len(names)))
    unknown = [c for c in columns if c not in names]
    if unknown or not columns:
        raise ConfigError(
            f"task {task}: labels {', '.join(map(repr, unknown)) or '(none)'} are not columns of the "
            f"{spec.task} split files; columns: {', '.join(names)}"
        )
    return [names.index(c) for c in columns]


def _rows(
    table: SplitTable, root: Path, layout: VolumeLayout, group_of: Callable[[str], str], keep: list[int]
) -> SplitRows:
    labels = table.labels[:, 0] if layout.class_ids else table.labels[:, keep]
    return SplitRows(
        list(table.ids),
        [group_of(i) for i in table.ids],
        labels.copy(),
        [stored_volume(layout.volume_path(root, i)) for i in table.ids],  # the prepared .nii or the reference
    )


def _require_volumes(rows: dict[str, SplitRows], root: Path, task: str) -> None:
    missing = list(dict.fromkeys(p for split in rows.values() for p in split.paths if not p.is_file()))
    if missing:
        raise DataError(
            f"{missing[0]}: volume file missing ({len(missing)} of the {task} volumes listed for this run "
            f"are absent under {root})"
        )


def _ccccii_groups(root: Path, ids: list[str], warnings: list[str]) -> tuple[Callable[[str], str], str]:
    """Patient ids from the official ``unzip_filenames.csv`` when the root has it, else scan ids (§5.3 step 1)."""
    path = root / UNZIP_FILENAMES
    if not path.is_file():
        return case_id, "scan"
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            patient_of = {row["scan_id"].strip(): row["patient_id"].strip() for row in csv.DictReader(handle)}
    except (KeyError, AttributeError):
        raise DataError(f"{path}: needs columns scan_id and patient_id (datasets.md §4.2)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None
    unmapped = sorted({case_id(i) for i in ids} - set(patient_of))
    if unmapped:
        warnings.append(
            f"{path}: {len(unmapped)} listed scan(s) have no patient (e.g. {unmapped[0]}); they form their own groups"
        )

    def group(volume_id: str) -> str:
        scan = case_id(volume_id)
        return f"patient_{patient_of[scan]}" if scan in patient_of else f"scan_{scan}"

    return group, "patient"


def _source(folder: Path, kind: str, tables: dict[str, SplitTable]) -> dict:
    """Where the lists came from; ``warnings`` (popped by the caller) are the import manifest's, if any."""
    files = {t.path.name: hashlib.sha256(t.path.read_bytes()).hexdigest() for t in tables.values()}
    source = {"kind": kind, "folder": str(folder), "files": dict(sorted(files.items())), "warnings": []}
    manifest = folder / MANIFEST_NAME
    if kind == "imported" and manifest.is_file():
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise DataError(f"{manifest}: unreadable import manifest; re-import the split files") from None
        source["manifest_hash"], source["warnings"] = doc.get("manifest_hash"), list(doc.get("warnings", []))
    return source
