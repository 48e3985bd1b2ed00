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

**Chunks of one job share the folder.** A render farm runs the frame ranges of one shot
(``--start/--end``, ``--chunk K/N``) at the same time, into one folder. Such a *ranged* run
takes the lock *shared* instead (:class:`ChunkClaim`), so it excludes whole runs but not other
chunks, and it also holds, for its lifetime, an exclusive ``flock`` on a file of its own,
``OUT/.mattecli-chunk-<hex>.lock``, holding its job key (a hash of every setting that changes the
pixels, :mod:`mattecli.media.manifest`) and its pid and host. That file is how runs see each other:
a chunk file whose lock can be taken belongs to a process that has ended (the kernel released it)
and is removed; one that cannot is a live chunk. A chunk whose job key differs from a live
chunk's is refused (two kinds of matte would interleave); one of the same job joins. Joining,
leaving and the manifest's updates are serialised by a short blocking lock on
``OUT/.mattecli-gate.lock``. Temporary files are removed only when no other chunk is live,
because a live chunk's temporaries look exactly like a killed one's: removing them would make
its next rename fail. ``flock`` works across the machines of an NFS v4 or Lustre mount, which
is what a farm's shared storage usually is.

A run that stops before writing anything (a missing trimap, a model that does not load) leaves
no trace: the folders it created are removed again when they hold nothing but its own records.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import os
import re
import secrets
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mattecli.errors import OutputError
from mattecli.media.atomic import AtomicFile, remove_temporaries, write_failure
from mattecli.media.naming import video_name
from mattecli.media.sinks import ALPHA_DIR, COMPOSITE_DIR, FOREGROUND_DIR, OutputSpec
from mattecli.media.video_writer import video_suffix

LOCK_NAME = ".mattecli.lock"
MANIFEST_NAME = ".mattecli-run.json"  # written by mattecli.media.manifest
GATE_NAME = ".mattecli-gate.lock"
CHUNK_LOCK = re.compile(r"\.mattecli-chunk-[0-9a-f]{12}\.lock\Z")
_RECORDS = frozenset({LOCK_NAME, MANIFEST_NAME, GATE_NAME})  # a run's own bookkeeping, not outputs
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
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
            if not holder:  # frame-range runs share the lock and name themselves in their chunk files
                holder = ", ".join(chunk.holder for chunk in live_chunks(folder)) + " on a frame range"
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
    spec: OutputSpec,
    inputs: Sequence[str],
    trimaps: Path | None,
    *,
    job: dict[str, Any] | None = None,
) -> Iterator[list[Path]]:
    """Check, lock and tidy the output folder for one run (see the module docstring).

    ``job``: the pixel settings of a frame-range run, which then shares the folder with the
    other chunks of the same job (:class:`ChunkClaim`); None takes the folder alone. Yields the
    stale temporary files that were removed. Raises :class:`OutputError` (exit 4) for every
    problem, before anything is written.
    """
    refuse_replacing_inputs(spec, inputs, trimaps)
    folders = [spec.directory] + [folder for _, folder in output_subfolders(spec)]
    created = [folder for folder in folders if not os.path.lexists(folder)]
    try:
        _check_writable(spec.directory, allow_link=True)  # -o itself may be a link the user chose
        for folder in folders[1:]:
            _check_writable(folder, allow_link=False)
        if job is None:
            with _locked(spec) as removed:
                yield removed
        else:
            claim = ChunkClaim(spec, job_key(job))
            try:
                yield claim.removed
            finally:
                claim.release()
    finally:
        _remove_if_unused(created)


def _remove_all_temporaries(spec: OutputSpec) -> list[Path]:
    """Every temporary file in the output folder and its subfolders (also of kinds this run does
    not write); only while no other run can be writing here."""
    removed = remove_temporaries(spec.directory)
    for name in (ALPHA_DIR, FOREGROUND_DIR, COMPOSITE_DIR):
        folder = spec.directory / name
        if not folder.is_symlink():
            removed += remove_temporaries(folder)
    return removed


@contextmanager
def _locked(spec: OutputSpec) -> Iterator[list[Path]]:
    lock = OutputLock(spec.directory)
    try:
        yield _remove_all_temporaries(spec)
    finally:
        lock.release()


def job_key(settings: dict[str, Any]) -> str:
    """A short hash of a job's pixel settings: chunks with the same key write the same kind of matte."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextmanager
def folder_gate(folder: Path) -> Iterator[None]:
    """A short blocking exclusive lock on ``OUT/.mattecli-gate.lock``: one run at a time joins,
    leaves or updates the manifest, so two chunks starting together see each other."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / GATE_NAME
    try:
        fd = os.open(path, _LOCK_FLAGS, 0o666)
    except OSError as exc:
        raise write_failure(path, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass(frozen=True)
class LiveChunk:
    """A frame-range run that is writing into the folder now."""

    key: str  # its job key
    holder: str  # "pid 123 on host"
    pid: int
    host: str


def _parse_chunk_file(text: str) -> LiveChunk | None:
    parts = text.split()
    # "<key> pid <pid> on <host>"
    if len(parts) == 5 and parts[1] == "pid" and parts[2].isdigit() and parts[3] == "on":
        return LiveChunk(parts[0], f"pid {parts[2]} on {parts[4]}", int(parts[2]), parts[4])
    return None


def live_chunks(folder: Path, *, remove_stale: bool = False) -> list[LiveChunk]:
    """The frame-range runs writing into ``folder`` now (this process's own included).

    A chunk file whose lock can be taken was left by a process that has ended; with
    ``remove_stale`` (only under :func:`folder_gate`, so no run is creating one) it is removed.
    """
    live: list[LiveChunk] = []
    try:
        names = [entry.name for entry in os.scandir(folder) if CHUNK_LOCK.match(entry.name)]
    except OSError:
        return live
    for name in names:
        try:
            fd = os.open(folder / name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            chunk = _parse_chunk_file(os.pread(fd, 300, 0).decode(errors="replace"))
            live.append(chunk or LiveChunk("", "an unknown process", -1, ""))
        else:
            if remove_stale:
                with contextlib.suppress(OSError):
                    os.unlink(folder / name)
        finally:
            os.close(fd)
    return live


def _is_this_process(chunk: LiveChunk) -> bool:
    return chunk.pid == os.getpid() and chunk.host == socket.gethostname()


def others_writing(folder: Path) -> bool:
    """Whether a frame-range run of another process is writing into ``folder`` now."""
    return any(not _is_this_process(chunk) for chunk in live_chunks(folder))


class ChunkClaim:
    """A frame-range run's share of the output folder (see the module docstring).

    Holds the folder lock shared (no whole run can start) and its own chunk file exclusively
    (other chunks see it is live) until :meth:`release`, or until the process ends.
    """

    def __init__(self, spec: OutputSpec, key: str) -> None:
        folder = spec.directory
        self._folder = folder
        self._main = self._chunk = -1
        self.removed: list[Path] = []
        with folder_gate(folder):
            self._main = os.open(folder / LOCK_NAME, _LOCK_FLAGS, 0o666)
            try:
                fcntl.flock(self._main, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.pread(self._main, 200, 0).decode(errors="replace").strip()
                self._close_main()
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise write_failure(folder / LOCK_NAME, exc) from None
                raise OutputError(
                    f"another mattecli run ({holder or 'unknown process'}) is writing into this folder",
                    path=folder,
                    hint="wait for it to finish, or give this run its own output folder with -o",
                ) from None
            live = live_chunks(folder, remove_stale=True)
            other = next((chunk for chunk in live if chunk.key != key), None)
            if other is not None:
                self._close_main()
                raise OutputError(
                    f"another mattecli job ({other.holder}) is writing frame ranges into this folder "
                    "with other settings (model, options or output formats)",
                    path=folder,
                    hint="give this job its own output folder with -o, or run it with the same settings",
                )
            if not live:  # no other run is writing: whatever temporaries are here are litter
                self.removed = _remove_all_temporaries(spec)
            self._chunk_path = folder / f".mattecli-chunk-{secrets.token_hex(6)}.lock"
            try:
                self._chunk = os.open(self._chunk_path, _LOCK_FLAGS | os.O_EXCL, 0o666)
                fcntl.flock(self._chunk, fcntl.LOCK_EX)
                os.pwrite(self._chunk, f"{key} pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
            except OSError as exc:
                self._close_main()
                raise write_failure(self._chunk_path, exc) from None

    def _close_main(self) -> None:
        if self._main >= 0:
            os.close(self._main)
            self._main = -1

    def release(self) -> None:
        """Leave the folder: remove this run's chunk file, then drop the shared lock."""
        if self._chunk >= 0:
            with folder_gate(self._folder):
                with contextlib.suppress(OSError):
                    os.unlink(self._chunk_path)
                os.close(self._chunk)
                self._chunk = -1
        self._close_main()


def tidy_temporaries(spec: OutputSpec) -> list[Path]:
    """Remove the temporaries that workers of this run left when they were killed, at the end of a
    run whose own writers are all done; skipped while another frame-range run is writing here."""
    with folder_gate(spec.directory):
        if others_writing(spec.directory):
            return []
        return _remove_all_temporaries(spec)


def _remove_if_unused(created: list[Path]) -> None:
    """Remove the folders this run created (deepest first) that hold nothing but its records."""
    for folder in sorted(created, key=lambda f: len(f.parts), reverse=True):
        try:
            names = set(os.listdir(folder))
        except OSError:
            continue
        records = all(name in _RECORDS or CHUNK_LOCK.match(name) for name in names)
        if records and not others_writing(folder):  # a chunk that started meanwhile keeps the folder
            with contextlib.suppress(OSError):
                for name in names:
                    os.unlink(folder / name)
                folder.rmdir()
