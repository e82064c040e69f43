"""Store of pretrained encoders: one per (method, method config, pretraining data).

``<results>/checkpoints/<method>/<pretrain hash>/`` holds ``encoder.pth`` (released
SimCroP format) and ``meta.json``. Pretraining works in ``.<hash>.partial/`` (where the
loop's ``checkpoint.pt`` lets a killed run resume) and is renamed into place when done,
so a present folder is a complete pretraining and is reused instead of trained again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .api import Method, PretrainContext
from .atomic import write_json
from .config import stable_hash
from .hashing import file_sha256
from .data.roots import DataRoot
from .progress import log

PRETRAIN_SEED = 42  # simcrop-method.md §5.4: seed 42 (+ process rank)
ENCODER_FILE = "encoder.pth"
META_FILE = "meta.json"


def pretrain_key(method: str, method_config: dict[str, Any], data: dict[str, str]) -> str:
    return stable_hash({"method": method, "config": method_config, "data": data, "seed": PRETRAIN_SEED})


def resolve_encoder(
    method: Method,
    method_config: dict[str, Any],
    data_roots: dict[str, DataRoot],
    fingerprints: dict[str, str],
    results: Path,
    device: str,
) -> tuple[Path | None, dict[str, Any] | None]:
    """The method's pretrained encoder: reused when the store has it, pretrained otherwise."""
    provided = method.provided_encoder()
    if provided is not None:
        return provided
    if not method.pretrains:
        return None, None
    key = pretrain_key(method.name, method_config, fingerprints)
    folder = results / "checkpoints" / method.name / key
    if (folder / META_FILE).is_file():
        meta = json.loads((folder / META_FILE).read_text())
        log(f"reusing pretrained {method.name} encoder {folder}")
        return folder / ENCODER_FILE, meta
    # A stable work folder (not a fresh temporary one) so that a killed pretraining resumes from its
    # last checkpoint; it is renamed into place only when complete.
    work = folder.with_name(f".{folder.name}.partial")
    log(f"pretraining {method.name} (no checkpoint for config {key} yet; work folder {work})")
    work.mkdir(parents=True, exist_ok=True)
    ctx = PretrainContext(
        workdir=work,
        seed=PRETRAIN_SEED,
        device=device,
        data_roots={name: root.path for name, root in data_roots.items()},
    )
    produced = Path(method.pretrain(ctx))
    if produced != work / ENCODER_FILE:
        produced.replace(work / ENCODER_FILE)
    meta = {
        "method": method.name,
        "pretrain_hash": key,
        "sha256": file_sha256(work / ENCODER_FILE),
        "data": fingerprints,
        "synthetic": any(root.synthetic for root in data_roots.values()),
        "seed": PRETRAIN_SEED,
    }
    write_json(work / META_FILE, meta)  # written last: its presence marks a complete pretraining
    os.replace(work, folder)
    return folder / ENCODER_FILE, meta
