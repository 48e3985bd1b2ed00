"""The decode stage of the frame path: one source's frames, decoded a few ahead in a thread.

Decoding runs in :func:`mattecli.media.prefetch.prefetch`'s thread, so it overlaps inference.
When the run stops early (a failed frame, Ctrl-C), that thread may be in the middle of decoding
the next frame: inside a PyAV or OpenCV call, holding the source's decoder. The prefetcher asks
it to stop and waits a few seconds, but a slow frame (a large EXR, a stalled network file) can
outlast that wait, and closing the source from the main thread then would pull the decoder out
from under it ("generator already executing" at best, a freed FFmpeg context at worst).

So the frames pass through a guard that knows whether a thread is inside the source. Leaving
:func:`decoded_frames` stops the prefetcher, then waits, however long the frame takes, until no
thread is inside the source and none can enter it again, and only then closes the source.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from mattecli.media.frame import Frame
from mattecli.media.prefetch import prefetch
from mattecli.media.sources import Source
from mattecli.stage_timing import timed_frames
from mattecli.summary import StageClock


class _Guarded:
    """An iterator that one thread at a time may be inside; :meth:`close` waits until none is."""

    def __init__(self, frames: Iterator[Frame]) -> None:
        self._frames = frames
        self._changed = threading.Condition()
        self._inside = False
        self._closed = False

    def __iter__(self) -> _Guarded:
        return self

    def __next__(self) -> Frame:
        with self._changed:
            if self._closed:
                raise StopIteration
            self._inside = True
        try:
            return next(self._frames)
        finally:
            with self._changed:
                self._inside = False
                self._changed.notify_all()

    def close(self) -> None:
        """Wait until no thread is inside, refuse any later entry, then close the frames (once)."""
        with self._changed:  # held while closing, so two threads closing at once close it once
            while self._inside:
                self._changed.wait()
            if self._closed:
                return
            self._closed = True
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()


@contextmanager
def decoded_frames(
    source: Source, start: int | None, end: int | None, every: int, *, ahead: int, clock: StageClock
) -> Iterator[Iterator[Frame]]:
    """The selected frames of ``source``, decoded ``ahead`` frames ahead in a thread (0: in this one).

    Decoding is charged to the ``decode`` stage of ``clock``, in the thread that decodes. On
    exit, however it happens, the decoder has left the source and the source is closed.
    """
    guarded = _Guarded(timed_frames(source.frames(start, end, every, prefetch=0), clock))
    frames: Iterator[Frame] = prefetch(guarded, ahead) if ahead > 0 else guarded
    try:
        yield frames
    finally:
        close = getattr(frames, "close", None)
        try:
            if close is not None:
                close()  # the prefetcher: its thread stops before starting another frame
        finally:
            guarded.close()  # waits for a frame still being decoded
            source.close()
