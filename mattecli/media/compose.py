"""Pixel maths for outputs: quantisation, premultiplication, compositing over a colour or an image.

Everything here works on float32 arrays (alpha H x W in [0, 1], colour H x W x 3, in [0, 1] except a
float plate's own out-of-range values, which integer formats clip on quantisation). Compositing is
done on the stored image values (the sRGB-encoded numbers of a PNG or a decoded video), as matting
tools and papers do; a compositor who wants linear-light blending should take the EXR outputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from mattecli.errors import InputError
from mattecli.media.frame import to_float
from mattecli.media.imageio import read_image

Colour = tuple[int, int, int]

_HEX = re.compile(r"#?([0-9a-fA-F]{6})")
_TRIPLE = re.compile(r"\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*")


def quantize(image: np.ndarray, dtype: type[np.unsignedinteger]) -> np.ndarray:
    """Float [0, 1] to uint8/uint16 by round-to-nearest; values outside [0, 1] are clipped.

    Rounding (not truncation) keeps the error at half a code value, so an 8-bit or 16-bit file
    read back and divided by its maximum is the closest representable value to what was written.
    The product is taken in float64, where it is exact for any float32 input; in float32 a value
    near a half-code could round the wrong way.
    """
    scaled = np.clip(image, 0.0, 1.0, dtype=np.float64)
    scaled *= np.iinfo(dtype).max
    return np.rint(scaled, out=scaled).astype(dtype)


def premultiply(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """F * alpha: the associated-alpha colour that EXR and most compositors expect."""
    return colour * alpha[:, :, None]


def composite(colour: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """C = alpha * F + (1 - alpha) * B, with B an H x W x 3 image or a 3-vector colour."""
    a = alpha[:, :, None]
    return (a * colour + (1.0 - a) * background).astype(np.float32)


def parse_colour(text: str) -> Colour | None:
    """``#rrggbb``, ``rrggbb`` or ``r,g,b`` (0..255) to an RGB tuple; None if ``text`` is not a colour."""
    if match := _HEX.fullmatch(text.strip()):
        value = int(match.group(1), 16)
        return (value >> 16) & 255, (value >> 8) & 255, value & 255
    if match := _TRIPLE.fullmatch(text):
        r, g, b = (int(v) for v in match.groups())
        if max(r, g, b) > 255:
            raise InputError(f"colour {text!r} has a component above 255", hint="use values 0..255")
        return r, g, b
    return None


def parse_background(text: str) -> Colour | Path:
    """Read a ``--composite`` value: a colour (see :func:`parse_colour`) or an existing image file."""
    colour = parse_colour(text)
    if colour is not None:
        return colour
    path = Path(text)
    if not path.is_file():
        raise InputError(
            "not a colour and not an image file",
            path=path,
            hint="give a colour as #rrggbb or r,g,b (0..255), or the path of a background image",
        )
    return path


def colour_to_float(colour: Colour) -> np.ndarray:
    return np.asarray(colour, dtype=np.float32) / np.float32(255.0)


def fit_background(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale ``image`` to cover width x height, keeping its aspect ratio, and crop the centre.

    Cover-and-crop never stretches the background and never leaves a border, which is what a
    plate behind a foreground should look like whatever the two sizes are.
    """
    src_h, src_w = image.shape[:2]
    scale = max(width / src_w, height / src_h)
    new_w, new_h = max(width, round(src_w * scale)), max(height, round(src_h * scale))
    if (new_w, new_h) != (src_w, src_h):
        shrinking = new_w * new_h < src_w * src_h
        image = cv2.resize(
            image, (new_w, new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
        )
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.clip(to_float(image[top : top + height, left : left + width]), 0.0, 1.0)


class Background:
    """A composite background (colour or image file) served at whatever size each frame has.

    The image is read once. The last fitted copy is kept: a video needs one size for all its
    frames, while caching every size of a folder of photos could hold gigabytes.
    """

    def __init__(self, value: Colour | Path) -> None:
        self._colour = colour_to_float(value) if isinstance(value, tuple) else None
        self._image = None if isinstance(value, tuple) else to_float(read_image(value))
        self._fitted: tuple[tuple[int, int], np.ndarray] | None = None

    def at(self, width: int, height: int) -> np.ndarray:
        """The background for a width x height frame: an H x W x 3 image or a 3-vector colour."""
        if self._image is None:
            assert self._colour is not None
            return self._colour
        if self._fitted is None or self._fitted[0] != (width, height):
            self._fitted = ((width, height), fit_background(self._image, width, height))
        return self._fitted[1]
