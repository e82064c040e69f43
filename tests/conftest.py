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
        cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=900,
    )
