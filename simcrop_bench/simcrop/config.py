"""Configuration of the SimCroP pretraining model and objectives (no torch import).

Every number and switch that ``simcrop-method.md`` parameterises lives here: the objective
hyper-parameters (§4), the decoder sizes (§2.3, §2.4), the text encoder (§2.2), the
faithful-vs-clean switches of §9 (dotted spec names ↔ fields in :data:`SWITCH_FIELDS`)
and the ablation switches of §7. ``variant="clean"`` is a preset that flips every §9
switch; :meth:`SimCroPConfig.resolved` applies it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from simcrop_bench.errors import ConfigError

Variant = Literal["faithful", "clean"]
FusionMode = Literal["full", "xattn_only", "gap_only", "none"]

# §9 switch name → (config field, faithful value, clean value).
SWITCH_FIELDS: dict[str, tuple[str, Any, Any]] = {
    "mlm.labels": ("mlm_labels", "all_positions", "masked_only"),  # F1
    "mlm.mask_padding": ("mlm_mask_padding", True, False),  # F2
    "mim.loss_norm": ("mim_loss_norm", "all_voxels", "masked_voxels"),  # F3
    "mim.norm_pix": ("mim_norm_pix", False, False),  # F4: optional, off in both presets
    "align.padded_slots": ("align_padded_slots", "in_denominator", "masked"),  # F5, F7
    "align.per_report_mean": ("align_per_report_mean", False, True),  # F6
    "text_encoder.train_mode_dropout": ("text_encoder_train_mode_dropout", True, False),  # F9
    "report.join": ("report_join", "concat", "space"),  # F10
}


@dataclass
class SimCroPConfig:
    """SimCroP method settings; the encoder itself is an ``EncoderConfig`` held by the caller.

    Decoder widths of ``None`` follow the encoder's ``embed_dim`` (768 in the paper
    profile, §2.3/§2.4); heads must divide the width, so small profiles scale them down.
    """

    # ---- objectives (§3, §4)
    mask_ratio: float = 0.75  # mim.mask_ratio
    mlm_mask_prob: float = 0.75  # mlm.mask_prob
    topk: int = 32  # align.topk (fixed K; "adaptive" is ASAP-only and not implemented here)
    tau: float = 0.07  # align.tau
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # (MIM, MLM, align)

    # ---- vision decoder (§2.3)
    vision_decoder_dim: int | None = None
    vision_decoder_depth: int = 4
    vision_decoder_heads: int = 16

    # ---- report decoder (§2.4): one fusion layer + BERT layers
    text_decoder_dim: int | None = None
    text_decoder_layers: int = 6
    text_decoder_heads: int = 6
    text_decoder_ffn: int = 1536
    text_decoder_dropout: float = 0.1  # hidden and attention-probability dropout

    # ---- initialisation (§2.1): ImageNet-MAE ViT weights for blocks.* and norm.* (None: random init only)
    init_encoder: str | None = None

    # ---- text encoder (§2.2)
    # A local BERT directory; a CXR-BERT directory (microsoft/BiomedVLP-CXR-BERT-specialized) gives the
    # publication's text side (§2.1 "CXR-BERT weights under bert_encoder."). None = the pinned offline MiniLM.
    text_encoder_path: str | None = None
    max_text_len: int = 512
    # in-memory cache of the unmasked findings' encoder states, used only without dropout (clean F9); 0 = off
    text_feature_cache_mb: int = 1024

    # ---- §9 switches (faithful defaults; `variant="clean"` flips them in `resolved()`)
    variant: Variant = "faithful"
    mlm_labels: Literal["all_positions", "masked_only"] = "all_positions"
    mlm_mask_padding: bool = True
    mim_loss_norm: Literal["all_voxels", "masked_voxels"] = "all_voxels"
    mim_norm_pix: bool = False
    align_padded_slots: Literal["in_denominator", "masked"] = "in_denominator"
    align_per_report_mean: bool = False
    text_encoder_train_mode_dropout: bool = True
    report_join: Literal["concat", "space"] = "concat"

    # ---- ablations (§7)
    alignment: Literal["on", "off"] = "on"  # ablation.alignment
    fusion: FusionMode = "full"  # ablation.fusion

    # explicit overrides by switch name that survive the clean preset, e.g. {"mlm.labels": "all_positions"}
    overrides: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> SimCroPConfig:
        """A validated copy with the ``variant`` preset and ``overrides`` applied."""
        if self.variant not in ("faithful", "clean"):
            raise ConfigError(f"simcrop.variant must be 'faithful' or 'clean', got {self.variant!r}")
        cfg = replace(self)
        if self.variant == "clean":
            for attr, _, clean in SWITCH_FIELDS.values():
                setattr(cfg, attr, clean)
        for name, value in self.overrides.items():
            if name not in SWITCH_FIELDS:
                raise ConfigError(f"unknown SimCroP switch {name!r} (known: {', '.join(SWITCH_FIELDS)})")
            setattr(cfg, SWITCH_FIELDS[name][0], value)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name in ("mask_ratio", "mlm_mask_prob"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ConfigError(f"simcrop.{name} must lie in (0, 1), got {value}")
        if not isinstance(self.topk, int) or isinstance(self.topk, bool) or self.topk < 1:
            raise ConfigError(f"simcrop.topk must be a positive integer, got {self.topk!r}")
        if self.tau <= 0:
            raise ConfigError(f"simcrop.tau must be positive, got {self.tau}")
        if len(self.loss_weights) != 3 or any(w < 0 for w in self.loss_weights):
            raise ConfigError(f"simcrop.loss_weights must be three non-negative floats, got {self.loss_weights}")
        if self.alignment not in ("on", "off"):
            raise ConfigError(f"ablation.alignment must be 'on' or 'off', got {self.alignment!r}")
        if self.fusion not in ("full", "xattn_only", "gap_only", "none"):
            raise ConfigError(f"ablation.fusion must be full/xattn_only/gap_only/none, got {self.fusion!r}")
        allowed = {
            "mlm_labels": ("all_positions", "masked_only"),
            "mim_loss_norm": ("all_voxels", "masked_voxels"),
            "align_padded_slots": ("in_denominator", "masked"),
            "report_join": ("concat", "space"),
        }
        for attr, values in allowed.items():
            if getattr(self, attr) not in values:
                raise ConfigError(f"simcrop.{attr} must be one of {values}, got {getattr(self, attr)!r}")
        if not isinstance(self.text_feature_cache_mb, int) or self.text_feature_cache_mb < 0:
            raise ConfigError(
                f"simcrop.text_feature_cache_mb must be a non-negative integer, got {self.text_feature_cache_mb!r}"
            )
        if self.max_text_len < 2:
            raise ConfigError(f"simcrop.max_text_len must be at least 2, got {self.max_text_len}")

    def switches(self) -> dict[str, Any]:
        """The §9 switches by their spec names, for result files."""
        return {name: getattr(self, attr) for name, (attr, _, _) in SWITCH_FIELDS.items()}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
