"""The generic, method-agnostic pretraining loop (``simcrop-method.md`` §5.4).

Every pretraining method (SimCroP, MAE, ...) supplies a model whose forward returns
``{"loss": total, **named_components}`` and a dataset; :func:`loop.pretrain` does the
rest: AdamW with the no-decay rule, warm-up + half-cosine schedule, gradient
accumulation, mixed precision, DDP, scalar logs, atomic checkpoints and exact resume.

Modules (one concept each; import them directly, this package imports no torch):

* :mod:`.optim`        — parameter groups and the learning-rate schedule;
* :mod:`.sampling`     — the per-epoch data order and mid-epoch skipping;
* :mod:`.rng`          — seeding, RNG capture/restore, per-sample seeding;
* :mod:`.distributed`  — process-group helpers and :func:`launch_local`;
* :mod:`.training_checkpoint` — the atomic ``checkpoint.pt`` with everything resume needs;
* :mod:`.scalars`      — ``metrics.jsonl`` plus TensorBoard (CSV fallback);
* :mod:`.preemption`   — SIGTERM / SIGUSR1 → checkpoint and stop;
* :mod:`.config`       — :class:`PretrainConfig` (the §5.4 recipe) and the shared demo recipe (torch-free);
* :mod:`.loop`         — :func:`pretrain`;
* :mod:`.check_method` — ``simcrop-bench check-method``: a method against the contract in seconds.
"""
