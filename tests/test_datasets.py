"""Every synthetic layout in the dataset table writes through `synthesize` and reads back as complete."""

from __future__ import annotations

import pytest

from simcrop_bench.data.datasets import DATASETS, resolve, synthesize

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
    assert entry.complete is not None and resolve(entry.complete)(root)
    if entry.checker:
        report = resolve(entry.checker)(root)
        assert report.ok, report.problems
