"""Seeds into cells: a *cell* is one comparable configuration — records that agree on task, method, fraction,
profile, protocol, synthetic and ``cell_hash`` (the resolved config without the seed) — and its summary is the mean,
sample std, number and list of its seeds. Records that differ in any of these are never mixed.

Used by :mod:`~simcrop_bench.reporting.leaderboard` (on records) and by the results index (per fraction folder,
where the summaries are stored so that ``leaderboard`` reads cells instead of records).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from simcrop_bench.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

# Columns that identify one comparable cell (everything except the seed).
CELL_KEYS = [
    "task",
    "fraction",
    "method",
    "profile",
    "protocol",
    "synthetic",
    "cell_hash",
    "metric",
    "higher_is_better",
]
AGGREGATE_COLUMNS = [*CELL_KEYS, "mean", "std", "n_seeds", "seeds", "ci_low", "ci_high"]


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Average seeds per cell: mean, sample std (ddof=1, NaN for one seed), n, seeds.

    Sorted by task, fraction, metric, then mean in the metric's good direction
    (best first; NaN means last), then method for a stable order.
    """
    problem = repeated_seed(frame)
    if problem:
        raise UserError(problem)
    return rank_cells(cell_summaries(frame))


def repeated_seed(frame: pd.DataFrame) -> str | None:
    """The error of a cell that holds one seed twice (its run ids), or None."""
    if frame.empty:
        return None
    repeated = frame.duplicated([*CELL_KEYS, "seed"], keep=False)
    if not repeated.any():
        return None
    first = frame[repeated].groupby(CELL_KEYS, sort=False, dropna=False)["run_id"].agg(", ".join).iloc[0]
    return f"the same seed appears more than once in one cell: {first}"


def cell_summaries(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (:data:`AGGREGATE_COLUMNS`), in order of first appearance in ``frame``, unranked.

    The results index stores these per fraction folder (a cell never spans two), so that ``leaderboard``
    reads cells instead of records.
    """
    import pandas as pd

    if frame.empty:
        return pd.DataFrame(columns=AGGREGATE_COLUMNS)
    # Vectorised over cells (a 100,000-record leaderboard has ~20,000 of them): one groupby, no loop.
    ordered = frame.assign(_nan=frame["value"].isna()).sort_values("seed", kind="stable")
    groups = ordered.groupby(CELL_KEYS, sort=False, dropna=False)
    # Cells in order of first appearance in ``frame`` (the ranking's sort is stable, ties keep it).
    cells = frame.groupby(CELL_KEYS, sort=False, dropna=False).size().index
    values = groups["value"]
    agg = pd.DataFrame(
        {
            "mean": values.mean(),
            "std": values.std(ddof=1),
            "n_seeds": values.size(),
            "seeds": _seed_lists(ordered, groups),
            "ci_low": groups["ci_low"].first(skipna=False),
            "ci_high": groups["ci_high"].first(skipna=False),
            "_nan": groups["_nan"].any(),
        }
    ).reindex(cells)
    # skipna semantics: a diverged (NaN) seed must show, not vanish from the mean.
    agg.loc[agg["_nan"].astype(bool), ["mean", "std"]] = math.nan
    # One seed: its patient-level bootstrap interval; several: the spread over seeds is shown instead.
    agg.loc[agg["n_seeds"] != 1, ["ci_low", "ci_high"]] = math.nan
    return agg.drop(columns="_nan").reset_index()[AGGREGATE_COLUMNS]


def rank_cells(agg: pd.DataFrame) -> pd.DataFrame:
    """Cells sorted by task, fraction, metric, then mean in the metric's good direction (best first; NaN last),
    then method; ties keep their order (stable)."""
    import pandas as pd

    if agg.empty:
        return pd.DataFrame(columns=AGGREGATE_COLUMNS)  # untyped, whether the cells came from records or the index
    good_first = agg["mean"].where(agg["higher_is_better"], -agg["mean"]) * -1
    agg = (
        agg.assign(_order=good_first)
        .sort_values(["task", "fraction", "metric", "_order", "method"], na_position="last", kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )
    agg["n_seeds"] = agg["n_seeds"].astype(int)
    return agg


def _seed_lists(ordered: pd.DataFrame, groups: Any) -> pd.Series:
    """Each cell's seeds as a list of ints, ascending (``ordered`` is sorted by seed): one numpy split, not a
    Python call per cell."""
    import numpy as np
    import pandas as pd

    codes = groups.ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")  # stable: seeds stay ascending within a cell
    seeds = ordered["seed"].to_numpy()[order]
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return pd.Series([part.tolist() for part in np.split(seeds, bounds)], index=groups.size().index)
