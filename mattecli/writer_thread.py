"""The write stage of the frame path: outputs are encoded and written in a thread of their own.

Encoding (PNG deflate, EXR, ProRes) releases the GIL, so writing frame *n* in this thread
overlaps inference of frame *n+1*. The queue is bounded so that 4K frames never pile up when
the disk is slower than the model, and a failure here reaches the frame loop at its next hand-over
instead of being lost in the thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from types import TracebackType

# Frames waiting for the writer thread: enough to absorb a slow PNG or a ProRes flush, few
# enough that 4K frames do not pile up.
DEFAULT_WRITE_QUEUE = 4
# How often a blocked hand-over looks again at whether the writer has failed.
_POLL_S = 0.05


class _Stop:
    """Queue marker: no more items."""


class BackgroundWriter:
    """Runs ``write(*item)`` for each submitted item in one thread, at most ``maxsize`` items behind.

    A failure in the thread is raised in the submitting thread at its next :meth:`submit` or at
    :meth:`close`, with its own type and traceback; after a failure the thread discards what is
    still queued, so the submitter never blocks on a dead writer. Use as a context manager: an
    exit waits for every queued item to be written, except an exit on an interrupt
    (KeyboardInterrupt, SystemExit), which drops what is queued.
    """

    def __init__(self, write: Callable[..., None], maxsize: int = DEFAULT_WRITE_QUEUE) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize}")
        self._write = write
        self._queue: queue.Queue[object] = queue.Queue(maxsize)
        self._error: BaseException | None = None
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mattecli-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, _Stop):
                return
            if self._error is not None or self._cancelled.is_set():
                continue
            try:
                self._write(*item)  # type: ignore[misc]
            except BaseException as exc:  # handed to the submitter, which raises it
                self._error = exc

    def _raise_failure(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, *item: object) -> None:
        """Queue one item; blocks while the queue is full; raises the thread's failure if it had one."""
        while True:
            self._raise_failure()
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Wait until everything queued is written; raise the thread's failure if it had one."""
        if self._thread.is_alive():
            self._queue.put(_Stop())
            self._thread.join()
        self._raise_failure()

    def abort(self) -> None:
        """Drop what is queued and stop the thread (after the item it is writing, if any)."""
        self._cancelled.set()
        if self._thread.is_alive():
            self._queue.put(_Stop())  # the thread discards items from now on, so there is room soon
            self._thread.join()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        elif issubclass(exc_type, Exception):
            # One frame failed: the frames computed before it are good, so they are still written
            # (a --resume then starts at the failed frame). The first failure is the one reported.
            with contextlib.suppress(Exception):
                self.close()
        else:  # interrupted: stop as soon as possible
            self.abort()
