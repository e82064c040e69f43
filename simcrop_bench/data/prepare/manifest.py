"""Resumable-run bookkeeping shared by the ``data prepare`` converters.

``prepare_manifest.json`` in the output root records the conversion settings and, per case, a
stamp of its source; a rerun with the same settings skips cases whose source is unchanged and
whose output exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from simcrop_bench.errors import DataError
from simcrop_bench.util.atomic import atomic_path, write_json

PREPARE_MANIFEST = "prepare_manifest.json"
PREPARE_VERSION = 1  # bump when the outputs for the same sources and settings change
MARKER = "SYNTHETIC.md"


def source_stamp(path: Path) -> dict:
    """Cheap change detector for large sources: size and modification time (hashing 50k volumes is too slow)."""
    try:
        st = Path(path).stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def load_prepare_manifest(dst_root: Path, settings: dict) -> dict:
    """The previous run's manifest if it was written with the same version and settings, else a fresh one."""
    path = Path(dst_root) / PREPARE_MANIFEST
    fresh = {"version": PREPARE_VERSION, "settings": settings, "cases": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return fresh
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); delete it to convert everything again".splitlines()[0]) from None
    same = manifest.get("version") == PREPARE_VERSION and manifest.get("settings") == json.loads(json.dumps(settings))
    return manifest if same and isinstance(manifest.get("cases"), dict) else fresh


def save_prepare_manifest(dst_root: Path, manifest: dict) -> None:
    write_json(Path(dst_root) / PREPARE_MANIFEST, {**manifest, "cases": dict(sorted(manifest["cases"].items()))})


def copy_marker(src_root: Path, dst_root: Path, converter: str) -> bool:
    """Carry ``SYNTHETIC.md`` over (a converted twin is still synthetic); True when the source is synthetic."""
    marker = Path(src_root) / MARKER
    if not marker.is_file():
        return False
    if Path(src_root).resolve() != Path(dst_root).resolve():
        with atomic_path(Path(dst_root) / MARKER) as tmp:
            shutil.copyfile(marker, tmp)
            with tmp.open("a", encoding="utf-8") as handle:
                handle.write(f"\nConverted to the SimCroP layout by `{converter}`.\n")
    return True


def up_to_date(manifest: dict, key: str, stamp: dict, output: Path) -> bool:
    """True when ``key`` was converted from a source with this ``stamp`` and its output still exists."""
    previous = manifest["cases"].get(key)
    return bool(previous) and previous.get("source") == stamp and Path(output).is_file()
