"""Training trimaps and GFM glance targets made from ground-truth alpha, one generator per paper.

Every generator takes alpha (H×W float32 in [0, 1]) and a ``numpy.random.Generator`` and returns a
uint8 trimap with exactly 0 / 128 / 255, built on :func:`mattecli.media.trimaps.trimap_from_alpha`
(dilate ``alpha > 0``, erode ``alpha == 1``, elliptical kernels). Widths are in pixels from the soft
edge: a width w grows the unknown band w pixels outwards (into alpha = 0) or inwards (into alpha = 1).

* FBA (digest §2.3): random erosion and dilation by 3-25 px; the outward and inward widths are
  drawn independently, each uniform in 3..25.
* AlphaGAN (digest §5.4): dilation of the ground truth with a random kernel size of 2-20, read as
  one width uniform in 2..20 for both sides (dilating the transition region reaches equally far
  into both).
* LSA (digest §1.3): dilations of {α > 0} and {α < 1} (that is, growing outwards and inwards); the paper
  gives no widths, so FBA's independent 3..25 is used, which keeps the trimap-based recipes
  comparable.
* DIM style (AdaMatting's recipe): widths drawn independently in 1..20, ``trimap_from_alpha``'s own
  random mode.

GFM's glance targets follow :data:`training.networks.gfm.GLANCE_CLASSES` (see that module for why
the BT focus target is 1 − α). Kernel sizes are the paper's, read as the structuring element's
diameter: TT uses a 25-px ellipse (12 px each side), FT erodes {α = 1} with a 50-px ellipse and BT
dilates {α > 0} with a 50-px ellipse. FT erodes the *opaque* region (not {α > 0}) so that every
pixel GD labels foreground really has α = 1, which is what ``α = GD + FD`` needs.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from mattecli.media.trimaps import trimap_from_alpha

BACKGROUND, UNKNOWN, FOREGROUND = 0, 128, 255

FBA_WIDTHS = (3, 25)
BAND_WIDTHS = (3, 80)
ALPHAGAN_WIDTHS = (2, 20)
LSA_WIDTHS = FBA_WIDTHS
DIM_MAX_WIDTH = 20
GFM_TT_KERNEL = 25
GFM_FT_KERNEL = 50
GFM_BT_KERNEL = 50

RoSTa = Literal["TT", "FT", "BT"]


def banded_trimap(alpha: np.ndarray, outward: int, inward: int) -> np.ndarray:
    """Unknown band reaching ``outward`` px into alpha = 0 and ``inward`` px into alpha = 1."""
    grown = trimap_from_alpha(alpha, outward)
    shrunk = trimap_from_alpha(alpha, inward)
    trimap = np.full(alpha.shape, UNKNOWN, dtype=np.uint8)
    trimap[grown == BACKGROUND] = BACKGROUND
    trimap[shrunk == FOREGROUND] = FOREGROUND
    return trimap


def _width(rng: np.random.Generator, widths: tuple[int, int]) -> int:
    return int(rng.integers(widths[0], widths[1] + 1))


def fba_trimap(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """FBA: independent outward and inward widths, each uniform in 3..25 px."""
    return banded_trimap(alpha, _width(rng, FBA_WIDTHS), _width(rng, FBA_WIDTHS))


def band_trimap(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Band models: outward and inward widths drawn log-uniformly in BAND_WIDTHS px, independently.

    Hand-drawn trimaps such as alphamatting.com's Trimap1 range from a few pixels to wide regions
    over hair and fur; FBA's 3..25 px never shows the network a wide one, and a probe trained on
    narrow bands failed on GT16's wide unknown region. Log-uniform keeps narrow bands as common
    as wide ones.
    """
    low, high = np.log(BAND_WIDTHS[0]), np.log(BAND_WIDTHS[1])
    outward, inward = (float(np.exp(rng.uniform(low, high))) for _ in range(2))
    # Distances instead of dilations by up to 161-px ellipses: the same Euclidean bands, in linear time.
    to_covered = _distance_to(alpha > 0)
    to_clear = _distance_to(alpha < 1)
    trimap = np.full(alpha.shape, UNKNOWN, dtype=np.uint8)
    trimap[to_covered > outward] = BACKGROUND
    trimap[to_clear > inward] = FOREGROUND
    return trimap


def _distance_to(region: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) from each pixel to the nearest pixel of ``region`` (inf if it is empty)."""
    if not region.any():
        return np.full(region.shape, np.inf, dtype=np.float32)
    return cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def alphagan_trimap(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """AlphaGAN: one dilation width uniform in 2..20 px, on both sides of the soft edge."""
    return trimap_from_alpha(alpha, _width(rng, ALPHAGAN_WIDTHS))


def lsa_trimap(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """LSA: dilate {α > 0} and {α < 1} by independent widths (3..25 px, the paper gives none)."""
    return banded_trimap(alpha, _width(rng, LSA_WIDTHS), _width(rng, LSA_WIDTHS))


def dim_trimap(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """DIM style: independent widths uniform in 1..20 px (``trimap_from_alpha``'s random mode)."""
    return trimap_from_alpha(alpha, DIM_MAX_WIDTH, rng=rng)


def trimap_classes(trimap: np.ndarray) -> np.ndarray:
    """0/128/255 trimap → class labels 0 (background), 1 (unknown), 2 (foreground), uint8."""
    return (np.asarray(trimap) // 127).astype(np.uint8)


def alpha_classes(alpha: np.ndarray) -> np.ndarray:
    """Classes of the ground-truth alpha itself: 0 where α = 0, 2 where α = 1, 1 in between (uint8)."""
    return trimap_classes(trimap_from_alpha(alpha, 0))


def _ellipse(diameter: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))


def glance_targets(alpha: np.ndarray, rosta: RoSTa) -> dict[str, np.ndarray]:
    """GFM's targets for one RoSTa: ``glance`` labels, ``transition`` mask and ``focus`` target.

    * ``glance`` (uint8, classes in ``GLANCE_CLASSES[rosta]`` order): TT 0 background /
      1 transition / 2 foreground; FT 0 rest / 1 foreground; BT 0 background / 1 rest.
    * ``transition`` (uint8 0/1): where the Focus decoder is supervised. TT: the unknown band; FT:
      ``1(α > 0)`` minus the glance foreground; BT: the glance "rest" where α < 1.
    * ``focus`` (float32): alpha for TT and FT, the transparency 1 − α for BT (``α = GD − FD``).
    """
    alpha = np.asarray(alpha, dtype=np.float32)
    if rosta == "TT":
        glance = trimap_classes(trimap_from_alpha(alpha, GFM_TT_KERNEL // 2))
        transition = glance == 1
        focus = alpha
    elif rosta == "FT":
        opaque = cv2.erode((alpha >= 1.0).astype(np.uint8), _ellipse(GFM_FT_KERNEL))
        glance = opaque
        transition = (alpha > 0) & (opaque == 0)
        focus = alpha
    elif rosta == "BT":
        covered = cv2.dilate((alpha > 0).astype(np.uint8), _ellipse(GFM_BT_KERNEL))
        glance = covered
        transition = (covered > 0) & (alpha < 1.0)
        focus = 1.0 - alpha
    else:
        raise ValueError(f"unknown RoSTa {rosta!r}; expected TT, FT or BT")
    return {
        "glance": np.ascontiguousarray(glance, dtype=np.uint8),
        "transition": transition.astype(np.uint8),
        "focus": np.ascontiguousarray(focus, dtype=np.float32),
    }
