"""`weights inspect|import|export`: bit-exact round trips and refusals of silently wrong loads."""

from __future__ import annotations

import json

import pytest
import torch

from simcrop_bench.errors import UserError
from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.models.vit3d import ViT3D, export_released
from simcrop_bench.run.weights import export_checkpoint, import_checkpoint, inspect_checkpoint

from .conftest import run_cli

SMALL = EncoderConfig(img_size=(32, 32, 16), embed_dim=64, depth=2, num_heads=1)


def test_export_import_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    model = ViT3D(SMALL)
    native = tmp_path / "native.pt"
    # a native training file: encoder keys plus decoder/text modules under their own names
    torch.save({"model": {**model.state_dict(), "decoder_embed.weight": torch.ones(2, 2)}, "epoch": 3}, native)
    released = tmp_path / "released.pth"
    export_checkpoint(native, released)
    exported = torch.load(released, weights_only=True)["model"]
    assert "decoder_embed.weight" not in exported and not any(k.startswith(("fc_norm", "head")) for k in exported)
    stored = import_checkpoint(released, tmp_path / "results", "mine")
    again = torch.load(stored, weights_only=True)["model"]
    assert set(again) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(again[key], value), key


def test_released_key_names_and_shapes_import_with_nothing_missing(tmp_path):
    # simcrop-method.md §10.1: ViT-B/(16,16,8), pos_embed (1, 2745, 768) with a zero cls row.
    torch.manual_seed(0)
    state = export_released(ViT3D(EncoderConfig()))
    path = tmp_path / "simcrop.pth"
    torch.save({"model": state["model"], "optimizer": {}, "epoch": 199}, path)
    info = inspect_checkpoint(path)
    assert info["missing_encoder_keys"] == [] and info["unexpected_encoder_keys"] == []
    assert info["encoder"]["embed_dim"] == 768 and info["encoder"]["depth"] == 12
    assert tuple(info["encoder"]["img_size"]) == (224, 224, 112) and info["pos_embed_variant"] == "B"
    assert import_checkpoint(path, tmp_path / "results", "released").is_file()


def test_missing_pos_embed_is_refused_unless_allowed(tmp_path):
    state = export_released(ViT3D(SMALL))["model"]
    del state["pos_embed"]
    path = tmp_path / "no_pos.pth"
    torch.save({"model": state}, path)
    with pytest.raises(UserError, match="has no pos_embed"):
        import_checkpoint(path, tmp_path / "results", "x")
    assert not (tmp_path / "results" / "checkpoints" / "imported" / "x").exists()
    result = run_cli("weights", "import", str(path), "--name", "y", "--results", str(tmp_path / "results"))
    assert result.returncode == 2 and "has no pos_embed" in result.stderr and "Traceback" not in result.stderr


def test_cli_inspect_and_unsafe_file(tmp_path):
    path = tmp_path / "enc.pth"
    torch.save(export_released(ViT3D(SMALL)), path)
    shown = run_cli("weights", "inspect", str(path))
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["encoder_tensors"] == len(ViT3D(SMALL).state_dict()) and info["missing_encoder_keys"] == []
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": {}, "obj": object()}, unsafe)
    refused = run_cli("weights", "inspect", str(unsafe))
    assert refused.returncode == 2 and "cannot read checkpoint" in refused.stderr, refused.stderr
