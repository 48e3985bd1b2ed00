"""Post-engine combination of network outputs: FBA's F/B/alpha fusion and the trimap's known regions.

Runs in NumPy float32 after the inference engine, so every engine (ONNX Runtime, PyTorch, TensorRT)
and tiled inference share one implementation. Everything here is per pixel, so it runs as well
on the few pixels whose output the network decides (the pipeline gathers the unknown band into
``N`` and ``N×3`` arrays) as on whole frames. Arrays are channel-last: alpha ``…×H×W``, colours
``…×H×W×3``, all in [0, 1]; leading batch dimensions broadcast.
"""

from __future__ import annotations

import numpy as np

from mattecli.preprocess import definite_regions

# FBA paper §3.4: sigma_C^2 = sigma_F^2 = sigma_B^2 = 1, sigma_alpha^2 = 10, one iteration.
SIGMA_C_SQ = 1.0
SIGMA_FB_SQ = 1.0
SIGMA_ALPHA_SQ = 10.0


def fba_fusion(
    image: np.ndarray,
    alpha: np.ndarray,
    fg: np.ndarray,
    bg: np.ndarray,
    *,
    sigma_c_sq: float = SIGMA_C_SQ,
    sigma_fb_sq: float = SIGMA_FB_SQ,
    sigma_alpha_sq: float = SIGMA_ALPHA_SQ,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of FBA's maximum-likelihood fusion (FBA paper Eq. 4-6); returns (alpha, fg, bg).

    With r = C − αF − (1−α)B, k = σ_F²/σ_C² and a = σ_α²/σ_C²:

    - F' = F + k·α·r(F, B)
    - B' = B + k·(1−α)·r(F', B): the B step uses the updated F' (Gauss–Seidel), as the reference
      does; Eq. 5 as printed uses F. The FBA golden output is matched only this way.
    - F', B' clamped to [0, 1]
    - α' = (α + a·(C−B')·(F'−B')) / (1 + a·‖F'−B'‖²), clamped to [0, 1] (dot products over RGB).

    When C = αF + (1−α)B already holds, F and B are unchanged and α is a fixed point.
    """
    image = np.asarray(image, dtype=np.float32)
    a = np.asarray(alpha, dtype=np.float32)[..., None]
    fg = np.asarray(fg, dtype=np.float32)
    bg = np.asarray(bg, dtype=np.float32)
    k = np.float32(sigma_fb_sq / sigma_c_sq)
    inv_a = np.float32(sigma_c_sq / sigma_alpha_sq)  # divide Eq. 6 through by a

    one_minus = 1.0 - a
    new_fg = fg + k * a * (image - a * fg - one_minus * bg)
    new_bg = bg + k * one_minus * (image - a * new_fg - one_minus * bg)
    np.clip(new_fg, 0.0, 1.0, out=new_fg)
    np.clip(new_bg, 0.0, 1.0, out=new_bg)
    diff = new_fg - new_bg
    numerator = inv_a * a[..., 0] + np.einsum("...c,...c->...", image - new_bg, diff)
    denominator = inv_a + np.einsum("...c,...c->...", diff, diff)
    new_alpha = np.clip(numerator / denominator, 0.0, 1.0)
    return new_alpha.astype(np.float32, copy=False), new_fg, new_bg


def impose_trimap(alpha: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """Force alpha to 0 on the trimap's definite background and to 1 on its definite foreground.

    ``trimap`` has alpha's shape (H×W, or the N pixels the pipeline fuses) with 0 = background
    and the dtype's full value (255, or 1.0 for floats) = foreground, as
    :func:`mattecli.preprocess.definite_regions` reads it.
    """
    background, foreground = definite_regions(trimap)
    alpha = np.where(background, np.float32(0.0), alpha)
    return np.where(foreground, np.float32(1.0), alpha).astype(np.float32, copy=False)


def impose_known_colours(
    image: np.ndarray, alpha: np.ndarray, fg: np.ndarray, bg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """F := image where α = 1 and B := image where α = 0 (the reference demo's final step).

    Where a pixel is fully opaque (or fully transparent) the image *is* its foreground (background),
    so the observed colour beats the network's estimate. Returns (fg, bg). ``image`` may be the
    plate as decoded rather than clipped to [0, 1]: its values are copied as they are, so a float
    plate's highlights survive where it is the answer.
    """
    opaque = (alpha == 1.0)[..., None]
    clear = (alpha == 0.0)[..., None]
    return np.where(opaque, image, fg).astype(np.float32), np.where(clear, image, bg).astype(np.float32)
