"""Small heads of SimCroP: the FeatureHead projection (§2.4 step 2, §2.5) and the untied MLM head (§2.4 step 6)."""

from __future__ import annotations

from torch import Tensor, nn

BERT_LAYER_NORM_EPS = 1e-12


class FeatureHead(nn.Module):
    """``Linear₂(LN(GELU(Linear₁(u))))`` with LN eps 1e-12; names as the reference (§8).

    ``in_dim`` may differ from ``out_dim`` when the text encoder's width differs from the model's (§2.2).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.dense_to_hidden = nn.Linear(in_dim, out_dim)
        self.act = nn.GELU()
        self.LayerNorm = nn.LayerNorm(out_dim, eps=BERT_LAYER_NORM_EPS)
        self.dense_to_output = nn.Linear(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense_to_output(self.LayerNorm(self.act(self.dense_to_hidden(x))))


class PredictionTransform(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.LayerNorm = nn.LayerNorm(dim, eps=BERT_LAYER_NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class MLMPredictionHead(nn.Module):
    """Linear, GELU, LayerNorm, then an ordinary untied ``decoder`` Linear with bias to the vocabulary (§2.4 note).

    Keys ``predictions.transform.{dense,LayerNorm}`` and ``predictions.decoder.{weight,bias}``.
    """

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.transform = PredictionTransform(dim)
        self.decoder = nn.Linear(dim, vocab_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.transform(x))


class MLMHead(nn.Module):
    """Container giving the reference's ``cls.predictions.*`` key layout."""

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.predictions = MLMPredictionHead(dim, vocab_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.predictions(x)
