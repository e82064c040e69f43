"""``external``: evaluate an existing encoder checkpoint without pretraining.

``simcrop-bench run --weights PATH --task ctrate_cls`` loads any checkpoint in the released SimCroP
format (``{"model": state_dict}``, timm key names; ``simcrop-method.md`` §10) — the authors' released
weights, or an encoder exported by another tool. The encoder architecture is read from the checkpoint
(its shapes, and the stored config when the file was exported by simcrop-bench; heads default to
D / 64 otherwise — set ``--set method.encoder.num_heads=N`` if that is wrong). The file's SHA-256 is
part of the config, so two checkpoints never share a leaderboard cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simcrop_bench.api import Method, MethodConfig
from simcrop_bench.registry import register_method


@dataclass
class ExternalConfig(MethodConfig):
    weights: str = ""  # set by --weights
    weights_sha256: str = ""  # filled in from the file: identifies the checkpoint in records and cells


@register_method("external")
class External(Method):
    """An existing encoder checkpoint (released SimCroP format), given with --weights PATH."""

    kind = "external"
    Config = ExternalConfig
    pretrains = False

    @classmethod
    def profile_overrides(cls, profile: str) -> dict:
        return {}  # the architecture comes from the checkpoint, in every profile

    @classmethod
    def configure(cls, config: ExternalConfig) -> None:
        from simcrop_bench.errors import ConfigError
        from simcrop_bench.run.weights import checkpoint_architecture
        from simcrop_bench.util.hashing import file_sha256

        if not config.weights:
            raise ConfigError("method external needs --weights PATH (an encoder checkpoint in the released format)")
        path = Path(config.weights)
        if not path.is_file():
            raise ConfigError(f"--weights {path}: no such file")
        config.weights_sha256 = file_sha256(path)
        config.encoder = checkpoint_architecture(path, config.weights_sha256)

    def provided_encoder(self):
        path = Path(self.config.weights)
        return path, {
            "method": "external",
            "source": str(path),
            "sha256": self.config.weights_sha256,
            "synthetic": False,
        }
