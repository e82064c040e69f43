"""Every synthetic layout in the dataset table writes through `synthesize` and reads back as complete."""

from __future__ import annotations

import pytest

from simcrop_bench.data.datasets import DATASETS, synthesize

SMALL = {"luna16": 4, "btcv": 4, "ccccii": 3, "radchestct": 4, "ctrate": 3}
WRITABLE = [(d, name) for d, info in DATASETS.items() for name, layout in info.layouts.items() if layout.writer]


def test_every_dataset_has_both_layouts_declared():
    assert set(DATASETS) == {"ctrate", "radchestct", "ccccii", "luna16", "btcv"}
    for info in DATASETS.values():
        assert set(info.layouts) == {"official", "simcrop"}


@pytest.mark.parametrize("dataset, layout", WRITABLE)
def test_synthesize_writes_a_complete_marked_twin(dataset, layout, tmp_path):
    root = tmp_path / f"{dataset}-{layout}"
    synthesize(dataset, layout, root, cases=SMALL[dataset], seed=7)
    assert (root / "SYNTHETIC.md").is_file()
    entry = DATASETS[dataset].layouts[layout]
    assert entry.complete is not None and entry.complete()(root)
    if entry.checker:
        report = entry.checker()(root)
        assert report.ok, report.problems


PREPARABLE = [d for d, info in DATASETS.items() if info.layouts["official"].prepare]


def test_every_layout_has_a_twin_and_a_checker_and_every_official_layout_a_converter():
    for info in DATASETS.values():
        for layout in info.layouts.values():
            assert layout.writer and layout.checker and layout.complete
    assert sorted(PREPARABLE) == sorted(DATASETS)


@pytest.mark.parametrize("dataset", PREPARABLE)
def test_prepared_official_twin_checks_clean(dataset, tmp_path):
    official, prepared = tmp_path / "official", tmp_path / "prepared"
    synthesize(dataset, "official", official, cases=SMALL[dataset], seed=7)
    summary = DATASETS[dataset].layouts["official"].prepare()(official, prepared)
    assert summary["converted"] > 0
    checker = DATASETS[dataset].layouts["simcrop"].checker()
    report = checker(prepared)
    assert report.ok, report.problems
    assert report.counts  # it looked at something


def test_cli_prepare_forwards_options_that_apply(tmp_path):
    import nibabel as nib

    from .conftest import run_cli

    official = tmp_path / "ctrate-official"
    synthesize("ctrate", "official", official, cases=2, seed=3)
    out = tmp_path / "ctrate-prepared"
    done = run_cli(
        "data",
        "prepare",
        "--dataset",
        "ctrate",
        "--from",
        str(official),
        "--out",
        str(out),
        "--spacing",
        "10.5,10.5,10.5",
    )
    assert done.returncode == 0, done.stderr
    volume = next(out.rglob("*.nii"))  # the default store: uncompressed
    assert nib.load(str(volume)).header.get_zooms()[:3] == pytest.approx((10.5, 10.5, 10.5))
    gz = tmp_path / "ctrate-gz"
    done = run_cli(
        "data", "prepare", "-d", "ctrate", "--from", str(official), "--out", str(gz), "--format", "nii.gz", "-j", "2"
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in gz.rglob("*.nii.gz")) == sorted(p.name + ".gz" for p in out.rglob("*.nii"))
    for bad, message in (
        (["--workers", "0"], "--workers must be at least 1"),
        (["--shards", "2"], "--shards needs --executor local or slurm"),
        (["--executor", "cloud"], "--executor cloud: expected one of inline, local, slurm"),
    ):
        refused = run_cli("data", "prepare", "-d", "ctrate", "--from", str(official), "--out", str(gz), *bad)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr
    refused = run_cli(
        "data",
        "prepare",
        "--dataset",
        "btcv",
        "--from",
        str(official),
        "--out",
        str(tmp_path / "x"),
        "--spacing",
        "1,1,1",
    )
    assert refused.returncode == 2 and "--spacing does not apply to btcv" in refused.stderr
    # LUNA16 spreads its scans over threads of this process (-j), never over array shards; BTCV is serial
    for dataset, bad in (("luna16", ["--executor", "local", "--shards", "2"]), ("btcv", ["-j", "2"])):
        refused = run_cli("data", "prepare", "-d", dataset, "--from", str(official), "--out", str(tmp_path / "x"), *bad)
        assert (
            refused.returncode == 2 and f"--workers/--executor/--shards does not apply to {dataset}" in refused.stderr
        )


def test_the_table_imports_nothing_heavy_and_its_getters_return_the_real_functions():
    import subprocess
    import sys

    code = "import sys, simcrop_bench.data.datasets as d; d.get_layout('ctrate', 'simcrop'); print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'numpy'" not in loaded and "'nibabel'" not in loaded and "simcrop_bench.data.synthetic.ctrate" not in loaded
    for info in DATASETS.values():
        for name, layout in info.layouts.items():
            assert layout.writer().__module__ == f"simcrop_bench.data.synthetic.{info.name}"
            assert layout.checker().__module__.startswith("simcrop_bench.data.check.")
            assert layout.checker().__name__.endswith(f"{info.name}_{name}")
            if layout.prepare:
                assert layout.prepare().__module__ == f"simcrop_bench.data.prepare.{info.name}"
