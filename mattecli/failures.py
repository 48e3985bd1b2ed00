"""What one input's failure becomes: a line in the summary, or a bug report that stops the run.

A batch must survive bad input, so a failure that the input or the machine explains (the tool's
own :class:`MatteError`, an OS error, a media library's decoding error) becomes one line naming
the file and frame, and the run goes on with the next input. Anything else (a KeyError, an
AssertionError, a TypeError) is a bug in mattecli: passing it off as one more bad input would
hide it in a batch log, so its traceback is printed and the run stops with
:class:`mattecli.errors.InternalError` (exit code 70). ``debug`` prints the traceback of the
tool's own errors too.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from mattecli.errors import InputError, InternalError, MatteError


def is_input_problem(exc: BaseException) -> bool:
    """Whether the input or the machine explains ``exc`` (rather than a bug)."""
    if isinstance(exc, (MatteError, OSError)):
        return True
    import av  # only once something failed: PyAV is slow to import

    return isinstance(exc, av.FFmpegError)


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


def input_failure(exc: Exception, input_path: Path, frame: int | None, *, debug: bool) -> str:
    """The summary line for ``exc``, raised while processing ``input_path`` (at ``frame``, if known).

    Raises :class:`InternalError` (from ``exc``) when ``exc`` is a bug, after printing its
    traceback; with ``debug``, the traceback of an input problem is printed as well.
    """
    text = failure_text(exc, input_path, frame)
    internal = not is_input_problem(exc)
    if internal or debug:
        # On stderr, where a progress bar (which redirects stderr) prints it above itself.
        traceback.print_exception(exc, file=sys.stderr)
    if internal:
        raise InternalError(
            f"internal error: {type(exc).__name__}: {exc}",
            path=input_path,
            frame=frame,
            hint="this is a bug in mattecli, not a problem with the input: please report it with the "
            "traceback above",
        ) from exc
    return text
