"""`bench probe`: three real runs in a private cache; the user's cache is left alone."""

from __future__ import annotations

import pytest

from simcrop_bench.bench.probe import probe_protocols, probe_ratios
from simcrop_bench.data.roots import cache_dir


@pytest.mark.slow
def test_probe_bench_runs_paper_then_cold_then_warm_cache_in_a_private_cache():
    features = cache_dir() / "preprocessed" / "probe-features"
    before = sorted(features.rglob("*")) if features.exists() else []
    timings = probe_protocols("luna16_cls", "scratch", extra=["--set", "task.num_steps=10"])
    assert [t.mode for t in timings] == ["paper", "cached, cold cache", "cached, warm cache"]
    assert timings[0].cache_hits == {"selection": False, "test": False}  # paper: evaluation features only
    assert not any(timings[1].cache_hits.values()) and set(timings[1].cache_hits) == {"selection", "test", "train"}
    assert all(timings[2].cache_hits.values())
    assert timings[1].value == timings[2].value  # same features, same head, same seed
    assert all(t.wall_s > t.protocol_s > 0 for t in timings)
    ratios = probe_ratios(timings)
    assert ratios["end to end, cached, warm cache"] == pytest.approx(timings[0].wall_s / timings[2].wall_s)
    assert (sorted(features.rglob("*")) if features.exists() else []) == before


def test_probe_bench_refuses_fewer_than_one_seed_in_one_line():
    from .conftest import run_cli
    from .test_end_to_end import assert_clean_failure

    assert_clean_failure(run_cli("bench", "probe", "--seeds", "0"), "seeds=0", "at least one seed")
