"""GFM: output shapes per RoSTa, the collaborative-matting rules, gradient flow, parameter count."""

from __future__ import annotations

import pytest
import torch

from training.networks.gfm import (
    GLANCE_CLASSES,
    ROSTAS,
    GFMOutput,
    collaborative_matting,
    gfm,
    straight_through_masks,
)

# torchvision's ResNet-34 classifier (512·1000 + 1000): the reference code keeps it as an unused
# submodule, so the paper's Table 4 count (55.29 M) includes it.
RESNET34_FC_PARAMS = 513_000


@pytest.fixture(scope="module", params=ROSTAS)
def model(request: pytest.FixtureRequest) -> torch.nn.Module:
    torch.manual_seed(0)
    return gfm(request.param).eval()


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _logits_for(labels: list[int], classes: int) -> torch.Tensor:
    """1×C×1×W logits whose argmax is ``labels`` (a clear margin, so the choice is unambiguous)."""
    onehot = torch.nn.functional.one_hot(torch.tensor(labels), classes).T.float()
    return (4.0 * onehot - 2.0).view(1, classes, 1, len(labels))


def _row(values: list[float]) -> torch.Tensor:
    return torch.tensor(values).view(1, 1, 1, len(values))


@pytest.mark.parametrize(("n", "h", "w"), [(1, 64, 64), (2, 64, 96)])
def test_forward_shapes(model: torch.nn.Module, n: int, h: int, w: int) -> None:
    classes = len(GLANCE_CLASSES[model.rosta])
    with torch.no_grad():
        out = model(torch.randn(n, 3, h, w))
    assert isinstance(out, GFMOutput)
    assert out.glance.shape == (n, classes, h, w)
    assert out.focus.shape == (n, 1, h, w)
    assert out.alpha.shape == (n, 1, h, w)
    assert bool(((out.focus >= 0) & (out.focus <= 1)).all())
    assert bool(((out.alpha >= 0) & (out.alpha <= 1)).all())
    torch.testing.assert_close(out.glance_probs.sum(dim=1), torch.ones(n, h, w))
    # The fused alpha is the merge rule applied to the two decoder outputs, nothing else.
    torch.testing.assert_close(out.alpha, collaborative_matting(model.rosta, out.glance, out.focus))


def test_sizes_off_the_stride_grid_keep_the_input_size(model: torch.nn.Module) -> None:
    """Upsampling targets the skip sizes, so 40×72 (not a multiple of 32) still maps back 1:1."""
    with torch.no_grad():
        out = model(torch.randn(1, 3, 40, 72))
    assert [t.shape[-2:] for t in out] == [torch.Size([40, 72])] * 3


@pytest.fixture(scope="module")
def concat_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return gfm("TT", ppm_fusion="concat").eval()


def test_concat_fusion_shapes(concat_model: torch.nn.Module) -> None:
    with torch.no_grad():
        out = concat_model(torch.randn(1, 3, 64, 96))
    assert [tuple(t.shape) for t in out] == [(1, 3, 64, 96), (1, 1, 64, 96), (1, 1, 64, 96)]


def test_tt_keeps_glance_outside_the_transition_and_focus_inside() -> None:
    # background, transition, foreground, transition
    logits = _logits_for([0, 1, 2, 1], 3)
    focus = _row([0.3, 0.6, 0.8, 0.1])
    alpha = collaborative_matting("TT", logits, focus)
    torch.testing.assert_close(alpha, _row([0.0, 0.6, 1.0, 0.1]), rtol=0, atol=0)


def test_tt_replaces_exactly_the_argmax_transition_area() -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 16, 16)
    focus = torch.rand(2, 1, 16, 16)
    alpha = collaborative_matting("TT", logits, focus)
    label = logits.argmax(dim=1, keepdim=True)
    assert {0, 1, 2} <= set(label.unique().tolist())
    assert torch.equal(alpha[label == 1], focus[label == 1])
    assert torch.all(alpha[label == 2] == 1.0)
    assert torch.all(alpha[label == 0] == 0.0)


def test_ft_adds_focus_to_the_foreground_and_clamps_at_one() -> None:
    # rest, foreground, rest, foreground
    logits = _logits_for([0, 1, 0, 1], 2)
    focus = _row([0.3, 0.6, 0.8, 0.0])
    alpha = collaborative_matting("FT", logits, focus)
    torch.testing.assert_close(alpha, _row([0.3, 1.0, 0.8, 1.0]), rtol=0, atol=0)


def test_bt_subtracts_focus_from_the_rest_and_clamps_at_zero() -> None:
    # background, rest, rest, background
    logits = _logits_for([0, 1, 1, 0], 2)
    focus = _row([0.3, 0.6, 0.0, 0.0])
    alpha = collaborative_matting("BT", logits, focus)
    torch.testing.assert_close(alpha, _row([0.0, float(1.0 - torch.tensor(0.6)), 1.0, 0.0]), rtol=0, atol=0)


def test_merge_is_hard_forward_and_soft_backward() -> None:
    """Forward: the argmax decision even at a near tie. Backward: exactly the softmax merge's gradient."""
    torch.manual_seed(2)
    logits = torch.randn(1, 3, 8, 8)
    logits[0, :, 0, 0] = torch.tensor([0.0, 1e-3, 0.0])  # near tie, transition by a hair
    focus = torch.rand(1, 1, 8, 8)

    hard_in = logits.clone().requires_grad_(True)
    alpha = collaborative_matting("TT", hard_in, focus)
    assert float(alpha[0, 0, 0, 0].detach()) == float(focus[0, 0, 0, 0])
    masks = straight_through_masks(logits)
    assert torch.equal(masks, masks.round())  # a one-hot, not probabilities
    weights = torch.rand_like(alpha)
    (alpha * weights).sum().backward()

    soft_in = logits.clone().requires_grad_(True)
    probs = soft_in.softmax(dim=1)
    soft_alpha = probs[:, 2:3] + probs[:, 1:2] * focus
    (soft_alpha * weights).sum().backward()
    torch.testing.assert_close(hard_in.grad, soft_in.grad)
    assert float(hard_in.grad.abs().sum()) > 0


def test_fused_alpha_trains_both_decoders(model: torch.nn.Module) -> None:
    """Paper §3.5: the collaborative loss on the fused alpha reaches GD and FD (and the encoder)."""
    torch.manual_seed(3)
    image = torch.randn(1, 3, 64, 64)
    target = torch.rand(1, 1, 64, 64)
    model.zero_grad(set_to_none=True)
    try:
        (model(image).alpha - target).abs().mean().backward()
        parts = (model.glance.blocks[-1], model.glance.ppm, model.focus.blocks[-1], model.focus.bridge)
        for part in (*parts, model.encoder):
            grads = [p.grad for p in part.parameters()]
            assert all(g is not None for g in grads)
            assert sum(float(g.abs().sum()) for g in grads) > 0
    finally:
        model.zero_grad(set_to_none=True)


def test_parameter_count_per_rosta(model: torch.nn.Module) -> None:
    """Default (sum) fusion; FT/BT differ from TT only by GD's head having 2 outputs instead of 3."""
    expected = {"TT": 51_599_428, "FT": 51_598_851, "BT": 51_598_851}
    assert _n_params(model) == expected[model.rosta]


def test_parameter_counts_against_table_4(concat_model: torch.nn.Module) -> None:
    """GFM-TT(r) with the reference's concatenation, plus its unused classifier, is Table 4's 55.29 M.

    The remaining −3,584: this build drops the biases of the 35 decoder, bridge and context convs
    that BN follows (−7,168) and adds BN to the PPM branches and merge (+3,584).
    """
    total = _n_params(concat_model)
    assert _n_params(concat_model.encoder) == 21_284_672  # ResNet-34 without its classifier
    assert total == 54_769_732
    assert round((total + RESNET34_FC_PARAMS) / 1e6, 2) == 55.28
    assert abs((total + RESNET34_FC_PARAMS) / 1e6 - 55.29) < 0.01


@pytest.mark.parametrize(
    "kwargs", [{"rosta": "XT"}, {"rosta": "TT", "encoder": "densenet121"}, {"ppm_fusion": "max"}]
)
def test_rejects_unknown_options(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        gfm(**kwargs)


def test_merge_rejects_unknown_rosta() -> None:
    with pytest.raises(ValueError, match="rosta must be one of"):
        collaborative_matting("XX", torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1, 1))
