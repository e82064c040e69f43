"""Which torch device a run computes on: resolved when first needed, never at start-up.

A run that needs no torch at all (a linear probe whose features are all cached) never asks,
so it never pays torch's import.
"""

from __future__ import annotations

import functools

from simcrop_bench.errors import ConfigError


@functools.cache
def resolve_device(requested: str) -> str:
    """``auto`` → ``cuda`` when a CUDA device is visible, else ``cpu``; a named CUDA device must exist."""
    if requested == "cpu":
        return "cpu"
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device={requested}: no CUDA device is available")
    return requested
