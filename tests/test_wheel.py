"""A regular install (a wheel, not the source checkout) registers every built-in method and task."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simcrop_bench import registry

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "setup.py", "README.md", "simcrop_bench", "methods", "tasks")


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_wheel_registers_every_builtin_away_from_the_source_tree(tmp_path):
    # Build from a copy: pip builds in place and would leave build/ in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp_path / "dist"), str(source), cwd=tmp_path)
    wheels = list((tmp_path / "dist").glob("simcrop_bench-*.whl"))
    assert len(wheels) == 1
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(site), str(wheels[0]), cwd=tmp_path)
    shutil.rmtree(source)  # nothing of the source tree is left to find

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", registry.PLUGIN_ENV)}
    env["PYTHONPATH"] = str(site)  # ahead of site-packages, where an editable install may point at the checkout

    def cli(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "simcrop_bench.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    where = subprocess.run(
        [sys.executable, "-c", "import simcrop_bench; print(simcrop_bench.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr

    registry.discover()  # the names the source tree registers
    for kind in ("methods", "tasks"):
        listed = cli("list", kind)
        # Only what the source tree's methods/ and tasks/ files register (other tests register plugins in-process).
        folder = Path(registry.__file__).resolve().parents[1] / kind
        names = [name for name, _, _, origin in registry.entries(kind) if Path(origin).resolve().parent == folder]
        assert len(names) >= 6
        for name in names:
            assert f"│ {name} " in listed, f"{kind} {name} missing from the installed wheel:\n{listed}"
        assert f"simcrop_bench/builtin/{kind}/" in listed
    config = cli("run", "--method", "simcrop", "--task", "lung_seg", "--print-config", "--results", str(tmp_path))
    assert '"config_hash"' in config and '"name": "simcrop"' in config
