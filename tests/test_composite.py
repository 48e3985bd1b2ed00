"""Composition: the DIM composite, each RSSN step against the statistic it targets, two foregrounds,
LSA's colour augmentation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mattecli.media.frame import to_float
from mattecli.media.imageio import read_image
from training.data.composite import (
    RSSN_NOISE_SIGMA,
    colour_augment,
    composite,
    denoise,
    match_resolution,
    rssn_blur,
    rssn_denoise,
    rssn_noise,
    two_foregrounds,
)


@pytest.fixture(scope="module")
def coffee(shared_data: Path) -> np.ndarray:
    """A real 600×400 photo (skimage's coffee), float32."""
    return to_float(read_image(shared_data / "backgrounds" / "skimage_coffee.png"))


def _laplacian_energy(image: np.ndarray) -> float:
    return float(np.var(cv2.Laplacian(image, cv2.CV_32F)))


def _gradient_energy(image: np.ndarray) -> float:
    return float(np.square(np.diff(image, axis=1)).mean() + np.square(np.diff(image, axis=0)).mean())


def test_denoising_removes_noise_from_foreground_and_background(coffee: np.ndarray) -> None:
    clean = np.ascontiguousarray(coffee[100:228, 200:328])
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 10 / 255, clean.shape), 0, 1).astype(
        np.float32
    )
    fg, bg = rssn_denoise(noisy, noisy.copy(), np.random.default_rng(1), p=1.0)
    for out in (fg, bg):
        assert out.dtype == np.float32 and out.shape == clean.shape
        # High-frequency energy falls to about the clean patch's (measured 0.0365 -> 0.0090; clean 0.0079).
        assert _laplacian_energy(out) < _laplacian_energy(noisy) / 3
        assert _laplacian_energy(out) < 1.5 * _laplacian_energy(clean)
        # And the residual to the clean patch shrinks (measured std 0.0379 -> 0.0284).
        assert np.std(out - clean) < 0.8 * np.std(noisy - clean)
    np.testing.assert_array_equal(fg, denoise(noisy))


def test_blur_removes_background_gradients(coffee: np.ndarray) -> None:
    for seed in range(3):
        blurred = rssn_blur(coffee, np.random.default_rng(seed), p=1.0)
        assert blurred.shape == coffee.shape and blurred.dtype == np.float32
        # A 20..60 px box kernel: gradient energy falls by two orders of magnitude (measured 194x-415x).
        assert _gradient_energy(coffee) / _gradient_energy(blurred) > 100
        assert abs(float(blurred.mean()) - float(coffee.mean())) < 0.01  # averaging keeps the mean
    # At a quarter of the source resolution the kernel shrinks, so less is removed.
    small = rssn_blur(coffee, np.random.default_rng(0), p=1.0, scale=0.25)
    full = rssn_blur(coffee, np.random.default_rng(0), p=1.0)
    assert _gradient_energy(small) > 2 * _gradient_energy(full)


def test_noise_raises_the_composite_residual_std_by_ten_levels() -> None:
    grey = np.full((256, 256, 3), 0.5, dtype=np.float32)
    noisy = rssn_noise(grey, np.random.default_rng(2), p=1.0)
    residual = noisy - grey
    assert np.std(residual) == pytest.approx(RSSN_NOISE_SIGMA, rel=0.03)  # measured 0.03925 vs 10/255
    assert pytest.approx(10 / 255) == RSSN_NOISE_SIGMA
    assert abs(float(residual.mean())) < 1e-3
    # Independent per channel: the channels' residuals are uncorrelated.
    corr = np.corrcoef(residual[..., 0].ravel(), residual[..., 1].ravel())[0, 1]
    assert abs(corr) < 0.02
    assert rssn_noise(np.ones_like(grey), np.random.default_rng(3), p=1.0).min() >= 0.0
    assert rssn_noise(np.ones_like(grey), np.random.default_rng(3), p=1.0).max() <= 1.0


def test_resolution_matching_covers_the_foreground(coffee: np.ndarray) -> None:
    # Larger than the 600x400 photo: it is enlarged, never padded.
    for height, width in ((800, 1000), (300, 900), (50, 40)):
        bg = match_resolution(np.clip(coffee, 0.01, 1), height, width, np.random.default_rng(0))
        assert bg.shape == (height, width, 3) and bg.dtype == np.float32
        assert bg.min() > 0  # no padding anywhere
    # A smaller target shrinks the 400x600 photo by 0.5 to just cover it (200x300), then cuts a
    # 150-wide window: all of the height survives.
    bg = match_resolution(coffee, 200, 150, np.random.default_rng(0))
    assert bg.shape == (200, 150, 3)
    shrunk = cv2.resize(coffee, (300, 200), interpolation=cv2.INTER_AREA)
    offsets = [np.abs(shrunk[:, left : left + 150] - bg).max() for left in range(151)]
    assert min(offsets) == 0.0
    # The window position is a fraction of the slack, so the same draw gives the same region at 2x.
    one = match_resolution(coffee, 100, 100, np.random.default_rng(5))
    two = match_resolution(coffee, 200, 200, np.random.default_rng(5))
    half = cv2.resize(two, (100, 100), interpolation=cv2.INTER_AREA)
    assert np.abs(half - one).mean() < 0.02


def test_probability_zero_is_the_identity_and_draws_nothing(coffee: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    state = rng.bit_generator.state
    fg, bg = rssn_denoise(coffee, coffee, rng, p=0.0)
    assert fg is coffee and bg is coffee
    assert rssn_blur(coffee, rng, p=0.0) is coffee
    assert rssn_noise(coffee, rng, p=0.0) is coffee
    assert colour_augment(coffee, rng, p=0.0) is coffee
    assert rng.bit_generator.state == state


def test_steps_fire_with_their_probability() -> None:
    image = np.full((8, 8, 3), 0.5, np.float32)
    rng = np.random.default_rng(11)
    fired = sum(rssn_noise(image, rng, p=0.5) is not image for _ in range(400))
    assert 160 < fired < 240  # Binomial(400, 0.5): ±4 standard deviations


def test_composite_is_alpha_blending() -> None:
    rng = np.random.default_rng(0)
    fg, bg = rng.random((2, 16, 16, 3), dtype=np.float32)
    alpha = rng.random((16, 16), dtype=np.float32)
    image = composite(fg, alpha, bg)
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, alpha[..., None] * fg + (1 - alpha[..., None]) * bg, atol=1e-7)


def test_two_foregrounds() -> None:
    rng = np.random.default_rng(1)
    fg1, fg2 = rng.random((2, 20, 30, 3), dtype=np.float32)
    alpha1 = rng.random((20, 30), dtype=np.float32)
    alpha1[:5] = 1.0
    alpha1[5:10] = 0.0
    alpha2 = rng.random((20, 30), dtype=np.float32)
    alpha2[15:] = 0.0
    fg, alpha = two_foregrounds(fg1, alpha1, fg2, alpha2)
    np.testing.assert_allclose(alpha, 1 - (1 - alpha1) * (1 - alpha2), atol=1e-7)
    assert np.all(alpha >= np.maximum(alpha1, alpha2) - 1e-7)
    np.testing.assert_allclose(fg[:5], fg1[:5], atol=1e-7)  # front layer opaque: its colour
    np.testing.assert_allclose(fg[5:10], fg2[5:10], atol=1e-7)  # front layer absent: the second's
    np.testing.assert_allclose(alpha[15:], alpha1[15:], atol=1e-7)  # no second layer: the first alone
    # Where the front is opaque or absent the premultiplied colour is exactly the two-layer "over".
    over = alpha1[..., None] * fg1 + (1 - alpha1[..., None]) * alpha2[..., None] * fg2
    exact = (alpha1 == 1) | (alpha1 == 0)
    np.testing.assert_allclose((alpha[..., None] * fg)[exact], over[exact], atol=1e-6)
    # A second foreground of another size is resized to the first.
    fg_b, alpha_b = two_foregrounds(fg1, alpha1, fg2[:10, :15], alpha2[:10, :15])
    assert fg_b.shape == fg1.shape and alpha_b.shape == alpha1.shape


def test_colour_augmentation_scales_gradients_by_w(coffee: np.ndarray) -> None:
    for seed in range(5):
        out = colour_augment(coffee, np.random.default_rng(seed), p=1.0)
        draw = np.random.default_rng(seed)
        weight = draw.random()
        colour = draw.random(3)
        np.testing.assert_allclose(out, weight * coffee + (1 - weight) * colour, atol=1e-6)
        ratio = _gradient_energy(out) / _gradient_energy(coffee)
        assert ratio == pytest.approx(weight**2, rel=1e-3)  # |grad| shrinks by w, energy by w^2
        assert out.min() >= 0 and out.max() <= 1
