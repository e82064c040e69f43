"""Paper-table layouts: which tasks form the columns and how methods are grouped into rows.

* ``free`` — every task in the results, alphabetical, one ungrouped block of methods (the
  original ``table`` behaviour).
* ``cls`` — the four linear-probe tasks (CT-RATE, RadChestCT, CC-CCII, LUNA16) × fraction; the
  primary metric (macro AUROC, accuracy for CC-CCII) comes from the records.
* ``seg`` — ``lung_seg`` and ``btcv_seg`` Dice × fraction.
* ``ablation`` — every task present, rows = ``simcrop`` and its registered ablations.

Rows of ``cls`` and ``seg`` are grouped by *family*. The method registry exposes a ``kind`` per
method (``no-pretraining``, ``self-supervised``, ``vision-language``, ``external``), also stored in each
record as ``method_kind``; :data:`KIND_TO_FAMILY` maps it onto the table's families. SimCroP and
its ablations form their own family, shown last; anything unknown falls into ``other``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from simcrop_bench.errors import UserError

LAYOUTS = ("free", "cls", "seg", "ablation")
CLS_TASKS = ("ctrate_cls", "radchestct_cls", "ccccii_cls", "luna16_cls")
SEG_TASKS = ("lung_seg", "btcv_seg")
METRIC_LABELS = {
    "auc": "AUROC",
    "auc_ovr": "AUROC (one-vs-rest)",
    "accuracy": "Accuracy",
    "dice": "Dice",
    "f1_micro": "micro F1",
    "f1_macro": "macro F1",
    "selection_dice": "selection Dice",
}
# (family key, label) in display order; SimCroP last.
FAMILIES = (
    ("none", "No pretraining"),
    ("self-supervised", "Self-supervised (image only)"),
    ("vision-language", "Vision-language"),
    ("other", "Other"),
    ("simcrop", "SimCroP"),
)
KIND_TO_FAMILY = {
    "no-pretraining": "none",
    "baseline": "none",  # the name of "no-pretraining" in records written before it was renamed
    "self-supervised": "self-supervised",
    "vision-language": "vision-language",
}
# Preferred order inside a family; unknown names follow alphabetically.
METHOD_ORDER = (
    "scratch",
    "mae",
    "simmim",
    "clip",
    "mrm",
    "simcrop",
    "simcrop-noalign",
    "simcrop-nofusion",
    "simcrop-k8",
    "simcrop-k16",
    "simcrop-k64",
)


@dataclass(frozen=True)
class RowGroup:
    """A block of method rows; ``label`` None = no label row (the ``free`` layout)."""

    label: str | None
    methods: tuple[str, ...]


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise UserError(f"unknown table layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    return layout


def layout_tasks(layout: str) -> tuple[str, ...] | None:
    """The layout's tasks in column order, or None for every task (alphabetical)."""
    return {"cls": CLS_TASKS, "seg": SEG_TASKS}.get(check_layout(layout))


def is_simcrop(method: str) -> bool:
    return method == "simcrop" or method.startswith("simcrop-")


def registry_kinds(methods: Iterable[str]) -> dict[str, str]:
    """``kind`` of each method the registry knows (unknown names are left out)."""
    from simcrop_bench import registry

    try:
        registry.discover()
    except UserError:  # a broken plugin must not stop a table; kinds from records still apply
        pass
    kinds = {}
    for method in methods:
        try:
            kinds[method] = getattr(registry.get_method(method), "kind", "") or ""
        except UserError:
            continue
    return kinds


def family_of(method: str, kinds: Mapping[str, str]) -> str:
    if is_simcrop(method):
        return "simcrop"
    return KIND_TO_FAMILY.get(kinds.get(method, ""), "other")


def _ordered(methods: Iterable[str], first: Iterable[str] = ()) -> list[str]:
    methods = set(methods)
    preferred = [m for m in (*first, *METHOD_ORDER) if m in methods]
    preferred = list(dict.fromkeys(preferred))
    return preferred + sorted(methods - set(preferred))


def row_groups(
    layout: str, methods: Iterable[str], kinds: Mapping[str, str], method_order: Iterable[str] | None = None
) -> list[RowGroup]:
    """Methods split into labelled row blocks for ``layout`` (empty blocks dropped)."""
    methods = list(methods)
    if check_layout(layout) == "free":
        present = set(methods)
        first = [m for m in (method_order or []) if m in present]
        return [RowGroup(None, tuple(first + sorted(present - set(first))))]
    if layout == "ablation":
        variants = [m for m in methods if is_simcrop(m)]
        if not variants:
            raise UserError(
                "the ablation layout needs results of simcrop or its ablations "
                "(simcrop-noalign, simcrop-nofusion, simcrop-k8|k16|k64)"
            )
        groups = [
            RowGroup("Full model", ("simcrop",) if "simcrop" in variants else ()),
            RowGroup("Ablations", tuple(_ordered(m for m in variants if m != "simcrop"))),
        ]
        return [g for g in groups if g.methods]
    families = {key: [] for key, _ in FAMILIES}
    for method in methods:
        families[family_of(method, kinds)].append(method)
    return [
        RowGroup(label, tuple(_ordered(families[key], method_order or ()))) for key, label in FAMILIES if families[key]
    ]


def task_header(layout: str, task: str) -> str:
    """Column-group title: the task's ``column_label`` (default: its dataset's name) in the paper layouts,
    the task name otherwise or when the registry does not know the task."""
    if layout == "free":
        return task
    from simcrop_bench import registry
    from simcrop_bench.data.datasets import DATASETS

    try:
        registry.discover()
        task_cls = registry.get_task(task)
    except UserError:  # records of a task whose file is gone (or a broken plugin): its name still labels it
        return task
    dataset = DATASETS.get(task_cls.dataset)
    return task_cls.column_label or (dataset.display if dataset else task)


def metric_header(metric: str) -> str:
    """Display name of a metric (``auc`` → AUROC), shared by tables and figures."""
    return METRIC_LABELS.get(metric, metric)


def display_task(task: str) -> str:
    """Display name of a task (``ctrate_cls`` → CT-RATE), as the paper layouts head their columns."""
    return task_header("cls", task)
