"""The five datasets: which layouts exist, how their twins are written and checked.

Entries are getters: zero-argument functions that import their module and return the function
(``layout.checker()(root)``), so that reading this table imports nothing heavy, while readers and
tools follow a real import to each writer, checker and converter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simcrop_bench.errors import DataError

TWIN_SEED = 20251128
Getter = Callable[[], Callable[..., Any]]


@dataclass(frozen=True)
class Layout:
    description: str
    # Getters of the functions (see the module docstring):
    writer: Getter | None = None  # (root, *, cases, seed) -> manifest; None: no synthetic twin yet
    checker: Getter | None = None  # (root) -> CheckReport
    complete: Getter | None = None  # (root) -> bool, for reusing a generated twin
    prepare: Getter | None = None  # (src, dst) -> summary: convert this layout into the simcrop one
    writer_kwargs: dict[str, Any] = field(default_factory=dict)  # fixed arguments of the writer
    cases_arg: str = "n_cases"  # the writer's argument for the number of cases


@dataclass(frozen=True)
class Dataset:
    name: str
    display: str
    layouts: dict[str, Layout] = field(default_factory=dict)


def manifest_complete(root) -> bool:
    """A twin is complete when its manifest (written last) is of the current generator version and every
    file it lists exists."""
    import json

    from simcrop_bench.data.synthetic.phantom import GENERATOR_VERSION

    manifest = Path(root) / "synthetic_meta" / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        doc = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return False
    files = doc.get("files", {})
    return doc.get("generator_version") == GENERATOR_VERSION and all((Path(root) / rel).is_file() for rel in files)


CLASSIFICATION_SPLIT_CSVS = ("train_list.csv", "train_list_10.csv", "val_list.csv", "test_list.csv")


def classification_twin_complete(root) -> bool:
    """:func:`manifest_complete` plus the classification split CSVs a linear-probe task reads from the root."""
    return manifest_complete(root) and all((Path(root) / name).is_file() for name in CLASSIFICATION_SPLIT_CSVS)


# ---------------------------------------------------------------------------- deferred entry points
# Each imports its module when asked, so that reading the table (``data info``, every run's data root)
# imports no writer, checker or converter (numpy, nibabel, PIL).


def _write_ctrate_twin() -> Callable[..., Any]:
    from simcrop_bench.data.synthetic.ctrate import write_ctrate_twin

    return write_ctrate_twin


def _write_radchestct_twin() -> Callable[..., Any]:
    from simcrop_bench.data.synthetic.radchestct import write_radchestct_twin

    return write_radchestct_twin


def _write_ccccii_twin() -> Callable[..., Any]:
    from simcrop_bench.data.synthetic.ccccii import write_ccccii_twin

    return write_ccccii_twin


def _write_luna16_official() -> Callable[..., Any]:
    from simcrop_bench.data.synthetic.luna16 import write_luna16_official

    return write_luna16_official


def _write_luna16_twin() -> Callable[..., Any]:
    from simcrop_bench.data.synthetic.luna16 import write_luna16_twin

    return write_luna16_twin


def _luna16_official_is_complete() -> Callable[..., Any]:
    from simcrop_bench.data.synthetic.luna16 import luna16_official_is_complete

    return luna16_official_is_complete


def _luna16_twin_is_complete() -> Callable[..., Any]:
    from simcrop_bench.data.synthetic.luna16 import luna16_twin_is_complete

    return luna16_twin_is_complete


def _write_btcv_twin() -> Callable[..., Any]:
    from simcrop_bench.data.synthetic.btcv import write_btcv_twin

    return write_btcv_twin


def _btcv_twin_is_complete() -> Callable[..., Any]:
    from simcrop_bench.data.synthetic.btcv import btcv_twin_is_complete

    return btcv_twin_is_complete


def _check_ctrate_official() -> Callable[..., Any]:
    from simcrop_bench.data.check.ctrate import check_ctrate_official

    return check_ctrate_official


def _check_ctrate_simcrop() -> Callable[..., Any]:
    from simcrop_bench.data.check.ctrate import check_ctrate_simcrop

    return check_ctrate_simcrop


def _check_radchestct_official() -> Callable[..., Any]:
    from simcrop_bench.data.check.official_other import check_radchestct_official

    return check_radchestct_official


def _check_ccccii_official() -> Callable[..., Any]:
    from simcrop_bench.data.check.official_other import check_ccccii_official

    return check_ccccii_official


def _check_btcv_official() -> Callable[..., Any]:
    from simcrop_bench.data.check.official_other import check_btcv_official

    return check_btcv_official


def _check_radchestct_simcrop() -> Callable[..., Any]:
    from simcrop_bench.data.check.classification import check_radchestct_simcrop

    return check_radchestct_simcrop


def _check_ccccii_simcrop() -> Callable[..., Any]:
    from simcrop_bench.data.check.classification import check_ccccii_simcrop

    return check_ccccii_simcrop


def _check_luna16_official() -> Callable[..., Any]:
    from simcrop_bench.data.check.luna16 import check_luna16_official

    return check_luna16_official


def _check_luna16_simcrop() -> Callable[..., Any]:
    from simcrop_bench.data.check.luna16 import check_luna16_simcrop

    return check_luna16_simcrop


def _check_btcv_simcrop() -> Callable[..., Any]:
    from simcrop_bench.data.check.btcv import check_btcv_simcrop

    return check_btcv_simcrop


def _convert_ctrate_official_to_simcrop() -> Callable[..., Any]:
    from simcrop_bench.data.prepare.ctrate import convert_ctrate_official_to_simcrop

    return convert_ctrate_official_to_simcrop


def _convert_radchestct_npz_to_simcrop() -> Callable[..., Any]:
    from simcrop_bench.data.prepare.radchestct import convert_radchestct_npz_to_simcrop

    return convert_radchestct_npz_to_simcrop


def _convert_ccccii_slices_to_simcrop() -> Callable[..., Any]:
    from simcrop_bench.data.prepare.ccccii import convert_ccccii_slices_to_simcrop

    return convert_ccccii_slices_to_simcrop


def _convert_luna16_official_to_simcrop() -> Callable[..., Any]:
    from simcrop_bench.data.prepare.luna16 import convert_official_to_simcrop

    return convert_official_to_simcrop


def _convert_btcv_official_to_simcrop() -> Callable[..., Any]:
    from simcrop_bench.data.prepare.btcv import convert_btcv_official_to_simcrop

    return convert_btcv_official_to_simcrop


DATASETS: dict[str, Dataset] = {
    "ctrate": Dataset(
        "ctrate",
        "CT-RATE",
        {
            "official": Layout(
                "train/, valid/ (v1), train_fixed/, valid_fixed/ (v2), metadata/, radiology_text_reports/, "
                "multi_abnormality_labels/",
                writer=_write_ctrate_twin,
                writer_kwargs={"layout": "official"},
                complete=lambda: manifest_complete,
                checker=_check_ctrate_official,
                prepare=_convert_ctrate_official_to_simcrop,
            ),
            "simcrop": Layout(
                "{train,valid}_preprocessed/<split>_<pid>/<split>_<pid><scan>/<VolumeName> + 18-label split CSVs "
                "(train_list{,_10,_1}.csv, val_list.csv, test_list.csv)",
                writer=_write_ctrate_twin,
                writer_kwargs={"layout": "simcrop"},
                complete=lambda: classification_twin_complete,
                checker=_check_ctrate_simcrop,
            ),
        },
    ),
    "radchestct": Dataset(
        "radchestct",
        "RadChestCT",
        {
            "official": Layout(
                "<NoteAcc_DEID>.npz (key ct) + img*_Abnormality_and_Location_Labels.csv",
                writer=_write_radchestct_twin,
                writer_kwargs={"layout": "official"},
                cases_arg="n_train",
                checker=_check_radchestct_official,
                prepare=_convert_radchestct_npz_to_simcrop,
                complete=lambda: manifest_complete,
            ),
            "simcrop": Layout(
                "images/<NoteAcc_DEID>.nii.gz + 16-label split CSVs",
                writer=_write_radchestct_twin,
                writer_kwargs={"layout": "simcrop"},
                cases_arg="n_train",
                checker=_check_radchestct_simcrop,
                complete=lambda: manifest_complete,
            ),
        },
    ),
    "ccccii": Dataset(
        "ccccii",
        "CC-CCII",
        {
            "official": Layout(
                "{NCP,CP,Normal}/<patient>/<scan>/<slice>.png + unzip_filenames.csv",
                writer=_write_ccccii_twin,
                writer_kwargs={"layout": "official"},
                cases_arg="n_patients",
                checker=_check_ccccii_official,
                prepare=_convert_ccccii_slices_to_simcrop,
                complete=lambda: manifest_complete,
            ),
            "simcrop": Layout(
                "images_resized/<scan_id>.nii.gz stored (D, H, W) + img_list,label split CSVs",
                writer=_write_ccccii_twin,
                writer_kwargs={"layout": "simcrop"},
                cases_arg="n_patients",
                checker=_check_ccccii_simcrop,
                complete=lambda: manifest_complete,
            ),
        },
    ),
    "luna16": Dataset(
        "luna16",
        "LUNA16",
        {
            "official": Layout(
                "subsetK/<uid>.mhd+.raw, seg-lungs-LUNA16/<uid>.mhd+.zraw, CSVFILES/annotations.csv",
                writer=_write_luna16_official,
                checker=_check_luna16_official,
                complete=_luna16_official_is_complete,
                prepare=_convert_luna16_official_to_simcrop,
            ),
            "simcrop": Layout(
                "images/<uid>.nii.gz, masks_processed/<uid>.nii.gz, dataset_{10,100}.json + image_id,label split CSVs",
                writer=_write_luna16_twin,
                checker=_check_luna16_simcrop,
                complete=_luna16_twin_is_complete,
            ),
        },
    ),
    "btcv": Dataset(
        "btcv",
        "BTCV",
        {
            "official": Layout(
                "RawData/Training|Testing/img|label/*.nii.gz",
                writer=_write_btcv_twin,
                writer_kwargs={"layout": "official"},
                cases_arg="n_train",
                complete=_btcv_twin_is_complete,
                checker=_check_btcv_official,
                prepare=_convert_btcv_official_to_simcrop,
            ),
            "simcrop": Layout(
                "imagesTr/, labelsTr/, imagesTs/, dataset.json",
                writer=_write_btcv_twin,
                writer_kwargs={"layout": "simcrop"},
                cases_arg="n_train",
                checker=_check_btcv_simcrop,
                complete=_btcv_twin_is_complete,
            ),
        },
    ),
}


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset '{name}'; known: {', '.join(DATASETS)}") from None


def get_layout(dataset: str, layout: str) -> Layout:
    info = get_dataset(dataset)
    try:
        return info.layouts[layout]
    except KeyError:
        raise DataError(f"dataset {dataset} has layouts {', '.join(info.layouts)}, not '{layout}'") from None


def synthesize(dataset: str, layout: str, root, *, cases: int | None = None, seed: int = TWIN_SEED) -> dict:
    """Write the synthetic twin of ``dataset`` in ``layout`` under ``root``."""
    entry = get_layout(dataset, layout)
    if entry.writer is None:
        raise DataError(f"no synthetic twin of {dataset} in the {layout} layout yet")
    kwargs: dict[str, Any] = {"seed": seed, **entry.writer_kwargs}
    if cases is not None:
        kwargs[entry.cases_arg] = cases
    return entry.writer()(root, **kwargs)
