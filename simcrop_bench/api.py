"""The contracts a method file and a task file implement.

Both are plain classes registered by name (``@register_method`` /
``@register_task`` in :mod:`simcrop_bench.registry`). Importing a method or
task file must stay cheap — no torch at module level — so that listing the
registry and starting the CLI stay fast; heavy work happens inside
:meth:`Method.pretrain` and :meth:`Task.run`.

See ``docs/add-a-method.md`` for a complete example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from simcrop_bench.models.config import EncoderConfig


class Registered:
    """What methods and tasks share: a registry name, a kind, a typed config and profiles."""

    name: ClassVar[str] = ""  # set by the register decorator
    kind: ClassVar[str] = ""
    Config: ClassVar[type] = object
    profiles: ClassVar[dict[str, dict[str, Any]]] = {}  # profile → config overrides

    def __init__(self, config: Any):
        self.config = config

    @classmethod
    def description(cls) -> str:
        """The docstring's first line, shown by ``simcrop-bench list``."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


@dataclass
class MethodConfig:
    """Base config of every method: the shared encoder's architecture."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)


@dataclass
class PretrainContext:
    """What :meth:`Method.pretrain` receives."""

    workdir: Path  # write checkpoints and logs here (a fresh folder per pretraining)
    seed: int  # the config's method.train.seed when it has a recipe, else 42 (run/encoder_store.pretraining_seed)
    device: str
    data_roots: dict[str, Path]  # dataset name → resolved root (real or synthetic twin)
    progress: Callable[..., Any] | None = None


@dataclass
class PretrainingParts:
    """What a method trains (the optional :meth:`Method.build_pretraining` hook).

    ``model_factory()`` builds a module whose ``forward(batch)`` returns ``{"loss": 0-dim tensor, ...}``
    and that is, or contains, the shared ``ViT3D`` encoder; ``dataset`` is the map-style dataset whose
    items the default collate stacks into that batch. Exactly what
    :func:`simcrop_bench.pretraining.loop.pretrain` takes.
    """

    model_factory: Callable[[], Any]
    dataset: Any


class Method(Registered):
    """A pretraining method.

    Contract:
      * ``Config`` — a dataclass derived from :class:`MethodConfig` (the encoder is shared);
      * ``pretrain(ctx)`` — train, write an encoder checkpoint in the released SimCroP
        format (``{"model": state_dict}``, timm key names) into ``ctx.workdir`` and return
        its path. Methods without pretraining set ``pretrains = False`` and the task
        initialises the encoder at random with the run's seed;
      * ``pretrain_datasets`` — datasets whose roots ``pretrain`` needs;
      * ``build_pretraining(ctx)`` — optional: model factory + dataset, for ``check-method``.
    """

    kind: ClassVar[str] = ""  # no-pretraining | self-supervised | vision-language | external; "" groups as other
    Config: ClassVar[type] = MethodConfig
    pretrains: ClassVar[bool] = True  # False: no checkpoint, the task initialises the encoder
    pretrain_datasets: ClassVar[tuple[str, ...]] = ()
    reference: ClassVar[str] = ""
    variant_overrides: ClassVar[dict[str, Any]] = {}  # registered variants (ablations): applied in every profile

    @classmethod
    def profile_overrides(cls, profile: str) -> dict[str, Any]:
        return {
            **EncoderConfig.profile_overrides(profile),
            **cls.profiles.get(profile, {}),
            **cls.variant_overrides,
        }

    @classmethod
    def configure(cls, config: Any) -> None:
        """Complete the config before ``--set`` overrides apply (e.g. read an encoder off a checkpoint)."""

    def provided_encoder(self) -> tuple[Path, dict[str, Any]] | None:
        """A ready encoder checkpoint and its metadata, for methods that evaluate without pretraining."""
        return None

    def pretrain(self, ctx: PretrainContext) -> Path | None:
        raise NotImplementedError

    def build_pretraining(self, ctx: PretrainContext) -> PretrainingParts | None:
        """Optional hook: the model factory and dataset that ``pretrain`` trains.

        ``simcrop-bench check-method`` pushes one batch of ``dataset`` through the model to check the
        loss (a finite 0-dim tensor), the gradients into the encoder and the encoder's output shape
        before any long run. ``None`` (the default): only the exported checkpoint is checked.
        """
        return None


@dataclass
class TaskContext:
    """What :meth:`Task.run` receives."""

    encoder: EncoderConfig
    encoder_checkpoint: Path | None  # released-format checkpoint, None = random init
    data_root: Path
    synthetic: bool
    fraction: int
    seed: int
    protocol: str
    device_request: str  # run.device as asked: "auto", "cpu", "cuda[:N]"; see `device`
    workdir: Path  # staging folder of the run record: predictions etc. go here
    cache_dir: Path | None = None  # persistent preprocessing cache; None: preprocess in memory only
    encoder_sha256: str | None = None  # SHA-256 of encoder_checkpoint, hashed once per run
    _device: str | None = field(default=None, init=False, repr=False)

    @property
    def device(self) -> str:
        """The torch device, resolved on first use: a task that needs no torch never imports it."""
        if self._device is None:
            from simcrop_bench.run.devices import resolve_device

            self._device = resolve_device(self.device_request)
        return self._device

    @property
    def device_used(self) -> str | None:
        """The device the task asked for, None when it never needed one."""
        return self._device


@dataclass
class TaskResult:
    """What :meth:`Task.run` returns; the runner turns it into the run record."""

    metrics: dict[str, float]  # the primary metric and any secondary scalars
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    per_case: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # selection epoch, split sizes, ...
    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric → bootstrap interval (protocol.md §9)
    variant: str = ""  # protocol variant label (e.g. "lp-cached"); empty: the published recipe


class Task(Registered):
    """A downstream task: dataset, labels, protocol and metric.

    ``profiles`` maps a profile name to config overrides; ``fraction_profiles`` maps
    ``(profile, fraction)`` to overrides applied after them (the published per-cell
    hyperparameters).
    """

    kind: ClassVar[str] = ""  # segmentation | classification
    dataset: ClassVar[str] = ""
    labels: ClassVar[tuple[str, ...]] = ()
    fractions: ClassVar[tuple[int, ...]] = (100,)
    metric: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    column_label: ClassVar[str] = ""  # the paper tables' column title; "": the dataset's name (data/datasets.py)
    fraction_profiles: ClassVar[dict[tuple[str, int], dict[str, Any]]] = {}

    @classmethod
    def profile_overrides(cls, profile: str, fraction: int) -> dict[str, Any]:
        return {**cls.profiles.get(profile, {}), **cls.fraction_profiles.get((profile, fraction), {})}

    def run(self, ctx: TaskContext) -> TaskResult:
        raise NotImplementedError
