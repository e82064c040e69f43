"""Store of pretrained encoders: one per (method, method config, pretraining data).

``<results>/checkpoints/<method>/<pretrain hash>/`` holds ``encoder.pth`` (released
SimCroP format) and ``meta.json``. Pretraining works in ``.<hash>.partial/`` (where the
loop's ``checkpoint.pt`` lets a killed run resume) and is renamed into place when done,
so a present folder is a complete pretraining and is reused instead of trained again.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simcrop_bench.api import Method, PretrainContext
from simcrop_bench.config import stable_hash
from simcrop_bench.data.roots import DataRoot
from simcrop_bench.errors import ConfigError
from simcrop_bench.pretraining.config import PRETRAIN_INFO_FILE
from simcrop_bench.util.atomic import publish_dir, work_dir, write_json
from simcrop_bench.util.hashing import file_sha256
from simcrop_bench.util.locks import file_lock
from simcrop_bench.util.progress import log

PRETRAIN_SEED = 42  # simcrop-method.md §5.4: seed 42 (+ process rank); methods without a `train` recipe use it
ENCODER_FILE = "encoder.pth"
META_FILE = "meta.json"


def pretraining_seed(method_config: dict[str, Any]) -> int:
    """The pretraining's seed: ``method.train.seed`` when the method has a training recipe, else 42."""
    train = method_config.get("train")
    return int(train["seed"]) if isinstance(train, dict) and "seed" in train else PRETRAIN_SEED


def pretrain_key(method: str, method_config: dict[str, Any], data: dict[str, str], world: int = 1) -> str:
    # The default seed (42) keeps the keys, hence the stored encoders, of earlier versions.
    identity = {"method": method, "config": method_config, "data": data, "seed": pretraining_seed(method_config)}
    if world > 1:  # `--gpus N`: N ranks (effective batch ×N, per-rank dropout) give another encoder
        identity["world_size"] = world
    return stable_hash(identity)


def pretraining_inputs(method: Method) -> tuple[dict[str, DataRoot], dict[str, str]]:
    """The data roots ``method`` pretrains on, and their fingerprints (resolving a root writes a missing twin)."""
    from simcrop_bench.data.roots import data_fingerprint, resolve_data_root

    roots = {name: resolve_data_root(name) for name in method.pretrain_datasets}
    return roots, {name: data_fingerprint(root.path) for name, root in roots.items()}


def resolve_encoder(
    method: Method,
    method_config: dict[str, Any],
    results: Path,
    device: Callable[[], str],
    world: int = 1,
) -> tuple[Path | None, dict[str, Any] | None]:
    """The method's encoder: provided (``external``), none (``scratch``), reused when the store has it,
    pretrained otherwise.

    ``device()`` resolves the pretraining device; it is asked only when there is pretraining to do.

    ``world``: processes of the pretraining (``--gpus N``); a cell asks for the encoder that its
    sweep's N-process pretraining job stored, and never pretrains one itself with another count.
    """
    provided = method.provided_encoder()
    if provided is not None:
        return provided
    if not method.pretrains:
        return None, None
    data_roots, fingerprints = pretraining_inputs(method)
    key = pretrain_key(method.name, method_config, fingerprints, world)
    folder = results / "checkpoints" / method.name / key
    # One pretraining per key even when several jobs (seeds of a `run --executor local`, a requeued
    # job overlapping its old copy) want it at once: the others wait here, then reuse it.
    # Ranks of one job share the work: only rank 0 takes the lock.
    lock = (
        file_lock(folder.with_name(f".{folder.name}.lock"), what=f"the {method.name} pretraining {key}")
        if _process_rank() == 0
        else contextlib.nullcontext()
    )
    with lock:
        return _resolve_locked(
            method, key, folder, data_roots, fingerprints, device, world, pretraining_seed(method_config)
        )


def _world_size() -> int:
    if "torch.distributed" not in sys.modules:
        return 1
    from simcrop_bench.pretraining.distributed import world_size

    return world_size()


def _pretraining_info(work: Path) -> dict[str, Any] | None:
    """The loop's ``pretrain_info.json`` (effective batch, text encoder, initialisation, ...); None for a method
    that trains without the shared loop."""
    path = work / PRETRAIN_INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _process_rank() -> int:
    if "torch.distributed" not in sys.modules:  # never initialised: a single process
        return 0
    from simcrop_bench.pretraining.distributed import rank

    return rank()


def _resolve_locked(
    method: Method,
    key: str,
    folder: Path,
    data_roots: dict[str, DataRoot],
    fingerprints: dict[str, str],
    device: Callable[[], str],
    world: int,
    seed: int,
) -> tuple[Path | None, dict[str, Any] | None]:
    if (folder / META_FILE).is_file():
        meta = json.loads((folder / META_FILE).read_text())
        log(f"reusing pretrained {method.name} encoder {folder}")
        return folder / ENCODER_FILE, meta
    if world != _world_size():
        raise ConfigError(
            f"no {method.name} encoder pretrained on {world} processes ({folder}) yet: "
            f"this job runs {_world_size()}; submit the sweep's pretraining job first"
        )
    # A stable work folder (not a fresh temporary one) so that a killed pretraining resumes from its
    # last checkpoint; it is renamed into place only when complete.
    work = work_dir(folder)
    log(f"pretraining {method.name} (no checkpoint for config {key} yet; work folder {work})")
    pretrain_device = device()  # before any folder exists: an unusable device leaves nothing behind
    work.mkdir(parents=True, exist_ok=True)
    ctx = PretrainContext(
        workdir=work,
        seed=seed,
        device=pretrain_device,
        data_roots={name: root.path for name, root in data_roots.items()},
    )
    try:
        produced = Path(method.pretrain(ctx))
    except BaseException:
        from simcrop_bench.pretraining.training_checkpoint import CHECKPOINT_NAME

        # Nothing to resume from: leave no empty work folder (rank 0 alone, the other ranks share it).
        if _process_rank() == 0 and not (work / CHECKPOINT_NAME).is_file():
            shutil.rmtree(work, ignore_errors=True)
        raise
    if "torch.distributed" in sys.modules:  # `--gpus N`: every rank has written its export
        from simcrop_bench.pretraining.distributed import barrier

        barrier()
    if _process_rank() != 0:  # rank 0 alone hashes and stores the encoder
        return work / ENCODER_FILE, None
    if produced != work / ENCODER_FILE:
        produced.replace(work / ENCODER_FILE)
    meta = {
        "method": method.name,
        "pretrain_hash": key,
        "pretraining": _pretraining_info(work),
        "sha256": file_sha256(work / ENCODER_FILE),
        "data": fingerprints,
        "synthetic": any(root.synthetic for root in data_roots.values()),
        "seed": seed,
        "world_size": world,
    }
    write_json(work / META_FILE, meta)  # written last: its presence marks a complete pretraining
    publish_dir(work, folder)
    return folder / ENCODER_FILE, meta
