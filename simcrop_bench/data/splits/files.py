"""Import and verification of the SimCroP split files (``protocol.md`` §3–§5, §11).

The split files cannot be shipped (restricted datasets, hazard H14): users point the
importer at their own copy of the SimCroP repository. The importer copies the files into
the harness's data folder, checks them against the published SHA-256 and the content rules
of the protocol, and writes a hash-stamped ``manifest.json`` per task; run records cite the
manifest hash instead of the raw files.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simcrop_bench.config import stable_hash
from simcrop_bench.data.splits.fractions import carve_validation_groups, fraction_subset
from simcrop_bench.data.splits.published import FRACTIONS, SPLIT_FILES, SplitFile, TaskSplitFiles
from simcrop_bench.errors import DataError, RegistryError
from simcrop_bench.util.atomic import staged_dir, write_json

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
# The reference reader treats lines starting with these as headers, so no id may start with one (§11.2).
READER_HEADER_PREFIXES = ("VolumeName", "NoteAcc_DEID", "im")


@dataclass(eq=False)
class SplitTable:
    """A parsed classification split file: ids, an (n, k) int label matrix and the header."""

    path: Path
    header: tuple[str, ...]
    ids: tuple[str, ...]
    labels: np.ndarray
    lines: tuple[int, ...]  # 1-based line number of every row, for error messages

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.header[1:]

    def subset(self, rows: Sequence[int] | np.ndarray) -> SplitTable:
        rows = np.asarray(rows, dtype=np.int64)
        return SplitTable(
            self.path,
            self.header,
            tuple(self.ids[i] for i in rows),
            self.labels[rows],
            tuple(self.lines[i] for i in rows),
        )

    def same_rows(self, other: SplitTable) -> bool:
        return self.ids == other.ids and np.array_equal(self.labels, other.labels)


def read_split_csv(path: Path, task: str) -> SplitTable:
    """Read a classification split file of ``task`` under the grammar of ``protocol.md`` §11.2."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read split file ({exc.strerror})") from None
    return _parse_split_csv(data, path, _task_spec(task))


def _parse_split_csv(data: bytes, path: Path, spec: TaskSplitFiles) -> SplitTable:
    try:
        text = data.decode("utf-8-sig")  # tolerate a BOM from re-saving
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    header: tuple[str, ...] | None = None
    ids: list[str] = []
    rows: list[list[int]] = []
    lines: list[int] = []
    allowed = ", ".join(map(str, sorted(spec.label_values)))
    codes = {str(v): v for v in spec.label_values}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")  # tolerate CRLF re-saves; the hash check flags them anyway
        if not line.strip():
            continue
        fields = line.split(",")
        if header is None:
            if tuple(fields) != spec.header:
                raise DataError(
                    f"{path}:{number}: header does not match {spec.task} (protocol.md §11.2); "
                    f"expected '{','.join(spec.header)}', found '{line}'"
                )
            header = spec.header
            continue
        if len(fields) != len(header):
            raise DataError(f"{path}:{number}: {len(fields)} columns, the header has {len(header)}")
        volume_id = fields[0]
        if not volume_id:
            raise DataError(f"{path}:{number}: empty id")
        if volume_id.startswith(READER_HEADER_PREFIXES):
            prefix = next(p for p in READER_HEADER_PREFIXES if volume_id.startswith(p))
            raise DataError(
                f"{path}:{number}: id '{volume_id}' starts with '{prefix}'; the reference reader "
                "would skip the row as a header line (protocol.md §11.2)"
            )
        values = []
        for column, value in enumerate(fields[1:], start=1):
            if value in codes:  # fast path; the checks below only word the error
                values.append(codes[value])
                continue
            if not re.fullmatch(r"-?[0-9]+", value):
                raise DataError(f"{path}:{number}: non-integer label '{value}' in column '{header[column]}'")
            if int(value) not in spec.label_values:
                raise DataError(f"{path}:{number}: label {value} in column '{header[column]}' is not one of {allowed}")
            values.append(int(value))
        ids.append(volume_id)
        rows.append(values)
        lines.append(number)
    if header is None:
        raise DataError(f"{path}: empty split file (no header line)")
    labels = np.array(rows, dtype=np.int64).reshape(len(rows), len(header) - 1)
    return SplitTable(path, header, tuple(ids), labels, tuple(lines))


def verify_sha256(path: Path, expected: str) -> tuple[str, bool]:
    """SHA-256 of ``path`` and whether it equals ``expected`` (case-insensitive hex)."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return digest, digest == expected.strip().lower()


def ctrate_group(volume_id: str) -> str:
    """CT-RATE patient group: the first two ``_`` fields (``train_90001_a_10.nii.gz`` -> ``train_90001``)."""
    return "_".join(volume_id.split("_")[:2])


def ctrate_scan(volume_id: str) -> str:
    """CT-RATE scan: the first three ``_`` fields (``train_90001_a_10.nii.gz`` -> ``train_90001_a``)."""
    return "_".join(volume_id.split("_")[:3])


def heldout_lists(
    table_full: SplitTable,
    table_10: SplitTable,
    group_of: Callable[[str], str],
    *,
    val_fraction: float = 0.10,
    seed: int = 42,
) -> tuple[SplitTable, SplitTable]:
    """The ``heldout`` 100 % training list and validation list (``protocol.md`` §5.3), file order kept.

    Validation groups are carved from groups with no row in the 10 % list (hence none in 1 %).
    """
    groups = [group_of(i) for i in table_full.ids]
    chosen = set(
        carve_validation_groups(groups, (group_of(i) for i in table_10.ids), val_fraction=val_fraction, seed=seed)
    )
    if not chosen:
        raise DataError(
            f"{table_full.path}: every group has a row in {table_10.path.name}; "
            "no group is left to carve a held-out validation set from"
        )
    in_val = np.array([g in chosen for g in groups], dtype=bool)
    return table_full.subset(np.flatnonzero(~in_val)), table_full.subset(np.flatnonzero(in_val))


@dataclass
class TaskImport:
    """Outcome for one task: ``imported``, ``missing`` or ``error``."""

    task: str
    status: str
    source: Path | None = None
    manifest_path: Path | None = None
    manifest_hash: str | None = None
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    tasks: dict[str, TaskImport]

    @property
    def ok(self) -> bool:
        return not any(t.errors for t in self.tasks.values())

    def format(self) -> str:
        out = []
        for t in self.tasks.values():
            detail = f"manifest {t.manifest_hash} ({t.manifest_path})" if t.status == "imported" else ""
            detail = f"from {t.source}" if t.status == "error" and t.source else detail
            out.append(f"{t.task:<15} {t.status:<9} {detail}".rstrip())
            out += [f"    warning: {w}" for w in t.warnings] + [f"    error: {e}" for e in t.errors]
        return "\n".join(out)

    __str__ = format


def import_splits(src: Path, dest: Path, tasks: Iterable[str] | None = None, *, strict: bool = True) -> ImportReport:
    """Copy, verify and manifest the split files of every task found under ``src``.

    ``src`` is a SimCroP checkout root, its ``datasets`` folder (``<Task>/<file>``) or a folder
    directly holding one dataset's files. Each task is written to ``dest/<task>/`` as a whole or
    not at all. With ``strict`` a hard error (broken nesting, bad grammar, partial file set, a
    requested task not found) raises :class:`DataError` after all tasks were tried; the report
    is attached as ``exc.report``.
    """
    src, dest = Path(src), Path(dest)
    if not src.is_dir():
        raise DataError(f"{src}: split source does not exist or is not a folder")
    requested = list(tasks) if tasks is not None else list(SPLIT_FILES)
    specs = [_task_spec(t) for t in requested]
    report = ImportReport({})
    for spec in specs:
        folder = _locate(src, spec)
        if folder is None:
            result = TaskImport(spec.task, "missing")
            if tasks is not None:
                result.status = "error"
                first = spec.files[0]
                result.errors.append(
                    f"{src}: no split files of {spec.task} found "
                    f"(looked for {first.relpath}, {first.short} and {first.name})"
                )
        else:
            try:
                result = _import_task(spec, folder, dest)
            except DataError as exc:
                result = TaskImport(spec.task, "error", folder, errors=[str(exc)])
        report.tasks[spec.task] = result
    if strict and not report.ok:
        errors = [e for t in report.tasks.values() for e in t.errors]
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        exc = DataError(errors[0] + more)
        exc.report = report  # type: ignore[attr-defined]
        raise exc
    return report


def _task_spec(task: str) -> TaskSplitFiles:
    if task not in SPLIT_FILES:
        raise RegistryError(f"unknown split task '{task}'; known: {', '.join(SPLIT_FILES)}")
    return SPLIT_FILES[task]


def _locate(src: Path, spec: TaskSplitFiles) -> Path | None:
    """Folder holding the task's first file: checkout layout, then ``<Task>/`` folders, then flat."""
    first = spec.files[0]
    for folder in (src / first.root / first.folder, src / first.folder):
        if (folder / first.name).is_file():
            return folder
    path = src / first.name
    if not path.is_file():
        return None
    if spec.kind == "json":  # JSON names are unique across tasks
        return src
    # train_list.csv is ambiguous in a flat folder: the first header field names the dataset.
    with path.open("r", encoding="utf-8-sig", errors="replace") as handle:
        first_line = next((line for line in handle if line.strip()), "")
    return src if first_line.split(",")[0].strip() == spec.header[0] else None


def _import_task(spec: TaskSplitFiles, folder: Path, dest: Path) -> TaskImport:
    missing = [f.name for f in spec.files if not (folder / f.name).is_file()]
    if missing:
        raise DataError(f"{folder}: {spec.task} split files incomplete; missing {', '.join(missing)}")
    raw = {f.role: (folder / f.name).read_bytes() for f in spec.files}
    warnings: list[str] = []
    if spec.kind == "csv":
        tables = {f.role: _parse_split_csv(raw[f.role], folder / f.name, spec) for f in spec.files}
        sizes: dict[str, int | dict[str, int]] = {role: len(t) for role, t in tables.items()}
        checks = _check_classification(spec, tables, warnings)
    else:
        docs = {f.role: _parse_split_json(raw[f.role], folder / f.name, f) for f in spec.files}
        sizes = {role: {k: len(v) for k, v in doc.items()} for role, doc in docs.items()}
        checks = _check_segmentation(spec, docs, warnings)

    files = []
    for f in spec.files:
        digest = hashlib.sha256(raw[f.role]).hexdigest()
        files.append(
            {
                "role": f.role,
                "name": f.name,
                "relpath": f.relpath,
                "sha256": digest,
                "published_sha256": f.sha256,
                "published_match": digest == f.sha256,
                "rows": sizes[f.role],
                "published_rows": f.rows,
            }
        )
    differ = [e["name"] for e in files if not e["published_match"]]
    if differ:  # e.g. re-saved with other line endings, or a synthetic copy: content checks decide (§11.1)
        warnings.insert(
            0,
            f"{spec.task}: SHA-256 differs from the published value for {len(differ)} of "
            f"{len(files)} files ({', '.join(differ)}); content checks passed",
        )
    resized = [
        f"{e['name']} {e['rows']} (published {e['published_rows']})" for e in files if e["rows"] != e["published_rows"]
    ]
    if resized:
        warnings.insert(1 if differ else 0, f"{spec.task}: sizes differ from protocol.md §3: {'; '.join(resized)}")

    manifest = {
        "schema": MANIFEST_SCHEMA,
        "task": spec.task,
        "kind": spec.kind,
        "header": list(spec.header),
        "files": files,
        "checks": checks,
        "warnings": warnings,
    }
    manifest["manifest_hash"] = stable_hash(manifest)
    with staged_dir(dest / spec.task) as stage:
        for f in spec.files:
            (stage / f.name).write_bytes(raw[f.role])
        write_json(stage / MANIFEST_NAME, manifest)
    return TaskImport(
        spec.task, "imported", folder, dest / spec.task / MANIFEST_NAME, manifest["manifest_hash"], warnings
    )


def _check_classification(spec: TaskSplitFiles, tables: dict[str, SplitTable], warnings: list[str]) -> dict:
    train = tables["train"]
    checks: dict = {}
    for role, fraction in FRACTIONS.items():
        if role in tables:
            check_fraction_list(train, tables[role], fraction)
            checks[f"{role}_matches_recipe"] = True  # a mismatch has raised
    checks["val_equals_test"] = tables["val"].same_rows(tables["test"])
    if checks["val_equals_test"] != spec.val_equals_test:
        warnings.append(
            f"{spec.task}: val_list.csv {'equals' if checks['val_equals_test'] else 'differs from'} "
            f"test_list.csv, unlike the published files"
        )
    checks["duplicated_columns"] = duplicated_columns(spec, tables, warnings)
    checks["id_patterns_ok"] = _check_id_patterns(spec, tables, warnings)
    checks["id_overlap_train_test"] = len(set(train.ids) & set(tables["test"].ids))
    if spec.task == "ctrate_cls":  # patient ids are only available for CT-RATE (§5.3 leakage audit)
        shared = {ctrate_group(i) for i in train.ids} & {ctrate_group(i) for i in tables["test"].ids}
        checks["patient_overlap_train_test"] = len(shared)
        if shared:
            warnings.append(
                f"{spec.task}: {len(shared)} patient(s) appear in both train_list.csv and "
                f"test_list.csv (e.g. {sorted(shared)[0]})"
            )
    checks["label_counts"] = {role: _label_counts(t) for role, t in tables.items()}
    return checks


def check_fraction_list(train: SplitTable, subset: SplitTable, fraction: float, *, exact_size: bool = True) -> None:
    """A fraction list must equal ``train.iloc[fraction_subset(N, f)]`` in order (§4); else DataError.

    ``exact_size=False`` also accepts a longer prefix of the §4 permutation (synthetic twins keep at
    least one row where ``round(f·N)`` is 0).
    """
    expected = train.subset(fraction_subset(len(train), fraction, min_rows=0 if exact_size else len(subset)))
    recipe = f"the §4 recipe (RandomState(42) permutation, {fraction:.0%} of {len(train)} rows of {train.path.name})"
    if len(subset) != len(expected):
        raise DataError(f"{subset.path}: {len(subset)} rows, but {recipe} gives {len(expected)}")
    for i in range(len(subset)):
        if subset.ids[i] != expected.ids[i] or not np.array_equal(subset.labels[i], expected.labels[i]):
            what = "labels differ from" if subset.ids[i] == expected.ids[i] else f"row '{subset.ids[i]}' is not"
            raise DataError(
                f"{subset.path}:{subset.lines[i]}: {what} {train.path.name} line {expected.lines[i]} "
                f"('{expected.ids[i]}'), which {recipe} puts here"
            )


def duplicated_columns(spec: TaskSplitFiles, tables: dict[str, SplitTable], warnings: list[str]) -> list[dict]:
    """Label columns identical in every row of every file (protocol.md §2.2, hazard H5)."""
    stacked = np.concatenate([t.labels for t in tables.values()], axis=0)
    names = spec.header[1:]
    pairs = [
        {"columns": [a, b], "names": [names[a], names[b]]}
        for a in range(len(names))
        for b in range(a + 1, len(names))
        if len(stacked) and np.array_equal(stacked[:, a], stacked[:, b])
    ]
    for p in pairs:
        (a, b), (name_a, name_b) = p["columns"], p["names"]
        warnings.append(
            f"{spec.task}: label column {a} '{name_a}' is identical to column {b} '{name_b}' in every "
            f"row of all split files; a macro AUROC counts it twice (protocol.md H5)"
        )
    return pairs


def _check_id_patterns(spec: TaskSplitFiles, tables: dict[str, SplitTable], warnings: list[str]) -> bool:
    """Ids of the expected shape (§11.2) and unique per file; deviations are warnings only."""
    ok = True
    for table in tables.values():
        bad = [k for k, i in enumerate(table.ids) if not re.fullmatch(spec.id_pattern, i)]
        duplicates = len(table.ids) - len(set(table.ids))
        if bad:
            warnings.append(
                f"{table.path.name}: {len(bad)} id(s) do not look like {spec.task} ids, first "
                f"'{table.ids[bad[0]]}' at line {table.lines[bad[0]]}"
            )
        if duplicates:
            warnings.append(f"{table.path.name}: {duplicates} duplicated id(s)")
        ok = ok and not bad and not duplicates
    return ok


def _label_counts(table: SplitTable) -> list[int] | dict[str, int]:
    if table.labels.shape[1] == 1:  # single-label: class histogram
        values, counts = np.unique(table.labels[:, 0], return_counts=True)
        return {str(v): int(c) for v, c in zip(values, counts)}
    return [int(c) for c in table.labels.sum(axis=0)]


def _parse_split_json(data: bytes, path: Path, spec: SplitFile) -> dict[str, list]:
    """The case lists of a decathlon-style split file (§11.3); ``numTraining``/``numTest`` are ignored."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object at the top level")
    lists: dict[str, list] = {}
    for key in spec.rows:  # type: ignore[union-attr]
        entries = doc.get(key)
        if entries is None and key == "test":  # BTCV's unlabelled test list is informative only
            continue
        if not isinstance(entries, list):
            raise DataError(f"{path}: missing list '{key}'")
        for i, entry in enumerate(entries):
            ok = (
                isinstance(entry, str)
                if key == "test"
                else (
                    isinstance(entry, dict)
                    and isinstance(entry.get("image"), str)
                    and isinstance(entry.get("label"), str)
                )
            )
            if not ok:
                need = "a relative path" if key == "test" else "string fields 'image' and 'label'"
                raise DataError(f"{path}: entry {i} of '{key}' needs {need}")
        lists[key] = entries
    return lists


def _check_segmentation(spec: TaskSplitFiles, docs: dict[str, dict[str, list]], warnings: list[str]) -> dict:
    checks: dict = {}
    for role, doc in docs.items():
        name = spec.file(role).name
        images = {k: [e["image"] for e in v] for k, v in doc.items() if k != "test"}
        overlap = set(images["training"]) & set(images.get("testing", []) + images["validation"])
        checks[f"{role}_training_overlaps_eval"] = len(overlap)
        if overlap:
            warnings.append(f"{name}: {len(overlap)} training case(s) also listed for validation or testing")
        if "testing" in images:
            val, test = images["validation"], images["testing"]
            checks[f"{role}_validation_in_testing"] = set(val) <= set(test)
            checks[f"{role}_validation_is_testing_prefix"] = val == test[: len(val)]
        else:
            checks[f"{role}_has_testing"] = False  # BTCV: legacy tests on the validation cases (§5.2)
    if {"dataset_10", "dataset_100"} <= docs.keys():
        small = {e["image"] for e in docs["dataset_10"]["training"]}
        checks["training_10_in_training_100"] = small <= {e["image"] for e in docs["dataset_100"]["training"]}
        if not checks["training_10_in_training_100"]:
            warnings.append("dataset_10.json: some training cases are not in dataset_100.json training")
    return checks
