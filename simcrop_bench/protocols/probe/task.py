"""The shared shape of the four linear-probe tasks (``protocol.md`` §6); no torch import.

A task file states its dataset, labels, fractions, metric and the published per-cell
hyperparameters; this base class runs the probe on the task's splits.
"""

from __future__ import annotations

from typing import Any, ClassVar

from simcrop_bench.api import Task
from simcrop_bench.protocols.probe.config import LinearProbeConfig

# demo: the published recipe's code path at CPU scale on the tiny twins (~15 training volumes). It
# trains 120 updates instead of thousands, so the learning rate is 10× the published one: at 3e-3 the
# head barely leaves its near-zero initialisation and predicts the training prior for every volume.
DEMO_PROBE: dict[str, Any] = {
    "batch_size": 4,
    "eval_batch_size": 8,
    "lr": 3e-2,
    "warmup_steps": 10,
    "num_steps": 120,
    "patience": 5,
}


def cell(batch: int, lr: float, warmup: int, num_steps: int, patience: int, eval_batch: int) -> dict[str, Any]:
    """One row of the §6.5 table as config overrides."""
    return {
        "batch_size": batch,
        "lr": lr,
        "warmup_steps": warmup,
        "num_steps": num_steps,
        "patience": patience,
        "eval_batch_size": eval_batch,
    }


class LinearProbeTask(Task):
    """Base of the classification tasks: splits of ``protocol.md`` §5 → linear probe of §6."""

    kind = "classification"
    Config = LinearProbeConfig
    target_kind: ClassVar[str] = "multilabel"  # multilabel | binary | multiclass
    column_subsets: ClassVar[tuple[tuple[str, tuple[int, ...]], ...]] = ()  # secondary metrics on label subsets
    stored_ras: ClassVar[bool] = True  # False: the layout is not stored RAS and the reference reads arrays as stored
    profiles = {"demo": DEMO_PROBE}

    def run(self, ctx):
        from simcrop_bench.data.splits.classification import load_classification_splits
        from simcrop_bench.protocols.probe.linear_probe import run_linear_probe
        from simcrop_bench.protocols.probe.target import ProbeTarget

        splits = load_classification_splits(
            self.name,
            ctx.data_root,
            ctx.fraction,
            ctx.protocol,
            val_fraction=self.config.val_fraction,
            purge_test_patients=self.config.purge_test_patients_from_train,
        )
        target = ProbeTarget(self.target_kind, tuple(self.labels), self.metric, self.column_subsets)
        return run_linear_probe(ctx, self.config, splits, target, stored_ras=self.stored_ras)
