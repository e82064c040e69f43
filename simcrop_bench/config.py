"""Typed run configuration: defaults → profile → per-fraction profile → ``--set``.

A run's configuration is three sections, each a dataclass tree:
``method`` (the method's ``Config``), ``task`` (the task's ``Config``) and
``run`` (:class:`RunSettings`). ``--set section.field[.field]=value`` overrides
any leaf and is checked against the field's type. The resolved tree, turned
into plain JSON, is stored with every result; its hash identifies the run and,
without the seed, the comparable *cell* that seeds are averaged over.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Literal

from simcrop_bench.errors import ConfigError

PROFILES = ("demo", "paper")
PROTOCOLS = ("heldout", "legacy")
EXECUTION_ONLY = ("device", "num_threads", "cache")  # how a run executes, not what it computes


@dataclass
class RunSettings:
    """Settings that belong to one run rather than to the method or the task."""

    profile: Literal["demo", "paper"] = "demo"
    fraction: int = 100
    seed: int = 42
    protocol: Literal["heldout", "legacy"] = "heldout"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int = 0  # 0: torch's default
    cache: bool = True  # persist preprocessed volumes (keyed by source files and transform chain)


# --------------------------------------------------------------------------- typed leaves


def _parse_scalar(text: str, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            if str(choice) == text:
                return choice
        raise ConfigError(f"{key}={text}: expected one of {', '.join(map(str, choices))}")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.lower() in ("none", "null", "") and len(args) < len(typing.get_args(tp)):
            return None
        errors = []
        for arg in args:
            try:
                return _parse_scalar(text, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if errors else f"{key}={text}: cannot parse")
    if origin is tuple:
        args = typing.get_args(tp)
        items = [t for t in text.strip("()[] ").replace(" ", "").split(",") if t != ""]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_scalar(i, args[0], key) for i in items)
        if len(items) != len(args):
            raise ConfigError(f"{key}={text}: expected {len(args)} comma-separated values")
        return tuple(_parse_scalar(i, a, key) for i, a in zip(items, args))
    if tp is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}={text}: expected true or false")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}={text}: expected an integer") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}={text}: expected a number") from None
    if tp is str:
        return text
    raise ConfigError(f"{key}: fields of type {tp} cannot be set from the command line")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check a value from a profile table by the same rules as a ``--set`` string."""
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return _parse_scalar(text, tp, key)


# --------------------------------------------------------------------------- the tree


@dataclass
class ResolvedConfig:
    """The three config sections of one run."""

    method_name: str
    task_name: str
    method: Any
    task: Any
    run: RunSettings

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": {"name": self.method_name, **_plain(self.method)},
            "task": {"name": self.task_name, **_plain(self.task)},
            "run": _plain(self.run),
        }

    @property
    def config_hash(self) -> str:
        return stable_hash(self.to_dict())

    @property
    def cell_hash(self) -> str:
        """Hash of everything but the seed: runs that differ only by seed share it."""
        tree = self.to_dict()
        tree["run"] = {k: v for k, v in tree["run"].items() if k not in ("seed", *EXECUTION_ONLY)}
        return stable_hash(tree)


def _plain(obj: Any) -> Any:
    if is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def stable_hash(tree: Any, length: int = 12) -> str:
    """SHA-256 of canonical JSON (sorted keys, no whitespace): stable across runs and machines."""
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _leaf_paths(obj: Any, prefix: str) -> list[str]:
    out = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}.{f.name}"
        out.extend(_leaf_paths(value, path) if is_dataclass(value) else [path])
    return out


def set_path(root: Any, dotted: str, value: Any, *, section: str, from_text: bool) -> None:
    """Set ``dotted`` (relative to ``root``) to ``value``, validating the key and the type."""
    parts = dotted.split(".")
    obj = root
    for i, part in enumerate(parts):
        names = {f.name: f for f in fields(obj)}
        full = ".".join([section, *parts[: i + 1]])
        if part not in names:
            candidates = _leaf_paths(root, section)
            close = difflib.get_close_matches(f"{section}.{dotted}", candidates, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown config key '{section}.{dotted}'{hint}")
        if i < len(parts) - 1:
            obj = getattr(obj, part)
            if not is_dataclass(obj):
                raise ConfigError(f"config key '{full}' has no field '{parts[i + 1]}'")
            continue
        hints = typing.get_type_hints(type(obj))
        tp = hints[part]
        if is_dataclass(getattr(obj, part)):
            raise ConfigError(f"config key '{full}' is a group; set one of its fields")
        parsed = _parse_scalar(value, tp, full) if from_text else _coerce(value, tp, full)
        setattr(obj, part, parsed)


def apply_overrides(root: Any, overrides: Mapping[str, Any], *, section: str) -> None:
    """Apply a profile table (``{"encoder.depth": 4, ...}``) to a config tree."""
    for dotted, value in overrides.items():
        set_path(root, dotted, value, section=section, from_text=False)


def parse_set(assignments: list[str]) -> list[tuple[str, str, str]]:
    """Split ``--set`` strings into (section, dotted key, text value)."""
    out = []
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. task.max_epochs=5")
        section, _, rest = key.partition(".")
        if section not in ("method", "task", "run") or not rest:
            raise ConfigError(
                f"--set {item!r}: keys start with 'method.', 'task.' or 'run.' (e.g. method.encoder.depth=4)"
            )
        out.append((section, rest, value.strip()))
    return out
