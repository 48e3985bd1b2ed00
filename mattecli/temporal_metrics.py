"""Temporal coherence of a predicted matte sequence: dtSSD and MESSDdt (Erofeev et al. 2015).

A per-frame metric cannot tell a steady error from a flickering one: a matte that is 0.05 too
high on every frame and one that alternates between +0.05 and -0.05 have the same SAD, but only
the second one crawls in playback. The two metrics here score how the error *changes* between
consecutive frames. All inputs are alpha in [0, 1]; everything is computed in float64.

dtSSD (as RVM's evaluation scripts compute it, over the whole frame of N pixels)::

    dtSSD_t = 100 * sqrt( sum_p ((a_t - a_{t-1}) - (g_t - g_{t-1}))^2 / N )

It compares the temporal derivative of the prediction ``a`` with that of the ground truth ``g``:
a prediction that is wrong by the same amount on every frame scores 0, flicker does not.

MESSDdt (mean squared error of the squared difference along motion, as TCVOM's and DVM's
evaluation code compute it)::

    MESSDdt_t = sum_{p valid} | (a_t(p) - g_t(p))^2 - (a'_{t-1}(p) - g'_{t-1}(p))^2 |

where ``x'_{t-1}(p) = x_{t-1}(p + v_t(p))`` is the previous frame warped into the current one by
the backward flow ``v_t`` (from frame t to frame t-1, bilinear sampling), and a pixel is valid when
``p + v_t(p)`` lies inside the previous frame. It asks whether the error *travels with the
content*: an error that stays stuck to a moving edge scores 0, one that appears and vanishes does
not. Unlike dtSSD it is a plain sum (no normalisation, no factor), so it grows with the frame's
area; TCVOM's numbers are the same sum restricted to the trimap's unknown pixels at 1080p.

Per clip both are the mean over the pairs t = 1 .. T-1. (RVM's spreadsheet also counts a 0 for
frame 0 in its average, i.e. (T-1)/T of the value here.)

No ground-truth flow exists for most clips, so :func:`estimate_flow` estimates it with OpenCV's
DIS optical flow (medium preset) on 8-bit grey images, by default the ground-truth alpha itself
(as DVM's evaluation estimates it from the ground truth): the alpha is exactly the layer whose
motion the metric follows, it is always at hand, and on the demo clip it warped the ground truth
better than flow from the composite frames, whose background moves differently from the subject
(mean |g_t - g'_{t-1}| summed per frame: 2936 from alpha, 4051 from the video frames; 2887 with
Farneback on alpha at 3x the time; 4126 with the subject's exact translation, which misses the
hair's sway).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# The reported dtSSD is 100 x the RMS difference of the temporal derivatives (RVM's scaling).
DTSSD_FACTOR = 100.0
FLOW_METHOD = "OpenCV DIS optical flow, medium preset, frame t to t-1 on 8-bit grey; bilinear backward warp"


def unit_alpha(matte: np.ndarray) -> np.ndarray:
    """A matte as float64 in [0, 1]: 8-bit / 255, 16-bit / 65535, float as stored."""
    if matte.dtype == np.uint8:
        return matte.astype(np.float64) / 255.0
    if matte.dtype == np.uint16:
        return matte.astype(np.float64) / 65535.0
    return matte.astype(np.float64)


def dtssd_pair(a_t: np.ndarray, a_prev: np.ndarray, g_t: np.ndarray, g_prev: np.ndarray) -> float:
    """dtSSD of one frame pair: 100 * RMS over all pixels of (a_t - a_{t-1}) - (g_t - g_{t-1})."""
    change = (a_t - a_prev) - (g_t - g_prev)
    return float(DTSSD_FACTOR * np.sqrt(np.mean(np.square(change, dtype=np.float64))))


def estimate_flow(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Backward flow (H x W x 2, float32, x then y) with current(p) ~ previous(p + flow(p)).

    Inputs are images of one size (grey or RGB, any depth); they are converted to 8-bit grey,
    which is what DIS works on.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_grey8(current), _grey8(previous), None)


def warp_previous(previous: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``previous`` sampled at p + flow(p) (bilinear), and the mask of p whose sample lies inside it."""
    height, width = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
    warped = cv2.remap(
        previous.astype(np.float64), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    valid = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    return warped, valid


def messddt_pair(
    a_t: np.ndarray, a_prev: np.ndarray, g_t: np.ndarray, g_prev: np.ndarray, flow: np.ndarray
) -> float:
    """MESSDdt of one frame pair: sum over valid p of |(a_t - g_t)^2 - (a'_{t-1} - g'_{t-1})^2|."""
    a_warped, valid = warp_previous(a_prev, flow)
    g_warped, _ = warp_previous(g_prev, flow)
    change = np.abs(np.square(a_t - g_t) - np.square(a_warped - g_warped))
    return float(change[valid].sum(dtype=np.float64))


def dtssd(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray]) -> float:
    """Mean dtSSD of a clip over the pairs t = 1 .. T-1 (unit-float alpha sequences of equal length)."""
    _check_sequences(pred, gt)
    return float(np.mean([dtssd_pair(pred[t], pred[t - 1], gt[t], gt[t - 1]) for t in range(1, len(gt))]))


def messddt(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray], flows: Sequence[np.ndarray]) -> float:
    """Mean MESSDdt of a clip over t = 1 .. T-1; ``flows[t - 1]`` is the backward flow from t to t-1."""
    _check_sequences(pred, gt)
    if len(flows) != len(gt) - 1:
        raise ValueError(f"{len(gt)} frames need {len(gt) - 1} flows, got {len(flows)}")
    pairs = range(1, len(gt))
    return float(np.mean([messddt_pair(pred[t], pred[t - 1], gt[t], gt[t - 1], flows[t - 1]) for t in pairs]))


def _check_sequences(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray]) -> None:
    if len(pred) != len(gt) or len(gt) < 2:
        raise ValueError(f"need two sequences of equal length >= 2, got {len(pred)} and {len(gt)}")


def _grey8(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:  # 16-bit or float: to [0, 1], then rounded and saturated to 8 bits
        image = cv2.convertScaleAbs(np.clip(unit_alpha(image), 0, 1).astype(np.float32), alpha=255.0)
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image)  # DIS refuses views (a crop, a channel) that are not contiguous
