"""Resumable fine-tuning: the state saved after every epoch, and how a rerun picks it up.

The runner gives a cell a stable work folder (``.<run folder>.partial/``, named by the config
hash), so a rerun of the same cell — a requeued SLURM job, the same ``simcrop-bench run`` after a
Ctrl-C or a kill — finds ``finetune_state.pt`` there. It is written atomically at the end of each
epoch (after validation) and holds everything the next epoch depends on:

* model, optimizer, LR scheduler and (fp16) grad-scaler states;
* completed epochs, history, best selection score / epoch / weights;
* the Python, NumPy and torch (CPU, CUDA) RNG states, the sampler's generator (shuffle order) and
  the random states of the augmentation chain (each case is augmented under a seed of (seed, epoch,
  index), so neither the number of workers nor a resume changes a crop);
* ``identity``: what the numbers depend on beyond the folder's config hash (the task config,
  seed, fraction, protocol, encoder hash, case ids and file signatures). A state whose identity
  differs (say the data or encoder changed) is discarded with one log line and training starts
  at epoch 0: it cannot be continued, and starting over is always correct.

A stop signal (SIGTERM / SIGUSR1, via the pretraining loop's :func:`stop_on_signals`) stops
training at the next batch boundary with :class:`FinetuningStopped`; the state on disk is the
last completed epoch, so a resumed run repeats at most the interrupted epoch and ends exactly as
an uninterrupted run would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

STATE_FILE = "finetune_state.pt"
# Test hook: SIGKILL this process right after the state of epoch N (1-based) is saved.
SIGKILL_AT_EPOCH_ENV = "SIMCROP_BENCH_TEST_SIGKILL_AT_EPOCH"


class FinetuningStopped(KeyboardInterrupt):
    """Fine-tuning stopped by a signal; its last epoch is saved and a rerun resumes it.

    A KeyboardInterrupt, like the pretraining's, so that the CLI reports an interruption and a
    cluster job hands over to submitit's requeue (see :mod:`simcrop_bench.jobs.callables`).
    """


def transform_random_states(obj: Any) -> list[np.random.RandomState]:
    """Every ``RandomState`` reachable from a transform chain, in a fixed order (MONAI's ``set_rnd`` walk).

    Unlike ``set_rnd`` the walk does not stop at the ``Compose``: inner croppers keep their own states.
    """
    found: list[np.random.RandomState] = []
    seen: set[int] = set()

    def walk(item: Any) -> None:
        if id(item) in seen:
            return
        seen.add(id(item))
        if isinstance(item, np.random.RandomState):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            for child in item:
                walk(child)
        elif hasattr(item, "__dict__") and not isinstance(item, type):
            for key, child in vars(item).items():
                if not key.startswith("__"):
                    walk(child)

    walk(obj)
    return found


def snapshot(identity: dict[str, Any], epoch: int, parts: dict[str, Any], progress: dict[str, Any]) -> dict[str, Any]:
    """The state after ``epoch`` completed epochs. ``parts``: model, optimizer, scheduler, scaler,
    generator, transforms; ``progress``: history, best_score, best_epoch, best_state."""
    from simcrop_bench.pretraining.rng import capture_rng_state

    scaler = parts["scaler"]
    return {
        "identity": identity,
        "epoch": epoch,
        "model": parts["model"].state_dict(),
        "optimizer": parts["optimizer"].state_dict(),
        "scheduler": parts["scheduler"].state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "generator": parts["generator"].get_state(),
        "transforms": [r.get_state() for r in transform_random_states(parts["transforms"])],
        "rng": capture_rng_state(),
        **progress,
    }


def save_state(workdir: Path, state: dict[str, Any]) -> None:
    from simcrop_bench.pretraining.training_checkpoint import save_training_checkpoint

    save_training_checkpoint(workdir / STATE_FILE, state)  # temporary file + rename: never torn


def load_state(workdir: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state if there is one for this identity; a stale one is removed (logged)."""
    from simcrop_bench.pretraining.training_checkpoint import load_training_checkpoint
    from simcrop_bench.util.progress import log

    path = workdir / STATE_FILE
    if not path.is_file():
        return None
    saved = load_training_checkpoint(path)
    if saved.get("identity") != identity:
        old = saved.get("identity") or {}
        changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k)) or ["format"]
        log(
            f"[yellow]discarding fine-tuning state {path}: saved for another run ({', '.join(changed)} "
            f"differ); starting at epoch 1[/yellow]"
        )
        path.unlink()
        return None
    return saved


def restore(saved: dict[str, Any], parts: dict[str, Any]) -> None:
    """Load ``saved`` into ``parts`` (see :func:`snapshot`); the global RNG states last."""
    from simcrop_bench.pretraining.rng import restore_rng_state

    parts["model"].load_state_dict(saved["model"])
    parts["optimizer"].load_state_dict(saved["optimizer"])
    parts["scheduler"].load_state_dict(saved["scheduler"])
    if saved["scaler"] is not None:
        parts["scaler"].load_state_dict(saved["scaler"])
    parts["generator"].set_state(saved["generator"])
    states = transform_random_states(parts["transforms"])
    if len(states) != len(saved["transforms"]):
        raise ValueError(
            f"fine-tuning state has {len(saved['transforms'])} transform random states, "
            f"the augmentation chain {len(states)}"
        )
    for rng, state in zip(states, saved["transforms"]):
        rng.set_state(state)
    restore_rng_state(saved["rng"])
