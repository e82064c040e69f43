"""RadChestCT readers: ``.npz`` volumes, ``abn*loc`` label CSVs and the mapping to SimCroP's 16 labels.

Volumes (datasets.md §3.3): ``numpy.savez_compressed`` archives with key ``ct`` (int16 HU in [−1000, 1000]),
axis order ``[slices, rows, cols]``. The real axis directions are unverified, so :func:`npz_to_ras` takes the
permutation and flips as arguments. Its defaults encode the convention of our synthetic twin: slice 0 is the
most superior, row 0 the most anterior, column 0 the patient's right (radiological display order).

Labels (§3.4): first column ``NoteAcc_DEID``, then ``<abnormality>*<location>`` 0/1 columns, parsed generically
(split on the first ``*``). :func:`map_to_16` ORs tokens over locations per the table of §3.5 (``token``), or
additionally copies column 3 from column 11 as SimCroP's published split files do (``simcrop_files``, hazard H5).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from simcrop_bench.data.labels import RADCHESTCT_LABELS
from simcrop_bench.errors import DataError

ID_COLUMN = "NoteAcc_DEID"
NPZ_KEY = "ct"
MAPPINGS = ("token", "simcrop_files")
# datasets.md §3.5 "token" mapping, in the label order of protocol.md §2.2 (header spelling "Hietal Hernia").
TOKEN_MAP: dict[str, tuple[str, ...]] = {
    "Medical material": (
        "catheter_or_port",
        "chest_tube",
        "clip",
        "gi_tube",
        "hardware",
        "pacemaker_or_defib",
        "stent",
        "tracheal_tube",
    ),
    "Calcification": ("calcification",),
    "Cardiomegaly": ("cardiomegaly",),
    "Pericardial effusion": ("pericardial_effusion",),
    "Hietal Hernia": ("hernia",),
    "Lymphadenopathy": ("lymphadenopathy",),
    "Emphysema": ("emphysema",),
    "Atelectasis": ("atelectasis",),
    "Lung nodule": ("nodule", "nodulegr1cm"),
    "Lung opacity": ("opacity",),
    "Pulmonary fibrotic sequela": ("fibrosis",),
    "Pleural effusion": ("pleural_effusion",),
    "Peribronchial thickening": ("bronchial_wall_thickening",),
    "Consolidation": ("consolidation",),
    "Bronchiectasis": ("bronchiectasis",),
    "Interlobular septal thickening": ("septal_thickening",),
}
assert tuple(TOKEN_MAP) == RADCHESTCT_LABELS
PERICARDIAL, PLEURAL = 3, 11  # column indices of the duplicated pair in SimCroP's files


def read_radchestct_npz(path: Path) -> np.ndarray:
    """The ``ct`` array of one ``.npz`` volume; a DataError names the file if it is unreadable or lacks ``ct``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if NPZ_KEY not in archive.files:
                raise DataError(
                    f"{path}: no '{NPZ_KEY}' array in the .npz (keys: {', '.join(archive.files) or 'none'})"
                )
            ct = archive[NPZ_KEY]
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: RadChestCT volume not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz volume ({type(exc).__name__}: {exc})") from None
    if ct.ndim != 3:
        raise DataError(f"{path}: '{NPZ_KEY}' has shape {ct.shape}, expected 3 axes [slices, rows, cols]")
    return ct


def npz_to_ras(ct: np.ndarray, *, transpose=(2, 1, 0), flip=(True, True, True)) -> np.ndarray:
    """``[slices, rows, cols]`` -> RAS (x, y, z): permute the axes, then reverse the flagged output axes."""
    out = np.transpose(ct, transpose)
    return np.ascontiguousarray(out[tuple(slice(None, None, -1) if f else slice(None) for f in flip)])


def abn_loc_labels(csv_path: Path) -> pd.DataFrame:
    """Label CSV as 0/1 ints indexed by ``NoteAcc_DEID`` with (abnormality, location) MultiIndex columns."""
    csv_path = Path(csv_path)
    try:
        table = pd.read_csv(csv_path, dtype={ID_COLUMN: str})
    except FileNotFoundError:
        raise DataError(f"{csv_path}: label file not found") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{csv_path}: unreadable label CSV ({exc})") from None
    if ID_COLUMN not in table.columns:
        raise DataError(
            f"{csv_path}: missing column '{ID_COLUMN}' (found {', '.join(map(str, table.columns[:5]))}, ...)"
        )
    flags = table.drop(columns=[ID_COLUMN])
    bad = [c for c in flags.columns if "*" not in c]
    if bad:
        raise DataError(f"{csv_path}: columns without '<abnormality>*<location>' form: {', '.join(bad[:5])}")
    if not flags.isin([0, 1]).all().all():
        raise DataError(f"{csv_path}: label values other than 0/1")
    flags = flags.astype(np.int64)
    flags.columns = pd.MultiIndex.from_tuples(
        [tuple(c.split("*", 1)) for c in flags.columns], names=["abnormality", "location"]
    )
    flags.index = pd.Index(table[ID_COLUMN], name=ID_COLUMN)
    return flags


def map_to_16(tokens_df: pd.DataFrame, mapping: str = "token") -> pd.DataFrame:
    """16 SimCroP labels (columns in protocol order) from :func:`abn_loc_labels` output; absent tokens count as 0."""
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {MAPPINGS}, not {mapping!r}")
    tokens = tokens_df.columns.get_level_values("abnormality")
    out = pd.DataFrame(index=tokens_df.index)
    for label, wanted in TOKEN_MAP.items():
        hit = tokens.isin(wanted)
        out[label] = tokens_df.loc[:, hit].max(axis=1).astype(np.int64) if hit.any() else 0
    if mapping == "simcrop_files":
        out.iloc[:, PERICARDIAL] = out.iloc[:, PLEURAL].to_numpy()
    return out
