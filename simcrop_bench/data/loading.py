"""Worker processes for the training data loaders (pretraining and fine-tuning).

Loading runs in worker processes by default: one per core available to this training process, less one for the
process itself (``len(os.sched_getaffinity(0))`` shared by the processes of the node), kept alive across epochs, with
pinned memory on CUDA. Results must not depend on how many there are, so every item is drawn under a seed of
(seed, epoch, index) alone: :class:`EpochKeys` hands the epoch to the item with its index, because persistent
workers hold copies of the dataset that never see a ``set_epoch`` made after they started.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sized
from typing import Any

from torch.utils.data import Sampler

AUTO_WORKERS = -1


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def loader_workers(requested: int, processes_per_node: int = 1) -> int:
    """``requested`` if not :data:`AUTO_WORKERS`, else this process's share of the cores, less one (at least 1)."""
    if requested != AUTO_WORKERS:
        if requested < 0:
            from simcrop_bench.errors import ConfigError

            raise ConfigError(f"num_workers must be {AUTO_WORKERS} (auto) or at least 0, not {requested}")
        return requested
    return max(1, available_cores() // max(1, processes_per_node) - 1)


def ignore_job_signals(_worker_id: int) -> None:
    """Loader workers leave SIGTERM/SIGUSR1/SIGUSR2 to the training process.

    SLURM (and submitit's preemption) signals every process of a job; torch's worker handler re-raises a
    SIGTERM that is not its parent's, so a worker died and the training process failed with "DataLoader
    worker is killed" while it was saving the checkpoint it needed to be requeued. The training process
    handles the signal and shuts its workers down itself.
    """
    import signal

    for name in ("SIGTERM", "SIGUSR1", "SIGUSR2"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)


def loader_options(requested: int, device_type: str, processes_per_node: int = 1) -> dict[str, Any]:
    """``DataLoader`` keyword arguments: workers (persistent, leaving job signals to the trainer), pinned memory
    on CUDA."""
    workers = loader_workers(requested, processes_per_node)
    options = {"num_workers": workers, "persistent_workers": workers > 0, "pin_memory": device_type == "cuda"}
    if workers > 0:
        options["worker_init_fn"] = ignore_job_signals
    return options


def local_processes(world: int) -> int:
    """Training processes on this node (torchrun's ``LOCAL_WORLD_SIZE``, else all of them)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world))


class EpochKeys(Sampler):
    """Yields ``(epoch, index)`` for each index of ``inner``, the epoch set in this process by :meth:`set_epoch`."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(index)) for index in self.inner)

    def __len__(self) -> int:
        assert isinstance(self.inner, Sized)
        return len(self.inner)
