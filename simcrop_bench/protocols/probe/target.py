"""What a linear-probe task predicts and how it is scored (``protocol.md`` §8); no torch import."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simcrop_bench.stats.metrics import classification_scores


@dataclass(frozen=True)
class ProbeTarget:
    """``multilabel`` (C sigmoid outputs), ``binary`` (1 sigmoid output) or ``multiclass`` (C softmax outputs)."""

    kind: str
    label_names: tuple[str, ...]
    primary: str  # metric key of classification_scores: "auc" or "accuracy"
    column_subsets: tuple[tuple[str, tuple[int, ...]], ...] = ()  # secondary metrics on label subsets

    @property
    def num_outputs(self) -> int:
        return 1 if self.kind == "binary" else len(self.label_names)

    @property
    def multiclass(self) -> bool:
        return self.kind == "multiclass"

    def train_targets(self, labels) -> np.ndarray:
        """The loss's targets: class indices ``(N,)`` int64, or ``(N, outputs)`` float32 0/1."""
        labels = np.asarray(labels)
        if self.multiclass:
            return labels.reshape(-1).astype(np.int64)
        return labels.reshape(len(labels), -1).astype(np.float32)

    def truth(self, labels) -> np.ndarray:
        labels = np.asarray(labels)
        return labels.reshape(-1) if self.kind in ("multiclass", "binary") else labels.reshape(len(labels), -1)

    def score(self, labels, probs: np.ndarray):
        scores = probs.reshape(-1) if self.kind == "binary" else probs
        return classification_scores(self.kind, self.truth(labels), scores, self.label_names)
