"""Shared ResNet encoders and layers: sizes, names, dilation convention, GN+WS behaviour, ASPP."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from training.networks.layers import ASPP, WSConv2d, gn_groups, norm2d, standardise_weight
from training.networks.resnet import resnet, widen_first_conv

# torchvision's resnetN parameter counts minus the 1000-way classifier (fc); timm's resnet50d likewise.
ENCODER_PARAMS = {18: 11_176_512, 34: 21_284_672, 50: 23_508_032, 101: 42_500_160}
RESNET50D_PARAMS = 23_527_264


@pytest.mark.parametrize("depth", sorted(ENCODER_PARAMS))
def test_parameter_counts_match_torchvision(depth: int) -> None:
    assert sum(p.numel() for p in resnet(depth).parameters()) == ENCODER_PARAMS[depth]


def test_resnet50d_parameter_count_and_timm_names() -> None:
    encoder = resnet(50, deep_stem=True, avg_down=True)
    assert sum(p.numel() for p in encoder.parameters()) == RESNET50D_PARAMS
    keys = set(encoder.state_dict())
    assert {"conv1.0.weight", "conv1.3.weight", "conv1.6.weight", "bn1.weight"} <= keys
    assert isinstance(encoder.layer2[0].downsample[0], nn.AvgPool2d)
    assert isinstance(encoder.layer1[0].downsample[0], nn.Identity)  # stride 1: nothing to pool
    assert "layer2.0.downsample.1.weight" in keys and "layer2.0.downsample.2.running_var" in keys
    feats = encoder.eval()(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]


def test_torchvision_parameter_names() -> None:
    keys = list(resnet(50).state_dict())
    assert keys[:8] == [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
        "layer1.0.conv1.weight",
        "layer1.0.bn1.weight",
    ]
    assert "layer1.0.downsample.0.weight" in keys and "layer1.0.downsample.1.running_mean" in keys
    assert [k for k in keys if "conv" in k][-1] == "layer4.2.conv3.weight"
    assert not any(k.startswith("fc.") for k in keys)


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_feature_shapes(depth: int, output_stride: int) -> None:
    encoder = resnet(depth, norm="gn_ws", in_channels=5, output_stride=output_stride).eval()
    with torch.no_grad():
        feats = encoder(torch.randn(2, 5, 64, 96))
    expansion = 4 if depth == 50 else 1
    assert encoder.channels == [64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]
    assert encoder.strides == [2, 4, 8, min(16, output_stride), output_stride]
    assert [f.shape[1] for f in feats] == encoder.channels
    assert [(f.shape[2], f.shape[3]) for f in feats] == [(64 // s, 96 // s) for s in encoder.strides]


def _geometry(conv: nn.Conv2d) -> tuple[int, int, int]:
    return conv.stride[0], conv.dilation[0], conv.padding[0]


def test_nostride_dilation_convention_bottleneck() -> None:
    os8 = resnet(50, output_stride=8)
    assert _geometry(os8.layer2[0].conv2) == (2, 1, 1)
    assert _geometry(os8.layer3[0].conv2) == (1, 1, 1)  # was strided: dilation d/2 = 1
    assert _geometry(os8.layer3[1].conv2) == (1, 2, 2)
    assert _geometry(os8.layer4[0].conv2) == (1, 2, 2)  # d/2 = 2
    assert _geometry(os8.layer4[2].conv2) == (1, 4, 4)
    assert os8.layer3[0].downsample[0].stride == (1, 1) and os8.layer4[0].downsample[0].stride == (1, 1)
    os16 = resnet(50, output_stride=16)
    assert _geometry(os16.layer3[0].conv2) == (2, 1, 1)
    assert _geometry(os16.layer4[0].conv2) == (1, 1, 1)
    assert _geometry(os16.layer4[1].conv2) == (1, 2, 2)


def test_nostride_dilation_convention_basic_block() -> None:
    os8 = resnet(18, output_stride=8)
    assert _geometry(os8.layer3[0].conv1) == (1, 1, 1)  # the strided conv: d/2
    assert _geometry(os8.layer3[0].conv2) == (1, 2, 2)  # every other 3×3 conv: d
    assert _geometry(os8.layer4[0].conv1) == (1, 2, 2)
    assert _geometry(os8.layer4[1].conv1) == (1, 4, 4)


def test_gn_ws_everywhere_in_the_encoder() -> None:
    encoder = resnet(34, norm="gn_ws", deep_stem=True)
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in encoder.modules() if isinstance(m, nn.GroupNorm | nn.BatchNorm2d)]
    assert convs and all(isinstance(m, WSConv2d) for m in convs)
    assert norms and all(isinstance(m, nn.GroupNorm) and m.num_groups == 32 for m in norms)


def test_forward_with_indices_unpools() -> None:
    encoder = resnet(18).eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        feats, indices = encoder.forward_with_indices(x)
        plain = encoder(x)
        stem = feats[0]
        _, expected = F.max_pool2d(stem, 3, stride=2, padding=1, return_indices=True)
    assert all(torch.equal(a, b) for a, b in zip(feats, plain, strict=True))
    assert torch.equal(indices, expected)
    unpooled = F.max_unpool2d(feats[1], indices, 2, stride=2, output_size=stem.shape[-2:])
    assert unpooled.shape == (1, 64, 16, 24)


def test_widened_first_conv_keeps_the_rgb_model() -> None:
    torch.manual_seed(0)
    rgb = resnet(18).eval()
    four = resnet(18, in_channels=4).eval()
    state = rgb.state_dict()
    state["conv1.weight"] = widen_first_conv(state["conv1.weight"], 4)
    four.load_state_dict(state)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = rgb(x)[-1]
        got = four(torch.cat([x, torch.rand(1, 1, 32, 32)], dim=1))[-1]
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="narrow"):
        widen_first_conv(state["conv1.weight"][:, :2], 1)


def test_invalid_options() -> None:
    with pytest.raises(ValueError, match="depth"):
        resnet(42)
    with pytest.raises(ValueError, match="output_stride"):
        resnet(18, output_stride=4)
    with pytest.raises(ValueError, match="norm"):
        resnet(18, norm="ln")


def test_standardise_weight_statistics() -> None:
    w = torch.randn(8, 4, 3, 3) * 3 + 1
    s = standardise_weight(w).flatten(1)
    torch.testing.assert_close(s.mean(1), torch.zeros(8), atol=1e-6, rtol=0)
    torch.testing.assert_close(s.var(1, unbiased=False), torch.full((8,), 1.0), atol=1e-4, rtol=0)
    # Re-standardising is (almost) the identity: checkpoints of standardised weights are stable.
    torch.testing.assert_close(
        standardise_weight(standardise_weight(w)), standardise_weight(w), atol=0, rtol=1e-5
    )


def test_ws_conv_training_then_checkpoint_round_trip() -> None:
    torch.manual_seed(0)
    conv = WSConv2d(4, 8, 3, padding=1)
    x = torch.randn(2, 4, 10, 10)
    # Loaded (or fresh) weights are used as stored: the reference's inference behaviour.
    conv.eval()
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
    # Training standardises, differentiably, and gradient accumulation over two passes works.
    conv.train()
    (conv(x).square().mean() + conv(x).mean()).backward()
    assert conv.weight.grad is not None
    # The standardisation's Jacobian removes each filter's mean direction from the gradient.
    torch.testing.assert_close(conv.weight.grad.flatten(1).mean(1), torch.zeros(8), atol=1e-6, rtol=0)
    conv.eval()
    trained_out = conv(x)
    torch.testing.assert_close(
        trained_out, F.conv2d(x, standardise_weight(conv.weight), conv.bias, padding=1)
    )
    # A checkpoint holds the effective weight, and reloading reproduces the trained outputs.
    state = conv.state_dict()
    torch.testing.assert_close(state["weight"], standardise_weight(conv.weight).detach())
    fresh = WSConv2d(4, 8, 3, padding=1)
    fresh.load_state_dict(state)
    fresh.eval()
    assert not fresh.standardise_on_forward
    torch.testing.assert_close(fresh(x), trained_out, atol=1e-5, rtol=0)


def test_group_counts() -> None:
    assert gn_groups(256) == 32 and gn_groups(48) == 16
    assert norm2d("gn_ws", 48).num_groups == 16
    assert isinstance(norm2d("bn", 48), nn.BatchNorm2d)


def test_aspp_shape() -> None:
    aspp = ASPP(512, 256, (6, 12, 18), norm="gn_ws").eval()
    with torch.no_grad():
        out = aspp(torch.randn(1, 512, 11, 13))
    assert out.shape == (1, 256, 11, 13)
    assert aspp.project[0].in_channels == 5 * 256
    assert [b[0].dilation[0] for b in aspp.branches] == [1, 6, 12, 18]
