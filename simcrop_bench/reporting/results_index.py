"""The results index: one SQLite row per run record and per cell, so that ``leaderboard`` reads no record file.

``<results>/.index.sqlite`` holds each record's leaderboard row (:func:`.record_rows.frame_row`), each cell's
summary over its seeds (:func:`.aggregate.cell_summaries`: a cell never spans two fraction folders, so the
summaries of a folder are recomputed with its rows) and, per fraction folder (``runs/<task>/<method>/f<fraction>/``),
the folder's modification time when its records were indexed. :func:`indexed_cells` lists the fraction folders (one
``stat`` each: 20,000 for 100,000 records of 5 seeds, where listing every seed folder would cost five times that),
re-reads the records of the folders whose mtime differs from the stored one (or that appeared or vanished), and
answers from the index: ``leaderboard`` then reads one row per cell instead of one per record.

* Publishing calls :func:`record_published` (``run.cell``): it sets the fraction folder's mtime to now — a new
  run inside an existing seed folder changes only that seed folder — and re-indexes the fraction folder. If the
  update fails (a locked or read-only index) the folder is merely stale, to be re-read next time.
* A folder is always re-indexed whole, its mtime read *before* its records are listed: a record published
  meanwhile changes the mtime again and is picked up by the next check.
* Every update is one SQLite transaction; a missing, corrupt or older-schema index is rebuilt into a
  temporary file that is renamed into place (``leaderboard --reindex`` forces this).
* Not seen without ``--reindex``: changes made by hand *inside* an existing seed folder (a run folder copied
  in or deleted, a ``record.json`` edited in place), since they leave the fraction folder's mtime alone.
  New or deleted seed folders, and whole fraction, method or task folders, are seen.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from simcrop_bench.errors import UserError
from simcrop_bench.reporting.aggregate import AGGREGATE_COLUMNS, CELL_KEYS, cell_summaries, repeated_seed
from simcrop_bench.reporting.record_rows import FRAME_COLUMNS, frame_row, read_record

if TYPE_CHECKING:
    import pandas as pd

INDEX_FILE = ".index.sqlite"
INDEX_SCHEMA = 3  # bump when the stored columns or folder level change: an older index is rebuilt
FOLDER_DEPTH = 3  # runs/<task>/<method>/f<fraction>: the unit of staleness
RECORD_DEPTH = 2  # records sit at <fraction folder>/s<seed>/<run>/record.json
RECORD_FILE = "record.json"
BUSY_TIMEOUT_S = 30.0  # parallel publishers wait for each other's transactions

# NUMERIC keeps 100 an integer and 0.5 a real, as in the record (the frame's dtype follows the records').
_COLUMN_TYPES = {"fraction": "NUMERIC", "seed": "INTEGER", "synthetic": "INTEGER", "value": "REAL"}
_COLUMN_TYPES |= {"ci_low": "REAL", "ci_high": "REAL", "higher_is_better": "INTEGER"}
_COLUMN_TYPES |= {"mean": "REAL", "std": "REAL", "n_seeds": "INTEGER"}  # cells; their seeds are text "42,43"
_ROW_COLUMNS = ", ".join(f"{name} {_COLUMN_TYPES.get(name, 'TEXT')}" for name in FRAME_COLUMNS)
_CELL_COLUMNS = ", ".join(f"{name} {_COLUMN_TYPES.get(name, 'TEXT')}" for name in AGGREGATE_COLUMNS)
_PROBLEM_KEYS = ("task", "method", "profile", "protocol")  # what leaderboard filters on
_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE folders (folder TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL);
CREATE TABLE rows ({_ROW_COLUMNS}, folder TEXT NOT NULL, path TEXT NOT NULL, UNIQUE (run_id));
CREATE INDEX rows_folder ON rows (folder);
CREATE INDEX rows_path ON rows (path);
CREATE TABLE cells ({_CELL_COLUMNS}, folder TEXT NOT NULL, first_path TEXT NOT NULL);
CREATE INDEX cells_folder ON cells (folder);
CREATE TABLE problems ({", ".join(_PROBLEM_KEYS)}, message TEXT NOT NULL, folder TEXT NOT NULL);
"""


def index_path(results: Path) -> Path:
    return Path(results) / INDEX_FILE


# --------------------------------------------------------------------------- the folders and their mtimes


def indexed_folders(runs: Path) -> dict[str, int]:
    """``{fraction folder relative to runs/: mtime_ns}``; names starting with "." (staging, locks) are skipped."""
    found: dict[str, int] = {}

    def walk(folder: str, prefix: str, depth: int) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name[0] == "." or not entry.is_dir(follow_symlinks=False):
                    continue
                if depth == FOLDER_DEPTH:
                    found[prefix + entry.name] = entry.stat(follow_symlinks=False).st_mtime_ns
                else:
                    walk(entry.path, f"{prefix}{entry.name}/", depth + 1)

    if runs.is_dir():
        walk(str(runs), "", 1)
    return found


def _folder_rows(runs: Path, folder: str) -> list[tuple]:
    """The rows of every record under one fraction folder (``s<seed>/<run>/record.json``)."""
    rows = []
    for path in sorted((runs / folder).glob("*/*/" + RECORD_FILE)):
        if any(part.startswith(".") for part in path.relative_to(runs / folder).parts):
            continue
        row = frame_row(read_record(path))
        rows.append((*(row[c] for c in FRAME_COLUMNS), folder, path.relative_to(runs).as_posix()))
    return rows


# --------------------------------------------------------------------------- the database


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)  # explicit transactions
    try:
        yield connection
    finally:
        connection.close()


def _usable(connection: sqlite3.Connection) -> bool:
    try:
        found = connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.DatabaseError:
        return False
    return found is not None and found[0] == str(INDEX_SCHEMA)


def _summaries(read: dict[str, list[tuple]]) -> tuple[list[tuple], list[tuple]]:
    """The cell rows and the problem rows (a seed twice in one cell) of the folders just read."""
    import pandas as pd

    frame = pd.DataFrame([row for rows in read.values() for row in rows], columns=[*FRAME_COLUMNS, "folder", "path"])
    if frame.empty:
        return [], []
    frame = _typed(frame.sort_values("path", ignore_index=True), ("value", "ci_low", "ci_high"))  # read order
    cells = cell_summaries(frame)
    # The same groups, in the same (first appearance) order: where each cell lives and its first record.
    where = frame.groupby(CELL_KEYS, sort=False, dropna=False)[["folder", "path"]].first()
    cells["seeds"] = [",".join(map(str, seeds)) for seeds in cells["seeds"]]
    cells = cells.astype(object).where(cells.notna(), None)  # NaN is stored as NULL
    rows = [(*cell, folder, path) for cell, (folder, path) in zip(cells.itertuples(index=False), where.to_numpy())]
    problems = []
    if repeated_seed(frame):
        for folder, part in frame.groupby("folder", sort=True):
            message = repeated_seed(part)
            if message:
                problems.append((*part.iloc[0][list(_PROBLEM_KEYS)], message, folder))
    return rows, problems


def _reindex(connection: sqlite3.Connection, runs: Path, folders: dict[str, int], gone: Iterable[str]) -> None:
    """Replace the rows and cells of ``folders`` (read now) and drop those of ``gone``, in one transaction."""
    read = {folder: _folder_rows(runs, folder) for folder in folders}  # outside the transaction: may raise
    cells, problems = _summaries(read)
    connection.execute("BEGIN IMMEDIATE")
    try:
        for folder in [*folders, *gone]:
            for table in ("rows", "cells", "problems", "folders"):
                connection.execute(f"DELETE FROM {table} WHERE folder = ?", (folder,))
        placeholders = ", ".join("?" * (len(FRAME_COLUMNS) + 2))
        for folder, mtime in folders.items():
            connection.executemany(f"INSERT INTO rows VALUES ({placeholders})", read[folder])
            connection.execute("INSERT INTO folders VALUES (?, ?)", (folder, mtime))
        connection.executemany(f"INSERT INTO cells VALUES ({', '.join('?' * (len(AGGREGATE_COLUMNS) + 2))})", cells)
        connection.executemany("INSERT INTO problems VALUES (?, ?, ?, ?, ?, ?)", problems)
        connection.execute("COMMIT")
    except sqlite3.IntegrityError:
        connection.execute("ROLLBACK")
        raise _duplicate_run_id(connection, read) from None
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _duplicate_run_id(connection: sqlite3.Connection, read: dict[str, list[tuple]]) -> UserError:
    """The error a copied run folder gets: its run_id is already another record's (one seed counted twice)."""
    run_id_at = FRAME_COLUMNS.index("run_id")
    seen: dict[str, str] = {}
    for rows in read.values():
        for row in rows:
            run_id, path = row[run_id_at], row[-1]
            earlier = seen.setdefault(run_id, path)
            if earlier == path:
                stored = connection.execute("SELECT path, folder FROM rows WHERE run_id = ?", (run_id,)).fetchone()
                if stored is None or stored[1] in read:
                    continue
                earlier = stored[0]
            return UserError(f"{path}: run_id {run_id!r} already used by {earlier} (paths under runs/)")
    return UserError("the results index refused a duplicate run_id")


def rebuild(results: Path) -> Path:
    """Build the index from every record under ``results/runs`` into a temporary file, then rename it."""
    results = Path(results)
    target = index_path(results)
    temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        with _connect(temporary) as connection:
            connection.executescript(_SCHEMA)
            connection.execute("INSERT INTO meta VALUES ('schema', ?)", (str(INDEX_SCHEMA),))
            _reindex(connection, results / "runs", indexed_folders(results / "runs"), ())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def refresh(results: Path) -> Path:
    """Bring the index up to date (rebuild it when missing or unusable); returns its path."""
    results = Path(results)
    if not results.is_dir():
        raise UserError(f"results directory {results} does not exist")
    path = index_path(results)
    if not path.is_file():
        return rebuild(results)
    with _connect(path) as connection:
        if not _usable(connection):
            stale_schema = True
        else:
            stale_schema = False
            current = indexed_folders(results / "runs")
            stored = dict(connection.execute("SELECT folder, mtime_ns FROM folders"))
            changed = {folder: mtime for folder, mtime in current.items() if stored.get(folder) != mtime}
            gone = set(stored) - set(current)
            if changed or gone:
                _reindex(connection, results / "runs", changed, gone)
    return rebuild(results) if stale_schema else path


def record_published(results: Path, run_folder: Path) -> None:
    """Index the fraction folder that ``run_folder`` was just published into (after its rename).

    The index is a cache: when it does not exist yet, or cannot be written now, the folder is left for the next
    :func:`refresh` (its mtime, set to now here, differs from the stored one).
    """
    results, run_folder = Path(results), Path(run_folder)
    runs = results / "runs"
    folder = run_folder.parents[RECORD_DEPTH - 1]
    with contextlib.suppress(OSError):
        os.utime(folder)  # a run added inside an existing seed folder leaves this folder's mtime alone otherwise
    path = index_path(results)
    if not path.is_file():
        return
    with contextlib.suppress(sqlite3.Error, OSError), _connect(path) as connection:
        if _usable(connection):
            _reindex(connection, runs, {folder.relative_to(runs).as_posix(): folder.stat().st_mtime_ns}, ())


def _read(results: Path, reindex: bool, *queries: str) -> list[pd.DataFrame] | None:
    """``queries`` answered by the up-to-date index (rebuilt with ``reindex``); None when the index cannot be
    written here (a read-only results folder)."""
    import pandas as pd

    try:
        path = rebuild(results) if reindex else refresh(results)
    except (sqlite3.OperationalError, PermissionError):
        return None
    with _connect(path) as connection:
        return [pd.read_sql_query(query, connection, coerce_float=True) for query in queries]


def _typed(frame: pd.DataFrame, floats: Iterable[str]) -> pd.DataFrame:
    """The flags as bool and ``floats`` as float (a NULL, e.g. no interval, becomes NaN), as records give them."""
    for column in ("synthetic", "higher_is_better"):
        frame[column] = frame[column].astype(bool)
    for column in floats:
        frame[column] = frame[column].astype(float)
    return frame


def indexed_frame(results: Path, *, reindex: bool = False) -> pd.DataFrame | None:
    """Every record's leaderboard row (as :func:`leaderboard.records_frame`), read from the fresh index.

    None when the index cannot be written here (a read-only results folder): read the records instead.
    """
    read = _read(results, reindex, f"SELECT {', '.join(FRAME_COLUMNS)} FROM rows ORDER BY path")
    return None if read is None else _typed(read[0], ("ci_low", "ci_high")).reindex(columns=FRAME_COLUMNS)


def indexed_cells(results: Path, *, reindex: bool = False) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Every cell's summary (as :func:`.aggregate.cell_summaries` of every record, in the same order) and the
    problems found while indexing (``task, method, profile, protocol, message``), from the fresh index.

    None when the index cannot be written here (a read-only results folder): read the records instead.
    """
    read = _read(
        results,
        reindex,
        f"SELECT {', '.join(AGGREGATE_COLUMNS)} FROM cells ORDER BY first_path",
        f"SELECT {', '.join(_PROBLEM_KEYS)}, message FROM problems ORDER BY folder",
    )
    if read is None:
        return None
    cells, problems = _typed(read[0], ("mean", "std", "ci_low", "ci_high")), read[1]
    cells["seeds"] = [[int(seed) for seed in text.split(",")] for text in cells["seeds"]]
    return cells, problems
