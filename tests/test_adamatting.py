"""AdaMatting: shapes, the supplement's table, sub-pixel and global-conv stages, PU, task weights."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from training.networks.adamatting import (  # noqa: E402
    AdaMatting,
    GlobalConv,
    MultiTaskUncertainty,
    PropagationUnit,
    SubPixelUp,
    adamatting,
)


@pytest.fixture(scope="module")
def net() -> AdaMatting:
    torch.manual_seed(0)
    return adamatting().eval()


def _input(h: int, w: int, n: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 4, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_forward_shapes(net: AdaMatting, size: tuple[int, int]) -> None:
    with torch.no_grad():
        out = net(_input(*size))
    assert out.alpha.shape == (1, 1, *size)
    assert out.trimap_logits.shape == (1, 3, *size)
    assert out.coarse_alpha.shape == (1, 1, *size)
    assert out.alpha.min() > 0.0 and out.alpha.max() < 1.0


def test_encoder_follows_supplement_table(net: AdaMatting) -> None:
    enc = net.encoder
    assert enc.channels == [64, 192, 384, 1024, 1024]
    stages = [enc.layer1, enc.layer2, enc.layer3, enc.layer4]
    assert [len(s) for s in stages] == [3, 4, 6, 3]
    assert [s[0].conv2.out_channels for s in stages] == [64, 128, 256, 512]
    assert [s[-1].conv3.out_channels for s in stages] == [192, 384, 1024, 1024]
    assert enc.conv1.kernel_size == (7, 7) and enc.conv1.in_channels == 4
    with torch.no_grad():
        feats = enc(_input(64, 64))
    # 320 → 160 (Conv1), 80 (Res-2), 40, 20, 10 in the table; here 64 → 32, 16, 8, 4, 2.
    assert [tuple(f.shape[1:]) for f in feats] == [
        (64, 32, 32),
        (192, 16, 16),
        (384, 8, 8),
        (1024, 4, 4),
        (1024, 2, 2),
    ]


def test_twin_decoders_follow_supplement_table(net: AdaMatting) -> None:
    for decoder in (net.alpha_decoder, net.trimap_decoder):
        gc_out = [gc.left[0].out_channels for gc in decoder.skips]
        gc_in = [gc.left[0].in_channels for gc in decoder.skips]
        expand = [up.expand.out_channels for up in decoder.ups]
        assert gc_out == [512, 512, 256, 128, 64]
        # Concatenated inputs: decoder path + encoder skip (Res-5 alone at the first stage).
        assert gc_in == [1024, 512 + 1024, 512 + 384, 256 + 192, 128 + 64]
        assert expand == [2048, 2048, 1024, 512, 256]
        assert all(
            gc.left[0].kernel_size == (5, 1) and gc.right[0].kernel_size == (1, 5) for gc in decoder.skips
        )
    alpha_params = {id(p) for p in net.alpha_decoder.parameters()}
    assert not alpha_params & {id(p) for p in net.trimap_decoder.parameters()}  # not shared
    assert (net.alpha_head.out_channels, net.trimap_head.out_channels) == (1, 3)
    assert net.alpha_head.kernel_size == net.trimap_head.kernel_size == (3, 3)


def test_subpixel_up_is_local_two_by_two() -> None:
    torch.manual_seed(0)
    up = SubPixelUp(8).eval()
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        y = up(x)
        assert y.shape == (2, 8, 10, 14)
        bumped = x.clone()
        bumped[:, :, 3, 4] += 5.0
        changed = (up(bumped) - y).abs().amax(dim=(0, 1)) > 0
    # Each input pixel feeds exactly its own 2×2 block of the output.
    expected = torch.zeros(10, 14, dtype=torch.bool)
    expected[6:8, 8:10] = True
    assert torch.equal(changed, expected)


def test_global_conv_sees_a_k_by_k_window() -> None:
    torch.manual_seed(0)
    gc = GlobalConv(3, 4, kernel=5)
    impulse = torch.zeros(1, 3, 11, 11)
    impulse[0, :, 5, 5] = 1.0
    with torch.no_grad():
        response = (gc.left(impulse) + gc.right(impulse)).abs().amax(dim=(0, 1))
    expected = torch.zeros(11, 11, dtype=torch.bool)
    expected[3:8, 3:8] = True
    assert torch.equal(response > 0, expected)


def test_propagation_unit_starts_as_identity(net: AdaMatting) -> None:
    x = _input(64, 64)
    with torch.no_grad():
        out = net(x)
        assert torch.equal(out.alpha, out.coarse_alpha)
        # With a zero head weight each step adds exactly the head bias to the logits.
        bias = net.propagation.head.bias.clone()
        net.propagation.head.bias.fill_(0.5)
        try:
            shifted = net(x)
        finally:
            net.propagation.head.bias.copy_(bias)
    expected = torch.sigmoid(torch.logit(out.coarse_alpha.double()) + 3 * 0.5)
    assert torch.allclose(shifted.alpha.double(), expected, atol=1e-5)
    assert torch.equal(shifted.coarse_alpha, out.coarse_alpha)


def test_propagation_unit_unrolls_fixed_steps_over_its_inputs() -> None:
    torch.manual_seed(0)
    pu = PropagationUnit(feature_channels=8, steps=5).eval()
    nn.init.normal_(pu.head.weight, std=0.5)
    calls = []
    pu.cell.register_forward_hook(lambda *_: calls.append(1))
    g = torch.Generator().manual_seed(2)
    image, logits = torch.randn(1, 3, 12, 16, generator=g), torch.randn(1, 1, 12, 16, generator=g)
    trimap = torch.softmax(torch.randn(1, 3, 12, 16, generator=g), dim=1)
    feats = torch.randn(1, 8, 12, 16, generator=g)
    with torch.no_grad():
        base = pu(image, logits, trimap, feats)
        assert base.shape == (1, 1, 12, 16) and len(calls) == 5
        for changed in (
            pu(image + 1, logits, trimap, feats),
            pu(image, logits, trimap.flip(1), feats),
            pu(image, logits, trimap, feats + 1),
        ):
            assert (changed - base).abs().max() > 1e-3
    assert torch.equal(PropagationUnit(8, steps=0)(image, logits, trimap, feats), logits)


def test_training_step_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = adamatting().train()
    weights = MultiTaskUncertainty()
    x = _input(32, 32, n=2, seed=4)  # the smallest size the five strides allow (Res-5 is 1×1)
    target_alpha = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    target_trimap = torch.randint(0, 3, (2, 32, 32), generator=torch.Generator().manual_seed(6))
    out = model(x)
    loss = weights(
        F.cross_entropy(out.trimap_logits, target_trimap),
        (out.alpha - target_alpha).abs().mean() + (out.coarse_alpha - target_alpha).abs().mean(),
    )
    loss.backward()
    missing = [n for n, p in [*model.named_parameters(), *weights.named_parameters()] if p.grad is None]
    assert missing == []
    # The zero-initialised PU head is where learning of the PU starts.
    assert model.propagation.head.weight.grad.abs().sum() > 0


def test_multitask_uncertainty_matches_hand_computation() -> None:
    weights = MultiTaskUncertainty()
    l_t, l_a = torch.tensor(0.3), torch.tensor(0.05)
    assert weights(l_t, l_a).item() == pytest.approx(0.5 * (0.3 + 0.05))  # σ1 = σ2 = 1
    s1, s2 = 0.0995, 0.0878  # the supplement's converged values
    with torch.no_grad():
        weights.log_variance.copy_(torch.tensor([math.log(s1**2), math.log(s2**2)]))
    expected = 0.3 / (2 * s1**2) + 0.05 / (2 * s2**2) + math.log(s1) + math.log(s2)
    assert weights(l_t, l_a).item() == pytest.approx(expected, rel=1e-6)
    assert weights.sigmas().tolist() == pytest.approx([s1, s2], rel=1e-6)


def test_multitask_uncertainty_settles_at_sigma_squared_equal_to_loss() -> None:
    weights = MultiTaskUncertainty()
    l_t, l_a = torch.tensor(0.2), torch.tensor(0.01)
    with torch.no_grad():
        weights.log_variance.copy_(torch.log(torch.stack([l_t, l_a])))
    weights(l_t, l_a).backward()
    assert weights.log_variance.grad.abs().max().item() < 1e-6


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="trimap channel"):
        AdaMatting(in_channels=3)
    with pytest.raises(ValueError, match="steps"):
        PropagationUnit(8, steps=-1)
