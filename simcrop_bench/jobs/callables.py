"""What a submitted job runs: one pretraining, or one benchmark cell, made checkpointable.

Preemption and time limits. submitit asks SLURM for USR2 before the time limit (and
``job._interrupt()`` / a preemption sends SIGTERM, then USR2); its USR2 handler calls our
``checkpoint()``, stores the returned ``DelayedSubmission``, runs ``scontrol requeue`` and exits at
once. Exiting at once would lose the work since the last checkpoint, so while a training loop
runs (one that installed :func:`~.pretraining.preemption.stop_on_signals`) we put our own USR2
handler in front: it raises the loop's stop flag, the loop reaches a safe point and raises a
``KeyboardInterrupt``, and only then we hand over to submitit's handler (checkpoint → requeue →
exit). The requeued job runs the same callable again and the loop resumes:

* pretraining finishes the current optimizer step, saves ``checkpoint.pt`` in its stable work
  folder ``checkpoints/<method>/.<hash>.partial/`` and resumes there at that step;
* fine-tuning (segmentation) stops at the next batch boundary; its state of the last completed
  epoch is in the cell's stable work folder ``.<run folder>.partial/`` (saved after every
  epoch), and it resumes after that epoch (see :mod:`.protocols.finetune_state`).

The record is written once, atomically, at the end; an existing record with the same config hash
makes a requeued cell a no-op. Linear probes are not resumable: they run again from the start.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from simcrop_bench.run.cell import RunRequest

# Test hook: a job whose request has this override fails on purpose (a "job made to fail").
FAIL_ENV = "SIMCROP_BENCH_TEST_FAIL_CELL"
PREEMPTION_USR2_WAIT_S = 5


class _RequeueAfterCheckpoint:
    """USR2 → raise the loop's stop flag; remember to requeue once the loop has saved."""

    def __init__(self) -> None:
        self.requested = False
        self.submitit_handler: Any = None

    def install(self) -> None:
        previous = signal.getsignal(signal.SIGUSR2)
        if callable(previous):  # submitit's checkpoint_and_try_requeue (absent outside a job)
            self.submitit_handler = previous
            signal.signal(signal.SIGUSR2, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        from simcrop_bench.pretraining.preemption import StopFlag

        loop_handler = signal.getsignal(signal.SIGUSR1)  # a training loop's StopFlag, while it runs
        if isinstance(getattr(loop_handler, "__self__", None), StopFlag):
            self.requested = True
            loop_handler(signal.SIGUSR1, frame)
        else:  # not inside the loop: nothing unsaved to lose, requeue now
            self.submitit_handler(signum, frame)

    def hand_over(self) -> None:
        """After the loop stopped on our flag: let submitit checkpoint, requeue and exit."""
        self.submitit_handler(signal.SIGUSR2, None)


def _init_distributed() -> bool:
    """Join the process group when submitit started several tasks (``--gpus N``); True if joined."""
    import submitit

    try:
        env = submitit.JobEnvironment()
    except RuntimeError:
        return False
    if env.num_tasks <= 1:
        return False
    import torch
    import torch.distributed as dist

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=torch.cuda.is_available())
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


class BenchJob:
    """A picklable, checkpointable callable: ``pretrain_only`` for pretraining jobs, else one cell."""

    def __init__(self, pretrain_only: bool = False):
        self.pretrain_only = pretrain_only

    def __call__(self, req: RunRequest) -> dict[str, Any]:
        from simcrop_bench.run.cell import pretrain_job, run_job

        if os.environ.get(FAIL_ENV) and os.environ[FAIL_ENV] in (f"{req.method}:{req.seed}", req.method):
            raise RuntimeError(f"{FAIL_ENV}={os.environ[FAIL_ENV]}: this job fails on purpose")
        bridge = _RequeueAfterCheckpoint()
        bridge.install()
        distributed = _init_distributed()
        try:
            result = pretrain_job(req) if self.pretrain_only else run_job(req)
            if distributed:
                from simcrop_bench.pretraining.distributed import barrier

                barrier()  # no rank tears the group down while a peer is mid-collective
            return result
        except KeyboardInterrupt:
            # A loop stopped on a signal with its state saved (see module docstring), or Ctrl-C.
            if bridge.requested:
                bridge.hand_over()  # requeues and exits (SystemExit)
            if bridge.submitit_handler is not None:
                # A preemption sends SIGTERM (which stopped the loop) and then USR2: give USR2 a
                # moment to arrive; its handler then requeues at once (the checkpoint is saved).
                time.sleep(PREEMPTION_USR2_WAIT_S)
            raise
        finally:
            if distributed:
                import torch.distributed as dist

                dist.destroy_process_group()

    def checkpoint(self, req: RunRequest) -> Any:
        """Called by submitit on USR2: requeue the same job; the work folder holds the state."""
        import submitit

        return submitit.helpers.DelayedSubmission(BenchJob(self.pretrain_only), req)
