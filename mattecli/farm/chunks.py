"""A job's frames split into chunks: inclusive ranges of frame numbers that machines run independently.

A chunk is a range of frame *numbers* (what ``--start``/``--end`` take), not of positions, so a
chunk written as ``run ... --start A --end B`` selects exactly the frames the single-machine run
selects there: the same numbers, on the same ``--every`` stride (A is always a selected frame).
With several inputs the chunks split the sorted union of their frame numbers, and a chunk runs
only the inputs that have frames in its range (``run`` refuses an input with none there).

The split is even: N chunks of M frame numbers get ``M // N`` or ``M // N + 1`` each, so the
chunks a farm manager runs in parallel finish at about the same time. The same function splits
for ``mattecli plan`` (which picks N from a chunk size), ``run --chunk K/N`` and the Ray executor,
so a chunk means the same frames everywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mattecli.errors import InputError
from mattecli.run_inputs import RunInput, expand_inputs, open_input
from mattecli.run_options import RunOptions

_CHUNK = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*\Z")


@dataclass(frozen=True)
class Chunk:
    """The ``number``-th (1-based) of ``count`` chunks: frame numbers ``first``..``last`` inclusive."""

    number: int
    count: int
    first: int
    last: int
    frames: int  # distinct frame numbers in it (across inputs)
    inputs: tuple[str, ...]  # the inputs (globs expanded) with frames in the range

    @property
    def label(self) -> str:
        return f"{self.number}/{self.count}"


@dataclass(frozen=True)
class JobFrames:
    """The frame numbers a job selects, per input (globs expanded), in input order."""

    per_input: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def numbers(self) -> list[int]:
        """The sorted union of every input's frame numbers."""
        return sorted({n for _, frames in self.per_input for n in frames})


def parse_chunk(text: str) -> tuple[int, int]:
    """``"3/8"`` as (3, 8); K counts from 1, as farm managers' task numbers usually do."""
    match = _CHUNK.match(text)
    number, count = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not match or count < 1 or not 1 <= number <= count:
        raise InputError(
            f"--chunk {text!r} is not K/N with 1 <= K <= N",
            hint="e.g. --chunk 3/8 runs the third of eight chunks (Slurm: --chunk $SLURM_ARRAY_TASK_ID/8)",
        )
    return number, count


def job_frames(inputs: Sequence[str], start: int | None, end: int | None, every: int) -> JobFrames:
    """Open every input (no pixels are decoded) and list the frame numbers this job selects.

    Raises :class:`InputError` for an input that cannot be opened or counted (a chunk of it could
    not be named), and for ``--every`` strides that differ between inputs (a chunk's ``--start``
    would move some input's stride).
    """
    items = [
        open_input(spec, RunOptions(start=start, end=end, every=every)) for spec in expand_inputs(inputs)
    ]
    for item in items:
        if item.source is not None:
            item.source.close()
    failed = next((item for item in items if item.source is None), None)
    if failed is not None:
        raise InputError(
            f"cannot split a job with an input that cannot be opened: {failed.summary.error}",
            hint="check the input paths",
        )
    return frames_of(items, every)


def frames_of(items: Sequence[RunInput], every: int) -> JobFrames:
    """The frame numbers of inputs already opened (:func:`mattecli.run_inputs.open_input`).

    Raises :class:`InputError` for an input whose frames cannot be counted, and for strides that
    differ between inputs (see :func:`job_frames`).
    """
    per_input: list[tuple[str, tuple[int, ...]]] = []
    for item in items:
        if item.frames is None:
            raise InputError(
                "cannot count this input's frames, so it cannot be split into chunks",
                path=item.spec,
                hint="give its frame range with --start and --end",
            )
        per_input.append((item.spec, tuple(index for _, index in item.frames)))
    firsts = {frames[0] % every for _, frames in per_input if frames}
    if len(firsts) > 1:
        raise InputError(
            f"--every {every}: the inputs' frames are on different strides, so no chunk start fits them all",
            hint="give --start so every input counts its stride from one frame, or plan each input alone",
        )
    return JobFrames(tuple(per_input))


def split(job: JobFrames, count: int) -> list[Chunk]:
    """The job's frame numbers in ``count`` even chunks (some empty when there are fewer frames)."""
    numbers = job.numbers
    chunks = []
    for k in range(count):
        part = numbers[k * len(numbers) // count : (k + 1) * len(numbers) // count]
        first, last = (part[0], part[-1]) if part else (0, -1)
        inputs = tuple(spec for spec, frames in job.per_input if any(first <= n <= last for n in frames))
        chunks.append(Chunk(k + 1, count, first, last, len(part), inputs))
    return chunks


def chunks_of_size(job: JobFrames, size: int) -> list[Chunk]:
    """Even chunks of at most ``size`` frame numbers each (none empty)."""
    if size < 1:
        raise InputError(f"the chunk size must be at least 1 frame, not {size}")
    return split(job, max(1, math.ceil(len(job.numbers) / size)))


def resolve_chunk(text: str, inputs: Sequence[str], start: int | None, end: int | None, every: int) -> Chunk:
    """``run --chunk K/N``: the K-th of N even chunks of the job's frames (possibly empty)."""
    number, count = parse_chunk(text)
    return split(job_frames(inputs, start, end, every), count)[number - 1]
