"""simcrop-bench: compare 3D chest-CT pretraining methods against SimCroP and regenerate paper tables.

The package root holds only the public contracts (:mod:`~simcrop_bench.api`), the registry,
the typed configuration and the user-facing errors; everything else lives in a folder per concept
(``cli``, ``run``, ``jobs``, ``reporting``, ``stats``, ``data``, ``protocols``, ``models``,
``pretraining``, ``simcrop``, ``baselines``, ``bench``, ``util``). Importing it is cheap: no torch.
"""
