"""Trimaps from masks: a binary or soft mask becomes exact 0/128/255 with an unknown band of set width.

Masks are what roto, segmentation networks and keyframe propagation produce; matting networks want
a trimap. The trimap is made in three steps:

1. **Normalise** the mask to [0, 1]: uint8 and uint16 by their type's maximum, floats (EXR) clipped
   to [0, 1], NaN taken as 0.5 (soft). An integer mask whose only values are 0 and 1 is a label
   mask (a boolean array saved as an image) and reads as 0 and 1.0, not as 0 and 1/255.
2. **Classify**: values at or above ``fg_threshold`` are foreground, at or below ``bg_threshold``
   background; values between are *soft*. With ``soft_unknown`` the soft pixels are unknown
   however far they are from an edge (a feathered roto edge or a warped alpha's hair stays
   unknown); without it, the mask is cut at the midpoint of the two thresholds and only the band
   is unknown.
3. **Band**: a foreground (background) pixel stays definite only when its centre is at least
   ``band / 2`` pixels from every pixel that is not foreground (background). The width is the
   **total** width of the band across a straight edge, half on each side: ``--band 12`` gives 6
   unknown pixels inside and 6 outside the edge. The edge sits half a pixel from the centres of
   the pixels on either side of it, so a pixel counts as inside the band when
   ``distance_to_the_other_side - 0.5 < band / 2``; odd widths therefore round down to an even
   number of pixels on a straight edge.

Distances are exact Euclidean distances (OpenCV's distance transform with the precise mask), not
iterated 3x3 erosion, whose square or diamond steps make the band wider along diagonals than
along rows. The transforms run only on the box around the non-background pixels grown by the
half band: outside it every pixel is background and farther than the half band from anything
else, so the result is the same as over the whole frame, and a small subject on a 4K plate costs
in proportion to its box.

A width is given in pixels or as a fraction of the frame's diagonal (:class:`BandWidth`), so a 4K
plate and its half-size proxy get the same band relative to the picture.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from mattecli.errors import InputError

FOREGROUND, UNKNOWN, BACKGROUND = 255, 128, 0

_BAND_TEXT = re.compile(r"\s*(?P<value>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>px|%)?\s*", re.IGNORECASE)
_BAND_HINT = "give pixels (12 or 12px) or a percentage of the frame's diagonal (2%)"


@dataclass(frozen=True)
class BandWidth:
    """The total width of the unknown band: ``value`` pixels, or ``value`` times the frame's diagonal."""

    value: float
    unit: Literal["px", "diagonal"] = "px"

    def __post_init__(self) -> None:
        if not math.isfinite(self.value) or self.value < 0:
            raise InputError(f"the band width must be 0 or more, got {self.value}", hint=_BAND_HINT)
        if self.unit == "diagonal" and self.value > 1:
            raise InputError(
                f"a band of {self.value * 100:g}% of the diagonal is wider than the frame", hint=_BAND_HINT
            )

    @classmethod
    def parse(cls, text: str) -> BandWidth:
        """``"12"`` or ``"12px"``: 12 pixels; ``"0.5%"``: half a percent of the frame's diagonal."""
        match = _BAND_TEXT.fullmatch(text)
        if match is None:
            raise InputError(f"{text!r} is not a band width", hint=_BAND_HINT)
        value = float(match["value"])
        if (match["unit"] or "").lower() == "%":
            return cls(value / 100, "diagonal")
        return cls(value, "px")

    def pixels(self, height: int, width: int) -> float:
        """The width in pixels on a frame of ``height`` x ``width``."""
        if self.unit == "px":
            return self.value
        return self.value * math.hypot(height, width)

    def __str__(self) -> str:
        return f"{self.value:g}px" if self.unit == "px" else f"{self.value * 100:g}%"


# The default band: at least 99% of the demo clip's soft pixels lie inside it when its
# ground truth is cut at 50% (benchmarks/mask_trimap_coverage.py measures it; README: trimaps
# from masks). Given by the diagonal, so a proxy and its full-size plate agree.
DEFAULT_BAND = BandWidth(0.04, "diagonal")


@dataclass(frozen=True)
class MaskTrimapSettings:
    """How a mask becomes a trimap (see the module docstring for what each setting does)."""

    fg_threshold: float = 0.95
    bg_threshold: float = 0.05
    band: BandWidth = field(default_factory=lambda: DEFAULT_BAND)
    soft_unknown: bool = True

    def __post_init__(self) -> None:
        for name, value in (("foreground", self.fg_threshold), ("background", self.bg_threshold)):
            if not 0.0 <= value <= 1.0:
                raise InputError(f"the {name} threshold must be between 0 and 1, got {value:g}")
        if self.bg_threshold >= self.fg_threshold:
            raise InputError(
                f"the background threshold ({self.bg_threshold:g}) must be below the foreground "
                f"threshold ({self.fg_threshold:g})",
                hint="mask values at or below the first are background, at or above the second foreground",
            )

    def describe(self) -> dict[str, object]:
        """The settings as plain values (for ``--json`` and the run manifest)."""
        return {
            "band": str(self.band),
            "fg_threshold": self.fg_threshold,
            "bg_threshold": self.bg_threshold,
            "soft_unknown": self.soft_unknown,
        }


def _levels(mask: np.ndarray, *fractions: float) -> tuple[np.ndarray, tuple[float, ...]]:
    """The mask in a form that compares with thresholds, and the thresholds on its scale.

    Integer masks are compared in their own type (no float copy of a 4K frame), with the
    thresholds scaled by the type's maximum; label masks (only 0 and 1) by 1.
    """
    if mask.dtype == np.bool_:
        return mask.view(np.uint8), fractions
    if mask.dtype in (np.uint8, np.uint16):
        top = float(np.iinfo(mask.dtype).max)
        if mask.max(initial=0) <= 1:
            top = 1.0
        return mask, tuple(f * top for f in fractions)
    if np.issubdtype(mask.dtype, np.floating):
        return np.nan_to_num(mask, nan=0.5, posinf=1.0, neginf=0.0), fractions
    raise TypeError(f"unsupported mask type {mask.dtype}; masks are bool, uint8, uint16 or float")


def _distance_inside(region: np.ndarray) -> np.ndarray:
    """For each pixel of ``region`` (uint8 0/1), the exact distance to the nearest pixel outside it."""
    return cv2.distanceTransform(region, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def trimap_from_mask(mask: np.ndarray, settings: MaskTrimapSettings) -> np.ndarray:
    """The 0/128/255 uint8 trimap of a mask (H x W: bool, uint8, uint16 or float in [0, 1]).

    See the module docstring: soft values are unknown with ``settings.soft_unknown``, and the
    unknown band is ``settings.band`` wide in total, half on each side of every edge.
    """
    if mask.ndim != 2:
        raise ValueError(f"a mask has one channel, got an array of shape {mask.shape}")
    height, width = mask.shape
    half = settings.band.pixels(height, width) / 2
    values, (fg_level, bg_level) = _levels(mask, settings.fg_threshold, settings.bg_threshold)
    if settings.soft_unknown:
        foreground = values >= fg_level
        not_background = values > bg_level
    else:
        foreground = values >= (fg_level + bg_level) / 2
        not_background = foreground
    trimap = np.zeros((height, width), np.uint8)
    # Everything outside this box is background farther than the half band from the rest.
    margin = math.floor(half + 0.5) + 1
    x, y, w, h = cv2.boundingRect(not_background.view(np.uint8))
    if w == 0:
        return trimap
    box = (
        slice(max(0, y - margin), min(height, y + h + margin)),
        slice(max(0, x - margin), min(width, x + w + margin)),
    )
    reach = half + 0.5  # distance (centre to the other side's nearest centre) that leaves the band
    inner = trimap[box]
    inner[:] = UNKNOWN
    inner[_distance_inside((~not_background[box]).view(np.uint8)) >= reach] = BACKGROUND
    inner[_distance_inside(foreground[box].view(np.uint8)) >= reach] = FOREGROUND
    return trimap
