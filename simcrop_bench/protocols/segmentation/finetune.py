"""UNETR fine-tuning and evaluation (``protocol.md`` §7), shared by ``lung_seg`` and ``btcv_seg``.

Pipeline: deterministic preprocessing once per case (kept in memory) → random
crops and augmentation per step → DiceCE training with a per-epoch warm-up +
cosine schedule → sliding-window validation for model selection → test Dice on
the selected model, per class and per case, with the predicted masks saved so the
metric can be recomputed from the run folder.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai import transforms as mt
from monai.data import DataLoader, PersistentDataset, list_data_collate
from monai.data.utils import pickle_hashing
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.utils import set_determinism
from torch.utils.data import RandomSampler

from simcrop_bench.api import TaskContext, TaskResult
from simcrop_bench.data.formats.decathlon import SegSplits, case_id
from simcrop_bench.data.formats.nifti import write_nifti_gz
from simcrop_bench.data.loading import EpochKeys, loader_options
from simcrop_bench.errors import DataError
from simcrop_bench.models.unetr import UNETR, load_pretrained_encoder
from simcrop_bench.models.vit3d import ViT3D
from simcrop_bench.pretraining.preemption import stop_on_signals
from simcrop_bench.pretraining.rng import sample_seed
from simcrop_bench.protocols.segmentation.config import SegmentationConfig
from simcrop_bench.protocols.segmentation.state import (
    SIGKILL_AT_EPOCH_ENV,
    FinetuningStopped,
    load_state,
    restore,
    save_state,
    snapshot,
)
from simcrop_bench.stats.bootstrap import bootstrap_interval
from simcrop_bench.stats.metrics import case_score, dice_per_class
from simcrop_bench.util.hashing import ids_sha256, source_signature
from simcrop_bench.util.progress import log, progress

KEYS = ("image", "label")
NIFTI_AXIS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # RAS+ world of nibabel/NIfTI


def _above_zero(x: torch.Tensor) -> torch.Tensor:
    # Foreground = scaled intensity > 0, i.e. HU > 0: the body's soft tissue and bone.
    return x > 0


def preprocessing(cfg: SegmentationConfig) -> mt.Compose:
    """The deterministic steps 1–5 of §7.3 (plus padding for volumes smaller than the ROI)."""
    lo, hi = cfg.hu_window
    steps: list[Any] = [
        mt.LoadImaged(keys=KEYS, image_only=True),
        mt.EnsureChannelFirstd(keys=KEYS, channel_dim="no_channel"),
        mt.Orientationd(keys=KEYS, axcodes="RAS", labels=NIFTI_AXIS_LABELS),
    ]
    if cfg.spacing is not None:
        steps.append(mt.Spacingd(keys=KEYS, pixdim=cfg.spacing, mode=("bilinear", "nearest")))
    steps += [
        mt.ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=-1.0, b_max=1.0, clip=True),
        mt.CropForegroundd(keys=KEYS, source_key="image", select_fn=_above_zero, allow_smaller=True),
        mt.SpatialPadd(keys=KEYS, spatial_size=cfg.roi_size),
    ]
    return mt.Compose(steps)


def augmentation(cfg: SegmentationConfig) -> mt.Compose:
    """The random steps 6–7 of §7.3: positive/negative crops, flips, intensity jitter."""
    return mt.Compose(
        [
            mt.RandCropByPosNegLabeld(
                keys=KEYS,
                label_key="label",
                spatial_size=cfg.roi_size,
                pos=1,
                neg=1,
                num_samples=cfg.crops_per_volume,
                image_key="image",
                image_threshold=0,
            ),
            *[mt.RandFlipd(keys=KEYS, prob=0.2, spatial_axis=axis) for axis in range(3)],
            mt.RandScaleIntensityd(keys="image", factors=0.1, prob=0.1),
            mt.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.1),
        ]
    )


class SeededAugmentation(torch.utils.data.Dataset):
    """Training cases augmented under a seed of (seed, epoch, index) alone (keys from :class:`EpochKeys`), so the
    crops and flips do not depend on how many workers load them or which one does."""

    def __init__(self, cases: list[dict[str, Any]], transform: mt.Compose, seed: int) -> None:
        self.cases, self.transform, self.seed = cases, transform, seed

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        self.transform.set_random_state(seed=sample_seed(self.seed, epoch, index) % 2**32)
        return mt.apply_transform(self.transform, self.cases[index])


def _unreadable(item: dict[str, str]) -> str | None:
    """The first file of ``item`` that nibabel cannot read fully, with the reason."""
    for key in KEYS:
        try:
            np.asanyarray(nib.load(item[key]).dataobj)
        except Exception as exc:  # nibabel raises many types for corrupt files
            return f"{item[key]}: not a readable NIfTI volume ({type(exc).__name__}: {exc})"
    return None


def preprocess_cases(
    items: list[dict[str, str]], pipeline: mt.Compose, num_classes: int, cache_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Run the deterministic pipeline on every case, turning failures into one-line DataErrors.

    With ``cache_dir``, results persist in MONAI's ``PersistentDataset``, keyed by the case's
    source signatures and a hash of the transform chain (so a changed file, spacing or window
    invalidates the entry instead of silently reusing it).
    """
    keyed = [{**item, "source": [source_signature(item[k]) for k in KEYS if Path(item[k]).is_file()]} for item in items]
    dataset = None
    if cache_dir is not None:
        dataset = PersistentDataset(
            keyed, pipeline, cache_dir=cache_dir, hash_transform=pickle_hashing, track_meta=True, weights_only=False
        )
    out = []
    for i, item in enumerate(keyed):
        try:
            case = dataset[i] if dataset is not None else pipeline(dict(item))
        except Exception as exc:
            raise DataError(_unreadable(item) or f"{item['image']}: preprocessing failed ({exc})") from None
        image, label = case["image"], case["label"]
        if image.shape != label.shape:
            raise DataError(
                f"{item['label']}: shape {tuple(label.shape[1:])} differs from its image {tuple(image.shape[1:])}"
            )
        values = torch.unique(label)
        if values.min() < 0 or values.max() >= num_classes or not torch.all(values == values.round()):
            raise DataError(f"{item['label']}: label values {values.tolist()[:8]} outside 0..{num_classes - 1}")
        case["label"] = label.round().to(torch.uint8)
        case["case_id"] = case_id(item["image"])
        out.append(case)
    return out


def lr_factor(epoch: int, warmup: int, total: int) -> float:
    """Per-epoch schedule of §7.4: linear warm-up from 0 over ``warmup`` epochs, then half-cosine to 0."""
    if epoch < warmup:
        return epoch / (warmup - 1) if warmup > 1 else 0.0
    if total <= warmup:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (total - warmup)))


def _predict(
    model: torch.nn.Module, image: torch.Tensor, cfg: SegmentationConfig, device: torch.device, amp: bool
) -> np.ndarray:
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        logits = sliding_window_inference(
            image.unsqueeze(0).to(device),
            roi_size=cfg.roi_size,
            sw_batch_size=cfg.sw_batch_size,
            predictor=model,
            overlap=cfg.sw_overlap,
            mode="constant",
        )
    return logits.argmax(dim=1)[0].cpu().numpy().astype(np.uint8)


def evaluate(
    model, cases, cfg, device, amp, num_classes, *, include_background: bool, bar, save_dir: Path | None = None
):
    """Sliding-window inference on ``cases``: per-case Dice arrays (C,) and case scores."""
    model.eval()
    dices, scores = [], []
    task = bar.add_task("  evaluate", total=len(cases), status="")
    for case in cases:
        pred = _predict(model, case["image"].as_tensor(), cfg, device, amp)
        dice = dice_per_class(pred, case["label"][0].numpy(), num_classes)
        dices.append(dice)
        scores.append(case_score(dice, include_background))
        if save_dir is not None:
            affine = np.asarray(case["image"].affine, dtype=np.float64)
            write_nifti_gz(save_dir / f"{case['case_id']}.nii.gz", pred, affine, description="simcrop-bench prediction")
        bar.advance(task)
    bar.remove_task(task)
    return np.stack(dices), np.asarray(scores)


def train_epoch(model, loader, loss_fn, optimizer, scaler, amp: bool, on_step, stop=None) -> float | None:
    """One pass over the training volumes (each batch = the crops of one volume); mean loss.

    ``None`` when ``stop`` (a :class:`~simcrop_bench.pretraining.preemption.StopFlag`) rose before the last batch.
    """
    model.train()
    device = next(model.parameters()).device
    losses = []
    for batch in loader:
        if stop is not None and stop.raised:
            return None
        x = batch["image"].as_tensor().to(device)
        y = batch["label"].as_tensor().to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
        on_step(losses[-1])
    return float(np.mean(losses))


def run_identity(
    ctx: TaskContext, cfg: SegmentationConfig, splits: SegSplits, labels: tuple[str, ...]
) -> dict[str, Any]:
    """What a saved fine-tuning state must match to be continued (see :mod:`.finetune_state`)."""
    files = {
        name: [source_signature(item[k]) for item in items for k in KEYS]
        for name, items in (
            ("training", splits.training),
            ("validation", splits.validation),
            ("testing", splits.testing),
        )
    }
    return {
        "task_config": dataclasses.asdict(cfg),
        "encoder_config": dataclasses.asdict(ctx.encoder),
        "encoder": ctx.encoder_sha256 or (None if ctx.encoder_checkpoint is None else str(ctx.encoder_checkpoint)),
        "seed": ctx.seed,
        "fraction": ctx.fraction,
        "protocol": ctx.protocol,
        "labels": list(labels),
        "cases": {
            name: [case_id(item["image"]) for item in items]
            for name, items in (
                ("training", splits.training),
                ("validation", splits.validation),
                ("testing", splits.testing),
            )
        },
        "files": files,
    }


def run_segmentation(
    ctx: TaskContext, cfg: SegmentationConfig, splits: SegSplits, labels: tuple[str, ...]
) -> TaskResult:
    num_classes = len(labels)
    cfg.validate(ctx.encoder.patch_size)
    set_determinism(seed=ctx.seed)
    device = torch.device(ctx.device)
    amp = cfg.amp and device.type == "cuda"

    pipeline = preprocessing(cfg)
    with progress() as bar:
        task = bar.add_task("preprocess", total=3, status="")
        train = preprocess_cases(splits.training, pipeline, num_classes, ctx.cache_dir)
        bar.advance(task)
        val = (
            preprocess_cases(splits.validation, pipeline, num_classes, ctx.cache_dir)
            if cfg.select_on_validation
            else []
        )
        bar.advance(task)
        test = preprocess_cases(splits.testing, pipeline, num_classes, ctx.cache_dir)
        bar.advance(task)

    aug = augmentation(cfg)
    aug.set_random_state(seed=ctx.seed)
    order = torch.Generator().manual_seed(ctx.seed)  # the shuffle, drawn in this process (saved for resume)
    keys = EpochKeys(RandomSampler(train, generator=order))
    loader = DataLoader(
        SeededAugmentation(train, aug, ctx.seed),
        batch_size=1,
        sampler=keys,
        collate_fn=list_data_collate,
        # workers' base seeds come from here, not from `order`: their count must not shift the shuffle
        generator=torch.Generator().manual_seed(ctx.seed),
        **loader_options(cfg.num_workers, device.type),
    )

    model = UNETR(
        ViT3D(ctx.encoder),
        out_channels=num_classes,
        roi_size=cfg.roi_size,
        feature_size=cfg.feature_size,
        skip_blocks=cfg.skip_blocks,
    )
    load_report = None
    if ctx.encoder_checkpoint is not None:
        load_report = load_pretrained_encoder(model, ctx.encoder_checkpoint)
    model.to(device)
    loss_fn = DiceCELoss(
        to_onehot_y=True, softmax=True, squared_pred=cfg.dice_squared_pred, smooth_nr=0.0, smooth_dr=1e-6
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, cfg.warmup_epochs, cfg.max_epochs))
    scaler = torch.amp.GradScaler(device.type, enabled=amp)

    # Resume (see finetune_state): everything the next epoch depends on comes back from the saved state.
    identity = run_identity(ctx, cfg, splits, labels)
    parts = {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": scaler,
        "generator": order,
        "transforms": aug,
    }
    best_score, best_epoch, best_state = -math.inf, cfg.max_epochs - 1, None
    history: list[dict[str, float]] = []
    start = 0
    saved = load_state(ctx.workdir, identity)
    if saved is not None:
        restore(saved, parts)
        start, history = saved["epoch"], saved["history"]
        best_score, best_epoch, best_state = saved["best_score"], saved["best_epoch"], saved["best_state"]
        log(f"resuming fine-tuning {ctx.workdir} after epoch {start}/{cfg.max_epochs}")
        del saved
    kill_at = int(os.environ.get(SIGKILL_AT_EPOCH_ENV, "0"))
    with stop_on_signals() as stop, progress() as bar:
        epochs = bar.add_task("fine-tune", total=cfg.max_epochs, completed=start, status="")
        steps = bar.add_task("  epoch", total=len(loader), status="")

        def on_step(loss: float) -> None:
            bar.update(steps, advance=1, status=f"loss {loss:.3f}")

        def stopped(saved_epochs: int) -> FinetuningStopped:
            where = f"after epoch {saved_epochs}" if saved_epochs else "from epoch 1 (nothing saved yet)"
            log(f"stop signal {stop.signal}: fine-tuning stops; a rerun resumes {where}")
            return FinetuningStopped(f"fine-tuning stopped by signal {stop.signal}; rerun to resume {where}")

        for epoch in range(start, cfg.max_epochs):
            keys.set_epoch(epoch)
            bar.reset(steps)
            loss = train_epoch(model, loader, loss_fn, optimizer, scaler, amp, on_step, stop)
            if loss is None:  # stopped mid-epoch: the saved state is the previous epoch's, so stop at once
                raise stopped(epoch)
            entry = {"epoch": epoch, "train_loss": loss}
            scheduler.step()
            if cfg.select_on_validation and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.max_epochs):
                _, scores = evaluate(model, val, cfg, device, amp, num_classes, include_background=True, bar=bar)
                score = float(np.nanmean(scores))
                entry["val_score"] = score
                if score > best_score:  # strictly higher, as the reference
                    best_score, best_epoch = score, epoch
                    best_state = copy.deepcopy(model.state_dict())
                log(
                    f"epoch {epoch + 1}/{cfg.max_epochs}: loss {entry['train_loss']:.4f}, "
                    f"selection Dice {score:.4f} (best {best_score:.4f} @ {best_epoch + 1})"
                )
            history.append(entry)
            save_state(
                ctx.workdir,
                snapshot(
                    identity,
                    epoch + 1,
                    parts,
                    {"history": history, "best_score": best_score, "best_epoch": best_epoch, "best_state": best_state},
                ),
            )
            if kill_at == epoch + 1:
                os.kill(os.getpid(), signal.SIGKILL)
            bar.update(epochs, advance=1, status=f"loss {entry['train_loss']:.3f}")
            if stop.raised:  # arrived during validation: this epoch is saved; stop (and requeue) now
                raise stopped(epoch + 1)

    if best_state is not None:
        model.load_state_dict(best_state)
    if cfg.save_checkpoint:
        torch.save({"epoch": best_epoch, "state_dict": model.state_dict()}, ctx.workdir / "model.pt")
    pred_dir = ctx.workdir / "predictions" if cfg.save_predictions else None
    if pred_dir is not None:  # an interrupted earlier attempt may have left some (the work folder is reused)
        shutil.rmtree(pred_dir, ignore_errors=True)
    with progress() as bar:
        dices, scores = evaluate(
            model, test, cfg, device, amp, num_classes, include_background=False, bar=bar, save_dir=pred_dir
        )

    foreground = labels[1:]
    with np.errstate(all="ignore"):
        per_class = {name: float(np.nanmean(dices[:, i + 1])) for i, name in enumerate(foreground)}
    per_case = [
        {"case": case["case_id"], "dice": float(score), **{name: float(d[i + 1]) for i, name in enumerate(foreground)}}
        for case, d, score in zip(test, dices, scores)
    ]
    metrics = {"dice": float(np.nanmean(scores))}
    if best_state is not None:
        metrics["selection_dice"] = float(best_score)
    intervals = {}
    if cfg.bootstrap_resamples:  # one case = one patient (LUNA16 series, BTCV case)
        intervals["dice"] = bootstrap_interval(
            "mean",
            None,
            scores,
            [case["case_id"] for case in test],
            n_resamples=cfg.bootstrap_resamples,
            seed=cfg.bootstrap_seed,
        )
    return TaskResult(
        metrics=metrics,
        intervals=intervals,
        per_class={"dice": per_class},
        per_case=per_case,
        details={
            "selected_epoch": best_epoch + 1,
            "epochs": cfg.max_epochs,
            "splits": splits.sizes(),
            "train_ids_sha256": ids_sha256(case_id(item["image"]) for item in splits.training),
            "selection_on_test": splits.selection_on_test,
            "notes": splits.notes,
            "history": history,
            "encoder_load": None if load_report is None else dataclasses.asdict(load_report),
        },
    )
