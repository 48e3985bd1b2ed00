"""Matting datasets on disk: foreground + alpha folders, photo + alpha folders, background photos.

Files are paired by name without suffix (``fg/GT01.png`` with ``alpha/GT01.png``), and every
pairing problem is reported in one :class:`~mattecli.errors.InputError` when the dataset is opened,
before training starts. Items are read lazily, one per call, as float32 in [0, 1].

Held-out images: :func:`split_names` picks, deterministically from a seed, the names the trainer
must never train on (the default model holds out at least 5 of the 21 alphamatting.com images); give
the returned training names to the dataset's ``names`` and keep the held-out ones for validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mattecli.errors import InputError
from mattecli.foreground import Method, pair_folders, read_colour_and_alpha
from mattecli.media.frame import to_float
from mattecli.media.imageio import images_by_stem, read_image
from training.data.composite import match_resolution
from training.data.foreground import reestimated_foreground

# How many decoded backgrounds a BackgroundSet keeps in memory.
BACKGROUND_CACHE = 16


@dataclass(frozen=True, slots=True)
class MattingItem:
    """One foreground layer: colour valid everywhere, alpha, and its own background if the data has one."""

    name: str
    fg: np.ndarray  # H×W×3 float32 [0, 1]
    alpha: np.ndarray  # H×W float32 [0, 1]
    bg: np.ndarray | None = None  # H'×W'×3 float32, any size (resolution-matched when composited)


def split_names(
    names: Sequence[str], holdout: int | Sequence[str] = 5, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split ``names`` into (training, held-out), both sorted.

    ``holdout`` is a count (that many names drawn without replacement by a generator seeded with
    ``seed``, from the sorted names, so the split depends only on the set of names and the seed) or
    an explicit list of names, which must all exist.
    """
    ordered = sorted(set(names))
    if isinstance(holdout, int):
        if not 0 <= holdout < len(ordered):
            raise InputError(
                f"cannot hold out {holdout} of {len(ordered)} images",
                hint="hold out at least 0 and fewer than all of them",
            )
        chosen = set(np.random.default_rng(seed).choice(len(ordered), size=holdout, replace=False).tolist())
        held = [name for i, name in enumerate(ordered) if i in chosen]
    else:
        held = sorted(set(holdout))
        if unknown := [name for name in held if name not in ordered]:
            raise InputError(
                f"held-out names not in the dataset: {', '.join(unknown)}",
                hint="name held-out images by their file name without suffix",
            )
    return [name for name in ordered if name not in held], held


def _select(pairs: list[tuple[str, dict[str, Path]]], names: Sequence[str] | None, where: Path):
    if names is None:
        return pairs
    by_name = dict(pairs)
    if missing := [name for name in names if name not in by_name]:
        raise InputError(
            f"{len(missing)} requested names are not in the dataset: {', '.join(missing[:5])}",
            path=where,
            hint="names are file names without suffix",
        )
    return [(name, by_name[name]) for name in names]


class ForegroundDataset:
    """Foreground colours + alpha mattes (+ optionally each foreground's own background), by stem.

    The foregrounds should already be valid everywhere (re-estimated, e.g. with ``mattecli
    refine-foregrounds``); raw DIM foregrounds hold junk under alpha = 0 that resizing and rotation
    drag into the composite.
    """

    def __init__(
        self,
        fg_dir: Path,
        alpha_dir: Path,
        bg_dir: Path | None = None,
        *,
        names: Sequence[str] | None = None,
    ) -> None:
        folders = {"foreground": Path(fg_dir), "alpha": Path(alpha_dir)}
        if bg_dir is not None:
            folders["background"] = Path(bg_dir)
        self._pairs = _select(pair_folders(folders), names, Path(fg_dir))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._pairs]

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> MattingItem:
        name, files = self._pairs[index]
        fg, alpha = read_colour_and_alpha(files["foreground"], files["alpha"])
        bg = to_float(read_image(files["background"])) if "background" in files else None
        return MattingItem(name, fg, alpha, bg)


class ImageAlphaDataset:
    """Photos + alpha mattes, the foreground re-estimated from each photo (cached in ``cache_dir``).

    ``estimator``: ``"ml"`` (default; pymatting's multi-level solver separates F from the photo's
    background), ``"cf"`` (Levin's closed form, as FBA) or ``"lsa"`` (LSA's smoothing refinement
    of the photo itself, which keeps the old background mixed into semi-transparent pixels; see
    :mod:`mattecli.foreground`). Without ``cache_dir`` every access recomputes the estimate.
    """

    def __init__(
        self,
        image_dir: Path,
        alpha_dir: Path,
        estimator: Method = "ml",
        cache_dir: Path | None = None,
        *,
        names: Sequence[str] | None = None,
    ) -> None:
        self.estimator = estimator
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        folders = {"image": Path(image_dir), "alpha": Path(alpha_dir)}
        self._pairs = _select(pair_folders(folders), names, Path(image_dir))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._pairs]

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> MattingItem:
        name, files = self._pairs[index]
        fg, alpha = reestimated_foreground(files["image"], files["alpha"], self.estimator, self.cache_dir)
        return MattingItem(name, fg, alpha)


class BackgroundSet:
    """A folder of background photos to composite over (decoded ones kept in a small memory cache)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.files = [path for _, path in sorted(images_by_stem(self.folder, "background").items())]
        self._load = lru_cache(maxsize=BACKGROUND_CACHE)(self._read)

    def __len__(self) -> int:
        return len(self.files)

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        image = to_float(read_image(path))
        image.setflags(write=False)
        return image

    def __getitem__(self, index: int) -> np.ndarray:
        """Background ``index`` as read-only float32 H×W×3 in [0, 1]."""
        return self._load(self.files[index])

    def draw(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A random background, resolution-matched to height×width (:func:`match_resolution`)."""
        return match_resolution(self[int(rng.integers(len(self.files)))], height, width, rng)
