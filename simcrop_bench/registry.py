"""Registry of methods and tasks, discovered lazily from files.

Sources, in order: the built-in ``methods/`` and ``tasks/`` folders (one file per
method or task: next to the package in a source checkout, ``simcrop_bench/builtin/``
in an installed wheel), installed packages' entry points (groups
``simcrop_bench.methods`` / ``simcrop_bench.tasks``, each pointing at a module),
and plugins named with ``--plugin`` or ``SIMCROP_BENCH_PLUGINS`` (a ``.py`` file,
a folder of them, or an importable module name). A file registers its classes
with :func:`register_method` / :func:`register_task` when imported. Nothing is
imported until a name is asked for, and these files import no torch, so the CLI
starts fast.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TypeVar

from simcrop_bench.errors import RegistryError

REPO_ROOT = Path(__file__).resolve().parent.parent
_INSTALLED = Path(__file__).resolve().parent / "builtin"  # where a wheel puts methods/ and tasks/ (setup.py)


def builtin_dirs() -> dict[str, Path]:
    """The folders of built-in methods and tasks: a wheel's copy, else the source checkout's."""
    if _INSTALLED.is_dir():
        return {kind: _INSTALLED / kind for kind in ("methods", "tasks")}
    # A source checkout (or an editable install of one): the top-level folders beside pyproject.toml.
    # An installed package without them finds none rather than some unrelated ``methods`` folder.
    if (REPO_ROOT / "pyproject.toml").is_file():
        return {kind: REPO_ROOT / kind for kind in ("methods", "tasks")}
    return {}


PLUGIN_ENV = "SIMCROP_BENCH_PLUGINS"

_REGISTRY: dict[str, dict[str, type]] = {"methods": {}, "tasks": {}}
_ORIGIN: dict[tuple[str, str], str] = {}
_loaded_sources: set[str] = set()
_current_source = "<python>"

T = TypeVar("T", bound=type)


def _register(kind: str, name: str) -> Callable[[T], T]:
    def decorator(cls: T) -> T:
        existing = _REGISTRY[kind].get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise RegistryError(
                f"{kind[:-1]} '{name}' is registered twice: {_ORIGIN[(kind, name)]} and {_current_source}"
            )
        cls.name = name  # type: ignore[attr-defined]
        _REGISTRY[kind][name] = cls
        _ORIGIN[(kind, name)] = _current_source
        return cls

    return decorator


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator: register a :class:`~simcrop_bench.api.Method` under ``name``."""
    return _register("methods", name)


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: register a :class:`~simcrop_bench.api.Task` under ``name``."""
    return _register("tasks", name)


# --------------------------------------------------------------------------- loading


def _import_file(path: Path) -> None:
    global _current_source
    key = str(path.resolve())
    if key in _loaded_sources:
        return
    _loaded_sources.add(key)
    module_name = f"simcrop_bench_plugins.{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RegistryError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    # A method file may load another (a variant of a method in its own file): restore the outer source.
    outer, _current_source = _current_source, str(path)
    try:
        spec.loader.exec_module(module)
    except RegistryError:
        raise
    except Exception as exc:  # a broken plugin must not produce a traceback wall
        sys.modules.pop(module_name, None)
        raise RegistryError(f"{path}: failed to import: {type(exc).__name__}: {exc}") from exc
    finally:
        _current_source = outer


def _import_module(name: str) -> None:
    global _current_source
    if name in _loaded_sources:
        return
    _loaded_sources.add(name)
    outer, _current_source = _current_source, name
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise RegistryError(f"plugin '{name}': no such file or importable module ({exc})") from exc
    except RegistryError:
        raise
    except Exception as exc:
        raise RegistryError(f"plugin '{name}': failed to import: {type(exc).__name__}: {exc}") from exc
    finally:
        _current_source = outer


def load_plugin(spec: str) -> None:
    """Load a plugin given as a ``.py`` file, a folder of ``.py`` files, or a module name."""
    path = Path(spec).expanduser()
    if path.is_dir():
        for file in sorted(path.glob("*.py")):
            if not file.name.startswith("_"):
                _import_file(file)
    elif path.suffix == ".py" or os.sep in spec:
        if not path.is_file():
            raise RegistryError(f"plugin '{spec}': file not found")
        _import_file(path)
    else:
        _import_module(spec)


def discover(plugins: tuple[str, ...] | list[str] = ()) -> None:
    """Import built-in files, entry points, the environment's plugins and ``plugins``."""
    for folder in builtin_dirs().values():
        if folder.is_dir():
            load_plugin(str(folder))
    for group in ("simcrop_bench.methods", "simcrop_bench.tasks"):
        for ep in entry_points(group=group):
            _import_module(ep.value.split(":")[0])
    for spec in [s for s in os.environ.get(PLUGIN_ENV, "").split(os.pathsep) if s] + list(plugins):
        load_plugin(spec)


def _get(kind: str, name: str) -> type:
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        known = sorted(_REGISTRY[kind])
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; registered: {', '.join(known) or 'none'}"
        raise RegistryError(f"unknown {kind[:-1]} '{name}'{hint}") from None


def get_method(name: str) -> type:
    return _get("methods", name)


def get_task(name: str) -> type:
    return _get("tasks", name)


def entries(kind: str) -> list[tuple[str, str, str, str]]:
    """(name, kind, description, origin) of every registered method or task, sorted by name."""
    return [
        (name, getattr(cls, "kind", ""), cls.description(), _ORIGIN[(kind, name)])
        for name, cls in sorted(_REGISTRY[kind].items())
    ]
