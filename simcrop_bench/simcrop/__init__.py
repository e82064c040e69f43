"""SimCroP pretraining: model, objectives and text handling (``simcrop-method.md``).

Modules: :mod:`.config` (settings and §9 switches, torch-free), :mod:`.text` (frozen text encoder, text rules),
:mod:`.masking` (image and report masking), :mod:`.losses` (MIM, MLM, alignment), :mod:`.heads`,
:mod:`.fusion` (fusion layer and report decoder), :mod:`.model` (``SimCroPModel``), :mod:`.text_cache` (cached
findings states without dropout), :mod:`.init` (§2.1 ImageNet-MAE initialisation), :mod:`.data` and :mod:`.train`.
Importing this package
stays torch-free; import the submodules for the model.
"""

from simcrop_bench.simcrop.config import SWITCH_FIELDS, SimCroPConfig

__all__ = ["SWITCH_FIELDS", "SimCroPConfig"]
