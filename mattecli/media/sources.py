"""Turn what the user points at (a video, a folder, a pattern, a photo) into a stream of frames.

Every kind of input answers the same questions (:class:`SourceInfo`) and yields the same
:class:`~mattecli.media.frame.Frame`, so the pipeline, trimap matching and sinks never ask
where pixels came from. Frame numbering follows the comments on ``Frame.index``.

Frame ranges (``--start/--end/--every``) are **inclusive at both ends** and count in
``Frame.index`` values, the way render farms and compositors write ranges ("1001-1100"): a
farm job for chunk 1001-1050 passes ``start=1001, end=1050``. ``every=N`` keeps the frames whose
index is ``start + k*N`` (counting from the first frame of the source when ``start`` is
omitted). A range that selects nothing is an error, not an empty run, because a silent empty
chunk on a farm looks like success.

Decoding runs in a background thread (:func:`~mattecli.media.prefetch.prefetch`) a few frames
ahead of the caller by default; ``prefetch=0`` decodes in the caller's thread.
"""

from __future__ import annotations

import re
import weakref
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

from mattecli.errors import InputError
from mattecli.media.frame import Frame
from mattecli.media.imageio import is_image_file
from mattecli.media.prefetch import prefetch as prefetch_in_thread

SourceKind = Literal["video", "sequence", "stills"]

# Frames decoded ahead of the consumer by default: enough to hide decode jitter, small enough
# that a few 4K frames, not a whole shot, sit in memory.
DEFAULT_PREFETCH = 8

_DIGIT_RUNS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[object, ...]:
    """Sort key that orders embedded numbers by value: ``f2.png`` before ``f10.png``.

    Text parts compare case-insensitively. The original string is the last element, so names
    that differ only in case or zero padding ("f01", "f1") still sort in a fixed order.
    """
    parts = _DIGIT_RUNS.split(text)  # text at even positions, digit runs at odd positions
    key: list[object] = [int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)]
    key.append(text)
    return tuple(key)


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What a source holds, known before any frame is decoded for the pipeline."""

    kind: SourceKind  # "video", "sequence" (numbered image files) or "stills" (unrelated images)
    width: int  # as the frames come out (after rotation); for stills, the first image's
    height: int
    fps: Fraction | None  # video only
    frame_count: int | None  # None when a video's container gives neither count nor duration
    bit_depth: int  # bits per component as stored: 8, 10, 12, 16; 32 for float (EXR)
    has_audio: bool = False
    # Counter-clockwise degrees (0, 90, 180, 270) by which video frames were turned to come out
    # upright, from the container's display matrix. A phone clip tagged "rotate=90" (the old
    # clockwise tag) reports 270.
    rotation: int = 0


class Source(ABC):
    """An opened input. Use as a context manager, or call :meth:`close`, to release files."""

    def __init__(self, path: Path, info: SourceInfo) -> None:
        self.path = path
        self.info = info
        self._live: weakref.WeakSet[Iterator[Frame]] = weakref.WeakSet()

    def frames(
        self,
        start: int | None = None,
        end: int | None = None,
        every: int = 1,
        *,
        prefetch: int = DEFAULT_PREFETCH,
    ) -> Iterator[Frame]:
        """Frames with ``start <= index <= end`` (both inclusive), every ``every``-th from ``start``.

        Each call is an independent pass with its own decoder, so two passes may run at once.
        ``prefetch`` is how many frames a background thread decodes ahead; 0 decodes in the
        caller's thread.
        """
        if every < 1:
            raise InputError(
                f"--every must be 1 or more, not {every}", path=self.path, hint="use 1 for every frame"
            )
        if start is not None and end is not None and end < start:
            raise InputError(
                f"the range ends ({end}) before it starts ({start})",
                path=self.path,
                hint="--end is the last frame number to process, inclusive",
            )
        frames = self._checked(self._frames(start, end, every), start, end)
        if prefetch > 0:
            frames = prefetch_in_thread(frames, prefetch)
        self._live.add(frames)
        return frames

    def _checked(
        self, frames: Generator[Frame, None, None], start: int | None, end: int | None
    ) -> Iterator[Frame]:
        """Pass frames through; at the end, refuse a range that selected nothing."""
        try:
            count = 0
            for frame in frames:
                count += 1
                yield frame
            if count == 0:
                wanted = f"{'start' if start is None else start}-{'end' if end is None else end}"
                raise InputError(
                    f"no frames in the range {wanted}",
                    path=self.path,
                    hint=f"this source holds {self._describe_range()}",
                )
        finally:
            frames.close()

    @abstractmethod
    def _frames(self, start: int | None, end: int | None, every: int) -> Generator[Frame, None, None]:
        """Decode the selected frames in order (a generator that releases its files when closed)."""

    @abstractmethod
    def frame_ids(self) -> list[tuple[str, int]]:
        """``(name, index)`` of every frame, in order, without decoding pixels."""

    def _describe_range(self) -> str:
        if self.info.frame_count is None:
            return "an unknown number of frames"
        ids = self.frame_ids()
        return f"frames {ids[0][1]}-{ids[-1][1]}"

    def close(self) -> None:
        """Stop every frame iterator this source handed out that is still running."""
        for frames in list(self._live):
            frames.close()
        self._live.clear()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {self.info})"


def selected(index: int, start: int, end: int | None, every: int) -> bool:
    """Whether a frame number falls in an inclusive range and on its ``every`` stride."""
    return index >= start and (end is None or index <= end) and (index - start) % every == 0


def is_pattern(name: str) -> bool:
    """Whether a file name is a frame pattern: printf (``%04d``), hashes (``####``) or a glob."""
    return bool(re.search(r"%0?\d*d|#|[*?\[]", name))


def open_source(spec: str | Path) -> Source:
    """Open a video, an image folder, a frame pattern or a single still.

    A file with an image suffix (PNG, JPEG, TIFF, EXR, ...) is a still; any other file is
    handed to FFmpeg, so whatever it reads (MP4, MOV, MKV, MXF, GIF, ...) works without a list
    of extensions here. A folder holds a numbered sequence or a set of stills. A name with
    ``%04d``, ``####`` or glob characters is a pattern inside an existing folder.
    """
    from mattecli.media.sequence import open_folder, open_pattern, open_still
    from mattecli.media.video import VideoSource

    path = Path(spec).expanduser()
    if path.is_dir():
        return open_folder(path)
    if path.is_file():
        return open_still(path) if is_image_file(path) else VideoSource(path)
    if is_pattern(path.name):
        return open_pattern(path)
    if path.exists():
        raise InputError("not a file or folder that can be read", path=path)
    raise InputError(
        "no such file or folder",
        path=path,
        hint="give a video file, a folder of images, a pattern like shot.%04d.exr or shot.*.png, or an image",
    )
