"""Split derivations shared by tasks (``protocol.md`` §4–§5)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np


def fraction_size(n_rows: int, fraction: float, *, min_rows: int = 0) -> int:
    """Rows of a training fraction: ``round(f·n)`` (§4), raised to ``min_rows`` but never above ``n``.

    ``min_rows`` exists for the tiny synthetic twins, whose 1 % and 10 % lists would otherwise be
    empty; the real split files follow plain ``round`` (``min_rows = 0``).
    """
    return min(n_rows, max(min_rows, int(round(fraction * n_rows))))


def fraction_subset(n_rows: int, fraction: float, seed: int = 42, *, min_rows: int = 0) -> np.ndarray:
    """Row indices of a training fraction: ``RandomState(seed).permutation(n)[:round(f·n)]``.

    Equals ``pandas.DataFrame.sample(frac=f, random_state=seed)``; fractions nest because
    every fraction takes a prefix of the same permutation.
    """
    return np.random.RandomState(seed).permutation(n_rows)[: fraction_size(n_rows, fraction, min_rows=min_rows)]


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


def label_coverage(labels: np.ndarray) -> tuple[int, int]:
    """(label columns holding both 0 and a positive value, columns holding a positive value) of an (n, k) matrix."""
    labels = np.asarray(labels).reshape(len(labels), -1)
    if not len(labels):
        return 0, 0
    positive = (labels > 0).any(axis=0)
    return int((positive & (labels == 0).any(axis=0)).sum()), int(positive.sum())


def covering_row_order(labels: np.ndarray, prefix_rows: int, seed: int = 42) -> list[int]:
    """A row order for a synthetic ``train_list.csv`` whose §4 fraction prefixes see both label values.

    The fraction lists are ``train[perm[:k]]`` (§4), so which rows they hold depends only on what
    sits at positions ``perm[:k]``. Rows for those positions are picked greedily to maximise
    :func:`label_coverage` of every prefix, preferring rows the plain order already puts there;
    the other rows keep their relative order. Used by the twin writers only: real split files
    are imported as published.
    """
    labels = np.asarray(labels).reshape(len(labels), -1)
    n = len(labels)
    perm = [int(i) for i in np.random.RandomState(seed).permutation(n)]
    k = min(prefix_rows, n)
    rank = {row: position for position, row in enumerate(perm)}
    chosen: list[int] = []
    for _ in range(k):
        candidates = [r for r in range(n) if r not in chosen]
        chosen.append(max(candidates, key=lambda r: (label_coverage(labels[chosen + [r]]), -rank[r])))
    order: list[int | None] = [None] * n
    for position, row in zip(perm[:k], chosen):
        order[position] = row
    rest = iter(r for r in range(n) if r not in chosen)
    return [row if row is not None else next(rest) for row in order]
