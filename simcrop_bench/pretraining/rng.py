"""Seeding, capture and restore of every RNG, and per-sample seeding of data loading.

Exact resume (§5.4 checkpoints, our requirement) needs the model-side random streams
(masking, dropout) to continue where they stopped: we capture Python, NumPy, torch CPU
and CUDA states at a checkpoint and restore them on resume.

Data augmentation is made independent of those streams: :class:`SeededItems` draws
each sample under a seed derived from ``(seed, epoch, index)`` and restores the
caller's RNG afterwards. Then an augmentation does not depend on which worker loads
the sample or on how many batches a resumed epoch skipped, which a per-worker RNG
stream could not guarantee.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

_MASK_64 = (1 << 64) - 1


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device). §5.4: seed = 42 + rank."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """The states of Python, NumPy, torch CPU and (when available) all CUDA devices."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 64-bit seed for one sample of one epoch (SplitMix64 finaliser)."""
    z = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & _MASK_64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK_64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK_64
    return z ^ (z >> 31)


class SeededItems(Dataset):
    """Wraps a dataset so that item ``i`` of epoch ``e`` is drawn under ``sample_seed(seed, e, i)``.

    Keys are ``(epoch, index)`` pairs (:class:`~simcrop_bench.data.loading.EpochKeys`), so that persistent
    workers, whose dataset copies never see a later ``set_epoch``, draw what the main process would; a plain
    index uses the epoch set here. The global RNG states are saved before and restored after each item, so
    the main process's model-side streams are untouched when ``num_workers = 0``.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        saved = capture_rng_state()
        try:
            seed_everything(sample_seed(self.seed, epoch, index))
            return self.dataset[index]
        finally:
            restore_rng_state(saved)
