"""Run an iterator in a background thread, a bounded number of items ahead of its consumer.

Decoding a frame (FFmpeg, PNG inflate, EXR decompression) releases the GIL, so doing it in a
thread overlaps it with the inference that consumes the frames. The bound keeps memory flat: a
4K float frame is about 100 MB, so the producer must never race ahead of a slow consumer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

# How long a blocked producer sleeps before it looks again at whether the consumer has gone.
_POLL_S = 0.05
# How long the consumer waits for the producer thread to finish after it stops early. The producer
# can only notice the stop between items, so this is one item's production time at most in practice.
_JOIN_S = 5.0


class _Done:
    """Queue marker: the producer has nothing more to give."""


class _Failed:
    """Queue marker carrying the producer's exception to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(iterable: Iterable[T], maxsize: int = 8) -> Iterator[T]:
    """Yield the items of ``iterable``, produced by a daemon thread at most ``maxsize`` items ahead.

    * Order is kept.
    * An exception raised by the producer is raised again in the consumer, with its own type and
      traceback, at the point in the stream where it happened (the items before it arrive first).
    * When the consumer stops early (``close()``, ``break`` out of a ``for`` loop, or the iterator
      being garbage-collected), the producer stops before starting another item, the source
      iterator is closed in the producer's thread (so a decoder closes its file), and the
      thread is joined: nothing keeps running.
    * The thread starts on the first ``next()``, so an iterator that is never used costs nothing.

    "Ahead" counts items the consumer has not yet received, including the one being produced: a
    semaphore with ``maxsize`` slots is taken *before* the producer asks for the next item.
    """
    if maxsize < 1:
        raise ValueError(f"maxsize must be at least 1, not {maxsize}")
    return _consume(iterable, maxsize)


def _consume(iterable: Iterable[T], maxsize: int) -> Iterator[T]:
    items: queue.SimpleQueue[object] = queue.SimpleQueue()
    slots = threading.Semaphore(maxsize)
    stop = threading.Event()
    thread = threading.Thread(
        target=_produce, args=(iter(iterable), items, slots, stop), name="mattecli-prefetch", daemon=True
    )
    thread.start()
    try:
        while True:
            item = items.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, _Failed):
                raise item.error
            slots.release()
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        slots.release()  # wake a producer waiting for a slot so that it sees ``stop`` at once
        thread.join(_JOIN_S)


def _produce(
    source: Iterator[T], items: queue.SimpleQueue[object], slots: threading.Semaphore, stop: threading.Event
) -> None:
    outcome: _Done | _Failed = _Done()
    try:
        while True:
            while not slots.acquire(timeout=_POLL_S):
                if stop.is_set():
                    return
            if stop.is_set():
                return
            try:
                item = next(source)
            except StopIteration:
                return
            items.put(item)
    except BaseException as exc:  # handed to the consumer, which raises it in its own thread
        outcome = _Failed(exc)
    finally:
        # Close the source here, in the thread that ran it, and before the final marker, so that
        # an error while closing (a muxer or decoder failing on flush) still reaches the consumer.
        close = getattr(source, "close", None)
        try:
            if close is not None:
                close()
        except BaseException as exc:
            if isinstance(outcome, _Done):
                outcome = _Failed(exc)
        items.put(outcome)
