"""``data check`` for LUNA16 in the SimCroP layout (``images/``, ``masks_processed/``, split JSONs)."""

from __future__ import annotations

import json
from pathlib import Path

from .check import CheckReport, check_image_label, extra_files, require_root
from .luna16 import SEG_SPLIT_FILES

LUNG_LABELS = (0, 1, 2, 3)
SPLIT_KEYS = ("training", "validation", "testing")


def check_luna16_simcrop(root: Path) -> CheckReport:
    require_root(root)
    report = CheckReport("luna16", "simcrop", root)
    cases: dict[Path, Path] = {}
    for name in SEG_SPLIT_FILES.values():
        path = root / name
        if not path.is_file():
            report.add(path, "split file is missing")
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            report.add(path, f"not valid JSON ({exc})")
            continue
        for key in SPLIT_KEYS:
            entries = doc.get(key) if isinstance(doc, dict) else None
            if not isinstance(entries, list):
                report.add(path, f"missing list '{key}'")
                continue
            report.counts[f"{name}:{key}"] = len(entries)
            for i, entry in enumerate(entries):
                if not (isinstance(entry, dict) and isinstance(entry.get("image"), str)
                        and isinstance(entry.get("label"), str)):
                    report.add(path, f"entry {i} of '{key}' needs string fields 'image' and 'label'")
                    continue
                cases[(root / entry["image"]).resolve()] = (root / entry["label"]).resolve()
    for image, label in sorted(cases.items()):
        check_image_label(image, label, report, allowed_labels=LUNG_LABELS)
    extra_files(root / "images", set(cases), report)
    extra_files(root / "masks_processed", set(cases.values()), report)
    report.counts["cases"] = len(cases)
    return report
