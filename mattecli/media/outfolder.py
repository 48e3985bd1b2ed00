"""The output folder of a run: checked before the model loads, locked for the run, tidied of litter.

Everything here happens before the first frame, because a problem with the output folder found
after the model loaded and frame 0 ran wastes that time and, worse, may already have replaced
files. :func:`claim_output_folder` does, in order:

1. Refuses an output that would replace an input or a trimap: an output subfolder (``alpha/``,
   ``fg/``, ``comp/``) that IS a folder the inputs or trimaps are read from
   (``run shots/alpha -o shots``), or a video output whose name is an input's.
2. Checks the output folder and each subfolder the run writes into can take a file: not a file,
   not a symlink (a link in the output folder could point anywhere), creatable and writable. It
   does so by creating and removing a temporary file in each, the only test that is true for
   every file system and user (root included, read-only mounts included).
3. Takes an exclusive lock (``flock``) on ``OUT/.mattecli.lock``, held until the run ends and
   released by the kernel however the process ends, so two runs never interleave their files in
   one folder. The second run is refused with one line naming the folder and the holder's pid.
4. Removes the temporary files of an earlier run that was killed (:func:`remove_temporaries`);
   safe only now that the lock says no other run is writing here.

A run that stops before writing anything (a missing trimap, a model that does not load) leaves
no trace: the folders it created are removed again when they hold nothing but its own records.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mattecli.errors import OutputError
from mattecli.media.atomic import AtomicFile, remove_temporaries, write_failure
from mattecli.media.naming import video_name
from mattecli.media.sinks import ALPHA_DIR, COMPOSITE_DIR, FOREGROUND_DIR, OutputSpec
from mattecli.media.video_writer import video_suffix

LOCK_NAME = ".mattecli.lock"
MANIFEST_NAME = ".mattecli-run.json"  # written by mattecli.media.manifest
_GLOB_CHARS = "*?["
_PROBE = "probe"


def output_subfolders(spec: OutputSpec) -> list[tuple[str, Path]]:
    """(kind, folder) of every subfolder this spec writes per-frame files into."""
    kinds = [
        ("alpha", ALPHA_DIR, spec.alpha is not None),
        ("foreground", FOREGROUND_DIR, spec.foreground is not None),
        ("composite", COMPOSITE_DIR, spec.composite is not None),
    ]
    return [(kind, spec.directory / name) for kind, name, wanted in kinds if wanted]


def _read_from(specs: Sequence[str], trimaps: Path | None) -> tuple[list[Path], list[Path]]:
    """The folders and the files the inputs and trimaps are read from (those that exist)."""
    folders: list[Path] = []
    files: list[Path] = []
    paths: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.exists():
            paths.append(path)
        elif any(c in spec for c in _GLOB_CHARS):
            paths.extend(Path(m) for m in glob.glob(spec))
        elif path.parent.is_dir():  # a pattern such as shot/shot.%04d.exr
            folders.append(path.parent)
    if trimaps is not None and trimaps.exists():
        paths.append(trimaps)
    for path in paths:
        if path.is_dir():
            folders.append(path)
        else:
            files.append(path)
            folders.append(path.parent)
    return folders, files


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_replacing_inputs(spec: OutputSpec, inputs: Sequence[str], trimaps: Path | None) -> None:
    """Raise :class:`OutputError` when an output would be written over an input or a trimap."""
    folders, files = _read_from(inputs, trimaps)
    for kind, folder in output_subfolders(spec):
        source = next((f for f in folders if _same(folder, f)), None)
        if source is not None:
            raise OutputError(
                f"the {kind} outputs would go into {source}, which the inputs or trimaps are read from, "
                "and replace its files",
                path=folder,
                hint="choose another output folder with -o (a new, empty one)",
            )
    if spec.video:
        suffix = video_suffix(spec.video)
        names = {video_name(f.stem, spec.video_content, suffix) for f in files}
        for file in files:
            if file.name in names and _same(file.parent, spec.directory):
                raise OutputError(
                    "a video output would replace this input",
                    path=file,
                    hint="choose another output folder with -o",
                )


def _check_writable(folder: Path, *, allow_link: bool) -> None:
    """Create and remove a temporary file in ``folder`` (creating the folder if needed)."""
    if folder.is_symlink() and not allow_link:
        raise OutputError(
            "is a symbolic link; outputs are never written through a link",
            path=folder,
            hint="remove the link (or make it a real folder), or choose another -o",
        )
    if folder.exists() and not folder.is_dir():
        raise OutputError("is a file, not a folder", path=folder, hint="choose another output folder with -o")
    AtomicFile(folder / _PROBE, allow_link=allow_link).discard()


class OutputLock:
    """An exclusive ``flock`` on ``OUT/.mattecli.lock`` for one run; released by :meth:`release`
    or by the kernel when the process ends, however it ends (so no stale lock after a SIGKILL)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self._fd = os.open(self.path, flags, 0o666)
        except OSError as exc:
            raise write_failure(self.path, exc) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(self._fd, 200, 0).decode(errors="replace").strip()
            os.close(self._fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise write_failure(self.path, exc) from None
            raise OutputError(
                f"another mattecli run ({holder or 'unknown process'}) is writing into this folder",
                path=folder,
                hint="wait for it to finish, or give this run its own output folder with -o",
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = -1


@contextmanager
def claim_output_folder(
    spec: OutputSpec, inputs: Sequence[str], trimaps: Path | None
) -> Iterator[list[Path]]:
    """Check, lock and tidy the output folder for one run (see the module docstring).

    Yields the stale temporary files that were removed. Raises :class:`OutputError` (exit 4)
    for every problem, before anything is written.
    """
    refuse_replacing_inputs(spec, inputs, trimaps)
    folders = [spec.directory] + [folder for _, folder in output_subfolders(spec)]
    created = [folder for folder in folders if not os.path.lexists(folder)]
    try:
        _check_writable(spec.directory, allow_link=True)  # -o itself may be a link the user chose
        for folder in folders[1:]:
            _check_writable(folder, allow_link=False)
        with _locked(spec) as removed:
            yield removed
    finally:
        _remove_if_unused(created)


@contextmanager
def _locked(spec: OutputSpec) -> Iterator[list[Path]]:
    lock = OutputLock(spec.directory)
    try:
        removed = remove_temporaries(spec.directory)
        for name in (ALPHA_DIR, FOREGROUND_DIR, COMPOSITE_DIR):  # also of kinds this run does not write
            folder = spec.directory / name
            if not folder.is_symlink():
                removed += remove_temporaries(folder)
        yield removed
    finally:
        lock.release()


def _remove_if_unused(created: list[Path]) -> None:
    """Remove the folders this run created (deepest first) that hold nothing but its records."""
    for folder in sorted(created, key=lambda f: len(f.parts), reverse=True):
        try:
            names = set(os.listdir(folder))
        except OSError:
            continue
        if names <= {LOCK_NAME, MANIFEST_NAME}:
            with contextlib.suppress(OSError):
                for name in names:
                    os.unlink(folder / name)
                folder.rmdir()
