"""Fractions whose runs trained on the same list of cases, found from the records' ``train_ids_sha256``.

On the CT-RATE twin, for example, the 1 % and 10 % lists are byte-identical: the two columns of a
table, or the two points of an efficiency curve, then train on the same cases: they do not compare two
amounts of training data (they may still differ, e.g. in training steps). Records without
the hash (written before it was recorded) are not compared.
"""

from __future__ import annotations

from collections.abc import Iterable

# (task, profile, protocol label, synthetic): the cell kind within which fractions are compared.
CurveKey = tuple[str, str, str, bool]


def identical_fractions(records: Iterable[dict]) -> dict[CurveKey, list[tuple[float, ...]]]:
    """Per cell kind, the groups (two or more) of fractions that trained on identical case lists."""
    from simcrop_bench.reporting.leaderboard import protocol_label

    by_hash: dict[CurveKey, dict[str, set[float]]] = {}
    for record in records:
        digest = (record.get("details") or {}).get("train_ids_sha256")
        if not isinstance(digest, str):
            continue
        key = (record["task"], str(record.get("profile")), protocol_label(record), bool(record.get("synthetic")))
        by_hash.setdefault(key, {}).setdefault(digest, set()).add(float(record["fraction"]))
    found = {
        key: sorted(tuple(sorted(group)) for group in hashes.values() if len(group) > 1)
        for key, hashes in by_hash.items()
    }
    return {key: groups for key, groups in found.items() if groups}
