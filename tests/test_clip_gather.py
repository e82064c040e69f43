"""CLIP's negatives across processes: two gloo ranks with half the batch each give the loss and gradients
of one process with the whole batch (kept apart from test_baselines.py so the spawned ranks import little)."""

from __future__ import annotations

import pytest
import torch

from simcrop_bench.baselines.clip import clip_infonce
from simcrop_bench.pretraining.distributed import launch_local, rank

CLIP_BATCH, CLIP_DIM = 6, 5  # the whole batch; each of two ranks holds half of it


def clip_embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    return torch.randn(CLIP_BATCH, CLIP_DIM, generator=generator), torch.randn(
        CLIP_BATCH, CLIP_DIM, generator=generator
    )


def clip_rank_half(out_dir: str) -> None:
    """One rank's InfoNCE on its half of the batch, negatives gathered; saves its loss and its rows' gradients."""
    half = slice(rank() * CLIP_BATCH // 2, (rank() + 1) * CLIP_BATCH // 2)
    volume, report = (x[half].clone().requires_grad_() for x in clip_embeddings())
    loss = clip_infonce(volume, report, torch.tensor(3.0))
    loss.backward()
    torch.save({"loss": loss.detach(), "volume": volume.grad, "report": report.grad}, f"{out_dir}/rank{rank()}.pt")


def test_clip_negatives_gathered_across_two_processes_equal_one_process_of_the_whole_batch(tmp_path):
    launch_local(clip_rank_half, 2, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    volume, report = (x.clone().requires_grad_() for x in clip_embeddings())
    whole = clip_infonce(volume, report, torch.tensor(3.0))
    whole.backward()
    # DDP averages gradients over ranks: the mean of the rank losses is the loss of the whole batch.
    assert (ranks[0]["loss"] + ranks[1]["loss"]).item() / 2 == pytest.approx(whole.item(), rel=1e-6)
    for name, full in (("volume", volume.grad), ("report", report.grad)):
        torch.testing.assert_close(torch.cat([r[name] for r in ranks]) / 2, full, atol=1e-6, rtol=1e-5)
