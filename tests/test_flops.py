"""The analytic SimCroP FLOP count against torch's FLOP counter on a tiny model (matmuls only, as counted)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from simcrop_bench.bench.flops import TextEncoderShape, cores_per_gpu, simcrop_sample_flops
from tests.test_simcrop_model import TINY_ENCODER, VOCAB, tiny_batch, tiny_cfg, tiny_model


@pytest.mark.parametrize(("fusion", "alignment"), [("full", "on"), ("gap_only", "off"), ("none", "on")])
def test_analytic_forward_flops_match_torch_counter(fusion, alignment):
    model = tiny_model(fusion=fusion, alignment=alignment).eval()
    batch = {key: value[:1] for key, value in tiny_batch().items()}
    # the math kernel decomposes attention into matmuls the counter sees (the fused CPU kernel is not counted)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(batch)
    text = TextEncoderShape(hidden=24, layers=1, ffn=48, vocab=VOCAB)  # tiny_text_encoder's shape
    sample = simcrop_sample_flops(TINY_ENCODER, tiny_cfg(fusion=fusion, alignment=alignment), text)
    # the analytic count leaves out the top-K similarity products (< 1 % here, far less at the paper size)
    assert sample.trainable_forward + sample.frozen_forward == pytest.approx(counter.get_total_flops(), rel=0.01)


def test_paper_sample_and_cores_per_gpu():
    sample = simcrop_sample_flops()
    assert sample.text_encoder_calls == 2
    assert sample.train_step == 3 * sample.trainable_forward + 2 * sample.text_encoder_per_call
    # the loader rate sets the cores: twice as fast per core, half the cores
    assert cores_per_gpu(8.0, sample) == pytest.approx(2 * cores_per_gpu(16.0, sample))
