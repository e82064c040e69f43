"""Studies: fixed, pre-registered experiments that the harness runs end to end (``simcrop-bench study ...``).

:mod:`.signal` — the learning-signal study of issue #15 (design: ``docs/study-signal.md``): does any pretraining
objective beat random initialisation on a larger CT-RATE twin, and does SimCroP ground its sentences?
:mod:`.signal_report` writes its results file.
"""
