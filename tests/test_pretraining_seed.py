"""``--set method.train.seed=N`` reaches pretraining: the seed changes the encoder, not only its folder.

A plugin method trains a tiny encoder for two steps on fixed in-memory volumes through the same
path as a run (``plan_run`` → ``RunPlan.encoder()`` → the encoder store → ``pretrain_and_export``).
"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from simcrop_bench.run.cell import RunRequest, plan_run

SEEDED = textwrap.dedent(
    '''
    """A tiny reconstruction method with the shared training recipe."""
    from dataclasses import dataclass, field

    from simcrop_bench.api import Method, MethodConfig, PretrainingParts
    from simcrop_bench.pretraining.config import PretrainConfig
    from simcrop_bench.registry import register_method


    class FixedVolumes:
        """Four volumes that depend on their index only, so that only the seed differs between runs."""

        def __init__(self, size):
            self.size = size

        def __len__(self):
            return 4

        def __getitem__(self, index):
            import torch

            return {"image": torch.rand(1, *self.size, generator=torch.Generator().manual_seed(index))}


    def build(encoder):
        from simcrop_bench.models.vit3d import ViT3D

        class Reconstruct(ViT3D):
            def forward(self, batch):
                return {"loss": ViT3D.forward(self, batch["image"]).pow(2).mean()}

        return Reconstruct(encoder)


    @dataclass
    class SeededConfig(MethodConfig):
        train: PretrainConfig = field(default_factory=PretrainConfig)


    @register_method("seeded-tiny")
    class SeededTiny(Method):
        """Two optimiser steps on fixed volumes."""

        kind = "self-supervised"
        Config = SeededConfig

        def build_pretraining(self, ctx):
            encoder = self.config.encoder
            return PretrainingParts(lambda: build(encoder), FixedVolumes(encoder.img_size))

        def pretrain(self, ctx):
            from simcrop_bench.baselines.training import pretrain_and_export

            return pretrain_and_export(self, ctx)
    '''
)
TINY = [
    "method.encoder.img_size=[16,16,8]",
    "method.encoder.patch_size=[8,8,4]",
    "method.encoder.embed_dim=16",
    "method.encoder.depth=1",
    "method.encoder.num_heads=2",
    "method.train.epochs=1",
    "method.train.batch_size=2",
    "method.train.effective_batch=none",  # a fixed accumulation, not the paper's 448
    "method.train.accum_steps=1",
    "method.train.warmup_epochs=0",
    "method.train.precision=fp32",
    "method.train.checkpoint_every=0",
]


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugins") / "seeded_method.py"
    path.write_text(SEEDED)
    return str(path)


def pretrained(plugin: str, results, seed: int | None) -> tuple[dict, dict]:
    """The encoder's weights and store meta of one pretraining (``seed`` None: the default)."""
    overrides = TINY + ([f"method.train.seed={seed}"] if seed is not None else [])
    request = RunRequest(
        "seeded-tiny", "luna16_cls", overrides=overrides, results=str(results), plugins=[plugin], device="cpu"
    )
    checkpoint, meta = plan_run(request).encoder()
    assert meta == json.loads((checkpoint.parent / "meta.json").read_text())
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["model"], meta


def test_train_seed_changes_the_encoder_and_the_same_seed_repeats_it(plugin, tmp_path):
    first, first_meta = pretrained(plugin, tmp_path / "a", 7)
    again, again_meta = pretrained(plugin, tmp_path / "b", 7)  # another store: trained again, not reused
    other, other_meta = pretrained(plugin, tmp_path / "a", 8)
    default, default_meta = pretrained(plugin, tmp_path / "a", None)

    assert (first_meta["seed"], other_meta["seed"], default_meta["seed"]) == (7, 8, 42)
    assert first_meta["pretrain_hash"] == again_meta["pretrain_hash"] != other_meta["pretrain_hash"]
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    for changed in (other, default):
        assert any(not torch.equal(first[k], changed[k]) for k in first)
