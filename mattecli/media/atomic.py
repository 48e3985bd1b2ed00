"""Publishing a file whole: write it under a temporary name beside its final one, then rename it.

A killed run must never leave a half-written file under a final name (``--resume`` trusts what it
finds), and an output folder that others can write to must not be a way to make this tool write
elsewhere. Each step below is there for one of those reasons:

* The temporary file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` relative to a descriptor of
  the destination folder: anything already at that name, a planted symlink included, makes the
  creation fail instead of being written through.
* Everything is written through the descriptor that created the file; the name is never opened
  again, and nothing is chmod'ed by name. Swapping the temporary name for a symlink mid-write
  therefore changes nothing. The file gets mode 0o666 less the umask, like any file the user makes.
* ``fsync`` before the rename (and of the folder after it): a node that crashes right after the
  rename still has the data, so a file under its final name is never empty or short.
* The rename is checked: the temporary name must still be the file written (same inode) just
  before it, and the final name must be that file just after it. ``rename`` follows no symlink at
  either name, so a symlink planted at the final name is replaced, never written through.
* Temporary names are short and do not grow with the final name (``.mattecli-<12 hex digits>.part``,
  plus the final suffix for writers that choose a format by name), so an output name may use all
  of NAME_MAX, and a later run recognises, and removes, the temporaries a killed run (SIGKILL,
  power loss) left behind: :func:`remove_temporaries`.

Failures are raised as :class:`mattecli.errors.OutputError` naming the FINAL file and the reason
in words ("no space left on device"), never the temporary name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from mattecli.errors import OutputError

TEMP_PREFIX, TEMP_SUFFIX = ".mattecli-", ".part"
TEMP_NAME = re.compile(r"\.mattecli-[0-9a-f]{12}\.part(\.[0-9A-Za-z]{1,10})?\Z")
_KEPT_SUFFIX = re.compile(r"\.[0-9A-Za-z]{1,10}\Z")

_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NO_ACCESS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def write_failure(
    final: Path,
    exc: BaseException,
    *,
    frame: int | None = None,
    doing: str = "cannot write",
    outcome: str = "",
) -> OutputError:
    """The user's error for a failed write of ``final``: the output's name and the reason in words.

    ``doing`` and ``outcome`` frame the reason: "cannot finish the video: file too large; the video
    is not kept". An :class:`OutputError` (already in words) keeps its reason and hint.
    """
    if isinstance(exc, OutputError):
        reason = exc.message.removeprefix("cannot write: ")
        return OutputError(f"{doing}: {reason}{outcome}", path=final, frame=frame, hint=exc.hint)
    code = getattr(exc, "errno", None)
    reason = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc) or type(exc).__name__
    reason = reason[:1].lower() + reason[1:]
    if code in _NO_ROOM:
        hint = "free space on the output disk (or raise the file size limit), then run again with --resume"
    elif code in _NO_ACCESS:
        hint = "check the output folder's permissions, or choose another -o"
    else:
        hint = "check the output folder, then run again with --resume"
    return OutputError(f"{doing}: {reason}{outcome}", path=final, frame=frame, hint=hint)


def _open_folder(folder: Path, *, allow_link: bool) -> int:
    """A descriptor of ``folder`` (created if missing); refuse a symlink unless ``allow_link``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a symlink to nowhere, or a file: reported below
        pass
    except OSError as exc:
        raise write_failure(folder, exc) from None
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if allow_link else os.O_NOFOLLOW)
    try:
        return os.open(folder, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and folder.is_symlink():
            raise OutputError(
                "is a symbolic link; outputs are never written through a link",
                path=folder,
                hint="remove the link (or make it a real folder), or choose another -o",
            ) from None
        if exc.errno == errno.ENOTDIR:
            raise OutputError("is a file, not a folder", path=folder, hint="choose another -o") from None
        raise write_failure(folder, exc) from None


class AtomicFile:
    """A new file that appears under ``final`` only when :meth:`publish` succeeds.

    Write with :meth:`write`, or hand :meth:`fileobj` to a library that writes through a file
    object. Use as a context manager: a clean exit publishes, an exception discards. ``allow_link``
    False refuses a destination folder that is a symlink (the output subfolders); ``keep_suffix``
    ends the temporary name with the final suffix, for writers that choose a format by name.
    """

    def __init__(self, final: Path, *, allow_link: bool = True, keep_suffix: bool = False) -> None:
        self.final = Path(final)
        self._dir = _open_folder(self.final.parent, allow_link=allow_link)
        suffix = self.final.suffix if keep_suffix and _KEPT_SUFFIX.match(self.final.suffix) else ""
        self.temp_name = f"{TEMP_PREFIX}{secrets.token_hex(6)}{TEMP_SUFFIX}{suffix}"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self.fd = os.open(self.temp_name, flags, 0o666, dir_fd=self._dir)
        except OSError as exc:
            os.close(self._dir)
            raise write_failure(self.final, exc) from None
        self._stat = os.fstat(self.fd)
        self._open = True

    @property
    def temp_path(self) -> Path:
        return self.final.parent / self.temp_name

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at the current position."""
        view = memoryview(data).cast("B")
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            raise write_failure(self.final, exc) from None

    def fileobj(self) -> BinaryIO:
        """A file object on a duplicate of the descriptor; close it before :meth:`publish`."""
        return os.fdopen(os.dup(self.fd), "w+b")

    def _is_ours(self, name: str) -> bool:
        try:
            now = os.stat(name, dir_fd=self._dir, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (now.st_dev, now.st_ino) == (self._stat.st_dev, self._stat.st_ino)

    def publish(self, final: Path | None = None) -> None:
        """Flush to disk and rename into place (``final``: another name in the same folder)."""
        if final is not None:
            if Path(final).parent != self.final.parent:
                raise ValueError(f"{final} is not in the folder of {self.final}")
            self.final = Path(final)
        published = False
        try:
            os.fsync(self.fd)
            if not self._is_ours(self.temp_name):
                raise OutputError(
                    "its temporary file was replaced by something else during the write; "
                    "nothing was published",
                    path=self.final,
                    hint="make sure no other program writes into the output folder",
                )
            os.replace(self.temp_name, self.final.name, src_dir_fd=self._dir, dst_dir_fd=self._dir)
            published = True
            if not self._is_ours(self.final.name):
                # Swapped between the check and the rename: never leave that object as the output.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.final.name, dir_fd=self._dir)
                raise OutputError(
                    "was replaced by something else while it was published; it was removed",
                    path=self.final,
                    hint="make sure no other program writes into the output folder",
                )
            with contextlib.suppress(OSError):  # some file systems cannot sync a folder
                os.fsync(self._dir)
        except OSError as exc:
            raise write_failure(self.final, exc) from None
        finally:
            if published:
                self._close()
            else:
                self.discard()

    def discard(self) -> None:
        """Remove the temporary file (only if the name is still the file written) and close."""
        if self._open:
            with contextlib.suppress(OSError):
                if self._is_ours(self.temp_name):
                    os.unlink(self.temp_name, dir_fd=self._dir)
            self._close()

    def _close(self) -> None:
        if self._open:
            self._open = False
            os.close(self.fd)
            os.close(self._dir)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.publish()
        else:
            self.discard()


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final`` for a writer that needs a path; publish it on success.

    For files written by libraries that only take a path (checkpoints, ONNX exports, reports).
    The writer must write the yielded file in place (truncate and write, as ``open(path, "wb")``
    does); the publish step checks that the file under the temporary name is still the one
    created here. Outputs of ``run`` are written through :class:`AtomicFile` itself.
    """
    with AtomicFile(Path(final), keep_suffix=True) as atomic:
        yield atomic.temp_path


def remove_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files a killed run left in ``folder``; return what was removed.

    Call only while holding the output folder's lock: a running writer's temporaries look the same.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if TEMP_NAME.match(entry.name) and not entry.is_dir(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed
