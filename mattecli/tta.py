"""Test-time augmentation: run a frame through several transformed views and average the outputs.

``flip``: the frame and its horizontal mirror (2 passes). ``full``: the scheme of the LSA paper
(as in FBA and SampleNet), scales {0.8, 1, 1.25} times the 8 dihedral transforms (rotations by
k*90 degrees, each with and without a mirror), 24 passes. Each output is brought back to the frame
(mirror and rotation undone exactly, scale undone by bilinear resizing) before averaging.

It wraps any *frame predictor* (frame in, whole-frame outputs out), not an engine's batch call:
scaled views need their trimap resized (nearest-neighbour, so it stays 0/128/255) and its
encodings recomputed, and rotated views need their own padding to the size multiple; a predictor
that builds its inputs from the image and trimap it is given does both for every view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

import cv2
import numpy as np

TTAMode = Literal["none", "flip", "full"]
TTA_MODES: tuple[TTAMode, ...] = get_args(TTAMode)
FULL_SCALES = (0.8, 1.0, 1.25)

# image H x W x 3 float32, trimap H x W uint8 or None -> output kind -> C x H x W float32
Predictor = Callable[[np.ndarray, np.ndarray | None], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Dihedral:
    """One of the 8 symmetries of the square: ``turns`` quarter turns, then an optional mirror."""

    turns: int = 0
    mirror: bool = False

    def apply(self, array: np.ndarray, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
        """Transform the two spatial ``axes`` (rows, columns) of ``array``; a view, not a copy."""
        out = np.rot90(array, self.turns, axes=axes)
        return np.flip(out, axis=axes[1]) if self.mirror else out

    def invert(self, array: np.ndarray, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
        """Undo :meth:`apply` exactly (pixels are only moved, never resampled)."""
        out = np.flip(array, axis=axes[1]) if self.mirror else array
        return np.rot90(out, -self.turns, axes=axes)


DIHEDRAL = tuple(Dihedral(turns, mirror) for turns in range(4) for mirror in (False, True))


def views(mode: TTAMode) -> list[tuple[float, Dihedral]]:
    """The (scale, transform) pairs a mode runs, identity first."""
    if mode == "none":
        return [(1.0, Dihedral())]
    if mode == "flip":
        return [(1.0, Dihedral()), (1.0, Dihedral(0, True))]
    if mode == "full":
        return [(scale, t) for scale in FULL_SCALES for t in DIHEDRAL]
    raise ValueError(f"unknown TTA mode {mode!r}; choose one of {TTA_MODES}")


def scaled_size(height: int, width: int, scale: float, multiple: int) -> tuple[int, int]:
    """``scale`` times the frame's size, rounded to the size multiple so no padding is needed.

    Scale 1 keeps the frame's own size (the plain pass, padded as usual).
    """
    if scale == 1.0:
        return height, width
    return (
        max(multiple, round(height * scale / multiple) * multiple),
        max(multiple, round(width * scale / multiple) * multiple),
    )


def _resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _resize_chw(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a C x h x w output back to C x H x W."""
    channels = array.shape[0]
    hwc = np.ascontiguousarray(array.transpose(1, 2, 0))
    out = cv2.resize(hwc, (width, height), interpolation=cv2.INTER_LINEAR)
    return out.reshape(height, width, channels).transpose(2, 0, 1)


def _view_inputs(
    image: np.ndarray, trimap: np.ndarray | None, scale: float, transform: Dihedral, multiple: int
) -> tuple[np.ndarray, np.ndarray | None]:
    height, width = image.shape[:2]
    size_h, size_w = scaled_size(height, width, scale, multiple)
    if (size_h, size_w) != (height, width):
        image = _resize_image(image, size_h, size_w)
        if trimap is not None:
            trimap = cv2.resize(trimap, (size_w, size_h), interpolation=cv2.INTER_NEAREST)
    image = np.ascontiguousarray(transform.apply(image))
    if trimap is not None:
        trimap = np.ascontiguousarray(transform.apply(trimap))
    return image, trimap


def _view_outputs(
    outputs: dict[str, np.ndarray], transform: Dihedral, height: int, width: int
) -> Iterator[tuple[str, np.ndarray]]:
    for kind, value in outputs.items():
        value = transform.invert(value, axes=(1, 2))
        if value.shape[1:] != (height, width):
            value = _resize_chw(value, height, width)
        yield kind, value


def predict_tta(
    predict: Predictor, image: np.ndarray, trimap: np.ndarray | None, mode: TTAMode, multiple: int
) -> dict[str, np.ndarray]:
    """Average ``predict`` over the views of ``mode``; ``none`` is a single plain call.

    ``multiple`` is the model's size multiple (scaled views are resized to a multiple of it).
    Outputs are accumulated in place, so memory is one set of outputs whatever the pass count.
    """
    if mode == "none":
        return predict(image, trimap)
    height, width = image.shape[:2]
    passes = views(mode)
    total: dict[str, np.ndarray] = {}
    for scale, transform in passes:
        view_image, view_trimap = _view_inputs(image, trimap, scale, transform, multiple)
        outputs = predict(view_image, view_trimap)
        for kind, value in _view_outputs(outputs, transform, height, width):
            if kind in total:
                total[kind] += value
            else:
                total[kind] = value.astype(np.float32, copy=True)
    inverse = np.float32(1.0 / len(passes))
    for value in total.values():
        value *= inverse
    return total
