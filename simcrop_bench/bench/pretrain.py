"""``bench pretrain``: step time, volumes/s and model FLOP utilisation of each method's training step.

Each method's model is built exactly as pretraining builds it (``build_pretraining`` on a two-case CT-RATE twin,
in the chosen profile) and trained on one batch repeated: AdamW, forward + backward + update, optionally under
``torch.compile`` and bf16 autocast. Data loading is left out on purpose (``bench loader`` measures it): this is
the accelerator's side of the pipeline.

FLOPs are counted, not timed: :class:`torch.utils.flop_counter.FlopCounterMode` adds up the analytic FLOPs
(2 per multiply-add) of every matrix product, convolution and attention of one forward + backward on one volume,
attention through the math kernel (the fused CPU kernel has no FLOP formula). MFU = counted FLOPs per second ÷
the device's peak: the dense bf16 / fp32 peaks of known GPUs (datasheets), or ``--peak-tflops``.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Any

from simcrop_bench.errors import UserError

# Dense (no sparsity) peak FLOP/s by GPU name fragment and precision: NVIDIA datasheets (SXM parts).
GPU_PEAKS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "H100": {"bf16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
}
DEFAULT_METHODS = ("simcrop", "mae", "simmim", "clip", "mrm")


@dataclass(frozen=True)
class StepTiming:
    method: str
    batch: int
    precision: str
    compiled: bool
    step_s: float  # median over the timed steps
    volumes_per_s: float
    flops_per_sample: float  # forward + backward, counted
    peak_flops: float | None

    @property
    def achieved_flops(self) -> float:
        return self.flops_per_sample * self.volumes_per_s

    @property
    def mfu(self) -> float | None:
        return self.achieved_flops / self.peak_flops if self.peak_flops else None


def device_peak(device: str, precision: str, override_tflops: float | None) -> float | None:
    """The peak FLOP/s MFU is taken against: ``--peak-tflops``, else a known GPU's datasheet value, else None."""
    if override_tflops:
        return override_tflops * 1e12
    if not device.startswith("cuda"):
        return None
    import torch

    name = torch.cuda.get_device_name(torch.device(device))
    for fragment, peaks in GPU_PEAKS.items():
        if fragment in name:
            return peaks["bf16" if precision == "bf16" else "fp32"]
    return None


def _method_parts(method: str, profile: str, overrides: list[str], plugins: list[str]) -> tuple[Any, Any]:
    """``(model_factory, dataset)`` of ``method`` in ``profile``, on a two-case CT-RATE twin."""
    from simcrop_bench.api import PretrainContext
    from simcrop_bench.pretraining.check_method import tiny_twin
    from simcrop_bench.run.cell import RunRequest, plan_run

    plan = plan_run(RunRequest(method=method, task="ctrate_cls", profile=profile, overrides=overrides, plugins=plugins))
    instance = plan.method_cls(plan.config.method)
    roots = {name: tiny_twin(name) for name in plan.method_cls.pretrain_datasets}
    ctx = PretrainContext(workdir=None, seed=42, device="cpu", data_roots=roots)  # type: ignore[arg-type]
    parts = instance.build_pretraining(ctx)
    if parts is None:
        raise UserError(f"method {method!r} has no build_pretraining hook: nothing to time")
    return parts.model_factory, parts.dataset


def _batch(dataset: Any, size: int, device: Any) -> Any:
    """The first item repeated ``size`` times, collated and moved: the step's input, without data loading."""
    import torch
    from torch.utils.data import default_collate

    from simcrop_bench.pretraining.loop import _to_device

    torch.manual_seed(0)
    return _to_device(default_collate([dataset[0]] * size), device)


def count_flops(model: Any, batch: Any, autocast: Any) -> float:
    """Forward + backward FLOPs of one step on ``batch`` (matrix products, convolutions, attention)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH), autocast():
        model(batch)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def time_method(
    method: str,
    *,
    profile: str,
    device: str,
    batch_size: int,
    precision: str,
    compile_model: bool,
    warmup: int,
    steps: int,
    peak_flops: float | None,
    overrides: list[str] | None = None,
    plugins: list[str] | None = None,
) -> StepTiming:
    import torch

    from simcrop_bench.pretraining.optim import adamw

    factory, dataset = _method_parts(method, profile, list(overrides or []), list(plugins or []))
    torch.manual_seed(0)
    model = factory().to(device)
    model.train()
    batch = _batch(dataset, batch_size, torch.device(device))
    dtype = torch.bfloat16 if precision == "bf16" else None

    def autocast():
        return torch.autocast(torch.device(device).type, dtype=dtype) if dtype else contextlib.nullcontext()

    # FLOPs grow linearly with the batch: count one volume (the math attention kernel would hold B·heads·N²).
    flops = count_flops(model, _batch(dataset, 1, torch.device(device)), autocast)
    optimizer = adamw(model, lr=1e-4, weight_decay=0.05)
    step_model = torch.compile(model) if compile_model else model

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def step() -> None:
        with autocast():
            loss = step_model(batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):  # compilation, allocator and kernel selection happen here
        step()
    sync()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - started)
    step_s = statistics.median(times)
    return StepTiming(method, batch_size, precision, compile_model, step_s, batch_size / step_s, flops, peak_flops)
