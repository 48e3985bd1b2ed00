"""Composition of training images: DIM composites, GFM's RSSN route, FBA's two foregrounds, LSA's colour
augmentation.

All arrays are float32 in [0, 1]: colour H×W×3, alpha H×W. Every random step takes the
``numpy.random.Generator`` it must draw from and a probability ``p`` (so tests can force a step on
with ``p = 1`` or off with ``p = 0``); a step that does not fire draws nothing further and returns its
input unchanged.

RSSN (GFM, Pipeline 1), with the choices the paper leaves open:

* **Resolution matching** (:func:`match_resolution`): the background is resized, keeping its aspect
  ratio, so that it just covers the foreground (up or down), then a random window of the
  foreground's size is cut. Shrinking a large photo instead of cutting a small window keeps the
  background's content at a natural scale, and no background is ever stretched.
* **Denoising** of F and B (one coin for both, p = 0.5): the paper uses BM3D. The ``bm3d`` PyPI
  package (4.0.3) installs and runs here, but took 25 s for one 320×320 RGB crop on the 2-core
  development machine (13 s with its hard-thresholding stage alone), against 0.3 s for OpenCV's
  non-local means (``cv2.fastNlMeansDenoisingColored``, h = 10, 7×7 patches, 21×21 search). Samples
  are composed on the fly on the CPU, so BM3D would starve the trainer; non-local means is used
  instead. Both are patch-based denoisers that remove a source's own sensor noise and keep edges;
  BM3D restores fine texture better (mean absolute error to the clean crop 0.0087 against 0.0138
  for σ = 10/255 noise), so with BM3D the layers would keep slightly more detail. Denoising the
  dataset offline with BM3D is the faithful alternative.
* **Background blur** (p = 0.5): OpenCV's averaging filter with a square kernel of r ∈ {20, 30, 40,
  50, 60} px, r read as the kernel size. ``scale`` converts it when the composite is built at another
  resolution than the source (a 1280 crop resized to 320 blurs with r/4).
* **Noise** (p = 0.5): Gaussian noise with σ = 10 on the 0-255 scale (the paper does not say which
  scale; 10 on 0-255 is a realistic sensor noise, 10 on [0, 1] would be absurd), i.e. 10/255 here,
  drawn independently per pixel and channel over the whole composite, then clipped to [0, 1].

The recipes (:mod:`training.data.recipes`) run these steps on the crop after it is resized to the
training size: denoising costs the same per sample whatever the crop, and the noise has the stated
σ in the pixels the network sees.
"""

from __future__ import annotations

import cv2
import numpy as np

from mattecli.media.compose import composite as compose_over

RSSN_BLUR_KERNELS = (20, 30, 40, 50, 60)
RSSN_NOISE_SIGMA = 10.0 / 255.0
# cv2.fastNlMeansDenoisingColored: filter strength (luma and colour), patch and search windows.
NLM_STRENGTH = 10.0
NLM_TEMPLATE = 7
NLM_SEARCH = 21


def composite(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """DIM composite ``I = αF + (1 − α)B`` (float32)."""
    return compose_over(fg, alpha, bg)


def coin(rng: np.random.Generator, p: float) -> bool:
    """One coin with probability ``p``; ``p`` of 0 or 1 draws nothing, so it never shifts the stream."""
    if p <= 0.0:
        return False
    if p >= 1.0:
        return True
    return bool(rng.random() < p)


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize with area averaging when shrinking (no aliasing) and bilinear when enlarging."""
    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def match_resolution(bg: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Resize ``bg`` (keeping its aspect) to just cover height×width, then cut a random window that size.

    The window's position is drawn as a fraction of the slack, so the same generator state gives
    the same part of the background at any target size (FBA's 2× samples rely on this).
    """
    scale = max(height / bg.shape[0], width / bg.shape[1])
    covered_h = max(height, round(bg.shape[0] * scale))
    covered_w = max(width, round(bg.shape[1] * scale))
    covered = resize_to(bg, covered_h, covered_w)
    fy, fx = rng.random(2)
    top = round(fy * (covered_h - height))
    left = round(fx * (covered_w - width))
    return np.array(covered[top : top + height, left : left + width], dtype=np.float32)  # a writable copy


def denoise(image: np.ndarray) -> np.ndarray:
    """Non-local means on the 8-bit image (OpenCV's colour variant); see the module docstring for why."""
    eight_bit = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    clean = cv2.fastNlMeansDenoisingColored(
        eight_bit, None, NLM_STRENGTH, NLM_STRENGTH, NLM_TEMPLATE, NLM_SEARCH
    )
    return clean.astype(np.float32) / np.float32(255.0)


def rssn_denoise(
    fg: np.ndarray, bg: np.ndarray, rng: np.random.Generator, p: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """RSSN step 1: with probability ``p`` denoise both F and B (one coin for the pair)."""
    if not coin(rng, p):
        return fg, bg
    return denoise(fg), denoise(bg)


def rssn_blur(bg: np.ndarray, rng: np.random.Generator, p: float = 0.5, *, scale: float = 1.0) -> np.ndarray:
    """RSSN step 2: with probability ``p`` box-blur B with a kernel of r ∈ {20..60} px times ``scale``."""
    if not coin(rng, p):
        return bg
    kernel = max(1, round(int(rng.choice(RSSN_BLUR_KERNELS)) * scale))
    return cv2.blur(bg, (kernel, kernel), borderType=cv2.BORDER_REFLECT)


def rssn_noise(
    image: np.ndarray, rng: np.random.Generator, p: float = 0.5, *, sigma: float = RSSN_NOISE_SIGMA
) -> np.ndarray:
    """RSSN step 3: with probability ``p`` add Gaussian noise (σ = 10/255) to the composite, clipped."""
    if not coin(rng, p):
        return image
    noisy = image + rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    return np.clip(noisy, 0.0, 1.0, out=noisy)


def two_foregrounds(
    fg: np.ndarray, alpha: np.ndarray, fg2: np.ndarray, alpha2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Put a second foreground layer (resized to the first's size) behind the first.

    α = 1 − (1 − α1)(1 − α2) (the coverage of two independent layers) and F = α1F1 + (1 − α1)F2,
    as SampleNet and GCA composite them. F is exact wherever the front layer is opaque or absent
    (α1 = 1 gives F1, α1 = 0 gives F2); where both layers are partly transparent it blends by the
    front's alpha rather than the physical (α1F1 + (1 − α1)α2F2)/α, which would be undefined
    where α = 0. This keeps F continuous and valid everywhere, as FBA's whole-image F loss needs,
    and the composite is always built from the F and α returned here, so it stays self-consistent.
    """
    height, width = alpha.shape
    fg2 = resize_to(fg2, height, width)
    alpha2 = resize_to(alpha2, height, width)
    a1 = alpha[:, :, None]
    combined_fg = (a1 * fg + (1.0 - a1) * fg2).astype(np.float32)
    combined_alpha = (1.0 - (1.0 - alpha) * (1.0 - alpha2)).astype(np.float32)
    return combined_fg, combined_alpha


def colour_augment(fg: np.ndarray, rng: np.random.Generator, p: float = 1.0) -> np.ndarray:
    """LSA's colour augmentation F̃ = wF + (1 − w)u with w ~ U[0, 1] and u a uniform random RGB colour.

    It shrinks every gradient of F by the factor w (the paper's point: smoother foregrounds). The
    paper does not give u's distribution; uniform over the RGB cube is used.
    """
    if not coin(rng, p):
        return fg
    weight = np.float32(rng.random())
    colour = rng.random(3).astype(np.float32)
    return (weight * fg + (1.0 - weight) * colour).astype(np.float32)


def gaussian_blur(
    image: np.ndarray, rng: np.random.Generator, p: float, sigma_range: tuple[float, float]
) -> np.ndarray:
    """With probability ``p`` blur with a Gaussian of σ uniform in ``sigma_range`` px."""
    if not coin(rng, p):
        return image
    sigma = float(rng.uniform(*sigma_range))
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
