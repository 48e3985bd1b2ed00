"""The LSA baseline: shapes, ResNet-50-D encoder, eSE blocks, and the BRMs' refinement contract."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from training.networks.lsa import (  # noqa: E402
    BackpropRefinement,
    DecoderStage,
    EffectiveSE,
    LSANet,
    lsa_net,
)
from training.networks.resnet import resnet  # noqa: E402


@pytest.fixture(scope="module")
def net() -> LSANet:
    """An untrained net whose BatchNorm statistics come from one batch, as a trained net's would.

    With the default running statistics (mean 0, variance 1) the untrained decoder's activations
    shrink stage by stage and its output barely reacts to anything; calibrated, it responds like
    a real network, so "the output changes" assertions are meaningful.
    """
    torch.manual_seed(0)
    model = lsa_net()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one batch sets the statistics
    with torch.no_grad():
        model.train()(torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(0)))
    return model.eval()


def _input(h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 4, h, w, generator=torch.Generator().manual_seed(seed))


def _without_brms(net: LSANet) -> LSANet:
    bare = copy.deepcopy(net)
    for key in list(bare.brm):
        bare.brm[key] = nn.Identity()
    return bare


@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_forward_shape_and_range(net: LSANet, size: tuple[int, int]) -> None:
    with torch.no_grad():
        alpha = net(_input(*size))
    assert alpha.shape == (1, 1, *size)
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    # Clamped, not squashed: an untrained net already lands strictly inside (0, 1) for most pixels.
    assert 0.0 < ((alpha > 0) & (alpha < 1)).float().mean() <= 1.0


def test_encoder_is_resnet50d_with_4_channel_input(net: LSANet) -> None:
    enc = net.encoder
    assert enc.channels == [64, 256, 512, 1024, 2048]
    assert enc.output_stride == 32
    assert isinstance(enc.conv1, nn.Sequential)  # deep stem: three 3×3 convs
    stem_convs = [m for m in enc.conv1 if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in stem_convs] == [(3, 3)] * 3
    assert stem_convs[0].in_channels == 4
    assert isinstance(enc.layer2[0].downsample[0], nn.AvgPool2d)  # avg-down shortcut
    with torch.no_grad():
        feats = enc(_input(64, 64))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]


def test_rejects_encoder_with_other_output_stride() -> None:
    with pytest.raises(ValueError, match="output-stride-32"):
        LSANet(resnet(18, in_channels=4, output_stride=16))


def test_ese_is_one_conv_and_hard_sigmoid() -> None:
    torch.manual_seed(0)
    block = EffectiveSE(8)
    assert [type(m) for m in block.modules() if isinstance(m, nn.Conv2d)] == [nn.Conv2d]
    x = torch.randn(2, 8, 5, 7) * 3
    pooled = x.mean(dim=(2, 3))  # N × C
    z = pooled @ block.fc.weight[:, :, 0, 0].T + block.fc.bias
    gate = torch.clamp(z / 6 + 0.5, 0.0, 1.0)  # hard-sigmoid, relu6(z + 3) / 6
    expected = x * gate[:, :, None, None]
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_every_decoder_stage_ends_in_ese(net: LSANet) -> None:
    stages = [net.stage5, net.stage4, net.stage3, net.stage2, net.stage1]
    assert all(isinstance(s, DecoderStage) and isinstance(s.fuse[-1], EffectiveSE) for s in stages)
    assert [s.fuse[-1].fc.out_channels for s in stages] == [256, 128, 64, 32, 32]


def test_brm_shapes_follow_two_to_the_eight_minus_l(net: LSANet) -> None:
    shapes = {k: tuple(m.a.shape) for k, m in net.brm.items()}
    assert shapes == {
        "2": (1, 32, 64, 64),
        "3": (1, 64, 32, 32),
        "4": (1, 128, 16, 16),
        "5": (1, 256, 8, 8),
    }
    assert all(m.b.shape == m.a.shape for m in net.brm.values())


def test_brm_formula_by_hand() -> None:
    brm = BackpropRefinement(3, 4)
    x = torch.randn(2, 3, 10, 6)
    with torch.no_grad():
        brm.a.fill_(torch.log(torch.tensor(2.0)))
        brm.b.fill_(0.5)
    # Interpolating a constant grid gives the same constant, so the output is 2·x + 0.5.
    assert torch.allclose(brm(x), 2 * x + 0.5, atol=1e-6)
    brm.reset()
    assert torch.equal(brm(x), x)


def test_zero_brms_are_exactly_the_identity(net: LSANet) -> None:
    x = _input(96, 128)
    with torch.no_grad():
        assert torch.equal(net(x), _without_brms(net)(x))


@pytest.mark.parametrize("tensor", ["a", "b"])
def test_nonzero_brm_changes_output(net: LSANet, tensor: str) -> None:
    x = _input(64, 64)
    refined = copy.deepcopy(net)
    with torch.no_grad():
        before = refined(x)
        getattr(refined.brm["3"], tensor).normal_(0.0, 0.5)
        after = refined(x)
        assert (after - before).abs().max() > 1e-4
        refined.reset_brm()
        assert all(torch.count_nonzero(p) == 0 for p in refined.brm_parameters())
        assert torch.equal(refined(x), before)


def test_brms_are_frozen_in_training_but_can_be_enabled(net: LSANet) -> None:
    trained = copy.deepcopy(net).train()
    brm_ids = {id(p) for p in trained.brm_parameters()}
    assert len(brm_ids) == 8
    assert not any(p.requires_grad for p in trained.brm_parameters())
    x = torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(3))
    trained(x).mean().backward()
    assert all(p.grad is None for p in trained.brm_parameters())
    assert all(p.grad is not None for p in trained.parameters() if id(p) not in brm_ids)
    # Training left them at zero, so the BRMs are still the identity.
    assert all(torch.count_nonzero(p) == 0 for p in trained.brm_parameters())

    trained.eval().zero_grad(set_to_none=True)
    trained.requires_grad_(False)
    for p in trained.brm_parameters():
        p.requires_grad_(True)
    trained(x[:1]).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.brm_parameters())
    assert all(p.grad is None for p in trained.parameters() if id(p) not in brm_ids)


def test_decode_from_cache_equals_full_forward(net: LSANet) -> None:
    x = _input(96, 128)
    with torch.no_grad():
        full = net(x)
        cached = net.encode(x)
        assert torch.equal(net.decode(cached), full)
        assert cached.stage5.shape == (1, 256, 6, 8)  # stride 16


def test_gradient_descent_on_brms_reuses_the_encoder(net: LSANet) -> None:
    refined = copy.deepcopy(net)
    refined.requires_grad_(False)
    params = list(refined.brm_parameters())
    for p in params:
        p.requires_grad_(True)
    calls = {"encoder": 0, "stage5": 0, "stage1": 0}
    for name in calls:
        getattr(refined, name).register_forward_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))

    x = _input(64, 64)
    with torch.no_grad():
        cache = refined.encode(x)
        initial = refined.decode(cache)
    target = torch.full_like(initial, 0.5)
    opt = torch.optim.SGD(params, lr=5.0)
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = ((refined.decode(cache) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = refined.decode(cache)

    assert calls == {"encoder": 1, "stage5": 1, "stage1": 6}
    assert losses[-1] < losses[0]
    assert (final - initial).abs().max() > 1e-3
    assert any(torch.count_nonzero(p) > 0 for p in params)
    # Only the BRM tensors moved: the shared network was not touched.
    assert all(torch.count_nonzero(p) == 0 for p in net.brm_parameters())
