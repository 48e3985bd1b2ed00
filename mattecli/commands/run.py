"""``mattecli run``: pull mattes from videos, image sequences and photos with a matting model.

Only argument handling and the terminal live here; the work is :func:`mattecli.pipeline.run_pipeline`.
Human lines and the progress bar go to stderr (the bar only on a terminal); ``--json`` prints the
summary on stdout. Exit codes: 0 all inputs done, 1 some inputs failed (after the others finished),
3 the engine or device is not available here, 4 a problem with the inputs, options or output folder
found before any frame was processed, 130/143 stopped by SIGINT/SIGTERM (nothing half-written is
left; ``--resume`` finishes the job).

Before the model loads, the output folder is checked and locked (:mod:`mattecli.media.outfolder`)
and ``--resume`` is checked against the folder's run manifest (:mod:`mattecli.media.manifest`).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Literal

import typer
from rich.markup import escape

from mattecli.commands import trimap as trimap_cmd
from mattecli.console import err_console, print_json, user_errors
from mattecli.errors import EXIT_FAILED, InputError, MatteError
from mattecli.summary import InputSummary, Reporter

if TYPE_CHECKING:
    from rich.progress import Progress, Task, TaskID

    from mattecli.keyframes import KeyframeTrimaps
    from mattecli.mask_source import MaskTrimaps
    from mattecli.media.sinks import OutputSpec
    from mattecli.motion import MotionTracker

# The packaged default is an ONNX file: the other engines need the user's own model file.
MODEL_FOR_ENGINE = {
    "torch": "a checkpoint (.pth) from `mattecli train` or the public FBA.pth",
    "trt": "a .engine file from `mattecli build-engine`",
}


def run(
    inputs: list[str] = typer.Argument(
        ...,
        help="Videos, image-sequence folders or patterns (shot.%04d.exr, shot.####.exr), photos; "
        "several at once, globs allowed.",
        metavar="INPUT",
        show_default=False,
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (alpha/, fg/, comp/, videos)."),
    trimap_dir: Path | None = typer.Option(
        None, "--trimap-dir", "-t", help="Folder of trimaps named after the frames, or one trimap for all."
    ),
    mask_dir: Path | None = typer.Option(
        None,
        "--mask-dir",
        help="Masks instead of trimaps (a folder named like trimaps, one image, or a video of masks), "
        "made into trimaps on the fly as `mattecli trimap` does.",
        show_default=False,
    ),
    mask_band: str = typer.Option(trimap_cmd.DEFAULT_BAND, "--mask-band", help=trimap_cmd.BAND_HELP),
    mask_fg_threshold: float = typer.Option(
        trimap_cmd.DEFAULT_FG_THRESHOLD, "--mask-fg-threshold", help=trimap_cmd.FG_THRESHOLD_HELP
    ),
    mask_bg_threshold: float = typer.Option(
        trimap_cmd.DEFAULT_BG_THRESHOLD, "--mask-bg-threshold", help=trimap_cmd.BG_THRESHOLD_HELP
    ),
    mask_soft_unknown: bool = typer.Option(
        True, "--mask-soft-unknown/--no-mask-soft-unknown", help=trimap_cmd.SOFT_UNKNOWN_HELP
    ),
    keyframes: bool = typer.Option(
        False,
        "--keyframes",
        help="--trimap-dir holds trimaps for some frames only (the first one at least); the frames "
        "between get the previous frame's trimap moved by optical flow.",
    ),
    temporal: bool = typer.Option(
        False,
        "--temporal",
        help="Steadier mattes on video: blend each frame's unknown band with the previous result "
        "moved by optical flow (a resumed run recomputes its input from the start).",
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="ONNX file from `mattecli export` (.engine for trt, checkpoint for torch); "
        "default: the packaged model (ort only).",
        show_default=False,
    ),
    engine: Literal["ort", "torch", "trt"] = typer.Option("ort", "--engine", help="Inference backend."),
    device: str | None = typer.Option(
        None,
        "--device",
        help="cpu, cuda or cuda:N (default: cuda for trt, cpu otherwise).",
        show_default=False,
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for the engine."),
    model_name: str | None = typer.Option(
        None,
        "--model-name",
        help="Registry name of a bare state dict for --engine torch (the public FBA.pth is fba-resnet50).",
        show_default=False,
    ),
    start: int | None = typer.Option(None, "--start", help="First frame number to process (inclusive)."),
    end: int | None = typer.Option(None, "--end", help="Last frame number to process (inclusive)."),
    every: int = typer.Option(1, "--every", min=1, help="Process every N-th frame from --start."),
    resume: bool = typer.Option(False, "--resume", help="Skip frames whose outputs already exist."),
    chunk: str | None = typer.Option(
        None,
        "--chunk",
        help="Run only the K-th of N even chunks of the frames (K/N, K from 1), as `mattecli plan` splits.",
        show_default=False,
    ),
    executor: Literal["local", "ray"] = typer.Option(
        "local", "--executor", help="Where frames are computed: here, or on a Ray cluster (the ray extra)."
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="Ray cluster: auto or HOST:PORT (default: RAY_ADDRESS, else a Ray instance started here).",
        show_default=False,
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Ray workers (default: one per CPU, or per GPU with --device cuda)."
    ),
    task_frames: int | None = typer.Option(
        None, "--task-frames", min=1, help="Frames per Ray task (default: about 4 tasks per worker)."
    ),
    tile: int = typer.Option(512, "--tile", min=8, help="Tile size in pixels for tiled inference."),
    context: int = typer.Option(32, "--context", min=0, help="Context margin of inner tile edges."),
    blend: int = typer.Option(32, "--blend", min=0, help="Blend ramp between overlapping tiles."),
    batch: int = typer.Option(4, "--batch", min=1, help="Tiles per engine call."),
    no_tile: bool = typer.Option(False, "--no-tile", help="Run each whole frame at once instead of tiles."),
    fusion: bool | None = typer.Option(
        None, "--fusion/--no-fusion", help="FBA F/B/alpha fusion (default: on when the model supports it)."
    ),
    tta: Literal["none", "flip", "full"] = typer.Option(
        "none", "--tta", help="Test-time augmentation: flip = 2 passes, full = 3 scales x 8 transforms."
    ),
    refine: Literal["none", "br"] = typer.Option(
        "none",
        "--refine",
        help="br: the LSA paper's backpropagating refinement (torch engine, lsa checkpoint; whole frames).",
    ),
    refine_steps: int = typer.Option(100, "--refine-steps", min=0, help="Gradient steps of --refine br."),
    refine_lr: float = typer.Option(20.0, "--refine-lr", min=0.0, help="Learning rate of --refine br."),
    resize_trimaps: bool = typer.Option(
        False, "--resize-trimaps", help="Resize trimaps of another size (nearest-neighbour)."
    ),
    alpha: Literal["png16", "png8", "tiff", "exr", "none"] = typer.Option(
        "png16", "--alpha", help="Alpha matte format."
    ),
    fg: Literal["none", "png8", "png16", "exr"] = typer.Option(
        "none", "--fg", help="Foreground (RGBA) format."
    ),
    premultiplied: bool | None = typer.Option(
        None,
        "--premultiplied/--straight",
        help="Colour convention (default: each format's own: EXR premultiplied, PNG and video straight).",
    ),
    composite: str | None = typer.Option(
        None, "--composite", help="Composite over a colour (#rrggbb or r,g,b) or a background image."
    ),
    video: Literal["prores", "png-mov", "ffv1"] | None = typer.Option(
        None, "--video", help="Also write a video: ProRes 4444, PNG-in-MOV or FFV1 (.mkv)."
    ),
    video_content: Literal["rgba", "alpha"] = typer.Option(
        "rgba", "--video-content", help="Video of foreground + alpha, or of the matte alone."
    ),
    pattern: str | None = typer.Option(
        None, "--pattern", help="Output file names, e.g. {stem}.{frame:04d}.{ext}.", show_default=False
    ),
    fps: str | None = typer.Option(
        None, "--fps", help="Frame rate of a video written from an image sequence (24, 23.976, 24000/1001)."
    ),
    no_audio: bool = typer.Option(False, "--no-audio", help="Leave the source's audio out of video outputs."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bar or summary lines (errors still)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the run summary as JSON on stdout."),
    debug: bool = typer.Option(
        False, "--debug", help="Print the traceback of every failure (a bug's is always printed, exit 70)."
    ),
) -> None:
    """Pull alpha mattes (and foreground colour) from videos, image sequences and photos.

    Each frame is matched with its trimap, run through the model over the trimap's unknown band
    (tiled), fused and written. Several inputs run in turn; one that fails is reported and the
    others still run (exit code 1 at the end). Frame ranges are inclusive frame numbers.

    Examples:

    ```
    mattecli run in.mp4 --trimap-dir t/ -o out/                 # the packaged default model

    mattecli run in.mp4 --trimap-dir t/ -o out/ --model fba.onnx

    mattecli run shot/shot.%04d.exr -t trimaps/ -o out/ -m fba.onnx --start 1001 --end 1050   # a farm chunk

    mattecli run in.mp4 -t t/ -o out/ -m fba.onnx --resume        # after a killed run

    mattecli run in.mp4 --mask-dir masks/ -o out/ --mask-band 3%   # trimaps made from masks on the fly

    mattecli run in.mp4 -t t/ -o out/ -m fba.onnx --video prores --alpha none   # ProRes 4444 with alpha

    mattecli run "photos/*.jpg" -t trimaps/ -o out/ -m fba.onnx --fg png16 --composite "#00ff00" --json
    ```
    """
    from mattecli.default_model import default_model_path
    from mattecli.farm.executors import EngineArgs, open_executor
    from mattecli.media.manifest import begin_run, check_resume, finish_run, pixel_settings, restore_record
    from mattecli.media.outfolder import claim_output_folder
    from mattecli.motion import MotionTracker
    from mattecli.run_options import RefineOptions, RunOptions, TileOptions
    from mattecli.temporal import TemporalOptions

    with user_errors():
        masks = _mask_trimaps(
            mask_dir, trimap_dir, mask_band, mask_fg_threshold, mask_bg_threshold, mask_soft_unknown
        )
        motion = MotionTracker() if keyframes or temporal else None
        carried = _keyframe_trimaps(trimap_dir, motion) if keyframes else None
        if (carried is not None or temporal) and executor != "local":
            raise InputError(
                "--keyframes and --temporal carry each frame's result to the next, so an input "
                "cannot be split into Ray tasks",
                hint="use --executor local; farm chunks (--start/--end, --chunk) are runs of their own",
            )
        if model is None:
            if engine in MODEL_FOR_ENGINE:
                raise InputError(
                    f"--engine {engine} needs --model: {MODEL_FOR_ENGINE[engine]}",
                    hint="without --model, run uses the packaged ONNX model on --engine ort",
                )
            model = default_model_path()
        if chunk is not None:  # the chunk's frame range, and only the inputs with frames in it
            from mattecli.farm.chunks import resolve_chunk

            part = resolve_chunk(chunk, inputs, start, end, every)
            if not part.frames:
                err_console.print(f"chunk {part.label} holds no frames: nothing to do", highlight=False)
                return
            inputs, start, end = list(part.inputs), part.first, part.last
        spec = _output_spec(
            output, alpha, fg, premultiplied, composite, video, video_content, pattern, fps, no_audio,
            ranged=start is not None or end is not None,
        )  # fmt: skip
        options = RunOptions(
            start=start,
            end=end,
            every=every,
            # A video cannot be appended to: resuming a --video job computes every frame again
            # (after the manifest check below), rewriting its image files with the same bytes.
            resume=resume and video is None,
            tiles=TileOptions(size=None if no_tile else tile, context=context, blend=blend, batch=batch),
            fusion=fusion,
            tta=tta,
            refine=RefineOptions(steps=refine_steps, lr=refine_lr) if refine == "br" else None,
            resize_trimaps=resize_trimaps,
            temporal=TemporalOptions() if temporal else None,
        )
        # A TensorRT engine exists only for a GPU, so --engine trt alone means the first GPU.
        device = device or ("cuda" if engine == "trt" else "cpu")
        settings = pixel_settings(
            spec,
            model=model,
            engine=engine,
            device=device,
            tta=tta,
            refine=(refine_steps, refine_lr) if refine == "br" else None,
            fusion=fusion,
            tiles=(None if no_tile else tile, context, blend, batch),
            trimap_dir=trimap_dir,
            resize_trimaps=resize_trimaps,
            mask_dir=mask_dir,
            mask_trimaps=None if masks is None else masks.settings.describe(),
            keyframes=keyframes,
            temporal=temporal,
        )
        # Frame ranges of one job (a farm's chunks) share the folder; other runs take it alone.
        ranged = start is not None or end is not None
        claim = claim_output_folder(spec, inputs, trimap_dir or mask_dir, job=settings if ranged else None)
        with claim as removed, _stopped_by_signals():
            if removed and not quiet:
                err_console.print(
                    f"removed {len(removed)} temporary file(s) of an earlier run that was stopped",
                    markup=False,
                    highlight=False,
                )
            if resume:
                check_resume(spec, settings)
                if video is not None and not quiet:
                    err_console.print(
                        "--resume with --video: a video cannot be appended to, so every frame is "
                        "computed again (image outputs are rewritten with the same bytes)",
                        markup=False,
                        highlight=False,
                    )
            matting = open_executor(
                executor,
                EngineArgs(engine, model, device, threads, model_name),
                address=address,
                workers=workers,
                task_frames=task_frames,
            )
            try:
                previous = begin_run(spec, settings, resume=resume)
                try:
                    with _ProgressReporter(quiet) as reporter:
                        summary = matting.run(
                            inputs,
                            spec,
                            trimap_spec=masks or carried or trimap_dir,
                            options=options,
                            motion=motion,
                            reporter=reporter,
                            debug=debug,
                        )
                except MatteError:  # raised before the first frame (failures of inputs are in the summary)
                    restore_record(spec, previous)
                    raise
            finally:
                matting.close()
            if not summary.failed:
                finish_run(spec, settings, every_frame=start is None and end is None and every == 1)
        summary.run["model_file"] = str(model)
        if not quiet:
            err_console.print(summary.describe(), markup=False, highlight=False)
        if json_output:
            print_json(summary.to_json())
        if summary.failed:
            raise typer.Exit(EXIT_FAILED)


def _mask_trimaps(
    mask_dir: Path | None,
    trimap_dir: Path | None,
    band: str,
    fg_threshold: float,
    bg_threshold: float,
    soft_unknown: bool,
) -> MaskTrimaps | None:
    """The trimap source of ``--mask-dir`` (None without it); masks and trimaps exclude each other."""
    if mask_dir is None:
        return None
    if trimap_dir is not None:
        raise InputError(
            "--mask-dir and --trimap-dir cannot be combined",
            hint="give trimaps, or masks to make them from, not both",
        )
    from mattecli.mask_source import MaskTrimaps
    from mattecli.mask_trimaps import BandWidth, MaskTrimapSettings

    settings = MaskTrimapSettings(
        fg_threshold=fg_threshold,
        bg_threshold=bg_threshold,
        band=BandWidth.parse(band),
        soft_unknown=soft_unknown,
    )
    return MaskTrimaps(mask_dir, settings)


def _keyframe_trimaps(trimap_dir: Path | None, motion: MotionTracker | None) -> KeyframeTrimaps:
    """The trimap source of ``--keyframes``: the trimap folder's frames are keyframes."""
    if trimap_dir is None:
        raise InputError(
            "--keyframes needs --trimap-dir (the folder of keyframe trimaps)",
            hint="draw trimaps for a few frames, the first one included, and pass their folder with -t",
        )
    from mattecli.keyframes import KeyframeTrimaps
    from mattecli.media.trimaps import TrimapIndex

    return KeyframeTrimaps(TrimapIndex.open(trimap_dir), motion)


def _output_spec(
    directory: Path,
    alpha: str,
    fg: str,
    premultiplied: bool | None,
    composite: str | None,
    video: str | None,
    video_content: str,
    pattern: str | None,
    fps: str | None,
    no_audio: bool,
    *,
    ranged: bool = False,
) -> OutputSpec:
    from mattecli.media.compose import parse_background
    from mattecli.media.sinks import OutputSpec

    rate = None
    if fps is not None:
        try:
            rate = Fraction(fps)
        except (ValueError, ZeroDivisionError):
            rate = None
        if rate is None or rate <= 0:
            raise InputError(f"--fps {fps!r} is not a frame rate", hint="use e.g. 24, 23.976 or 24000/1001")
    return OutputSpec(
        directory=directory,
        alpha=None if alpha == "none" else alpha,  # type: ignore[arg-type]
        foreground=None if fg == "none" else fg,  # type: ignore[arg-type]
        premultiplied=premultiplied,
        composite=parse_background(composite) if composite is not None else None,
        video=video,  # type: ignore[arg-type]
        video_content=video_content,  # type: ignore[arg-type]
        pattern=pattern,
        audio=not no_audio,
        fps=rate,
        video_names_frames=ranged,
    )


class _Stopped(BaseException):
    """SIGTERM (or SIGINT) arrived: unwind like Ctrl-C, so every temporary file is removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into one line and exit code 128 + signal, after a clean unwind.

    By default SIGTERM ends the process at once, leaving a half-written temporary file and an
    open video; raised as an exception instead, it unwinds through the writers, which remove
    their temporary files (the frame being written is finished first). SIGKILL cannot be caught:
    the next run in the folder removes what it left (:mod:`mattecli.media.outfolder`).
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stopped(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except (KeyboardInterrupt, _Stopped) as exc:
        signum = exc.signum if isinstance(exc, _Stopped) else signal.SIGINT
        err_console.print(
            f"[bold red]stopped[/] by {signal.Signals(signum).name}: the frames written are complete; "
            "run the same command with --resume to finish",
            markup=True,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(128 + signum) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


class _ProgressReporter(Reporter):
    """A rich progress bar per input on stderr (frames, fps, ETA), drawn only on a terminal."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            ProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress
        from rich.text import Text

        class FpsColumn(ProgressColumn):
            def render(self, task: Task) -> Text:
                speed = task.finished_speed or task.speed
                return Text("" if speed is None else f"{speed:.1f} fps")

        self._quiet = quiet
        self.progress: Progress = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            FpsColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=quiet or not err_console.is_terminal,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> _ProgressReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def input_started(self, item: InputSummary, total: int | None, done: int) -> None:
        self._task = self.progress.add_task(Path(item.path).name, total=total, completed=done)

    def advance(self) -> None:
        if self._task is not None:
            self.progress.advance(self._task)

    def input_finished(self, item: InputSummary) -> None:
        if self._task is not None:
            self.progress.remove_task(self._task)
            self._task = None
        if item.failed:
            err_console.print(
                f"[bold red]error:[/] {item.error}", markup=True, highlight=False, soft_wrap=True
            )
        elif not self._quiet:
            err_console.print(item.describe(), markup=False, highlight=False)

    def warn(self, message: str) -> None:
        err_console.print(
            f"[yellow]warning:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True
        )
