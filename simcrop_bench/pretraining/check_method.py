"""``simcrop-bench check-method``: check a method against the contract in seconds, before GPU hours.

The method runs on a tiny encoder (input 2 patches per axis, depth 1, width 32) and on a two-case
synthetic twin of each dataset it pretrains on, with a one-step recipe when its config embeds the
shared ``train: PretrainConfig`` and reports cut to 64 tokens where a ``max_text_len`` field exists.
Checks, each reported as one ``ok``/``FAIL`` line:

* ``step`` (methods with the optional ``build_pretraining`` hook): one batch of the method's own
  dataset through its model — ``forward`` returns a dict whose ``loss`` is a 0-dim, finite tensor,
  and its gradient reaches the encoder;
* ``encoder``: the ``ViT3D`` inside that model maps ``(B, C, *img_size)`` to ``(B, 1 + N, embed_dim)``
  for the configured ``method.encoder`` (a model built from another encoder config fails here);
* ``export``: ``pretrain(ctx)`` returns the path of a file readable with ``weights_only`` that holds
  ``{"model": state_dict}`` with every encoder key group, loads into ``ViT3D(method.encoder)`` without
  a missing key or a shape mismatch and holds only finite values; the loop's ``metrics.jsonl``, when
  written, logs only finite losses;
* ``grounding`` (``--grounding``): the grounding score (:mod:`simcrop_bench.simcrop.grounding`) of the
  freshly built model on the held-out volumes of the CT-RATE twin (the tiny one, or ``grounding_root``):
  the model must expose ``sentence_patch_similarity``; a pretraining on a twin logs the same score.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from simcrop_bench import registry
from simcrop_bench.api import Method, MethodConfig, PretrainContext
from simcrop_bench.config import apply_overrides, parse_set, set_path
from simcrop_bench.errors import ConfigError, UserError
from simcrop_bench.util.atomic import staged_dir

CHECK_BATCH = 2
TINY_TEXT_LEN = 64  # any `max_text_len` field: reports shortened, the plumbing is the same
TWIN_CASES = 2  # one or two training volumes: enough for one batch, quick to write
ENCODER_GROUPS = {
    "patch_embed.proj.*": "patch_embed.proj.",
    "cls_token": "cls_token",
    "pos_embed": "pos_embed",
    "blocks.*": "blocks.",
    "norm.*": "norm.",
}  # released key group → key prefix
TINY_RECIPE = {  # applied to `train.*` when the method config embeds PretrainConfig
    "epochs": 1,
    "batch_size": CHECK_BATCH,
    "effective_batch": None,
    "accum_steps": 1,
    "warmup_epochs": 0.0,
    "precision": "fp32",
    "checkpoint_every": 0,
    "snapshot_epochs": (),
    "num_workers": 0,
}


@dataclass
class Finding:
    check: str  # step | encoder | export | config
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.check}: {self.message}"


@dataclass
class CheckReport:
    method: str
    settings: str  # what was run, for the header line
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def ok(self, check: str, message: str) -> None:
        self.findings.append(Finding(check, True, message))

    def fail(self, check: str, message: str) -> None:
        self.findings.append(Finding(check, False, message))

    def lines(self) -> list[str]:
        verdict = (
            f"{self.method} satisfies the method contract"
            if not self.violations
            else f"{len(self.violations)} contract violation(s) in {self.method}"
        )
        return [
            f"check-method {self.method} ({self.settings})",
            *(f"  {f.line()}" for f in self.findings),
            f"{verdict} ({self.seconds:.1f} s)",
        ]


# --------------------------------------------------------------------------- configuration


def tiny_encoder_overrides(config: MethodConfig) -> dict[str, Any]:
    """Two patches per axis, one block of width 32: the smallest encoder with real attention."""
    patch = tuple(config.encoder.patch_size)
    return {
        "encoder.img_size": tuple(2 * p for p in patch),
        "encoder.depth": 1,
        "encoder.embed_dim": 32,
        "encoder.num_heads": 2,
        "encoder.drop_path_rate": 0.0,
    }


def check_config(method_cls: type, profile: str, overrides: Sequence[str]) -> Any:
    """defaults → profile → tiny encoder and recipe → ``--set`` (``method.*`` keys only)."""
    config = method_cls.Config()
    if not isinstance(config, MethodConfig):
        raise ConfigError(f"method {method_cls.name}: Config must be a dataclass derived from MethodConfig")
    apply_overrides(config, method_cls.profile_overrides(profile), section="method")
    if method_cls.pretrains and hasattr(method_cls, "configure"):
        method_cls.configure(config)  # as `run` does, before the overrides
    apply_overrides(config, tiny_encoder_overrides(config), section="method")
    train = getattr(config, "train", None)
    if is_dataclass(train):
        known = {f for f in vars(train)}
        apply_overrides(config, {f"train.{k}": v for k, v in TINY_RECIPE.items() if k in known}, section="method")
    apply_overrides(config, {path: TINY_TEXT_LEN for path in _fields_named(config, "max_text_len")}, section="method")
    for section, key, value in parse_set(list(overrides)):
        if section != "method":
            raise ConfigError(f"--set {section}.{key}: check-method takes method.* settings only")
        set_path(config, key, value, section="method", from_text=True)
    config.encoder.validate()
    return config


def _fields_named(tree: Any, name: str, prefix: str = "") -> list[str]:
    """Dotted paths of every field called ``name`` in a dataclass tree."""
    paths = []
    for key, value in vars(tree).items():
        if key == name:
            paths.append(prefix + key)
        elif is_dataclass(value):
            paths.extend(_fields_named(value, name, f"{prefix}{key}."))
    return paths


def tiny_twin(dataset: str) -> Path:
    """A two-case synthetic twin of ``dataset`` in the layout methods read, cached under the cache folder."""
    from simcrop_bench.data.datasets import get_layout, synthesize
    from simcrop_bench.data.roots import TASK_LAYOUT, cache_dir

    layout = get_layout(dataset, TASK_LAYOUT)
    if layout.writer is None or layout.complete is None:
        raise UserError(f"check-method needs a synthetic twin of '{dataset}', which does not exist yet")
    root = cache_dir() / "twins" / f"{dataset}-check{TWIN_CASES}"
    if not (root.is_dir() and layout.complete()(root)):
        with staged_dir(root) as staging:
            synthesize(dataset, TASK_LAYOUT, staging, cases=TWIN_CASES)
    return root


# --------------------------------------------------------------------------- checks


def _reason(exc: BaseException) -> str:
    """``Type: first line (at file:line)``, the place being the innermost frame outside installed packages."""
    text = str(exc).strip().splitlines()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "site-packages" not in f.filename]
    where = frames[-1] if frames else None
    place = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {text[0] if text else ''}{place}"


def find_encoder(model: Any) -> Any:
    """The first ``ViT3D`` in ``model`` (the model itself first), or ``None``."""
    from simcrop_bench.models.vit3d import ViT3D

    return next((m for m in model.modules() if isinstance(m, ViT3D)), None) if hasattr(model, "modules") else None


def check_encoder_output(report: CheckReport, encoder: Any, config: MethodConfig, device: str) -> None:
    import torch

    from simcrop_bench.models.vit3d import ViT3D

    cfg = config.encoder
    tokens = math.prod(cfg.grid())
    expected = (CHECK_BATCH, 1 + tokens, cfg.embed_dim)
    volume = torch.zeros(CHECK_BATCH, cfg.in_chans, *cfg.img_size, device=device)
    mode = encoder.training
    try:
        encoder.eval()
        with torch.no_grad():
            # ViT3D's own pass: subclasses use `forward` for the training step, downstream tasks use this one.
            shape = tuple(ViT3D.forward(encoder, volume).shape)
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        report.fail("encoder", f"the encoder cannot encode a {tuple(volume.shape)} volume batch: {_reason(exc)}")
        return
    finally:
        encoder.train(mode)
    if shape != expected:
        report.fail(
            "encoder",
            f"output shape {shape}, expected {expected} = (batch, 1 + {tokens} tokens, "
            f"method.encoder.embed_dim): build the encoder from self.config.encoder",
        )
    else:
        report.ok("encoder", f"output {shape} = (batch, 1 + {tokens} tokens, embed_dim)")


def check_step(report: CheckReport, method: Method, ctx: PretrainContext) -> None:
    """One batch of the method's dataset through its model: loss shape and value, encoder gradients."""
    import torch
    from torch.utils.data import default_collate

    try:
        parts = method.build_pretraining(ctx)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        report.fail("step", f"build_pretraining raised {_reason(exc)}")
        return
    if parts is None:
        report.ok("step", "no build_pretraining hook: loss and gradients are checked only via pretrain's logs")
        return
    try:
        torch.manual_seed(ctx.seed)
        model = parts.model_factory().to(ctx.device)
        items = [parts.dataset[i] for i in range(min(CHECK_BATCH, len(parts.dataset)))]
        batch = {k: v.to(ctx.device) if torch.is_tensor(v) else v for k, v in default_collate(items).items()}
        output = model(batch)
    except Exception as exc:  # noqa: BLE001
        report.fail("step", f"building the model or its forward raised {_reason(exc)}")
        return
    encoder = find_encoder(model)
    if encoder is None:
        report.fail("encoder", "the model contains no ViT3D: build the shared encoder with ViT3D(self.config.encoder)")
    else:
        check_encoder_output(report, encoder, method.config, ctx.device)
    loss = output.get("loss") if isinstance(output, Mapping) else None
    if not torch.is_tensor(loss):
        got = type(output).__name__ if not isinstance(output, Mapping) else f"a dict with keys {sorted(output)}"
        report.fail("step", f"forward(batch) must return a dict with a tensor 'loss'; got {got}")
        return
    if loss.ndim != 0:
        report.fail(
            "step", f"loss has shape {tuple(loss.shape)}, not a scalar: reduce it to a 0-dim tensor (e.g. .mean())"
        )
        return
    if not torch.isfinite(loss):
        report.fail("step", f"loss is {loss.item()} on the first batch")
        return
    loss.backward()
    if encoder is None:
        return
    trained = [(n, p) for n, p in encoder.named_parameters() if n.startswith(("patch_embed.", "blocks."))]
    reached = [n for n, p in trained if p.grad is not None and bool(p.grad.abs().sum() > 0)]
    if not reached:
        report.fail(
            "step",
            f"loss {loss.item():.4g} is a finite scalar, but no gradient reaches the encoder (patch_embed.*, blocks.*)",
        )
    else:
        report.ok(
            "step",
            f"loss {loss.item():.4g} is a finite scalar; gradients reach {len(reached)}/{len(trained)} encoder tensors",
        )


def check_grounding(report: CheckReport, method: Method, ctx: PretrainContext, root: Path | None = None) -> None:
    """Score sentence–patch grounding of the method's model on held-out twin volumes (issue #15)."""
    from simcrop_bench.data.synthetic.finding_regions import region_cases
    from simcrop_bench.simcrop.grounding import grounding_score, grounding_set, supports_grounding

    root = root or ctx.data_roots.get("ctrate")
    if root is None:
        report.fail("grounding", f"{method.name} does not pretrain on CT-RATE: no report sentences to ground")
        return
    try:
        parts = method.build_pretraining(ctx)
        model = parts.model_factory().to(ctx.device) if parts is not None else None
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        report.fail("grounding", f"building the model raised {_reason(exc)}")
        return
    if model is None or not supports_grounding(model):
        report.fail(
            "grounding",
            "the model exposes no sentence_patch_similarity(image, findings_ids, findings_mask, sentence_ids, "
            "heads=None) -> (similarity (B, S, N), valid (B, S)) and tokenizer: nothing to score",
        )
        return
    cases = region_cases(Path(root), "valid")
    try:
        score = grounding_score(model, grounding_set(model, cases))
    except Exception as exc:  # noqa: BLE001
        report.fail("grounding", f"sentence_patch_similarity raised {_reason(exc)}")
        return
    if not score["sentences"]:
        report.ok("grounding", f"hook works; the {len(cases)} held-out volume(s) of {root} name no masked finding")
        return
    control = " (control heads: the model has no alignment heads)" if score["control"] else ""
    report.ok(
        "grounding",
        f"top-K hit rate {score['hit_rate']:.3f} vs chance {score['chance']:.3f} (lift {score['lift']:.2f}) over "
        f"{int(score['sentences'])} sentences of {len(cases)} held-out volume(s), untrained model{control}",
    )


def check_export(report: CheckReport, method: Method, ctx: PretrainContext) -> None:
    """``pretrain(ctx)`` on the tiny twin; its file must be a released-format encoder of ``method.encoder``."""
    import torch

    from simcrop_bench.models.vit3d import (
        CheckpointError,
        ViT3D,
        checkpoint_filter_fn,
        load_encoder_weights,
        read_checkpoint,
    )
    from simcrop_bench.pretraining.scalars import read_metrics

    try:
        produced = method.pretrain(ctx)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        report.fail("export", f"pretrain raised {_reason(exc)}")
        return
    for record in read_metrics(ctx.workdir):
        value = record.get("loss")
        if isinstance(value, float) and not math.isfinite(value):
            report.fail("export", f"pretraining logged loss {value} at step {record.get('step')}")
            break
    hint = "save torch.save(export_released(model), ctx.workdir / 'encoder.pth') and return that path"
    if produced is None:
        report.fail("export", f"pretrain returned None: {hint}")
        return
    path = Path(produced)
    if not path.is_file():
        report.fail("export", f"pretrain returned {path}, which is not a file: {hint}")
        return
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as exc:
        report.fail("export", str(exc))
        return
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("model"), Mapping):
        found = sorted(checkpoint)[:6] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        report.fail(
            "export", f"{path.name} has no 'model' state dict (found {found}): write it with export_released(model)"
        )
        return
    weights = checkpoint_filter_fn({"model": checkpoint["model"]})
    absent = [group for group, prefix in ENCODER_GROUPS.items() if not any(n.startswith(prefix) for n in weights)]
    if absent:
        report.fail(
            "export",
            f"{path.name}['model'] lacks the encoder keys {', '.join(absent)} "
            "(timm names, no prefix): export the ViT3D with export_released(model)",
        )
        return
    bad = [
        n for n, t in weights.items() if torch.is_tensor(t) and t.is_floating_point() and not torch.isfinite(t).all()
    ]
    if bad:
        report.fail("export", f"{path.name} holds non-finite weights in {', '.join(bad[:3])}")
        return
    try:
        loaded = load_encoder_weights(ViT3D(method.config.encoder), checkpoint, target="full")
    except CheckpointError as exc:
        report.fail("export", f"{path.name} does not load into ViT3D(method.encoder): {str(exc).split(': ', 1)[-1]}")
        return
    if loaded.missing:
        report.fail("export", f"{path.name} misses encoder tensors {', '.join(loaded.missing[:4])}")
        return
    report.ok(
        "export",
        f"{path.name} holds {{'model': ...}} with {len(loaded.loaded)} encoder tensors; "
        "loads into ViT3D(method.encoder)",
    )


def check_method(
    name: str,
    *,
    plugins: Sequence[str] = (),
    overrides: Sequence[str] = (),
    profile: str = "demo",
    device: str = "cpu",
    workdir: Path | None = None,
    grounding: bool = False,
    grounding_root: Path | None = None,
) -> CheckReport:
    """Run every check on method ``name`` and return the findings (raises UserError on bad input).

    ``grounding``: also score sentence–patch grounding, on the twin at ``grounding_root`` if given."""
    import torch

    started = time.monotonic()
    registry.discover(list(plugins))
    method_cls = registry.get_method(name)
    if not (isinstance(method_cls, type) and issubclass(method_cls, Method)):
        raise UserError(f"method {name}: the registered class must derive from simcrop_bench.api.Method")
    config = check_config(method_cls, profile, overrides)
    enc = config.encoder
    size = "×".join(map(str, enc.img_size))
    report = CheckReport(
        name,
        f"{profile} profile, tiny encoder {size} depth {enc.depth} width {enc.embed_dim}, "
        f"batch {CHECK_BATCH}, {device}",
    )
    if not method_cls.pretrains:
        report.ok("config", "pretrains = False: tasks initialise the encoder; nothing to pretrain or export")
        report.seconds = time.monotonic() - started
        return report
    method = method_cls(config)
    roots = {dataset: tiny_twin(dataset) for dataset in method_cls.pretrain_datasets}
    stages = {"step": check_step, "pretrain": check_export}
    if grounding:
        stages["grounding"] = functools.partial(check_grounding, root=grounding_root)
    with tempfile.TemporaryDirectory(prefix="check-method-", dir=workdir) as scratch:
        for stage, check in stages.items():
            ctx = PretrainContext(workdir=Path(scratch) / stage, seed=42, device=device, data_roots=roots)
            ctx.workdir.mkdir(parents=True)
            with torch.random.fork_rng(devices=[]):  # leave the caller's RNG as it was
                check(report, method, ctx)
    report.seconds = time.monotonic() - started
    return report
