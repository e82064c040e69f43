"""§2.1 initialisation: ImageNet-MAE ViT weights on top of the random init (``method.simcrop.init_encoder``).

The reference loads a merged checkpoint after its xavier/normal init: the ImageNet **MAE ViT-B/16** weights
(``mae_pretrain_vit_base.pth``) for ``blocks.*`` and ``norm.*`` only — keys starting with ``decoder``,
``patch``, ``mask_token``, ``cls_token`` or ``pos_embed`` are skipped — plus CXR-BERT under ``bert_encoder.``.
Only the patch embedding depends on the input dimensionality, so the 2-D blocks fit the 3-D encoder as they
are and the 2-D patch kernel is *skipped, not inflated* (a 3-D checkpoint's patch embedding is skipped too:
the rule is by key). The CXR-BERT half is the text encoder itself: ``method.simcrop.text_encoder_path``
pointing at a local CXR-BERT directory.

Accepted files: MAE/timm-style (``{"model": sd}`` or a bare ``sd``, optional ``module.``/``encoder.``
prefixes), including our released format. Loading goes through
:func:`simcrop_bench.models.vit3d.load_encoder_weights`; a file that does not provide every ``blocks.*`` and
``norm.*`` weight of the model, provides blocks the model lacks, or has other shapes is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simcrop_bench.models.vit3d import (
    CheckpointError,
    ViT3D,
    checkpoint_filter_fn,
    load_encoder_weights,
    read_checkpoint_dict,
)

# §2.1: the keys the merged checkpoint contributes to the encoder
LOADED_PREFIXES = ("blocks.", "norm.")
PAPER_INIT = "ImageNet MAE ViT-B/16 blocks.* and norm.* (mae_pretrain_vit_base.pth, §2.1)"


def init_record(path: str | Path | None) -> dict[str, Any]:
    """What a pretraining record states about the encoder's initialisation (random, or the file and its hash)."""
    if not path:
        return {"kind": "random", "matches_paper": False, "paper": PAPER_INIT}
    from simcrop_bench.util.hashing import file_sha256

    return {
        "kind": "checkpoint",
        "path": str(path),
        "sha256": file_sha256(Path(path)),
        "matches_paper": True,  # the user names the §2.1 file; its hash says which one it was
        "paper": PAPER_INIT,
    }


def load_mae_init(model: ViT3D, path: str | Path) -> dict[str, Any]:
    """Load ``blocks.*`` and ``norm.*`` of ``path`` into ``model``; returns what was loaded and skipped."""
    raw = read_checkpoint_dict(path)
    try:
        encoder = checkpoint_filter_fn(raw)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    kept = {k: v for k, v in encoder.items() if k.startswith(LOADED_PREFIXES)}
    wanted = [k for k in model.state_dict() if k.startswith(LOADED_PREFIXES)]
    missing = [k for k in wanted if k not in kept]
    unexpected = [k for k in kept if k not in wanted]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not fit the encoder's blocks/norm ({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); check depth and width"
        )
    report = load_encoder_weights(model, {"model": kept}, target="full")  # raises on shape mismatches
    skipped = sorted(k for k in encoder if k not in kept)
    patch = encoder.get("patch_embed.proj.weight")
    return {
        "path": str(path),
        "loaded": report.loaded,
        "skipped_encoder_keys": skipped,
        "patch_embed_in_file": list(patch.shape) if patch is not None else None,
        "summary": f"{path}: {len(report.loaded)} blocks/norm tensors loaded (§2.1); skipped "
        f"{', '.join(sorted({k.split('.')[0] for k in skipped})) or 'nothing'}",
    }
