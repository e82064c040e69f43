"""``data check`` for CT-RATE: the official download (datasets.md §2.3–§2.5) and SimCroP's ``*_preprocessed`` store
(§2.8).

Official: the three CSV families per split with their exact columns, then every ``VolumeName`` of the label CSV
must have a volume in each volume tree present (v1 ``train/`` and/or v2 ``train_fixed/``), a non-empty report and
a metadata row. Report/label consistency is a note, not a problem: the labels are silver labels from a text
classifier, so our rule-based labeller disagrees on real data too; the summary counts the disagreements.
SimCroP: every volume under ``*_preprocessed`` sits where the reference string concatenation looks for it (no
underscore before the scan letter) and holds HU; split CSVs in the root (``train_list.csv`` …, protocol.md §11.2)
follow the grammar and list only volumes that exist.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from simcrop_bench.data.check.root import CheckReport, read_volume, require_root
from simcrop_bench.data.ctrate import (
    LABEL_COLUMNS,
    LABELS_CSV,
    METADATA_COLUMNS,
    METADATA_CSV,
    REPORT_COLUMNS,
    REPORTS_CSV,
    VERSIONS,
    official_volume_path,
    parse_volume_name,
    simcrop_volume_path,
)
from simcrop_bench.data.formats.stored import with_format
from simcrop_bench.data.labeller import label_report
from simcrop_bench.data.labels import CTRATE_LABELS
from simcrop_bench.errors import DataError

V1_NUMERIC_COLUMNS = ("RescaleIntercept", "RescaleSlope", "XYSpacing", "ZSpacing")  # v1 HU and spacing live here
NOT_GIVEN = "Not given."
SPLITS = ("train", "valid")


def read_table(path: Path, columns: tuple[str, ...], report: CheckReport) -> dict[str, dict[str, str]] | None:
    """VolumeName → row; a missing file or column is reported with the file, and None returned if unusable."""
    if not path.is_file():
        report.add(path, "CSV file is missing")
        return None
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except UnicodeDecodeError:
        report.add(path, _not_utf8(path.read_bytes()))
        return None
    except (OSError, csv.Error) as exc:
        report.add(path, f"unreadable CSV ({exc})")
        return None
    missing = [c for c in columns if c not in header]
    if missing:
        report.add(path, f"missing column(s) {', '.join(missing)}")
    elif tuple(header) != columns:
        report.add(
            path,
            f"columns differ from the expected {len(columns)} in order (extra or reordered: "
            f"{', '.join(c for i, c in enumerate(header) if i >= len(columns) or columns[i] != c)})",
        )
    if "VolumeName" not in header:
        return None
    table: dict[str, dict[str, str]] = {}
    for line, row in enumerate(rows, start=2):
        name = row.get("VolumeName") or ""
        if name in table:
            report.add(path, f"line {line}: duplicate VolumeName {name}")
        table[name] = row
    report.counts[path.name] = len(table)
    return table


def _not_utf8(data: bytes) -> str:
    """Where a file stops being UTF-8 (the decoder's own offset is within a buffered chunk, not the file)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); re-save it as UTF-8"
    return "not UTF-8 text"


def _numbers(text: str | None) -> list[float] | None:
    try:
        values = [float(v) for v in (text or "").strip().strip("[]").split(",") if v.strip()]
    except ValueError:
        return None
    return values or None


def _check_labels_and_report(
    name: str,
    labels: dict[str, str],
    report_row: dict[str, str] | None,
    labels_csv: Path,
    reports_csv: Path,
    report: CheckReport,
) -> None:
    try:
        values = [int(labels[c]) for c in CTRATE_LABELS]
    except (KeyError, TypeError, ValueError):
        report.add(labels_csv, f"{name}: label values are not all integers")
        return
    if set(values) - {0, 1}:
        report.add(labels_csv, f"{name}: label values other than 0/1")
    if report_row is None:
        report.add(reports_csv, f"{name}: no report row")
        return
    if not report_text_ok(name, report_row, reports_csv, report):
        return
    findings = (report_row.get("Findings_EN") or "").strip()
    impression = (report_row.get("Impressions_EN") or "").strip()
    derived = label_report(findings, "" if impression == NOT_GIVEN else impression)
    differ = [label for label, a, b in zip(CTRATE_LABELS, derived, values) if a != b]
    if differ:
        report.counts["label_disagreements"] += 1
        report.notes.append(f"{reports_csv}: {name}: labeller disagrees with the silver labels on {', '.join(differ)}")


def report_text_ok(name: str, row: dict[str, str], reports_csv: Path, report: CheckReport) -> bool:
    """A report a text encoder can read: non-blank findings (what SimCroP and CLIP pretrain on)."""
    findings = (row.get("Findings_EN") or "").strip()
    if not findings or findings == NOT_GIVEN:
        report.add(reports_csv, f"{name}: empty report (Findings_EN is blank)")
        return False
    return True


def _check_simcrop_reports(root: Path, stored: set[str], report: CheckReport) -> None:
    """The reports pretraining reads from the SimCroP store: UTF-8, and one non-blank report per stored volume
    that has a row (volumes without one are skipped by the reader: the release may cover more)."""
    for split in SPLITS:
        path = root / REPORTS_CSV[split]
        if not path.is_file():
            continue
        rows = read_table(path, REPORT_COLUMNS, report)
        for name in sorted(stored & set(rows or {})):
            report_text_ok(name, rows[name], path, report)
        report.counts[f"reports ({split})"] = len(rows or {})


def _check_v1_volume(
    path: Path, name: str, meta: dict[str, str] | None, metadata_csv: Path, report: CheckReport
) -> None:
    volume = read_volume(path, report, kind="v1 volume")
    if volume is not None:
        report.counts["v1 volumes"] += 1
    if meta is None:
        return  # the missing row is reported once by the caller
    numbers = {c: _numbers(meta.get(c)) for c in V1_NUMERIC_COLUMNS}
    bad = [c for c, v in numbers.items() if v is None]
    if bad:
        report.add(metadata_csv, f"{name}: v1 volume needs numeric {', '.join(bad)}")
        return
    if volume is not None and volume.array.size:
        slope, intercept = numbers["RescaleSlope"][0], numbers["RescaleIntercept"][0]
        low = slope * float(volume.array.min()) + intercept
        high = slope * float(volume.array.max()) + intercept
        if low < -4000 or high < 0:  # rescale applied twice, or the wrong intercept
            report.add(path, f"HU after the metadata rescale span [{low:g}, {high:g}]: rescale looks wrong")


def _check_v2_volume(path: Path, report: CheckReport) -> None:
    volume = read_volume(path, report, kind="v2 volume")
    if volume is None:
        return
    report.counts["v2 volumes"] += 1
    _check_hu(path, volume.array, report)


def _check_hu(path: Path, array: np.ndarray, report: CheckReport) -> None:
    if not array.size:
        return
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high <= 255:
        report.add(path, f"intensities lie in [{low:g}, {high:g}]: looks windowed (8-bit), not HU")
    elif low >= -1.5 and high <= 1.5:
        report.add(path, f"intensities lie in [{low:g}, {high:g}]: looks normalised (HU ÷ 1000?), not HU")
    elif low > -500:
        report.add(path, f"minimum {low:g} is above −500: no air in a chest CT, probably not HU")


def check_ctrate_official(root: Path) -> CheckReport:
    """CSV families, one volume per label row in each volume tree present, reports, metadata and HU."""
    root = Path(root)
    require_root(root)
    report = CheckReport("ctrate", "official", root)
    for split in SPLITS:
        labels_csv, reports_csv, metadata_csv = (
            root / LABELS_CSV[split],
            root / REPORTS_CSV[split],
            root / METADATA_CSV[split],
        )
        labels = read_table(labels_csv, LABEL_COLUMNS, report)
        reports = read_table(reports_csv, REPORT_COLUMNS, report)
        metadata = read_table(metadata_csv, METADATA_COLUMNS, report)
        trees = [v for v in VERSIONS if (root / f"{split}{VERSIONS[v]}").is_dir()]
        if not trees:
            report.add(root / f"{split}_fixed", f"no volume tree ({split}_fixed/ for v2 or {split}/ for v1)")
        names = labels or {}
        for name, row in sorted(names.items()):
            try:
                if parse_volume_name(name)[0] != split:
                    report.add(labels_csv, f"{name}: volume of another split listed here")
                    continue
            except DataError:
                report.add(labels_csv, f"{name!r} is not a CT-RATE volume name")
                continue
            if reports is not None:  # a missing reports CSV is already reported once
                _check_labels_and_report(name, row, reports.get(name), labels_csv, reports_csv, report)
            meta = None if metadata is None else metadata.get(name)
            if metadata is not None and meta is None:
                report.add(metadata_csv, f"{name}: no metadata row")
            for version in trees:
                path = official_volume_path(root, name, version)
                if not path.is_file():
                    report.add(path, f"{version} volume is missing for a label row")
                elif version == "v1":
                    _check_v1_volume(path, name, meta, metadata_csv, report)
                else:
                    _check_v2_volume(path, report)
        for version in trees:
            for path in sorted((root / f"{split}{VERSIONS[version]}").rglob("*")):
                if path.is_file() and not _at_listed_path(root, path, names, version):
                    report.add(path, "volume without a label row (or in the wrong folder)")
        report.counts["volumes listed"] += len(names)
    return report


def _at_listed_path(root: Path, path: Path, names: dict, version: str) -> bool:
    try:
        return path.name in names and path == official_volume_path(root, path.name, version)
    except DataError:  # an unparsable name in the label CSV, already reported there
        return False


def check_ctrate_simcrop(root: Path) -> CheckReport:
    """Every file under ``*_preprocessed/`` is a HU volume at the path the reference reader builds from its name."""
    root = Path(root)
    require_root(root)
    report = CheckReport("ctrate", "simcrop", root)
    stores = [root / f"{split}_preprocessed" for split in SPLITS if (root / f"{split}_preprocessed").is_dir()]
    if not stores:
        report.add(root / "train_preprocessed", "no train_preprocessed/ or valid_preprocessed/ folder")
    for store in stores:
        for path in sorted(p for p in store.rglob("*") if p.is_file()):
            if not path.name.endswith((".nii.gz", ".nii")):
                report.add(path, "not a NIfTI volume (SimCroP reads NIfTI; CT-CLIP's .npz store is different)")
                continue
            try:
                split, patient, scan, _ = parse_volume_name(with_format(path, "nii.gz").name)
            except DataError:
                report.add(path, "file name is not <split>_<patient>_<scan>_<recon>.nii.gz")
                continue
            expected = with_format(simcrop_volume_path(root, with_format(path, "nii.gz").name), "nii.gz")
            if with_format(path, "nii.gz") != expected:
                hint = (
                    " (underscore before the scan letter: official naming)"
                    if path.parent.name == f"{split}_{patient}_{scan}"
                    else ""
                )
                report.add(
                    path,
                    f"folders inconsistent with the file name{hint}; the reader looks for {expected.relative_to(root)}",
                )
            volume = read_volume(path, report, kind="volume")
            if volume is None:
                continue
            report.counts["volumes"] += 1
            _check_hu(path, volume.array, report)
    from simcrop_bench.data.check.classification import check_listed_volumes_exist, check_split_csvs

    # misplaced ones are reported above; prepared .nii files count under their reference .nii.gz name
    stored = {with_format(p, "nii.gz").name for store in stores for p in store.rglob("*.nii*")}
    _check_simcrop_reports(root, stored, report)
    check_listed_volumes_exist(
        root,
        check_split_csvs(root, "ctrate_cls", report),
        simcrop_volume_path,
        report,
        reported=lambda path: path.name in stored,
    )
    return report
