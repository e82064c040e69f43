"""SimCroP pretraining entry point: one process, or several CPU/GPU processes joined by a process group.

Kept in an importable module (not in ``methods/simcrop.py``) because spawned workers must be able to
import the function they run.

Multi-process equivalence. Every *data-side* random draw is per sample (``pretraining.rng.SeededItems``):
the crop/flip augmentation, the 75 % report masking and the image-token masking noise (``mim_noise``).
So N processes with batch b see the same samples, masks and targets as one process with batch N·b, and
with no dropout anywhere the loss curves agree to float-reduction order (1e-4 over a few steps on CPU/gloo;
tested in the clean variant with ``text_decoder_dropout = 0``). *Dropout* is not per sample: its masks come
from each rank's global torch stream (seed 42 + rank, §5.4), so runs with different process counts draw
different masks and agree only in distribution, never step for step. That concerns

* the report decoder: hidden and attention-probability dropout ``text_decoder_dropout`` (0.1) in the fusion
  layer (including ``cross_self_attention``'s SDPA ``dropout_p``) and in its BERT layers — both variants;
* the frozen text encoder in the faithful variant (§9 F9: dropout left on, hidden 0.1 for MiniLM / 0.25 for
  CXR-BERT, attention 0.1) — on both the findings and the masked-report calls.

Per-sample seeded dropout is not implemented because it is not cheap: every dropout site (about 4 per BERT
layer, inside ``transformers`` modules) would have to be replaced by one drawing its mask from a generator
seeded per (sample, step, site), the attention-probability dropout then needs eager attention instead of the
fused SDPA kernels (materialising B·heads·L² probabilities at L = 512), and B separate generator draws per
site per step on the GPU. The same holds for the reference, whose DDP runs also draw dropout per rank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from simcrop_bench.data.ctrate import pretraining_samples
from simcrop_bench.data.synthetic.finding_regions import has_regions
from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.pretraining import distributed as dist_utils
from simcrop_bench.pretraining.config import PretrainConfig, recipe_summary
from simcrop_bench.pretraining.distributed import launch_local
from simcrop_bench.pretraining.loop import pretrain
from simcrop_bench.pretraining.training_checkpoint import CHECKPOINT_NAME, load_model_state, load_training_checkpoint
from simcrop_bench.simcrop.config import SimCroPConfig
from simcrop_bench.simcrop.data import PretrainingDataset
from simcrop_bench.simcrop.init import init_record, load_mae_init
from simcrop_bench.simcrop.model import SimCroPModel
from simcrop_bench.simcrop.text import load_text_encoder, text_encoder_identity, text_encoder_record
from simcrop_bench.util.progress import log


def build_model(
    encoder: EncoderConfig,
    simcrop: SimCroPConfig,
    text_encoder: torch.nn.Module,
    tokenizer: Any,
    identity: dict[str, Any] | None,
    *,
    special_ids: Any = None,
    announce: bool = False,
) -> SimCroPModel:
    """The model of §2 with the §2.1 initialisation (``simcrop.init_encoder``) applied."""
    model = SimCroPModel(
        encoder,
        simcrop,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        special_ids=special_ids,
        text_encoder_identity=identity,
    )
    if simcrop.init_encoder:
        loaded = load_mae_init(model, simcrop.init_encoder)
        if announce:
            log(f"init_encoder {loaded['summary']}")
    return model


def pretraining_parts(
    encoder: EncoderConfig, simcrop: SimCroPConfig, ctrate_root: Path, *, announce: bool = False
) -> tuple[Any, PretrainingDataset]:
    """The model factory and the dataset the loop trains (also what ``check-method`` pushes a batch through)."""
    simcrop = simcrop.resolved()
    text_encoder, tokenizer = load_text_encoder(simcrop.text_encoder_path)
    identity = text_encoder_identity(simcrop.text_encoder_path)  # checkpoints store this, not the weights
    dataset = PretrainingDataset(
        pretraining_samples(ctrate_root),
        tokenizer,
        roi=encoder.img_size,
        num_tokens=int(torch.tensor(encoder.grid()).prod()),
        max_len=simcrop.max_text_len,
        mask_prob=simcrop.mlm_mask_prob,
        mask_padding=simcrop.mlm_mask_padding,
        join=simcrop.report_join,
    )

    def build() -> SimCroPModel:
        # on resume the checkpoint then overwrites the initialisation, except the frozen text encoder
        return build_model(encoder, simcrop, text_encoder, tokenizer, identity, announce=announce)

    return build, dataset


def run_pretraining(
    encoder: EncoderConfig, simcrop: SimCroPConfig, train: PretrainConfig, ctrate_root: Path, workdir: Path, device: str
) -> Any:
    """Train in this process (or in this rank of an initialised group); returns the loop's result."""
    build, dataset = pretraining_parts(encoder, simcrop, ctrate_root, announce=dist_utils.rank() == 0)
    monitor = None
    if dist_utils.rank() == 0 and has_regions(ctrate_root):  # a twin knows where its findings are (#15)
        from simcrop_bench.simcrop.grounding import GroundingMonitor

        monitor = GroundingMonitor(ctrate_root)
    resolved = simcrop.resolved()
    record = {
        "text_encoder": text_encoder_record(text_encoder_identity(resolved.text_encoder_path)),
        "init": init_record(resolved.init_encoder),
    }
    return pretrain(build, dataset, train, workdir, device=device, monitor=monitor, record=record)


def _rank_worker(*args: Any) -> None:
    run_pretraining(*args)


def pretrain_simcrop(
    encoder: EncoderConfig,
    simcrop: SimCroPConfig,
    train: PretrainConfig,
    ctrate_root: Path,
    workdir: Path,
    device: str,
    processes: int,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Pretrain with ``processes`` processes; returns the trained model and a summary (steps, epochs)."""
    if processes <= 1:
        result = run_pretraining(encoder, simcrop, train, ctrate_root, workdir, device).completed("simcrop")
        return result.model, {"steps": result.step, "epochs": result.epoch, "processes": 1, "recipe": result.recipe}
    launch_local(_rank_worker, processes, encoder, simcrop, train, ctrate_root, workdir, device)
    # The workers are gone; the final checkpoint holds the trained weights (the text encoder: its identity).
    saved = load_training_checkpoint(workdir / CHECKPOINT_NAME)
    path = simcrop.resolved().text_encoder_path
    text_encoder, tokenizer = load_text_encoder(path)
    model = SimCroPModel(
        encoder,
        simcrop.resolved(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_identity=text_encoder_identity(path),
    )
    load_model_state(model, saved)
    recipe = recipe_summary(train, processes)
    return model, {"steps": saved["step"], "epochs": saved["epoch"], "processes": processes, "recipe": recipe}
