"""Input encodings computed per frame before the inference engine (NumPy/OpenCV, no torch).

They run on every frame in production, so each is vectorised over the whole image and works in
float32. Arrays are H×W×C (channel-last, as frames are decoded); :func:`fba_inputs` gives the
N×C×H×W arrays an FBA engine takes.
"""

from __future__ import annotations

import cv2
import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# FBA's Gaussian trimap encoding (FBA paper §3.1 after Le et al.; scales from the reference code):
# sigma = s * 320 px for each s, independent of the image size.
FBA_ENCODING_LENGTH = 320.0
FBA_ENCODING_SCALES = (0.02, 0.08, 0.16)


def _full_value(trimap: np.ndarray) -> float:
    """The value that marks definite foreground: 255 for uint8, 65535 for uint16, 1.0 for floats."""
    if np.issubdtype(trimap.dtype, np.integer):
        return float(np.iinfo(trimap.dtype).max)
    return 1.0


def two_channel_trimap(trimap: np.ndarray) -> np.ndarray:
    """H×W trimap → H×W×2 float32: channel 0 definite background (0), channel 1 definite foreground.

    Definite foreground is the dtype's full value (255 for uint8, 1.0 for float trimaps); everything
    that is neither 0 nor full is unknown.
    """
    if trimap.ndim != 2:
        raise ValueError(f"expected a single-channel H×W trimap, got shape {trimap.shape}")
    return np.stack([trimap == 0, trimap == _full_value(trimap)], axis=-1).astype(np.float32)


def fba_trimap_encoding(two_chan: np.ndarray) -> np.ndarray:
    """The 6 Gaussian distance maps FBA's encoder takes: H×W×2 → H×W×6 float32.

    For background then foreground, and each s in :data:`FBA_ENCODING_SCALES`:
    ``exp(-d² / (2 (s·320)²))`` with ``d`` the exact Euclidean distance (``cv2.distanceTransform``,
    DIST_L2, precise mask) from each pixel to the nearest pixel of that definite region.

    A trimap without any pixel of one definite region (no background at all, say) gives zeros for
    that region's three maps: the distance to an empty region is infinite, and exp(-inf) = 0. This
    is also what the FBA reference does (it skips the region), so the network sees what it was
    trained with.

    The result is an H×W×6 view of channel-first planes (``np.ascontiguousarray`` of its
    ``transpose(2, 0, 1)`` is free).
    """
    height, width = two_chan.shape[:2]
    # Channel-first planes: each map is written contiguously (several times faster at 4K than
    # strided channel-last writes), and the NCHW engine input is then a free reshape.
    planes = np.zeros((2 * len(FBA_ENCODING_SCALES), height, width), dtype=np.float32)
    for k in range(2):
        region = two_chan[..., k] > 0
        if not region.any():
            continue
        # distanceTransform measures the distance to the nearest zero pixel, so the region is zero.
        dist = cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        neg_sq = np.multiply(dist, dist, out=dist)
        np.negative(neg_sq, out=neg_sq)
        for j, s in enumerate(FBA_ENCODING_SCALES):
            plane = planes[k * len(FBA_ENCODING_SCALES) + j]
            np.multiply(neg_sq, np.float32(1.0 / (2.0 * (s * FBA_ENCODING_LENGTH) ** 2)), out=plane)
            np.exp(plane, out=plane)
    return planes.transpose(1, 2, 0)


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
