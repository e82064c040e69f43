"""The generic pretraining loop shared by every method (``simcrop-method.md`` §5.4).

A method supplies ``model_factory()`` → a module whose ``forward(batch)`` returns
``{"loss": total, "<component>": value, ...}`` (0-dim tensors) and a map-style
dataset; :func:`pretrain` trains it with the §5.4 recipe:

* AdamW β = (0.9, 0.95), decay only on ≥ 2-D parameters (:mod:`.optim`);
* lr per iteration at ``epoch + it / iters_per_epoch``, set at the start of each
  accumulation window only (MAE's ``adjust_learning_rate`` placement);
* gradient accumulation over ``accumulation_steps(cfg, world)`` micro-batches (the recipe fixes the
  effective batch, so the accumulation follows the number of processes), DDP ``no_sync`` inside a
  window; micro-batches at the end of an epoch that cannot fill a window are not
  loaded (MAE zeroes their gradients at the next epoch; the update is the same);
* fp16 autocast + GradScaler (CUDA only), bf16 autocast, or fp32;
* seed = ``cfg.seed + rank``; the data order is a seeded DistributedSampler (:mod:`.sampling`);
* ``metrics.jsonl`` + TensorBoard (:mod:`.scalars`), rich progress on rank 0;
* an optional ``monitor(model) -> {tag: value}`` (e.g. the grounding score) evaluated on rank 0
  before the first update, every ``1/monitor_points`` of the run and after the last update,
  into ``monitor.jsonl`` + TensorBoard; it runs under a forked RNG, so training is unchanged;
* atomic ``checkpoint.pt`` every ``checkpoint_every`` steps, at the end and on
  SIGTERM / SIGUSR1; restarting in the same ``workdir`` resumes exactly. Submodules
  that declare a frozen identity (``frozen_identity()``, e.g. SimCroP's pinned text
  encoder) are not stored; the factory rebuilds them and resume checks the identity.

``pretrain_info.json`` records what one optimizer step was (effective batch = batch × accumulation ×
processes), the frozen modules' identities, the caller's ``record`` (e.g. text encoder, initialisation)
and, for a model that defines ``contrastive_negatives(recipe)``, how many negatives a sample meets.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from simcrop_bench.data.loading import EpochKeys, loader_options, local_processes
from simcrop_bench.pretraining import distributed as dist_utils
from simcrop_bench.pretraining.config import (
    PRETRAIN_INFO_FILE,
    PretrainConfig,
    accumulation_steps,
    recipe_summary,
)
from simcrop_bench.pretraining.optim import adamw, lr_at, set_lr
from simcrop_bench.pretraining.preemption import PretrainingStopped, stop_on_signals
from simcrop_bench.pretraining.rng import SeededItems, capture_rng_state, restore_rng_state, seed_everything
from simcrop_bench.pretraining.sampling import ResumableEpochSampler
from simcrop_bench.pretraining.scalars import ScalarLog
from simcrop_bench.pretraining.training_checkpoint import (
    CHECKPOINT_NAME,
    check_resumable,
    frozen_modules,
    load_model_state,
    load_training_checkpoint,
    model_state,
    save_training_checkpoint,
)
from simcrop_bench.util.atomic import write_json
from simcrop_bench.util.progress import log, log_interval, progress

# Test hook: SIGKILL this process (rank 0) right after optimizer step N is finished
# (logged and, if due, checkpointed) — simulates a hard kill for the resume test.
SIGKILL_AT_STEP_ENV = "SIMCROP_BENCH_TEST_SIGKILL_AT_STEP"


def spec_snapshot_epochs(epochs: int = 200) -> tuple[int, ...]:
    """§5.4 keeps epochs 0, 40, 60, 80, every 10 from 100, and the last."""
    kept = {0, 40, 60, 80, *range(100, epochs, 10), epochs - 1}
    return tuple(sorted(e for e in kept if 0 <= e < epochs))


@dataclass
class PretrainResult:
    model: nn.Module  # unwrapped (no DDP), on ``device``
    step: int
    epoch: int
    checkpoint: Path
    preempted: bool  # stopped by SIGTERM / SIGUSR1 after saving; rerun to resume
    wall_s: float  # over all resumed segments
    recipe: dict[str, int] = field(default_factory=dict)  # effective batch, batch, accumulation, world size
    extra: dict[str, Any] = field(default_factory=dict)

    def completed(self, what: str) -> PretrainResult:
        """This result, or :class:`PretrainingStopped` when a signal stopped the run before its end."""
        if self.preempted:
            raise PretrainingStopped(f"{what} pretraining stopped at step {self.step}; rerun to resume")
        return self


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def _check_config(cfg: PretrainConfig, device: torch.device) -> None:
    if cfg.precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16 or fp16, not {cfg.precision!r}")
    if cfg.precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 (GradScaler) needs a CUDA device; use bf16 or fp32 on CPU")


def _loss_terms(output: Any) -> dict[str, torch.Tensor]:
    if not isinstance(output, dict) or "loss" not in output:
        raise TypeError("the model's forward must return a dict with a 'loss' entry")
    return {k: v for k, v in output.items() if isinstance(v, torch.Tensor) and v.ndim == 0}


def pretraining_record(
    model: nn.Module, cfg: PretrainConfig, world: int, record: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a pretraining record states about the recipe it ran: the optimizer step's composition, the frozen
    modules, the caller's ``record`` and, for contrastive models, the negatives per sample."""
    recipe = recipe_summary(cfg, world)
    out: dict[str, Any] = {"recipe": recipe, "frozen_modules": frozen_modules(model), **(record or {})}
    negatives = getattr(model, "contrastive_negatives", None)
    if callable(negatives):
        out["contrastive_negatives"] = negatives(recipe)
    return out


def pretrain(
    model_factory: Callable[[], nn.Module],
    dataset: Dataset,
    cfg: PretrainConfig,
    workdir: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    log_every: int | None = None,
    monitor: Callable[[nn.Module], dict[str, float]] | None = None,
    monitor_points: int = 10,
    record: dict[str, Any] | None = None,
) -> PretrainResult:
    """Train ``model_factory()`` on ``dataset`` with ``cfg``; resume from ``workdir`` if possible.

    Call it in every process of an initialised process group (or without one). Rank 0
    writes ``checkpoint.pt``, ``metrics.jsonl``, ``tensorboard/`` and ``pretrain_info.json`` (with ``record``).
    ``log_every``: optimizer steps between permanent log lines (None: about 20 lines per run, see
    :func:`~simcrop_bench.util.progress.log_interval`; 0: none).
    """
    started = time.monotonic()
    workdir, device = Path(workdir), torch.device(device)
    _check_config(cfg, device)
    rank, world = dist_utils.rank(), dist_utils.world_size()
    accum = accumulation_steps(cfg, world)  # before any work: an indivisible recipe is refused at once
    if rank == 0:
        workdir.mkdir(parents=True, exist_ok=True)

    seed_everything(cfg.seed + rank)  # §5.4: seed + process rank
    model = model_factory().to(device)
    optimizer = adamw(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")

    sampler = ResumableEpochSampler(dataset, num_replicas=world, rank=rank, seed=cfg.seed)
    items = SeededItems(dataset, cfg.seed)
    iters_per_epoch = sampler.full_length() // cfg.batch_size  # micro-batches per rank
    steps_per_epoch = iters_per_epoch // accum
    if steps_per_epoch == 0:
        raise ValueError(
            f"{len(dataset)} samples over {world} process(es) give {iters_per_epoch} micro-batches of "
            f"{cfg.batch_size}, fewer than accum_steps={accum}"
        )
    usable_iters = steps_per_epoch * accum
    total_steps = steps_per_epoch * cfg.epochs
    if log_every is None:
        log_every = log_interval(total_steps)

    # ---- resume
    step = epoch = batches_done = 0
    previous_wall = 0.0
    checkpoint_path = workdir / CHECKPOINT_NAME
    resumed = checkpoint_path.exists()
    if resumed:
        saved = load_training_checkpoint(checkpoint_path)
        check_resumable(saved, asdict(cfg), world)
        load_model_state(model, saved)  # frozen reloadable modules: rebuilt by the factory, identity checked
        optimizer.load_state_dict(saved["optimizer"])
        if saved["scaler"] is not None:
            scaler.load_state_dict(saved["scaler"])
        step, epoch, batches_done = saved["step"], saved["epoch"], saved["batches_done"]
        previous_wall = saved.get("wall_s", 0.0)
        restore_rng_state(saved["rng"][rank])  # last: model construction above consumed RNG
        if rank == 0:
            log(f"resuming {workdir} at step {step} (epoch {epoch}, micro-batch {batches_done})")
    saved_step = step if resumed else -1

    train_model: nn.Module = model
    if world > 1:
        device_ids = (
            [device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else None
        )
        train_model = DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=cfg.find_unused_parameters
        )

    def state(position_epoch: int, position_batches: int) -> dict[str, Any]:
        rngs = dist_utils.gather_to_all(capture_rng_state())  # collective: every rank calls
        weights, frozen = model_state(model)
        return {
            "model": weights,
            "frozen_modules": frozen,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "step": step,
            "epoch": position_epoch,
            "batches_done": position_batches,
            "sampler_epoch": sampler.epoch,
            "rng": rngs,
            "config": asdict(cfg),
            "world_size": world,
            "wall_s": previous_wall + time.monotonic() - started,
        }

    def save(position_epoch: int, position_batches: int, *extra_paths: Path) -> None:
        nonlocal saved_step
        snapshot = state(position_epoch, position_batches)
        if rank == 0:
            for path in (checkpoint_path, *extra_paths):
                save_training_checkpoint(path, snapshot)
        saved_step = step
        dist_utils.barrier()

    scalars = ScalarLog(workdir, resume_step=step if resumed else None) if rank == 0 else None
    monitor_every = max(1, total_steps // max(1, monitor_points))
    monitored = -1

    def run_monitor() -> None:
        nonlocal monitored
        if monitor is None or scalars is None or monitored == step:
            return
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            values = monitor(model)
        monitored = step
        if values:
            scalars.write_monitor(step, values)
            log(f"step {step} " + " ".join(f"{k} {v:.4g}" for k, v in values.items()))

    kill_at = int(os.environ.get(SIGKILL_AT_STEP_ENV, "0"))
    preempted = False
    display = progress() if rank == 0 else contextlib.nullcontext()
    try:
        with stop_on_signals() as stop, display as bar:
            task = bar.add_task("pretrain", total=total_steps, completed=step, status="") if bar else None
            keys = EpochKeys(sampler)  # items are drawn by (epoch, index): any worker count, same batches
            loader = DataLoader(
                items,
                batch_size=cfg.batch_size,
                sampler=keys,
                drop_last=True,
                # Own generator: creating the iterator must not consume the global RNG,
                # otherwise a resumed epoch would shift the model's random streams.
                generator=torch.Generator().manual_seed(cfg.seed + rank),
                **loader_options(cfg.num_workers, device.type, local_processes(world)),
            )
            if step == 0:
                run_monitor()  # the initialisation's value
            while epoch < cfg.epochs and not preempted:
                sampler.set_epoch(epoch, skip=batches_done * cfg.batch_size, stop=usable_iters * cfg.batch_size)
                keys.set_epoch(epoch)
                it = batches_done
                sums: dict[str, torch.Tensor] = {}
                lr = 0.0
                for batch in loader:
                    window_pos = it % accum
                    if window_pos == 0:  # §5.4: schedule applied at accumulation boundaries only
                        fractional_epoch = epoch + it / iters_per_epoch
                        lr = lr_at(
                            fractional_epoch,
                            peak=cfg.lr,
                            warmup_epochs=cfg.warmup_epochs,
                            total_epochs=cfg.epochs,
                            min_lr=cfg.min_lr,
                        )
                        set_lr(optimizer, lr)
                    last_in_window = window_pos == accum - 1
                    sync = contextlib.nullcontext() if world == 1 or last_in_window else train_model.no_sync()
                    with sync:
                        with _autocast(cfg.precision, device):
                            terms = _loss_terms(train_model(_to_device(batch, device)))
                        scaler.scale(terms["loss"] / accum).backward()
                    for name, value in terms.items():
                        sums[name] = sums.get(name, 0.0) + value.detach().float()
                    it += 1
                    if not last_in_window:
                        continue

                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    names = sorted(sums)
                    means = dist_utils.mean_across_ranks(torch.stack([sums[n] for n in names]) / accum)
                    losses = dict(zip(names, means.tolist()))
                    sums = {}
                    if scalars is not None:
                        scalars.write(step, fractional_epoch, lr, losses)
                        bar.update(task, advance=1, status=f"loss {losses['loss']:.4f} lr {lr:.2e}")
                        if log_every and step % log_every == 0:
                            log(
                                f"step {step}/{total_steps} epoch {epoch} lr {lr:.3e} "
                                + " ".join(f"{k} {v:.4f}" for k, v in losses.items())
                            )
                    if step % monitor_every == 0 or step == total_steps:
                        run_monitor()
                    stopping = dist_utils.any_rank(stop.raised, device)
                    if stopping or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                        save(epoch, it) if it < usable_iters else save(epoch + 1, 0)
                    if kill_at and step == kill_at and rank == 0:
                        os.kill(os.getpid(), signal.SIGKILL)
                    if stopping:
                        preempted = True
                        if rank == 0:
                            log(f"stop signal {stop.signal}: checkpoint at step {step}, exiting")
                        break
                if preempted:
                    break
                if epoch in cfg.snapshot_epochs:
                    save(epoch + 1, 0, workdir / f"checkpoint-epoch{epoch:04d}.pt")
                epoch, batches_done = epoch + 1, 0
            if not preempted and saved_step != step:
                save(epoch, 0)
    finally:
        if scalars is not None:
            scalars.close()

    wall_s = previous_wall + time.monotonic() - started
    if rank == 0 and not preempted:
        write_json(
            workdir / PRETRAIN_INFO_FILE,
            {
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "world_size": world,
                "precision": cfg.precision,
                "steps": step,
                "epochs": epoch,
                "wall_s_all_segments": wall_s,
                "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
                **pretraining_record(model, cfg, world, record),
            },
        )
    return PretrainResult(
        model=model,
        step=step,
        epoch=epoch,
        checkpoint=checkpoint_path,
        preempted=preempted,
        wall_s=wall_s,
        recipe=recipe_summary(cfg, world),
    )
