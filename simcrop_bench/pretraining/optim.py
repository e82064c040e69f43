"""AdamW parameter groups and the learning-rate schedule (``simcrop-method.md`` §5.4).

The rule is the MAE / ASAP one: weight decay on every trainable parameter with at
least two dimensions; none on biases and 1-D parameters (LayerNorm weights). The
``cls_token`` / ``mask_token`` tensors are 3-D and therefore decayed; frozen
parameters (e.g. the fixed ``pos_embed``, the frozen text encoder) are left out of
the optimizer entirely.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def decays(name: str, parameter: torch.Tensor) -> bool:
    """Whether ``parameter`` gets weight decay (§5.4: ≥ 2 dims and not a bias)."""
    return parameter.ndim >= 2 and not name.endswith(".bias")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups, ``decay`` then ``no_decay``; frozen parameters are excluded.

    Each group carries its parameter ``names`` so that tests and logs can show the split
    (``torch.optim`` ignores unknown group keys and keeps them in its state dict).
    """
    decay: list[tuple[str, nn.Parameter]] = []
    no_decay: list[tuple[str, nn.Parameter]] = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (decay if decays(name, parameter) else no_decay).append((name, parameter))
    return [
        {"params": [p for _, p in decay], "names": [n for n, _ in decay], "weight_decay": weight_decay},
        {"params": [p for _, p in no_decay], "names": [n for n, _ in no_decay], "weight_decay": 0.0},
    ]


def adamw(
    model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.95)
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (β = (0.9, 0.95) in §5.4)."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas)


def lr_at(
    fractional_epoch: float,
    *,
    peak: float,
    warmup_epochs: float,
    total_epochs: float,
    min_lr: float = 0.0,
) -> float:
    """Linear warm-up from 0 to ``peak``, then a half cosine from ``peak`` to ``min_lr``.

    §5.4, with e = ``epoch + iter / iters_per_epoch``::

        lr(e) = peak · e / W                                               if e < W
        lr(e) = min_lr + (peak − min_lr) · ½ · (1 + cos(π · (e − W) / (E − W)))  otherwise

    (the spec's formula is the ``min_lr = 0`` case). Past ``E`` the value stays at ``min_lr``.
    """
    if fractional_epoch < warmup_epochs:
        return peak * fractional_epoch / warmup_epochs
    if total_epochs <= warmup_epochs:
        return peak
    progress = min(1.0, (fractional_epoch - warmup_epochs) / (total_epochs - warmup_epochs))
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr (a group's optional ``lr_scale`` multiplies it, e.g. layer decay)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
