"""SimCroP pretraining samples are drawn per sample, so masks do not depend on rank or batch."""

from __future__ import annotations

import torch

from simcrop_bench.data.ctrate import pretraining_samples
from simcrop_bench.data.synthetic.ctrate import write_ctrate_twin
from simcrop_bench.simcrop.data import PretrainingDataset
from simcrop_bench.simcrop.text import load_text_encoder

from .test_simcrop_model import tiny_batch, tiny_model


def test_items_are_reproducible_per_seed(tmp_path):
    root = tmp_path / "ctrate"
    write_ctrate_twin(root, n_cases=2, layout="simcrop")
    _, tokenizer = load_text_encoder(None)
    dataset = PretrainingDataset(
        pretraining_samples(root),
        tokenizer,
        roi=(64, 64, 32),
        num_tokens=64,
        max_len=128,
        mask_prob=0.75,
        mask_padding=True,
        join="concat",
    )
    torch.manual_seed(3)
    first = dataset[0]
    torch.manual_seed(3)
    again = dataset[0]
    for key, value in first.items():
        assert torch.equal(value, again[key]), key
    assert first["image"].shape == (1, 64, 64, 32) and first["mim_noise"].shape == (64,)
    assert (first["sentence_ids"] > 0).any()  # the findings text has sentences
    masked = (first["report_masked_ids"] != first["report_ids"]).float().mean()
    assert 0.5 < masked < 0.9  # 75 % masking over positions 1..L-2, padding included (faithful)


def test_batch_noise_fixes_each_samples_mask():
    model = tiny_model()
    batch = tiny_batch()
    noise = torch.rand(batch["image"].shape[0], 64)
    _, together = model.encode_masked(batch["image"], noise=noise)
    _, alone = model.encode_masked(batch["image"][:1], noise=noise[:1])
    assert torch.equal(together.mask[:1], alone.mask)
