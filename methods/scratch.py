"""``scratch``: no pretraining — the shared encoder starts from random weights.

The lower bound every pretraining method must beat. Its encoder is initialised by
the downstream task with the run's seed, so seeds vary the initialisation too.
"""

from __future__ import annotations

from simcrop_bench.api import Method, MethodConfig
from simcrop_bench.registry import register_method


@register_method("scratch")
class Scratch(Method):
    """Random initialisation of the shared 3D ViT: the no-pretraining baseline."""

    kind = "no-pretraining"
    Config = MethodConfig
    pretrains = False  # the task draws the encoder weights from the run's seed
