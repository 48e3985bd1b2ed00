"""Every loss in training/losses.py against values worked out by hand (arithmetic in the comments).

Convention under test (module doc): per-pixel values are summed over channels and averaged over the
mask's pixels; an empty mask gives 0.
"""

from __future__ import annotations

import math

import pytest
import torch

from training.losses import (
    CHARBONNIER_EPS,
    GFM_LAPLACIAN_WEIGHTS,
    MattingTarget,
    MultiTaskUncertainty,
    adamatting_loss,
    alphagan_discriminator_loss,
    alphagan_generator_loss,
    charbonnier_loss,
    composite,
    composition_charbonnier_loss,
    composition_l1_loss,
    cross_entropy_loss,
    exclusion_loss,
    fba_loss,
    gfm_loss,
    gradient_loss,
    l1_loss,
    laplacian_loss,
    laplacian_pyramid,
    lsa_loss,
    multiscale_charbonnier_loss,
)
from training.networks.adamatting import AdaMattingOutput
from training.networks.alphagan import patchgan_discriminator
from training.networks.gfm import GFMOutput, collaborative_matting

EPS = CHARBONNIER_EPS


def t(rows: list[list[float]]) -> torch.Tensor:
    """A 1×1×H×W tensor from a list of rows."""
    return torch.tensor(rows, dtype=torch.float32)[None, None]


def rgb(values: tuple[float, float, float], h: int, w: int) -> torch.Tensor:
    """A 1×3×H×W image with one constant per channel."""
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, h, w).clone()


def const(value: float, h: int, w: int, channels: int = 1) -> torch.Tensor:
    return torch.full((1, channels, h, w), value)


def cosine_grid(n: int) -> torch.Tensor:
    """z(x)·z(y) with z(x) = cos(πx/2) = 1, 0, −1, 0, … : 1×1×n×n."""
    z = torch.tensor([math.cos(math.pi * i / 2) for i in range(n)]).round()
    return torch.outer(z, z)[None, None]


# --- alpha L1 and Charbonnier -------------------------------------------------------------------


def test_l1_whole_image_and_masked() -> None:
    pred = t([[0.2, 0.4], [0.6, 0.8]])
    gt = t([[0.0, 0.5], [1.0, 0.8]])
    # |errors| = 0.2, 0.1, 0.4, 0.0 → sum 0.7 over 4 pixels
    assert l1_loss(pred, gt).item() == pytest.approx(0.7 / 4)
    # mask keeps (0, 1) and (1, 0): (0.1 + 0.4) / 2
    assert l1_loss(pred, gt, t([[0, 1], [1, 0]])).item() == pytest.approx(0.25)
    # a soft mask weights pixels: (0.5·0.2 + 1·0.4) / (0.5 + 1)
    assert l1_loss(pred, gt, t([[0.5, 0], [1, 0]])).item() == pytest.approx(0.5 / 1.5)


def test_l1_sums_channels_per_pixel() -> None:
    # F̂ − F = (0.1, 0.2, 0.3) at every pixel: ‖·‖₁ = 0.6 per pixel, mean over pixels 0.6
    pred = rgb((0.1, 0.2, 0.3), 2, 2)
    assert l1_loss(pred, torch.zeros_like(pred)).item() == pytest.approx(0.6)


def test_charbonnier_is_l1_for_large_errors_and_eps_at_zero() -> None:
    gt = t([[0.0, 0.0], [0.0, 0.0]])
    # sqrt(1 + 1e-12) ≈ 1 and sqrt(0.25 + 1e-12) ≈ 0.5: mean (1 + 0.5 + 0.5 + 1) / 4 = 0.75 = the L1
    pred = t([[1.0, 0.5], [-0.5, -1.0]])
    assert charbonnier_loss(pred, gt).item() == pytest.approx(l1_loss(pred, gt).item(), rel=1e-6)
    assert charbonnier_loss(pred, gt).item() == pytest.approx(0.75, rel=1e-6)
    # zero error: sqrt(0 + ε²) = ε at every pixel
    assert charbonnier_loss(gt, gt).item() == pytest.approx(EPS, rel=1e-3)
    # masked: only (0, 1) → 0.5
    assert charbonnier_loss(pred, gt, t([[0, 1], [0, 0]])).item() == pytest.approx(0.5, rel=1e-6)


def test_multiscale_charbonnier_hand_values() -> None:
    # error 1 at (0, 0) of a 4×4 image, 0 elsewhere (ε terms are ≤ 1e-6 and ignored below)
    pred = torch.zeros(1, 1, 4, 4)
    pred[0, 0, 0, 0] = 1.0
    gt = torch.zeros_like(pred)
    # ℓ=0: mean of 16 pixels = 1/16
    # ℓ=1: 2×2 pooled error [[1/4, 0], [0, 0]] → mean 1/16, weight 1/2 → 1/32
    # ℓ=2: one pixel 1/16, weight 1/4 → 1/64;  ℓ=3, ℓ=4: windows 8 and 16 cover the 4×4 (ceil
    #      mode) → 1/16 each, weights 1/8 and 1/16 → 1/128 + 1/256
    # total = (16 + 8 + 4 + 2 + 1) / 256 = 31/256
    assert multiscale_charbonnier_loss(pred, gt).item() == pytest.approx(31 / 256, abs=1e-5)
    # unknown region = the top-left 2×2 (4 pixels); max pooling keeps one coarse pixel at ℓ ≥ 1
    # ℓ=0: 1/4;  ℓ=1: coarse (0, 0) has error 1/4 → 1/4 · 1/2 = 1/8;  ℓ=2..4: 1/16 · (1/4 + 1/8 + 1/16)
    # total = 64/256 + 32/256 + (4 + 2 + 1)/256 = 103/256
    mask = torch.zeros_like(pred)
    mask[..., :2, :2] = 1
    assert multiscale_charbonnier_loss(pred, gt, mask).item() == pytest.approx(103 / 256, abs=1e-5)


def test_multiscale_keeps_pixels_of_odd_sizes() -> None:
    # 5×5, error 1 at the bottom-right corner (4, 4), which a floor-mode pool of 2 would drop.
    pred = torch.zeros(1, 1, 5, 5)
    pred[0, 0, 4, 4] = 1.0
    gt = torch.zeros_like(pred)
    # ℓ=0: 1/25.  ℓ=1: 3×3, the corner window holds one pixel → error 1, mean 1/9, × 1/2 → 1/18.
    # ℓ=2: 2×2, corner window 1 pixel → 1, mean 1/4, × 1/4 → 1/16.
    # ℓ=3, 4: one window over all 25 pixels → 1/25, × (1/8 + 1/16) = 3/400.
    expected = 1 / 25 + 1 / 18 + 1 / 16 + 3 / 400
    assert multiscale_charbonnier_loss(pred, gt).item() == pytest.approx(expected, abs=1e-5)


# --- compositional ------------------------------------------------------------------------------


def composition_case() -> tuple[torch.Tensor, ...]:
    """α̂ = [[1, .5], [0, .25]], F = (1, .5, 0), B = (0, .5, 1), C = 0.5 everywhere."""
    alpha = t([[1.0, 0.5], [0.0, 0.25]])
    return alpha, rgb((1.0, 0.5, 0.0), 2, 2), rgb((0.0, 0.5, 1.0), 2, 2), const(0.5, 2, 2, 3)


def test_composition_l1_hand_value() -> None:
    alpha, fg, bg, image = composition_case()
    # composite: R = α̂, G = 0.5, B = 1 − α̂;  residual R: 0.5 − α̂, G: 0, B: α̂ − 0.5
    # per pixel ‖·‖₁ = 2|α̂ − 0.5| = [[1, 0], [1, 0.5]] → mean 2.5/4
    assert composition_l1_loss(alpha, fg, bg, image).item() == pytest.approx(0.625)
    # top row only: (1 + 0) / 2
    assert composition_l1_loss(alpha, fg, bg, image, t([[1, 1], [0, 0]])).item() == pytest.approx(0.5)


def test_composition_charbonnier_hand_value() -> None:
    alpha, fg, bg, image = composition_case()
    # as the L1 form, plus ε for each zero residual: G everywhere (4), and R and B at (0, 1) (2)
    # → (2.5 + 6ε) / 4
    value = composition_charbonnier_loss(alpha, fg, bg, image).item()
    assert value == pytest.approx((2.5 + 6 * EPS) / 4, rel=1e-6)


def test_composite() -> None:
    # 0.25·(1, 0.5, 0) + 0.75·(0, 0.5, 1) = (0.25, 0.5, 0.75)
    out = composite(const(0.25, 1, 1), rgb((1.0, 0.5, 0.0), 1, 1), rgb((0.0, 0.5, 1.0), 1, 1))
    assert out.flatten().tolist() == pytest.approx([0.25, 0.5, 0.75])


# --- Laplacian pyramid --------------------------------------------------------------------------


def test_pyramid_of_a_constant_is_zero_up_to_the_borders() -> None:
    image = const(0.3, 40, 37, 3)  # odd width too
    bands = laplacian_pyramid(image)
    assert [tuple(b.shape[-2:]) for b in bands] == [(40, 37), (20, 19), (10, 10), (5, 5), (3, 3)]
    for band in bands:
        assert band.abs().max().item() < 1e-6


def test_laplacian_single_level_on_an_impulse() -> None:
    # δ at (8, 8) of a 16×16 image, far from the borders. 1-D binomial k = [1, 4, 6, 4, 1]/16.
    # REDUCE(δ): k at even offsets → a = [1, 6, 1]/16 per axis.
    # EXPAND: e(x) = 2·Σ_i a_i k(x − 2i) = [2, 8, 24, 56, 76, 56, 24, 8, 2]/256 (sums to 1).
    # band = δ − e⊗e, with e⊗e ≥ 0 summing to 1, so Σ|band| = (1 − e0²) + (1 − e0²), e0 = 76/256.
    # Mean over 256 pixels: 2·(1 − (76/256)²) / 256 = 2·(59760/65536)/256 ≈ 0.0071239
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 8, 8] = 1.0
    expected = 2 * (1 - (76 / 256) ** 2) / 256
    assert laplacian_loss(x, torch.zeros_like(x), weights=(1.0,)).item() == pytest.approx(expected, rel=1e-5)
    # the loss is symmetric in the error's sign and sees only the difference
    assert laplacian_loss(torch.zeros_like(x), x, weights=(1.0,)).item() == pytest.approx(expected, rel=1e-5)
    # a mask of the 4×4 block around the impulse: same sum, divided by 16 instead of 256
    mask = torch.zeros_like(x)
    mask[..., 6:10, 6:10] = 1
    assert laplacian_loss(x, torch.zeros_like(x), mask, weights=(1.0,)).item() == pytest.approx(
        expected * 16, rel=1e-5
    )
    # a mask without the impulse: the error is zeroed before the pyramid
    outside = torch.zeros_like(x)
    outside[..., :4, :4] = 1
    assert laplacian_loss(x, torch.zeros_like(x), outside, weights=(1.0,)).item() == 0.0


def test_laplacian_five_levels_fba_and_gfm_weights() -> None:
    # Error z(x)z(y), z = cos(πx/2), on 33×33 (33 = 4·8 + 1: the cosine is mirror-symmetric about
    # both borders, so reflect padding is exact). Per axis, the binomial's response at ω = π/2 is
    # (6 + 8cos ω + 2cos 2ω)/16 = 1/4, so REDUCE(z) = (−1)^i/4 and EXPAND((−1)^i) = z/2.
    #  level 1: EXPAND(REDUCE(zz)) = (1/4·1/2)² zz = zz/64 → band 63/64·zz; |zz| = 1 on 17² = 289 px
    #  G1 = REDUCE(zz) = checkerboard/16 (17×17); the binomial kills a checkerboard (1−4+6−4+1 = 0)
    #  level 2: band = G1 → 289 values of 1/16;  levels 3-5: 0
    # FBA: (63/64·289 + 2·289/16) / 33² = 289·71/(64·1089) = 20519/69696
    # GFM: (63/64·289 + 289/16) / 1089 = 289·67/69696
    err = cosine_grid(33)
    zero = torch.zeros_like(err)
    assert laplacian_loss(err, zero).item() == pytest.approx(20519 / 69696, rel=1e-5)
    gfm = laplacian_loss(err, zero, weights=GFM_LAPLACIAN_WEIGHTS).item()
    assert gfm == pytest.approx(289 * 67 / 69696, rel=1e-5)


def test_laplacian_of_a_constant_error_is_zero() -> None:
    pred = const(0.7, 33, 33)
    assert laplacian_loss(pred, const(0.2, 33, 33)).item() == pytest.approx(0.0, abs=1e-6)


def test_laplacian_refuses_images_too_small_for_its_levels() -> None:
    with pytest.raises(ValueError, match="at least 33 px"):
        laplacian_pyramid(torch.zeros(1, 1, 32, 64))
    assert len(laplacian_pyramid(torch.zeros(1, 1, 3, 3), levels=1)) == 1


# --- gradient and exclusion ---------------------------------------------------------------------


def test_gradient_loss_hand_value() -> None:
    pred = t([[0.0, 1.0], [0.0, 0.0]])
    gt = torch.zeros_like(pred)
    # forward differences (0 on the last column/row):
    #   ∂x: (0,0) = 1 − 0 = 1, (1,0) = 0;  ∂y: (0,0) = 0 − 0 = 0, (0,1) = 0 − 1 = −1
    #   per pixel |∂x| + |∂y| = [[1, 1], [0, 0]] → mean 2/4
    assert gradient_loss(pred, gt).item() == pytest.approx(0.5)
    assert gradient_loss(pred, gt, t([[1, 0], [0, 0]])).item() == pytest.approx(1.0)
    # the same edge in both: no gradient error
    assert gradient_loss(pred, pred + 0.3).item() == pytest.approx(0.0, abs=1e-7)


def test_exclusion_hand_value_and_zero_when_a_layer_is_flat() -> None:
    fg = torch.zeros(1, 3, 2, 2)
    fg[0, 0] = t([[0.0, 1.0], [0.0, 0.0]])[0, 0]  # ‖∇F̂‖₁ = [[1, 1], [0, 0]] (as above)
    bg = torch.zeros(1, 3, 2, 2)
    bg[0, 1] = t([[0.0, 0.0], [1.0, 0.0]])[0, 0]
    # ‖∇B̂‖₁: (0,0): ∂y = 1 → 1;  (0,1): 0;  (1,0): ∂x = 0 − 1 → 1;  (1,1): 0
    # product [[1·1, 1·0], [0·1, 0·0]] → mean 1/4
    assert exclusion_loss(fg, bg).item() == pytest.approx(0.25)
    assert exclusion_loss(fg, bg, t([[1, 0], [0, 0]])).item() == pytest.approx(1.0)
    assert exclusion_loss(fg, torch.full_like(bg, 0.4)).item() == 0.0
    assert exclusion_loss(torch.full_like(fg, 0.4), bg).item() == 0.0


# --- cross-entropy ------------------------------------------------------------------------------


def test_cross_entropy_against_hand_log_softmax() -> None:
    # pixel a: logits (0, ln 2, ln 3) → softmax (1, 2, 3)/6; class 2 → −ln(3/6) = ln 2
    # pixel b: logits (1, 1, 1) → 1/3 each; class 0 → ln 3
    logits = torch.tensor([[0.0, 1.0], [math.log(2), 1.0], [math.log(3), 1.0]]).view(1, 3, 1, 2)
    classes = torch.tensor([[[2, 0]]])
    assert cross_entropy_loss(logits, classes).item() == pytest.approx((math.log(2) + math.log(3)) / 2)
    assert cross_entropy_loss(logits, classes, t([[0, 1]])).item() == pytest.approx(math.log(3))
    with pytest.raises(ValueError, match="classes must be"):
        cross_entropy_loss(logits, classes[0])


# --- masks --------------------------------------------------------------------------------------


def test_every_loss_is_zero_with_finite_gradients_on_an_empty_mask() -> None:
    torch.manual_seed(0)
    pred = torch.rand(1, 1, 33, 33, requires_grad=True)
    gt, empty = torch.rand(1, 1, 33, 33), torch.zeros(1, 1, 33, 33)
    fg, bg, image = torch.rand(1, 3, 33, 33), torch.rand(1, 3, 33, 33), torch.rand(1, 3, 33, 33)
    logits = torch.randn(1, 3, 33, 33, requires_grad=True)
    losses = [
        l1_loss(pred, gt, empty),
        charbonnier_loss(pred, gt, empty),
        multiscale_charbonnier_loss(pred, gt, empty),
        composition_l1_loss(pred, fg, bg, image, empty),
        composition_charbonnier_loss(pred, fg, bg, image, empty),
        laplacian_loss(pred, gt, empty),
        gradient_loss(pred, gt, empty),
        exclusion_loss(fg.requires_grad_(), bg, empty),
        cross_entropy_loss(logits, torch.zeros(1, 33, 33, dtype=torch.long), empty),
    ]
    for loss in losses:
        assert loss.item() == 0.0
    sum(losses).backward()
    for grad in (pred.grad, logits.grad, fg.grad):
        assert grad is not None
        assert torch.isfinite(grad).all() and grad.abs().max().item() == 0.0


def test_mask_must_match_the_loss_shape() -> None:
    with pytest.raises(ValueError, match="mask must be 1×1×2×2"):
        l1_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 3))
    with pytest.raises(ValueError, match="differ in shape"):
        l1_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 3, 2, 2))


# --- FBA ----------------------------------------------------------------------------------------

SIDE = 33  # the smallest side a 5-level pyramid accepts


def fba_target(region: torch.Tensor) -> MattingTarget:
    """α = 0.5, F = 1, B = 0, C = 0.5 everywhere."""
    return MattingTarget(
        image=const(0.5, SIDE, SIDE, 3),
        alpha=const(0.5, SIDE, SIDE),
        fg=const(1.0, SIDE, SIDE, 3),
        bg=const(0.0, SIDE, SIDE, 3),
        region=region,
    )


def fba_pred(alpha: float) -> torch.Tensor:
    """α̂ = ``alpha``, F̂ = 0.9, B̂ = 0 (constant maps: gradient and Laplacian terms are all 0)."""
    return torch.cat([const(alpha, SIDE, SIDE), const(0.9, SIDE, SIDE, 3), const(0.0, SIDE, SIDE, 3)], dim=1)


def test_fba_loss_terms_and_quarter_weight() -> None:
    # unknown region = whole image, so the masked α error stays constant (no edges for Lap/grad)
    terms = fba_loss(fba_pred(0.6), fba_target(torch.ones(1, 1, SIDE, SIDE)))
    # l1_alpha = |0.6 − 0.5| = 0.1;  comp_alpha = 3·|0.5 − (0.6·1 + 0.4·0)| = 0.3
    # l1_fb = 3·|0.9 − 1| + 0 = 0.3;  comp_fb = 3·|0.5 − (0.5·0.9 + 0.5·0)| = 0.15
    # grad, lap and excl: constant maps → 0
    expected = {
        "l1_alpha": 0.1,
        "comp_alpha": 0.3,
        "grad_alpha": 0.0,
        "lap_alpha": 0.0,
        "l1_fb": 0.3,
        "lap_fb": 0.0,
        "comp_fb": 0.15,
        "excl_fb": 0.0,
    }
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, abs=1e-5), name
    # total = 0.1 + 0.3 + 0.25·(0.3 + 0.15) = 0.5125
    assert terms["total"].item() == pytest.approx(0.5125, abs=1e-5)


def test_fba_fb_l1_is_whole_image_and_the_rest_unknown_region() -> None:
    # empty unknown region: only L1_FB (0.3, whole image) remains → total 0.25·0.3
    terms = fba_loss(fba_pred(0.6), fba_target(torch.zeros(1, 1, SIDE, SIDE)))
    assert terms["l1_fb"].item() == pytest.approx(0.3, abs=1e-6)
    assert terms["total"].item() == pytest.approx(0.075, abs=1e-6)
    assert all(torch.isfinite(v) for v in terms.values())


def test_fba_loss_backward_and_layout_check() -> None:
    torch.manual_seed(0)
    pred = torch.rand(2, 7, 40, 40, requires_grad=True)
    target = MattingTarget(
        image=torch.rand(2, 3, 40, 40),
        alpha=torch.rand(2, 1, 40, 40),
        fg=torch.rand(2, 3, 40, 40),
        bg=torch.rand(2, 3, 40, 40),
        region=(torch.rand(2, 1, 40, 40) > 0.5).float(),
    )
    fba_loss(pred, target)["total"].backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert (pred.grad.abs().sum(dim=(0, 2, 3)) > 0).all()  # every channel (α, F, B) is supervised
    with pytest.raises(ValueError, match="N×7×H×W"):
        fba_loss(pred[:, :4], target)


# --- GFM ----------------------------------------------------------------------------------------


def gfm_target(classes: torch.Tensor) -> MattingTarget:
    """α = 0.25, F = 1, B = 0; the transition area is the whole image."""
    return MattingTarget(
        image=const(0.25, SIDE, SIDE, 3),
        alpha=const(0.25, SIDE, SIDE),
        fg=const(1.0, SIDE, SIDE, 3),
        bg=const(0.0, SIDE, SIDE, 3),
        region=torch.ones(1, 1, SIDE, SIDE),
        classes=classes,
    )


def test_gfm_loss_hand_value_tt_and_bt_focus_target() -> None:
    classes = torch.zeros(1, SIDE, SIDE, dtype=torch.long)
    output = GFMOutput(
        glance=torch.zeros(1, 3, SIDE, SIDE), focus=const(0.45, SIDE, SIDE), alpha=const(0.35, SIDE, SIDE)
    )
    terms = gfm_loss(output, gfm_target(classes), rosta="TT")
    # glance: uniform logits over 3 classes → ln 3
    # focus: |0.45 − 0.25| = 0.2, Laplacian of a constant error 0
    # collaborative: |0.35 − 0.25| = 0.1; lap 0; comp: C(α) = 0.25, C(α̂) = 0.35 per channel → 3·0.1
    assert terms["glance"].item() == pytest.approx(math.log(3), rel=1e-6)
    assert terms["focus"].item() == pytest.approx(0.2, abs=1e-5)
    assert terms["collaborative"].item() == pytest.approx(0.4, abs=1e-5)
    assert terms["total"].item() == pytest.approx(math.log(3) + 0.6, abs=1e-5)
    # BT: FD predicts 1 − α = 0.75, so a focus of 0.75 is exact (Charbonnier → ε)
    bt = GFMOutput(torch.zeros(1, 2, SIDE, SIDE), const(0.75, SIDE, SIDE), const(0.25, SIDE, SIDE))
    bt_terms = gfm_loss(bt, gfm_target(classes), rosta="BT")
    assert bt_terms["focus"].item() == pytest.approx(EPS, abs=1e-6)
    assert bt_terms["glance"].item() == pytest.approx(math.log(2), rel=1e-6)


def test_gfm_loss_backward_reaches_both_decoders_through_cm() -> None:
    torch.manual_seed(0)
    glance = torch.randn(1, 3, 40, 40, requires_grad=True)
    focus = torch.rand(1, 1, 40, 40, requires_grad=True)
    output = GFMOutput(glance, focus, collaborative_matting("TT", glance, focus))
    target = MattingTarget(
        image=torch.rand(1, 3, 40, 40),
        alpha=torch.rand(1, 1, 40, 40),
        fg=torch.rand(1, 3, 40, 40),
        bg=torch.rand(1, 3, 40, 40),
        region=(torch.rand(1, 1, 40, 40) > 0.5).float(),
        classes=torch.randint(0, 3, (1, 40, 40)),
    )
    gfm_loss(output, target, rosta="TT")["total"].backward()
    for grad in (glance.grad, focus.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_gfm_loss_rejects_inconsistent_inputs() -> None:
    output = GFMOutput(torch.zeros(1, 3, SIDE, SIDE), const(0.5, SIDE, SIDE), const(0.5, SIDE, SIDE))
    target = gfm_target(torch.zeros(1, SIDE, SIDE, dtype=torch.long))
    with pytest.raises(ValueError, match="2 glance classes"):
        gfm_loss(output, target, rosta="FT")
    with pytest.raises(ValueError, match="rosta must be"):
        gfm_loss(output, target, rosta="XX")
    with pytest.raises(ValueError, match="needs MattingTarget.classes"):
        gfm_loss(output, target._replace(classes=None), rosta="TT")


# --- AdaMatting ---------------------------------------------------------------------------------


def test_uncertainty_weighting_matches_its_formula() -> None:
    weighting = MultiTaskUncertainty()
    with torch.no_grad():
        weighting.log_variance.copy_(torch.tensor([math.log(4.0), -math.log(2.0)]))
    # σ1² = 4, σ2² = 1/2: L_t/(2σ1²) + L_α/(2σ2²) + log σ1 + log σ2 with L_t = 2, L_α = 1
    #   = 2/8 + 1/1 + ln 2 + ln(1/√2) = 1.25 + ½ ln 2
    value = weighting(torch.tensor(2.0), torch.tensor(1.0)).item()
    assert value == pytest.approx(1.25 + 0.5 * math.log(2), rel=1e-6)


def test_adamatting_loss_hand_value_and_backward() -> None:
    n = 4
    alpha = torch.full((1, 1, n, n), 0.5, requires_grad=True)
    logits = torch.zeros(1, 3, n, n, requires_grad=True)
    output = AdaMattingOutput(alpha=alpha, trimap_logits=logits, coarse_alpha=alpha.detach())
    region = torch.zeros(1, 1, n, n)
    region[..., 1:3, 1:3] = 1
    target = MattingTarget(
        image=torch.zeros(1, 3, n, n),
        alpha=torch.full((1, 1, n, n), 0.25),
        fg=torch.zeros(1, 3, n, n),
        bg=torch.zeros(1, 3, n, n),
        region=region,
        classes=torch.ones(1, n, n, dtype=torch.long),
    )
    weighting = MultiTaskUncertainty()
    with torch.no_grad():
        weighting.log_variance.copy_(torch.tensor([math.log(4.0), 0.0]))
    terms = adamatting_loss(output, target, weighting)
    # trimap: uniform logits → ln 3;  alpha: |0.5 − 0.25| over the region = 0.25
    # total = ½·¼·ln 3 + ½·1·0.25 + ½·(ln 4 + 0) = ln 3 / 8 + 0.125 + ln 2
    assert terms["trimap"].item() == pytest.approx(math.log(3), rel=1e-6)
    assert terms["alpha"].item() == pytest.approx(0.25)
    assert terms["total"].item() == pytest.approx(math.log(3) / 8 + 0.125 + math.log(2), rel=1e-6)
    terms["total"].backward()
    for grad in (alpha.grad, logits.grad, weighting.log_variance.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


# --- LSA ----------------------------------------------------------------------------------------


def test_lsa_loss_is_the_multiscale_charbonnier_over_the_unknown_region() -> None:
    pred = torch.zeros(1, 1, 4, 4)
    pred[0, 0, 0, 0] = 1.0
    pred.requires_grad_()
    region = torch.zeros(1, 1, 4, 4)
    region[..., :2, :2] = 1
    z3 = torch.zeros(1, 3, 4, 4)
    target = MattingTarget(image=z3, alpha=torch.zeros(1, 1, 4, 4), fg=z3, bg=z3, region=region)
    terms = lsa_loss(pred, target)
    assert terms["total"].item() == pytest.approx(103 / 256, abs=1e-5)  # derived above
    terms["total"].backward()
    assert pred.grad is not None and pred.grad[0, 0, 0, 0] > 0


# --- AlphaGAN -----------------------------------------------------------------------------------

GAN_SIDE = 32  # the PatchGAN's smallest convenient input (32 → 16 → 8 → 4 → 3 → 2 patches)


def gan_target() -> MattingTarget:
    """α = 0.25, F = 1, B = 0, C = 0.25; the unknown region is the whole image."""
    return MattingTarget(
        image=const(0.25, GAN_SIDE, GAN_SIDE, 3),
        alpha=const(0.25, GAN_SIDE, GAN_SIDE),
        fg=const(1.0, GAN_SIDE, GAN_SIDE, 3),
        bg=const(0.0, GAN_SIDE, GAN_SIDE, 3),
        region=torch.ones(1, 1, GAN_SIDE, GAN_SIDE),
    )


def test_alphagan_losses_hand_values_with_a_constant_discriminator() -> None:
    d = patchgan_discriminator(norm="in")
    last = d.layers[-1]
    with torch.no_grad():  # zero last conv, bias ln 3: every patch logit is ln 3, D(x) = σ(ln 3) = 3/4
        last.weight.zero_()
        last.bias.fill_(math.log(3))
    alpha = const(0.5, GAN_SIDE, GAN_SIDE)
    trimap = const(0.5, GAN_SIDE, GAN_SIDE)
    g = alphagan_generator_loss(alpha, gan_target(), trimap, d)
    # L_alpha = |0.5 − 0.25| = 0.25;  L_comp = 3·|0.25 − 0.5| = 0.75
    # L_GAN (non-saturating) = −ln D(fake) = −ln(3/4) = ln(4/3)
    assert g["alpha"].item() == pytest.approx(0.25, rel=1e-5)
    assert g["comp"].item() == pytest.approx(0.75, rel=1e-5)
    assert g["gan"].item() == pytest.approx(math.log(4 / 3), rel=1e-5)
    assert g["total"].item() == pytest.approx(1.0 + math.log(4 / 3), rel=1e-5)
    dl = alphagan_discriminator_loss(alpha, gan_target(), trimap, d)
    # real: −ln(3/4) = ln(4/3);  fake: −ln(1 − 3/4) = ln 4;  total ln(16/3)
    assert dl["real"].item() == pytest.approx(math.log(4 / 3), rel=1e-5)
    assert dl["fake"].item() == pytest.approx(math.log(4), rel=1e-5)
    assert dl["total"].item() == pytest.approx(math.log(16 / 3), rel=1e-5)


def test_alphagan_gradients_generator_through_d_and_discriminator_only() -> None:
    torch.manual_seed(0)
    d = patchgan_discriminator(norm="in")
    target = gan_target()._replace(region=torch.zeros(1, 1, GAN_SIDE, GAN_SIDE))
    trimap = const(0.5, GAN_SIDE, GAN_SIDE)
    alpha = torch.rand(1, 1, GAN_SIDE, GAN_SIDE, requires_grad=True)
    # empty unknown region: L_alpha = L_comp = 0, so alpha's gradient can only come through D
    g = alphagan_generator_loss(alpha, target, trimap, d)
    assert g["alpha"].item() == 0.0 and g["comp"].item() == 0.0
    g["total"].backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    alpha.grad = None
    d.zero_grad()
    alphagan_discriminator_loss(alpha, target, trimap, d)["total"].backward()
    assert alpha.grad is None  # the fake is detached: D's step never moves the generator
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in d.parameters())
