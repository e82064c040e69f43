"""The data order of one epoch, and how a resumed run skips what it already consumed.

§5.4: a distributed sampler, shuffled each epoch, ``drop_last = True``. We always use
:class:`torch.utils.data.DistributedSampler` — with ``num_replicas = 1`` when no process
group exists — so that one code path serves 1 and N processes: its permutation depends
only on ``(seed, epoch, len(dataset))``, never on the global RNG. Consequences:

* N processes with batch b see, step for step, the same samples as 1 process with
  batch N·b (rank r takes ``perm[r::N]``), which the DDP test relies on;
* a resumed run rebuilds the identical permutation and drops the first
  ``batches_done · batch_size`` indices of this rank, so the remaining batches are
  exactly those an uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler, Sampler


class ResumableEpochSampler(Sampler[int]):
    """A :class:`DistributedSampler` whose current epoch can start after ``skip`` indices."""

    def __init__(self, dataset: Sized, *, num_replicas: int, rank: int, seed: int) -> None:
        self.inner = DistributedSampler(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.epoch = 0
        self.skip = 0
        self.stop: int | None = None

    def set_epoch(self, epoch: int, skip: int = 0, stop: int | None = None) -> None:
        """Select ``epoch``'s permutation, drop its first ``skip`` indices (resume) and end at
        ``stop`` (the loop never loads micro-batches that cannot complete an accumulation window)."""
        self.epoch = epoch
        self.skip = skip
        self.stop = stop
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.inner)[self.skip : self.stop])

    def __len__(self) -> int:
        end = len(self.inner) if self.stop is None else min(self.stop, len(self.inner))
        return max(0, end - self.skip)

    def full_length(self) -> int:
        """Indices per epoch for this rank, ignoring ``skip``."""
        return len(self.inner)
