"""Input encodings computed per frame before the inference engine (NumPy/OpenCV, no torch).

They run on every frame in production, so each works in float32 into buffers the caller can
reuse from frame to frame (:class:`Scratch`). Arrays are H×W×C (channel-last, as frames are
decoded) unless a name says otherwise; :func:`fba_inputs` gives the N×C×H×W arrays an FBA engine
takes.

FBA's Gaussian trimap encoding needs the distance from each pixel to the nearest definite
pixel, and a distance transform over a whole 4K frame is the costliest step before the network.
Tiled inference only reads the encoding inside its tiles, so it computes distances over a window
around them (:func:`encoding_window`); why that is exact up to :data:`FBA_ENCODING_TOLERANCE` is
proved there.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# FBA's Gaussian trimap encoding (FBA paper §3.1 after Le et al.; scales from the reference code):
# sigma = s * 320 px for each s, independent of the image size.
FBA_ENCODING_LENGTH = 320.0
FBA_ENCODING_SCALES = (0.02, 0.08, 0.16)
# Largest error a windowed encoding may have against the whole-frame one (see encoding_window).
FBA_ENCODING_TOLERANCE = 1e-6

# Buffers start on a 64-byte boundary (a cache line, the widest SIMD load): OpenCV's precise
# distance transform rounds differently (by about 1e-6 px) depending on its output's alignment.
ALIGNMENT = 64


def encoding_reach(tolerance: float = FBA_ENCODING_TOLERANCE) -> int:
    """The distance D beyond which every Gaussian map is below ``tolerance``.

    Each map is exp(−d² / (2σ²)), largest for the widest σ, so it is below ``tolerance`` for
    every d > D = σ_max · sqrt(2 ln(1 / tolerance)) (270 px for 1e-6).
    """
    sigma_max = max(FBA_ENCODING_SCALES) * FBA_ENCODING_LENGTH
    return math.ceil(sigma_max * math.sqrt(2.0 * math.log(1.0 / tolerance)))


FBA_ENCODING_REACH = encoding_reach()


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an :data:`ALIGNMENT` boundary."""
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    raw = np.empty(count * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + count * dtype.itemsize].view(dtype).reshape(shape)


class Scratch:
    """Named, aligned work buffers that keep their memory from one frame to the next.

    ``get(name, shape, dtype)`` returns a C-contiguous view of the front of a buffer that only
    grows, so a clip of equal frames allocates once and memory stays flat however long it is.
    The contents are whatever the last user left: callers overwrite what they read. A buffer
    is reused by the next ``get`` of the same name, so nothing from here may outlive a frame
    (outputs handed to a writer thread are fresh arrays).
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    @property
    def nbytes(self) -> int:
        """Bytes held by all buffers (flat over a clip: it only grows when frames do)."""
        return sum(buffer.size for buffer in self._buffers.values())

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < nbytes:
            buffer = self._buffers[name] = aligned_empty((nbytes,), np.uint8)
        return buffer[:nbytes].view(dtype).reshape(shape)


def _full_value(trimap: np.ndarray) -> float:
    """The value that marks definite foreground: 255 for uint8, 65535 for uint16, 1.0 for floats."""
    if np.issubdtype(trimap.dtype, np.integer):
        return float(np.iinfo(trimap.dtype).max)
    return 1.0


def definite_regions(trimap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(definite background, definite foreground) masks of a trimap of any shape.

    Background is 0; foreground is the dtype's full value (255 for uint8, 1.0 for float
    trimaps); everything else is unknown.
    """
    return trimap == 0, trimap == _full_value(trimap)


def two_channel_trimap(trimap: np.ndarray) -> np.ndarray:
    """H×W trimap → H×W×2 float32: channel 0 definite background, channel 1 definite foreground."""
    if trimap.ndim != 2:
        raise ValueError(f"expected a single-channel H×W trimap, got shape {trimap.shape}")
    return np.stack(definite_regions(trimap), axis=-1).astype(np.float32)


def region_distance(region: np.ndarray, scratch: Scratch, name: str) -> np.ndarray | None:
    """Exact Euclidean distance (float32 h×w) from each pixel to the nearest pixel of ``region``.

    ``region`` is an h×w bool mask. None when it has no pixel: the distance is infinite, and the
    Gaussian maps of such a region are 0. The FBA reference does the same (it skips the region),
    so the network sees what it was trained with.

    The result lives in ``scratch`` under ``name`` (an aligned buffer, so the result does not
    depend on where the allocator put it) until that name is asked for again.
    """
    if not region.any():
        return None
    shape = region.shape
    # distanceTransform measures the distance to the nearest zero pixel, so the region is zero.
    outside = np.logical_not(region, out=scratch.get(name + "-mask", shape, np.bool_))
    dist = scratch.get(name, shape, np.float32)
    return cv2.distanceTransform(outside.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE, dst=dist)


def gaussian_maps(dist: np.ndarray | None, out: np.ndarray) -> np.ndarray:
    """exp(−d² / (2 (s·320)²)) for each s of :data:`FBA_ENCODING_SCALES` → ``out`` (3×h×w float32).

    ``dist`` (h×w, any strides) comes from :func:`region_distance`; None (an empty region) gives
    zeros. Whole-frame and windowed encodings both go through here, with the same operations in
    the same order, so where their distances agree their maps agree to the bit.
    """
    if dist is None:
        out[...] = 0.0
        return out
    neg_sq = out[-1]  # the last map is written last, so it can hold −d² until then
    np.multiply(dist, dist, out=neg_sq)
    np.negative(neg_sq, out=neg_sq)
    for j, s in enumerate(FBA_ENCODING_SCALES):
        plane = out[j]
        np.multiply(neg_sq, np.float32(1.0 / (2.0 * (s * FBA_ENCODING_LENGTH) ** 2)), out=plane)
        np.exp(plane, out=plane)
    return out


def fba_trimap_encoding(two_chan: np.ndarray) -> np.ndarray:
    """The 6 Gaussian distance maps FBA's encoder takes: H×W×2 → H×W×6 float32.

    For background then foreground, and each s in :data:`FBA_ENCODING_SCALES`:
    ``exp(-d² / (2 (s·320)²))`` with ``d`` the exact Euclidean distance (``cv2.distanceTransform``,
    DIST_L2, precise mask) from each pixel to the nearest pixel of that definite region; a region
    with no pixel gives zeros (see :func:`region_distance`).

    The result is an H×W×6 view of channel-first planes (``np.ascontiguousarray`` of its
    ``transpose(2, 0, 1)`` is free).
    """
    height, width = two_chan.shape[:2]
    planes = np.empty((2 * len(FBA_ENCODING_SCALES), height, width), dtype=np.float32)
    scratch = Scratch()
    for k in range(2):
        dist = region_distance(two_chan[..., k] > 0, scratch, "distance")
        gaussian_maps(dist, planes[3 * k : 3 * k + 3])
    return planes.transpose(1, 2, 0)


def encoding_window(
    rects: list[tuple[int, int, int, int]], height: int, width: int, reach: int = FBA_ENCODING_REACH
) -> tuple[int, int, int, int]:
    """The window (y0, x0, y1, x1) of a height×width frame whose distances serve ``rects``.

    ``rects`` are (y, x, h, w) rectangles where the encoding will be read (tiles). The window is
    their bounding box grown by ``reach`` on every side, clipped to the frame.

    Why the distances computed inside the window alone are good enough at every pixel p of a
    rect, for a definite region K (d = true distance from p to K, d_W = distance to K ∩ window):

    * d_W ≥ d always: the window sees a subset of K (or none of it: then d_W = ∞).
    * If d ≤ reach: p's nearest K pixel q has |q − p| ≤ reach, so q lies within ``reach`` rows
      and columns of p, inside the grown box, and inside the frame: q is in the window and
      d_W = d (OpenCV may round it differently by about 1e-6 px, which moves a map by about
      1e-7).
    * If d > reach: d_W ≥ d > reach as well, so both exp(−d²/2σ²) and exp(−d_W²/2σ²) lie in
      [0, exp(−reach²/2σ²)), and differ by less than that, which for the widest σ and
      ``reach`` = :data:`FBA_ENCODING_REACH` is below :data:`FBA_ENCODING_TOLERANCE`.
    """
    y0 = min(r[0] for r in rects)
    x0 = min(r[1] for r in rects)
    y1 = max(r[0] + r[2] for r in rects)
    x1 = max(r[1] + r[3] for r in rects)
    return max(0, y0 - reach), max(0, x0 - reach), min(height, y1 + reach), min(width, x1 + reach)


def imagenet_normalise(rgb: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] (…×3) → ImageNet-normalised float32: (rgb − mean) / std per channel."""
    return (np.asarray(rgb, dtype=np.float32) - IMAGENET_MEAN) / IMAGENET_STD


def fba_inputs(rgb: np.ndarray, trimap: np.ndarray) -> dict[str, np.ndarray]:
    """The three 1×C×H×W float32 inputs of the FBA network, keyed by its ``forward`` argument names.

    ``rgb`` is H×W×3 in [0, 1]; ``trimap`` as for :func:`two_channel_trimap`. ImageNet normalisation
    happens inside the network (see ``training/networks/fba.py``).
    """
    two_chan = two_channel_trimap(trimap)
    encoding = fba_trimap_encoding(two_chan)

    def nchw(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32)

    return {
        "image": nchw(np.asarray(rgb, dtype=np.float32)),
        "two_chan_trimap": nchw(two_chan),
        "trimap_transformed": nchw(encoding),
    }
