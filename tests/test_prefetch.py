"""The background-thread prefetcher: order, errors, early stop without leaks, bounded read-ahead."""

from __future__ import annotations

import gc
import threading
import time
import traceback

import pytest

from mattecli.media.prefetch import prefetch


class ProducerBroke(RuntimeError):
    pass


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mattecli-prefetch"]


def _wait_for(condition, timeout: float = 5.0) -> bool:
    """Poll until ``condition()`` holds; a deadline, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


class Counting:
    """An endless source that records how many items were asked for and whether it was closed."""

    def __init__(self) -> None:
        self.produced = 0
        self.closed_in: threading.Thread | None = None

    def __iter__(self):
        try:
            while True:
                self.produced += 1
                yield self.produced - 1
        finally:
            self.closed_in = threading.current_thread()


def test_keeps_order_and_runs_in_another_thread() -> None:
    seen_threads = set()

    def source():
        for i in range(200):
            seen_threads.add(threading.current_thread().name)
            yield i

    assert list(prefetch(source(), maxsize=3)) == list(range(200))
    assert seen_threads == {"mattecli-prefetch"}
    assert _wait_for(lambda: not _prefetch_threads())


def test_producer_exception_reaches_consumer_with_its_type_after_earlier_items() -> None:
    def source():
        yield "a"
        yield "b"
        raise ProducerBroke("frame 2 is bad")

    got = []
    with pytest.raises(ProducerBroke, match="frame 2 is bad") as info:
        for item in prefetch(source(), maxsize=4):
            got.append(item)
    assert got == ["a", "b"]
    # The traceback still shows where the producer failed.
    assert "source" in "".join(traceback.format_tb(info.value.__traceback__))
    assert _wait_for(lambda: not _prefetch_threads())


def test_early_close_stops_producer_and_closes_source_in_its_thread() -> None:
    before = threading.active_count()
    source = Counting()
    frames = prefetch(source, maxsize=2)
    assert [next(frames) for _ in range(3)] == [0, 1, 2]
    assert len(_prefetch_threads()) == 1
    frames.close()
    assert not _prefetch_threads()  # close() joins the thread
    assert threading.active_count() == before
    assert source.closed_in is not None and source.closed_in.name == "mattecli-prefetch"
    stopped_at = source.produced
    assert stopped_at <= 3 + 2
    time.sleep(0.1)
    assert source.produced == stopped_at  # nothing kept running after close


def test_break_and_garbage_collection_stop_the_thread() -> None:
    before = threading.active_count()
    for item in prefetch(Counting(), maxsize=2):
        if item == 5:
            break
    gc.collect()
    assert _wait_for(lambda: threading.active_count() == before)

    frames = prefetch(Counting(), maxsize=2)
    next(frames)
    del frames
    gc.collect()
    assert _wait_for(lambda: threading.active_count() == before)


def test_unused_iterator_starts_no_thread() -> None:
    before = threading.active_count()
    frames = prefetch(Counting(), maxsize=2)
    assert threading.active_count() == before
    del frames


@pytest.mark.parametrize("maxsize", [1, 3])
def test_producer_never_more_than_maxsize_ahead(maxsize: int) -> None:
    source = Counting()
    frames = prefetch(source, maxsize=maxsize)
    received = 0
    try:
        for target in (1, 2, 7):
            while received < target:
                assert next(frames) == received
                received += 1
            # ``produced`` counts items the source was asked for, the one in progress included.
            assert _wait_for(lambda r=received: source.produced >= r + maxsize)
            time.sleep(0.05)  # room for a runaway producer to overshoot, if it could
            assert source.produced == received + maxsize
    finally:
        frames.close()


def test_rejects_empty_queue() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        prefetch([1, 2], maxsize=0)
