"""The full training checkpoint ``checkpoint.pt``: everything an exact resume needs.

Contents (a plain dict, written atomically by rank 0 through
:func:`simcrop_bench.atomic.atomic_path`, so a kill never leaves a torn file):

* ``model`` (no ``module.`` prefix), ``optimizer``, ``scaler`` (None without fp16);
* ``step`` — optimizer steps done; ``epoch`` and ``batches_done`` — the position in the
  data order (micro-batches of this epoch already consumed per rank); ``sampler_epoch``;
* ``rng`` — one :func:`rng.capture_rng_state` per rank, indexed by rank;
* ``config`` — the :class:`loop.PretrainConfig` as a dict, plus ``world_size``.

§10.3: the encoder-only released file is derived from this one by
:func:`simcrop_bench.models.vit3d.export_released`; extra keys are harmless.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from simcrop_bench.atomic import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"


def save_training_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (a temporary file renamed over it)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_training_checkpoint` onto the CPU.

    ``weights_only=False``: the file holds NumPy/Python RNG states, written by us.
    """
    return torch.load(path, map_location="cpu", weights_only=False)


# Fields that fix the meaning of the saved data position; a resume must not change them.
POSITION_FIELDS = ("batch_size", "accum_steps", "seed")


def check_resumable(saved: dict[str, Any], current: dict[str, Any], world_size: int) -> None:
    """Raise when ``current`` cannot continue ``saved`` exactly (data position would shift)."""
    problems = [
        f"{key}: checkpoint {saved['config'].get(key)!r}, now {current.get(key)!r}"
        for key in POSITION_FIELDS
        if saved["config"].get(key) != current.get(key)
    ]
    if saved.get("world_size", 1) != world_size:
        problems.append(f"world size: checkpoint {saved.get('world_size')}, now {world_size}")
    if problems:
        raise ValueError("cannot resume this checkpoint exactly: " + "; ".join(problems))
