"""The CT intensity window (``protocol.md`` §6.2), in an import-free module.

The transform chains apply it; the probe's feature-cache key names it without loading MONAI.
"""

HU_WINDOW = (-1000.0, 1000.0)
