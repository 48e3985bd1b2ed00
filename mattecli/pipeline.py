"""The frame pipeline of ``mattecli run``: source -> trimap -> inputs -> engine (tiled) -> fusion -> sinks.

Three threads overlap the work of consecutive frames:

* the **decoder** thread reads frames a few ahead (:func:`mattecli.media.prefetch.prefetch`);
* the **main** thread loads each trimap, builds the model inputs, runs the engine over the tiles
  of the unknown band (and the TTA views), fuses and imposes the trimap's known regions;
* the **writer** thread encodes and writes the outputs (PNG deflate, EXR, ProRes), fed by a
  bounded queue, so encoding frame *n* overlaps inference of frame *n+1*.

Both queues are bounded (``RunOptions.prefetch`` and ``RunOptions.write_queue`` frames) and
nothing is kept per frame after it is written, so memory stays flat over a clip of any length.
Within a frame, nothing the size of the frame is built in float except the outputs handed to the
writer: tiles take their inputs straight from the decoded frame, the trimap's distance maps and
every tile buffer are reused from frame to frame, and only the unknown band's pixels are blended
and fused (see :class:`FrameMatter`).

Several inputs run one after another. Everything that can be checked without running the model
is checked for *all* inputs before the first frame (output options against each input's kind,
every frame's trimap, two inputs writing the same file), and such a problem stops the run before
it starts. An input that cannot be read, or that fails part-way (a damaged frame, a trimap of
the wrong size), is recorded in the summary and the run goes on with the next input; the caller
turns any recorded failure into exit code 1 once everything else is done.

The per-frame work is :class:`FrameMatter`: a whole-frame predictor (inputs, engine over tiles,
crop) wrapped by test-time augmentation, then fusion. A post-inference refinement (such as
backpropagating refinement with the torch engine) wraps that predictor the same way TTA does.
"""

from __future__ import annotations

import contextlib
import glob
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from engines.base import Engine
from mattecli.errors import InputError, MatteError
from mattecli.fusion import fba_fusion, impose_known_colours, impose_trimap
from mattecli.inputs import INPUT_CHANNELS, FrameInputs, ModelInputs, build_inputs, pad_reflect, unit_rgb
from mattecli.media.frame import Frame
from mattecli.media.imageio import is_image_file
from mattecli.media.naming import video_name
from mattecli.media.prefetch import prefetch
from mattecli.media.sinks import OutputSpec, Sinks
from mattecli.media.sources import DEFAULT_PREFETCH, Source, open_source, selected
from mattecli.media.trimaps import TrimapIndex
from mattecli.media.video_writer import video_suffix
from mattecli.models import ModelContract
from mattecli.preprocess import Scratch, definite_regions
from mattecli.summary import InputSummary, Reporter, RunSummary, StageClock
from mattecli.tiling import PixelSet, TilePlan, plan_tiles, stitch_tiles
from mattecli.tta import TTAMode, predict_tta

# Frames waiting for the writer thread: enough to absorb a slow PNG or a ProRes flush, few
# enough that 4K frames do not pile up.
DEFAULT_WRITE_QUEUE = 4
# How many trimap file names a warning lists.
NAMES_SHOWN = 3
# How often a blocked hand-over looks again at whether the other side has failed.
_POLL_S = 0.05
_NO_PIXELS = np.empty((0, 0, 3), dtype=np.uint8)
_GLOB = re.compile(r"[*?[]")


@dataclass(frozen=True)
class TileOptions:
    """Tiled inference over the unknown band; ``size=None`` runs every whole (padded) frame at once.

    A frame whose pixels fit in one engine call's worth of tiles runs whole even when tiling is on
    (see :meth:`FrameMatter.predict`); a frame with no unknown pixel never reaches the engine.
    """

    size: int | None = 512
    context: int = 32  # pixels at inner tile edges that only feed the receptive field (README: tiling)
    blend: int = 32  # width of the raised-cosine ramp between overlapping tiles
    batch: int = 4  # tiles per engine call


@dataclass(frozen=True)
class RefineOptions:
    """LSA's backpropagating refinement (``--refine br``), with the paper's defaults."""

    steps: int = 100
    lr: float = 20.0


@dataclass(frozen=True)
class RunOptions:
    """How ``run`` processes frames (the output options are :class:`OutputSpec`)."""

    start: int | None = None  # inclusive frame numbers, as Source.frames counts them
    end: int | None = None
    every: int = 1
    resume: bool = False  # skip frames whose per-frame outputs all exist
    tiles: TileOptions = field(default_factory=TileOptions)
    fusion: bool | None = None  # None: on when the model's contract supports FBA fusion
    tta: TTAMode = "none"
    refine: RefineOptions | None = None  # backpropagating refinement, whole frames, torch engine
    resize_trimaps: bool = False
    prefetch: int = DEFAULT_PREFETCH
    write_queue: int = DEFAULT_WRITE_QUEUE


# --- the per-frame work ---------------------------------------------------------------------------


class FrameMatter:
    """One frame (and its trimap) to alpha and foreground, with the options of a run.

    ``want_foreground``: return the model's foreground (when it has one) for the outputs that
    show colour; without it only alpha is returned, and only the pixels alpha needs are computed.

    Without TTA or refinement (the default) nothing is built for the whole frame beyond what the
    trimap fixes anyway: tiles read their inputs straight from the decoded frame, their outputs
    are blended only at the pixels whose output the network decides (:meth:`decided_pixels`),
    and fusion runs there alone. Every other pixel takes the trimap's alpha and the image's
    colour, which is exactly what fusion followed by the known-region rules gives it. Work
    buffers live in ``scratch`` and are reused from frame to frame.

    Stage times: building tile inputs is ``preprocess``, the network calls are ``engine``,
    blending tile outputs and fusion are ``fusion``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        tiles: TileOptions,
        tta: TTAMode,
        fusion: bool,
        want_foreground: bool,
        clock: StageClock,
        refine: RefineOptions | None = None,
    ) -> None:
        if refine is not None:
            from mattecli.refine import refinable_network

            refinable_network(engine)  # refuse a non-torch engine or a network without BRMs up front
        self.refine = refine
        self.engine = engine
        self.contract = engine.contract
        self.tiles = tiles
        self.tta = tta
        self.fusion = fusion
        self.clock = clock
        has_foreground = self.contract.output_name("foreground") is not None
        self.returns_foreground = want_foreground and has_foreground
        kinds = ["alpha"]
        if fusion or self.returns_foreground:
            kinds.append("foreground")
        if fusion:
            kinds.append("background")
        self.kinds = tuple(kinds)
        self.scratch = Scratch()

    def _inputs(self, image: np.ndarray, trimap: np.ndarray | None) -> FrameInputs:
        with self.clock.measure("preprocess"):
            return FrameInputs(self.contract, image, trimap, self.scratch)

    def _plan(self, inputs: FrameInputs) -> TilePlan | None:
        """The tiles for this frame, or None to run the whole (padded) frame at once."""
        tiles = self.tiles
        if tiles.size is None:
            return None
        with self.clock.measure("preprocess"):
            plan = plan_tiles(
                inputs.unknown,
                tile=tiles.size,
                context=tiles.context,
                blend=tiles.blend,
                multiple=self.contract.size_multiple,
            )
        # Tiles are for frames too big to run whole. When one engine call's worth of tiles
        # already holds as many pixels as the whole frame, the frame costs no more memory and
        # less compute (tiles overlap), and its network sees all the context: run it whole.
        padded_h, padded_w = inputs.padded_shape
        if len(plan) and padded_h * padded_w <= min(len(plan), tiles.batch) * plan.tile_h * plan.tile_w:
            return None
        return plan

    def _network(self, inputs: FrameInputs, plan: TilePlan | None, pixels: PixelSet) -> dict[str, np.ndarray]:
        """The network's outputs at ``pixels`` (N x C per kind), all of which ``plan`` covers."""

        def infer(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            with self.clock.measure("engine"):
                return self.engine.infer(feed)

        def write_input(kind: str, y: int, x: int, out: np.ndarray) -> None:
            with self.clock.measure("preprocess"):
                inputs.write(kind, y, x, out)

        with self.clock.measure("fusion"):
            if plan is None:
                feed = {
                    kind: self.scratch.get(f"feed-{kind}", (1, INPUT_CHANNELS[kind], *inputs.padded_shape))
                    for kind in inputs.kinds
                }
                for kind, buffer in feed.items():
                    write_input(kind, 0, 0, buffer[0])
                outputs = infer(feed)
                return {kind: pixels.gather(outputs[kind][0]) for kind in self.kinds}
            inputs.read_only(plan.rects())
            return stitch_tiles(
                infer,
                write_input,
                {kind: INPUT_CHANNELS[kind] for kind in inputs.kinds},
                plan,
                pixels,
                self.kinds,
                batch_size=self.tiles.batch,
                scratch=self.scratch,
            )

    def predict(self, image: np.ndarray, trimap: np.ndarray | None) -> dict[str, np.ndarray]:
        """The network's outputs for one view of the frame (C x H x W, cropped to the view).

        Pixels no tile computes take the trimap's alpha and the image's colour.
        """
        if self.refine is not None and trimap is not None:
            with self.clock.measure("preprocess"):
                model_inputs = build_inputs(self.contract, image, trimap)
            return self._refined(model_inputs, trimap)
        inputs = self._inputs(image, trimap)
        plan = self._plan(inputs)
        height, width = image.shape[:2]
        with self.clock.measure("fusion"):
            computed = np.ones(inputs.padded_shape, bool) if plan is None else plan.coverage()
            pixels = PixelSet(_within(computed, height, width), self.scratch)
        values = self._network(inputs, plan, pixels)
        with self.clock.measure("fusion"):
            colour = np.ascontiguousarray(unit_rgb(inputs.image).transpose(2, 0, 1))
            fill = {"alpha": inputs.known_alpha()[None], "foreground": colour, "background": colour}
            whole = {}
            for kind in self.kinds:
                out = fill[kind].copy()
                if kind in values:
                    pixels.scatter(values[kind], out)
                whole[kind] = out[:, :height, :width]
            return whole

    def _refined(self, inputs: ModelInputs, trimap: np.ndarray) -> dict[str, np.ndarray]:
        """Backpropagating refinement over the whole frame.

        Not tiled: its costs average over the whole trimap boundary and unknown band, and one set
        of refinement tensors serves the whole image, as in the paper.
        """
        from mattecli.refine import backprop_refine

        assert self.refine is not None
        result = backprop_refine(
            self.engine,  # type: ignore[arg-type]  # refinable_network checked it is a TorchEngine
            {kind: array[None] for kind, array in inputs.arrays.items()},
            pad_reflect(trimap, *inputs.padded_shape),
            steps=self.refine.steps,
            lr=self.refine.lr,
        )
        return {"alpha": inputs.crop(result.alpha[0])}

    def decided_pixels(self, trimap: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
        """H x W bool: the pixels whose output the network decides; the trimap fixes all others.

        Alpha is the trimap's on its definite regions (:func:`impose_trimap`). A returned
        foreground is the image where alpha is 1 when fusion's background is there to say so
        (:func:`impose_known_colours`), so the definite foreground is fixed; without fusion the
        network's colour is kept everywhere. Without a trimap, every pixel is the network's.
        """
        if trimap is None or (self.returns_foreground and "background" not in self.kinds):
            return np.ones(shape, dtype=bool)
        background, foreground = definite_regions(trimap)
        if self.returns_foreground:
            return np.logical_not(foreground)
        return np.logical_not(background | foreground)

    def _finish(
        self,
        image: np.ndarray,
        trimap: np.ndarray | None,
        pixels: PixelSet,
        values: Mapping[str, np.ndarray],
        height: int,
        width: int,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Fusion and the trimap's rules at ``pixels``; elsewhere the values the trimap fixes.

        ``image`` (H x W x 3, any dtype) and ``trimap`` are on the grid of ``pixels``; the
        results are cut to ``height`` x ``width`` and are new arrays (they go to the writer).
        """
        with self.clock.measure("fusion"):
            if trimap is None:
                alpha = np.zeros(pixels.shape, dtype=np.float32)
            else:
                alpha = definite_regions(trimap)[1].astype(np.float32)
            fg_out = unit_rgb(image) if self.returns_foreground else None
            if len(pixels):
                colour = unit_rgb(image.reshape(-1, image.shape[-1])[pixels.index])
                a = values["alpha"][:, 0]
                fg, bg = values.get("foreground"), values.get("background")
                if self.fusion:
                    assert fg is not None and bg is not None
                    a, fg, bg = fba_fusion(colour, a, fg, bg)
                if trimap is not None:
                    a = impose_trimap(a, pixels.gather(trimap))
                    if fg is not None and bg is not None:
                        fg, _ = impose_known_colours(colour, a, fg, bg)
                pixels.scatter(a, alpha)
                if fg_out is not None and fg is not None:
                    fg_out.reshape(-1, 3)[pixels.index] = fg
            alpha = np.ascontiguousarray(alpha[:height, :width])
            if fg_out is not None:
                fg_out = np.ascontiguousarray(fg_out[:height, :width])
            return alpha, fg_out

    def __call__(self, frame: Frame, trimap: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Alpha (H x W) and foreground (H x W x 3, or None) in [0, 1], float32."""
        if self.tta == "none" and self.refine is None:
            inputs = self._inputs(frame.image, trimap)
            plan = self._plan(inputs)
            with self.clock.measure("fusion"):
                decided = self.decided_pixels(inputs.trimap, inputs.padded_shape)
                if plan is not None:
                    decided &= plan.coverage()
                pixels = PixelSet(_within(decided, frame.height, frame.width), self.scratch)
            values = self._network(inputs, plan, pixels) if len(pixels) else {}
            return self._finish(inputs.image, inputs.trimap, pixels, values, frame.height, frame.width)
        with self.clock.measure("preprocess"):
            image = unit_rgb(frame.image)
        with self.clock.measure("engine"):
            whole = predict_tta(self.predict, image, trimap, self.tta, self.contract.size_multiple)
        with self.clock.measure("fusion"):
            pixels = PixelSet(self.decided_pixels(trimap, image.shape[:2]), self.scratch)
            values = {kind: pixels.gather(value) for kind, value in whole.items()}
        return self._finish(image, trimap, pixels, values, frame.height, frame.width)


def _within(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """``mask`` (on a padded grid) with the padding rows and columns cleared, in place."""
    mask[height:] = False
    mask[:, width:] = False
    return mask


# --- the writer thread ----------------------------------------------------------------------------


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


# --- inputs and checks before the first frame -----------------------------------------------------


def expand_inputs(specs: Sequence[str]) -> list[str]:
    """Input arguments after expanding quoted globs that name videos or folders.

    ``"clips/*.mp4"`` becomes one input per video. A glob that matches image files only stays one
    input, which :func:`mattecli.media.sources.open_source` reads as a sequence or a set of stills
    (``"shot/shot.*.exr"``). A glob that matches nothing stays as it is, so opening it reports it.
    """
    expanded: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.exists() or not _GLOB.search(spec):
            expanded.append(spec)
            continue
        matches = sorted(glob.glob(spec))
        images_only = all(Path(m).is_file() and is_image_file(Path(m)) for m in matches)
        # open_source globs a file name inside one existing folder; anything else is expanded here.
        if matches and (not images_only or _GLOB.search(str(path.parent))):
            expanded.extend(matches)
        else:
            expanded.append(spec)
    return expanded


def _stub(name: str, index: int, source: Path) -> Frame:
    """A frame without pixels: enough to ask the sinks for its output names."""
    return Frame(index=index, name=name, image=_NO_PIXELS, source=source)


@dataclass
class _Input:
    """One input between opening and processing."""

    spec: str
    summary: InputSummary
    source: Source | None = None
    frames: list[tuple[str, int]] | None = None  # (name, index) in the range, when countable


def _open(spec: str, options: RunOptions) -> _Input:
    item = _Input(spec, InputSummary(spec))
    try:
        source = open_source(spec)
    except (MatteError, OSError) as exc:
        item.summary.fail(failure_text(exc, Path(spec), None))
        return item
    item.source = source
    item.summary.kind = source.info.kind
    if source.info.frame_count is not None:
        ids = source.frame_ids()
        first = ids[0][1] if options.start is None else options.start
        item.frames = [(n, i) for n, i in ids if selected(i, first, options.end, options.every)]
        item.summary.frames_total = len(item.frames)
    return item


def _sinks(output: OutputSpec, source: Source) -> Sinks:
    """The outputs of one source (nothing is opened before the first frame is written)."""
    info = source.info
    return Sinks(
        output, kind=info.kind, fps=info.fps, audio_source=source.path if info.kind == "video" else None
    )


def _check_outputs(items: list[_Input], output: OutputSpec) -> None:
    """Refuse output options an input cannot take, and two inputs that would write the same file."""
    owners: dict[Path, str] = {}
    for item in items:
        assert item.source is not None
        try:
            sinks = _sinks(output, item.source)
        except MatteError as exc:
            raise InputError(f"{item.spec}: {exc}") from None
        # Used for names only: nothing was opened, so there is nothing to close.
        ids = item.frames or [(item.source.path.stem, 0)]
        paths = [p for name, index in ids for p in sinks.outputs_for(_stub(name, index, item.source.path))]
        if output.video:
            suffix = video_suffix(output.video)
            paths += {output.directory / video_name(name, output.video_content, suffix) for name, _ in ids}
        for path in paths:
            other = owners.setdefault(path, item.spec)
            if other != item.spec:
                raise InputError(
                    f"{other} and {item.spec} would both write {path}",
                    hint="give them different output folders (-o), or put {stem} or {frame} in --pattern",
                )


def _check_trimaps(items: list[_Input], trimaps: TrimapIndex) -> None:
    """Every frame of every input has its trimap (one check, so names of all inputs are known)."""
    trimaps.check(frame for item in items for frame in item.frames or ())


def check_options(contract: ModelContract, output: OutputSpec, options: RunOptions, trimaps: bool) -> bool:
    """Refuse option combinations this model or output cannot honour; return whether fusion is on."""
    if options.start is not None and options.end is not None and options.end < options.start:
        raise InputError(
            f"the range ends ({options.end}) before it starts ({options.start})",
            hint="--end is the last frame number to process, inclusive",
        )
    if options.resume and output.video:
        raise InputError(
            "--resume cannot be used with a video output: a video file cannot be appended to",
            hint="run without --resume (the video is rewritten whole), or resume image outputs only",
        )
    if contract.needs_trimap and not trimaps:
        raise InputError(
            f"the model {contract.name} needs a trimap for every frame",
            hint="give a folder of trimaps (or one trimap image for all frames) with --trimap-dir",
        )
    if output.foreground and contract.output_name("foreground") is None:
        raise InputError(
            f"the model {contract.name} gives no foreground, so --fg cannot be written",
            hint="drop --fg (the composite and video outputs then use the source's colour)",
        )
    if options.refine is not None and options.tta != "none":
        raise InputError(
            "--refine br and --tta cannot be combined (every view would need its own 100 refinement steps)",
            hint="choose one of them",
        )
    can_fuse = contract.fusion == "fba"
    if options.fusion and not can_fuse:
        raise InputError(
            f"the model {contract.name} has no foreground and background outputs for FBA fusion",
            hint="drop --fusion",
        )
    tiles = options.tiles
    if tiles.size is not None:
        if min(tiles.size, tiles.batch) < 1 or min(tiles.context, tiles.blend) < 0:
            raise InputError("--tile and --batch must be positive, --context and --blend at least 0")
        try:  # the planner's own rule for margins that leave no room, checked on an empty frame
            m = contract.size_multiple
            plan_tiles(
                np.zeros((m, m), bool), tile=tiles.size, context=tiles.context, blend=tiles.blend, multiple=m
            )
        except ValueError as exc:
            raise InputError(
                f"tiling options: {exc}", hint="raise --tile or lower --context/--blend"
            ) from None
    return can_fuse if options.fusion is None else options.fusion


# --- running ----------------------------------------------------------------------------------------


def failure_text(exc: BaseException, input_path: Path, frame: int | None) -> str:
    """One line naming the input, the file (when it is another, e.g. a trimap) and the frame."""
    if isinstance(exc, MatteError):
        path = exc.path if exc.path is not None else input_path
        text = str(
            MatteError(
                exc.message, path=path, frame=exc.frame if exc.frame is not None else frame, hint=exc.hint
            )
        )
        return text if path == input_path else f"{input_path}: {text}"
    return str(InputError(f"{type(exc).__name__}: {exc}", path=input_path, frame=frame))


def timed_frames(frames: Iterator[Frame], clock: StageClock) -> Generator[Frame, None, None]:
    """Pass frames through, charging the time spent producing each to ``decode`` (in this thread)."""
    try:
        while True:
            with clock.measure("decode"):
                frame = next(frames, None)
            if frame is None:
                return
            yield frame
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


class _Current:
    """The frame being worked on, for the error line of a failure."""

    index: int | None = None


def _run_input(
    item: _Input,
    output: OutputSpec,
    trimaps: TrimapIndex | None,
    options: RunOptions,
    make_matter: Callable[[StageClock], FrameMatter],
    reporter: Reporter,
) -> None:
    source, summary = item.source, item.summary
    assert source is not None
    clock = summary.clock
    matter = make_matter(clock)
    current = _Current()
    began = time.perf_counter()
    try:
        with _sinks(output, source) as sinks:
            start = options.start
            if options.resume and item.frames:
                # Frames before the first incomplete one are not even decoded; later complete
                # frames (a run killed out of order) are skipped as they come.
                complete = (sinks.is_complete(_stub(*f, source.path)) for f in item.frames)
                first = next((k for k, done in enumerate(complete) if not done), len(item.frames))
                summary.frames_skipped = first
                if first == len(item.frames):
                    return
                start = item.frames[first][1]  # on the --every stride, so the same frames are selected
            reporter.input_started(summary, summary.frames_total, summary.frames_skipped)

            def write(frame: Frame, alpha: np.ndarray, fg: np.ndarray | None) -> None:
                with clock.measure("write"):
                    try:
                        sinks.write(frame, alpha, fg)
                    except OSError as exc:
                        raise InputError(
                            f"cannot write the outputs: {exc.strerror or exc}",
                            path=output.directory,
                            frame=frame.index,
                            hint="check the free space and permissions of the output folder",
                        ) from exc
                summary.frames_written += 1
                reporter.advance()

            frames = timed_frames(source.frames(start, options.end, options.every, prefetch=0), clock)
            if options.prefetch > 0:
                frames = prefetch(frames, options.prefetch)
            with closing(frames), BackgroundWriter(write, options.write_queue) as writer:
                for frame in frames:
                    current.index = frame.index
                    if options.resume and sinks.is_complete(frame):
                        summary.frames_skipped += 1
                        reporter.advance()
                        continue
                    trimap = None
                    if trimaps is not None:
                        with clock.measure("preprocess"):
                            trimap = trimaps.load(
                                frame.name,
                                frame.index,
                                (frame.height, frame.width),
                                resize=options.resize_trimaps,
                            )
                    alpha, fg = matter(frame, trimap)
                    writer.submit(frame, alpha, fg)
                current.index = None  # a failure while finishing the outputs is not one frame's
    except Exception as exc:  # noqa: BLE001 - one input's failure must not stop the others
        summary.fail(failure_text(exc, source.path, current.index))
    finally:
        summary.wall_seconds = time.perf_counter() - began
        if summary.frames_total is None and not summary.failed:
            summary.frames_total = summary.frames_written + summary.frames_skipped
        source.close()


def _warn_trimaps(trimaps: TrimapIndex, warned: set[Path], reporter: Reporter) -> None:
    """One line per input about trimaps that were not clean 0/128/255 or had no definite region."""
    new = [path for path in trimaps.remapped if path not in warned]
    if new:
        shown = ", ".join(f"{p.name} ({trimaps.remapped[p]} px)" for p in new[:NAMES_SHOWN])
        more = f" and {len(new) - NAMES_SHOWN} more" if len(new) > NAMES_SHOWN else ""
        reporter.warn(
            f"{len(new)} trimap(s) had values other than 0/128/255 (anti-aliased or resized), "
            f"quantised with thresholds 85 and 170: {shown}{more}"
        )
    empty = [path for path in sorted(trimaps.all_unknown) if path not in warned]
    if empty:
        shown = ", ".join(p.name for p in empty[:NAMES_SHOWN])
        reporter.warn(f"{len(empty)} trimap(s) are unknown everywhere (no definite region): {shown}")
    warned.update(new, empty)


def run_pipeline(
    specs: Sequence[str],
    engine: Engine,
    output: OutputSpec,
    *,
    trimap_spec: Path | None = None,
    options: RunOptions | None = None,
    reporter: Reporter | None = None,
) -> RunSummary:
    """Matte every input; return the summary (check ``summary.failed`` for the exit code).

    Raises :class:`InputError` before any frame is processed for problems of the whole run
    (options, trimaps, colliding outputs); failures of single inputs are in the summary.
    """
    options = options or RunOptions()
    reporter = reporter or Reporter()
    contract = engine.contract
    fusion = check_options(contract, output, options, trimap_spec is not None)
    trimaps = TrimapIndex.open(trimap_spec) if trimap_spec is not None else None
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

    items = [_open(spec, options) for spec in expand_inputs(specs)]
    opened = [item for item in items if item.source is not None]
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
        _check_outputs(opened, output)
        if trimaps is not None:
            _check_trimaps(opened, trimaps)
        warned: set[Path] = set()
        for item in items:
            if item.source is not None:
                _run_input(item, output, trimaps, options, make_matter, reporter)
                if trimaps is not None:
                    _warn_trimaps(trimaps, warned, reporter)
            reporter.input_finished(item.summary)
    return summary
