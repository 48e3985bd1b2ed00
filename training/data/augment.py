"""Geometric and photometric augmentation of training samples.

A sample is a dict of arrays that share their height and width: colour layers (H×W×3 float32),
alpha and other continuous maps (H×W float32) and label maps (:data:`LABEL_KEYS`, uint8) that must
never be interpolated. The geometric steps (scale, crop, resize, flip) transform every array of a
sample together, so F, B, alpha and the trimap stay aligned.

Paper settings (digest §2.3, §3.4, §5.4), chosen values where the papers are silent:

* Crops: FBA 320/480/640 px centred on a random unknown pixel; AlphaGAN a size uniform in
  320..720 centred on an unknown pixel, resized to 320; GFM 640/960/1280 anywhere, resized to 320.
  A crop window is moved inside the image when its centre is near a border, so it is centred on the
  chosen pixel exactly whenever the image allows. A scene smaller than the crop is first enlarged
  (keeping its aspect) until it covers the crop.
* Flips: horizontal with p = 0.5 (a vertical flip turns scenes upside down, which photos never are).
* Gamma and brightness (FBA, ranges not given): each colour layer independently gets
  ``clip(b · x^γ, 0, 1)`` with γ log-uniform in [1/1.3, 1.3] and b uniform in [0.85, 1.15]. They are
  applied to F and B before compositing, so the composite and its F/B targets stay consistent.
* Rotation (AlphaGAN): F and alpha rotate together about the image centre by an angle drawn from
  N(0, 5°); alpha is 0 and F the replicated edge where the rotation uncovers the frame.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from training.data.composite import coin, resize_to

Sample = dict[str, np.ndarray]

# Maps of class labels: resized with nearest neighbour, never blended.
LABEL_KEYS = frozenset({"trimap", "glance", "transition", "trimap_target"})

FLIP_P = 0.5
GAMMA_MAX = 1.3
BRIGHTNESS_RANGE = (0.85, 1.15)
ROTATION_SIGMA_DEG = 5.0


def resize_sample(sample: Sample, height: int, width: int) -> Sample:
    """Every array resized to height×width: label maps by nearest neighbour, the rest smoothly."""
    out = {}
    for key, array in sample.items():
        if array.shape[:2] == (height, width):
            out[key] = array
        elif key in LABEL_KEYS:
            out[key] = cv2.resize(array, (width, height), interpolation=cv2.INTER_NEAREST)
        else:
            out[key] = resize_to(array, height, width)
    return out


def scale_sample(sample: Sample, factor: float) -> Sample:
    """Resize a whole sample by ``factor`` (FBA's 2× samples)."""
    height, width = next(iter(sample.values())).shape[:2]
    return resize_sample(sample, max(1, round(height * factor)), max(1, round(width * factor)))


def cover(sample: Sample, size: int) -> Sample:
    """Enlarge a sample (keeping its aspect) until both sides are at least ``size``; else unchanged."""
    height, width = next(iter(sample.values())).shape[:2]
    if min(height, width) >= size:
        return sample
    factor = size / min(height, width)
    return resize_sample(sample, max(size, math.ceil(height * factor)), max(size, math.ceil(width * factor)))


def unknown_pixel(trimap: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
    """A uniformly random pixel (row, column) of the trimap's unknown band, or None if it has none."""
    unknown = np.flatnonzero(trimap == 128)
    if unknown.size == 0:
        return None
    index = int(unknown[rng.integers(unknown.size)])
    return divmod(index, trimap.shape[1])


def crop_window(
    shape: tuple[int, ...], size: int, rng: np.random.Generator, centre: tuple[int, int] | None = None
) -> tuple[int, int]:
    """Top-left corner of a size×size window inside ``shape``: centred on ``centre`` when given
    (moved inside the image only as far as needed), otherwise uniformly random."""
    height, width = shape[:2]
    if size > height or size > width:
        raise ValueError(f"a {size} px crop does not fit a {height}x{width} image; call cover() first")
    if centre is None:
        return int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))
    top = min(max(centre[0] - size // 2, 0), height - size)
    left = min(max(centre[1] - size // 2, 0), width - size)
    return top, left


def crop(sample: Sample, top: int, left: int, size: int) -> Sample:
    """The size×size window at (top, left) of every array (copies, so later steps may write)."""
    return {key: a[top : top + size, left : left + size].copy() for key, a in sample.items()}


def flip(sample: Sample, rng: np.random.Generator, p: float = FLIP_P) -> Sample:
    """With probability ``p`` mirror every array left-right."""
    if not coin(rng, p):
        return sample
    return {key: np.ascontiguousarray(a[:, ::-1]) for key, a in sample.items()}


def gamma_brightness(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``clip(b · x^γ, 0, 1)`` with γ log-uniform in [1/1.3, 1.3] and b uniform in [0.85, 1.15]."""
    gamma = math.exp(rng.uniform(-math.log(GAMMA_MAX), math.log(GAMMA_MAX)))
    brightness = rng.uniform(*BRIGHTNESS_RANGE)
    out = np.power(np.clip(image, 0.0, 1.0), np.float32(gamma)) * np.float32(brightness)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def rotate(
    fg: np.ndarray, alpha: np.ndarray, rng: np.random.Generator, sigma_deg: float = ROTATION_SIGMA_DEG
) -> tuple[np.ndarray, np.ndarray, float]:
    """Rotate F and alpha about the centre by an angle ~ N(0, ``sigma_deg``); returns them and the angle."""
    angle = float(rng.normal(0.0, sigma_deg))
    height, width = alpha.shape
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle, 1.0)
    fg = cv2.warpAffine(fg, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(
        alpha, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return fg, alpha, angle
