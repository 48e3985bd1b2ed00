"""Foreground re-estimation for training data, cached on disk.

The ``ml`` and ``cf`` estimators take seconds per image, far too slow to repeat for every sample of
every epoch, so the result is stored once as a 16-bit PNG in a cache folder. The file name carries a
hash of the image and alpha file contents, the method and its parameters: editing a source file or
changing the method makes a new entry instead of silently reusing a stale one. Entries are written
atomically, so a killed job or two workers racing on the same image never leave a torn file.

A freshly computed foreground is returned exactly as it would be read back from the cache (16-bit
quantised), so a sample is bit-identical whether or not its foreground was already cached.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mattecli.foreground import (
    LSA_ITERATIONS,
    LSA_KAPPA,
    LSA_LEVELS,
    Method,
    estimate_foreground,
    read_colour_and_alpha,
    write_foreground,
)
from mattecli.media.compose import quantize
from mattecli.media.frame import to_float
from mattecli.media.imageio import read_image

# Bump when the stored format or an estimator's output changes meaning.
CACHE_VERSION = "1"


def cache_key(image_path: Path, alpha_path: Path, method: Method) -> str:
    """16 hex digits identifying the source files' contents, the method and its parameters."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}:{method}:{LSA_LEVELS},{LSA_KAPPA},{LSA_ITERATIONS}".encode())
    for path in (image_path, alpha_path):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def reestimated_foreground(
    image_path: Path, alpha_path: Path, method: Method, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(F, alpha) for a photo and its alpha, F re-estimated with ``method`` (float32 [0, 1]).

    With ``cache_dir`` the foreground is read from, or computed into, that folder.
    """
    image_path, alpha_path = Path(image_path), Path(alpha_path)
    image, alpha = read_colour_and_alpha(image_path, alpha_path)
    if cache_dir is None:
        return to_float(quantize(estimate_foreground(image, alpha, method), np.uint16)), alpha
    entry = Path(cache_dir) / f"{image_path.stem}.{method}.{cache_key(image_path, alpha_path, method)}.png"
    if not entry.is_file():
        write_foreground(entry, estimate_foreground(image, alpha, method))
    return to_float(read_image(entry)), alpha
