"""What a ``run`` did, per input and in total: frame counts, failures and seconds per pipeline stage.

Stage times are *exclusive*: a stage measured inside another (building the inputs of a TTA view
inside inference) pauses the outer one, so every second of a thread's work is charged to exactly
one stage. Decoding is timed in the decoder's thread and writing in the writer's thread, so with
the threads overlapping the stages can add up to more than the wall time; the gap between the two
says how well the overlap works. These numbers feed the benchmarks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

STAGES = ("decode", "preprocess", "engine", "fusion", "write")


class StageClock:
    """Accumulates seconds per stage from any thread; nested stages pause their parent."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._lock = threading.Lock()
        self._local = threading.local()

    def _charge(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        if stage not in self.seconds:
            raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
        stack: list[list[Any]] = self._local.__dict__.setdefault("stack", [])
        now = time.perf_counter()
        if stack:
            outer = stack[-1]
            self._charge(outer[0], now - outer[1])
        stack.append([stage, now])
        try:
            yield
        finally:
            now = time.perf_counter()
            self._charge(stage, now - stack.pop()[1])
            if stack:
                stack[-1][1] = now  # the parent resumes from here

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.seconds)


@dataclass
class InputSummary:
    """The outcome of one input. ``frames_total`` is the frames selected by the range (None if unknown)."""

    path: str
    kind: str | None = None  # "video", "sequence", "stills"; None if the input could not be opened
    frames_total: int | None = None
    frames_written: int = 0
    frames_skipped: int = 0  # complete outputs found with --resume
    failed: bool = False
    error: str | None = None
    wall_seconds: float = 0.0
    clock: StageClock = field(default_factory=StageClock)

    @property
    def fps(self) -> float | None:
        """Frames written per second of this input's wall time."""
        if self.frames_written == 0 or self.wall_seconds <= 0:
            return None
        return self.frames_written / self.wall_seconds

    def fail(self, message: str) -> None:
        self.failed = True
        self.error = message

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "frames_total": self.frames_total,
            "frames_written": self.frames_written,
            "frames_skipped": self.frames_skipped,
            "failed": self.failed,
            "error": self.error,
            "seconds": _rounded(self.clock.snapshot()),
            "wall_seconds": round(self.wall_seconds, 4),
            "fps": None if self.fps is None else round(self.fps, 3),
        }

    def describe(self) -> str:
        """One human line about what was written (a failure is reported by its ``error`` line)."""
        parts = [f"{self.frames_written} {_frames(self.frames_written)} written"]
        if self.frames_skipped:
            parts.append(f"{self.frames_skipped} already complete")
        speed = f", {self.fps:.2f} fps" if self.fps is not None else ""
        return f"{self.path}: {', '.join(parts)} in {self.wall_seconds:.1f} s{speed}"


@dataclass
class RunSummary:
    """Every input of one run, plus what ran them (for scripts and benchmarks)."""

    inputs: list[InputSummary]
    run: dict[str, Any] = field(default_factory=dict)  # model, engine, device, tiling, TTA

    @property
    def failed(self) -> list[InputSummary]:
        return [item for item in self.inputs if item.failed]

    def totals(self) -> dict[str, Any]:
        seconds = dict.fromkeys(STAGES, 0.0)
        for item in self.inputs:
            for stage, value in item.clock.snapshot().items():
                seconds[stage] += value
        written = sum(item.frames_written for item in self.inputs)
        wall = sum(item.wall_seconds for item in self.inputs)
        known = [item.frames_total for item in self.inputs]
        return {
            "inputs": len(self.inputs),
            "failed": len(self.failed),
            "frames_total": None if None in known else sum(k for k in known if k is not None),
            "frames_written": written,
            "frames_skipped": sum(item.frames_skipped for item in self.inputs),
            "seconds": _rounded(seconds),
            "wall_seconds": round(wall, 4),
            "fps": round(written / wall, 3) if written and wall > 0 else None,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.run, "inputs": [item.to_json() for item in self.inputs], "totals": self.totals()}

    def describe(self) -> str:
        """The closing human line of a run."""
        totals = self.totals()
        text = f"{totals['frames_written']} {_frames(totals['frames_written'])} written"
        if totals["frames_skipped"]:
            text += f", {totals['frames_skipped']} already complete"
        text += f" from {totals['inputs']} {'input' if totals['inputs'] == 1 else 'inputs'}"
        if totals["fps"] is not None:
            text += f" ({totals['fps']:.2f} fps)"
        if self.failed:
            text += f"; {len(self.failed)} failed"
        return text


class Reporter:
    """Where the pipeline tells about progress; this base class shows nothing (library use, tests).

    It lives here, free of heavy imports, so the command can subclass it without loading the pipeline.

    :meth:`advance` is called from the writer thread.
    """

    def input_started(self, item: InputSummary, total: int | None, done: int) -> None:
        """An input begins: ``total`` frames in its range (None if unknown), ``done`` already complete."""

    def advance(self) -> None:
        """One more frame of the current input is written (or found complete)."""

    def input_finished(self, item: InputSummary) -> None:
        """An input is done, failed or not."""

    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the run."""


def _frames(count: int) -> str:
    return "frame" if count == 1 else "frames"


def _rounded(seconds: dict[str, float]) -> dict[str, float]:
    return {stage: round(value, 4) for stage, value in seconds.items()}
