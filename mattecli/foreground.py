"""Foreground colour estimation from an alpha matte: LSA's multi-level refinement and pymatting's solvers.

Matting datasets give alpha and either a foreground colour F that is only meaningful where alpha > 0
(DIM-style foregrounds hold junk, often black, under alpha = 0) or only the photo I. Resizing,
rotating or recompositing such a foreground drags that junk into the composite as fringes, and a
network trained to predict F everywhere (FBA) learns the junk. Re-estimating F so that it is valid
everywhere fixes both; at inference the same refinement cleans a predicted foreground.

Three estimators, chosen by ``method``:

* ``"lsa"``: the multi-level smoothing refinement of Wang et al. ("Improving Deep Image Matting via
  Local Smoothness Assumption", Alg. 1-2; S = 6 levels, κ = 1, T = 20, bilinear resize). It keeps the
  premultiplied colour αF where alpha is high and makes F locally constant where alpha is 0, by
  minimising ``½ Σ_i Σ_c [α_i² (F̂_i − F_i)² + κ (1 − α_i)² Σ_{j∈N4(i)} (F̂_i − F̂_j)²]``. It refines a
  *given* F; from a photo alone it starts from F = I, and much of the old background's colour stays
  in semi-transparent pixels, since its cost knows nothing of B.
* ``"ml"``: pymatting's multi-level solver (Germer et al. 2020) of I = αF + (1 − α)B with a smoothness
  prior: about a second per 800×600 image (plus a few seconds of JIT compilation on first use), and
  it separates F from B, so it is the default for photo + alpha data.
* ``"cf"``: Levin et al.'s closed-form foreground and background (what FBA re-estimated its training
  foregrounds with), solved by pymatting with a preconditioned conjugate gradient; the slowest.

pymatting is an optional dependency (the ``torch`` and ``dev`` extras); asking for ``ml`` or ``cf``
without it raises :class:`~mattecli.errors.UnavailableError`.

Image border (the LSA paper leaves it open): a neighbour outside the image is the pixel itself
(edge replication). Those terms vanish from the cost (F̂_i − F̂_i = 0), so the fixed point is the
minimiser of the cost over in-image neighbour pairs only; they merely damp the Jacobi step at the
border.

The module also pairs image and alpha folders by file stem and stores foregrounds as 16-bit PNG,
the common ground of ``mattecli refine-foregrounds`` and the training datasets.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from mattecli.errors import InputError, UnavailableError
from mattecli.media.compose import quantize
from mattecli.media.frame import to_float
from mattecli.media.imageio import images_by_stem, read_gray, read_image, write_image

Method = Literal["lsa", "ml", "cf"]
METHODS: tuple[str, ...] = ("lsa", "ml", "cf")

# LSA Alg. 2 defaults (paper §3.1): levels S, smoothness weight κ, iterations T at full resolution.
LSA_LEVELS = 6
LSA_KAPPA = 1.0
LSA_ITERATIONS = 20

# How many names a pairing error lists.
MISSING_SHOWN = 5


def simple_refine(
    premultiplied: np.ndarray,
    alpha: np.ndarray,
    fg_init: np.ndarray,
    *,
    kappa: float = LSA_KAPPA,
    iterations: int = LSA_ITERATIONS,
) -> np.ndarray:
    """LSA Alg. 1: ``iterations`` synchronous (Jacobi) fixed-point updates of F̂ at one resolution.

    Each update sets, for every pixel i and channel c (Ĩ = αF is ``premultiplied``)::

        F̂_i ← [α_i Ĩ_i + κ Σ_{j∈N4(i)} ((1−α_i)² + (1−α_j)²) F̂_j]
              / [α_i² + 4κ(1−α_i)² + κ Σ_{j∈N4(i)} (1−α_j)²]

    reading only the previous iterate. The new value is a convex combination of F and the old
    neighbours, so F̂ stays within the range of its inputs. Out-of-image neighbours replicate the
    edge (see the module docstring). Arrays: H×W×3 colour, H×W alpha; returns float32 H×W×3.
    """
    alpha = np.asarray(alpha, dtype=np.float32)
    fg = np.array(fg_init, dtype=np.float32)  # a copy: the caller's array is never touched
    height, width = alpha.shape
    data = alpha[:, :, None] * np.asarray(premultiplied, dtype=np.float32)
    # Neighbour weights κ((1−α_i)² + (1−α_j)²) for up, down, left, right, and the denominator.
    transparency = np.square(1.0 - alpha)
    padded = np.pad(transparency, 1, mode="edge")
    neighbours = (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:])
    weights = [(kappa * (transparency + t))[:, :, None] for t in neighbours]
    denominator = np.square(alpha) + 4.0 * kappa * transparency + kappa * sum(neighbours)
    inverse = (1.0 / denominator)[:, :, None]
    buffer = np.empty((height + 2, width + 2, 3), dtype=np.float32)
    total = np.empty_like(fg)
    for _ in range(iterations):
        buffer[1:-1, 1:-1] = fg
        buffer[0, 1:-1], buffer[-1, 1:-1] = fg[0], fg[-1]
        buffer[1:-1, 0], buffer[1:-1, -1] = fg[:, 0], fg[:, -1]
        np.multiply(weights[0], buffer[:-2, 1:-1], out=total)
        total += weights[1] * buffer[2:, 1:-1]
        total += weights[2] * buffer[1:-1, :-2]
        total += weights[3] * buffer[1:-1, 2:]
        total += data
        np.multiply(total, inverse, out=fg)
    return fg


def refine_foreground(
    fg: np.ndarray,
    alpha: np.ndarray,
    *,
    levels: int = LSA_LEVELS,
    kappa: float = LSA_KAPPA,
    iterations: int = LSA_ITERATIONS,
) -> np.ndarray:
    """LSA Alg. 2: coarse-to-fine :func:`simple_refine` over ``levels`` scales.

    At scale s (from ``levels − 1`` down to 0) αF, alpha and the current estimate are resized
    bilinearly to (w/2^s, h/2^s) (at least 1 pixel) and refined with ``2^s · iterations`` updates,
    so the coarse levels spread colour far into alpha = 0 areas cheaply and full resolution only
    polishes. ``fg`` is H×W×3 and ``alpha`` H×W in [0, 1]; returns float32 H×W×3.
    """
    if fg.ndim != 3 or fg.shape[2] != 3 or alpha.shape != fg.shape[:2]:
        raise ValueError(f"expected H×W×3 colour and H×W alpha, got {fg.shape} and {alpha.shape}")
    fg = np.asarray(fg, dtype=np.float32)
    alpha = np.asarray(alpha, dtype=np.float32)
    height, width = alpha.shape
    premultiplied = fg * alpha[:, :, None]
    estimate = fg
    for scale in range(levels - 1, -1, -1):
        size = (max(1, round(width / 2**scale)), max(1, round(height / 2**scale)))
        estimate = simple_refine(
            _resize(premultiplied, size),
            _resize(alpha, size),
            _resize(estimate, size),
            kappa=kappa,
            iterations=2**scale * iterations,
        )
    return estimate


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def check_method(method: str) -> None:
    """Fail early, before any work, if ``method`` is unknown or its solver is not installed."""
    if method not in METHODS:
        raise InputError(f"unknown foreground method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    if method == "lsa":
        return
    try:
        import pymatting  # noqa: F401
    except ImportError as exc:
        raise UnavailableError(
            f"foreground method {method!r} needs pymatting, which is not installed",
            hint="pip install pymatting (or mattecli[torch]), or use method lsa",
        ) from exc


def estimate_foreground(image: np.ndarray, alpha: np.ndarray, method: Method = "ml") -> np.ndarray:
    """The foreground colour of ``image`` (H×W×3, [0, 1]) under ``alpha`` (H×W, [0, 1]), valid everywhere.

    ``"lsa"`` refines the image itself as the initial F (:func:`refine_foreground`); ``"ml"`` and
    ``"cf"`` solve I = αF + (1 − α)B with pymatting. Returns float32 H×W×3 in [0, 1].
    """
    if image.ndim != 3 or image.shape[2] != 3 or alpha.shape != image.shape[:2]:
        raise ValueError(f"expected H×W×3 image and H×W alpha, got {image.shape} and {alpha.shape}")
    check_method(method)
    if method == "lsa":
        return refine_foreground(image, alpha)
    import pymatting

    solver = pymatting.estimate_foreground_ml if method == "ml" else pymatting.estimate_foreground_cf
    result = solver(np.asarray(image, dtype=np.float64), np.asarray(alpha, dtype=np.float64))
    return np.clip(result, 0.0, 1.0).astype(np.float32)


def pair_folders(folders: Mapping[str, Path]) -> list[tuple[str, dict[str, Path]]]:
    """Match the images of several folders by stem: ``{"image": dir, "alpha": dir}`` → [(name, files)].

    Every folder must hold every name; all mismatches are reported in one error before anything
    runs, so a long job never dies on its last file because of a typo.
    """
    indexes = {role: images_by_stem(folder, role) for role, folder in folders.items()}
    every = sorted(set().union(*indexes.values()))
    problems = []
    for role, index in indexes.items():
        if absent := [name for name in every if name not in index]:
            shown = ", ".join(absent[:MISSING_SHOWN])
            more = f" and {len(absent) - MISSING_SHOWN} more" if len(absent) > MISSING_SHOWN else ""
            problems.append(f"{len(absent)} names have no {role} in {folders[role]}: {shown}{more}")
    if problems:
        example = ", ".join(f"{Path(folder).name}/GT01.png" for folder in folders.values())
        raise InputError(
            "cannot pair the inputs: " + "; ".join(problems),
            hint=f"files are matched by name without suffix ({example})",
        )
    return [(name, {role: index[name] for role, index in indexes.items()}) for name in every]


def read_colour_and_alpha(colour_path: Path, alpha_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image (photo or foreground) and its alpha as float32 [0, 1], checked to be the same size."""
    colour = to_float(read_image(colour_path))
    alpha = to_float(read_gray(alpha_path))
    if alpha.shape != colour.shape[:2]:
        raise InputError(
            f"alpha is {alpha.shape[0]}x{alpha.shape[1]} (HxW) but {colour_path.name} is "
            f"{colour.shape[0]}x{colour.shape[1]}",
            path=alpha_path,
            hint="every alpha must have the size of the image it belongs to",
        )
    return colour, np.clip(alpha, 0.0, 1.0)


def write_foreground(path: Path, fg: np.ndarray) -> None:
    """Store a foreground as a 16-bit RGB PNG, atomically (8 bits would band smooth extensions)."""
    write_image(path, quantize(fg, np.uint16))
