"""Collapse checks for the learning-signal study: how spread out are a method's frozen features?

On the study's test volumes, the probe's own feature (mean of the last block's patch tokens, then the probe's
fresh LayerNorm, :class:`~simcrop_bench.protocols.probe.model.LinearProbe`) is computed for each encoder, and
summarised by its effective rank (Roy & Vetterli 2007: exp of the entropy of the normalised singular values of
the centred feature matrix; 1 = every volume on one line, the embedding width = isotropic) and the mean cosine
similarity between the features of two different volumes (near 1 = all volumes look alike to a linear head).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def effective_rank(features: np.ndarray) -> float:
    centred = features - features.mean(axis=0, keepdims=True)
    singular = np.linalg.svd(centred, compute_uv=False)
    total = singular.sum()
    if total <= 0:
        return 1.0
    p = singular[singular > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def mean_pairwise_cosine(features: np.ndarray) -> float:
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    gram = unit @ unit.T
    n = len(unit)
    return float((gram.sum() - np.trace(gram)) / (n * (n - 1))) if n > 1 else float("nan")


def probe_features(encoder_cfg, checkpoint: Path | None, volumes: list[Path], init_seed: int = 42) -> np.ndarray:
    """The probe's normalised feature of each volume (eval mode); a random encoder from ``init_seed`` without a
    checkpoint (``scratch``)."""
    import torch

    from simcrop_bench.data.volume_transforms import apply_chain, evaluation_transforms
    from simcrop_bench.protocols.probe.model import LinearProbe

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        probe = LinearProbe(encoder_cfg, 1, drop_path_rate=0.0, head_init_std=2e-5)
    if checkpoint is not None:
        probe.load_encoder(checkpoint)
    probe.eval()
    chain = evaluation_transforms(tuple(encoder_cfg.img_size))
    rows = []
    with torch.no_grad():
        for path in volumes:
            image = apply_chain(chain, {"image": str(path)})["image"].as_tensor().float().unsqueeze(0)
            rows.append(probe.fc_norm(probe.pooled(image))[0].numpy())
    return np.stack(rows)


def collapse_checks(records: list[dict], twin: Path, limit: int = 64) -> dict[str, dict[str, float]]:
    """Per method (its first record): effective rank and mean pairwise cosine of its features on up to ``limit``
    test volumes of the twin."""
    import json

    from simcrop_bench.data.ctrate import simcrop_volume_path
    from simcrop_bench.models.config import EncoderConfig

    manifest = json.loads((twin / "synthetic_meta" / "manifest.json").read_text())
    names = [v["volume"] for v in manifest["volumes"] if v["split"] == "valid"][:limit]
    volumes = [simcrop_volume_path(twin, name) for name in names]
    out: dict[str, dict[str, float]] = {}
    for record in records:
        method = record["method"]
        if method in out:
            continue
        encoder = EncoderConfig.from_dict(record["config"]["method"]["encoder"])
        checkpoint = Path(record["checkpoint"]["path"]) if record.get("checkpoint") else None
        features = probe_features(encoder, checkpoint, volumes, init_seed=int(record["seed"]))
        out[method] = {
            "effective_rank": effective_rank(features),
            "width": float(features.shape[1]),
            "mean_cosine": mean_pairwise_cosine(features),
            "volumes": float(len(volumes)),
        }
    return out


GROUNDING_DRAWS = 8  # masks per volume for the training-view score


def grounding_views(record: dict, twin: Path, draws: int = GROUNDING_DRAWS) -> dict[str, dict[str, float]]:
    """The grounding score of a pretrained SimCroP-family method on every held-out volume of the twin, on the
    evaluation view (every patch visible, as logged during pretraining) and on the training view (the masked pass
    that alignment trains on, ``draws`` masks per volume), for its trained model (the pretraining's final
    ``checkpoint.pt``) and for a fresh initialisation (seed 0) of the same model."""
    import torch

    from simcrop_bench import registry
    from simcrop_bench.config import apply_overrides
    from simcrop_bench.data.synthetic.finding_regions import region_cases
    from simcrop_bench.pretraining.training_checkpoint import (
        CHECKPOINT_NAME,
        load_model_state,
        load_training_checkpoint,
    )
    from simcrop_bench.simcrop.grounding import grounding_score, grounding_set
    from simcrop_bench.simcrop.train import pretraining_parts

    cls = registry.get_method(record["method"])
    config = cls.Config()
    apply_overrides(config, cls.profile_overrides(record["profile"]), section="method")
    build, _ = pretraining_parts(config.encoder, config.simcrop, twin)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        fresh = build()
    trained = build()
    load_model_state(trained, load_training_checkpoint(Path(record["checkpoint"]["path"]).parent / CHECKPOINT_NAME))
    cases = region_cases(twin, "valid")
    data = grounding_set(trained, cases)
    out = {}
    for name, model in (("fresh", fresh), ("trained", trained)):
        out[f"{name}/full"] = grounding_score(model, data)
        out[f"{name}/training view"] = grounding_score(model, data, masked_draws=draws)
    out["volumes"] = {"n": float(len(cases)), "mask_ratio": float(trained.simcrop_cfg.mask_ratio)}
    return out
