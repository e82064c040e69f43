"""The persistent preprocessing cache is keyed by the transform chain and the source files."""

from __future__ import annotations

import os

import torch

from simcrop_bench.data.luna16 import lung_seg_splits
from simcrop_bench.data.synthetic.luna16 import write_luna16_twin
from simcrop_bench.protocols.segmentation.config import SegmentationConfig
from simcrop_bench.protocols.segmentation.finetune import preprocess_cases, preprocessing


def entries(folder):
    return sorted(p.name for p in folder.glob("*.pt"))


def test_cache_hits_and_invalidates(tmp_path):
    root = tmp_path / "twin"
    write_luna16_twin(root, n_cases=4)
    items = lung_seg_splits(root, 100, "legacy", validation_cases=1, val_fraction=0.1).testing[:2]
    cache = tmp_path / "cache"
    cfg = SegmentationConfig(roi_size=(64, 64, 32), spacing=None)

    fresh = preprocess_cases(items, preprocessing(cfg), 4)
    first = preprocess_cases(items, preprocessing(cfg), 4, cache)
    assert len(entries(cache)) == 2
    again = preprocess_cases(items, preprocessing(cfg), 4, cache)
    assert len(entries(cache)) == 2  # hit: nothing new written
    for a, b, c in zip(fresh, first, again):
        assert torch.equal(a["image"].as_tensor(), c["image"].as_tensor())
        assert torch.equal(a["label"], c["label"]) and torch.equal(b["label"], c["label"])
        assert torch.allclose(torch.as_tensor(a["image"].affine), torch.as_tensor(c["image"].affine))

    other_window = SegmentationConfig(roi_size=(64, 64, 32), spacing=None, hu_window=(-500.0, 500.0))
    preprocess_cases(items, preprocessing(other_window), 4, cache)
    assert len(entries(cache)) == 4  # a changed transform chain is a new key

    image = items[0]["image"]
    stat = os.stat(image)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file was replaced
    preprocess_cases(items[:1], preprocessing(cfg), 4, cache)
    assert len(entries(cache)) == 5
