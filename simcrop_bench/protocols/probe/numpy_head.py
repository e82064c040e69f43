"""The linear head of ``lp-cached``, trained in numpy on cached features; no torch import.

On cached features the probe's frozen LayerNorm (γ = 1, β = 0, §6.1) is a fixed standardisation,
so what trains is a linear model on fixed inputs. This is the ``paper`` trainer's arithmetic —
AdamW, the §6.3 factor before each update, gradient-norm clipping, BCE or cross-entropy — written
out in float32 numpy; a test pins it to torch's AdamW step for step. Without it a warm cached run
spent two thirds of its time importing torch and the ``torch._dynamo`` that ``torch.optim``
loads on first use (~2.3 s of ~3.5 s on 2 CPU cores).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from simcrop_bench.protocols.probe.config import LinearProbeConfig
from simcrop_bench.protocols.probe.schedule import probe_lr_factor

BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_: max_norm / (total_norm + 1e-6)


def layer_norm(x: np.ndarray, eps: float) -> np.ndarray:
    """``nn.LayerNorm`` with γ = 1, β = 0 over the last axis (biased variance), float32."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(eps))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(np.float32(0), -z))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class NumpyHead:
    """``Linear(features → outputs)`` with AdamW; :meth:`update` / :meth:`predict` as the torch trainer's."""

    def __init__(self, num_features: int, num_outputs: int, cfg: LinearProbeConfig, *, multiclass: bool, seed: int):
        rng = np.random.default_rng(seed)
        # nn.init.trunc_normal_(std) truncates at ±2 absolute; at std 2e-5 it never bites, kept for fidelity.
        self.weight = np.clip(rng.normal(0.0, cfg.head_init_std, (num_outputs, num_features)), -2, 2).astype(np.float32)
        self.bias = np.zeros(num_outputs, dtype=np.float32)
        self.cfg, self.multiclass = cfg, multiclass
        self.moments = [(np.zeros_like(p), np.zeros_like(p)) for p in (self.weight, self.bias)]
        self.updates = 0

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight.T + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = self.logits(x)
        return softmax(z) if self.multiclass else sigmoid(z)

    def update(self, x: np.ndarray, targets: np.ndarray) -> float:
        """One AdamW step on a batch of normalised features; returns the batch loss."""
        self.updates += 1
        cfg = self.cfg
        lr = cfg.lr * probe_lr_factor(self.updates, cfg.warmup_steps, cfg.num_steps)
        loss, dz = self._loss_and_gradient(self.logits(x), targets)
        grads = [dz.T @ x, dz.sum(axis=0)]
        total = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads))
        clip = min(1.0, cfg.clip_grad_norm / (total + CLIP_EPS))
        beta1, beta2 = BETAS
        bias1, bias2 = 1 - beta1**self.updates, 1 - beta2**self.updates
        for param, grad, (m, v) in zip((self.weight, self.bias), grads, self.moments):
            grad = grad * np.float32(clip)
            param *= np.float32(1 - lr * cfg.weight_decay)
            m += (grad - m) * np.float32(1 - beta1)  # torch: exp_avg.lerp_(grad, 1 - beta1)
            v *= np.float32(beta2)
            v += grad * grad * np.float32(1 - beta2)
            param -= np.float32(lr / bias1) * m / (np.sqrt(v) / np.float32(bias2**0.5) + np.float32(ADAM_EPS))
        return loss

    def _loss_and_gradient(self, z: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean loss and its gradient in the logits (``CrossEntropyLoss`` / ``BCEWithLogitsLoss``)."""
        if self.multiclass:
            rows = np.arange(len(z))
            top = z.max(axis=1)
            loss = np.log(np.exp(z - top[:, None]).sum(axis=1)) + top - z[rows, targets]
            dz = softmax(z)
            dz[rows, targets] -= 1
            return float(loss.mean()), dz / np.float32(len(z))
        loss = np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))
        return float(loss.mean()), (sigmoid(z) - targets) / np.float32(z.size)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        return self.weight.copy(), self.bias.copy()

    def restore(self, state: tuple[np.ndarray, np.ndarray]) -> None:
        self.weight, self.bias = (a.copy() for a in state)


def feature_batches(
    x: np.ndarray, targets: np.ndarray, batch_size: int, seed: int
) -> Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """Shuffled batches of the cached training features, a new order every pass."""
    rng = np.random.default_rng(seed)

    def batches():
        order = rng.permutation(len(x))
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            yield x[index], targets[index]

    return batches
