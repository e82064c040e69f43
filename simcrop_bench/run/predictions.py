"""Saved test predictions (``per_case.csv``) read back for paired tests and intervals.

Columns written by the tasks:

* multi-label / binary classification: ``case, group, y:<label>…, p:<label>…`` (metric ``auc``);
* multiclass classification (CC-CCII): ``case, group, label, p:<class>…`` (metric ``accuracy``);
* segmentation: ``case, dice, <class dice>…`` (metric ``dice``; the case is the patient).
"""

from __future__ import annotations

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
    """Parse one run's ``per_case.csv`` for ``primary_metric``; UserError naming the file if unusable.

    pandas' C parser: a real-size file (CT-RATE, 3,009 rows × 18 labels) is read ~10× faster than row by row,
    and ``table`` reads one per run of the grid.
    """
    import pandas as pd

    path = Path(path)
    metric = bootstrap_metric(primary_metric, str(path))
    try:
        # Identifiers stay text ("007" is not 7); every other column is parsed as a number below.
        frame = pd.read_csv(path, dtype={"case": str, "group": str, "label": str}, keep_default_na=False)
    except FileNotFoundError:
        raise UserError(
            f"{path}: missing (the paired test and --cell ci need the run's saved "
            "predictions); pass --reference none / --cell std to do without"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:  # EmptyDataError is a ValueError
        raise UserError(f"{path}: cannot read ({exc})") from None
    if frame.empty or "case" not in frame.columns:
        raise UserError(f"{path}: no rows or no 'case' column")
    header = list(frame.columns)
    try:
        cases = frame["case"].to_numpy(dtype=str)
        groups = frame["group"].where(frame["group"] != "", frame["case"]) if "group" in frame else frame["case"]
        groups = groups.to_numpy(dtype=str)
        if metric == "mean":
            if "dice" not in header:
                raise UserError(f"{path}: no 'dice' column")
            return Predictions(path, cases, groups, None, _numbers(frame["dice"]))
        labels = [c[2:] for c in header if c.startswith("p:")]
        if not labels:
            raise UserError(f"{path}: no 'p:<label>' probability columns")
        scores = np.stack([_numbers(frame[f"p:{n}"], strict=True) for n in labels], axis=1)
        if metric == "accuracy":
            if "label" not in header:
                raise UserError(f"{path}: accuracy needs a 'label' column")
            y_true = np.array([int(v) for v in frame["label"]])
        else:
            missing = [n for n in labels if f"y:{n}" not in header]
            if missing:
                raise UserError(f"{path}: no truth column 'y:{missing[0]}' for 'p:{missing[0]}'")
            y_true = np.stack([_numbers(frame[f"y:{n}"], strict=True).astype(int) for n in labels], axis=1)
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{path}: malformed value ({exc})") from None
    return Predictions(path, cases, groups, y_true, scores)


def _numbers(column, strict: bool = False) -> np.ndarray:
    """A column as floats; empty / "nan" cells are NaN unless ``strict`` (scores and labels must be numbers)."""
    if column.dtype.kind in "if":
        return column.to_numpy(dtype=float)
    text = column.astype(str)
    if not strict:
        text = text.where(~text.isin(("", "nan", "NaN")), "nan")
    return np.array([float(v) for v in text])


def align(reference: Predictions, other: Predictions) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
    """``(y_true, scores_other, scores_reference, groups)`` on the reference's case order.

    Both runs must hold the same test cases with the same labels and groups; otherwise the
    comparison is not paired and a UserError names both files.
    """
    if len(np.unique(reference.cases)) != len(reference.cases) or len(np.unique(other.cases)) != len(other.cases):
        raise UserError(f"{reference.path} / {other.path}: duplicate case ids; cannot pair rows")
    order: np.ndarray | slice
    if np.array_equal(other.cases, reference.cases):
        order = slice(None)  # the usual case, runs on one split: same rows in the same order (no Python loop)
    else:
        only_ref = sorted(set(reference.cases.tolist()) - set(other.cases.tolist()))
        only_other = sorted(set(other.cases.tolist()) - set(reference.cases.tolist()))
        if only_ref or only_other:
            example = (only_ref or only_other)[0]
            raise UserError(
                f"rows misaligned: {other.path} and {reference.path} hold different test cases "
                f"({len(only_other)} only in the first, {len(only_ref)} only in the second, e.g. {example!r}); "
                "a paired test needs the same test set (rerun on the same split, or pass --reference none)"
            )
        index = {case: i for i, case in enumerate(other.cases.tolist())}
        order = np.array([index[c] for c in reference.cases.tolist()])
    if not np.array_equal(other.groups[order], reference.groups):
        raise UserError(f"{other.path} and {reference.path}: the same cases have different groups (patients)")
    if reference.y_true is not None:
        if other.y_true is None or not np.array_equal(other.y_true[order], reference.y_true):
            raise UserError(f"{other.path} and {reference.path}: the same cases have different labels")
    if other.scores.shape[1:] != reference.scores.shape[1:]:
        raise UserError(f"{other.path} and {reference.path}: different prediction columns")
    return reference.y_true, other.scores[order], reference.scores, reference.groups
