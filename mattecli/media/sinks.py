"""Sinks: write each frame's alpha, foreground, composite and video outputs in the formats asked for.

Layout of the output folder (each kind in its own folder, so names never collide)::

    OUT/alpha/<name>    alpha matte: 8/16-bit PNG, 16-bit TIFF or float32 EXR (channel "A")
    OUT/fg/<name>       foreground with alpha: RGBA 8/16-bit PNG or float32 EXR
    OUT/comp/<name>     foreground composited over a colour or an image: RGB 8/16-bit PNG
    OUT/<stem>.rgba.mov video of foreground + alpha (or <stem>.alpha.mov, an alpha-only matte);
                        .mkv for FFV1; <stem>.<first>-<last>.rgba.mov for a run given a frame
                        range, so the chunks of a farm job do not replace each other

``<name>`` follows the pattern (:mod:`mattecli.media.naming`), by default ``{stem}.{frame:06d}.{ext}``
for video and image sequences and ``{stem}.{ext}`` for photos. Image files are written atomically
by :func:`mattecli.media.imageio.write_image`; a video is written under a temporary name and renamed
when the sinks close cleanly (and removed if they close on an error). Files go only into real
folders: an output subfolder that is a symlink is refused rather than written through. A failed
write raises :class:`mattecli.errors.OutputError` naming the output file and the frame.

Straight or premultiplied colour: by default each format keeps its own convention: PNG stores
straight (unassociated) colour, as its specification says; EXR stores premultiplied colour, as
OpenEXR's says and Nuke assumes; videos store straight colour. ``OutputSpec.premultiplied`` forces
one or the other everywhere. Where alpha is 0, straight colour keeps the foreground estimate F
(not black), so a later un-premultiply or edge extension has real colour to work with.

When the engine gives no foreground estimate, the source frame's colour stands in for F (the
classic "source RGB + matte" output).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Literal, get_args

import numpy as np

from mattecli.errors import InputError, OutputError
from mattecli.media.compose import Background, Colour, composite, premultiply, quantize
from mattecli.media.frame import Frame
from mattecli.media.imageio import looks_whole, write_image
from mattecli.media.naming import NamePattern, name_pattern, video_name
from mattecli.media.sources import SourceKind
from mattecli.media.video_writer import VideoCodec, VideoContent, VideoWriter, video_suffix

AlphaFormat = Literal["png8", "png16", "tiff", "exr"]
ForegroundFormat = Literal["png8", "png16", "exr"]
CompositeFormat = Literal["png8", "png16"]

ALPHA_DIR, FOREGROUND_DIR, COMPOSITE_DIR = "alpha", "fg", "comp"
_EXTENSIONS = {"png8": "png", "png16": "png", "tiff": "tif", "exr": "exr"}


@dataclass(frozen=True)
class OutputSpec:
    """What to write, built by the ``run`` command from its options. ``None`` means "not written"."""

    directory: Path
    alpha: AlphaFormat | None = "png16"
    foreground: ForegroundFormat | None = None
    # None: each format's own convention (PNG and video straight, EXR premultiplied).
    premultiplied: bool | None = None
    composite: Colour | Path | None = None  # see compose.parse_background
    composite_format: CompositeFormat = "png8"
    video: VideoCodec | None = None
    video_content: VideoContent = "rgba"  # foreground + alpha, or an alpha-only matte
    pattern: str | None = None  # None: the default for the source kind
    audio: bool = True  # carry the source's audio into video outputs
    fps: Fraction | None = None  # frame rate for a video output from a source that has none
    video_names_frames: bool = False  # the video's name carries its first and last frame numbers

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("alpha", self.alpha, get_args(AlphaFormat)),
            ("foreground", self.foreground, get_args(ForegroundFormat)),
            ("composite_format", self.composite_format, get_args(CompositeFormat)),
            ("video", self.video, get_args(VideoCodec)),
            ("video_content", self.video_content, get_args(VideoContent)),
        ):
            if value is not None and value not in allowed:
                raise ValueError(f"OutputSpec.{name} must be one of {allowed}, not {value!r}")


class Sinks:
    """All outputs of one source. Use as a context manager; see the module docstring for the layout.

    ``fps`` is the source's frame rate (None for photos and sequences without one); it matters
    only for a video output. Every file takes its frame's own size, and a video output the size of
    its first frame (after any rotation the source applied), so nothing here depends on how a
    source reports its size. ``audio_source`` is the file whose first audio stream goes into video
    outputs (used for video sources only).
    """

    def __init__(
        self,
        spec: OutputSpec,
        *,
        kind: SourceKind,
        fps: Fraction | None,
        audio_source: Path | None = None,
    ) -> None:
        self.spec = spec
        self._kind = kind
        self._pattern: NamePattern = name_pattern(spec.pattern, kind)
        if not (spec.alpha or spec.foreground or spec.composite is not None or spec.video):
            raise InputError(
                "no output was asked for", hint="choose at least one of alpha, fg, comp or video"
            )
        if fps is not None and spec.fps is not None and Fraction(spec.fps) != Fraction(fps):
            raise InputError(
                f"this video runs at {fps} fps; a video output keeps the source's rate",
                hint="leave out --fps for video sources (it is for image sequences)",
            )
        self._rate = fps if fps is not None else spec.fps
        if spec.video:
            if kind == "stills":
                raise InputError(
                    "photos cannot be written as a video",
                    hint="a video output needs a video or a numbered image sequence",
                )
            if self._rate is None:
                raise InputError(
                    "this source has no frame rate, which a video output needs",
                    hint="give the frame rate with --fps",
                )
        self._audio_source = audio_source if spec.audio and kind == "video" else None
        self._background = Background(spec.composite) if spec.composite is not None else None
        self._stack = ExitStack()
        self._video: VideoWriter | None = None
        self._names: dict[Path, Path] = {}  # stills: output path -> the photo that claimed it

    # --- names -------------------------------------------------------------------------------

    def _path(self, folder: str, fmt: str, frame: Frame) -> Path:
        name = self._pattern.render(stem=frame.name, frame=frame.index, ext=_EXTENSIONS[fmt])
        return self.spec.directory / folder / name

    def outputs_for(self, frame: Frame) -> list[Path]:
        """The per-frame image files this frame gets (video files are not per frame)."""
        spec = self.spec
        paths = []
        if spec.alpha:
            paths.append(self._path(ALPHA_DIR, spec.alpha, frame))
        if spec.foreground:
            paths.append(self._path(FOREGROUND_DIR, spec.foreground, frame))
        if spec.composite is not None:
            paths.append(self._path(COMPOSITE_DIR, spec.composite_format, frame))
        return paths

    def is_complete(self, frame: Frame) -> bool:
        """True when every per-frame file is whole, so ``--resume`` may skip this frame.

        Files are only ever renamed into place whole and after an fsync, so one that exists is
        complete unless the machine crashed or something else wrote it: an empty file, one that
        does not start (or, for PNG, end) like its format, or a symlink is not trusted
        (:func:`mattecli.media.imageio.looks_whole`). Always False when a video output is asked
        for: a video cannot be appended to, so it needs every frame.
        """
        return not self.spec.video and all(looks_whole(path) for path in self.outputs_for(frame))

    @property
    def video_path(self) -> Path | None:
        """The video output file, once the first frame has been written to it (its final name,
        with the frame range when the spec asks for it, once the sinks have closed)."""
        return self._video.path if self._video is not None else None

    # --- writing -----------------------------------------------------------------------------

    def write(self, frame: Frame, alpha: np.ndarray, foreground: np.ndarray | None = None) -> None:
        """Write every output of one frame.

        ``alpha``: float32 H x W in [0, 1]. ``foreground``: float32 H x W x 3, or None to use the
        source frame's colour; in [0, 1] except where a float (EXR) plate's own values pass through
        (integer formats clip them, EXR keeps them).
        """
        h, w = frame.height, frame.width
        if alpha.shape != (h, w) or (foreground is not None and foreground.shape != (h, w, 3)):
            raise ValueError(f"alpha/foreground do not match the {w}x{h} frame {frame.index}")
        try:
            self._write(frame, alpha, foreground)
        except OutputError as exc:  # written by this frame: say so, whichever thread reports it
            if exc.frame is not None:
                raise
            raise OutputError(exc.message, path=exc.path, frame=frame.index, hint=exc.hint) from None

    def _write(self, frame: Frame, alpha: np.ndarray, foreground: np.ndarray | None) -> None:
        h, w = frame.height, frame.width
        spec = self.spec
        paths = iter(self.outputs_for(frame))
        if self._kind == "stills":
            self._claim_names(frame)
        wants_colour = (
            spec.foreground or spec.composite is not None or (spec.video and spec.video_content == "rgba")
        )
        colour = foreground if foreground is not None or not wants_colour else frame.to_float()
        if spec.alpha:
            write_image(next(paths), _encode(alpha, spec.alpha), allow_folder_link=False)
        if spec.foreground:
            premultiplied = spec.foreground == "exr" if spec.premultiplied is None else spec.premultiplied
            rgba = _encode(_rgba(colour, alpha, premultiplied), spec.foreground)
            write_image(next(paths), rgba, allow_folder_link=False)
        if self._background is not None:
            comp = composite(colour, alpha, self._background.at(w, h))
            write_image(next(paths), _encode(comp, spec.composite_format), allow_folder_link=False)
        if spec.video:
            video = self._video or self._open_video(frame)
            image = alpha if spec.video_content == "alpha" else _rgba(colour, alpha, bool(spec.premultiplied))
            video.write(image, index=frame.index, time=frame.time)

    def _claim_names(self, frame: Frame) -> None:
        """Photos with the same stem (a.jpg, a.png) would overwrite each other's outputs: refuse."""
        for path in self.outputs_for(frame):
            owner = self._names.setdefault(path, frame.source)
            if owner != frame.source:
                raise InputError(
                    f"its output {path.name} would overwrite the output of {owner.name}",
                    path=frame.source,
                    hint="add {frame} to the name pattern, e.g. {stem}.{frame:04d}.{ext}",
                )

    def _open_video(self, frame: Frame) -> VideoWriter:
        spec = self.spec
        assert spec.video is not None and self._rate is not None
        name = video_name(frame.name, spec.video_content, video_suffix(spec.video))
        self._video = self._stack.enter_context(
            VideoWriter(
                spec.directory / name,
                codec=spec.video,
                content=spec.video_content,
                width=frame.width,
                height=frame.height,
                fps=self._rate,
                audio_source=self._audio_source,
                name_frames=spec.video_names_frames,
            )
        )
        return self._video

    def close(self) -> None:
        """Finish the video output (if any) and rename it into place."""
        self._stack.close()

    def __enter__(self) -> Sinks:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.__exit__(exc_type, exc, tb)  # on an error, the video's temporary file is removed


def _rgba(colour: np.ndarray, alpha: np.ndarray, premultiplied: bool) -> np.ndarray:
    rgb = premultiply(colour, alpha) if premultiplied else colour
    return np.dstack([rgb, alpha]).astype(np.float32, copy=False)


def _encode(image: np.ndarray, fmt: str) -> np.ndarray:
    """Float [0, 1] to the array a format stores: uint8 (png8), uint16 (png16, tiff) or float32 (exr)."""
    if fmt == "png8":
        return quantize(image, np.uint8)
    if fmt in ("png16", "tiff"):
        return quantize(image, np.uint16)
    return image.astype(np.float32, copy=False)
