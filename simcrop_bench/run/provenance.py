"""What produced a result: code version, packages, machine."""

from __future__ import annotations

import platform
import resource
import socket
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("simcrop-bench", "torch", "monai", "numpy", "nibabel", "transformers", "scikit-learn", "pandas")
REPO = Path(__file__).resolve().parent.parent


def git_state() -> dict[str, object]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit or None, "git_dirty": dirty if commit else None}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def device_description(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(torch.device(device))} (cuda)"
    return f"{platform.processor() or platform.machine()} (cpu)"


def peak_host_memory_mb() -> float:
    # ru_maxrss is in KiB on Linux: the peak resident set of this process so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def collect(device: str) -> dict[str, object]:
    torch = sys.modules.get("torch")  # not imported: the run computed without torch
    return {
        **git_state(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "device": device_description(device),
        "torch_threads": torch.get_num_threads() if torch else None,
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
    }
