"""Where each dataset lives: a real root given by the user, or a generated synthetic twin.

Resolution order for dataset ``NAME``: ``--data-root``; the environment variable
``SIMCROP_BENCH_DATA_<NAME>``; the ``data:`` table of the config file
(``./simcrop-bench.yaml`` or ``~/.config/simcrop-bench/config.yaml``); otherwise the
synthetic twin, generated deterministically on first use under the cache folder
(``SIMCROP_BENCH_CACHE``, default ``~/.cache/simcrop-bench``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from simcrop_bench.data.datasets import TWIN_SEED, get_dataset, get_layout, synthesize
from simcrop_bench.errors import DataError
from simcrop_bench.util.atomic import staged_dir
from simcrop_bench.util.locks import BUILD_S, file_lock

TASK_LAYOUT = "simcrop"  # tasks read the SimCroP layout; `data prepare` converts official trees into it

SYNTHETIC_MARKER = "SYNTHETIC.md"
CONFIG_FILES = (Path("simcrop-bench.yaml"), Path.home() / ".config" / "simcrop-bench" / "config.yaml")


@dataclass
class DataRoot:
    dataset: str
    path: Path
    synthetic: bool
    source: str  # cli | env | config-file | twin


def cache_dir() -> Path:
    return Path(os.environ.get("SIMCROP_BENCH_CACHE", Path.home() / ".cache" / "simcrop-bench")).expanduser()


def configured_root(dataset: str) -> tuple[Path, str] | None:
    env = os.environ.get(f"SIMCROP_BENCH_DATA_{dataset.upper()}")
    if env:
        return Path(env).expanduser(), f"env SIMCROP_BENCH_DATA_{dataset.upper()}"
    for file in CONFIG_FILES:
        if file.is_file():
            import yaml

            try:
                doc = yaml.safe_load(file.read_text()) or {}
            except yaml.YAMLError as exc:
                raise DataError(f"{file}: not valid YAML ({exc})".splitlines()[0]) from None
            value = (doc.get("data") or {}).get(dataset) if isinstance(doc, dict) else None
            if value:
                return Path(value).expanduser(), f"config file {file}"
    return None


def resolve_data_root(dataset: str, explicit: str | os.PathLike | None = None) -> DataRoot:
    if explicit is not None:
        chosen: tuple[Path, str] | None = (Path(explicit).expanduser(), "cli")
    else:
        chosen = configured_root(dataset)
    if chosen is not None:
        path, source = chosen
        if not path.is_dir():
            raise DataError(f"{path}: data root for {dataset} does not exist or is not a folder (from {source})")
        synthetic = (path / SYNTHETIC_MARKER).is_file()
        if synthetic:
            _require_twin_of(dataset, path, source)
        return DataRoot(dataset, path.resolve(), synthetic, source)
    return DataRoot(dataset, ensure_twin(dataset), True, "twin")


def twin_dataset(root: Path) -> str | None:
    """The dataset a synthetic twin was written for (its manifest says), or None when it does not say."""
    import json

    try:
        doc = json.loads((root / "synthetic_meta" / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc.get("dataset") if isinstance(doc, dict) else None


def _require_twin_of(dataset: str, path: Path, source: str) -> None:
    written_for = twin_dataset(path)
    info = get_dataset(dataset)
    if written_for is not None and written_for.lower() not in (info.name, info.display.lower()):
        raise DataError(
            f"{path}: holds a synthetic {written_for} twin, not {info.display} (data root for {dataset}, from {source})"
        )


def check_twin_target(out: Path, option: str = "--out") -> Path:
    """A folder a twin may be written to: absent, empty, or a twin already (it is replaced whole)."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise DataError(f"{option} {out}: exists and is not a folder")
        if any(out.iterdir()) and not (out / SYNTHETIC_MARKER).is_file():
            raise DataError(
                f"{option} {out}: a non-empty folder that is not a synthetic twin; refusing to replace it "
                "(choose a new or empty folder)"
            )
    return out


def ensure_twin(dataset: str, root: Path | None = None) -> Path:
    """Path of the dataset's synthetic twin in the layout tasks read, generated (atomically) when missing."""
    layout = get_layout(dataset, TASK_LAYOUT)
    if layout.writer is None or layout.complete is None:
        raise DataError(f"no synthetic twin exists for dataset '{dataset}' yet; pass --data-root")
    root = check_twin_target(root) if root is not None else cache_dir() / "twins" / f"{dataset}-seed{TWIN_SEED}"
    complete = layout.complete()
    if root.is_dir() and complete(root):
        return root
    # Processes that start together on an empty cache build the twin once: the others wait, then reuse it.
    with file_lock(root.with_name(f".{root.name}.lock"), timeout=BUILD_S, what=f"the {dataset} twin {root}"):
        if not (root.is_dir() and complete(root)):
            with staged_dir(root) as staging:
                synthesize(dataset, TASK_LAYOUT, staging)
    return root


def data_fingerprint(root: Path) -> str:
    """Hash of the file listing (relative path, size) plus the split/metadata files' bytes.

    Cheap enough for tens of thousands of files, and it changes whenever a file is
    added, removed, resized, or a split list is edited.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{path.stat().st_size}\n".encode())
        if path.suffix in (".json", ".csv") and path.parent == root:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
