"""The unit that flows through the pipeline: one decoded picture and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One RGB picture from a source.

    ``image`` keeps the precision it was decoded at (uint8, uint16 for 10/12/16-bit sources, or
    float32 for EXR) so that nothing is lost before the pipeline decides what it needs;
    :meth:`to_float` gives it as float32 (integers scaled to [0, 1], float values as stored);
    networks see that clipped to [0, 1] (:func:`mattecli.inputs.unit_rgb`).
    """

    # Frame number. Video: 0-based position in presentation order. Numbered image sequence
    # (shot.1001.exr, shot.1002.exr, ...): the number in the file name, as VFX tools count.
    # Unnumbered images (a folder of photos, a single still): 0-based position in natural order.
    index: int
    # Stem for output names and trimap matching. Video: the video file's stem. Numbered
    # sequence: the common prefix without its trailing separator ("shot"). Unnumbered images:
    # the image file's stem.
    name: str
    image: np.ndarray  # H x W x 3, RGB order
    source: Path  # the video file, or the image file this frame was read from
    time: float | None = None  # presentation time in seconds, for video

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def to_float(self) -> np.ndarray:
        """RGB as float32 in [0, 1] (EXR values outside that range are kept as they are)."""
        return to_float(self.image)


def to_float(image: np.ndarray) -> np.ndarray:
    """Convert an integer or float image to float32, scaling integers by their type's maximum."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) * np.float32(1.0 / 255.0)
    if image.dtype == np.uint16:
        return image.astype(np.float32) * np.float32(1.0 / 65535.0)
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32, copy=False)
    raise TypeError(f"unsupported image dtype {image.dtype}")
