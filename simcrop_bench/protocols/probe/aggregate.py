"""Scoring units coarser than the volume (``protocol.md`` §9 ``aggregate = volume | scan | patient``).

CT-RATE has several reconstructions per scan and several scans per patient; the reference scores
every volume. With ``scan`` or ``patient`` the test probabilities of a unit's volumes are averaged
before scoring, and the unit is the row of the metric, the bootstrap and ``per_case.csv``.

Labels of a unit: reconstructions of a scan share them; scans of one patient need not, so a
multi-label or binary unit is positive for a label when any of its volumes is, and a multiclass
unit takes its most frequent class. Units whose volumes disagree are counted in the record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from simcrop_bench.data.splits.classification import SplitRows
from simcrop_bench.errors import ConfigError


def unit_of(aggregate: str, grouping: str, scan_of: Callable[[str], str] | None) -> Callable[[str, str], str]:
    """``(volume id, group) -> unit id`` for ``aggregate``; refuses ``patient`` without patient groups."""
    if aggregate == "volume":
        return lambda volume, group: volume
    if aggregate == "scan":
        return (lambda volume, group: scan_of(volume)) if scan_of else (lambda volume, group: volume)
    if grouping != "patient":
        raise ConfigError(
            f"task.aggregate=patient needs patient ids, but this dataset's rows are grouped by "
            f"{grouping} (protocol.md §5.3)"
        )
    return lambda volume, group: group


def aggregate_rows(
    rows: SplitRows, probs: np.ndarray, unit: Callable[[str, str], str], multiclass: bool
) -> tuple[SplitRows, np.ndarray, int]:
    """``(unit rows, unit probabilities, units whose volumes disagree on a label)``, units in first-seen order."""
    members: dict[str, list[int]] = {}
    for i, (volume, group) in enumerate(zip(rows.ids, rows.groups)):
        members.setdefault(unit(volume, group), []).append(i)
    labels = np.asarray(rows.labels)
    unit_labels, conflicts = [], 0
    for index in members.values():
        own = labels[index]
        if multiclass:
            counts = Counter(own.tolist())
            unit_labels.append(counts.most_common(1)[0][0])
            conflicts += len(counts) > 1
        else:
            unit_labels.append(own.max(axis=0))
            conflicts += bool((own != own[0]).any())
    unit_rows = SplitRows(
        ids=list(members),
        groups=[rows.groups[index[0]] for index in members.values()],
        labels=np.asarray(unit_labels, dtype=labels.dtype),
        paths=[rows.paths[index[0]] for index in members.values()],
    )
    unit_probs = np.stack([probs[index].mean(axis=0) for index in members.values()])
    return unit_rows, unit_probs, conflicts
