"""Output file names: a user pattern with ``{stem}``, ``{frame}`` and ``{ext}``, checked before any work.

A bad pattern found after an hour of inference would waste the hour, so :func:`name_pattern` tries
the pattern on sample values up front and refuses anything that could not name every frame of the
source apart: unknown fields, a missing ``{frame}`` where a source has many frames, or a path
separator (each output kind has its own folder; a pattern names files, not folders).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from mattecli.errors import InputError
from mattecli.media.sources import SourceKind

FIELDS = ("stem", "frame", "ext")
# Frame numbers zero-padded so that names sort in frame order in any file browser.
SEQUENCE_PATTERN = "{stem}.{frame:06d}.{ext}"
# A photo has no frame number: its outputs keep the photo's own stem.
STILLS_PATTERN = "{stem}.{ext}"

_HINT = "use the fields {stem}, {frame} and {ext}, e.g. " + SEQUENCE_PATTERN


def default_pattern(kind: SourceKind) -> str:
    return STILLS_PATTERN if kind == "stills" else SEQUENCE_PATTERN


@dataclass(frozen=True, slots=True)
class NamePattern:
    """A validated pattern; :meth:`render` gives one file name (no folder)."""

    text: str

    def render(self, *, stem: str, frame: int, ext: str) -> str:
        return self.text.format(stem=stem, frame=frame, ext=ext)


def name_pattern(pattern: str | None, kind: SourceKind) -> NamePattern:
    """Validate ``pattern`` (None: the default for ``kind``) and return it ready to render.

    Rules: only the three fields, no conversions (``!r``); the pattern ends with ``.{ext}`` so the
    writer can tell the format from the suffix; ``{frame}`` is required for video and sequence
    sources, whose frames share one stem; no ``/`` or ``\\``.
    """
    text = default_pattern(kind) if pattern is None else pattern

    def refuse(why: str, hint: str = _HINT) -> InputError:
        return InputError(f"output name pattern '{text}': {why}", hint=hint)

    if "/" in text or "\\" in text:
        raise refuse(
            "contains a path separator",
            "a pattern names files; outputs go to the output folder's alpha/, fg/ and comp/ folders",
        )
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:  # unbalanced braces
        raise refuse(str(exc)) from None
    fields = [(name, spec, conversion) for _, name, spec, conversion in parts if name is not None]
    for name, _, conversion in fields:
        if name not in FIELDS:
            raise refuse(f"unknown field {{{name}}}")
        if conversion is not None:
            raise refuse(f"conversion !{conversion} is not supported")
    last_literal, last_name, last_spec, _ = parts[-1] if parts else ("", None, "", None)
    if last_name != "ext" or last_spec or not last_literal.endswith("."):
        raise refuse("must end with .{ext}", "the extension tells the writer which format to use")
    if kind != "stills" and "frame" not in {name for name, _, _ in fields}:
        raise refuse(f"has no {{frame}}, so every frame of this {kind} would get the same name")
    try:
        text.format(stem="stem", frame=1, ext="png")
    except (ValueError, TypeError) as exc:  # a format spec that does not fit, e.g. {stem:d}
        raise refuse(str(exc)) from None
    return NamePattern(text)


def video_name(stem: str, content: str, suffix: str, frames: tuple[int, int] | None = None) -> str:
    """Name of a video output, e.g. ``shot.rgba.mov``; it sits at the top of the output folder.

    ``frames``: the first and last frame numbers in it, for a run given a frame range
    (``shot.000024-000047.rgba.mov``), so the chunks of a farm job written into one folder
    do not replace each other.
    """
    span = "" if frames is None else f".{frames[0]:06d}-{frames[1]:06d}"
    return f"{stem}{span}.{content}{suffix}"
