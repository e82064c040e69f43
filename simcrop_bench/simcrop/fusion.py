"""Cross-granularity fusion and the report decoder (``simcrop-method.md`` §2.4, §3.6, ablations §7).

Fusion layer, per text position::

    A  = LN₁(Q⁰ + Drop(W_o · MHSA(Q⁰; text padding mask) + b_o))      attention.*
    C  = MHA(query = A, key = value = M)                               cross_self_attention.{query,key,value}
    U  = C + (W_g · g + b_g)                                           gap_mlp (g = mean of M)
    O  = LN₂(A + Drop(W_u · U + b_u))                                  out_layer.*
    Y⁰ = LN₃(O + Drop(W₂ · GELU(W₁ · O + b₁) + b₂))                     intermediate.*, output.*

Ablations change only U: ``xattn_only`` U = C, ``gap_only`` U = W_g g + b_g, ``none`` U = 0; the modules a
mode does not use are not built. The report decoder runs the fusion layer, ``text_decoder_layers``
``transformers`` ``BertLayer``\\ s and the untied MLM head, under the reference's key names
(``bert.fusion_layer``, ``bert.encoder.layer.{i}``, ``cls.predictions``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import (
    BertAttention,
    BertIntermediate,
    BertLayer,
    BertOutput,
    BertSelfOutput,
)

from simcrop_bench.simcrop.heads import BERT_LAYER_NORM_EPS, MLMHead

FUSION_MODES = ("full", "xattn_only", "gap_only", "none")


def text_decoder_config(dim: int, heads: int, ffn: int, dropout: float, vocab_size: int) -> BertConfig:
    """BERT settings of the report decoder (§2.4): GELU, LayerNorm eps 1e-12, given dropout for both kinds."""
    if dim % heads:
        raise ValueError(f"text decoder width {dim} is not divisible by its {heads} heads")
    return BertConfig(
        hidden_size=dim,
        num_attention_heads=heads,
        intermediate_size=ffn,
        hidden_act="gelu",
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        layer_norm_eps=BERT_LAYER_NORM_EPS,
        vocab_size=vocab_size,
        attn_implementation="sdpa",
    )


def additive_padding_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``(B, L)`` 1/0 padding mask → ``(B, 1, 1, L)`` additive mask for the BERT attention modules."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class CrossAttention(nn.Module):
    """Words attend to visual memory tokens: separate q/k/v Linears, probability dropout, no output projection."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, text: Tensor, memory: Tensor) -> Tensor:
        batch, length, dim = text.shape

        def split(x: Tensor) -> Tensor:
            return x.view(batch, -1, self.heads, dim // self.heads).transpose(1, 2)

        out = nn.functional.scaled_dot_product_attention(  # no mask on the image side (§3.6)
            split(self.query(text)),
            split(self.key(memory)),
            split(self.value(memory)),
            dropout_p=self.dropout if self.training else 0.0,
        )
        return out.transpose(1, 2).reshape(batch, length, dim)


class FusionLayer(nn.Module):
    """The single fusion layer of §3.6, with the image path chosen by ``mode`` (§7 ``ablation.fusion``)."""

    def __init__(self, config: BertConfig, mode: str = "full") -> None:
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f"unknown fusion mode {mode!r} (expected one of {FUSION_MODES})")
        self.mode = mode
        dim = config.hidden_size
        self.attention = BertAttention(config)
        if mode in ("full", "xattn_only"):
            self.cross_self_attention = CrossAttention(
                dim, config.num_attention_heads, config.attention_probs_dropout_prob
            )
        if mode in ("full", "gap_only"):
            self.gap_mlp = nn.Linear(dim, dim)
        self.out_layer = BertSelfOutput(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def image_term(self, text: Tensor, memory: Tensor | None) -> Tensor:
        """``U`` of §3.6 for this layer's mode; ``memory`` may be ``None`` only in mode ``none``."""
        if self.mode == "none":
            return torch.zeros_like(text)  # MLM becomes text-only
        assert memory is not None, "fusion needs the visual memory tokens"
        gap = self.gap_mlp(memory.mean(dim=1, keepdim=True)) if self.mode in ("full", "gap_only") else None
        if self.mode == "gap_only":
            return gap.expand_as(text)  # the cross-attention output replaced by zeros
        cross = self.cross_self_attention(text, memory)
        return cross if gap is None else cross + gap  # GAP token added to every text position

    def forward(self, words: Tensor, padding_mask: Tensor, memory: Tensor | None) -> Tensor:
        attended = self.attention(words, attention_mask=padding_mask)[0]
        fused = self.out_layer(self.image_term(attended, memory), attended)
        return self.output(self.intermediate(fused), fused)


class _DecoderEncoder(nn.Module):
    def __init__(self, config: BertConfig, layers: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config, layer_idx=i) for i in range(layers))


class _DecoderTrunk(nn.Module):
    def __init__(self, config: BertConfig, layers: int, mode: str) -> None:
        super().__init__()
        self.fusion_layer = FusionLayer(config, mode)
        self.encoder = _DecoderEncoder(config, layers)


class ReportDecoder(nn.Module):
    """Fusion layer → BERT layers (text padding mask) → MLM head; registered as ``bert_decoder`` (§8).

    Its input is the projected frozen-encoder features ``Q⁰``; it has no word/position embeddings of its own.
    """

    def __init__(self, config: BertConfig, layers: int, mode: str = "full") -> None:
        super().__init__()
        self.bert = _DecoderTrunk(config, layers, mode)
        self.cls = MLMHead(config.hidden_size, config.vocab_size)

    def forward(self, words: Tensor, attention_mask: Tensor, memory: Tensor | None) -> Tensor:
        """Vocabulary logits ``(B, L, V)`` for ``words`` ``(B, L, D)`` and visual ``memory`` ``(B, M, D)``."""
        mask = additive_padding_mask(attention_mask, words.dtype)
        hidden = self.bert.fusion_layer(words, mask, memory)
        for layer in self.bert.encoder.layer:
            out = layer(hidden, attention_mask=mask)
            hidden = out[0] if isinstance(out, tuple) else out  # tensor in transformers 5, tuple in 4.x
        return self.cls(hidden)
