"""UNETR on the shared ViT (``protocol.md`` §7.1–7.2): shapes, skips, position table,
gradient flow and weight transfer. Small encoders keep this fast on two CPU cores."""

from __future__ import annotations

import pytest
import torch

from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.models.pos_embed import sincos_pos_embed
from simcrop_bench.models.unetr import UNETR, default_skip_blocks, load_pretrained_encoder
from simcrop_bench.models.vit3d import ViT3D, export_released

torch.set_num_threads(2)


def encoder(seed: int = 0, **overrides) -> ViT3D:
    torch.manual_seed(seed)
    base = dict(img_size=(64, 64, 32), embed_dim=24, depth=4, num_heads=2)
    return ViT3D(EncoderConfig(**{**base, **overrides}))


def test_default_skip_blocks():
    assert default_skip_blocks(12) == (3, 6, 9)
    assert default_skip_blocks(4) == (1, 2, 3)


@pytest.mark.parametrize("roi", [(64, 64, 32), (96, 96, 48)])
def test_output_shape(roi):
    net = UNETR(encoder(), out_channels=3, roi_size=roi, feature_size=4).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, *roi)).shape == (1, 3, *roi)


def test_small_vit_b_shaped_encoder_runs():
    net = UNETR(encoder(embed_dim=96, depth=4, num_heads=4), out_channels=2, roi_size=(64, 64, 32), feature_size=8)
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 1, 64, 64, 32)).shape == (1, 2, 64, 64, 32)


def test_variant_b_table_and_raw_block_skips():
    vit = encoder(pos_embed="A")  # ROI grid equals the configured grid, yet segmentation needs Variant B
    net = UNETR(vit, out_channels=2, roi_size=(64, 64, 32), feature_size=4).eval()
    seen = {}
    vit.blocks[0].register_forward_pre_hook(lambda m, args: seen.__setitem__("tokens", args[0]))
    net.encoder2.register_forward_pre_hook(lambda m, args: seen.__setitem__("skip", args[0]))
    x = torch.randn(2, 1, 64, 64, 32)
    with torch.no_grad():
        net(x)
        table_b = torch.from_numpy(sincos_pos_embed((4, 4, 4), 24, "B"))
        torch.testing.assert_close(seen["tokens"], vit.patch_embed(x) + table_b)  # no cls token
        hidden = vit.forward_features(x, use_cls_token=False, pos_variant="B")[1][1]
    i, j, k = 1, 2, 3
    torch.testing.assert_close(seen["skip"][:, :, i, j, k], hidden[:, (i * 4 + j) * 4 + k])


def test_gradients_reach_encoder_and_decoder():
    net = UNETR(encoder(), out_channels=2, roi_size=(64, 64, 32), feature_size=4)
    net(torch.randn(2, 1, 64, 64, 32)).square().mean().backward()
    for name in ("vit.patch_embed.proj.weight", "vit.blocks.0.attn.qkv.weight", "vit.blocks.3.mlp.fc2.weight",
                 "fc_norm.weight", "encoder1.layer.conv1.conv.weight", "decoder2.conv3d.weight",
                 "out.conv.conv.weight"):  # fmt: skip
        grad = net.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    # unused in segmentation: frozen or removed, so every trainable parameter receives a gradient
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert not any(k.startswith("vit.norm.") for k in net.state_dict())


def test_weight_transfer_loads_blocks_but_not_positions():
    pretrained = encoder(seed=1)
    net = UNETR(encoder(seed=2), out_channels=2, roi_size=(64, 64, 32), feature_size=4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = load_pretrained_encoder(net, export_released(pretrained))
    after, source = net.state_dict(), pretrained.state_dict()
    assert report.target == "segmentation" and not report.missing
    assert {"cls_token", "pos_embed"} <= set(report.ignored)
    for name in after:
        short = name.removeprefix("vit.")
        if name.startswith(("vit.patch_embed.", "vit.blocks.")):
            assert torch.equal(after[name], source[short]), name
        else:  # cls token, pos_embed, fc_norm and the decoder stay as they were
            assert torch.equal(after[name], before[name]), name
