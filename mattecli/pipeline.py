"""The frame path of ``mattecli run``, as one chain::

    source -> trimap -> predictor -> [TTA | refinement] -> fusion -> sinks
    decoder_thread    predictors          frame_matter    frame_fusion  writer_thread
                      (whole frame, tiles, or a band model's coarse view + band cells)

Each stage is a module with one job; this one opens the inputs (:mod:`mattecli.run_inputs`),
chains the stages for each input and records what happened. Three threads overlap consecutive
frames: the **decoder** thread reads frames a few ahead (:mod:`mattecli.decoder_thread`), the
**main** thread loads each trimap and runs :class:`~mattecli.frame_matter.FrameMatter`, and the
**writer** thread encodes and writes the outputs (:mod:`mattecli.writer_thread`). Both hand-overs
are bounded queues and nothing is kept per frame after it is written, so memory stays flat over
a clip of any length. Stage times are taken where the chain calls each stage
(:mod:`mattecli.stage_timing`).

Several inputs run one after another. Problems of the whole run stop it before its first frame.
An input that cannot be read, or that fails part-way (a damaged frame, a trimap of the wrong
size), is recorded in the summary and the run goes on with the next input; the caller turns a
recorded failure into exit code 1 once everything else is done. A failure that no input explains
is a bug: its traceback is printed and the run stops (:mod:`mattecli.failures`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from engines.base import Engine
from mattecli.decoder_thread import decoded_frames
from mattecli.errors import InputError
from mattecli.failures import input_failure
from mattecli.frame_matter import FrameMatter
from mattecli.media.frame import Frame
from mattecli.media.sinks import OutputSpec
from mattecli.motion import MotionTracker
from mattecli.run_inputs import (
    RunInput,
    check_outputs,
    check_trimaps,
    expand_inputs,
    open_input,
    output_stub,
    require_one_opened,
    sinks_for,
)
from mattecli.run_options import RunOptions, check_options
from mattecli.stage_timing import timed
from mattecli.summary import Reporter, RunSummary, StageClock
from mattecli.temporal import TemporalSmoother
from mattecli.trimap_sources import FileTrimaps, TrimapSource
from mattecli.writer_thread import BackgroundWriter


class _Current:
    """The frame being worked on (for a failure's error line), and whether the outputs are being finished."""

    index: int | None = None
    finishing: bool = False


def _run_input(
    item: RunInput,
    output: OutputSpec,
    trimaps: TrimapSource | None,
    options: RunOptions,
    make_matter: Callable[[StageClock], FrameMatter],
    smoother: TemporalSmoother | None,
    reporter: Reporter,
    debug: bool,
) -> None:
    source, summary = item.source, item.summary
    assert source is not None
    clock = summary.clock
    matter = make_matter(clock)
    current = _Current()
    began = time.perf_counter()
    try:
        with sinks_for(output, source) as sinks:
            start = options.start
            if trimaps is not None:

                def read(first: int, last: int) -> Iterator[Frame]:
                    return source.frames(first, last, options.every, prefetch=0)

                trimaps.begin_input(item.frames, read)
            if smoother is not None:
                smoother.begin_input()
            recompute = False  # a resumed stateful run computes complete frames again, to carry its state
            if options.resume and item.frames:
                # Frames before the first incomplete one are not even decoded; later complete
                # frames (a run killed out of order) are skipped as they come.
                complete = (sinks.is_complete(output_stub(*f, source.path)) for f in item.frames)
                first = next((k for k, done in enumerate(complete) if not done), len(item.frames))
                if first == len(item.frames):
                    summary.frames_skipped = first
                    return
                start = item.frames[first][1]  # on the --every stride, so the same frames are selected
                restart = start
                if smoother is not None:  # its state is every earlier result of the range
                    restart = item.frames[0][1]
                elif trimaps is not None:
                    restart = trimaps.restart_index(start)
                if restart != start:
                    start, recompute = restart, True
                    first = next(k for k, (_, index) in enumerate(item.frames) if index == restart)
                summary.frames_skipped = first
            reporter.input_started(summary, summary.frames_total, summary.frames_skipped)

            def store(frame: Frame, alpha: np.ndarray, fg: np.ndarray | None) -> None:
                try:
                    sinks.write(frame, alpha, fg)
                except OSError as exc:
                    raise InputError(
                        f"cannot write the outputs: {exc.strerror or exc}",
                        path=output.directory,
                        frame=frame.index,
                        hint="check the free space and permissions of the output folder",
                    ) from exc

            write = timed(clock, "write", store)

            def written(frame: Frame, alpha: np.ndarray, fg: np.ndarray | None) -> None:
                write(frame, alpha, fg)
                summary.frames_written += 1
                reporter.advance()

            load_trimap = None if trimaps is None else timed(clock, "preprocess", trimaps.trimap)
            smooth = None if smoother is None else timed(clock, "fusion", smoother)
            with (
                decoded_frames(
                    source, start, options.end, options.every, ahead=options.prefetch, clock=clock
                ) as frames,
                BackgroundWriter(written, options.write_queue) as writer,
            ):
                for frame in frames:
                    current.index = frame.index
                    if options.resume and not recompute and sinks.is_complete(frame):
                        summary.frames_skipped += 1
                        reporter.advance()
                        continue
                    trimap = None
                    if load_trimap is not None:
                        trimap = load_trimap(frame, resize=options.resize_trimaps)
                    alpha, fg = matter(frame, trimap)
                    if smooth is not None:
                        alpha = smooth(frame, trimap, alpha)
                    writer.submit(frame, alpha, fg)
                current.index = None  # a failure while finishing the outputs is not one frame's
                current.finishing = True
    except Exception as exc:  # noqa: BLE001 - one input's failure must not stop the others
        summary.fail(input_failure(exc, source.path, current.index, debug=debug))
        per_frame_files = output.alpha or output.foreground or output.composite is not None
        if current.finishing and output.video and not per_frame_files:
            summary.frames_written = 0  # the video that held them could not be finished: none is kept
    finally:
        summary.wall_seconds = time.perf_counter() - began
        if summary.frames_total is None and not summary.failed:
            summary.frames_total = summary.frames_written + summary.frames_skipped
        source.close()


def _trimap_source(spec: Path | TrimapSource | None) -> TrimapSource | None:
    return FileTrimaps.open(spec) if isinstance(spec, Path) else spec


def check_job(
    specs: Sequence[str],
    output: OutputSpec,
    *,
    trimap_spec: Path | TrimapSource | None = None,
    options: RunOptions | None = None,
) -> list[RunInput]:
    """The checks of the whole job that :func:`run_pipeline` makes before its first frame, alone.

    For a driver that hands frame ranges to other processes (the Ray executor): a missing trimap
    or two inputs writing one file stop the job before any worker writes a frame. Returns every
    input with its frames (their sources closed again); one that cannot be opened is returned
    with its failure in its summary, for the caller to report.
    """
    options = options or RunOptions()
    trimaps = _trimap_source(trimap_spec)
    items = [open_input(spec, options) for spec in expand_inputs(specs)]
    opened = [item for item in items if item.source is not None]
    try:
        check_outputs(opened, output)
        if trimaps is not None:
            check_trimaps(opened, trimaps)
    finally:
        for item in opened:
            item.source.close()  # type: ignore[union-attr]
    return items


def run_pipeline(
    specs: Sequence[str],
    engine: Engine,
    output: OutputSpec,
    *,
    trimap_spec: Path | TrimapSource | None = None,
    options: RunOptions | None = None,
    reporter: Reporter | None = None,
    debug: bool = False,
    motion: MotionTracker | None = None,
) -> RunSummary:
    """Matte every input; return the summary (check ``summary.failed`` for the exit code).

    Raises :class:`InputError` before any frame is processed for problems of the whole run
    (options, trimaps, colliding outputs); failures of single inputs are in the summary. Raises
    :class:`mattecli.errors.InternalError` for a failure that is a bug, after printing its
    traceback. ``debug`` prints the traceback of every recorded failure too. ``trimap_spec`` is a
    folder of trimaps (or one trimap for all frames), or any :class:`TrimapSource`. ``motion``
    is the optical flow tracker ``--temporal`` uses; pass the one a keyframe source uses, so the
    flow of each frame is computed once.
    """
    options = options or RunOptions()
    reporter = reporter or Reporter()
    contract = engine.contract
    fusion = check_options(contract, output, options, trimap_spec is not None)
    trimaps = _trimap_source(trimap_spec)
    want_foreground = bool(
        output.foreground or output.composite is not None or (output.video and output.video_content == "rgba")
    )

    def make_matter(clock: StageClock) -> FrameMatter:
        return FrameMatter(
            engine,
            tiles=options.tiles,
            tta=options.tta,
            fusion=fusion,
            want_foreground=want_foreground,
            clock=clock,
            refine=options.refine,
        )

    smoother = None
    if options.temporal is not None:
        smoother = TemporalSmoother(options.temporal, motion or MotionTracker())
    items = [open_input(spec, options, debug=debug) for spec in expand_inputs(specs)]
    opened = [item for item in items if item.source is not None]
    require_one_opened(items)
    summary = RunSummary(
        [item.summary for item in items],
        run={
            "model": contract.name,
            "engine": engine.name,
            "device": str(engine.device),
            "tile": options.tiles.size,
            "tta": options.tta,
            "fusion": fusion,
        },
    )
    with ExitStack() as stack:
        for item in opened:
            stack.callback(item.source.close)  # type: ignore[union-attr]
        check_outputs(opened, output)
        if trimaps is not None:
            check_trimaps(opened, trimaps)
        for item in items:
            if item.source is not None:
                _run_input(item, output, trimaps, options, make_matter, smoother, reporter, debug)
                if trimaps is not None:
                    trimaps.warn(reporter)
            reporter.input_finished(item.summary)
    return summary
