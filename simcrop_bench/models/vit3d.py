"""The 3D Vision Transformer shared by every method, and its checkpoint converter.

Architecture: ``simcrop-method.md`` §2.1 with the timm key names of §8 / §10.1, so
that our checkpoints and the authors' released weights load into each other's code.
Tensor conventions (§1): input ``(N, C, X, Y, Z)``; tokens in patch-grid order
(h, w, d) with d fastest; patch vectors in C order within a patch (z fastest).

The converter (§10.2–10.3) lives next to the architecture, timm-style:
:func:`export_released` writes the encoder-only file, :func:`checkpoint_filter_fn`
maps checkpoints of any origin onto our key names, and :func:`load_encoder_weights`
loads the keys a downstream target needs and reports what happened.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simcrop_bench.errors import UserError
from simcrop_bench.models.config import LAYER_NORM_EPS, EncoderConfig
from simcrop_bench.models.pos_embed import detect_pos_embed_variant, sincos_pos_embed


class DropPath(nn.Module):
    """Stochastic depth per sample, the arithmetic of MONAI's (and timm's) ``DropPath``.

    Defined here because ``import monai`` loads every MONAI submodule (~4 s): the encoder
    alone, e.g. a probe on cached features, must not pay that. A test pins equality with MONAI's.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"drop path probability must be in [0, 1], got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        if keep > 0.0:
            mask.div_(keep)
        return x * mask


class CheckpointError(UserError):
    """A checkpoint file is unreadable or does not fit the model."""


# --------------------------------------------------------------------------- architecture


class PatchEmbed3D(nn.Module):
    """Non-overlapping patches to tokens: Conv3d with kernel = stride = patch size.

    Applied directly to the volume and flattened in (h, w, d) order, which equals the
    reference's patch-vector form for every grid (§1).
    """

    def __init__(self, patch_size: tuple[int, int, int], in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with timm's fused ``qkv`` layout."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, tokens, head_dim)
        x = F.scaled_dot_product_attention(q, k, v)  # fused kernel; softmax(q·kᵀ/√head_dim)·v
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (timm layout) with stochastic depth."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_linear_and_norm(module: nn.Module) -> None:
    """§2.1 initialisation of every Linear (xavier-uniform, zero bias) and LayerNorm (1, 0) in ``module``."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.xavier_uniform_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)


class ViT3D(nn.Module):
    """3D ViT encoder with a learned cls token and a fixed sin-cos position table.

    ``pos_embed`` ``(1, N+1, D)`` belongs to ``cfg.img_size`` and is a frozen parameter
    so that it travels in the state dict (the linear probe takes it from the
    checkpoint). Inputs of another grid, or an explicit ``pos_variant``, use a fixed
    table computed for that grid instead.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed3D(tuple(cfg.patch_size), cfg.in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        table = sincos_pos_embed(cfg.grid(), dim, cfg.pos_embed, cls_token=True)
        self.pos_embed = nn.Parameter(torch.from_numpy(table).unsqueeze(0), requires_grad=False)
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()  # linear rise, as timm
        self.blocks = nn.ModuleList(Block(dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, rate) for rate in rates)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self._pos_cache: dict[tuple, Tensor] = {}
        self._init_weights()

    def _init_weights(self) -> None:
        """§2.1: xavier-uniform Linear with zero bias, LayerNorm (1, 0), patch conv
        xavier-uniform on its (D, C·prod(patch)) view, cls token N(0, 0.02)."""
        weight = self.patch_embed.proj.weight
        with torch.no_grad():
            nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        init_linear_and_norm(self)

    # ---- position tables

    def patch_pos_table(self, grid: tuple[int, int, int], variant: str | None = None) -> Tensor:
        """Position table ``(1, prod(grid), D)`` for the patch tokens (no cls row).

        ``variant=None`` uses ``pos_embed`` on the configured grid and a computed
        table of ``cfg.pos_embed`` elsewhere; an explicit variant always computes.
        """
        grid = tuple(grid)  # type: ignore[assignment]
        if variant is None and grid == self.cfg.grid():
            return self.pos_embed[:, 1:]
        variant = variant or self.cfg.pos_embed
        key = (grid, variant, self.pos_embed.device, self.pos_embed.dtype)
        if key not in self._pos_cache:
            table = sincos_pos_embed(grid, self.cfg.embed_dim, variant)
            self._pos_cache[key] = torch.from_numpy(table).to(self.pos_embed).unsqueeze(0)
        return self._pos_cache[key]

    # ---- forward pieces (also used by masked pretraining, which masks between them)

    def embed_patches(self, x: Tensor, pos_variant: str | None = None) -> Tensor:
        """Patch tokens ``(B, N, D)`` with their positions added (§2.1 step 1, before masking)."""
        grid = self.cfg.grid(tuple(x.shape[2:]))
        return self.patch_embed(x) + self.patch_pos_table(grid, pos_variant)

    def prepend_cls(self, tokens: Tensor) -> Tensor:
        """Put ``cls_token + pos_embed[:, :1]`` in front (the second term is zero, §2.1 step 3)."""
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1)

    def run_blocks(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        """All blocks; returns the last output and every block's output (no final norm)."""
        hidden = []
        for block in self.blocks:
            tokens = block(tokens)
            hidden.append(tokens)
        return tokens, hidden

    def forward_features(
        self, x: Tensor, use_cls_token: bool = True, pos_variant: str | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """(last block output, every block's output); cls first when ``use_cls_token``."""
        tokens = self.embed_patches(x, pos_variant)
        if use_cls_token:
            tokens = self.prepend_cls(tokens)
        return self.run_blocks(tokens)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.forward_features(x)[0])

    # ---- patch vectors (masked image modelling targets)

    def patchify(self, x: Tensor) -> Tensor:
        """``(B, C, X, Y, Z)`` → ``(B, N, prod(patch)·C)``; token order as the encoder, C order
        within a patch (x, y, z; z fastest), channels last."""
        batch, chans = x.shape[:2]
        (h, w, d), (p, q, r) = self.cfg.grid(tuple(x.shape[2:])), self.cfg.patch_size
        x = x.reshape(batch, chans, h, p, w, q, d, r).permute(0, 2, 4, 6, 3, 5, 7, 1)
        return x.reshape(batch, h * w * d, p * q * r * chans)

    def unpatchify(self, patches: Tensor, spatial: tuple[int, int, int]) -> Tensor:
        """Inverse of :meth:`patchify` for a volume of ``spatial`` voxels."""
        batch = patches.shape[0]
        (h, w, d), (p, q, r) = self.cfg.grid(tuple(spatial)), self.cfg.patch_size
        chans = patches.shape[-1] // (p * q * r)
        x = patches.reshape(batch, h, w, d, p, q, r, chans).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(batch, chans, h * p, w * q, d * r)


# --------------------------------------------------------------------------- converter

# Encoder key groups (§10.1) and which ones each downstream target loads.
_GROUPS = ("patch_embed", "cls_token", "pos_embed", "blocks", "norm")
_TARGET_GROUPS = {
    "full": set(_GROUPS),  # resume / re-export: everything, including the final norm
    "probe": {"patch_embed", "cls_token", "pos_embed", "blocks"},  # the probe deletes `norm`
    "segmentation": {"patch_embed", "blocks"},  # Variant B recomputed, no cls token (§7.2)
}
_CONTAINER_KEYS = ("model", "state_dict")  # pretraining files / fine-tuned UNETR files
_PREFIXES = ("encoder.", "vit.")


def _group_of(name: str) -> str | None:
    if name.startswith("patch_embed.proj."):
        return "patch_embed"
    if name in ("cls_token", "pos_embed"):
        return name
    if name.startswith("blocks."):
        return "blocks"
    if name.startswith("norm."):
        return "norm"
    return None  # decoder, text modules, fc_norm, head, ...


def _unwrap(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in _CONTAINER_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    return checkpoint


def _encoder_name(key: str) -> str:
    if key.startswith("module."):  # DistributedDataParallel wrapper
        key = key[len("module.") :]
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def checkpoint_filter_fn(state_dict: Mapping[str, Any]) -> dict[str, Tensor]:
    """Map a checkpoint of any origin onto our encoder key names.

    Accepts ``{"model": sd}`` (or ``{"state_dict": sd}``) or a bare ``sd``; strips a
    leading ``module.`` and an ``encoder.`` / ``vit.`` prefix; keeps only encoder
    tensors, so ``fc_norm.*``, ``head.*``, decoders and text modules are dropped.
    """
    kept: dict[str, Tensor] = {}
    for key, value in _unwrap(state_dict).items():
        name = _encoder_name(key)
        if _group_of(name) is None or not torch.is_tensor(value):
            continue
        if name in kept:
            raise ValueError(f"two checkpoint keys map to encoder key {name!r}")
        kept[name] = value
    return kept


def export_released(model: nn.Module, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Encoder-only checkpoint ``{"model": sd}`` in the released layout (§10.3).

    ``sd`` holds exactly ``patch_embed.proj.*``, ``cls_token``, ``pos_embed``,
    ``blocks.*`` and ``norm.*`` in float32 without prefix; ``model`` may be the
    encoder or any module that contains it under the prefixes the filter strips.
    ``metadata``, when given, is stored under ``"simcrop_bench"``.
    """
    encoder = {
        name: tensor.detach().to("cpu", torch.float32).clone()
        for name, tensor in checkpoint_filter_fn(model.state_dict()).items()
    }
    absent = [group for group in _GROUPS if not any(_group_of(name) == group for name in encoder)]
    if absent:
        raise ValueError(f"cannot export a released encoder: no {', '.join(absent)} weights in the model")
    exported: dict[str, Any] = {"model": encoder}
    if metadata is not None:
        exported["simcrop_bench"] = dict(metadata)
        encoder_module = next((m for m in model.modules() if isinstance(m, ViT3D)), None)
        if encoder_module is not None:  # the head count cannot be read off the shapes: store the config
            exported["simcrop_bench"].setdefault("encoder", dataclasses.asdict(encoder_module.cfg))
    return exported


@dataclass
class LoadReport:
    """What :func:`load_encoder_weights` did; store it with the run's metadata."""

    source: str
    target: str
    pos_embed_variant: str  # of the checkpoint's table: "A", "B", "absent" or "unknown"
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # wanted by the target, absent from the file
    unexpected: list[str] = field(default_factory=list)  # encoder keys the model does not have
    ignored: list[str] = field(default_factory=list)  # file keys not loaded (encoder keys after filtering)
    shape_mismatches: list[str] = field(default_factory=list)  # never non-empty on return (raised)

    def summary(self) -> str:
        return (
            f"{self.source} → {self.target}: {len(self.loaded)} loaded, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.ignored)} ignored; "
            f"pos_embed variant {self.pos_embed_variant}"
        )


def _read_checkpoint(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    # [AS] training checkpoints store their argparse namespace under "args"; allow just that class.
    allow = getattr(torch.serialization, "safe_globals", None)
    context = allow([argparse.Namespace]) if allow else contextlib.nullcontext()
    try:
        with context:
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(f"{path}: cannot read checkpoint ({_one_line_reason(exc)})") from exc


def _one_line_reason(exc: Exception) -> str:
    """The cause, whole, on one line. ``weights_only`` refusals open with advice to load unsafely and
    name the cause (the forbidden global, e.g. ``posix.system``) lines later."""
    text = str(exc)
    forbidden = re.search(r"GLOBAL ([\w.]+)", text)
    if forbidden:
        return (
            f"refused: unpickling it would call {forbidden.group(1)}, which weights_only loading forbids; "
            "a checkpoint holds tensors only, this file may run code"
        )
    refusal = re.search(r"WeightsUnpickler error: (.*?\.)(?:\s|$)", text)
    if refusal:
        return f"not loadable with weights_only: {refusal.group(1)}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    advice = ("Weights only load failed", "Re-running", "Check the documentation", "In PyTorch")
    causes = [line for line in lines if not line.startswith(advice)]
    return " ".join(causes or lines) or type(exc).__name__


def _detect_variant(model: ViT3D, table: Tensor | None) -> str:
    if table is None:
        return "absent"
    model_grid = model.cfg.grid()
    fits = table.ndim >= 2 and table.shape[-2] in (math.prod(model_grid), math.prod(model_grid) + 1)
    try:
        return detect_pos_embed_variant(table, grid=model_grid if fits else None)
    except ValueError:  # not shaped like a position table at all
        return "unknown"


def load_encoder_weights(
    model: ViT3D,
    source: str | PathLike | Mapping[str, Any],
    *,
    target: str,
    allow_zero_pos_embed: bool = False,
) -> LoadReport:
    """Load the encoder keys ``target`` needs (§10.2) into ``model`` and report.

    Targets: ``"probe"`` (patch embedding, cls token, ``pos_embed``, blocks; refuses
    an absent or all-zero ``pos_embed`` unless ``allow_zero_pos_embed``, which then
    zeroes the model's table as the reference silently does), ``"segmentation"``
    (patch embedding and blocks only) and ``"full"`` (everything, final norm too).
    """
    if target not in _TARGET_GROUPS:
        raise ValueError(f"unknown load target {target!r} (expected one of {sorted(_TARGET_GROUPS)})")
    if isinstance(source, Mapping):
        origin, checkpoint = "<state dict>", source
    else:
        origin, checkpoint = str(source), _read_checkpoint(Path(source))
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{origin}: not a checkpoint dictionary (found {type(checkpoint).__name__})")
    try:
        weights = checkpoint_filter_fn(checkpoint)
    except ValueError as exc:
        raise CheckpointError(f"{origin}: {exc}") from exc

    wanted = _TARGET_GROUPS[target]
    own = model.state_dict()
    report = LoadReport(origin, target, _detect_variant(model, weights.get("pos_embed")))
    report.ignored = sorted(key for key in _unwrap(checkpoint) if _encoder_name(key) not in weights)
    selected: dict[str, Tensor] = {}
    for name, value in weights.items():
        if _group_of(name) not in wanted:
            report.ignored.append(name)
        elif name not in own:
            report.unexpected.append(name)
        elif value.shape != own[name].shape:
            report.shape_mismatches.append(f"{name} {tuple(value.shape)} vs model {tuple(own[name].shape)}")
        else:
            selected[name] = value
    report.ignored.sort()
    report.missing = [name for name in own if _group_of(name) in wanted and name not in weights]

    if report.shape_mismatches:
        shown = "; ".join(report.shape_mismatches[:4])
        more = f" (+{len(report.shape_mismatches) - 4} more)" if len(report.shape_mismatches) > 4 else ""
        raise CheckpointError(f"{origin}: shape mismatch for {shown}{more}")
    if target == "probe" and report.pos_embed_variant == "absent":
        if not allow_zero_pos_embed:
            what = "has no pos_embed" if "pos_embed" not in weights else "has an all-zero pos_embed"
            raise CheckpointError(
                f"{origin}: {what}; the linear probe would run without position information "
                "(set allow_zero_pos_embed to reproduce the reference's silent behaviour)"
            )
        selected["pos_embed"] = torch.zeros_like(own["pos_embed"])
    if not any(_group_of(name) == "blocks" for name in selected):
        raise CheckpointError(f"{origin}: no transformer block weights (blocks.*) found for this encoder")

    model.load_state_dict(selected, strict=False)
    report.loaded = sorted(name for name in selected if name in weights)
    return report


def read_checkpoint(path: str | PathLike) -> Any:
    """``torch.load`` with ``weights_only=True``; a one-line CheckpointError naming the file otherwise."""
    return _read_checkpoint(Path(path))


def read_checkpoint_dict(path: str | PathLike) -> Mapping[str, Any]:
    """:func:`read_checkpoint`, refusing anything but a dictionary with one CheckpointError line."""
    raw = read_checkpoint(path)
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: not a checkpoint dictionary (found {type(raw).__name__})")
    return raw


def infer_encoder_config(state_dict: Mapping[str, Any], *, num_heads: int | None = None) -> EncoderConfig:
    """The encoder architecture a checkpoint was saved from, read off its tensor shapes.

    Heads cannot be read from shapes (the qkv matrix is 3D × D for any count): ``num_heads``
    defaults to D / 64, the ViT convention (12 for ViT-B). The input size comes from the
    ``pos_embed`` rows, assuming a grid with equal token counts per axis (14³ for 224×224×112).
    """
    weights = checkpoint_filter_fn(state_dict)
    try:
        proj = weights["patch_embed.proj.weight"]
    except KeyError:
        raise ValueError("no patch_embed.proj.weight: not an encoder checkpoint") from None
    dim, in_chans, patch = proj.shape[0], proj.shape[1], tuple(int(p) for p in proj.shape[2:])
    depth = len({name.split(".")[1] for name in weights if name.startswith("blocks.")})
    fc1 = weights.get("blocks.0.mlp.fc1.weight")
    img_size = EncoderConfig().img_size
    if "pos_embed" in weights:
        side = round((weights["pos_embed"].shape[1] - 1) ** (1 / 3))
        if side**3 == weights["pos_embed"].shape[1] - 1:
            img_size = tuple(side * p for p in patch)
    return EncoderConfig(
        img_size=img_size,
        patch_size=patch,
        in_chans=in_chans,
        embed_dim=dim,
        depth=depth,
        num_heads=num_heads or max(1, dim // 64),
        mlp_ratio=(fc1.shape[0] / dim) if fc1 is not None else 4.0,
        qkv_bias="blocks.0.attn.qkv.bias" in weights,
    )


def read_encoder_checkpoint(path: str | PathLike) -> tuple[Mapping[str, Any], EncoderConfig]:
    """A checkpoint (``weights_only``) and the encoder architecture it was saved from.

    Shapes give everything but the head count; a file exported by simcrop-bench also stores its
    config (``simcrop_bench.encoder``), which then wins. Any problem is one CheckpointError line.
    """
    raw = read_checkpoint_dict(path)
    try:
        cfg = infer_encoder_config(raw)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    meta = raw.get("simcrop_bench")
    stored = meta.get("encoder") if isinstance(meta, Mapping) else None
    if isinstance(stored, Mapping):
        cfg = EncoderConfig.from_dict({**dataclasses.asdict(cfg), **stored})
    return raw, cfg
