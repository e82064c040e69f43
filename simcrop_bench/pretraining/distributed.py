"""Process-group helpers and a local multi-process launcher.

The loop runs the same code with and without ``torch.distributed``: these helpers
answer rank 0 / world size 1 when no process group is initialised. :func:`launch_local`
starts N CPU processes with a gloo group (MASTER_ADDR 127.0.0.1, a free port), which
is how the tests check that a 2-process run matches a 1-process run with twice the batch.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def mean_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of ``values`` over all ranks (identity without a process group)."""
    if not is_distributed():
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / world_size()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on at least one rank (all ranks must call it)."""
    if not is_distributed():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_to_all(obj: Any) -> list[Any]:
    """Every rank's ``obj``, indexed by rank (a one-element list without a process group)."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def free_port() -> int:
    """A TCP port that was free a moment ago (the usual small race is acceptable locally)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(local_rank: int, nprocs: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(local_rank),
        WORLD_SIZE=str(nprocs),
        LOCAL_RANK=str(local_rank),
    )
    # N processes on a few cores: share the cores instead of oversubscribing them.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // nprocs))
    dist.init_process_group("gloo", rank=local_rank, world_size=nprocs)
    try:
        fn(*args)
        # A rank that tears its group down while a peer is still inside a collective
        # aborts that peer ("terminate called without an active exception"): meet first.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def launch_local(fn: Callable[..., Any], nprocs: int, *args: Any) -> None:
    """Run ``fn(*args)`` in ``nprocs`` spawned CPU processes joined by a gloo group.

    ``fn`` must be picklable (a module-level function); it learns its rank from
    :func:`rank`. Raises if any process fails.
    """
    mp.spawn(_worker, args=(nprocs, free_port(), fn, args), nprocs=nprocs, join=True)
