"""Trimaps drawn on a few keyframes, carried to the frames between them by motion (``run --keyframes``).

A frame with a trimap file is a keyframe and uses its file. Every other frame gets the trimap of
the frame before it, moved by the dense optical flow between the two frames
(:mod:`mattecli.motion`, nearest neighbour, so no new values appear). Pixels where the flow fails
its forward-backward check (occlusions, fast or blurred motion) become unknown where they lie in
or next to the band, so the network decides them rather than a wrong flow.

Carrying the *matte* instead (warp the previous frame's alpha and cut a fresh band around it) was
measured too and lost: the network's soft errors spread into the next trimap and the band grew
(demo clip, keyframes every 12 frames: SAD +17 % against +0 % for the trimap; README, "Keyframes").

Because each frame's trimap depends on the frames before it, a resumed run restarts at the last
keyframe before its first missing frame (:meth:`KeyframeTrimaps.restart_index`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from mattecli.errors import InputError
from mattecli.media.frame import Frame
from mattecli.media.trimaps import TrimapIndex
from mattecli.motion import MotionTracker
from mattecli.summary import Reporter
from mattecli.trimap_sources import warn_fixed_trimaps

# Uncertain flow turns pixels unknown this far (in band widths) from the band; farther away a
# wrong flow moves only pixels of the same definite value. Measured on the demo clip (0 to 4
# band widths): wider reach adds unknown pixels the network gets wrong more often than the flow.
UNCERTAIN_REACH = 0.25
MISSING_SHOWN = 5


def band_width(trimap: np.ndarray) -> float:
    """The width in pixels of a trimap's unknown band, measured on the trimap itself.

    For a strip of width W, the mean distance of its pixels to the strip's edge is W / 4, so four
    times the mean inner distance recovers W whatever the shape of the band.
    """
    unknown = (trimap == 128).astype(np.uint8)
    if not unknown.any():
        return 0.0
    inside = cv2.distanceTransform(unknown, cv2.DIST_L2, 3)
    return float(4.0 * inside[unknown.astype(bool)].mean())


class KeyframeTrimaps:
    """The trimaps of a run from keyframe trimap files and motion (see the module docstring)."""

    def __init__(self, index: TrimapIndex, motion: MotionTracker | None = None) -> None:
        self.index = index
        self.motion = motion or MotionTracker()
        self._keyframes: list[int] = []
        self._previous: np.ndarray | None = None  # the previous frame's trimap
        self._band = 0.0  # the last keyframe's band width in pixels
        self._warned: set = set()

    def check(self, frames: Iterable[tuple[str, int]]) -> None:
        """Every input's first frame in the range must be a keyframe: nothing comes before it."""
        firsts: dict[str, int] = {}
        for name, index in frames:
            firsts[name] = min(index, firsts.get(name, index))
        missing = [(name, index) for name, index in firsts.items() if self.index.find(name, index) is None]
        if missing:
            shown = ", ".join(f"{name} (frame {index})" for name, index in missing[:MISSING_SHOWN])
            raise InputError(
                f"--keyframes needs a trimap for the first frame of each input; none for {shown}",
                path=self.index.spec,
                hint="draw a trimap for the first frame, or start the range (--start) at a keyframe",
            )

    def begin_input(self, frames: Sequence[tuple[str, int]] | None) -> None:
        self.motion.reset()
        self._previous = None
        self._keyframes = [index for name, index in frames or () if self.index.find(name, index) is not None]

    def restart_index(self, first_incomplete: int) -> int:
        before = [index for index in self._keyframes if index <= first_incomplete]
        return max(before) if before else first_incomplete

    def trimap(self, frame: Frame, *, resize: bool) -> np.ndarray:
        self.motion.advance(frame)
        if self.index.find(frame.name, frame.index) is not None:
            trimap = self.index.load(frame.name, frame.index, (frame.height, frame.width), resize=resize)
            self._band = band_width(trimap)
            self._previous = trimap
            return trimap
        motion = self.motion.motion()
        if self._previous is None or motion is None:
            raise InputError(
                f"no keyframe trimap before frame {frame.index} of {frame.name} to carry forward",
                path=self.index.spec,
                frame=frame.index,
                hint="keyframes carry only to later frames of the same size; add a trimap for this frame",
            )
        trimap = motion.warp(self._previous, nearest=True)
        unknown = (trimap == 128).astype(np.uint8)
        reach = max(1, round(UNCERTAIN_REACH * self._band))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
        near_band = cv2.dilate(unknown, kernel).astype(bool)
        trimap = trimap.copy()
        trimap[motion.uncertain & near_band] = 128
        self._previous = trimap
        trimap.setflags(write=False)
        return trimap

    def observe(self, frame: Frame, alpha: np.ndarray) -> None:
        """The trimap, not the matte, is carried (see the module docstring)."""

    def warn(self, reporter: Reporter) -> None:
        warn_fixed_trimaps(self.index, self._warned, reporter)
