"""Shared fixtures: an isolated cache per session and a small, fast LUNA16 twin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Never touch the user's ~/.cache or configured data roots from a test.
    monkeypatch.setenv("SIMCROP_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    for key in list(os.environ):
        if key.startswith("SIMCROP_BENCH_DATA_") or key == "SIMCROP_BENCH_PLUGINS":
            monkeypatch.delenv(key)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed CLI as a user would, in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "simcrop_bench.cli", *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def slurm_available() -> bool:
    """A SLURM controller answers and a partition is up (slurm/start-local-slurm.sh starts one).

    `sbatch` on PATH is not enough (submitit picks slurm as soon as `srun` is there); `scontrol
    ping` fails at once when slurmctld is down, where sinfo would retry for about 9 s.
    """
    import shutil

    if shutil.which("sbatch") is None:
        return False
    try:
        if subprocess.run(["scontrol", "ping"], capture_output=True, timeout=15).returncode:
            return False
        out = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "up" in out.stdout.split()


def pytest_collection_modifyitems(config, items):
    # Skip (not deselect) `slurm` tests without a cluster, so `pytest -m slurm` exits 0 there.
    if not any("slurm" in item.keywords for item in items) or slurm_available():
        return
    skip = pytest.mark.skip(reason="no reachable SLURM cluster (run slurm/start-local-slurm.sh as root)")
    for item in items:
        if "slurm" in item.keywords:
            item.add_marker(skip)
