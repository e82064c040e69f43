"""Published numbers shown beside the re-run results (``table --reference-rows FILE``).

A CSV (header row) or YAML (a list of mappings) file with one entry per reported value:

=========  =========================================================================
method     method name as printed (required)
task       a registered task, e.g. ``ctrate_cls`` (required)
fraction   label fraction in percent, e.g. ``10`` (required)
metric     the task's primary metric, e.g. ``auc`` (required; must match the column)
value      the reported number (required)
std        reported spread (optional)
citation   where it is reported, e.g. ``Wang et al., MICCAI 2025, Tab. 1`` (required)
protocol   the evaluation protocol behind the number, e.g. ``linear probe, official split`` (required)
note       free text (optional)
=========  =========================================================================

These rows are rendered in italics below a rule, labelled "reported in <citation>", and are
never ranked (bold/underline) nor tested for significance: they were not produced by this
harness and their protocol may differ. The project ships no such file (``protocol.md`` §0).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from simcrop_bench.errors import UserError

FIELDS = ("method", "task", "fraction", "metric", "value", "std", "citation", "protocol", "note")
REQUIRED = ("method", "task", "fraction", "metric", "value", "citation", "protocol")


@dataclass(frozen=True)
class ReferenceRow:
    method: str
    task: str
    fraction: float
    metric: str
    value: float
    std: float | None
    citation: str
    protocol: str
    note: str
    where: str  # "FILE row N", for messages

    @property
    def label(self) -> str:
        return f"{self.method} (reported in {self.citation})"


def known_tasks() -> set[str]:
    from simcrop_bench import registry

    registry.discover()
    return {name for name, *_ in registry.entries("tasks")}


def load_reference_rows(path: Path, tasks: Iterable[str] | None = None) -> list[ReferenceRow]:
    """Read and validate ``path``; ``tasks`` = the valid task names (default: the registry's)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: reference-rows file not found")
    entries = _read_yaml(path) if path.suffix.lower() in (".yaml", ".yml") else _read_csv(path)
    if not entries:
        raise UserError(f"{path}: no reference rows")
    valid_tasks = set(tasks) if tasks is not None else known_tasks()
    return [_validate(entry, f"{path} row {number}", valid_tasks) for number, entry in entries]


def _read_csv(path: Path) -> list[tuple[int, dict]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            unknown = [f for f in reader.fieldnames or [] if f.strip() not in FIELDS]
            if unknown:
                raise UserError(f"{path}: unknown column {unknown[0]!r}; columns: {', '.join(FIELDS)}")
            # Row numbers count the header as row 1, like a spreadsheet.
            return [(reader.line_num, {k.strip(): v for k, v in row.items() if k}) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None


def _read_yaml(path: Path) -> list[tuple[int, dict]]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise UserError(f"{path}: expected a YAML list of mappings with keys {', '.join(FIELDS)}")
    for number, entry in enumerate(data, start=1):
        unknown = [k for k in entry if k not in FIELDS]
        if unknown:
            raise UserError(f"{path} row {number}: unknown key {unknown[0]!r}; keys: {', '.join(FIELDS)}")
    return list(enumerate(data, start=1))


def _text(entry: dict, key: str) -> str:
    value = entry.get(key)
    return "" if value is None else str(value).strip()


def _number(entry: dict, key: str, where: str) -> float:
    text = _text(entry, key)
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{where}: {key} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: {key} {text!r} is not a finite number")
    return value


def _validate(entry: dict, where: str, tasks: set[str]) -> ReferenceRow:
    for key in REQUIRED:
        if not _text(entry, key):
            why = (
                " (every published number must say where it comes from)"
                if key == "citation"
                else (
                    " (say how the number was obtained; it may differ from this harness's protocol)"
                    if key == "protocol"
                    else ""
                )
            )
            raise UserError(f"{where}: missing {key}{why}")
    task = _text(entry, "task")
    if task not in tasks:
        raise UserError(f"{where}: unknown task {task!r}; known: {', '.join(sorted(tasks))}")
    std = _number(entry, "std", where) if _text(entry, "std") else None
    return ReferenceRow(
        method=_text(entry, "method"),
        task=task,
        fraction=_number(entry, "fraction", where),
        metric=_text(entry, "metric"),
        value=_number(entry, "value", where),
        std=std,
        citation=_text(entry, "citation"),
        protocol=_text(entry, "protocol"),
        note=_text(entry, "note"),
        where=where,
    )


def reference_cells(
    rows: Sequence[ReferenceRow], columns: list, task_labels: Mapping[str, tuple]
) -> list[tuple[str, dict]]:
    """Table rows of published numbers: (label, {column: Cell}) for the columns the table shows."""
    from simcrop_bench.reporting.tables.model import Cell

    out: dict[str, dict] = {}
    for ref in rows:
        matching = [c for c in columns if c.task == ref.task and c.fraction == float(ref.fraction)]
        if not matching:
            continue  # a published number for a column this table does not show
        metrics = {m.strip() for m in task_labels[ref.task][1].split(",")}
        if ref.metric not in metrics:
            raise UserError(
                f"{ref.where}: metric {ref.metric!r} but the table's {ref.task} column shows "
                f"{', '.join(sorted(metrics))}"
            )
        label = f"{ref.label}; {ref.protocol}"
        for column in matching:
            if column in out.setdefault(label, {}):
                raise UserError(f"{ref.where}: a second value for {ref.method} {column.label} from the same citation")
            out[label][column] = Cell(ref.value, math.nan if ref.std is None else ref.std, 0)
    return list(out.items())
