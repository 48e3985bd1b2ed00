"""A frame and its trimap turned into exactly the model inputs its contract asks for.

Every input is a float32 C x H x W array at the *padded* size: the frame is extended by
reflection on its bottom and right edges up to the contract's size multiple, so pixels stay 1:1
with the frame (tiling needs that) and outputs are cropped back with a plain slice. The trimap is
padded the same way *before* its encodings are computed, so the Gaussian distance maps describe
the picture the network actually sees.

:class:`FrameInputs` builds inputs for any rectangle on demand, straight from the decoded frame
(uint8 stays uint8 until a tile needs it), so tiled inference never holds a full-frame float copy
of the image or of the trimap's encodings. :func:`build_inputs` is the whole frame at once.

Only the kinds the contract lists are built: the six Gaussian maps cost two distance transforms
per frame, which a model taking a one-channel trimap should not pay for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mattecli.media.frame import to_float
from mattecli.models import ModelContract
from mattecli.preprocess import (
    FBA_ENCODING_REACH,
    Scratch,
    definite_regions,
    encoding_window,
    gaussian_maps,
    region_distance,
)
from mattecli.tiling import padded_size

# Trimap values as the one-channel encoding gives them: 0 background, 0.5 unknown, 1 foreground.
# A lookup table, because 128 / 255 is not 0.5.
_ONE_CHANNEL = np.full(256, 0.5, dtype=np.float32)
_ONE_CHANNEL[0], _ONE_CHANNEL[255] = 0.0, 1.0

UNKNOWN = 128  # the unknown level of a clean trimap (see mattecli.media.trimaps)

# Channels of each input kind, in the order build_inputs lists them.
INPUT_CHANNELS = {"image": 3, "trimap_1ch": 1, "trimap_2ch": 2, "trimap_gauss6": 6}


@dataclass(frozen=True)
class ModelInputs:
    """One frame's model inputs and what the pipeline needs to use the outputs.

    ``arrays`` are keyed by input kind (``image``, ``trimap_2ch``, ...), each C x Hp x Wp.
    ``unknown`` marks the padded pixels whose alpha the model must compute: the trimap's unknown
    band, or every pixel when there is no trimap. ``image`` (3 x Hp x Wp) and ``known_alpha``
    (1 x Hp x Wp, the trimap's 0/1 where it is definite) give the values of pixels no tile computes.
    """

    arrays: dict[str, np.ndarray]
    unknown: np.ndarray
    image: np.ndarray
    known_alpha: np.ndarray
    height: int
    width: int

    @property
    def padded_shape(self) -> tuple[int, int]:
        return self.unknown.shape[0], self.unknown.shape[1]

    def crop(self, array: np.ndarray) -> np.ndarray:
        """An output (C x Hp x Wp) cut back to the frame's size."""
        return array[..., : self.height, : self.width]

    def fill(self, kinds: Iterable[str]) -> dict[str, np.ndarray]:
        """Values for output pixels that no tile computes, per output kind.

        Alpha takes the trimap's definite value; foreground and background take the image, which
        is what a fully opaque (or fully transparent) pixel's colour is.
        """
        by_kind = {"alpha": self.known_alpha, "foreground": self.image, "background": self.image}
        return {kind: by_kind[kind] for kind in kinds}


def pad_reflect(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Extend an H x W or H x W x C array to ``height`` x ``width`` by mirroring its bottom and right.

    Mirroring without repeating the edge pixel (OpenCV's BORDER_REFLECT_101) continues textures
    and edges smoothly, where zeros would draw a false border the network reacts to.
    """
    bottom, right = height - array.shape[0], width - array.shape[1]
    if bottom < 0 or right < 0:
        raise ValueError(f"cannot pad {array.shape[:2]} down to {(height, width)}")
    if bottom == 0 and right == 0:
        return array
    padded = cv2.copyMakeBorder(np.ascontiguousarray(array), 0, bottom, 0, right, cv2.BORDER_REFLECT_101)
    return padded.reshape(height, width, *array.shape[2:])


def chw(array: np.ndarray) -> np.ndarray:
    """H x W x C (or H x W) to a contiguous float32 C x H x W array."""
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)


def unit_rgb(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """RGB (…×3) as float32 in [0, 1]: integers scaled by their type's maximum, then clipped.

    The range every network was trained on; EXR values outside it are clipped. ``out`` may take
    the result in another layout, e.g. a channel-first tile buffer's ``transpose(1, 2, 0)``.
    """
    return np.clip(to_float(image), 0.0, 1.0, out=out, dtype=np.float32)


class FrameInputs:
    """One frame and its trimap, ready to give the contract's inputs for any rectangle.

    ``image`` is H x W x 3 as decoded (uint8, uint16 or float; it is scaled to [0, 1] and
    clipped where an input is built); ``trimap`` is H x W uint8 with exactly 0/128/255 (as
    :meth:`mattecli.media.trimaps.TrimapIndex.load` gives it), or None for models that need none.
    Both are padded to the size multiple here, which copies nothing when the frame already fits.

    ``scratch`` holds the distance maps between frames (see :class:`mattecli.preprocess.Scratch`),
    so only one FrameInputs per scratch may be in use at a time: the next one's distances take
    the same memory.
    """

    def __init__(
        self,
        contract: ModelContract,
        image: np.ndarray,
        trimap: np.ndarray | None,
        scratch: Scratch | None = None,
    ) -> None:
        height, width = image.shape[:2]
        if trimap is not None and trimap.shape != (height, width):
            raise ValueError(f"trimap {trimap.shape} does not match the {height}x{width} frame")
        self.kinds = [kind for kind in INPUT_CHANNELS if kind in contract.input_kinds()]
        trimap_kinds = set(self.kinds) - {"image"}
        if trimap is None and trimap_kinds:
            raise ValueError(f"{contract.name} takes {sorted(trimap_kinds)}, which need a trimap")
        self.height, self.width = height, width
        self.padded_shape = padded_size(height, width, contract.size_multiple)
        self.image = pad_reflect(image, *self.padded_shape)
        self.trimap = None if trimap is None else pad_reflect(trimap, *self.padded_shape)
        self._scratch = scratch if scratch is not None else Scratch()
        self._window = (0, 0, *self.padded_shape)
        self._distances: tuple[np.ndarray | None, np.ndarray | None] | None = None

    @property
    def unknown(self) -> np.ndarray:
        """Padded H x W bool: pixels whose alpha the model computes (all of them without a trimap)."""
        if self.trimap is None:
            return np.ones(self.padded_shape, dtype=bool)
        return self.trimap == UNKNOWN

    def known_alpha(self) -> np.ndarray:
        """Padded H x W float32: the trimap's definite alpha (1 on foreground), 0 elsewhere."""
        if self.trimap is None:
            return np.zeros(self.padded_shape, dtype=np.float32)
        return (self.trimap == 255).astype(np.float32)

    def read_only(self, rects: Sequence[tuple[int, int, int, int]], reach: int = FBA_ENCODING_REACH) -> None:
        """Promise that inputs will only be asked for inside ``rects`` (y, x, h, w).

        The trimap's distances are then computed over a window around them alone, which is
        exact up to :data:`mattecli.preprocess.FBA_ENCODING_TOLERANCE` (the proof is at
        :func:`mattecli.preprocess.encoding_window`; ``reach`` is its D).
        """
        if rects:
            self._window = encoding_window(list(rects), *self.padded_shape, reach=reach)
            self._distances = None

    def _region_distances(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self._distances is None:
            assert self.trimap is not None
            y0, x0, y1, x1 = self._window
            regions = definite_regions(self.trimap[y0:y1, x0:x1])
            self._distances = (
                region_distance(regions[0], self._scratch, "distance-bg"),
                region_distance(regions[1], self._scratch, "distance-fg"),
            )
        return self._distances

    def write(self, kind: str, y: int, x: int, out: np.ndarray) -> np.ndarray:
        """Write input ``kind`` for the rectangle at (y, x) of ``out``'s size into ``out`` (C x h x w)."""
        h, w = out.shape[1:]
        if kind == "image":
            unit_rgb(self.image[y : y + h, x : x + w], out=out.transpose(1, 2, 0))
            return out
        assert self.trimap is not None
        trimap = self.trimap[y : y + h, x : x + w]
        if kind == "trimap_1ch":
            np.take(_ONE_CHANNEL, trimap, out=out[0], mode="clip")  # uint8 indices are all valid
        elif kind == "trimap_2ch":
            for plane, region in zip(out, definite_regions(trimap), strict=True):
                np.copyto(plane, region)
        elif kind == "trimap_gauss6":
            wy0, wx0, wy1, wx1 = self._window
            if not (wy0 <= y and wx0 <= x and y + h <= wy1 and x + w <= wx1):
                raise ValueError(f"({y}, {x}, {h}, {w}) lies outside the encoding window {self._window}")
            for k, dist in enumerate(self._region_distances()):
                view = None if dist is None else dist[y - wy0 : y - wy0 + h, x - wx0 : x - wx0 + w]
                gaussian_maps(view, out[3 * k : 3 * k + 3])
        else:
            raise ValueError(f"unknown input kind {kind!r}")
        return out

    def whole(self, kind: str) -> np.ndarray:
        """Input ``kind`` for the whole padded frame: a new C x Hp x Wp float32 array."""
        out = np.empty((INPUT_CHANNELS[kind], *self.padded_shape), dtype=np.float32)
        return self.write(kind, 0, 0, out)


def build_inputs(contract: ModelContract, image: np.ndarray, trimap: np.ndarray | None) -> ModelInputs:
    """The contract's inputs for one whole frame.

    ``image`` is H x W x 3 float32 (values are clipped to [0, 1], the range every network was
    trained on); ``trimap`` is H x W uint8 with exactly 0/128/255 (as
    :meth:`mattecli.media.trimaps.TrimapIndex.load` gives it), or None for models that need none.
    """
    frame = FrameInputs(contract, np.asarray(image, dtype=np.float32), trimap)
    arrays = {kind: frame.whole(kind) for kind in frame.kinds}
    rgb = arrays["image"] if "image" in arrays else frame.whole("image")
    return ModelInputs(arrays, frame.unknown, rgb, frame.known_alpha()[None], frame.height, frame.width)
