"""The shared shape of the linear-probe tasks (``protocol.md`` §6); no torch import.

A task file states its dataset, labels, metric and the published per-cell hyperparameters; this base
class reads the dataset's published split files (which also give the task's fractions) and runs the
probe. A task on a subset of a dataset's labels is one file: the labels are the columns it keeps.
"""

from __future__ import annotations

from typing import Any, ClassVar

from simcrop_bench.api import Task
from simcrop_bench.data.splits.published import SPLIT_FILES, classification_split_set
from simcrop_bench.errors import RegistryError
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
    split_set: ClassVar[str] = ""  # the published split files read (set from ``dataset``)
    # Multi-label: the split files' columns kept, in ``labels`` order, as the files spell them; None: ``labels``.
    label_columns: ClassVar[tuple[str, ...] | None] = None
    profiles = {"demo": DEMO_PROBE}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A task on a dataset reads its published split files; its fractions are theirs unless it names some."""
        super().__init_subclass__(**kwargs)
        if cls.dataset:
            cls.split_set = classification_split_set(cls.dataset)
            published = SPLIT_FILES[cls.split_set].fractions
            if "fractions" not in vars(cls):
                cls.fractions = published
            elif not set(cls.fractions) <= set(published):
                raise RegistryError(
                    f"task {cls.__name__}: fractions {cls.fractions}; the {cls.dataset} split files publish {published}"
                )
            columns, header = cls.columns(), SPLIT_FILES[cls.split_set].header[1:]
            missing = [c for c in columns or () if c not in header]
            if missing:
                raise RegistryError(
                    f"task {cls.__name__}: {', '.join(map(repr, missing))} not among the label columns of the "
                    f"{cls.dataset} split files: {', '.join(header)}"
                )
            if columns is not None and len(columns) != len(cls.labels):
                raise RegistryError(f"task {cls.__name__}: {len(columns)} label_columns for {len(cls.labels)} labels")

    @classmethod
    def columns(cls) -> tuple[str, ...] | None:
        """The label columns read (multi-label), or None: the files' one label column (class ids, binary)."""
        if cls.target_kind != "multilabel":
            return None
        return tuple(cls.label_columns or cls.labels)

    def run(self, ctx):
        from simcrop_bench.data.splits.classification import load_classification_splits
        from simcrop_bench.protocols.probe.linear_probe import run_linear_probe
        from simcrop_bench.protocols.probe.target import ProbeTarget

        splits = load_classification_splits(
            self.split_set,
            ctx.data_root,
            ctx.fraction,
            ctx.protocol,
            columns=self.columns(),
            task=self.name,
            val_fraction=self.config.val_fraction,
            purge_test_patients=self.config.purge_test_patients_from_train,
        )
        target = ProbeTarget(self.target_kind, tuple(self.labels), self.metric, self.column_subsets)
        return run_linear_probe(ctx, self.config, splits, target, stored_ras=self.stored_ras)
