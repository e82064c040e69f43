"""Reader for MSD ("decathlon") style split JSON files (``protocol.md`` §11.3)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from simcrop_bench.errors import DataError

NIFTI_SUFFIX = ".nii.gz"


def case_id(path: str) -> str:
    """Case id of a listed volume: its file name without ``.nii.gz`` (stripped by suffix: ids may hold dots)."""
    name = Path(path).name
    return name[: -len(NIFTI_SUFFIX)] if name.endswith(NIFTI_SUFFIX) else name


@dataclass
class SegSplits:
    """Training, selection and test cases of a segmentation task under one protocol."""

    training: list[dict[str, str]]
    validation: list[dict[str, str]]
    testing: list[dict[str, str]]
    selection_on_test: bool
    notes: list[str]

    def sizes(self) -> dict[str, int]:
        return {"training": len(self.training), "validation": len(self.validation), "testing": len(self.testing)}


def read_split_json(root: Path, name: str, keys: tuple[str, ...]) -> dict[str, list[dict[str, str]]]:
    """Read ``root/name`` and return ``{key: [{"image": abs path, "label": abs path}, ...]}``.

    Every listed file must exist; a missing key, a malformed entry or a missing file is a
    :class:`DataError` naming the file.
    """
    if not root.is_dir():
        raise DataError(f"{root}: data root does not exist or is not a folder")
    path = root / name
    if not path.is_file():
        raise DataError(f"{path}: split file not found (expected in the data root)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object at the top level")
    out: dict[str, list[dict[str, str]]] = {}
    for key in keys:
        entries = doc.get(key)
        if not isinstance(entries, list):
            raise DataError(f"{path}: missing list '{key}'")
        items = []
        for i, entry in enumerate(entries):
            if not (
                isinstance(entry, dict) and isinstance(entry.get("image"), str) and isinstance(entry.get("label"), str)
            ):
                raise DataError(f"{path}: entry {i} of '{key}' needs string fields 'image' and 'label'")
            item = {"image": str(root / entry["image"]), "label": str(root / entry["label"])}
            for field in ("image", "label"):
                if not Path(item[field]).is_file():
                    raise DataError(f"{item[field]}: listed in {path.name} '{key}' but not found")
            items.append(item)
        out[key] = items
    return out
