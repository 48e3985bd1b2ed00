"""Metrics: parity with the official DIM MATLAB evaluation, and properties computed by hand.

Fixture A and its reference values come from running the official ``.m`` files under GNU Octave
(../shared/reference/anchors.md §5); the fixture is synthetic, so it is rebuilt here.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mattecli import metrics
from mattecli.media.imageio import read_gray

# Official MATLAB code under Octave 7.3 on fixture A (raw values, as the functions return them).
FIXTURE_A = {"sad": 0.088486, "mse": 0.001440331, "grad": 31.810432, "conn": 13.692156}
# What a widely copied Python port (background label allowed to be the "largest component") gives.
WRONG_CONN_FIXTURE_A = 58.888


def fixture_a() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:64, 0:96]
    t = np.clip((x - 30) / 36, 0, 1)
    gt = np.round(255 * t).astype(np.uint8)  # numpy rounds halves to even; it matters at x = 36, 48, 60
    pred = np.round(255 * np.clip(t + 0.08 * np.sin(x / 3) * np.cos(y / 5), 0, 1)).astype(np.uint8)
    trimap = np.where(x < 24, 0, np.where(x < 72, 128, 255)).astype(np.uint8)
    return pred, gt, trimap


def copied_conn_variant(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """The widely copied port: float64, and ``argmax(bincount(labels))`` lets label 0 (background) win."""
    p, g = pred / 255.0, gt / 255.0
    steps = np.arange(0, 1.1, 0.1)
    level = np.full(p.shape, -1.0)
    for i in range(1, steps.size):
        _, labels = cv2.connectedComponents(
            ((p >= steps[i]) & (g >= steps[i])).astype(np.uint8), connectivity=4
        )
        omega = labels == np.argmax(np.bincount(labels.ravel()))
        level[(level == -1) & ~omega] = steps[i - 1]
    level[level == -1] = 1
    dp, dg = p - level, g - level
    return float(np.sum(np.abs((1 - dp * (dp >= 0.15)) - (1 - dg * (dg >= 0.15))) * (trimap == 128)))


# --- parity ---------------------------------------------------------------------------------------


def test_fixture_a_matches_the_official_code() -> None:
    pred, gt, trimap = fixture_a()
    assert np.count_nonzero(trimap == 128) == 3072
    scores = metrics.evaluate_matte(pred, gt, trimap)
    for key, expected in FIXTURE_A.items():
        assert getattr(scores, key) == pytest.approx(expected, rel=1e-4), key
    # The single-metric functions give the same numbers.
    assert metrics.sad(pred, gt, trimap) == scores.sad
    assert metrics.mse(pred, gt, trimap) == scores.mse
    assert metrics.gradient_error(pred, gt, trimap) == scores.grad
    assert metrics.connectivity_error(pred, gt, trimap) == scores.conn


def test_fixture_a_paper_scaling() -> None:
    pred, gt, trimap = fixture_a()
    paper = metrics.evaluate_matte(pred, gt, trimap).paper()
    assert paper["sad"] == pytest.approx(0.088486, rel=1e-4)  # already divided by 1000 inside
    assert paper["mse"] == pytest.approx(1.440331, rel=1e-4)  # FBA prints MSE x 1e3
    assert paper["grad"] == pytest.approx(0.031810432, rel=1e-4)
    assert paper["conn"] == pytest.approx(0.013692156, rel=1e-4)


def test_connectivity_is_not_the_copied_background_variant() -> None:
    pred, gt, trimap = fixture_a()
    assert copied_conn_variant(pred, gt, trimap) == pytest.approx(WRONG_CONN_FIXTURE_A, abs=1e-3)
    ours = metrics.connectivity_error(pred, gt, trimap)
    assert abs(ours - WRONG_CONN_FIXTURE_A) > 40
    assert ours == pytest.approx(FIXTURE_A["conn"], rel=1e-4)


def test_connectivity_thresholds_compare_in_float32() -> None:
    # 153/255 is 0.6: in float32 it equals the threshold single(0.6); in float64 it is below
    # 6 * 0.1 = 0.6000000000000001 and leaves the source region one threshold early.
    assert np.float32(153) / np.float32(255) >= np.float32(6 * 0.1)
    assert not 153 / 255 >= 6 * 0.1
    gt = np.full((4, 5), 153, dtype=np.uint8)
    pred = np.full((4, 5), 255, dtype=np.uint8)
    trimap = np.full((4, 5), 128, dtype=np.uint8)
    # float32 (official): every pixel leaves at t = 0.7, so l = 0.6; phi(gt) = 1, phi(pred) = 1 - 0.4.
    assert metrics.connectivity_error(pred, gt, trimap) == pytest.approx(20 * 0.4, rel=1e-6)
    # float64: they leave at t = 0.6, so l = 0.5; d(gt) = 0.1 < 0.15 keeps phi(gt) = 1, phi(pred) = 0.5.
    assert metrics.connectivity_error(pred, gt, trimap, precision="float") == pytest.approx(
        20 * 0.5, rel=1e-12
    )


def test_largest_component_ties_follow_matlab_column_order() -> None:
    binary = np.zeros((4, 7), dtype=bool)
    binary[0, 5:7] = True  # first in row-major order (OpenCV's label 1)
    binary[3, 0:2] = True  # first in column-major order (bwconncomp's first component)
    chosen = metrics._largest_component(binary)
    assert chosen[3, 0] and chosen[3, 1] and not chosen[0, 5]
    assert np.count_nonzero(chosen) == 2


def test_gradient_kernel_is_the_official_one() -> None:
    gauss, dgauss = metrics._gauss_gradient_factors(1.4)
    kernel = np.outer(gauss, dgauss)  # hx(i, j) = gauss(i) * dgauss(j), as gaussgradient.m builds it
    assert kernel.shape == (9, 9)  # half-size ceil(1.4 * sqrt(-2 ln(sqrt(2 pi) 1.4e-2))) = 4
    u = np.arange(-4, 5)
    g = np.exp(-(u**2) / (2 * 1.4**2))
    official = np.outer(g, -u * g)
    np.testing.assert_allclose(kernel, official / np.sqrt(np.sum(official**2)), rtol=1e-12, atol=1e-15)


# --- properties -----------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["dim", "float"])
@pytest.mark.parametrize("region", ["unknown", "all"])
def test_identical_mattes_score_zero(precision: str, region: str) -> None:
    _, gt, trimap = fixture_a()
    scores = metrics.evaluate_matte(gt, gt, trimap, region=region, precision=precision)
    assert scores.raw() == {"sad": 0.0, "mse": 0.0, "grad": 0.0, "conn": 0.0, "mad": 0.0}


@pytest.mark.parametrize(("region", "pixels"), [("unknown", 3072), ("all", 64 * 96)])
def test_constant_offset(region: str, pixels: int) -> None:
    _, gt, trimap = fixture_a()
    gt = (gt.astype(np.uint16) * 200 // 255).astype(np.uint8)  # 0..200, room for the offset
    pred = gt + np.uint8(10)
    scores = metrics.evaluate_matte(pred, gt, trimap, region=region)
    # Sums run in float32, like the official code: a few 1e-6 of relative error over 6k pixels.
    assert scores.sad == pytest.approx(pixels * 10 / 255 / 1000, rel=1e-5)
    assert scores.mse == pytest.approx((10 / 255) ** 2, rel=1e-5)
    assert scores.mad == pytest.approx(10 / 255, rel=1e-5)


def test_region_all_covers_known_pixels_too() -> None:
    pred, gt, trimap = fixture_a()
    error = np.abs(pred.astype(np.float64) - gt) / 255
    unknown = trimap == 128
    assert error[~unknown].sum() > 1  # fixture A's prediction is off in the known regions as well
    assert metrics.sad(pred, gt, trimap) == pytest.approx(error[unknown].sum() / 1000, rel=1e-6)
    assert metrics.sad(pred, gt, region="all") == pytest.approx(error.sum() / 1000, rel=1e-6)
    assert metrics.mse(pred, gt, region="all") == pytest.approx(np.mean(error**2), rel=1e-6)
    with pytest.raises(ValueError, match="needs a trimap"):
        metrics.sad(pred, gt)


def test_gradient_normalises_each_matte_min_max() -> None:
    # mat2gray: a matte and its exact half have the same normalised gradients (a /255 port would not).
    _, gt, trimap = fixture_a()
    gt = (gt // 2 * 2).astype(np.uint8)
    half = gt // 2
    assert metrics.sad(half, gt, trimap) > 0.01
    assert metrics.gradient_error(half, gt, trimap) == pytest.approx(0.0, abs=1e-9)


def test_precision_modes_quantise_or_not() -> None:
    gt = np.full((3, 3), 128, dtype=np.uint8)
    trimap = np.full((3, 3), 128, dtype=np.uint8)
    pred = np.full((3, 3), 0.5, dtype=np.float32)  # 127.5 -> 128 with MATLAB's round-half-up
    assert metrics.sad(pred, gt, trimap) == 0.0
    assert metrics.sad(pred, gt, trimap, precision="float") == pytest.approx(9 * (128 / 255 - 0.5) / 1000)
    deep = np.full((3, 3), 257 * 128, dtype=np.uint16)
    assert metrics.sad(deep, gt, trimap) == 0.0
    assert metrics.sad(deep, gt, trimap, precision="float") == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_array_equal(
        metrics.quantize_8bit(np.array([0, 128, 129, 65535], dtype=np.uint16)), [0, 0, 1, 255]
    )
    np.testing.assert_array_equal(metrics.quantize_8bit(np.array([-0.2, 0.5, 1.3])), [0, 128, 255])


def test_bad_inputs_are_refused() -> None:
    gt = np.zeros((4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="same shape"):
        metrics.sad(np.zeros((4, 5), dtype=np.uint8), gt, region="all")
    with pytest.raises(ValueError, match="NaN"):
        metrics.sad(np.full((4, 4), np.nan, dtype=np.float32), gt, region="all")
    with pytest.raises(ValueError, match="trimap must be uint8"):
        metrics.sad(gt, gt, np.zeros((4, 4), dtype=np.float32))


def test_empty_region_has_no_mean() -> None:
    gt = np.zeros((4, 4), dtype=np.uint8)
    trimap = np.full((4, 4), 255, dtype=np.uint8)
    scores = metrics.evaluate_matte(gt, gt, trimap)
    assert scores.sad == 0.0 and scores.grad == 0.0 and scores.conn == 0.0
    assert np.isnan(scores.mse) and np.isnan(scores.mad)  # 0 / 0, as in the official code


@settings(max_examples=40, deadline=None)
@given(
    pred=arrays(np.uint8, (12, 10)),
    gt=arrays(np.uint8, (12, 10)),
    trimap=arrays(np.uint8, (12, 10), elements=st.sampled_from([0, 128, 255])),
)
def test_sad_and_mse_agree_with_float64_formulas(
    pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray
) -> None:
    error = (pred.astype(np.float64) - gt)[trimap == 128] / 255
    scores = metrics.evaluate_matte(pred, gt, trimap)
    assert scores.sad == pytest.approx(np.abs(error).sum() / 1000, rel=1e-5, abs=1e-9)
    if error.size:
        assert scores.mse == pytest.approx(np.mean(error**2), rel=1e-5, abs=1e-9)
    assert scores.conn >= 0 and scores.grad >= 0
    assert metrics.evaluate_matte(gt, gt, trimap).conn == 0.0


# --- MAD and the alpha x F errors, by hand --------------------------------------------------------


def tiny_example() -> dict[str, np.ndarray]:
    gt = np.array([[255, 0], [102, 204]], dtype=np.uint8)
    pred = np.array([[255, 51], [153, 204]], dtype=np.uint8)
    trimap = np.array([[128, 128], [128, 255]], dtype=np.uint8)  # the last pixel is known
    gt_fg = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    pred_fg = gt_fg.copy()
    pred_fg[1, 0] = (0, 0, 204)  # blue 1.0 -> 0.8
    return {"pred": pred, "gt": gt, "trimap": trimap, "pred_fg": pred_fg, "gt_fg": gt_fg}


def test_mad_by_hand() -> None:
    ex = tiny_example()
    # |diff| over the three unknown pixels: 0, 0.2, 0.2
    assert metrics.mad(ex["pred"], ex["gt"], ex["trimap"]) == pytest.approx(0.4 / 3, rel=1e-6)
    assert metrics.mad(ex["pred"], ex["gt"], region="all") == pytest.approx(0.4 / 4, rel=1e-6)
    assert metrics.sad(ex["pred"], ex["gt"], ex["trimap"]) == pytest.approx(0.4 / 1000, rel=1e-6)
    assert metrics.mse(ex["pred"], ex["gt"], ex["trimap"]) == pytest.approx(0.08 / 3, rel=1e-6)


def test_premultiplied_foreground_errors_by_hand() -> None:
    ex = tiny_example()
    # gt aF:   (1,0,0), (0,0,0), 0.4*(0,0,1) = (0,0,0.4)
    # pred aF: (1,0,0), 0.2*(0,1,0) = (0,0.2,0), 0.6*(0,0,0.8) = (0,0,0.48)
    # errors summed over RGB: |.| = 0, 0.2, 0.08 ; squared = 0, 0.04, 0.0064
    fg_sad, fg_mse = metrics.foreground_errors(ex["pred"], ex["pred_fg"], ex["gt"], ex["gt_fg"], ex["trimap"])
    assert fg_sad == pytest.approx(0.28 / 1000, rel=1e-9)
    assert fg_mse == pytest.approx(0.0464 / 3, rel=1e-9)
    # The known pixel matches exactly, so "all" only changes the MSE's pixel count.
    all_sad, all_mse = metrics.foreground_errors(
        ex["pred"], ex["pred_fg"], ex["gt"], ex["gt_fg"], region="all"
    )
    assert (all_sad, all_mse) == pytest.approx((0.28 / 1000, 0.0464 / 4), rel=1e-9)
    scores = metrics.evaluate_matte(
        ex["pred"], ex["gt"], ex["trimap"], pred_fg=ex["pred_fg"], gt_fg=ex["gt_fg"]
    )
    assert (scores.fg_sad, scores.fg_mse) == (fg_sad, fg_mse)
    assert scores.paper()["fg_mse"] == pytest.approx(0.0464 / 3 * 1000, rel=1e-9)


def test_mean_scores_averages_raw_values() -> None:
    a = metrics.MatteScores(sad=1.0, mse=0.002, grad=10.0, conn=4.0, mad=0.1, fg_sad=2.0, fg_mse=0.01)
    b = metrics.MatteScores(sad=3.0, mse=0.004, grad=30.0, conn=8.0, mad=0.3)
    mean = metrics.mean_scores([a, b])
    assert mean == pytest.approx({"sad": 2.0, "mse": 0.003, "grad": 20.0, "conn": 6.0, "mad": 0.2})
    assert metrics.to_paper(mean) == pytest.approx(
        {"sad": 2.0, "mse": 3.0, "grad": 0.02, "conn": 0.006, "mad": 0.2}
    )


# --- real data ------------------------------------------------------------------------------------


def test_real_matte_sums_match_float64(shared_data) -> None:
    gt = read_gray(shared_data / "alphamatting" / "alpha" / "GT01.png")
    trimap = read_gray(shared_data / "alphamatting" / "trimap" / "GT01.png")
    pred = cv2.GaussianBlur(gt, (0, 0), 2.0)
    unknown = trimap == 128
    error = (pred.astype(np.float64) - gt)[unknown] / 255
    scores = metrics.evaluate_matte(pred, gt, trimap)
    # float32 accumulation over ~37k pixels in MATLAB order stays within 1e-5 of float64.
    assert scores.sad == pytest.approx(np.abs(error).sum() / 1000, rel=1e-5)
    assert scores.mse == pytest.approx(np.mean(error**2), rel=1e-5)
    assert scores.mad == pytest.approx(np.mean(np.abs(error)), rel=1e-5)
    assert scores.grad > 0 and scores.conn > 0
    # float64 thresholds flip pixels that sit on them (see anchors.md: ~0.4% on real mattes).
    conn64 = metrics.connectivity_error(pred, gt, trimap, precision="float")
    assert conn64 != scores.conn
    assert conn64 == pytest.approx(scores.conn, rel=2e-2)
