"""Training recipes of the baselines (torch-free: method files import it at module level).

The ``paper`` profile uses the :class:`~simcrop_bench.pretraining.config.PretrainConfig` defaults,
i.e. SimCroP's recipe (``simcrop-method.md`` §5.4: 200 epochs, effective batch 448, peak lr 1.5e-4,
20 warm-up epochs), so every method sees the same optimisation budget. ``DEMO_RECIPE`` is the
CPU-sized recipe of SimCroP's own ``demo`` profile (``methods/simcrop.py``), for the same reason.
"""

from __future__ import annotations

DEMO_RECIPE: dict[str, object] = {
    "train.epochs": 6,
    "train.batch_size": 2,
    "train.accum_steps": 1,
    "train.lr": 5e-4,
    "train.warmup_epochs": 1.0,
    "train.precision": "fp32",
    "train.checkpoint_every": 10,
}
