"""Trimaps drawn on a few keyframes, carried to the frames between them by motion (``run --keyframes``).

A frame with a trimap file is a keyframe and uses its file. Every other frame gets the trimap of
its *nearer* keyframe, carried to it frame by frame by the dense optical flow between consecutive
frames (:mod:`mattecli.motion`, nearest neighbour, so no new values appear): forward from the
keyframe before it, or backward from the keyframe after it, which a second pass over the frames
between the midpoint and that keyframe reads ahead. A carried trimap drifts a little at every
step (thin strands swing independently of the flow around them), so halving the longest carry
matters: whole-frame SAD on the demo clip, keyframes every 12 frames, fell from 14.7 (forward
only) to 12.5; marking unknown every pixel where the two directions disagree was worse (19.6),
the network erring more in a wider band than the drift does. After the last keyframe trimaps are
carried forward only. Pixels where the flow fails its forward-backward check (occlusions, fast
or blurred motion) become unknown where they lie in or next to the band, so the network decides
them rather than a wrong flow.

Carrying the *matte* instead (warp the previous frame's alpha and cut a fresh band around it) was
measured too and lost: the network's soft errors spread into the next trimap and the band grew
(demo clip, keyframes every 12 frames: SAD +17 % against +0 % for the trimap; README, "Keyframes").

Because each frame's trimap depends on the frames before it, a resumed run restarts at the last
keyframe before its first missing frame (:meth:`KeyframeTrimaps.restart_index`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from mattecli.errors import InputError
from mattecli.media.frame import Frame
from mattecli.media.trimaps import TrimapIndex
from mattecli.motion import Motion, MotionTracker
from mattecli.summary import Reporter
from mattecli.trimap_sources import FrameReader, warn_fixed_trimaps

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
        self._frames: list[int] = []  # the run's frame numbers of this input
        self._read: FrameReader | None = None
        self._previous: np.ndarray | None = None  # the previous frame's trimap
        self._band = 0.0  # the last keyframe's band width in pixels
        self._ahead: dict[int, np.ndarray] = {}  # trimaps carried back from the next keyframe
        self._warned: set[Path] = set()

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

    def begin_input(self, frames: Sequence[tuple[str, int]] | None, read: FrameReader | None = None) -> None:
        """``read`` gives the frames between a midpoint and the next keyframe; without it, or for an
        input whose frames cannot be counted, trimaps are carried forward only."""
        self.motion.reset()
        self._previous = None
        self._ahead = {}
        self._frames = [index for _, index in frames or ()]
        self._keyframes = [index for name, index in frames or () if self.index.find(name, index) is not None]
        self._read = read

    def restart_index(self, first_incomplete: int) -> int:
        before = [index for index in self._keyframes if index <= first_incomplete]
        return max(before) if before else first_incomplete

    def trimap(self, frame: Frame, *, resize: bool) -> np.ndarray:
        self.motion.advance(frame)
        if self.index.find(frame.name, frame.index) is not None:
            trimap = self.index.load(frame.name, frame.index, (frame.height, frame.width), resize=resize)
            self._band = band_width(trimap)
            self._previous = trimap
            self._ahead = self._carried_back(frame, resize)
            return trimap
        if frame.index in self._ahead:
            return self._ahead.pop(frame.index)
        motion = self.motion.motion()
        if self._previous is None or motion is None:
            raise InputError(
                f"no keyframe trimap before frame {frame.index} of {frame.name} to carry forward",
                path=self.index.spec,
                frame=frame.index,
                hint="keyframes carry only to later frames of the same size; add a trimap for this frame",
            )
        self._previous = _carried(self._previous, motion, self._band)
        return self._previous

    def _carried_back(self, key: Frame, resize: bool) -> dict[int, np.ndarray]:
        """The trimaps of the frames nearer the keyframe after ``key`` than ``key``, carried back from it."""
        later = [index for index in self._keyframes if index > key.index]
        if self._read is None or not later:
            return {}
        nxt = later[0]
        between = [i for i in self._frames if key.index < i < nxt]
        nearer = [i for i in between if i - key.index > nxt - i]
        if not nearer:
            return {}
        tracker = MotionTracker(self.motion.flow_side)
        views, last = [], None
        for frame in self._read(nearer[0], nxt):
            views.append(tracker.view(frame))
            last = frame
        if last is None or last.index != nxt or last.image.shape != key.image.shape:
            return {}  # the next keyframe's frame could not be read here: carry forward instead
        tracker.advance(views[-1])
        trimap = self.index.load(last.name, last.index, (last.height, last.width), resize=resize)
        band = band_width(trimap)
        carried: dict[int, np.ndarray] = {}
        for view in reversed(views[:-1]):
            tracker.advance(view)
            motion = tracker.motion()
            if motion is None:
                break
            trimap = carried[view.index] = _carried(trimap, motion, band)
        return carried

    def warn(self, reporter: Reporter) -> None:
        warn_fixed_trimaps(self.index, self._warned, reporter)


def _carried(previous: np.ndarray, motion: Motion, band: float) -> np.ndarray:
    """``previous`` (a trimap) moved onto the next frame, unknown where the flow fails near the band."""
    trimap = motion.warp(previous, nearest=True)
    unknown = (trimap == 128).astype(np.uint8)
    reach = max(1, round(UNCERTAIN_REACH * band))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    near_band = cv2.dilate(unknown, kernel).astype(bool)
    trimap[motion.uncertain & near_band] = 128
    trimap.setflags(write=False)
    return trimap
