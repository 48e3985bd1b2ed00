"""The fusion stage of the frame path: the network's values at some pixels -> the frame's alpha and colour.

At the pixels whose output the network decides, FBA fusion (when on) and then the trimap's rules
(:func:`mattecli.fusion.impose_trimap`, :func:`mattecli.fusion.impose_known_colours`); at every
other pixel, the trimap's alpha and the image's colour, which is exactly what fusion followed by
those rules gives there. So the predictor need only compute :meth:`FrameFusion.decided_pixels`,
and a frame costs in proportion to its unknown band.

Colour range: the network and fusion work on the image clipped to [0, 1] (the range every network
was trained on), but where the foreground *is* the image (the definite foreground, pixels whose
fused alpha is 1, pixels no network output reaches) it is the image as decoded, so a float EXR
plate's values above 1 and below 0 reach an EXR output unchanged. Integer images are in [0, 1]
already, so for them the two are the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mattecli.fusion import fba_fusion, impose_known_colours, impose_trimap
from mattecli.inputs import unit_rgb
from mattecli.media.frame import to_float
from mattecli.preprocess import definite_regions
from mattecli.tiling import PixelSet


class FrameFusion:
    """Fusion and the trimap's known regions for one run's options.

    ``fusion``: FBA's closed-form fusion of alpha, foreground and background (the model must
    give all three). ``returns_foreground``: the caller wants the foreground colour too (and the
    model gives one); otherwise only alpha comes back.
    """

    def __init__(self, *, fusion: bool, returns_foreground: bool) -> None:
        self.fusion = fusion
        self.returns_foreground = returns_foreground
        kinds = ["alpha"]
        if fusion or returns_foreground:
            kinds.append("foreground")
        if fusion:
            kinds.append("background")
        self.kinds: tuple[str, ...] = tuple(kinds)  # the network outputs this stage needs

    def decided_pixels(self, trimap: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
        """H x W bool: the pixels whose output the network decides; the trimap fixes all others.

        Alpha is the trimap's on its definite regions (:func:`impose_trimap`). A returned
        foreground is the image where alpha is 1 when fusion's background is there to say so
        (:func:`impose_known_colours`), so the definite foreground is fixed; without fusion the
        network's colour is kept everywhere. Without a trimap, every pixel is the network's.
        """
        if trimap is None or (self.returns_foreground and "background" not in self.kinds):
            return np.ones(shape, dtype=bool)
        background, foreground = definite_regions(trimap)
        if self.returns_foreground:
            return np.logical_not(foreground)
        return np.logical_not(background | foreground)

    def __call__(
        self,
        image: np.ndarray,
        trimap: np.ndarray | None,
        pixels: PixelSet,
        values: Mapping[str, np.ndarray],
        height: int,
        width: int,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Alpha (H x W, in [0, 1]) and foreground (H x W x 3, or None), float32.

        The foreground is the network's (fused) colour, in [0, 1], where the network decides it,
        and the image as decoded (a float plate's values outside [0, 1] kept) where the image is
        the answer: see the module docstring. ``values`` are the network's N x C outputs at
        ``pixels``. ``image`` (H x W x 3, any dtype) and ``trimap`` are on the grid of ``pixels``;
        the results are cut to ``height`` x ``width`` and are new arrays (they go to the writer).
        """
        if trimap is None:
            alpha = np.zeros(pixels.shape, dtype=np.float32)
        else:
            alpha = definite_regions(trimap)[1].astype(np.float32)
        fg_out = _own_copy(to_float(image), image) if self.returns_foreground else None
        if len(pixels):
            plate = to_float(image.reshape(-1, image.shape[-1])[pixels.index])
            colour = unit_rgb(plate)  # what the network saw
            a = values["alpha"][:, 0]
            fg, bg = values.get("foreground"), values.get("background")
            if self.fusion:
                assert fg is not None and bg is not None
                a, fg, bg = fba_fusion(colour, a, fg, bg)
            if trimap is not None:
                a = impose_trimap(a, pixels.gather(trimap))
                if fg is not None and bg is not None:
                    fg, _ = impose_known_colours(plate, a, fg, bg)  # only fg is kept: the plate's own
            pixels.scatter(a, alpha)
            if fg_out is not None and fg is not None:
                fg_out.reshape(-1, 3)[pixels.index] = fg
        alpha = np.ascontiguousarray(alpha[:height, :width])
        if fg_out is not None:
            fg_out = np.ascontiguousarray(fg_out[:height, :width])
        return alpha, fg_out


def _own_copy(array: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``array``, copied if it is ``source``'s memory: a float32 frame converts to itself, and the
    foreground written into here goes to the writer while the frame may still be in use."""
    return array.copy() if np.may_share_memory(array, source) else array
