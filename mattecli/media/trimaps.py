"""Trimaps: finding the one that belongs to a frame, and cleaning it into exact 0/128/255.

A trimap spec is either one image file (that trimap is used for every frame) or a folder of trimap
images (non-recursive; hidden files such as half-written ``.name.part.png`` are ignored). A frame is
known by its ``name`` and ``index`` (see :class:`mattecli.media.frame.Frame`).

Matching rule, tried in this order for each frame:

1. **Name and number.** A trimap whose stem is the frame name, an optional separator (``.``,
   ``_``, ``-`` or a space, as for image sequences) and the frame number with any zero padding:
   frame 12 of ``clip.mp4`` matches ``clip.000012.png``, ``clip_0012.png``, ``clip 12.png`` or
   ``clip12.png``. The number is the whole run of digits that ends the stem, so ``clip12`` can
   only mean ``clip`` + 12 (a name that ends in a digit, like ``take2``, needs the separator:
   ``take2.0012.png``). Sequences keep their own numbers: frame 1001 of ``shot.1001.exr`` matches
   ``shot.1001.png``. Names are case-sensitive.
2. **Name.** A trimap whose stem equals the frame name: ``GT01.png`` for the photo ``GT01.jpg``
   (and, for a video, one trimap for all frames of ``clip.mp4`` when it is called ``clip.png``).
3. **Number.** A trimap whose stem *is* the frame number and nothing else: ``0012.png`` or
   ``12.png`` match frame 12 of any source. A stem with any prefix never matches by number alone:
   ``clip.000012.png`` belongs to ``clip``, so ``shotB.mp4`` run against a folder of ``clip``'s
   trimaps is refused (naming the missing frames) instead of silently using another shot's
   trimaps, and with ``clip.000020.png`` missing, ``other.000020.png`` is not taken for it. A
   bare-number trimap whose stem is also a frame name of the run (the photo ``7.jpg``) is matched
   by name only, once :meth:`TrimapIndex.check` has been told the run's frames, so a photo numbered
   7 by position cannot borrow ``7.png``.

Two files that fit the same rule for the same frame (``clip.12.png`` and ``clip.0012.png``, or
``a/0012.png`` and ``a/12.tif``) are an error naming both, never a guess.

A trimap whose size is the frame's turned by a quarter (800x497 for a 497x800 frame) was drawn on
the picture as stored, before an EXIF orientation tag (or a video's rotation) turned it upright.
That is refused with a hint to rotate the trimap, and ``--resize-trimaps`` refuses it too: resizing
would squash a portrait trimap onto a landscape frame and give a wrong matte without an error.

Values: a loaded trimap holds exactly 0 (definite background), 128 (unknown) and 255 (definite
foreground). Hand-drawn or resized trimaps carry anti-aliased edges, so values are quantised at one
third and two thirds of the type's range (8-bit: below 85 is 0, above 170 is 255, 85..170 is 128).
pymatting's 0/102/255 trimaps therefore read as 0/128/255. 16-bit files use the same fractions of
65535, float files (EXR) of 1.0. How many pixels of each file were moved is kept in
:attr:`TrimapIndex.remapped`, so the caller can warn once per file.

A trimap without unknown pixels is fine (the alpha is the trimap). A trimap with neither definite
foreground nor definite background is accepted too: FBA-style networks need no definite pixel, while
solvers that need both (pymatting's closed-form) must refuse it themselves; such files are listed
in :attr:`TrimapIndex.all_unknown` so the caller can warn.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from mattecli.errors import InputError
from mattecli.media.imageio import is_image_file, read_gray

# How many missing frames a "missing trimaps" error lists by name.
MISSING_SHOWN = 5

_RESIZE_HINT = "--resize-trimaps to resize with nearest-neighbour"
_ROTATE_HINT = (
    "the trimap was drawn on the picture as stored, before its orientation tag (EXIF, or a video's "
    "rotation) turned it; rotate the trimap to match the picture as viewers show it (resizing would "
    "distort it)"
)


def _rule_hint(kind: str) -> str:
    return (
        f"name each {kind} after its frame (GT01.png for GT01.jpg, clip.000012.png for frame 12 of "
        "clip.mp4) or after the frame number alone (000012.png)"
    )


# A stem that ends in a number: (prefix)(optional separator)(all trailing digits).
_NUMBERED_STEM = re.compile(r"(?P<prefix>.*?)(?P<sep>[._ -]?)(?P<number>\d+)")
# How many names of other sources a "no trimap" error lists.
_OTHER_NAMES_SHOWN = 3


def quantize_trimap(gray: np.ndarray) -> np.ndarray:
    """Map a single-channel trimap of any depth to uint8 with values exactly 0, 128 and 255.

    Thresholds are one third and two thirds of the type's range (8-bit: <85 -> 0, >170 -> 255,
    else 128), wide enough for anti-aliased edges and for pymatting's 0/102/255 convention.
    Float input is read on a 0..1 scale; NaN counts as unknown.
    """
    if gray.ndim != 2:
        raise ValueError(f"a trimap has one channel, got an array of shape {gray.shape}")
    if gray.dtype == np.uint8:
        low, high = 85, 170
    elif gray.dtype == np.uint16:
        low, high = 85 * 257, 170 * 257
    elif np.issubdtype(gray.dtype, np.floating):
        low, high = 1.0 / 3.0, 2.0 / 3.0
    else:
        raise TypeError(f"unsupported trimap dtype {gray.dtype}")
    out = np.full(gray.shape, 128, dtype=np.uint8)
    out[gray < low] = 0
    out[gray > high] = 255
    return out


def off_level_pixels(gray: np.ndarray) -> int:
    """How many pixels :func:`quantize_trimap` moves because they are not on a clean level.

    Clean levels are 0, the type's maximum and its mid-grey (128 for 8-bit; 32768 or 32896 for
    16-bit; 0.5 or 128/255 for float). A non-zero count on a trimap that was meant to be clean
    usually means it was resized with interpolation or saved as JPEG.
    """
    if gray.dtype == np.uint8:
        levels = (0, 128, 255)
    elif gray.dtype == np.uint16:
        levels = (0, 32768, 32896, 65535)
    else:
        levels = (0.0, 0.5, 128.0 / 255.0, 1.0)
    return int(gray.size - np.count_nonzero(np.isin(gray, np.asarray(levels, dtype=gray.dtype))))


def trimap_from_alpha(
    alpha: np.ndarray, unknown_width: int, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Make a 0/128/255 trimap from a ground-truth alpha, as benchmarks and training do.

    Unknown is everything within ``unknown_width`` pixels of a non-zero alpha (dilation of
    ``alpha > 0``) that is not inside the fully opaque region shrunk by ``unknown_width`` (erosion
    of ``alpha == 1``); the shrunk opaque region is 255, the rest 0. Both use an elliptical kernel
    of diameter ``2 * unknown_width + 1``, so the band reaches ``unknown_width`` pixels to either
    side of every soft edge and the known regions always agree with the alpha exactly.

    With ``rng``, the outward and inward widths are drawn independently from
    ``1..unknown_width`` (the usual training augmentation); without, both are ``unknown_width``.
    ``alpha`` may be uint8, uint16 or float in [0, 1].
    """
    if unknown_width < 0:
        raise ValueError(f"unknown_width must be >= 0, got {unknown_width}")
    if alpha.ndim != 2:
        raise ValueError(f"alpha must be H x W, got shape {alpha.shape}")
    opaque_value = np.iinfo(alpha.dtype).max if np.issubdtype(alpha.dtype, np.integer) else 1.0
    if rng is not None and unknown_width > 1:
        grow, shrink = (int(w) for w in rng.integers(1, unknown_width + 1, size=2))
    else:
        grow = shrink = unknown_width
    covered = (alpha > 0).astype(np.uint8)
    opaque = (alpha >= opaque_value).astype(np.uint8)
    if grow > 0:
        covered = cv2.dilate(covered, _ellipse(grow))
    if shrink > 0:
        opaque = cv2.erode(opaque, _ellipse(shrink))
    trimap = np.zeros(alpha.shape, dtype=np.uint8)
    trimap[covered > 0] = 128
    trimap[opaque > 0] = 255
    return trimap


def _ellipse(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


class TrimapIndex:
    """The trimaps of a run: which file belongs to which frame, and loading them clean.

    After loading, :attr:`remapped` maps each file that had off-level values to the number of
    pixels that were quantised, and :attr:`all_unknown` holds files with neither definite
    foreground nor background, so the caller can warn about them once.

    The matching rules serve masks too (``run --mask-dir``): ``kind`` and ``option`` name the
    files and the option in the errors of :meth:`open`, :meth:`find` and :meth:`check`.
    """

    def __init__(
        self,
        spec: Path,
        files: list[Path],
        *,
        single: bool,
        kind: str = "trimap",
        option: str = "--trimap-dir",
    ) -> None:
        self.spec = spec
        self.single = single
        self.kind, self.option = kind, option
        self.remapped: dict[Path, int] = {}
        self.all_unknown: set[Path] = set()
        self._by_stem: dict[str, list[Path]] = {}
        self._by_name_number: dict[tuple[str, int], list[Path]] = {}
        self._by_number: dict[int, list[Path]] = {}
        self._run_names: frozenset[str] = frozenset()
        self._cache: tuple[tuple[Path, tuple[int, int], bool], np.ndarray] | None = None
        for path in files:
            self._by_stem.setdefault(path.stem, []).append(path)
            match = _NUMBERED_STEM.fullmatch(path.stem)
            if match is None:
                continue
            number = int(match["number"])
            self._by_name_number.setdefault((match["prefix"], number), []).append(path)
            if not match["prefix"] and not match["sep"]:  # the stem is the number alone
                self._by_number.setdefault(number, []).append(path)

    @classmethod
    def open(cls, spec: Path, *, kind: str = "trimap", option: str = "--trimap-dir") -> TrimapIndex:
        """Index a folder of trimaps, or take one image file as the trimap of every frame."""
        spec = Path(spec)
        if spec.is_file():
            if not is_image_file(spec):
                raise InputError(
                    f"not an image file, so it cannot be a {kind}", path=spec, hint="give a PNG, TIFF or EXR"
                )
            return cls(spec, [spec], single=True, kind=kind, option=option)
        if not spec.is_dir():
            raise InputError(
                f"{kind} folder or file not found",
                path=spec,
                hint=f"{option} takes a folder of {kind}s or one {kind} image for every frame",
            )
        files = sorted(
            p for p in spec.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_file(p)
        )
        if not files:
            raise InputError(f"no {kind} images in this folder", path=spec, hint=_rule_hint(kind))
        return cls(spec, files, single=False, kind=kind, option=option)

    def find(self, name: str, index: int) -> Path | None:
        """The trimap file for frame ``index`` of ``name``, or None; see the module docstring."""
        if self.single:
            return self.spec
        for candidates in (self._by_name_number.get((name, index)), self._by_stem.get(name)):
            if candidates:
                return self._only(candidates, name, index)
        by_number = [p for p in self._by_number.get(index, ()) if p.stem not in self._run_names]
        return self._only(by_number, name, index) if by_number else None

    def check(self, frames: Iterable[tuple[str, int]]) -> None:
        """Make sure every ``(name, index)`` has exactly one trimap, before any frame is processed.

        Also fixes the run's frame names: from now on a trimap named after one of them is matched
        by name only (rule 3 of the module docstring skips it).
        """
        frames = list(frames)
        self._run_names = frozenset(name for name, _ in frames)
        missing = [(name, index) for name, index in frames if self.find(name, index) is None]
        if not missing:
            return
        shown = ", ".join(f"{name} (frame {index})" for name, index in missing[:MISSING_SHOWN])
        more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
        raise InputError(
            f"no {self.kind} for {len(missing)} of {len(frames)} frames: {shown}{more}"
            + (self._other_sources() if len(missing) == len(frames) else ""),
            path=self.spec,
            hint=_rule_hint(self.kind),
        )

    def _other_sources(self) -> str:
        """A note naming the sources the folder's numbered trimaps are for (when no frame matched).

        ``run shotB.mp4 -t clip_trimaps/`` should say that the folder holds ``clip``'s trimaps.
        """
        others = sorted({prefix for prefix, _ in self._by_name_number if prefix} - self._run_names)
        if not others:
            return ""
        shown = ", ".join(repr(name) for name in others[:_OTHER_NAMES_SHOWN])
        more = f" and {len(others) - _OTHER_NAMES_SHOWN} more" if len(others) > _OTHER_NAMES_SHOWN else ""
        return f"; the numbered {self.kind}s here are named for {shown}{more}, not for this run's inputs"

    def load(self, name: str, index: int, size: tuple[int, int], *, resize: bool = False) -> np.ndarray:
        """The frame's trimap as read-only uint8 H x W with values exactly 0, 128 and 255.

        ``size`` is the frame's (height, width). A trimap of another size is an error unless
        ``resize`` is set; then it is resized with nearest-neighbour after quantisation, so no new
        values appear.
        """
        path = self.find(name, index)
        if path is None:
            raise InputError(
                f"no trimap for frame {name}", path=self.spec, frame=index, hint=_rule_hint("trimap")
            )
        key = (path, size, resize)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        gray = read_gray(path)
        trimap = quantize_trimap(gray)
        moved = off_level_pixels(gray)
        if moved:
            self.remapped[path] = moved
        if not np.any(trimap != 128):
            self.all_unknown.add(path)
        height, width = size
        if trimap.shape == (width, height) and height != width:
            raise InputError(
                f"trimap is {trimap.shape[0]}x{trimap.shape[1]} (HxW), the {height}x{width} frame "
                f"{name} turned by a quarter",
                path=path,
                frame=index,
                hint=_ROTATE_HINT,
            )
        if trimap.shape != (height, width):
            if not resize:
                raise InputError(
                    f"trimap is {trimap.shape[0]}x{trimap.shape[1]} (HxW) but frame {name} is "
                    f"{height}x{width}",
                    path=path,
                    frame=index,
                    hint=_RESIZE_HINT,
                )
            trimap = cv2.resize(trimap, (width, height), interpolation=cv2.INTER_NEAREST)
        trimap.setflags(write=False)
        if self.single:
            self._cache = (key, trimap)
        return trimap

    def _only(self, candidates: list[Path], name: str, index: int) -> Path:
        if len(candidates) > 1:
            listed = " and ".join(p.name for p in candidates[:2])
            raise InputError(
                f"{len(candidates)} {self.kind}s fit frame {name}: {listed}",
                path=self.spec,
                frame=index,
                hint=f"keep one {self.kind} per frame (remove or rename the others)",
            )
        return candidates[0]
