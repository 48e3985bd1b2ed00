"""Where each frame's trimap comes from: trimap files, trimaps made from masks, or keyframes moved by motion.

The pipeline asks a :class:`TrimapSource` for the trimap of each frame in decoding order, so a
source may carry state from frame to frame (keyframe propagation does; files and masks do not),
and may read frames ahead in a pass of its own. A stateful source cannot start in the middle of
a clip: :meth:`TrimapSource.restart_index` says from which frame a resumed run has to
recompute so that its frames come out as an uninterrupted run's would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from mattecli.media.frame import Frame
from mattecli.media.trimaps import TrimapIndex
from mattecli.summary import Reporter

# How many trimap file names a warning lists.
NAMES_SHOWN = 3
# Decodes the run's frames of the current input with ``first <= index <= last``, in order.
FrameReader = Callable[[int, int], Iterator[Frame]]


class TrimapSource(Protocol):
    """The trimaps of a run, frame by frame."""

    def check(self, frames: Iterable[tuple[str, int]]) -> None:
        """Raise :class:`mattecli.errors.InputError` unless every ``(name, index)`` can get a trimap."""

    def begin_input(self, frames: Sequence[tuple[str, int]] | None, read: FrameReader) -> None:
        """A new input starts (its frames in the run's range, when countable): drop carried state.

        ``read(first, last)`` decodes the run's frames of the input from ``first`` to ``last`` in a
        pass of its own, for a source that must look ahead (keyframes carried backwards).
        """

    def restart_index(self, first_incomplete: int) -> int:
        """The frame a resumed run recomputes from, when ``first_incomplete`` is the first one not written."""

    def trimap(self, frame: Frame, *, resize: bool) -> np.ndarray:
        """The frame's trimap: read-only uint8 H x W with values exactly 0, 128 and 255."""

    def warn(self, reporter: Reporter) -> None:
        """Tell the reporter, once, about files that needed fixing since the last call."""


class FileTrimaps:
    """One trimap file per frame (or one for all), matched by name or number: ``--trimap-dir``."""

    def __init__(self, index: TrimapIndex) -> None:
        self.index = index
        self._warned: set[Path] = set()

    @classmethod
    def open(cls, spec: Path) -> FileTrimaps:
        return cls(TrimapIndex.open(spec))

    def check(self, frames: Iterable[tuple[str, int]]) -> None:
        self.index.check(frames)

    def begin_input(self, frames: Sequence[tuple[str, int]] | None, read: FrameReader) -> None:
        """Nothing is carried between frames."""

    def restart_index(self, first_incomplete: int) -> int:
        return first_incomplete

    def trimap(self, frame: Frame, *, resize: bool) -> np.ndarray:
        return self.index.load(frame.name, frame.index, (frame.height, frame.width), resize=resize)

    def warn(self, reporter: Reporter) -> None:
        warn_fixed_trimaps(self.index, self._warned, reporter)


def warn_fixed_trimaps(index: TrimapIndex, warned: set[Path], reporter: Reporter) -> None:
    """One line about trimaps that were not clean 0/128/255, and one about those with no definite region."""
    new = [path for path in index.remapped if path not in warned]
    if new:
        shown = ", ".join(f"{p.name} ({index.remapped[p]} px)" for p in new[:NAMES_SHOWN])
        more = f" and {len(new) - NAMES_SHOWN} more" if len(new) > NAMES_SHOWN else ""
        reporter.warn(
            f"{len(new)} trimap(s) had values other than 0/128/255 (anti-aliased or resized), "
            f"quantised with thresholds 85 and 170: {shown}{more}"
        )
    empty = [path for path in sorted(index.all_unknown) if path not in warned]
    if empty:
        shown = ", ".join(p.name for p in empty[:NAMES_SHOWN])
        reporter.warn(f"{len(empty)} trimap(s) are unknown everywhere (no definite region): {shown}")
    warned.update(new, empty)
