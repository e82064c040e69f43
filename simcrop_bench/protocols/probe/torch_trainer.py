"""The torch side of the linear probe: the frozen encoder, feature extraction and the ``paper`` trainer.

Imported only when a probe has work for torch — features to extract, or the ``paper`` protocol,
whose every step runs the frozen encoder on freshly augmented volumes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from simcrop_bench.models.vit3d import LoadReport
from simcrop_bench.protocols.probe.config import LinearProbeConfig
from simcrop_bench.protocols.probe.features import ProbeInput
from simcrop_bench.protocols.probe.model import LinearProbe
from simcrop_bench.protocols.probe.schedule import probe_lr_factor
from simcrop_bench.protocols.probe.target import ProbeTarget


def build_probe(ctx, cfg: LinearProbeConfig, num_outputs: int) -> tuple[LinearProbe, LoadReport | None, torch.device]:
    """The probe network on the run's device, its encoder loaded (or drawn from the run's seed: scratch)."""
    device = torch.device(ctx.device)
    torch.manual_seed(ctx.seed)
    model = LinearProbe(ctx.encoder, num_outputs, drop_path_rate=cfg.drop_path_rate, head_init_std=cfg.head_init_std)
    load_report = model.load_encoder(ctx.encoder_checkpoint) if ctx.encoder_checkpoint else None
    return model.to(device), load_report, device


class VolumeDataset(Dataset):
    """One encoder input ``(1, X, Y, Z)`` per volume path, through a MONAI dictionary chain."""

    def __init__(self, paths: Sequence[Path], chain) -> None:
        self.paths, self.chain = [str(p) for p in paths], chain

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from simcrop_bench.data.volume_transforms import apply_chain

        return apply_chain(self.chain, {"image": self.paths[index]})["image"].as_tensor().float()


@torch.no_grad()
def extract(
    pooled: Callable[[torch.Tensor], torch.Tensor],
    paths: Sequence[Path],
    chain,
    *,
    batch_size: int,
    device: torch.device,
    amp: bool,
    num_workers: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Pooled features ``(N, D)`` float32 in path order."""
    loader = DataLoader(VolumeDataset(paths, chain), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    out = []
    for batch in loader:
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            out.append(pooled(batch.to(device)).float().cpu().numpy())
        if on_batch:
            on_batch(len(batch))
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def extraction_origin(device: torch.device, amp: bool) -> dict[str, Any]:
    """What a feature copy depends on beyond its cache key: where and in which precision it was computed."""
    return {
        "device": str(device),
        "precision": "fp16-autocast" if amp else "fp32",
        "torch": torch.__version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


class TorchHeadTrainer:
    """``paper``: AdamW on the head, the §6.3 factor set before each update, clipping, fp16 scaling on CUDA."""

    def __init__(self, model: LinearProbe, cfg: LinearProbeConfig, device: torch.device, target: ProbeTarget):
        self.model, self.cfg, self.device, self.target = model, cfg, device, target
        self.amp = cfg.amp and device.type == "cuda"
        self.optimizer = torch.optim.AdamW(
            model.head.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay
        )
        self.scaler = torch.amp.GradScaler(device.type, init_scale=2.0**20, enabled=self.amp)
        self.loss_fn = nn.CrossEntropyLoss() if target.multiclass else nn.BCEWithLogitsLoss()
        self.updates = 0

    def update(self, pooled: torch.Tensor, targets) -> float:
        self.updates += 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr * probe_lr_factor(self.updates, self.cfg.warmup_steps, self.cfg.num_steps)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss = self.loss_fn(self.model.classify(torch.as_tensor(pooled)), torch.as_tensor(targets).to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.head.parameters(), self.cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    @torch.no_grad()
    def predict(self, pooled) -> np.ndarray:
        self.model.eval()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            logits = self.model.classify(torch.as_tensor(pooled).to(self.device)).float().cpu()
        return (logits.softmax(dim=1) if self.target.multiclass else logits.sigmoid()).numpy()

    def snapshot(self) -> dict:
        return copy.deepcopy(self.model.head.state_dict())

    def restore(self, state: dict) -> None:
        self.model.head.load_state_dict(state)


def volume_batches(
    model: LinearProbe,
    probe_input: ProbeInput,
    paths,
    targets: np.ndarray,
    cfg: LinearProbeConfig,
    seed: int,
    device: torch.device,
):
    """``paper``: every batch loaded through the random training chain and encoded with drop-path active (H9)."""
    chain = probe_input.training_chain()
    chain.set_random_state(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        _Zip(VolumeDataset(paths, chain), torch.as_tensor(targets)),
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=False,
        num_workers=cfg.num_workers,
        generator=generator,
    )

    def batches():
        for x, y in loader:
            model.train()
            yield model.pooled(x.to(device)), y

    return batches


class _Zip(Dataset):
    """Pairs each volume with its row of the target tensor."""

    def __init__(self, volumes, targets) -> None:
        self.volumes, self.targets = volumes, targets

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, index: int):
        return self.volumes[index], self.targets[index]
