"""Split derivations shared by tasks (``protocol.md`` §4–§5)."""

from __future__ import annotations

from typing import Hashable, Iterable, Sequence

import numpy as np


def fraction_subset(n_rows: int, fraction: float, seed: int = 42) -> np.ndarray:
    """Row indices of a training fraction: ``RandomState(seed).permutation(n)[:round(f·n)]``.

    Equals ``pandas.DataFrame.sample(frac=f, random_state=seed)``; fractions nest because
    every fraction takes a prefix of the same permutation.
    """
    n = int(round(fraction * n_rows))
    return np.random.RandomState(seed).permutation(n_rows)[:n]


def carve_validation_groups(
    groups: Iterable[Hashable],
    excluded: Iterable[Hashable],
    *,
    val_fraction: float = 0.10,
    seed: int = 42,
) -> list:
    """Held-out validation groups (``protocol.md`` §5.3 steps 2–4), in permutation order.

    ``groups`` are the group ids of the full training list (duplicates allowed);
    ``excluded`` those that must stay in training (groups of the smaller fractions).
    At least one group is held out, which only matters for lists of fewer than 15
    groups (tiny synthetic twins), where ``round`` would give none.
    """
    distinct = list(dict.fromkeys(groups))
    excluded_set = set(excluded)
    n_val = max(1, int(round(val_fraction * len(distinct)))) if distinct else 0
    eligible = sorted((g for g in distinct if g not in excluded_set), key=str)
    perm = np.random.RandomState(seed).permutation(len(eligible))
    return [eligible[i] for i in perm[:n_val]]


def ordered_subset(items: Sequence, keep: Iterable[Hashable], key) -> list:
    """Items whose ``key(item)`` is in ``keep``, in the order of ``keep``."""
    by_key = {key(item): item for item in items}
    return [by_key[k] for k in keep if k in by_key]
