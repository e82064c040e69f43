"""The data gate of ``run``: the ``data check`` of a root, on its raw files, before any transform.

A run refuses a root with any problem (train/test leakage, a mask that does not match its image,
unknown label values, NaN voxels, unreadable or empty reports, ...), listing each with its file, and
nothing is written. The check reads every volume, so its verdict is remembered per content
signature (every file's path, size and modification time, like the preprocessing cache): a root
is read once, and again only after a file changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from simcrop_bench.data.check.root import Problem
from simcrop_bench.data.datasets import get_layout
from simcrop_bench.errors import DataError
from simcrop_bench.util.atomic import write_json

GATE_VERSION = 2  # bump when a check is added or changed: remembered verdicts are then recomputed
LAYOUT = "simcrop"  # the layout tasks and pretraining read
SHOWN = 40  # problems listed in the error (all of them are in `data check`)


def root_signature(root: Path) -> str:
    """Hash of every file's relative path, size and modification time, and of the gate version."""
    digest = hashlib.sha256(f"{GATE_VERSION}\0{root.resolve()}\n".encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def root_problems(dataset: str, root: Path, cache: Path | None) -> list[Problem]:
    """The problems ``data check`` finds in ``root``, read from ``cache`` when its files are unchanged."""
    checker = get_layout(dataset, LAYOUT).checker
    if checker is None:
        return []
    memo = None if cache is None else cache / "data-checks" / f"{dataset}-{root_signature(root)}.json"
    if memo is not None and memo.is_file():
        try:
            return [Problem(**p) for p in json.loads(memo.read_text(encoding="utf-8"))["problems"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # damaged: check again
    problems = checker()(root).problems
    if memo is not None:
        write_json(memo, {"dataset": dataset, "root": str(root), "problems": [asdict(p) for p in problems]})
    return problems


def require_clean_root(dataset: str, root: Path, cache: Path | None, *, waived: frozenset[str] = frozenset()) -> None:
    """Raise a :class:`DataError` listing every problem of ``root``, one line each.

    ``waived``: kinds of problem the run resolves itself (train/test rows of one patient, with
    ``task.purge_test_patients_from_train``: protocol.md §5.3).
    """
    problems = [str(p) for p in root_problems(dataset, root, cache) if p.kind not in waived]
    if not problems:
        return
    # The error line names the first problem's file; the others follow, one line each.
    shown, hidden = problems[:SHOWN], len(problems) - SHOWN
    raise DataError(
        f"{shown[0]} [{dataset} data root {root}: {len(problems)} problem(s), so nothing was run; "
        f"`simcrop-bench data check -d {dataset} -r {root}` lists them all]"
        + "".join(f"\n  {problem}" for problem in shown[1:])
        + (f"\n  … and {hidden} more" if hidden > 0 else "")
    )
