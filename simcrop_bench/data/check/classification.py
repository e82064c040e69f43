"""``data check`` for the classification stores SimCroP reads: split CSVs plus one volume per id.

Classification readers ignore the affine (``protocol.md`` §6.2), so beyond readability the
check looks at what the array itself must satisfy: 3-D, finite, and in HU rather than an
8-bit window (``protocol.md`` H13, reported as a note since CC-CCII stores may be either).
The split CSVs must follow the grammar of §11.2, and every fraction list must be a §4 prefix of
``train_list.csv`` (a longer prefix is accepted: synthetic twins keep at least one row).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from simcrop_bench.data.check.root import PURGEABLE, CheckReport, extra_files, read_volume, require_root
from simcrop_bench.data.formats.stored import stored_volume
from simcrop_bench.data.splits.files import ctrate_group
from simcrop_bench.errors import DataError

SPLITS = ("train_list.csv", "train_list_10.csv", "train_list_1.csv", "val_list.csv", "test_list.csv")
FRACTIONS = {"train_list_10.csv": 0.10, "train_list_1.csv": 0.01}
TRAINING_LISTS = ("train_list.csv", *FRACTIONS)
PATIENT_OF = {"ctrate_cls": ctrate_group}  # the only split files whose ids name the patient (protocol.md §5.3)


def check_split_csvs(root: Path, task: str, report: CheckReport) -> dict:
    """Parse the task's split CSVs in ``root`` (name -> SplitTable), reporting each problem with its file.

    Nothing is reported when the root holds none of them (they usually come from
    ``simcrop-bench data splits import``); otherwise every file the task publishes must be there.
    """
    from simcrop_bench.data.splits.files import check_fraction_list, read_split_csv
    from simcrop_bench.data.splits.published import SPLIT_FILES

    published = [f.name for f in SPLIT_FILES[task].files]
    if not any((root / name).is_file() for name in published):
        return {}
    tables = {}
    for name in published:
        path = root / name
        if not path.is_file():
            report.add(path, "split file is missing")
            continue
        try:
            tables[name] = read_split_csv(path, task)
        except DataError as exc:
            report.add(*_file_and_message(exc))
            continue
        report.counts[name] = len(tables[name])
    for name, fraction in FRACTIONS.items():
        if name in tables and "train_list.csv" in tables:
            try:
                check_fraction_list(tables["train_list.csv"], tables[name], fraction, exact_size=False)
            except DataError as exc:
                report.add(*_file_and_message(exc))
    report_split_leakage(tables, task, report)
    return tables


def report_split_leakage(tables: dict, task: str, report: CheckReport) -> None:
    """Test rows whose volume, or (where ids name one) whose patient, also has a training row: one line each.

    The selection list may equal the test list (``legacy``, CC-CCII's published files); no training list
    may share a case with the test list.
    """
    test = tables.get("test_list.csv")
    if test is None:
        return
    group = PATIENT_OF.get(task)
    training = [(name, tables[name]) for name in TRAINING_LISTS if name in tables]
    volumes = {i: name for name, table in reversed(training) for i in table.ids}  # the first list naming it
    patients = {group(i): name for name, table in reversed(training) for i in table.ids} if group else {}
    for volume_id, line in zip(test.ids, test.lines):
        if volume_id in volumes:
            message = f"line {line}: {volume_id} is also in {volumes[volume_id]} (train/test leakage)"
            report.add(test.path, message, PURGEABLE)
        elif group and group(volume_id) in patients:
            report.add(
                test.path,
                f"line {line}: patient {group(volume_id)} of {volume_id} also has rows in "
                f"{patients[group(volume_id)]} (patient-level train/test leakage)",
                PURGEABLE,
            )


def check_listed_volumes_exist(
    root: Path,
    tables: dict,
    volume_path: Callable[[Path, str], Path],
    report: CheckReport,
    *,
    reported: Callable[[Path], bool] = lambda path: False,
) -> None:
    """Every id of the split CSVs has its volume file; ``reported`` skips files another check already covers."""
    seen: set[Path] = set()
    for name, table in tables.items():
        for volume_id in table.ids:
            path = volume_path(root, volume_id)
            if path in seen or stored_volume(path).is_file() or reported(path):
                continue
            seen.add(path)
            report.add(path, f"volume listed in {name} is missing")


def check_classification_store(
    root: Path, dataset: str, task: str, volume_path: Callable[[Path, str], Path], folder: str
) -> CheckReport:
    require_root(root)
    report = CheckReport(dataset, "simcrop", root)
    tables = check_split_csvs(root, task, report)
    present = bool(tables) or any((root / name).is_file() for name in SPLITS)
    if not present:
        # Split files usually come from `data splits import`; then every stored volume is checked.
        report.notes.append(
            f"{root}: no split CSVs here; checked every volume in {folder}/ "
            "(import the split files with `simcrop-bench data splits import`)"
        )
        paths = sorted((root / folder).glob("*.nii.gz")) + sorted((root / folder).glob("*.nii"))
        if not paths:
            report.add(root / folder, "no volumes found")
    else:
        ids = sorted({volume_id for table in tables.values() for volume_id in table.ids})
        paths = [volume_path(root, volume_id) for volume_id in ids]
    for path in paths:
        volume = read_volume(path, report, kind="image")
        if volume is None:
            continue
        report.counts["volumes"] += 1
        if volume.array.size and float(volume.array.min()) >= 0 and float(volume.array.max()) <= 255:
            report.notes.append(
                f"{path}: intensities lie in 0..255 (8-bit window, not HU); the −1000…1000 HU window squashes them"
            )
    if present:
        extra_files(root / folder, {p.resolve() for p in paths}, report)
    return report


def check_ccccii_simcrop(root: Path) -> CheckReport:
    return check_classification_store(
        root, "ccccii", "ccccii_cls", lambda r, i: r / "images_resized" / i, "images_resized"
    )


def check_radchestct_simcrop(root: Path) -> CheckReport:
    return check_classification_store(
        root, "radchestct", "radchestct_cls", lambda r, i: r / "images" / f"{i}.nii.gz", "images"
    )


def _file_and_message(exc: Exception) -> tuple[str, str]:
    # DataErrors read "<file>[:line]: <problem>"; keep the line number with the problem.
    text = str(exc)
    file, _, message = text.partition(": ")
    path, colon, line = file.rpartition(":")
    if colon and line.isdigit():
        return path, f"line {line}: {message}"
    return file, message
