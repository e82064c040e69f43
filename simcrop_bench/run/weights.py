"""``simcrop-bench weights``: look inside, import and export encoder checkpoints.

Every load goes through the converter next to the architecture
(:func:`simcrop_bench.models.vit3d.checkpoint_filter_fn`) and ``weights_only=True``;
imports refuse what would load silently wrong (a missing or all-zero ``pos_embed``, shape
mismatches, no transformer blocks) unless explicitly allowed.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

from simcrop_bench.errors import UserError
from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.run.encoder_store import ENCODER_FILE, META_FILE
from simcrop_bench.run.preflight import check_name, check_results_root, confined
from simcrop_bench.util.atomic import atomic_path, staged_dir, write_json
from simcrop_bench.util.hashing import file_sha256


def checkpoint_architecture(path: Path, sha256: str) -> EncoderConfig:
    """The encoder architecture a checkpoint was saved from, remembered by the file's content hash.

    Reading it imports torch and unpickles the file (seconds for a ViT-B), yet it depends on the
    bytes alone: it is read once per content, and ``run --weights`` on a warm feature cache then
    needs no torch at all. A file that fails to read is never remembered.
    """
    from simcrop_bench.data.roots import cache_dir

    memo = cache_dir() / "checkpoint-architectures" / f"{sha256}.json"
    if memo.is_file():
        try:
            return EncoderConfig.from_dict(json.loads(memo.read_text()))
        except (ValueError, TypeError):  # damaged: read the checkpoint again
            pass
    from simcrop_bench.models.vit3d import read_encoder_checkpoint

    _, cfg = read_encoder_checkpoint(path)  # weights_only: a foreign pickle cannot run code
    write_json(memo, dataclasses.asdict(cfg))
    return cfg


def inspect_checkpoint(path: Path) -> dict[str, Any]:
    """What a checkpoint holds: container keys, encoder architecture, missing/unexpected encoder keys."""
    import torch

    from simcrop_bench.models.vit3d import checkpoint_filter_fn, infer_encoder_config, read_checkpoint

    raw = read_checkpoint(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: not a checkpoint dictionary")
    state = raw.get("model", raw.get("state_dict", raw))
    tensors = {k: v for k, v in state.items() if torch.is_tensor(v)}
    encoder = checkpoint_filter_fn(raw)
    try:
        cfg = infer_encoder_config(raw)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None
    expected = _expected_keys(cfg)
    prefixes = Counter(k.split(".")[0] for k in tensors if k not in encoder and k.split(".", 1)[-1] not in encoder)
    from simcrop_bench.models.pos_embed import detect_pos_embed_variant

    pos = encoder.get("pos_embed")
    return {
        "file": str(path),
        "sha256": file_sha256(path),
        "container_keys": sorted(raw) if any(k in raw for k in ("model", "state_dict")) else None,
        "tensors": len(tensors),
        "encoder_tensors": len(encoder),
        "encoder": dataclasses.asdict(cfg),
        "missing_encoder_keys": sorted(set(expected) - set(encoder)),
        "unexpected_encoder_keys": sorted(set(encoder) - set(expected)),
        "other_prefixes": dict(prefixes.most_common()),
        "pos_embed_variant": detect_pos_embed_variant(None if pos is None else pos.float().numpy(), grid=cfg.grid())
        if pos is not None
        else "absent",
        "metadata": raw.get("simcrop_bench"),
    }


def _expected_keys(cfg) -> list[str]:
    """Encoder key names for ``cfg``: they depend on depth and qkv bias only, so a 4-wide twin suffices."""
    from simcrop_bench.models.vit3d import ViT3D

    tiny = dataclasses.replace(cfg, embed_dim=4, num_heads=1, mlp_ratio=1.0, img_size=cfg.patch_size)
    return list(ViT3D(tiny).state_dict())


def _encoder_for(path: Path):
    """The checkpoint, the encoder config read off its shapes, and a fresh encoder of that config."""
    from simcrop_bench.models.vit3d import ViT3D, read_encoder_checkpoint

    raw, cfg = read_encoder_checkpoint(path)
    return raw, cfg, ViT3D(cfg)


def import_checkpoint(path: Path, results: Path, name: str, *, allow_zero_pos_embed: bool = False) -> Path:
    """Validate a released-format checkpoint and store its encoder under ``results/checkpoints/imported/``."""
    # Checked before the checkpoint is read: the name becomes a folder that is replaced whole.
    check_name(name, "--name")
    store = check_results_root(results) / "checkpoints" / "imported"
    folder = confined(store / name, store, "--name")

    import torch

    from simcrop_bench.models.vit3d import export_released, load_encoder_weights

    raw, cfg, model = _encoder_for(path)
    report = load_encoder_weights(model, raw, target="probe", allow_zero_pos_embed=allow_zero_pos_embed)
    missing = [k for k in report.missing if not k.startswith("norm.")]
    if missing:
        raise UserError(f"{path}: missing encoder keys {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    load_encoder_weights(model, raw, target="full", allow_zero_pos_embed=allow_zero_pos_embed)
    with staged_dir(folder) as work:
        with atomic_path(work / ENCODER_FILE) as tmp:
            torch.save(export_released(model, {"imported_from": str(path)}), tmp)
        write_json(
            work / META_FILE,
            {
                "method": "imported",
                "name": name,
                "source": str(path),
                "source_sha256": file_sha256(path),
                "sha256": file_sha256(work / ENCODER_FILE),
                "encoder": dataclasses.asdict(cfg),
                "pos_embed_variant": report.pos_embed_variant,
                "synthetic": False,
            },
        )
    return folder / ENCODER_FILE


def export_checkpoint(path: Path, out: Path) -> dict[str, Any]:
    """Write the encoder of any checkpoint (native training file or released) in the released format."""
    import torch

    from simcrop_bench.models.vit3d import export_released, load_encoder_weights

    raw, cfg, model = _encoder_for(path)
    report = load_encoder_weights(model, raw, target="full")
    if report.missing:
        raise UserError(f"{path}: cannot export, missing encoder keys {', '.join(report.missing[:5])}")
    metadata = {"exported_from": str(path), **(raw.get("simcrop_bench") or {})}
    with atomic_path(out) as tmp:
        torch.save(export_released(model, metadata), tmp)
    return {"out": str(out), "sha256": file_sha256(out), "encoder_tensors": len(report.loaded)}
