"""Saved test predictions (``per_case.csv``) read back for paired tests and intervals.

Columns written by the tasks:

* multi-label / binary classification: ``case, group, y:<label>…, p:<label>…`` (metric ``auc``);
* multiclass classification (CC-CCII): ``case, group, label, p:<class>…`` (metric ``accuracy``);
* segmentation: ``case, dice, <class dice>…`` (metric ``dice``; the case is the patient).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simcrop_bench.errors import UserError

PER_CASE_FILE = "per_case.csv"
# Primary metric of a record -> metric name of simcrop_bench.stats.bootstrap.metric_on_weights.
BOOTSTRAP_METRIC = {"auc": "auc", "accuracy": "accuracy", "dice": "mean"}


@dataclass(frozen=True)
class Predictions:
    path: Path
    cases: np.ndarray  # (N,) str
    groups: np.ndarray  # (N,) str
    y_true: np.ndarray | None  # (N, C) binary, (N,) class ids, or None (per-case values)
    scores: np.ndarray  # (N, C) probabilities or (N,) per-case values


def bootstrap_metric(primary_metric: str, where: str) -> str:
    try:
        return BOOTSTRAP_METRIC[primary_metric]
    except KeyError:
        raise UserError(
            f"{where}: no paired test for metric {primary_metric!r} "
            f"(supported: {', '.join(BOOTSTRAP_METRIC)}); pass --reference none"
        ) from None


def read_per_case(path: Path, primary_metric: str) -> Predictions:
    """Parse one run's ``per_case.csv`` for ``primary_metric``; UserError naming the file if unusable."""
    path = Path(path)
    metric = bootstrap_metric(primary_metric, str(path))
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise UserError(
            f"{path}: missing (the paired test and --cell ci need the run's saved "
            "predictions); pass --reference none / --cell std to do without"
        ) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    if not rows or "case" not in rows[0]:
        raise UserError(f"{path}: no rows or no 'case' column")
    header = list(rows[0])
    try:
        cases = np.array([r["case"] for r in rows], dtype=str)
        groups = np.array([r.get("group") or r["case"] for r in rows], dtype=str)
        if metric == "mean":
            if "dice" not in header:
                raise UserError(f"{path}: no 'dice' column")
            return Predictions(path, cases, groups, None, np.array([_number(r["dice"]) for r in rows]))
        labels = [c[2:] for c in header if c.startswith("p:")]
        if not labels:
            raise UserError(f"{path}: no 'p:<label>' probability columns")
        scores = np.array([[float(r[f"p:{n}"]) for n in labels] for r in rows])
        if metric == "accuracy":
            if "label" not in header:
                raise UserError(f"{path}: accuracy needs a 'label' column")
            y_true = np.array([int(r["label"]) for r in rows])
        else:
            missing = [n for n in labels if f"y:{n}" not in header]
            if missing:
                raise UserError(f"{path}: no truth column 'y:{missing[0]}' for 'p:{missing[0]}'")
            y_true = np.array([[int(float(r[f"y:{n}"])) for n in labels] for r in rows])
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{path}: malformed value ({exc})") from None
    return Predictions(path, cases, groups, y_true, scores)


def _number(text: str) -> float:
    return math.nan if text in ("", "nan", "NaN") else float(text)


def align(reference: Predictions, other: Predictions) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
    """``(y_true, scores_other, scores_reference, groups)`` on the reference's case order.

    Both runs must hold the same test cases with the same labels and groups; otherwise the
    comparison is not paired and a UserError names both files.
    """
    if len(set(reference.cases)) != len(reference.cases) or len(set(other.cases)) != len(other.cases):
        raise UserError(f"{reference.path} / {other.path}: duplicate case ids; cannot pair rows")
    only_ref = sorted(set(reference.cases) - set(other.cases))
    only_other = sorted(set(other.cases) - set(reference.cases))
    if only_ref or only_other:
        example = (only_ref or only_other)[0]
        raise UserError(
            f"rows misaligned: {other.path} and {reference.path} hold different test cases "
            f"({len(only_other)} only in the first, {len(only_ref)} only in the second, e.g. {example!r}); "
            "a paired test needs the same test set (rerun on the same split, or pass --reference none)"
        )
    index = {case: i for i, case in enumerate(other.cases)}
    order = np.array([index[c] for c in reference.cases])
    if not np.array_equal(other.groups[order], reference.groups):
        raise UserError(f"{other.path} and {reference.path}: the same cases have different groups (patients)")
    if reference.y_true is not None:
        if other.y_true is None or not np.array_equal(other.y_true[order], reference.y_true):
            raise UserError(f"{other.path} and {reference.path}: the same cases have different labels")
    if other.scores.shape[1:] != reference.scores.shape[1:]:
        raise UserError(f"{other.path} and {reference.path}: different prediction columns")
    return reference.y_true, other.scores[order], reference.scores, reference.groups
