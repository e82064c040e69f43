"""Volumes → pooled encoder features, with an on-disk cache (``protocol.md`` §6.6).

Evaluation features (eval mode, deterministic centre crop) do not change while the head trains,
so they are extracted once. On disk they are keyed by everything that determines them: the
encoder's weights (checkpoint SHA-256, or the seed of a random initialisation), its
architecture, the deterministic transform chain with its parameters, and each source file's
signature — a change in any of them is a cache miss, never a stale hit.

No torch import: a probe whose features are all cached looks them up, and trains its head
(:mod:`.probe_head`), without loading torch; extraction lives in :mod:`.probe_torch`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simcrop_bench.config import stable_hash
from simcrop_bench.data.intensity import HU_WINDOW
from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.util.atomic import atomic_path, write_json
from simcrop_bench.util.hashing import source_signature
from simcrop_bench.util.locks import BUILD_S, file_lock

FEATURE_CACHE_VERSION = 2  # 2: float32 .npy files


@dataclasses.dataclass(frozen=True)
class ProbeInput:
    """How a volume becomes an encoder input: the ROI and whether the array is stored (D, H, W)."""

    roi: tuple[int, int, int]
    transpose_dhw: bool = False
    assert_ras: bool = True  # False: the stored array as it is (LUNA16 keeps LPS affines; the reference ignores them)

    # The MONAI chains are imported on use: a probe whose features are all cached never loads MONAI.
    def training_chain(self):
        from simcrop_bench.data.volume_transforms import training_transforms

        return training_transforms(
            self.roi, gaussian_noise=True, transpose_dhw=self.transpose_dhw, assert_ras=self.assert_ras
        )

    def evaluation_chain(self):
        from simcrop_bench.data.volume_transforms import evaluation_transforms

        return evaluation_transforms(self.roi, transpose_dhw=self.transpose_dhw, assert_ras=self.assert_ras)

    def evaluation_spec(self) -> dict[str, Any]:
        """What determines the evaluation chain's output (the cache key's transform part)."""
        return {
            "steps": "load,channel,transpose?,assert-ras?,window,centre-crop,reflect-pad",
            "roi": list(self.roi),
            "transpose_dhw": self.transpose_dhw,
            "assert_ras": self.assert_ras,
            "hu_window": list(HU_WINDOW),
        }


def encoder_identity(encoder: EncoderConfig, checkpoint_sha256: str | None, init_seed: int) -> dict[str, Any]:
    """What determines the frozen encoder's weights and architecture."""
    weights = {"checkpoint_sha256": checkpoint_sha256} if checkpoint_sha256 else {"random_init_seed": init_seed}
    architecture = {k: v for k, v in dataclasses.asdict(encoder).items() if k != "drop_path_rate"}  # eval: no drop-path
    return {**weights, "architecture": architecture}


def feature_key(identity: dict[str, Any], spec: dict[str, Any], paths: Sequence[Path]) -> str:
    return stable_hash(
        {
            "version": FEATURE_CACHE_VERSION,
            "encoder": identity,
            "transform": spec,
            "sources": [source_signature(p) for p in paths],
        },
        length=20,
    )


@dataclasses.dataclass(frozen=True)
class CachedFeatures:
    features: np.ndarray  # float32 (N, D), in path order
    hit: bool  # read from the cache, not computed by this run
    origin: dict[str, Any]  # how they were computed (device, autocast, torch version, when); {} if unknown


def cached(
    cache_dir: Path | None, key: str, compute: Callable[[], np.ndarray], origin: Callable[[], dict[str, Any]] = dict
) -> CachedFeatures:
    """``compute()`` once per key. ``origin()``, asked after computing, is stored next to the features
    (``<key>.json``) so that a run reusing them records where they came from: the key names what
    determines the features, the origin how this copy was computed (fp16 autocast on CUDA vs fp32)."""
    if cache_dir is None:
        features = compute()
        return CachedFeatures(features, False, origin())
    path, sidecar = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    hit = _read_entry(path, sidecar)
    if hit is not None:
        return hit
    # Jobs that miss the same entry together compute it once: the others wait, then read it.
    with file_lock(cache_dir / ".locks" / f"{key}.lock", timeout=BUILD_S, what=f"feature cache entry {key}"):
        hit = _read_entry(path, sidecar)
        return hit if hit is not None else _compute_entry(path, sidecar, compute, origin)


def _read_entry(path: Path, sidecar: Path) -> CachedFeatures | None:
    if not path.is_file():
        return None
    try:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError):  # a damaged entry is recomputed, not trusted
        return None
    try:
        return CachedFeatures(features, True, json.loads(sidecar.read_text()))
    except (OSError, ValueError):
        return CachedFeatures(features, True, {})


def _compute_entry(
    path: Path, sidecar: Path, compute: Callable[[], np.ndarray], origin: Callable[[], dict[str, Any]]
) -> CachedFeatures:
    features = np.ascontiguousarray(compute(), dtype=np.float32)
    described = origin()
    write_json(sidecar, described)  # first: features without their origin are never left behind
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, features, allow_pickle=False)
    return CachedFeatures(features, False, described)
