"""The five datasets: which layouts exist, how their twins are written and checked.

Entries name functions as ``"module:function"`` strings so that reading this table
(the CLI does, for ``data info``) imports nothing heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simcrop_bench.errors import DataError

TWIN_SEED = 20251128


@dataclass(frozen=True)
class Layout:
    description: str
    writer: str | None = None  # (root, *, cases, seed) -> manifest; None: no synthetic twin yet
    checker: str | None = None  # (root) -> CheckReport
    complete: str | None = None  # (root) -> bool, for reusing a generated twin
    prepare: str | None = None  # (src, dst) -> summary: convert this layout into the simcrop one
    writer_kwargs: dict[str, Any] = field(default_factory=dict)  # fixed arguments of the writer
    cases_arg: str = "n_cases"  # the writer's argument for the number of cases


@dataclass(frozen=True)
class Dataset:
    name: str
    display: str
    tasks: tuple[str, ...]
    layouts: dict[str, Layout] = field(default_factory=dict)


def resolve(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


_LUNA = "simcrop_bench.data.synthetic.luna16"
_BTCV = "simcrop_bench.data.synthetic.btcv"
_CC = "simcrop_bench.data.synthetic.ccccii"
_CT = "simcrop_bench.data.synthetic.ctrate"
_RAD = "simcrop_bench.data.synthetic.radchestct"
_MANIFEST_COMPLETE = "simcrop_bench.data.datasets:manifest_complete"

DATASETS: dict[str, Dataset] = {
    "ctrate": Dataset(
        "ctrate",
        "CT-RATE",
        ("ctrate_cls",),
        {
            "official": Layout(
                "train/, valid/ (v1), train_fixed/, valid_fixed/ (v2), metadata/, radiology_text_reports/, "
                "multi_abnormality_labels/",
                writer=f"{_CT}:write_ctrate_twin",
                writer_kwargs={"layout": "official"},
                complete=_MANIFEST_COMPLETE,
                checker="simcrop_bench.data.check.ctrate:check_ctrate_official",
                prepare="simcrop_bench.data.prepare.ctrate:convert_ctrate_official_to_simcrop",
            ),
            "simcrop": Layout(
                "{train,valid}_preprocessed/<split>_<pid>/<split>_<pid><scan>/<VolumeName> + 18-label split CSVs "
                "(train_list{,_10,_1}.csv, val_list.csv, test_list.csv)",
                writer=f"{_CT}:write_ctrate_twin",
                writer_kwargs={"layout": "simcrop"},
                complete="simcrop_bench.data.datasets:classification_twin_complete",
                checker="simcrop_bench.data.check.ctrate:check_ctrate_simcrop",
            ),
        },
    ),
    "radchestct": Dataset(
        "radchestct",
        "RadChestCT",
        ("radchestct_cls",),
        {
            "official": Layout(
                "<NoteAcc_DEID>.npz (key ct) + img*_Abnormality_and_Location_Labels.csv",
                writer=f"{_RAD}:write_radchestct_twin",
                writer_kwargs={"layout": "official"},
                cases_arg="n_train",
                checker="simcrop_bench.data.check.official_other:check_radchestct_official",
                prepare="simcrop_bench.data.prepare.radchestct:convert_radchestct_npz_to_simcrop",
                complete=_MANIFEST_COMPLETE,
            ),
            "simcrop": Layout(
                "images/<NoteAcc_DEID>.nii.gz + 16-label split CSVs",
                writer=f"{_RAD}:write_radchestct_twin",
                writer_kwargs={"layout": "simcrop"},
                cases_arg="n_train",
                checker="simcrop_bench.data.check.classification:check_radchestct_simcrop",
                complete=_MANIFEST_COMPLETE,
            ),
        },
    ),
    "ccccii": Dataset(
        "ccccii",
        "CC-CCII",
        ("ccccii_cls",),
        {
            "official": Layout(
                "{NCP,CP,Normal}/<patient>/<scan>/<slice>.png + unzip_filenames.csv",
                writer=f"{_CC}:write_ccccii_twin",
                writer_kwargs={"layout": "official"},
                cases_arg="n_patients",
                checker="simcrop_bench.data.check.official_other:check_ccccii_official",
                prepare="simcrop_bench.data.prepare.ccccii:convert_ccccii_slices_to_simcrop",
                complete=_MANIFEST_COMPLETE,
            ),
            "simcrop": Layout(
                "images_resized/<scan_id>.nii.gz stored (D, H, W) + img_list,label split CSVs",
                writer=f"{_CC}:write_ccccii_twin",
                writer_kwargs={"layout": "simcrop"},
                cases_arg="n_patients",
                checker="simcrop_bench.data.check.classification:check_ccccii_simcrop",
                complete=_MANIFEST_COMPLETE,
            ),
        },
    ),
    "luna16": Dataset(
        "luna16",
        "LUNA16",
        ("luna16_cls", "lung_seg"),
        {
            "official": Layout(
                "subsetK/<uid>.mhd+.raw, seg-lungs-LUNA16/<uid>.mhd+.zraw, CSVFILES/annotations.csv",
                writer=f"{_LUNA}:write_luna16_official",
                checker="simcrop_bench.data.check.luna16:check_luna16_official",
                complete=f"{_LUNA}:luna16_official_is_complete",
                prepare="simcrop_bench.data.prepare.luna16:convert_official_to_simcrop",
            ),
            "simcrop": Layout(
                "images/<uid>.nii.gz, masks_processed/<uid>.nii.gz, dataset_{10,100}.json + image_id,label split CSVs",
                writer=f"{_LUNA}:write_luna16_twin",
                checker="simcrop_bench.data.check.luna16:check_luna16_simcrop",
                complete=f"{_LUNA}:luna16_twin_is_complete",
            ),
        },
    ),
    "btcv": Dataset(
        "btcv",
        "BTCV",
        ("btcv_seg",),
        {
            "official": Layout(
                "RawData/Training|Testing/img|label/*.nii.gz",
                writer=f"{_BTCV}:write_btcv_twin",
                writer_kwargs={"layout": "official"},
                cases_arg="n_train",
                complete=f"{_BTCV}:btcv_twin_is_complete",
                checker="simcrop_bench.data.check.official_other:check_btcv_official",
                prepare="simcrop_bench.data.prepare.btcv:convert_btcv_official_to_simcrop",
            ),
            "simcrop": Layout(
                "imagesTr/, labelsTr/, imagesTs/, dataset.json",
                writer=f"{_BTCV}:write_btcv_twin",
                writer_kwargs={"layout": "simcrop"},
                cases_arg="n_train",
                checker="simcrop_bench.data.check.btcv:check_btcv_simcrop",
                complete=f"{_BTCV}:btcv_twin_is_complete",
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
    return resolve(entry.writer)(root, **kwargs)


def manifest_complete(root) -> bool:
    """A twin is complete when its manifest (written last) is of the current generator version and every
    file it lists exists."""
    import json
    from pathlib import Path

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
    from pathlib import Path

    return manifest_complete(root) and all((Path(root) / name).is_file() for name in CLASSIFICATION_SPLIT_CSVS)
