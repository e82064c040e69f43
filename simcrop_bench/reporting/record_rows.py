"""A run record as the reporting layer reads it: the schema check and its one-row leaderboard summary.

Shared by :mod:`.leaderboard` (which reads records) and :mod:`.results_index` (which stores their rows),
so that a row from the index and a row from the record itself cannot differ.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from simcrop_bench.errors import UserError

SCHEMA_VERSION = 1

# Required record keys and the Python types they must have.
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "run_id": str,
    "method": str,
    "task": str,
    "fraction": (int, float),
    "seed": int,
    "profile": str,
    "protocol": str,
    "synthetic": bool,
    "primary_metric": str,
    "higher_is_better": bool,
    "metrics": dict,
    "cell_hash": str,
}

FRAME_COLUMNS = [
    "task",
    "method",
    "fraction",
    "seed",
    "profile",
    "protocol",
    "synthetic",
    "cell_hash",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "higher_is_better",
    "run_id",
]


def protocol_label(record: dict) -> str:
    """``heldout``, or ``heldout+lp-cached`` for a labelled variant: variants are never shown as the recipe."""
    variant = record.get("variant") or ""
    return f"{record['protocol']}+{variant}" if variant else record["protocol"]


def _interval(record: dict) -> dict[str, float]:
    """The primary metric's bootstrap interval (protocol.md §9) as frame columns; NaN when the record has none."""
    ci = (record.get("intervals") or {}).get(record["primary_metric"]) or {}
    low, high = ci.get("low"), ci.get("high")
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float))):
        low = high = math.nan
    return {"ci_low": float(low), "ci_high": float(high)}


def frame_row(record: dict) -> dict[str, Any]:
    """The record's leaderboard row: the columns of :data:`FRAME_COLUMNS`."""
    r = record
    return {
        "task": r["task"],
        "method": r["method"],
        "fraction": r["fraction"],
        "seed": r["seed"],
        "profile": r["profile"],
        "protocol": protocol_label(r),
        "synthetic": bool(r["synthetic"]),
        "cell_hash": r["cell_hash"],
        "metric": r["primary_metric"],
        "value": float(r["metrics"][r["primary_metric"]]),
        **_interval(r),
        "higher_is_better": bool(r["higher_is_better"]),
        "run_id": r["run_id"],
    }


def read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read record ({exc})") from None
    problem = validate_record(record)
    if problem:
        raise UserError(f"{path}: {problem}")
    return record


def validate_record(record: Any) -> str | None:
    """Return a one-line description of what is wrong with ``record``, or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        return "missing required key(s) " + ", ".join(repr(k) for k in missing)
    if record["schema_version"] != SCHEMA_VERSION:
        return f"unsupported schema_version {record['schema_version']!r} (this version reads {SCHEMA_VERSION})"
    for key, expected in _REQUIRED.items():
        value = record[key]
        # bool is a subclass of int; a seed of `true` is a mistake, not seed 1.
        wrong_bool = isinstance(value, bool) and expected is not bool
        if wrong_bool or not isinstance(value, expected):
            names = expected.__name__ if isinstance(expected, type) else "number"
            return f"key {key!r} should be {names}, got {json.dumps(value)}"
    primary = record["primary_metric"]
    if primary not in record["metrics"]:
        return f"primary metric {primary!r} not found in 'metrics'"
    value = record["metrics"][primary]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"metrics[{primary!r}] should be a number, got {json.dumps(value)}"
    return None
