"""Linear probing of a frozen encoder (``protocol.md`` §6), shared by the four classification tasks.

``paper``: the published recipe — every step loads volumes through the random training chain
and runs the frozen encoder in training mode (drop-path active, H9); only the head learns,
with AdamW, the warm-up/cosine factor set before each update, gradient clipping and fp16
autocast with a 2^20 loss scale on CUDA; validation and stopping follow the H8 quirks
(:class:`ProbeController`). Selection and test features are extracted once (§6.6).

``cached`` (``lp-cached``): training features come from one deterministic pass too, so the
whole probe trains on cached features — a different, explicitly labelled protocol. Its head
trains in numpy (:mod:`.probe_head`), and the torch side (:mod:`.probe_torch`) is built only
when a feature is missing from the cache: a warm cached run never imports torch.

Test predictions go into the run folder (``per_case.csv``), so every metric and interval can
be recomputed from the record.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import numpy as np

from simcrop_bench.api import TaskContext, TaskResult
from simcrop_bench.models.config import LAYER_NORM_EPS
from simcrop_bench.protocols.probe.aggregate import aggregate_rows, unit_of
from simcrop_bench.protocols.probe.config import LinearProbeConfig
from simcrop_bench.protocols.probe.features import ProbeInput, cached, encoder_identity, feature_key
from simcrop_bench.protocols.probe.numpy_head import NumpyHead, feature_batches, layer_norm
from simcrop_bench.protocols.probe.schedule import train_head
from simcrop_bench.protocols.probe.target import ProbeTarget
from simcrop_bench.stats.bootstrap import bootstrap_interval
from simcrop_bench.stats.metrics import classification_scores
from simcrop_bench.util.hashing import file_sha256, ids_sha256
from simcrop_bench.util.progress import log, progress


class _FrozenEncoder:
    """The torch probe network, built on first use (a feature to extract, or the ``paper`` protocol)."""

    def __init__(self, ctx: TaskContext, cfg: LinearProbeConfig, num_outputs: int) -> None:
        self.ctx, self.cfg, self.num_outputs = ctx, cfg, num_outputs

    @functools.cached_property
    def parts(self):
        from simcrop_bench.protocols.probe.torch_trainer import build_probe

        return build_probe(self.ctx, self.cfg, self.num_outputs)

    @property
    def built(self) -> bool:
        return "parts" in self.__dict__

    @property
    def amp(self) -> bool:
        return self.cfg.amp and self.parts[2].type == "cuda"

    def origin(self) -> dict[str, Any]:
        """How this run extracts features (stored with them in the cache)."""
        from simcrop_bench.protocols.probe.torch_trainer import extraction_origin

        return extraction_origin(self.parts[2], self.amp)

    def extract(self, paths, chain, on_batch) -> np.ndarray:
        from simcrop_bench.protocols.probe.torch_trainer import extract

        model, _, device = self.parts
        model.eval()
        return extract(
            model.pooled,
            paths,
            chain,
            batch_size=self.cfg.eval_batch_size,
            device=device,
            amp=self.amp,
            num_workers=self.cfg.num_workers,
            on_batch=on_batch,
        )


def run_linear_probe(
    ctx: TaskContext, cfg: LinearProbeConfig, splits, target: ProbeTarget, *, stored_ras: bool = True
) -> TaskResult:
    """Train and evaluate the probe on ``splits`` (:class:`ClassificationSplits`).

    ``stored_ras=False`` reads arrays as stored instead of checking they are RAS (LUNA16's layout).
    """
    cfg.validate(ctx.encoder.patch_size)
    unit = unit_of(cfg.aggregate, splits.grouping, splits.scan_of)  # refuses before any work
    started = time.time()
    encoder = _FrozenEncoder(ctx, cfg, target.num_outputs)
    probe_input = ProbeInput(tuple(ctx.encoder.img_size), transpose_dhw=splits.transpose_dhw, assert_ras=stored_ras)
    checkpoint_sha = ctx.encoder_sha256 or (file_sha256(ctx.encoder_checkpoint) if ctx.encoder_checkpoint else None)
    identity = encoder_identity(ctx.encoder, checkpoint_sha, ctx.seed)
    feature_dir = ctx.cache_dir / "probe-features" if ctx.cache_dir is not None else None
    hits: dict[str, bool] = {}
    origins: dict[str, dict] = {}

    def features(name: str, rows) -> np.ndarray:
        key = feature_key(identity, probe_input.evaluation_spec(), rows.paths)
        task = bar.add_task(f"features {name}", total=len(rows.paths), status="")
        entry = cached(
            feature_dir,
            key,
            lambda: encoder.extract(
                rows.paths, probe_input.evaluation_chain(), on_batch=lambda n: bar.advance(task, n)
            ),
            encoder.origin,
        )
        bar.remove_task(task)
        hits[name], origins[name] = entry.hit, entry.origin
        return entry.features

    targets = target.train_targets(splits.train.labels)
    loop = dict(n_train=len(targets), kind=target.kind, val_truth=target.truth(splits.val.labels))
    controller, best, head_impl = None, None, "sklearn"
    with progress() as bar:
        val_feats, test_feats = features("selection", splits.val), features("test", splits.test)
        if cfg.probe == "cached":
            # The frozen LayerNorm of fixed features is fixed: normalised once, not at every step.
            train_x, val_x, test_x = (
                layer_norm(f, LAYER_NORM_EPS) for f in (features("train", splits.train), val_feats, test_feats)
            )
            if cfg.head == "logreg":
                test_probs = _fit_logreg(train_x, targets, test_x, target, cfg, ctx.seed)
            else:
                head_impl = "numpy"
                head = NumpyHead(train_x.shape[1], target.num_outputs, cfg, multiclass=target.multiclass, seed=ctx.seed)
                controller, best = train_head(
                    head,
                    feature_batches(train_x, targets, cfg.batch_size, ctx.seed),
                    cfg,
                    val_features=val_x,
                    bar=bar,
                    **loop,
                )
                if best is not None:
                    head.restore(best)
                test_probs = head.predict(test_x)
        else:
            from simcrop_bench.protocols.probe.torch_trainer import TorchHeadTrainer, volume_batches

            head_impl = "torch"
            model, _, device = encoder.parts
            trainer = TorchHeadTrainer(model, cfg, device, target)
            batches = volume_batches(model, probe_input, splits.train.paths, targets, cfg, ctx.seed, device)
            controller, best = train_head(trainer, batches, cfg, val_features=val_feats, bar=bar, **loop)
            if best is not None:
                trainer.restore(best)
            test_probs = trainer.predict(test_feats)

    load_report = encoder.parts[1] if encoder.built else None
    test_rows, aggregation = splits.test, None
    if cfg.aggregate != "volume":
        test_rows, test_probs, conflicts = aggregate_rows(splits.test, test_probs, unit, target.multiclass)
        aggregation = {
            "unit": cfg.aggregate,
            "volumes": len(splits.test),
            "units": len(test_rows),
            "units_with_disagreeing_labels": conflicts,
        }
    scores = target.score(test_rows.labels, test_probs)
    metrics = dict(scores.metrics)
    per_class = {"test": scores.per_class}
    truth = target.truth(test_rows.labels)
    for name, columns in target.column_subsets:
        subset = classification_scores(target.kind, truth, test_probs, target.label_names, columns=columns)
        metrics[name] = subset.metrics[target.primary]
    intervals = {}
    if cfg.bootstrap_resamples:
        boot_scores = test_probs.reshape(-1) if target.kind == "binary" else test_probs
        intervals[target.primary] = bootstrap_interval(
            target.primary,
            truth,
            boot_scores,
            test_rows.groups,
            n_resamples=cfg.bootstrap_resamples,
            seed=cfg.bootstrap_seed,
        )
    details = {
        "probe": cfg.probe,
        "head": cfg.head,
        "variant": cfg.variant or "lp-paper",
        "splits": {"train": len(splits.train.ids), "selection": len(splits.val.ids), "test": len(splits.test.ids)},
        # Reports flag fractions whose training lists are the same (e.g. a twin's 1 % and 10 % lists).
        "train_ids_sha256": ids_sha256(splits.train.ids),
        "aggregation": aggregation,
        "selection_on_test": splits.selection_on_test,
        "grouping": splits.grouping,
        "split_source": splits.source,
        "warnings": list(splits.warnings),
        "feature_cache_hits": hits,
        "feature_origins": origins,
        "metric_details": scores.details,
        "head_impl": head_impl,
        "amp_impl": "native" if head_impl == "torch" and encoder.amp else "off",
        "encoder_built": encoder.built,  # False: every feature came from the cache, torch never loaded
        "encoder_load": None if load_report is None else dataclasses.asdict(load_report),
        "probe_wall_time_s": round(time.time() - started, 2),
    }
    if controller is not None:
        details.update(
            {
                "steps": controller.step_count,
                "epochs": controller.epoch,
                "stop_reason": controller.stop_reason,
                "selected_step": controller.best_step,
                "selection_score": controller.best,
                "history": controller.history,
                "selection": (
                    "best on selection set"
                    if best is not None
                    else "final head (no validation ran)"
                    if not controller.history
                    else "final head (no selection score above the initial 0)"
                ),
            }
        )
    for warning in splits.warnings:
        log(f"[yellow]{warning}[/yellow]")
    return TaskResult(
        metrics=metrics,
        per_class=per_class,
        per_case=_prediction_rows(test_rows, target, test_probs),
        details=details,
        intervals=intervals,
        variant=cfg.variant,
    )


def _fit_logreg(
    x_train: np.ndarray, y: np.ndarray, x_test: np.ndarray, target: ProbeTarget, cfg, seed: int
) -> np.ndarray:
    """scikit-learn logistic regression on the normalised cached features (``lp-cached-logreg``)."""
    from sklearn.linear_model import LogisticRegression

    columns = [y] if target.multiclass else [y[:, c] for c in range(y.shape[1])]
    out = []
    for column in columns:
        if len(np.unique(column)) < 2:  # one label value in training: predict it with certainty
            if target.multiclass:
                return np.eye(len(target.label_names))[np.full(len(x_test), int(column[0]))]
            out.append(np.full((len(x_test), 1), float(column[0])))
            continue
        fit = LogisticRegression(C=cfg.logreg_c, max_iter=2000, random_state=seed).fit(x_train, column)
        probs = fit.predict_proba(x_test)
        if target.multiclass:  # classes absent from training get probability 0
            full = np.zeros((len(x_test), len(target.label_names)))
            full[:, fit.classes_.astype(int)] = probs
            return full
        out.append(probs[:, 1:2])
    return np.concatenate(out, axis=1)


def _prediction_rows(rows, target: ProbeTarget, probs: np.ndarray) -> list[dict[str, Any]]:
    """One row per test volume: id, group, truth and probabilities (the metric's whole input)."""
    names = target.label_names
    out = []
    for i, (vid, group) in enumerate(zip(rows.ids, rows.groups)):
        row: dict[str, Any] = {"case": vid, "group": group}
        if target.multiclass:
            row["label"] = int(np.asarray(rows.labels).reshape(-1)[i])
            row.update({f"p:{name}": float(probs[i, c]) for c, name in enumerate(names)})
        else:
            truth = np.asarray(rows.labels).reshape(len(rows.ids), -1)[i]
            row.update({f"y:{name}": int(truth[c]) for c, name in enumerate(names)})
            row.update({f"p:{name}": float(probs[i, c]) for c, name in enumerate(names)})
        out.append(row)
    return out
