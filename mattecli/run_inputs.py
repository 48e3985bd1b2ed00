"""The inputs of a run, before their first frame: expanding globs, opening, and the checks of the whole run.

Everything that can be checked without running the model is checked for *all* inputs before the
first frame: output options against each input's kind, every frame's trimap, two inputs writing
the same file. Such a problem stops the run before it starts (:class:`InputError`). An input that
cannot be opened is recorded in its summary, and the run goes on without it.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mattecli.errors import InputError, MatteError
from mattecli.failures import input_failure
from mattecli.media.frame import Frame
from mattecli.media.imageio import is_image_file
from mattecli.media.naming import video_name
from mattecli.media.sinks import OutputSpec, Sinks
from mattecli.media.sources import Source, open_source, selected
from mattecli.media.video_writer import video_suffix
from mattecli.run_options import RunOptions
from mattecli.summary import InputSummary
from mattecli.trimap_sources import TrimapSource

_NO_PIXELS = np.empty((0, 0, 3), dtype=np.uint8)
_GLOB = re.compile(r"[*?[]")


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


def output_stub(name: str, index: int, source: Path) -> Frame:
    """A frame without pixels: enough to ask the sinks for its output names."""
    return Frame(index=index, name=name, image=_NO_PIXELS, source=source)


@dataclass
class RunInput:
    """One input between opening and processing."""

    spec: str
    summary: InputSummary
    source: Source | None = None
    frames: list[tuple[str, int]] | None = None  # (name, index) in the range, when countable


def open_input(spec: str, options: RunOptions, *, debug: bool = False) -> RunInput:
    """Open one input and list the frames of its range (when the source can count them)."""
    item = RunInput(spec, InputSummary(spec))
    try:
        source = open_source(spec)
    except Exception as exc:  # noqa: BLE001 - one input that cannot be opened must not stop the others
        item.summary.fail(input_failure(exc, Path(spec), None, debug=debug))
        return item
    item.source = source
    item.summary.kind = source.info.kind
    if source.info.frame_count is not None:
        ids = source.frame_ids()
        first = ids[0][1] if options.start is None else options.start
        item.frames = [(n, i) for n, i in ids if selected(i, first, options.end, options.every)]
        item.summary.frames_total = len(item.frames)
    return item


def require_one_opened(items: Sequence[RunInput]) -> None:
    """Refuse a call none of whose inputs opens: it is bad input (exit 4), not a batch with failures."""
    if items and all(item.source is None for item in items):
        first = items[0].summary.error or items[0].spec
        more = f" (and {len(items) - 1} more inputs that could not be opened)" if len(items) > 1 else ""
        raise InputError(first + more, hint="check the input paths; nothing was written")


def sinks_for(output: OutputSpec, source: Source) -> Sinks:
    """The outputs of one source (nothing is opened before the first frame is written)."""
    info = source.info
    return Sinks(
        output, kind=info.kind, fps=info.fps, audio_source=source.path if info.kind == "video" else None
    )


def check_outputs(items: list[RunInput], output: OutputSpec) -> None:
    """Refuse output options an input cannot take, and two inputs that would write the same file."""
    owners: dict[Path, str] = {}
    for item in items:
        assert item.source is not None
        try:
            sinks = sinks_for(output, item.source)
        except MatteError as exc:
            raise InputError(f"{item.spec}: {exc}") from None
        # Used for names only: nothing was opened, so there is nothing to close.
        ids = item.frames or [(item.source.path.stem, 0)]
        paths = [
            p for name, index in ids for p in sinks.outputs_for(output_stub(name, index, item.source.path))
        ]
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


def check_trimaps(items: list[RunInput], trimaps: TrimapSource) -> None:
    """Every frame of every input has its trimap (one check, so names of all inputs are known)."""
    trimaps.check(frame for item in items for frame in item.frames or ())
