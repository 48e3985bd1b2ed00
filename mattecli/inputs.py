"""A frame and its trimap turned into exactly the model inputs its contract asks for.

Every input is a float32 C x H x W array at the *padded* size: the frame is extended by
reflection on its bottom and right edges up to the contract's size multiple, so pixels stay 1:1
with the frame (tiling needs that) and outputs are cropped back with a plain slice. The trimap is
padded the same way *before* its encodings are computed, so the Gaussian distance maps describe
the picture the network actually sees.

Only the kinds the contract lists are built: the six Gaussian maps cost two distance transforms
per frame, which a model taking a one-channel trimap should not pay for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from mattecli.models import ModelContract
from mattecli.preprocess import fba_trimap_encoding, two_channel_trimap
from mattecli.tiling import padded_size

# Trimap values as the one-channel encoding gives them: 0 background, 0.5 unknown, 1 foreground.
# A lookup table, because 128 / 255 is not 0.5.
_ONE_CHANNEL = np.full(256, 0.5, dtype=np.float32)
_ONE_CHANNEL[0], _ONE_CHANNEL[255] = 0.0, 1.0

UNKNOWN = 128  # the unknown level of a clean trimap (see mattecli.media.trimaps)


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


def build_inputs(contract: ModelContract, image: np.ndarray, trimap: np.ndarray | None) -> ModelInputs:
    """The contract's inputs for one frame.

    ``image`` is H x W x 3 float32 (values are clipped to [0, 1], the range every network was
    trained on); ``trimap`` is H x W uint8 with exactly 0/128/255 (as
    :meth:`mattecli.media.trimaps.TrimapIndex.load` gives it), or None for models that need none.
    """
    height, width = image.shape[:2]
    if trimap is not None and trimap.shape != (height, width):
        raise ValueError(f"trimap {trimap.shape} does not match the {height}x{width} frame")
    kinds = contract.input_kinds()
    trimap_kinds = kinds - {"image"}
    if trimap is None and trimap_kinds:
        raise ValueError(f"{contract.name} takes {sorted(trimap_kinds)}, which need a trimap")
    padded_h, padded_w = padded_size(height, width, contract.size_multiple)
    rgb = chw(pad_reflect(np.clip(image, 0.0, 1.0, dtype=np.float32), padded_h, padded_w))
    arrays: dict[str, np.ndarray] = {}
    if "image" in kinds:
        arrays["image"] = rgb
    if trimap is None:
        unknown = np.ones((padded_h, padded_w), dtype=bool)
        known_alpha = np.zeros((1, padded_h, padded_w), dtype=np.float32)
    else:
        padded_trimap = pad_reflect(trimap, padded_h, padded_w)
        unknown = padded_trimap == UNKNOWN
        known_alpha = (padded_trimap == 255).astype(np.float32)[None]
        if "trimap_1ch" in kinds:
            arrays["trimap_1ch"] = _ONE_CHANNEL[padded_trimap][None]
        if kinds & {"trimap_2ch", "trimap_gauss6"}:
            two = two_channel_trimap(padded_trimap)
            if "trimap_2ch" in kinds:
                arrays["trimap_2ch"] = chw(two)
            if "trimap_gauss6" in kinds:
                # The encoding is a view of channel-first planes: its transpose is free.
                arrays["trimap_gauss6"] = chw(fba_trimap_encoding(two))
    return ModelInputs(arrays, unknown, rgb, known_alpha, height, width)
