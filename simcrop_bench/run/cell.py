"""One benchmark cell: resolve the config, get the encoder, run the task, write the record.

:func:`plan_run` is cheap (no torch) and is what the CLI uses for ``--print-config`` and
for skipping runs that already have a record; :func:`run_job` does the work and is
what executors run, in-process or on a cluster node.
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from simcrop_bench import registry
from simcrop_bench.config import PROFILES, PROTOCOLS, ResolvedConfig, RunSettings, apply_overrides, parse_set, set_path
from simcrop_bench.errors import ConfigError
from simcrop_bench.run.devices import resolve_device
from simcrop_bench.run.preflight import check_device, check_name, check_results_root, check_seed, confined
from simcrop_bench.run.records import existing_record, publish_run, run_dir
from simcrop_bench.util.atomic import staged_dir
from simcrop_bench.util.locks import file_lock


@dataclass
class RunRequest:
    """Everything the CLI collects for one run; plain data, so it pickles for executors."""

    method: str
    task: str
    fraction: int | None = None  # None: the task's largest fraction
    seed: int = 42
    profile: str = "demo"
    protocol: str = "heldout"
    overrides: list[str] = field(default_factory=list)
    data_root: str | None = None
    results: str = "results"
    force: bool = False
    plugins: list[str] = field(default_factory=list)
    device: str = "auto"
    weights: str | None = None  # an encoder checkpoint to evaluate (method "external")
    gpus: int = 1  # processes of the pretraining job (`--gpus N`): part of the encoder's identity


@dataclass
class RunPlan:
    request: RunRequest
    config: ResolvedConfig
    method_cls: type
    task_cls: type

    @property
    def run_dir(self) -> Path:
        run = self.config.run
        return run_dir(
            Path(self.request.results),
            self.config.task_name,
            self.config.method_name,
            run.fraction,
            run.seed,
            run.profile,
            self.config.config_hash,
        )

    def encoder(self) -> tuple[Path | None, dict[str, Any] | None]:
        """The method's encoder checkpoint and store meta: provided, none, stored, or pretrained now."""
        from simcrop_bench.run.encoder_store import resolve_encoder

        cfg = self.config
        return resolve_encoder(
            self.method_cls(cfg.method),
            cfg.to_dict()["method"],
            Path(self.request.results),
            functools.partial(resolve_device, cfg.run.device),
            world=self.request.gpus,
        )


def resolve_config(req: RunRequest, method_cls: type, task_cls: type) -> ResolvedConfig:
    """defaults → profile → per-fraction profile → ``--set``; every step is validated."""
    if req.profile not in PROFILES:
        raise ConfigError(f"--profile {req.profile}: expected one of {', '.join(PROFILES)}")
    if req.protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {req.protocol}: expected one of {', '.join(PROTOCOLS)}")
    fraction = max(task_cls.fractions) if req.fraction is None else req.fraction
    if fraction not in task_cls.fractions:
        raise ConfigError(
            f"--fraction {fraction}: task {task_cls.name} has fractions {', '.join(map(str, task_cls.fractions))}"
        )
    run = RunSettings(profile=req.profile, fraction=fraction, seed=req.seed, protocol=req.protocol, device=req.device)
    method_cfg = method_cls.Config()
    task_cfg = task_cls.Config()
    apply_overrides(method_cfg, method_cls.profile_overrides(req.profile), section="method")
    apply_overrides(task_cfg, task_cls.profile_overrides(req.profile, fraction), section="task")
    if req.weights is not None:
        if not hasattr(method_cfg, "weights"):
            raise ConfigError(f"--weights: method {method_cls.name} trains its own encoder; use --method external")
        method_cfg.weights = str(Path(req.weights).expanduser().resolve())
    method_cls.configure(method_cfg)
    targets = {"method": method_cfg, "task": task_cfg, "run": run}
    for section, key, value in parse_set(req.overrides):
        if section == "run" and key in ("profile", "fraction", "seed", "protocol"):
            raise ConfigError(f"--set run.{key}: use the --{key} option instead")
        set_path(targets[section], key, value, section=section, from_text=True)
    method_cfg.encoder.validate()
    if hasattr(task_cfg, "validate"):
        task_cfg.validate(method_cfg.encoder.patch_size)
    _check_recipe(method_cfg, req.gpus)
    return ResolvedConfig(method_cls.name, task_cls.name, method_cfg, task_cfg, run)


def _check_recipe(method_cfg: Any, gpus: int) -> None:
    """Refuse, before any work, a recipe whose effective batch the pretraining processes cannot share."""
    from simcrop_bench.pretraining.config import PretrainConfig, accumulation_steps

    train = getattr(method_cfg, "train", None)
    if isinstance(train, PretrainConfig):
        accumulation_steps(train, gpus * max(1, getattr(method_cfg, "processes", 1)))


def plan_run(req: RunRequest) -> RunPlan:
    """Resolve and validate a request: cheap, no torch, nothing written (the CLI plans every run first)."""
    check_seed(req.seed)
    check_device(req.device, available=False)  # the syntax here; the device itself where the job runs
    results = check_results_root(Path(req.results))
    registry.discover(req.plugins)
    method_cls = registry.get_method(req.method)
    task_cls = registry.get_task(req.task)
    plan = RunPlan(req, resolve_config(req, method_cls, task_cls), method_cls, task_cls)
    check_device(plan.config.run.device, option="run.device", available=False)  # `--set run.device=...`
    check_name(plan.config.method_name, "method name")
    check_name(plan.config.task_name, "task name")
    confined(plan.run_dir, results / "runs", "run folder")
    return plan


def check_inputs(plan: RunPlan) -> None:
    """Before any work of a job: its device exists here, and every data root it reads passes ``data check``."""
    from simcrop_bench.data.check.gate import require_clean_root
    from simcrop_bench.data.check.root import PURGEABLE
    from simcrop_bench.data.roots import cache_dir, resolve_data_root

    check_device(plan.config.run.device, option="run.device")
    task_root = resolve_data_root(plan.task_cls.dataset, plan.request.data_root)
    purged = getattr(plan.config.task, "purge_test_patients_from_train", False)  # the task removes such rows
    require_clean_root(task_root.dataset, task_root.path, cache_dir(), waived=frozenset({PURGEABLE} if purged else ()))
    method = plan.method_cls(plan.config.method)
    if method.pretrains and method.provided_encoder() is None:
        for dataset in method.pretrain_datasets:
            root = resolve_data_root(dataset)
            require_clean_root(root.dataset, root.path, cache_dir())


def run_job(req: RunRequest) -> dict[str, Any]:
    """Run one cell and return its record (the existing one when skipped)."""
    plan = plan_run(req)
    final = plan.run_dir
    previous = existing_record(final)
    if previous is not None and previous.get("config_hash") == plan.config.config_hash and not req.force:
        return {**previous, "skipped": True, "record_dir": str(final)}
    check_inputs(plan)
    # One process per cell at a time (a requeued job overlapping its old copy): they share the work folder.
    with _cell_lock(Path(req.results), final):
        previous = existing_record(final)
        if previous is not None and previous.get("config_hash") == plan.config.config_hash and not req.force:
            return {**previous, "skipped": True, "record_dir": str(final)}
        return execute(plan)


def _cell_lock(results: Path, final: Path):
    # Not next to the run folder: a run's subtree holds nothing but complete records.
    name = "_".join(final.relative_to(results / "runs").parts)
    return file_lock(results / "runs" / ".locks" / f"{name}.lock", what=f"run {name}")


def pretrain_job(req: RunRequest) -> dict[str, Any]:
    """Only the cell's pretraining (a sweep's pretraining job): store or reuse the method's encoder."""
    plan = plan_run(req)
    check_inputs(plan)
    _prepare_torch(plan.config.run.num_threads)
    checkpoint, meta = plan.encoder()
    return {
        "method": plan.config.method_name,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "meta": meta,
    }


def _prepare_torch(num_threads: int) -> None:
    """``run.num_threads`` (it changes float reduction order), and a fresh CUDA peak for this cell.

    torch is imported only when threads are set or it is loaded already: a task that needs no torch
    never pays its import.
    """
    if num_threads or "torch" in sys.modules:
        import torch

        if num_threads:
            torch.set_num_threads(num_threads)
        if torch.cuda.is_initialized():  # an earlier cell of this process used CUDA: its peak is not ours
            torch.cuda.reset_peak_memory_stats()


def execute(plan: RunPlan) -> dict[str, Any]:
    from simcrop_bench.api import TaskContext
    from simcrop_bench.data.roots import cache_dir, data_fingerprint, resolve_data_root
    from simcrop_bench.protocols.segmentation.state import STATE_FILE
    from simcrop_bench.reporting.results_index import record_published
    from simcrop_bench.run import provenance as provenance
    from simcrop_bench.run.records import write_per_case, write_record
    from simcrop_bench.util.hashing import file_sha256
    from simcrop_bench.util.progress import log

    cfg, req = plan.config, plan.request
    started = time.time()
    _prepare_torch(cfg.run.num_threads)

    task_root = resolve_data_root(plan.task_cls.dataset, req.data_root)
    if task_root.synthetic:
        log(
            f"[yellow]data: synthetic {task_root.dataset} twin at {task_root.path} — numbers are SYNTHETIC, "
            f"not comparable to published results[/yellow]"
        )
    checkpoint, checkpoint_meta = plan.encoder()
    # The store's meta already holds the file's hash; hashing a ViT-B checkpoint again costs seconds.
    checkpoint_sha = None if checkpoint is None else (checkpoint_meta or {}).get("sha256") or file_sha256(checkpoint)

    task = plan.task_cls(cfg.task)

    def resumable(folder: Path) -> bool:  # a fine-tuning state to resume from
        return (folder / STATE_FILE).is_file()

    with staged_dir(plan.run_dir, resumable_if=resumable, publish=publish_run) as staging:
        ctx = TaskContext(
            encoder=cfg.method.encoder,
            encoder_checkpoint=checkpoint,
            encoder_sha256=checkpoint_sha,
            data_root=task_root.path,
            synthetic=task_root.synthetic,
            fraction=cfg.run.fraction,
            seed=cfg.run.seed,
            protocol=cfg.run.protocol,
            device_request=cfg.run.device,
            workdir=staging,
            cache_dir=cache_dir() / "preprocessed" if cfg.run.cache else None,
        )
        result = task.run(ctx)
        # A task that never asked for a device computed in numpy on the CPU (a probe on cached features).
        device = ctx.device_used or "cpu"
        peak_mb = provenance.peak_host_memory_mb()
        if device.startswith("cuda"):
            import torch

            peak_mb = torch.cuda.max_memory_allocated() / 2**20
        record = {
            "run_id": plan.run_dir.relative_to(Path(req.results) / "runs").as_posix(),
            "method": cfg.method_name,
            "method_kind": plan.method_cls.kind,
            "task": cfg.task_name,
            "fraction": cfg.run.fraction,
            "seed": cfg.run.seed,
            "profile": cfg.run.profile,
            "protocol": cfg.run.protocol,
            "variant": result.variant,  # non-empty: a labelled deviation from the published recipe
            "synthetic": task_root.synthetic or bool(checkpoint_meta and checkpoint_meta.get("synthetic")),
            "primary_metric": plan.task_cls.metric,
            "higher_is_better": plan.task_cls.higher_is_better,
            "metrics": result.metrics,
            "intervals": result.intervals,
            "per_class": result.per_class,
            "details": result.details,
            "config": cfg.to_dict(),
            "config_hash": cfg.config_hash,
            "cell_hash": cfg.cell_hash,
            "checkpoint": None
            if checkpoint is None
            else {**(checkpoint_meta or {}), "path": str(checkpoint), "sha256": checkpoint_sha},
            "data": {
                "dataset": task_root.dataset,
                "root": str(task_root.path),
                "source": task_root.source,
                "fingerprint": data_fingerprint(task_root.path),
                "synthetic": task_root.synthetic,
            },
            "provenance": provenance.collect(device),
            "wall_time_s": round(time.time() - started, 2),
            "peak_memory_mb": round(peak_mb, 1),
            "peak_memory_kind": "cuda_allocated" if device.startswith("cuda") else "host_rss",
            "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        write_per_case(staging / "per_case.csv", result.per_case)
        (staging / STATE_FILE).unlink(missing_ok=True)  # resume state: not part of the record
        write_record(staging, record)
    record_published(Path(req.results), plan.run_dir)  # the leaderboard's index learns of the new record
    return {**record, "skipped": False, "record_dir": str(plan.run_dir)}
