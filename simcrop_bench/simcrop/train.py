"""SimCroP pretraining entry point: one process, or several CPU/GPU processes joined by a process group.

Kept in an importable module (not in ``methods/simcrop.py``) because spawned workers must be able to
import the function they run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..data.ctrate import pretraining_samples
from ..models.config import EncoderConfig
from ..pretraining.config import PretrainConfig
from ..pretraining.distributed import launch_local
from ..pretraining.loop import pretrain
from .config import SimCroPConfig
from .data import PretrainingDataset
from .model import SimCroPModel
from .text import load_text_encoder


def run_pretraining(encoder: EncoderConfig, simcrop: SimCroPConfig, train: PretrainConfig, ctrate_root: Path,
                    workdir: Path, device: str) -> Any:
    """Train in this process (or in this rank of an initialised group); returns the loop's result."""
    simcrop = simcrop.resolved()
    text_encoder, tokenizer = load_text_encoder(simcrop.text_encoder_path)
    dataset = PretrainingDataset(
        pretraining_samples(ctrate_root), tokenizer, roi=encoder.img_size,
        num_tokens=int(torch.tensor(encoder.grid()).prod()), max_len=simcrop.max_text_len,
        mask_prob=simcrop.mlm_mask_prob, mask_padding=simcrop.mlm_mask_padding, join=simcrop.report_join,
    )

    def build() -> SimCroPModel:
        return SimCroPModel(encoder, simcrop, text_encoder=text_encoder, tokenizer=tokenizer)

    return pretrain(build, dataset, train, workdir, device=device, log_every=5)


def _rank_worker(*args: Any) -> None:
    run_pretraining(*args)


def pretrain_simcrop(encoder: EncoderConfig, simcrop: SimCroPConfig, train: PretrainConfig, ctrate_root: Path,
                     workdir: Path, device: str, processes: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Pretrain with ``processes`` processes; returns the trained model and a summary (steps, epochs)."""
    if processes <= 1:
        result = run_pretraining(encoder, simcrop, train, ctrate_root, workdir, device)
        return result.model, {"steps": result.step, "epochs": result.epoch, "processes": 1}
    launch_local(_rank_worker, processes, encoder, simcrop, train, ctrate_root, workdir, device)
    # The workers are gone; the final checkpoint holds the trained weights.
    from ..pretraining.training_checkpoint import CHECKPOINT_NAME, load_training_checkpoint

    saved = load_training_checkpoint(workdir / CHECKPOINT_NAME)
    text_encoder, tokenizer = load_text_encoder(simcrop.resolved().text_encoder_path)
    model = SimCroPModel(encoder, simcrop.resolved(), text_encoder=text_encoder, tokenizer=tokenizer)
    model.load_state_dict(saved["model"])
    return model, {"steps": saved["step"], "epochs": saved["epoch"], "processes": processes}
