"""dtSSD and MESSDdt on tiny sequences whose values are worked out by hand."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mattecli.temporal_metrics import (
    dtssd,
    dtssd_pair,
    estimate_flow,
    messddt,
    messddt_pair,
    unit_alpha,
    warp_previous,
)

H, W = 6, 16


def _edge(column: int) -> np.ndarray:
    """A vertical edge: alpha 1 from ``column`` rightwards, 0 left of it."""
    alpha = np.zeros((H, W))
    alpha[:, column:] = 1.0
    return alpha


def _shift_flow(dx: float) -> np.ndarray:
    """Backward flow of content moving ``-dx`` px: frame t at x shows frame t-1 at x + dx."""
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0] = dx
    return flow


def test_constant_offset_is_not_flicker() -> None:
    gt = [np.full((H, W), v) for v in (0.2, 0.5, 0.4, 0.7)]
    pred = [g + 0.1 for g in gt]  # wrong by the same amount on every frame
    assert dtssd(pred, gt) == pytest.approx(0.0, abs=1e-12)


def test_flicker_has_its_worked_out_value() -> None:
    gt = [np.full((2, 2), 0.5)] * 3
    whole = [g + d for g, d in zip(gt, (0.1, -0.1, 0.1), strict=True)]
    # Every pixel's change is off by 0.2 in both pairs: 100 * sqrt(0.2^2) = 20.
    assert dtssd(whole, gt) == pytest.approx(20.0, rel=1e-12)
    one_pixel = [g.copy() for g in gt]
    one_pixel[1][0, 0] += 0.2
    # One pixel of four off by 0.2 in both pairs: 100 * sqrt(0.04 / 4) = 10.
    assert dtssd_pair(one_pixel[1], one_pixel[0], gt[1], gt[0]) == pytest.approx(10.0, rel=1e-12)
    assert dtssd(one_pixel, gt) == pytest.approx(10.0, rel=1e-12)


def test_messddt_of_the_ground_truth_is_zero_whatever_the_flow() -> None:
    rng = np.random.default_rng(3)
    gt = [rng.random((H, W)) for _ in range(3)]
    flows = [_shift_flow(1.5), rng.normal(0, 2, (H, W, 2)).astype(np.float32)]
    assert messddt(gt, gt, flows) == 0.0


def test_an_error_that_moves_with_the_edge_scores_zero_with_the_right_flow() -> None:
    gt_prev, gt_now = _edge(10), _edge(12)  # the edge moves 2 px right
    pred_prev, pred_now = gt_prev.copy(), gt_now.copy()
    pred_prev[:, 10] = 0.5  # the same error on the edge column in both frames
    pred_now[:, 12] = 0.5
    assert messddt_pair(pred_now, pred_prev, gt_now, gt_prev, _shift_flow(-2.0)) == 0.0
    # Without motion compensation the error seems to vanish at column 10 and appear at 12:
    # |0.25 - 0| on one column plus |0 - 0.25| on the other, H rows each.
    assert messddt_pair(pred_now, pred_prev, gt_now, gt_prev, _shift_flow(0.0)) == pytest.approx(0.5 * H)
    # dtSSD, which ignores motion, also sees it: 2 columns of H rows off by 0.5, over H x W pixels.
    assert dtssd_pair(pred_now, pred_prev, gt_now, gt_prev) == pytest.approx(100 * np.sqrt(0.25 * 2 / W))


def test_warp_samples_the_previous_frame_and_marks_what_left_it() -> None:
    previous = np.arange(H * W, dtype=np.float64).reshape(H, W)
    warped, valid = warp_previous(previous, _shift_flow(-2.0))
    np.testing.assert_array_equal(warped[:, 2:], previous[:, :-2])
    assert not valid[:, :2].any() and valid[:, 2:].all()
    half, _ = warp_previous(previous, _shift_flow(0.5))
    np.testing.assert_allclose(half[:, :-1], previous[:, :-1] + 0.5)  # bilinear


def test_estimated_flow_follows_a_textured_shift() -> None:
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.random((96, 128)), (0, 0), 2.0)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    previous, current = texture[:, 3:99], texture[:, 0:96]  # content moves 3 px right
    flow = estimate_flow(current, previous)
    inner = flow[16:-16, 16:-16]
    assert np.median(inner[..., 0]) == pytest.approx(-3.0, abs=0.25)
    assert np.median(np.abs(inner[..., 1])) < 0.25


def test_unit_alpha_scales_by_bit_depth() -> None:
    assert unit_alpha(np.array([255], np.uint8))[0] == 1.0
    assert unit_alpha(np.array([65535], np.uint16))[0] == 1.0
    assert unit_alpha(np.array([0.25], np.float32)).dtype == np.float64


def test_sequences_must_match() -> None:
    one = [np.zeros((2, 2))]
    with pytest.raises(ValueError, match="equal length"):
        dtssd(one, one)
    with pytest.raises(ValueError, match="need 1 flows"):
        messddt(one * 2, one * 2, [])
