"""The linear probe's schedule and validation/stopping controller: hazard H8 of protocol.md §10."""

from __future__ import annotations

import math

import pytest

from simcrop_bench.protocols.probe.schedule import ProbeController, probe_lr_factor


def test_lr_factor_warmup_cosine_and_the_periodic_rise_after_num_steps():
    warmup, total = 10, 110
    assert probe_lr_factor(1, warmup, total) == pytest.approx(0.1)
    assert probe_lr_factor(5, warmup, total) == pytest.approx(0.5)
    assert probe_lr_factor(10, warmup, total) == pytest.approx(1.0)
    assert probe_lr_factor(60, warmup, total) == pytest.approx(0.5)  # half-way through the cosine
    assert probe_lr_factor(110, warmup, total) == pytest.approx(0.0, abs=1e-12)
    # §6.3: beyond num_steps the cosine rises again, back at the peak at k = 2T − W.
    assert probe_lr_factor(160, warmup, total) == pytest.approx(0.5)
    assert probe_lr_factor(2 * total - warmup, warmup, total) == pytest.approx(1.0)


def run(controller: ProbeController, scores, max_passes: int = 1000) -> list[int]:
    """Drive the controller pass by pass; returns the steps at which validation happened."""
    validated, it = [], iter(scores)
    for _ in range(max_passes):
        for _ in range(controller.steps_per_epoch):
            if controller.step():
                validated.append(controller.step_count)
                controller.report(next(it))
        if controller.end_of_pass():
            break
    return validated


def test_validation_starts_after_start_epoch():
    c = ProbeController(steps_per_epoch=3, num_steps=10**6, patience=2, start_epoch=10)
    validated = run(c, [0.5, 0.4, 0.3])
    assert validated[0] == 33  # first at the end of epoch 11 (§6.4)
    assert validated == [33, 36, 39]  # best at 33, then two non-improvements = patience
    assert c.stop_reason == "patience" and c.best_step == 33


def test_ties_improve_for_auc_but_not_for_accuracy():
    auc = ProbeController(steps_per_epoch=1, num_steps=10**6, patience=2, start_epoch=0, ties_improve=True)
    assert run(auc, [0.7, 0.7, 0.7, 0.6, 0.6]) == [1, 2, 3, 4, 5]
    assert auc.best_step == 3  # the last tie is kept
    acc = ProbeController(steps_per_epoch=1, num_steps=10**6, patience=2, start_epoch=0, ties_improve=False)
    assert run(acc, [0.7, 0.7, 0.7]) == [1, 2, 3]
    assert acc.best_step == 1


def test_stop_only_at_the_end_of_a_pass_and_num_steps_needs_a_multiple():
    # num_steps 10 with 4 steps per pass: step 10 is mid-pass, so training runs on until the
    # first pass end that is a multiple of 10 (step 20) unless patience ends it first.
    c = ProbeController(steps_per_epoch=4, num_steps=10, patience=100, start_epoch=100)
    run(c, [])
    assert c.step_count == 20 and c.stop_reason == "num_steps"
    exact = ProbeController(steps_per_epoch=5, num_steps=10, patience=100, start_epoch=100)
    run(exact, [])
    assert exact.step_count == 10


@pytest.mark.parametrize(("per_pass", "num_steps"), [(4, 10), (5, 10), (7, 3), (82, 1000), (1, 1)])
def test_max_steps_is_where_a_run_without_patience_stops(per_pass, num_steps):
    # the progress bar's total: known before the first step
    c = ProbeController(steps_per_epoch=per_pass, num_steps=num_steps, patience=10**9, start_epoch=10**9)
    expected = c.max_steps
    run(c, [])
    assert c.step_count == expected and c.stop_reason == "num_steps"


def test_score_zero_counts_as_improvement_from_the_initial_best():
    c = ProbeController(steps_per_epoch=1, num_steps=10**6, patience=1, start_epoch=0)
    assert c.report(0.0) is True and c.best_step == 0 and c.down == 0
    assert c.report(math.nan) is False and c.down == 1  # an undefined score never improves
