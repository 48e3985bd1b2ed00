"""Dense optical flow between consecutive frames of a run, computed once per frame and shared.

Keyframe propagation (:mod:`mattecli.keyframes`) and temporal smoothing (:mod:`mattecli.temporal`)
both need to move the previous frame's trimap or matte onto the current frame. They share one
:class:`MotionTracker`, which each advances to the frame it works on (a second call for the same
frame changes nothing); the flow is computed only when one of them asks, and once per frame.

The flow is OpenCV's DIS (Kroeger et al. 2016, "fast" preset) on grey images scaled so the longer
side is at most :data:`FLOW_SIDE` pixels, then upsampled. 320 was measured against 640 on the
640x360 demo clip: 7 ms a frame against 15 ms (both directions, 2 cores), with keyframe SAD and
``--temporal``'s dtSSD no worse. It was not measured on 4K footage, where a flow pixel spans 12
frame pixels; uncertain pixels there still fall back to the network. Both directions
are computed so that each pixel can be checked: following the backward flow into the previous
frame and the forward flow back should land where it started (the forward-backward check of
Sundaram et al. 2010). Pixels that fail it are *uncertain*: occluded, disoccluded, or where the
flow is wrong, which is also where a matte cannot be carried from the previous frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mattecli.media.frame import Frame

FLOW_SIDE = 320  # longer side of the images the flow is computed on (pixels)
# Forward-backward check: a round trip may miss by this many pixels of the flow's own scale, plus
# this fraction of the motion (fast motion is measured less precisely).
ROUND_TRIP_PIXELS = 1.0
ROUND_TRIP_FRACTION = 0.1


@dataclass(frozen=True)
class Motion:
    """Where every pixel of the current frame was in the previous one, and where that is trustworthy."""

    map_x: np.ndarray  # float32 H x W: x of the pixel in the previous frame
    map_y: np.ndarray  # float32 H x W
    uncertain: np.ndarray  # bool H x W: the forward-backward check failed

    def warp(self, previous: np.ndarray, *, nearest: bool = False) -> np.ndarray:
        """``previous`` (an H x W map of the previous frame) moved onto the current frame."""
        interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        return cv2.remap(previous, self.map_x, self.map_y, interpolation, borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class FlowView:
    """A frame as the flow sees it (see :meth:`MotionTracker.view`)."""

    index: int
    image: np.ndarray  # uint8 grey, the longer side at most the tracker's flow_side
    size: tuple[int, int]  # the frame's (height, width)


def grey(frame: Frame) -> np.ndarray:
    """The frame as 8-bit grey, the input of the flow (float and 16-bit frames are scaled and clipped)."""
    image = frame.image
    if image.dtype != np.uint8:
        image = np.clip(frame.to_float() * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


class MotionTracker:
    """The flow from each frame to the previous one, for one input at a time (see the module docstring)."""

    def __init__(self, flow_side: int = FLOW_SIDE) -> None:
        self.flow_side = flow_side
        self._dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._previous: np.ndarray | None = None
        self._current: np.ndarray | None = None
        self._current_index: int | None = None
        self._motion: Motion | None = None
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def reset(self) -> None:
        """Forget the previous frame (a new input, or a cut the caller knows of)."""
        self._previous = self._current = None
        self._current_index = None
        self._motion = None

    def view(self, frame: Frame) -> FlowView:
        """What the flow needs of ``frame``: its grey image at the flow's size, and the frame's size.

        Kept instead of the frame, so a pass that reads frames ahead holds a few kilobytes a frame.
        """
        height, width = frame.height, frame.width
        scale = min(1.0, self.flow_side / max(height, width))
        image = grey(frame)
        if scale < 1:
            size = (max(8, round(width * scale)), max(8, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return FlowView(frame.index, image, (height, width))

    def advance(self, frame: Frame | FlowView) -> None:
        """Make ``frame`` the current frame; calling it again for the same frame changes nothing."""
        if frame.index == self._current_index and self._current is not None:
            return
        self._previous = self._current
        self._current = frame if isinstance(frame, FlowView) else self.view(frame)
        self._current_index = frame.index
        self._motion = None

    def motion(self) -> Motion | None:
        """The current frame's motion from the previous frame; None for the first frame or a new size."""
        if self._motion is not None:
            return self._motion
        previous, current = self._previous, self._current
        if previous is None or current is None or previous.size != current.size:
            return None
        self._motion = self._estimate(previous.image, current.image, current.size)
        return self._motion

    def _estimate(self, small_prev: np.ndarray, small_cur: np.ndarray, size: tuple[int, int]) -> Motion:
        height, width = size
        backward = self._dis.calc(small_cur, small_prev, None)  # current pixel -> previous frame
        forward = self._dis.calc(small_prev, small_cur, None)  # previous pixel -> current frame
        sh, sw = backward.shape[:2]
        xs, ys = self._grid(sh, sw)
        to_x, to_y = xs + backward[..., 0], ys + backward[..., 1]
        back = cv2.remap(forward, to_x, to_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        miss = np.hypot(backward[..., 0] + back[..., 0], backward[..., 1] + back[..., 1])
        speed = np.hypot(backward[..., 0], backward[..., 1]) + np.hypot(back[..., 0], back[..., 1])
        outside = (to_x < 0) | (to_y < 0) | (to_x > sw - 1) | (to_y > sh - 1)
        uncertain = (miss > ROUND_TRIP_PIXELS + ROUND_TRIP_FRACTION * speed) | outside
        if (sh, sw) != (height, width):
            backward = cv2.resize(backward, (width, height), interpolation=cv2.INTER_LINEAR)
            backward[..., 0] *= width / sw
            backward[..., 1] *= height / sh
            uncertain = cv2.resize(
                uncertain.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
            )
        xs, ys = self._grid(height, width)
        return Motion(
            map_x=xs + backward[..., 0], map_y=ys + backward[..., 1], uncertain=uncertain.astype(bool)
        )

    def _grid(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel x and y coordinates (float32 H x W), kept per size: the maps are flow plus these.

        Two sizes are in use per frame size (the flow's and the frame's); a new frame size drops
        the old ones.
        """
        if (height, width) not in self._grids:
            if len(self._grids) >= 2:
                self._grids.clear()
            ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
            self._grids[(height, width)] = (xs, ys)
        return self._grids[(height, width)]
