"""`bench pretrain` (counted FLOPs, step timing) and `bench results` (generated records) on real code paths."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from simcrop_bench.bench.pretrain import count_flops, time_method
from simcrop_bench.bench.results import TASKS, generate_records
from simcrop_bench.reporting.leaderboard import leaderboard, load_records

from .conftest import run_cli


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3, bias=False)

    def forward(self, batch: torch.Tensor) -> dict:
        return {"loss": self.layer(batch).sum()}


def test_counted_flops_are_forward_plus_the_weight_gradient_of_each_product():
    flops = count_flops(Linear(), torch.ones(5, 4), lambda: torch.autocast("cpu", enabled=False))
    assert flops == 2 * (2 * 5 * 4 * 3)  # forward x·Wᵀ, and dW (the input needs no gradient)


@pytest.mark.slow
def test_bench_pretrain_times_a_real_method_step_on_cpu():
    timing = time_method(
        "mae", profile="demo", device="cpu", batch_size=2, precision="bf16", compile_model=False,
        warmup=0, steps=1, peak_flops=1e12,
    )  # fmt: skip
    assert timing.step_s > 0 and timing.volumes_per_s == pytest.approx(2 / timing.step_s)
    assert timing.flops_per_sample > 1e6 and timing.mfu == pytest.approx(timing.achieved_flops / 1e12)


def test_bench_pretrain_refuses_an_unknown_precision_in_one_line():
    result = run_cli("bench", "pretrain", "--precision", "fp8")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --precision fp8: expected fp32 or bf16"
    ]


def test_generated_records_cover_every_task_fraction_and_seed_and_load_as_records(tmp_path):
    per_method = sum(len(task[2]) for task in TASKS) * 5
    assert generate_records(tmp_path, per_method + 3) == per_method + 3
    records = load_records(tmp_path)
    assert len({r["run_id"] for r in records}) == per_method + 3
    assert {r["method"] for r in records} == {"gen-m0000", "gen-m0001"}
    board = leaderboard(tmp_path, method="gen-m0000")
    assert len(board) == per_method // 5 and set(board["n_seeds"]) == {5}
    assert len(json.dumps(records[0])) > 1500  # the size of a real record, not a stub
