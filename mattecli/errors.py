"""Errors a user can act on, and the exit codes scripts can rely on.

Every failure that comes from the user's input or machine (a missing file, a bad trimap, an absent
backend) is raised as a :class:`MatteError`. The CLI prints it as one readable message, never a
traceback, so a batch job's log says which file and frame is wrong and what to do about it.
"""

from __future__ import annotations

from pathlib import Path

# Exit codes. 2 is Typer's own code for a bad option or argument.
EXIT_OK = 0
EXIT_FAILED = 1  # some inputs failed (the others were still processed)
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3  # the requested backend, device or extra is not installed
EXIT_BAD_INPUT = 4  # an input file or option value cannot be used
EXIT_INTERNAL = 70  # a bug in mattecli, not the input's fault (sysexits' EX_SOFTWARE); traceback shown


class MatteError(Exception):
    """A failure with a message meant for the user, naming the file and frame where it applies."""

    exit_code: int = EXIT_BAD_INPUT

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        frame: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.frame = frame
        self.hint = hint

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path))
        if self.frame is not None:
            where.append(f"frame {self.frame}")
        text = f"{': '.join(where)}: {self.message}" if where else self.message
        return f"{text} ({self.hint})" if self.hint else text


class InputError(MatteError):
    """An input (media, trimap, model file, option value) that cannot be used as given."""

    exit_code = EXIT_BAD_INPUT


class UnavailableError(MatteError):
    """A backend, device or optional dependency that the user asked for is not installed here."""

    exit_code = EXIT_UNAVAILABLE


class InternalError(MatteError):
    """A failure that no input or machine explains (a KeyError, an AssertionError...): a bug.

    Raised with the original exception as its cause, after its traceback was printed, so that a
    bug is never passed off as a bad input and scripts can tell the two apart by the exit code.
    """

    exit_code = EXIT_INTERNAL


class OutputError(MatteError):
    """An output that cannot be written: a full disk, a folder without write permission, a path
    that would replace an input, or an output folder another run holds."""

    exit_code = EXIT_BAD_INPUT
