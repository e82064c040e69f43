"""Where the findings a CT-RATE twin report names are: the ground truth of the grounding score (issue #15).

The twin writer already stores, per volume, ``synthetic_meta/<stem>.json`` (the findings text, every sentence with
its SimCroP sentence ids and the finding-mask values of the findings it names) and ``<stem>_findings.nii.gz`` (the
finding mask, RAS-stored like the SimCroP-layout volume). This module only reads them: the generated volumes,
reports and labels are untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from simcrop_bench.data.ctrate import simcrop_volume_path
from simcrop_bench.errors import DataError

META_DIR = "synthetic_meta"


@dataclass(frozen=True)
class RegionCase:
    """One twin volume: its image, finding mask, findings text and ``{sentence id: mask values}``.

    Sentence ids are SimCroP's §3.3 ids of the findings text (from 1). A sentence id maps to the union of the
    mask values of every sentence carrying it that names a finding (a merged id: all of them); ids whose
    sentences name no finding are absent.
    """

    volume: str
    image: Path
    mask: Path
    findings: str
    sentences: dict[int, tuple[int, ...]]


def read_region_case(root: Path, volume: str) -> RegionCase:
    """The :class:`RegionCase` of ``volume`` (e.g. ``valid_95001_a_1.nii.gz``) of the twin at ``root``."""
    stem = volume[: -len(".nii.gz")]
    path = Path(root) / META_DIR / f"{stem}.json"
    if not path.is_file():
        raise DataError(f"{path}: no synthetic metadata (the grounding score needs a CT-RATE synthetic twin)")
    meta = json.loads(path.read_text())
    values: dict[int, set[int]] = {}
    for sentence in meta["derived"]["sentences"]:
        named = sentence.get("region", {}).get("values") or []
        if sentence["section"] == "impression" or not named:
            continue
        for sid in sentence["simcrop_ids"]:
            values.setdefault(int(sid), set()).update(int(v) for v in named)
    return RegionCase(
        volume=volume,
        image=simcrop_volume_path(Path(root), volume),
        mask=Path(root) / META_DIR / meta["finding_mask"]["file"],
        findings=meta["report"]["findings"] or "",
        sentences={sid: tuple(sorted(v)) for sid, v in sorted(values.items())},
    )


def region_cases(root: Path, split: str = "valid", limit: int | None = None) -> list[RegionCase]:
    """The twin's ``split`` volumes (``valid`` = the test patients) in manifest order, the first ``limit``.

    Volumes whose findings sentences name no finding are skipped: they carry no grounding question.
    """
    manifest = Path(root) / META_DIR / "manifest.json"
    if not manifest.is_file():
        raise DataError(f"{manifest}: not found (the grounding score needs a CT-RATE synthetic twin)")
    names = [v["volume"] for v in json.loads(manifest.read_text())["volumes"] if v["split"] == split]
    cases = []
    for name in names:
        case = read_region_case(root, name)
        if case.sentences:
            cases.append(case)
        if limit is not None and len(cases) >= limit:
            break
    return cases


def has_regions(root: Path) -> bool:
    """Whether ``root`` is a CT-RATE twin that records where its findings are."""
    return (Path(root) / META_DIR / "manifest.json").is_file()
