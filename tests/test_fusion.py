"""FBA fusion (Eq. 4-6) and the trimap's known regions, on hand-computed pixels."""

from __future__ import annotations

import numpy as np
import pytest

from mattecli.fusion import fba_fusion, impose_known_colours, impose_trimap


def pixel(*values: float) -> np.ndarray:
    return np.array([[values]], dtype=np.float32)  # 1×1×3


def grey(value: float) -> np.ndarray:
    return pixel(value, value, value)


def test_consistent_pixels_are_a_fixed_point() -> None:
    rng = np.random.default_rng(3)
    alpha = rng.random((16, 16), dtype=np.float32)
    fg = rng.random((16, 16, 3), dtype=np.float32)
    bg = rng.random((16, 16, 3), dtype=np.float32)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    new_alpha, new_fg, new_bg = fba_fusion(image, alpha, fg, bg)
    np.testing.assert_allclose(new_fg, fg, atol=1e-6)
    np.testing.assert_allclose(new_bg, bg, atol=1e-6)
    np.testing.assert_allclose(new_alpha, alpha, atol=1e-5)
    assert new_alpha.dtype == new_fg.dtype == new_bg.dtype == np.float32


def test_hand_computed_pixel_uses_updated_foreground() -> None:
    # C = 0.5, alpha = 0.5, F = 0.8, B = 0.4 (grey): residual r = 0.5 - 0.4 - 0.2 = -0.1
    # F' = 0.8 + 0.5 * -0.1 = 0.75
    # B' = 0.4 + 0.5 * (0.5 - 0.5 * 0.75 - 0.5 * 0.4) = 0.3625   (0.35 if Eq. 5 used the old F)
    # alpha' = (0.1 * 0.5 + 3 * 0.1375 * 0.3875) / (0.1 + 3 * 0.3875**2)
    alpha, fg, bg = fba_fusion(grey(0.5), np.array([[0.5]], np.float32), grey(0.8), grey(0.4))
    np.testing.assert_allclose(fg, grey(0.75), atol=1e-6)
    np.testing.assert_allclose(bg, grey(0.3625), atol=1e-6)
    np.testing.assert_allclose(alpha, [[0.20984375 / 0.55046875]], atol=1e-6)


def test_sigma_ratios() -> None:
    args = (grey(0.5), np.array([[0.5]], np.float32), grey(0.8), grey(0.4))
    # sigma_F = sigma_B = 0: the colours are trusted and only alpha moves (Eq. 6 alone).
    alpha, fg, bg = fba_fusion(*args, sigma_fb_sq=0.0)
    np.testing.assert_allclose(fg, grey(0.8), atol=1e-7)
    np.testing.assert_allclose(bg, grey(0.4), atol=1e-7)
    np.testing.assert_allclose(alpha, [[(0.05 + 3 * 0.1 * 0.4) / (0.1 + 3 * 0.16)]], atol=1e-6)
    # A huge sigma_alpha ignores the network's alpha: projection of C - B' onto F' - B'.
    alpha, fg, bg = fba_fusion(*args, sigma_alpha_sq=1e9)
    np.testing.assert_allclose(alpha, [[0.1375 / 0.3875]], atol=1e-6)
    # sigma_C^2 = 2 halves every gain compared with the defaults' 1.
    _, fg, _ = fba_fusion(*args, sigma_c_sq=2.0)
    np.testing.assert_allclose(fg, grey(0.8 + 0.5 * 0.5 * -0.1), atol=1e-6)


def test_clamping_and_degenerate_pixels() -> None:
    # A bright image over a darker estimate pushes F' above 1: clamped.
    _, fg, bg = fba_fusion(grey(1.0), np.array([[0.9]], np.float32), grey(0.95), grey(0.0))
    assert fg.max() == 1.0 and 0.0 < bg.min() < 0.01
    # Alpha outside [0, 1] before clamping: (0.09 + 1.5) / 0.85 and (0.01 - 0.75) / 0.85.
    high, _, _ = fba_fusion(grey(1.0), np.array([[0.9]], np.float32), grey(0.5), grey(0.0), sigma_fb_sq=0)
    low, _, _ = fba_fusion(grey(0.0), np.array([[0.1]], np.float32), grey(1.0), grey(0.5), sigma_fb_sq=0)
    assert high[0, 0] == 1.0 and low[0, 0] == 0.0
    # F = B: alpha is unobservable and stays as the network said.
    alpha, _, _ = fba_fusion(grey(0.3), np.array([[0.7]], np.float32), grey(0.3), grey(0.3))
    np.testing.assert_allclose(alpha, [[0.7]], atol=1e-6)


def test_batch_dimensions_broadcast() -> None:
    rng = np.random.default_rng(0)
    image, fg, bg = (rng.random((2, 5, 7, 3), dtype=np.float32) for _ in range(3))
    alpha = rng.random((2, 5, 7), dtype=np.float32)
    batched = fba_fusion(image, alpha, fg, bg)
    single = fba_fusion(image[1], alpha[1], fg[1], bg[1])
    assert batched[0].shape == (2, 5, 7) and batched[1].shape == (2, 5, 7, 3)
    for b, s in zip(batched, single, strict=True):
        np.testing.assert_array_equal(b[1], s)


@pytest.mark.parametrize(("unknown", "full"), [(128, 255), (0.5, 1.0)])
def test_impose_trimap(unknown: float, full: float) -> None:
    alpha = np.full((2, 3), 0.4, np.float32)
    dtype = np.uint8 if full == 255 else np.float32
    trimap = np.array([[0, unknown, full], [full, 0, unknown]], dtype=dtype)
    out = impose_trimap(alpha, trimap)
    np.testing.assert_array_equal(out, np.array([[0.0, 0.4, 1.0], [1.0, 0.0, 0.4]], np.float32))
    assert out.dtype == np.float32


def test_impose_known_colours() -> None:
    image = np.stack([np.full((1, 3), v, np.float32) for v in (0.9, 0.5, 0.1)], axis=-1)
    alpha = np.array([[1.0, 0.5, 0.0]], np.float32)
    fg = np.zeros((1, 3, 3), np.float32)
    bg = np.ones((1, 3, 3), np.float32)
    new_fg, new_bg = impose_known_colours(image, alpha, fg, bg)
    np.testing.assert_array_equal(new_fg[0, 0], image[0, 0])
    np.testing.assert_array_equal(new_fg[0, 1:], fg[0, 1:])
    np.testing.assert_array_equal(new_bg[0, 2], image[0, 2])
    np.testing.assert_array_equal(new_bg[0, :2], bg[0, :2])


def test_fusion_and_known_regions_on_gathered_pixels_equal_the_whole_frame() -> None:
    """The pipeline fuses only the pixels the network decides, gathered into N and N×3 arrays."""
    rng = np.random.default_rng(7)
    image, fg, bg = (rng.random((6, 9, 3), dtype=np.float32) for _ in range(3))
    alpha = rng.random((6, 9), dtype=np.float32)
    trimap = rng.choice(np.array([0, 128, 255], np.uint8), size=(6, 9))
    whole_alpha, whole_fg, whole_bg = fba_fusion(image, alpha, fg, bg)
    whole_alpha = impose_trimap(whole_alpha, trimap)
    whole_fg, _ = impose_known_colours(image, whole_alpha, whole_fg, whole_bg)
    picked = np.flatnonzero(trimap != 255)
    flat = [a.reshape(-1, 3)[picked] for a in (image, fg, bg)]
    some_alpha, some_fg, some_bg = fba_fusion(flat[0], alpha.ravel()[picked], flat[1], flat[2])
    some_alpha = impose_trimap(some_alpha, trimap.ravel()[picked])
    some_fg, _ = impose_known_colours(flat[0], some_alpha, some_fg, some_bg)
    np.testing.assert_allclose(some_alpha, whole_alpha.ravel()[picked], atol=1e-7, rtol=0)
    np.testing.assert_allclose(some_fg, whole_fg.reshape(-1, 3)[picked], atol=1e-7, rtol=0)
    assert (some_alpha[trimap.ravel()[picked] == 0] == 0).all()
