"""Analytic training FLOPs of one SimCroP sample, from the encoder and method configs (no torch import).

Counts multiply-adds as 2 FLOPs in every matrix product (linear layers, patch embedding, attention scores and
their weighted sums) and ignores element-wise work (norms, softmax, GELU, losses), which is a few per cent.
Backward costs twice the forward of the trainable parts; the frozen text encoder runs forward only (twice per
sample: the unmasked findings for the alignment and the masked report for MLM, §2.2), and reports are padded to
``max_text_len`` as the reference tokenizer does. :func:`cores_per_gpu` turns the total into the loader rate a GPU
needs; ``bench pretrain`` reuses :func:`simcrop_sample_flops` for MFU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.simcrop.config import SimCroPConfig

# Assumed accelerator: H100 SXM dense bf16 peak (NVIDIA datasheet, 989 TFLOP/s without sparsity) at 40 % utilisation.
H100_BF16_PEAK_FLOPS = 989e12
ASSUMED_MFU = 0.40


@dataclass(frozen=True)
class TextEncoderShape:
    """The frozen BERT's shape; defaults are CXR-BERT / BERT-base (the paper's text encoder)."""

    hidden: int = 768
    layers: int = 12
    ffn: int = 3072
    vocab: int = 30522


def linear(tokens: int, d_in: int, d_out: int) -> float:
    return 2.0 * tokens * d_in * d_out


def attention(queries: int, keys: int, dim: int) -> float:
    """Scores ``QKᵀ`` and the weighted sum ``PV`` (the projections are counted as :func:`linear`)."""
    return 2 * 2.0 * queries * keys * dim


def transformer_layer(tokens: int, dim: int, ffn: int) -> float:
    """Pre- or post-norm self-attention layer: q, k, v and output projections, attention, two-layer MLP."""
    return 4 * linear(tokens, dim, dim) + attention(tokens, tokens, dim) + 2 * linear(tokens, dim, ffn)


def feature_head(tokens: int, d_in: int, d_out: int) -> float:
    return linear(tokens, d_in, d_out) + linear(tokens, d_out, d_out)


@dataclass(frozen=True)
class SampleFlops:
    """Forward FLOPs of one sample by part; ``trainable`` parts pay backward = 2 × forward."""

    encoder: float  # patch embedding of every patch + ViT blocks on the visible tokens and cls
    vision_decoder: float  # embedding, blocks on all tokens + cls, voxel prediction
    text_encoder_per_call: float  # frozen BERT, forward only
    text_encoder_calls: int
    report_decoder: float  # feature projections, fusion layer, BERT layers, MLM head, alignment heads

    @property
    def trainable_forward(self) -> float:
        return self.encoder + self.vision_decoder + self.report_decoder

    @property
    def frozen_forward(self) -> float:
        return self.text_encoder_per_call * self.text_encoder_calls

    @property
    def train_step(self) -> float:
        """Forward + backward of one sample."""
        return 3.0 * self.trainable_forward + self.frozen_forward


def simcrop_sample_flops(
    encoder: EncoderConfig | None = None,
    simcrop: SimCroPConfig | None = None,
    text: TextEncoderShape | None = None,
) -> SampleFlops:
    """FLOPs of one SimCroP training sample at ``encoder.img_size`` (defaults: the paper profile)."""
    enc, cfg, text = encoder or EncoderConfig(), (simcrop or SimCroPConfig()).resolved(), text or TextEncoderShape()
    dim, enc_ffn = enc.embed_dim, int(enc.embed_dim * enc.mlp_ratio)
    patches = math.prod(enc.grid())
    patch_voxels = math.prod(enc.patch_size) * enc.in_chans
    visible = int(patches * (1 - cfg.mask_ratio))  # the reference keeps int(N · (1 − ratio)) tokens
    encoder_flops = linear(patches, patch_voxels, dim) + enc.depth * transformer_layer(visible + 1, dim, enc_ffn)

    vdim = cfg.vision_decoder_dim or dim
    vision = (
        linear(visible + 1, dim, vdim)
        + cfg.vision_decoder_depth * transformer_layer(patches + 1, vdim, int(vdim * enc.mlp_ratio))
        + linear(patches, vdim, patch_voxels)
    )

    length, tdim = cfg.max_text_len, cfg.text_decoder_dim or dim
    bert = text.layers * transformer_layer(length, text.hidden, text.ffn)
    fusion = 0.0
    if cfg.fusion != "none":
        fusion += linear(visible, dim, tdim)  # bert_mlp: visual memory tokens
    if cfg.fusion in ("full", "xattn_only"):  # cross-attention q, k, v (no output projection)
        fusion += linear(length, tdim, tdim) + 2 * linear(visible, tdim, tdim) + attention(length, visible, tdim)
    if cfg.fusion in ("full", "gap_only"):
        fusion += linear(1, tdim, tdim)
    fusion_layer = (
        4 * linear(length, tdim, tdim)  # self-attention q, k, v and output
        + attention(length, length, tdim)
        + linear(length, tdim, tdim)  # out_layer
        + 2 * linear(length, tdim, cfg.text_decoder_ffn)
        + fusion
    )
    report = (
        feature_head(length, text.hidden, tdim)  # bert_feature_proj
        + fusion_layer
        + cfg.text_decoder_layers * transformer_layer(length, tdim, cfg.text_decoder_ffn)
        + linear(length, tdim, tdim)
        + linear(length, tdim, text.vocab)  # MLM head: transform + untied decoder
    )
    calls = 1
    if cfg.alignment == "on":
        calls = 2
        report += feature_head(length, text.hidden, dim) + feature_head(visible, dim, dim)  # alignment heads
    return SampleFlops(encoder_flops, vision, bert, calls, report)


def volumes_per_second_needed(sample: SampleFlops, peak: float = H100_BF16_PEAK_FLOPS, mfu: float = ASSUMED_MFU):
    """Training samples per second one accelerator consumes at ``mfu`` of ``peak``."""
    return peak * mfu / sample.train_step


def cores_per_gpu(volumes_per_s_per_core: float, sample: SampleFlops | None = None) -> float:
    """CPU cores a loader at ``volumes_per_s_per_core`` needs to keep one assumed H100 busy."""
    return volumes_per_second_needed(sample or simcrop_sample_flops()) / volumes_per_s_per_core
