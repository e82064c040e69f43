"""The run's device is resolved when a task first needs it, with a clean refusal for a missing GPU."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from simcrop_bench.errors import ConfigError
from simcrop_bench.run.devices import resolve_device

from .conftest import run_cli
from .test_end_to_end import assert_clean_failure

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def test_cpu_is_resolved_without_importing_torch():
    code = (
        "import sys; from simcrop_bench.run.devices import resolve_device; "
        "print(resolve_device('cpu'), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["cpu", "False"]


@no_cuda
def test_auto_is_the_cpu_and_a_named_gpu_is_refused_without_cuda():
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda:1")


@no_cuda
def test_a_run_that_needs_the_missing_gpu_fails_in_one_line(tmp_path):
    result = run_cli(
        "run",
        "-m",
        "scratch",
        "-t",
        "luna16_cls",
        "--device",
        "cuda",
        "--results",
        str(tmp_path),
        "--set",
        "task.num_steps=2",
    )
    assert_clean_failure(result, "run.device=cuda", "no CUDA device")
    assert not list(tmp_path.glob("runs/**/record.json"))
