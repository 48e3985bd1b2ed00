"""Stage timing taken where the frame path is put together, not inside the stages.

The stages (decoding, building inputs, the engine call, fusion, writing) know nothing of clocks:
the code that chains them wraps each one once with :func:`timed`, so a reader sees in one place
which call is charged to which stage of the summary (:data:`mattecli.summary.STAGES`). A stage
called from inside another (the engine inside tile stitching) pauses the outer one, so every
second is charged once (:class:`mattecli.summary.StageClock`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Iterator
from typing import ParamSpec, TypeVar

from mattecli.media.frame import Frame
from mattecli.summary import StageClock

P = ParamSpec("P")
R = TypeVar("R")


def timed(clock: StageClock, stage: str, function: Callable[P, R]) -> Callable[P, R]:
    """``function``, with the time of each call charged to ``stage`` of ``clock``."""

    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        with clock.measure(stage):
            return function(*args, **kwargs)

    return call


def timed_frames(frames: Iterator[Frame], clock: StageClock) -> Generator[Frame, None, None]:
    """Pass frames through, charging the time spent producing each to ``decode`` (in this thread)."""
    produce = timed(clock, "decode", next)
    try:
        while True:
            frame = produce(frames, None)
            if frame is None:
                return
            yield frame
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
