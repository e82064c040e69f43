"""Linear probing of a frozen encoder (``protocol.md`` §6), shared by the four classification tasks.

``paper``: the published recipe — every step loads volumes through the random training chain
and runs the frozen encoder in training mode (drop-path active, H9); only the head learns,
with AdamW, the warm-up/cosine factor set before each update, gradient clipping and fp16
autocast with a 2^20 loss scale on CUDA; validation and stopping follow the H8 quirks
(:class:`ProbeController`). Selection and test features are extracted once (§6.6).

``cached`` (``lp-cached``): training features come from one deterministic pass too, so the
whole probe trains on cached tensors — a different, explicitly labelled protocol.

Test predictions go into the run folder (``per_case.csv``), so every metric and interval can
be recomputed from the record.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..api import TaskContext, TaskResult
from ..hashing import file_sha256
from ..metrics import classification_scores, primary_score
from ..progress import log, progress
from ..statistics import bootstrap_interval
from .probe_aggregate import aggregate_rows, unit_of
from .probe_config import LinearProbeConfig
from .probe_features import ProbeInput, cached, encoder_identity, extract, feature_key
from .probe_model import LinearProbe
from .probe_schedule import ProbeController, probe_lr_factor


@dataclass(frozen=True)
class ProbeTarget:
    """What the task predicts: ``multilabel`` (C sigmoid outputs), ``binary`` (1) or ``multiclass`` (C softmax)."""

    kind: str
    label_names: tuple[str, ...]
    primary: str  # metric key of classification_scores: "auc" or "accuracy"
    column_subsets: tuple[tuple[str, tuple[int, ...]], ...] = ()  # secondary metrics on label subsets

    @property
    def num_outputs(self) -> int:
        return 1 if self.kind == "binary" else len(self.label_names)

    def loss(self) -> nn.Module:
        return nn.CrossEntropyLoss() if self.kind == "multiclass" else nn.BCEWithLogitsLoss()

    def targets(self, labels: np.ndarray) -> torch.Tensor:
        if self.kind == "multiclass":
            return torch.as_tensor(np.asarray(labels).reshape(-1), dtype=torch.long)
        return torch.as_tensor(np.asarray(labels).reshape(len(labels), -1), dtype=torch.float32)

    def probabilities(self, logits: torch.Tensor) -> np.ndarray:
        probs = logits.float().softmax(dim=1) if self.kind == "multiclass" else logits.float().sigmoid()
        return probs.numpy()

    def truth(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels)
        return labels.reshape(-1) if self.kind in ("multiclass", "binary") else labels.reshape(len(labels), -1)

    def score(self, labels: np.ndarray, probs: np.ndarray):
        scores = probs.reshape(-1) if self.kind == "binary" else probs
        return classification_scores(self.kind, self.truth(labels), scores, self.label_names)


def _selection_score(target: ProbeTarget, labels: np.ndarray, probs: np.ndarray) -> float:
    value = primary_score(target.kind, target.truth(labels), probs)
    return float(value) if np.isfinite(value) else 0.0  # undefined (one label value): never an improvement


class _HeadTrainer:
    """AdamW on the head, the §6.3 factor set before each update, clipping, fp16 scaling on CUDA."""

    def __init__(self, model: LinearProbe, cfg: LinearProbeConfig, device: torch.device, target: ProbeTarget):
        self.model, self.cfg, self.device, self.target = model, cfg, device, target
        self.amp = cfg.amp and device.type == "cuda"
        self.optimizer = torch.optim.AdamW(model.head.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                                           weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler(device.type, init_scale=2.0**20, enabled=self.amp)
        self.loss_fn = target.loss()
        self.updates = 0

    def update(self, pooled: torch.Tensor, labels: torch.Tensor) -> float:
        self.updates += 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr * probe_lr_factor(self.updates, self.cfg.warmup_steps, self.cfg.num_steps)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss = self.loss_fn(self.model.classify(pooled), labels.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.head.parameters(), self.cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    @torch.no_grad()
    def predict(self, pooled: torch.Tensor) -> np.ndarray:
        self.model.eval()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            logits = self.model.classify(pooled.to(self.device))
        return self.target.probabilities(logits.cpu())


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run the block on ``n`` intra-op threads (None: unchanged). A head on cached features does
    ~10 µs of arithmetic per op; on a busy machine every multi-threaded op instead waits ~10 ms
    for its thread team, so one thread is both the fastest and the most predictable."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_head(trainer: _HeadTrainer, batches: Callable[[], Any], n_train: int, val_feats: torch.Tensor,
                val_labels: np.ndarray, bar) -> tuple[ProbeController, dict | None]:
    """The §6.4 loop: passes over the training batches until the controller stops."""
    cfg, target = trainer.cfg, trainer.target
    controller = ProbeController(
        steps_per_epoch=math.ceil(n_train / cfg.batch_size), num_steps=cfg.num_steps, patience=cfg.patience,
        start_epoch=cfg.start_epoch, ties_improve=target.kind != "multiclass",
    )
    best_head = None
    task = bar.add_task("probe", total=None, status="")
    while True:
        for pooled, labels in batches():
            loss = trainer.update(pooled, labels)
            bar.update(task, advance=1, status=f"step {controller.step_count + 1} loss {loss:.4f}")
            if controller.step():
                score = _selection_score(target, val_labels, trainer.predict(val_feats))
                if controller.report(score):
                    best_head = copy.deepcopy(trainer.model.head.state_dict())
        if controller.end_of_pass():
            break
    bar.remove_task(task)
    return controller, best_head


def run_linear_probe(ctx: TaskContext, cfg: LinearProbeConfig, splits, target: ProbeTarget, *,
                     stored_ras: bool = True) -> TaskResult:
    """Train and evaluate the probe on ``splits`` (:class:`ClassificationSplits`).

    ``stored_ras=False`` reads arrays as stored instead of checking they are RAS (LUNA16's layout).
    """
    cfg.validate(ctx.encoder.patch_size)
    unit = unit_of(cfg.aggregate, splits.grouping, splits.scan_of)  # refuses before any work
    started = time.time()
    device = torch.device(ctx.device)
    torch.manual_seed(ctx.seed)  # random-init encoders (scratch) are drawn from the run's seed
    model = LinearProbe(ctx.encoder, target.num_outputs, drop_path_rate=cfg.drop_path_rate,
                        head_init_std=cfg.head_init_std)
    load_report = model.load_encoder(ctx.encoder_checkpoint) if ctx.encoder_checkpoint else None
    model.to(device)

    probe_input = ProbeInput(tuple(ctx.encoder.img_size), transpose_dhw=splits.transpose_dhw,
                             assert_ras=stored_ras)
    checkpoint_sha = ctx.encoder_sha256 or (file_sha256(ctx.encoder_checkpoint) if ctx.encoder_checkpoint else None)
    identity = encoder_identity(ctx.encoder, checkpoint_sha, ctx.seed)
    feature_dir = ctx.cache_dir / "probe-features" if ctx.cache_dir is not None else None
    amp = cfg.amp and device.type == "cuda"
    hits: dict[str, bool] = {}

    def features(name: str, rows) -> torch.Tensor:
        model.eval()
        key = feature_key(identity, probe_input.evaluation_spec(), rows.paths)
        task = bar.add_task(f"features {name}", total=len(rows.paths), status="")
        feats, hits[name] = cached(feature_dir, key, lambda: extract(
            model.pooled, rows.paths, probe_input.evaluation_chain(), batch_size=cfg.eval_batch_size,
            device=device, amp=amp, num_workers=cfg.num_workers, on_batch=lambda n: bar.advance(task, n)))
        bar.remove_task(task)
        return feats

    with progress() as bar:
        val_feats, test_feats = features("selection", splits.val), features("test", splits.test)
        labels = target.targets(splits.train.labels)
        generator = torch.Generator().manual_seed(ctx.seed)
        if cfg.probe == "cached":
            train_feats = features("train", splits.train)
        if cfg.head == "logreg":
            controller, best_head = None, None
            test_probs = _fit_logreg(model, train_feats, labels, test_feats, target, cfg, ctx.seed)
        else:
            trainer = _HeadTrainer(model, cfg, device, target)
            if cfg.probe == "cached":
                batches = _feature_batches(train_feats, labels, cfg.batch_size, generator, device)
            else:
                batches = _volume_batches(model, probe_input, splits.train.paths, labels, cfg, generator, ctx.seed,
                                          device)
            with _torch_threads(1 if cfg.probe == "cached" and device.type == "cpu" else None):
                controller, best_head = _train_head(trainer, batches, len(labels), val_feats, splits.val.labels, bar)
                if best_head is not None:
                    model.head.load_state_dict(best_head)
                test_probs = trainer.predict(test_feats)

    test_rows, aggregation = splits.test, None
    if cfg.aggregate != "volume":
        test_rows, test_probs, conflicts = aggregate_rows(splits.test, test_probs, unit, target.kind == "multiclass")
        aggregation = {"unit": cfg.aggregate, "volumes": len(splits.test), "units": len(test_rows),
                       "units_with_disagreeing_labels": conflicts}
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
        intervals[target.primary] = bootstrap_interval(target.primary, truth, boot_scores, test_rows.groups,
                                                       n_resamples=cfg.bootstrap_resamples, seed=cfg.bootstrap_seed)
    details = {
        "probe": cfg.probe, "head": cfg.head, "variant": cfg.variant or "lp-paper",
        "splits": {"train": len(splits.train.ids), "selection": len(splits.val.ids), "test": len(splits.test.ids)},
        "aggregation": aggregation,
        "selection_on_test": splits.selection_on_test, "grouping": splits.grouping,
        "split_source": splits.source, "warnings": list(splits.warnings),
        "feature_cache_hits": hits, "metric_details": scores.details,
        "amp_impl": "native" if amp else "off", "encoder_load": None if load_report is None else dataclasses.asdict(load_report),
        "probe_wall_time_s": round(time.time() - started, 2),
    }
    if controller is not None:
        details.update({"steps": controller.step_count, "epochs": controller.epoch, "stop_reason": controller.stop_reason,
                        "selected_step": controller.best_step, "selection_score": controller.best,
                        "history": controller.history,
                        "selection": ("best on selection set" if best_head is not None else
                                      "final head (no validation ran)" if not controller.history else
                                      "final head (no selection score above the initial 0)")})
    for warning in splits.warnings:
        log(f"[yellow]{warning}[/yellow]")
    return TaskResult(metrics=metrics, per_class=per_class, per_case=_prediction_rows(test_rows, target, test_probs),
                      details=details, intervals=intervals, variant=cfg.variant)


def _feature_batches(feats: torch.Tensor, labels: torch.Tensor, batch_size: int, generator, device):
    """``lp-cached``: shuffled batches of the cached training features."""
    def batches():
        order = torch.randperm(len(feats), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield feats[index].to(device), labels[index]
    return batches


def _volume_batches(model: LinearProbe, probe_input: ProbeInput, paths, labels: torch.Tensor,
                    cfg: LinearProbeConfig, generator, seed: int, device):
    """``paper``: every batch loaded through the random training chain and encoded with drop-path active (H9)."""
    from torch.utils.data import DataLoader

    from .probe_features import VolumeDataset

    chain = probe_input.training_chain()
    chain.set_random_state(seed=seed)
    loader = DataLoader(_Zip(VolumeDataset(paths, chain), labels), batch_size=cfg.batch_size,
                        shuffle=True, drop_last=False, num_workers=cfg.num_workers, generator=generator)

    def batches():
        for x, y in loader:
            model.train()
            yield model.pooled(x.to(device)), y
    return batches


class _Zip(torch.utils.data.Dataset):
    """Pairs each volume with its row of the label tensor."""

    def __init__(self, volumes, labels) -> None:
        self.volumes, self.labels = volumes, labels

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, index: int):
        return self.volumes[index], self.labels[index]


def _fit_logreg(model: LinearProbe, train_feats, labels, test_feats, target: ProbeTarget, cfg, seed: int) -> np.ndarray:
    """scikit-learn logistic regression on the normalised cached features (``lp-cached-logreg``)."""
    from sklearn.linear_model import LogisticRegression

    with torch.no_grad():
        x_train = model.fc_norm(train_feats).numpy()
        x_test = model.fc_norm(test_feats).numpy()
    y = labels.numpy()
    columns = [y] if target.kind == "multiclass" else [y[:, c] for c in range(y.shape[1])]
    out = []
    for column in columns:
        if len(np.unique(column)) < 2:  # one label value in training: predict it with certainty
            if target.kind == "multiclass":
                return np.eye(len(target.label_names))[np.full(len(x_test), int(column[0]))]
            out.append(np.full((len(x_test), 1), float(column[0])))
            continue
        fit = LogisticRegression(C=cfg.logreg_c, max_iter=2000, random_state=seed).fit(x_train, column)
        probs = fit.predict_proba(x_test)
        if target.kind == "multiclass":  # classes absent from training get probability 0
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
        if target.kind == "multiclass":
            row["label"] = int(np.asarray(rows.labels).reshape(-1)[i])
            row.update({f"p:{name}": float(probs[i, c]) for c, name in enumerate(names)})
        else:
            truth = np.asarray(rows.labels).reshape(len(rows.ids), -1)[i]
            row.update({f"y:{name}": int(truth[c]) for c, name in enumerate(names)})
            row.update({f"p:{name}": float(probs[i, c]) for c, name in enumerate(names)})
        out.append(row)
    return out
