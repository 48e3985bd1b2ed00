"""Matting error metrics that reproduce the official Deep Image Matting (DIM) MATLAB evaluation.

Published matting numbers (Composition-1k, alphamatting.com, the FBA/GFM/AlphaGAN tables) come from
Ning Xu's MATLAB files: ``compute_sad_loss``, ``compute_mse_loss``, ``compute_gradient_loss`` and
``compute_connectivity_error``. A Python port is only comparable with those tables if it keeps their
conventions, several of which are easy to get wrong:

* the region is ``trimap == 128`` exactly (other greys count as known);
* SAD is divided by 1000 *inside* the function, Grad and Conn are not (papers divide them by 1000);
* Grad min-max normalises each matte (``mat2gray``), not ``/255``;
* Conn works in single precision: with 8-bit mattes, values such as 51/255 or 153/255 land exactly on
  the 0.1-spaced thresholds, and whether they pass ``>=`` depends on float32 vs float64;
* the largest 4-connected component must be taken among foreground components only (a widely copied
  port lets the background label win and gives 58.888 instead of 13.692 on the fixture in the tests).

Inputs are alpha mattes as uint8 (0..255), uint16 (0..65535) or float ([0, 1]) arrays. ``precision``
says how they are compared:

* ``"dim"`` (default): both mattes are quantised to 8 bits first, as if saved to the 8-bit PNGs the
  official code reads (uint16 ``round(x / 257)``, float ``round(clip(x, 0, 1) * 255)``, halves up, as
  MATLAB's ``uint8()`` does), and then every step runs in the official code's precision and summation
  order. Use this for numbers that go next to published ones.
* ``"float"``: the mattes keep their full precision (uint8 / 255, uint16 / 65535, floats clipped to
  [0, 1]) and everything runs in float64. Use this to compare 16-bit or EXR predictions among
  themselves; the numbers are close to, but not comparable with, the DIM ones.

Every function returns the *raw* value (what the official code returns); :data:`METRICS` gives the
factor that turns it into the scaling papers print.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Literal

import cv2
import numpy as np

Region = Literal["unknown", "all"]
Precision = Literal["dim", "float"]

UNKNOWN = 128  # DIM's unknown value; only this exact grey is evaluated
GRAD_SIGMA = 1.4
CONN_STEP = 0.1
CONN_MIN_DISTANCE = 0.15  # phi ignores distances below this


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """How one metric is reported: ``paper = raw * factor``."""

    key: str
    label: str  # column header, in the paper scaling
    factor: float
    raw: str  # what the raw value is, for --json readers


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("sad", "SAD (Σ/10³)", 1.0, "sum |pred-gt| over the region / 1000 (the official code divides)"),
    MetricSpec("mse", "MSE ×10³", 1e3, "mean (pred-gt)^2 over the region"),
    MetricSpec("grad", "Grad (Σ/10³)", 1e-3, "sum of squared Gaussian-gradient magnitude differences"),
    MetricSpec("conn", "Conn (Σ/10³)", 1e-3, "sum |phi(pred)-phi(gt)| over the region"),
    MetricSpec("mad", "MAD", 1.0, "mean |pred-gt| over the region"),
    MetricSpec("fg_sad", "αF SAD (Σ/10³)", 1.0, "sum over region and RGB of |a'F' - aF| / 1000"),
    MetricSpec("fg_mse", "αF MSE ×10³", 1e3, "mean over the region of sum over RGB of (a'F' - aF)^2"),
)
METRIC_SPECS = {spec.key: spec for spec in METRICS}


@dataclass(frozen=True, slots=True)
class MatteScores:
    """Raw errors of one matte (``fg_*`` only when foregrounds were given)."""

    sad: float
    mse: float
    grad: float
    conn: float
    mad: float
    fg_sad: float | None = None
    fg_mse: float | None = None

    def raw(self) -> dict[str, float]:
        """The values as the official code returns them, keyed like :data:`METRICS`."""
        values = {spec.key: getattr(self, spec.key) for spec in METRICS}
        return {key: value for key, value in values.items() if value is not None}

    def paper(self) -> dict[str, float]:
        """The values in the scaling of the DIM/FBA tables (see :data:`METRICS`)."""
        return to_paper(self.raw())


def to_paper(raw: dict[str, float]) -> dict[str, float]:
    """Scale raw values (keyed like :data:`METRICS`) to what papers print."""
    return {key: value * METRIC_SPECS[key].factor for key, value in raw.items()}


def mean_scores(scores: list[MatteScores]) -> dict[str, float]:
    """Mean raw value of each metric over images (metrics present in every image only)."""
    if not scores:
        return {}
    keys = [key for key in scores[0].raw() if all(key in s.raw() for s in scores)]
    return {key: math.fsum(s.raw()[key] for s in scores) / len(scores) for key in keys}


# --- inputs ---------------------------------------------------------------------------------------


def quantize_8bit(matte: np.ndarray) -> np.ndarray:
    """Map a uint8 / uint16 / float [0, 1] matte to the 8-bit levels the official code reads.

    Rounding is half-up, like MATLAB's ``uint8()``; floats are clipped to [0, 1] first.
    """
    if matte.dtype == np.uint8:
        return matte
    if matte.dtype == np.uint16:
        return ((matte.astype(np.uint32) + 128) // 257).astype(np.uint8)  # 65535 / 255 == 257
    if np.issubdtype(matte.dtype, np.floating):
        _require_finite(matte)
        return np.floor(np.clip(matte.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise ValueError(f"unsupported matte dtype {matte.dtype}; expected uint8, uint16 or float")


def _as_unit_float(matte: np.ndarray) -> np.ndarray:
    """Full-precision float64 matte in [0, 1]."""
    if matte.dtype == np.uint8:
        return matte.astype(np.float64) / 255.0
    if matte.dtype == np.uint16:
        return matte.astype(np.float64) / 65535.0
    if np.issubdtype(matte.dtype, np.floating):
        _require_finite(matte)
        return np.clip(matte.astype(np.float64), 0.0, 1.0)
    raise ValueError(f"unsupported matte dtype {matte.dtype}; expected uint8, uint16 or float")


def _require_finite(matte: np.ndarray) -> None:
    if not np.isfinite(matte).all():
        raise ValueError("matte contains NaN or infinite values")


@dataclass(frozen=True, slots=True)
class _Levels:
    """Both mattes in the working precision of one mode.

    ``dim``: float32 arrays of 8-bit levels with ``scale`` 255 (MATLAB's ``single(x)`` then ``/255``).
    ``float``: float64 arrays in [0, 1] with ``scale`` 1.
    """

    pred: np.ndarray
    gt: np.ndarray
    scale: np.floating

    @property
    def dtype(self) -> type[np.floating]:
        return self.pred.dtype.type


def _levels(pred: np.ndarray, gt: np.ndarray, precision: Precision) -> _Levels:
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must be 2-D arrays of the same shape")
    if precision == "dim":
        return _Levels(
            quantize_8bit(pred).astype(np.float32), quantize_8bit(gt).astype(np.float32), np.float32(255)
        )
    if precision == "float":
        return _Levels(_as_unit_float(pred), _as_unit_float(gt), np.float64(1))
    raise ValueError(f"precision must be 'dim' or 'float', not {precision!r}")


def region_mask(trimap: np.ndarray | None, region: Region, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean mask of the evaluated pixels: ``trimap == 128`` for "unknown", everything for "all"."""
    if region == "all":
        return np.ones(shape[:2], dtype=bool)
    if region != "unknown":
        raise ValueError(f"region must be 'unknown' or 'all', not {region!r}")
    if trimap is None:
        raise ValueError("region 'unknown' needs a trimap")
    if trimap.dtype != np.uint8 or trimap.shape != tuple(shape[:2]):
        raise ValueError(
            f"trimap must be uint8 of shape {tuple(shape[:2])}, not {trimap.dtype} {trimap.shape}"
        )
    return trimap == UNKNOWN


# --- MATLAB-like accumulation ---------------------------------------------------------------------


def _matlab_sum(values: np.ndarray, mask: np.ndarray) -> np.floating:
    """``sum(sum(values .* mask))`` summed in MATLAB/Octave order and in ``values``' precision.

    Octave adds each column top to bottom, then the column sums left to right, in the array's own
    type (float32 for ``single``). A NumPy axis-0 reduction of a C-ordered array adds whole rows one
    after another, which is the same sequential order per column; ``cumsum`` keeps the last step
    sequential instead of NumPy's pairwise summation.
    """
    masked = np.ascontiguousarray(values * mask.astype(values.dtype))
    columns = masked.sum(axis=0, dtype=values.dtype)
    if columns.size == 0:
        return values.dtype.type(0)
    return np.cumsum(columns, dtype=values.dtype)[-1]


def _count(mask: np.ndarray) -> int:
    return int(np.count_nonzero(mask))


# --- the four DIM metrics, MAD ---------------------------------------------------------------------


def _sad(lv: _Levels, mask: np.ndarray) -> float:
    error = np.abs(lv.pred - lv.gt) / lv.scale
    return float(_matlab_sum(error, mask) / lv.dtype(1000))


def _mse(lv: _Levels, mask: np.ndarray) -> float:
    count = _count(mask)
    if count == 0:
        return math.nan  # the official code divides 0 by 0 too
    error = (lv.pred - lv.gt) / lv.scale
    return float(_matlab_sum(error * error, mask) / lv.dtype(count))


def _mad(lv: _Levels, mask: np.ndarray) -> float:
    count = _count(mask)
    if count == 0:
        return math.nan
    error = np.abs(lv.pred - lv.gt) / lv.scale
    return float(_matlab_sum(error, mask) / lv.dtype(count))


def _mat2gray(matte: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] in float64, as MATLAB's ``mat2gray``.

    A constant matte has no gradient whatever its normalisation, so it maps to zeros.
    """
    matte = matte.astype(np.float64)
    lo, hi = float(matte.min()), float(matte.max())
    if hi <= lo:
        return np.zeros_like(matte)
    return (matte - lo) / (hi - lo)


@cache
def _gauss_gradient_factors(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The 1-D factors of ``gaussgradient.m``'s kernel: Gaussian (along y) and its derivative (along x).

    The official kernel is ``hx(i, j) = gauss(i) * dgauss(j)`` over a half-size of
    ``ceil(sigma * sqrt(-2 ln(sqrt(2 pi) sigma 1e-2)))`` (4 for sigma 1.4, so 9 x 9), divided by its
    L2 norm. That norm is the product of the factors' norms, so normalising each factor gives the
    same kernel while letting OpenCV filter separably (about 4x faster on a 9 x 9 kernel).
    Read-only because they are cached.
    """
    half = math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * 1e-2)))
    u = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-(u**2) / (2.0 * sigma**2)) / (sigma * math.sqrt(2.0 * math.pi))
    dgauss = -u * gauss / sigma**2
    gauss /= math.sqrt(float(np.sum(gauss * gauss)))
    dgauss /= math.sqrt(float(np.sum(dgauss * dgauss)))
    gauss.setflags(write=False)
    dgauss.setflags(write=False)
    return gauss, dgauss


def _gradient_magnitude(matte: np.ndarray, sigma: float) -> np.ndarray:
    """``sqrt(gx^2 + gy^2)`` of ``imfilter(mat2gray(matte), h, 'replicate', 'conv')``.

    OpenCV correlates, so the factors are reversed to convolve (only the sign would change, but
    the kernel is kept exactly as the official one).
    """
    gauss, dgauss = (np.ascontiguousarray(f[::-1]) for f in _gauss_gradient_factors(sigma))
    image = _mat2gray(matte)
    gx = cv2.sepFilter2D(image, cv2.CV_64F, dgauss, gauss, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(image, cv2.CV_64F, gauss, dgauss, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx * gx + gy * gy)


def _grad(lv: _Levels, mask: np.ndarray, sigma: float = GRAD_SIGMA) -> float:
    # The official code filters in double and casts the magnitudes to single before differencing.
    amp_pred = _gradient_magnitude(lv.pred, sigma).astype(lv.dtype)
    amp_gt = _gradient_magnitude(lv.gt, sigma).astype(lv.dtype)
    diff = amp_pred - amp_gt
    return float(_matlab_sum(diff * diff, mask))


def _largest_component(binary: np.ndarray) -> np.ndarray:
    """Mask of the largest 4-connected component of ``binary`` (empty when it has none).

    Label 0 is the background and never competes. On equal sizes MATLAB's ``max`` keeps the first
    component in ``bwconncomp`` order, i.e. the one whose first pixel comes first in column-major
    order; OpenCV numbers components in row-major order, so ties are resolved explicitly.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        binary.view(np.uint8), connectivity=4, ltype=cv2.CV_32S
    )
    if count <= 1:
        return np.zeros(binary.shape, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    tied = np.flatnonzero(areas == areas.max()) + 1
    best = int(tied[0])
    if tied.size > 1:
        height = binary.shape[0]

        def column_major_first(label: int) -> int:
            left = int(stats[label, cv2.CC_STAT_LEFT])
            return left * height + int(np.argmax(labels[:, left] == label))

        best = min((int(label) for label in tied), key=column_major_first)
    return labels == best


def _conn(lv: _Levels, mask: np.ndarray, step: float = CONN_STEP) -> float:
    dtype = lv.dtype
    pred = lv.pred / lv.scale  # single(x)/255 in "dim" mode
    gt = lv.gt / lv.scale
    # Octave's range 0:step:1 holds base + i*step in double; comparing with a single array rounds
    # each threshold to single as well.
    thresholds = np.arange(int(math.floor(1.0 / step + 1e-9)) + 1, dtype=np.float64) * step
    level = np.full(pred.shape, -1.0, dtype=np.float64)
    for i in range(1, thresholds.size):
        t = dtype(thresholds[i])
        omega = _largest_component((pred >= t) & (gt >= t))
        level[(level == -1.0) & ~omega] = thresholds[i - 1]
    level[level == -1.0] = 1.0
    level = level.astype(dtype)  # single - double is computed in single
    min_distance = dtype(CONN_MIN_DISTANCE)
    d_pred = pred - level
    d_gt = gt - level
    phi_pred = dtype(1) - d_pred * (d_pred >= min_distance).astype(dtype)
    phi_gt = dtype(1) - d_gt * (d_gt >= min_distance).astype(dtype)
    return float(_matlab_sum(np.abs(phi_pred - phi_gt), mask))


# --- public per-metric functions ------------------------------------------------------------------


def sad(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    *,
    region: Region = "unknown",
    precision: Precision = "dim",
) -> float:
    """Sum of absolute differences over the region, divided by 1000 (as the official code returns it)."""
    return _sad(_levels(pred, gt, precision), region_mask(trimap, region, gt.shape))


def mse(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    *,
    region: Region = "unknown",
    precision: Precision = "dim",
) -> float:
    """Mean squared error over the region (NaN for an empty region); FBA prints it ×1000."""
    return _mse(_levels(pred, gt, precision), region_mask(trimap, region, gt.shape))


def mad(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    *,
    region: Region = "unknown",
    precision: Precision = "dim",
) -> float:
    """Mean absolute difference over the region (GFM's MAD, raw; NaN for an empty region)."""
    return _mad(_levels(pred, gt, precision), region_mask(trimap, region, gt.shape))


def gradient_error(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    *,
    region: Region = "unknown",
    precision: Precision = "dim",
    sigma: float = GRAD_SIGMA,
) -> float:
    """Sum over the region of squared differences of Gaussian-gradient magnitudes (raw; papers ÷1000)."""
    return _grad(_levels(pred, gt, precision), region_mask(trimap, region, gt.shape), sigma)


def connectivity_error(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    *,
    region: Region = "unknown",
    precision: Precision = "dim",
    step: float = CONN_STEP,
) -> float:
    """Connectivity error of Rhemann et al. as the DIM code computes it (raw; papers ÷1000).

    For each threshold t = step, 2*step, ..., 1 the source region is the largest 4-connected
    component of ``pred >= t & gt >= t``; a pixel's level ``l`` is the last threshold before it
    left that region (1 if it never did), and ``phi = 1 - d * (d >= 0.15)`` with ``d = alpha - l``.
    """
    return _conn(_levels(pred, gt, precision), region_mask(trimap, region, gt.shape), step)


# --- foreground (alpha * F) errors ----------------------------------------------------------------


def _premultiplied(alpha: np.ndarray, fg: np.ndarray, precision: Precision) -> np.ndarray:
    if fg.ndim != 3 or fg.shape[2] != 3 or fg.shape[:2] != alpha.shape:
        raise ValueError(f"foreground {fg.shape} must be H x W x 3 matching the matte {alpha.shape}")
    if precision == "dim":
        a = quantize_8bit(alpha).astype(np.float64) / 255.0
        f = quantize_8bit(fg).astype(np.float64) / 255.0
    else:
        a, f = _as_unit_float(alpha), _as_unit_float(fg)
    return a[:, :, None] * f


def foreground_errors(
    pred_alpha: np.ndarray,
    pred_fg: np.ndarray,
    gt_alpha: np.ndarray,
    gt_fg: np.ndarray,
    trimap: np.ndarray | None = None,
    *,
    region: Region = "unknown",
    precision: Precision = "dim",
) -> tuple[float, float]:
    """SAD and MSE of the premultiplied foreground α̂·F̂ against α·F (FBA Table 3), both raw.

    No official code exists for these. Following the alpha metrics, SAD sums ``|α̂F̂ − αF|`` over
    the region *and* the three colour channels and divides by 1000; MSE is the mean over the region's
    pixels of the squared RGB error summed over channels (divide by 3 for a per-channel mean). Colours
    are in [0, 1]; "dim" quantises mattes and colours to 8 bits first. Accumulated in float64.
    """
    mask = region_mask(trimap, region, gt_alpha.shape)
    diff = _premultiplied(pred_alpha, pred_fg, precision) - _premultiplied(gt_alpha, gt_fg, precision)
    inside = diff[mask]
    count = inside.shape[0]
    fg_sad = float(np.abs(inside).sum()) / 1000.0
    fg_mse = float(np.square(inside).sum()) / count if count else math.nan
    return fg_sad, fg_mse


# --- everything at once ---------------------------------------------------------------------------


def evaluate_matte(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    *,
    region: Region = "unknown",
    precision: Precision = "dim",
    pred_fg: np.ndarray | None = None,
    gt_fg: np.ndarray | None = None,
) -> MatteScores:
    """All metrics of one matte, converting the inputs once (foreground errors when both F are given)."""
    lv = _levels(pred, gt, precision)
    mask = region_mask(trimap, region, gt.shape)
    fg_sad = fg_mse = None
    if pred_fg is not None and gt_fg is not None:
        fg_sad, fg_mse = foreground_errors(
            pred, pred_fg, gt, gt_fg, trimap, region=region, precision=precision
        )
    return MatteScores(
        sad=_sad(lv, mask),
        mse=_mse(lv, mask),
        grad=_grad(lv, mask),
        conn=_conn(lv, mask),
        mad=_mad(lv, mask),
        fg_sad=fg_sad,
        fg_mse=fg_mse,
    )
