"""Foreground re-estimation: LSA's multi-level refinement (exact update, real data) and pymatting's."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mattecli.errors import InputError, UnavailableError
from mattecli.foreground import (
    estimate_foreground,
    read_colour_and_alpha,
    refine_foreground,
    simple_refine,
)
from mattecli.media.frame import to_float
from mattecli.media.imageio import read_image

ALPHA_3X3 = np.array([[0.0, 0.5, 1.0], [0.0, 0.0, 1.0], [0.25, 1.0, 0.0]], dtype=np.float32)
F_3X3 = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]], dtype=np.float32)


def _one_step_by_loops(fg: np.ndarray, alpha: np.ndarray, kappa: float) -> np.ndarray:
    """The LSA fixed-point update pixel by pixel; neighbours outside the image replicate the edge."""
    height, width = alpha.shape
    out = np.zeros_like(fg)
    for y in range(height):
        for x in range(width):
            a = alpha[y, x]
            numerator = a * a * fg[y, x]
            denominator = a * a + 4 * kappa * (1 - a) ** 2
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                ny, nx = min(max(y + dy, 0), height - 1), min(max(x + dx, 0), width - 1)
                b = alpha[ny, nx]
                numerator = numerator + kappa * ((1 - a) ** 2 + (1 - b) ** 2) * fg[ny, nx]
                denominator += kappa * (1 - b) ** 2
            out[y, x] = numerator / denominator
    return out


def test_one_jacobi_update_matches_a_hand_computation() -> None:
    fg = np.repeat(F_3X3[:, :, None], 3, axis=2)
    fg[:, :, 1] = 1.0 - F_3X3  # channels are independent
    premultiplied = fg * ALPHA_3X3[:, :, None]
    one = simple_refine(premultiplied, ALPHA_3X3, fg, kappa=1.0, iterations=1)
    # Centre: alpha 0; neighbours up 0.2 (alpha 0.5), down 0.8 (1), left 0.4 (0), right 0.6 (1).
    # numerator = 1.25*0.2 + 1*0.8 + 2*0.4 + 1*0.6 = 2.45; denominator = 4 + (0.25 + 0 + 1 + 0) = 5.25.
    assert one[1, 1, 0] == pytest.approx(2.45 / 5.25, abs=1e-6)
    # Corner (0, 0): up and left replicate itself (alpha 0, F 0.1), down 0.4 (alpha 0), right 0.2 (0.5).
    # numerator = 2*0.1 + 2*0.4 + 2*0.1 + 1.25*0.2 = 1.45; denominator = 4 + (1 + 1 + 1 + 0.25) = 7.25.
    assert one[0, 0, 0] == pytest.approx(1.45 / 7.25, abs=1e-6)
    # Corner (0, 2): alpha 1, data term 1*0.3; only the left neighbour (alpha 0.5, F 0.2) weighs 0.25.
    assert one[0, 2, 0] == pytest.approx((0.3 + 0.25 * 0.2) / 1.25, abs=1e-6)
    np.testing.assert_allclose(one, _one_step_by_loops(fg, ALPHA_3X3, 1.0), atol=1e-6)
    # kappa scales only the smoothness terms.
    np.testing.assert_allclose(
        simple_refine(premultiplied, ALPHA_3X3, fg, kappa=3.0, iterations=1),
        _one_step_by_loops(fg, ALPHA_3X3, 3.0),
        atol=1e-6,
    )


def test_iterations_are_synchronous_and_never_touch_the_input() -> None:
    fg = np.repeat(F_3X3[:, :, None], 3, axis=2)
    before = fg.copy()
    premultiplied = fg * ALPHA_3X3[:, :, None]
    two = simple_refine(premultiplied, ALPHA_3X3, fg, iterations=2)
    np.testing.assert_array_equal(fg, before)
    once = simple_refine(premultiplied, ALPHA_3X3, fg, iterations=1)
    np.testing.assert_allclose(two, simple_refine(premultiplied, ALPHA_3X3, once, iterations=1), atol=1e-7)


def _real_triplet(shared_data: Path, name: str, width: int) -> tuple[np.ndarray, np.ndarray]:
    root = shared_data / "alphamatting"
    image, alpha = read_colour_and_alpha(root / "image" / f"{name}.png", root / "alpha" / f"{name}.png")
    height = round(image.shape[0] * width / image.shape[1])
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_AREA)
    return image, alpha


def _roughness(colour: np.ndarray, region: np.ndarray) -> float:
    """Mean |F_i − F_j| (summed over RGB) over 4-neighbour pairs with both pixels in ``region``."""
    dy = np.abs(np.diff(colour, axis=0)).sum(-1)
    dx = np.abs(np.diff(colour, axis=1)).sum(-1)
    pairs_y = region[1:] & region[:-1]
    pairs_x = region[:, 1:] & region[:, :-1]
    return float((dy[pairs_y].sum() + dx[pairs_x].sum()) / (pairs_y.sum() + pairs_x.sum()))


def test_lsa_makes_f_locally_constant_where_alpha_is_zero_and_keeps_alpha_f(shared_data: Path) -> None:
    # GT04 at 400 px wide; F starts as the photo itself (junk background colours under alpha = 0).
    image, alpha = _real_triplet(shared_data, "GT04", 400)
    refined = refine_foreground(image, alpha)
    assert refined.dtype == np.float32 and refined.shape == image.shape
    assert refined.min() >= image.min() - 1e-6 and refined.max() <= image.max() + 1e-6
    # Assumption 1's region {alpha = 0} ∪ ∂{alpha = 0}: the zero set grown by one 4-neighbour step.
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    region = cv2.dilate((alpha == 0).astype(np.uint8), cross) > 0
    before, after = _roughness(image, region), _roughness(refined, region)
    assert before > 0.03  # the photo's background is textured (measured 0.040)
    assert before / after > 10.0  # measured 19.4
    # The premultiplied colour alpha*F is what the data term keeps.
    covered = alpha > 0
    error = np.abs(alpha[:, :, None] * (refined - image))[covered]
    assert error.mean() < 0.008  # measured 0.0038
    opaque = np.abs(refined - image)[alpha == 1]
    assert opaque.mean() < 1e-4 and opaque.max() < 0.05  # measured 1.1e-5 and 0.026 (next to soft pixels)


def test_ml_and_cf_recover_a_known_foreground_lsa_cannot(shared_data: Path) -> None:
    # A flat red foreground under GT04's real alpha over a real photo: in soft pixels the composite
    # mixes in the photo, and only the solvers of I = aF + (1 - a)B take it out again.
    _, alpha = _real_triplet(shared_data, "GT04", 200)
    height, width = alpha.shape
    background = to_float(read_image(shared_data / "backgrounds" / "skimage_coffee.png"))[:height, :width]
    true_fg = np.empty((height, width, 3), np.float32)
    true_fg[:] = (0.9, 0.2, 0.1)
    image = alpha[:, :, None] * true_fg + (1 - alpha[:, :, None]) * background
    soft = (alpha > 0.2) & (alpha < 0.8)
    assert soft.sum() > 1000
    errors = {}
    for method in ("ml", "cf", "lsa"):
        fg = estimate_foreground(image, alpha, method)
        assert fg.dtype == np.float32 and fg.shape == image.shape and fg.min() >= 0 and fg.max() <= 1
        errors[method] = float(np.abs(fg - true_fg)[soft].mean())
    assert float(np.abs(image - true_fg)[soft].mean()) > 0.08  # the composite itself: measured 0.101
    assert errors["ml"] < 0.03 and errors["cf"] < 0.02  # measured 0.015 and 0.0076
    assert errors["lsa"] > 3 * errors["ml"]  # measured 0.071: smoothing alone never removes B


def test_unknown_method_and_missing_pymatting_are_clean_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = np.zeros((4, 4, 3), np.float32)
    alpha = np.zeros((4, 4), np.float32)
    with pytest.raises(InputError, match="unknown foreground method"):
        estimate_foreground(image, alpha, "bayes")  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "pymatting", None)  # makes `import pymatting` fail
    with pytest.raises(UnavailableError, match="needs pymatting") as info:
        estimate_foreground(image, alpha, "ml")
    assert "lsa" in str(info.value)
    estimate_foreground(image, alpha, "lsa")  # needs nothing but NumPy and OpenCV
