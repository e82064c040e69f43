"""The full training checkpoint ``checkpoint.pt``: everything an exact resume needs.

Contents (a plain dict, written atomically by rank 0 through
:func:`simcrop_bench.util.atomic.atomic_path`, so a kill never leaves a torn file):

* ``model`` (no ``module.`` prefix), ``optimizer``, ``scaler`` (None without fp16);
* ``frozen_modules`` — ``{prefix: identity}`` of the submodules left out of ``model``
  because they are frozen and rebuilt from pinned files (see below);
* ``step`` — optimizer steps done; ``epoch`` and ``batches_done`` — the position in the
  data order (micro-batches of this epoch already consumed per rank); ``sampler_epoch``;
* ``rng`` — one :func:`rng.capture_rng_state` per rank, indexed by rank;
* ``config`` — the :class:`loop.PretrainConfig` as a dict, plus ``world_size``.

Frozen, reloadable submodules: a module that defines ``frozen_identity()`` returning a
dict (for SimCroP the frozen text encoder: its file hashes) is frozen, is rebuilt by the
model factory from those files, and is therefore not stored (136 MB of MiniLM weights in
the demo). On resume the identities must match, else :class:`ConfigError`. The
identity's ``"path"`` entry is informational: an identical copy elsewhere resumes.
A module whose ``frozen_identity()`` returns ``None`` (e.g. a test's random BERT) is
stored as before.

§10.3: the encoder-only released file is derived from this one by
:func:`simcrop_bench.models.vit3d.export_released`; extra keys are harmless.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simcrop_bench.errors import ConfigError
from simcrop_bench.util.atomic import atomic_path

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
POSITION_FIELDS = ("batch_size", "effective_batch", "accum_steps", "seed")


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


# --------------------------------------------------------------------------- frozen, reloadable modules

FROZEN_IDENTITY = "frozen_identity"  # the method a frozen, reloadable module defines
_INFORMATIONAL = ("path",)  # identity entries that do not have to match on resume


def frozen_modules(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{prefix: identity}`` of the outermost submodules that declare themselves frozen and reloadable."""
    found: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        if not name or any(name.startswith(prefix + ".") for prefix in found):
            continue
        declare = getattr(module, FROZEN_IDENTITY, None)
        identity = declare() if callable(declare) else None
        if identity is None:
            continue
        if any(p.requires_grad for p in module.parameters()):
            raise ValueError(f"module {name!r} declares a frozen identity but has trainable parameters")
        found[name] = dict(identity)
    return found


def _under(key: str, prefixes: dict[str, Any]) -> bool:
    return any(key.startswith(prefix + ".") for prefix in prefixes)


def model_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """``(state_dict without the frozen reloadable modules, their identities)`` for a checkpoint."""
    frozen = frozen_modules(model)
    return {k: v for k, v in model.state_dict().items() if not _under(k, frozen)}, frozen


def _difference(saved: dict[str, Any], now: dict[str, Any]) -> str:
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _difference(a, b)
            if inner:
                return f"{key}.{inner}"
        elif a != b and key not in _INFORMATIONAL:
            return f"{key}: checkpoint {a!r}, now {b!r}"
    return ""


def load_model_state(model: nn.Module, saved: dict[str, Any]) -> None:
    """Load ``saved["model"]`` into ``model``; frozen modules left out must be identical to the saved ones.

    Checkpoints written before frozen modules were left out (full ``model``) load as they are.
    """
    stored = saved.get("frozen_modules") or {}
    current = frozen_modules(model)
    for prefix, identity in stored.items():
        if prefix not in current:
            raise ConfigError(
                f"cannot resume: the checkpoint's frozen module {prefix!r} has no reloadable counterpart in this model"
            )
        why = _difference(identity, current[prefix])
        if why:
            raise ConfigError(
                f"cannot resume: frozen module {prefix!r} is not the one the checkpoint was trained with ({why})"
            )
    result = model.load_state_dict(saved["model"], strict=False)
    missing = [k for k in result.missing_keys if not _under(k, stored)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"checkpoint does not fit the model: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
