"""Image files as a source: numbered sequences (``shot.1001.exr`` ...) and sets of stills.

A folder (or a glob) is a **sequence** when every file is ``<prefix><number>.<suffix>`` with the
same prefix and suffix (``shot.1001.exr``, ``shot.1002.exr``, or ``00000.jpg``, ``00001.jpg``)
*and* every file has the same size, read from the headers (:mod:`mattecli.media.imageheader`,
after EXIF orientation). Names alone do not make a shot: a camera folder names its photos
``IMG_0001.jpg``, ``IMG_0002.jpg`` whatever their orientation, and a portrait beside a landscape
photo is two stills, not a broken sequence. A sequence's frames are numbered by the number in the
name, and its name is the prefix without a trailing separator (``shot``); when the prefix is empty
(``00000.jpg``) the folder's name stands in, so outputs and trimaps still get a meaningful stem. A
printf or hash pattern is always a sequence, even of one file: the user said so. Anything else (a
single image, a folder of unrelated photos) is **stills**: numbered 0, 1, 2 ... in natural order
and named by their own stems.

All frames of a sequence must share size and bit depth, because it is one shot: a different
frame (possible only with a printf or hash pattern, or a file changed after opening) is an error
naming that file. Stills may differ (product photos rarely share a size), so
``SourceInfo.width/height/bit_depth`` describe the first still only.

Files whose names start with a dot are ignored: they are hidden files or the temporary files of a
write that was interrupted (see :func:`mattecli.media.imageio.atomic_path`).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mattecli.errors import InputError
from mattecli.media.frame import Frame
from mattecli.media.imageheader import read_header
from mattecli.media.imageio import is_image_file, read_image
from mattecli.media.sources import Source, SourceInfo, SourceKind, natural_key, selected

_NUMBERED = re.compile(r"(?P<prefix>.*?)(?P<number>\d+)")
_PRINTF = re.compile(r"%(?P<width>0?\d*)d")
_HASHES = re.compile(r"#+")
_SEPARATORS = "._- "


@dataclass(frozen=True, slots=True)
class _Item:
    index: int
    name: str
    path: Path


def _bit_depth(image: np.ndarray) -> int:
    """Bits per component of a decoded image: 8 (uint8), 16 (uint16) or 32 (float)."""
    return 32 if np.issubdtype(image.dtype, np.floating) else image.dtype.itemsize * 8


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise InputError(f"cannot list this folder: {exc.strerror or exc}", path=folder) from exc


def _read(path: Path, frame: int | None = None) -> np.ndarray:
    """Decode one file; errors name the frame (of a sequence) as well as the file."""
    try:
        return read_image(path)
    except OSError as exc:  # permissions, a file removed while running, a bad disk
        raise InputError(f"cannot read this image: {exc.strerror or exc}", path=path, frame=frame) from exc
    except InputError as exc:
        if frame is None or exc.frame is not None:
            raise
        raise InputError(exc.message, path=exc.path, frame=frame, hint=exc.hint) from exc


class ImageSource(Source):
    """A numbered sequence or a set of stills, read one file per frame."""

    def __init__(self, path: Path, kind: SourceKind, items: list[_Item]) -> None:
        first = _read(items[0].path)
        self._items = items
        self._shape = first.shape
        self._dtype = first.dtype
        info = SourceInfo(
            kind=kind,
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            fps=None,
            frame_count=len(items),
            bit_depth=_bit_depth(first),
        )
        super().__init__(path, info)

    def frame_ids(self) -> list[tuple[str, int]]:
        return [(item.name, item.index) for item in self._items]

    def _frames(self, start: int | None, end: int | None, every: int) -> Generator[Frame, None, None]:
        first = self._items[0].index if start is None else start
        for item in self._items:
            if not selected(item.index, first, end, every):
                continue
            # A still's position is no frame number anyone knows it by: its file name says it all.
            image = _read(item.path, item.index if self.info.kind == "sequence" else None)
            if self.info.kind == "sequence":
                self._check_matches(item, image)
            yield Frame(index=item.index, name=item.name, image=image, source=item.path)

    def _check_matches(self, item: _Item, image: np.ndarray) -> None:
        if image.shape != self._shape:
            got, want = f"{image.shape[1]}x{image.shape[0]}", f"{self._shape[1]}x{self._shape[0]}"
            raise InputError(
                f"frame is {got} but the sequence is {want}",
                path=item.path,
                frame=item.index,
                hint=f"every frame of a sequence must be {want}; re-render or resize this one",
            )
        if image.dtype != self._dtype:
            raise InputError(
                f"frame is {_bit_depth(image)}-bit but the sequence is {self.info.bit_depth}-bit",
                path=item.path,
                frame=item.index,
                hint="write every frame of the sequence at the same bit depth",
            )


def open_still(path: Path) -> ImageSource:
    """A single image file: one frame, index 0, named by its stem."""
    return ImageSource(path, "stills", [_Item(0, path.stem, path)])


def open_folder(folder: Path) -> ImageSource:
    """Every image file in a folder (not its subfolders), as a sequence or as stills."""
    files = _image_files(_listing(folder))
    if not files:
        raise InputError(
            "folder holds no image files",
            path=folder,
            hint="images must end in .png, .jpg, .tif, .exr, .bmp or .webp",
        )
    return _classify(folder, files, sequence_name=folder.resolve().name)


def open_pattern(pattern: Path) -> ImageSource:
    """Files matching a printf (``shot.%04d.exr``), hash (``shot.####.exr``) or glob pattern."""
    folder = pattern.parent
    if not folder.is_dir():
        raise InputError("the pattern's folder does not exist", path=folder)
    name = _HASHES.sub(lambda m: f"%0{len(m.group())}d", pattern.name)
    directives = list(_PRINTF.finditer(name))
    if len(directives) > 1:
        raise InputError("a frame pattern may hold only one frame number", path=pattern)
    if directives:
        return _open_printf(pattern, directives[0])
    matches = [p for p in folder.glob(pattern.name) if not p.name.startswith(".") and p.is_file()]
    files = _image_files(matches)
    if not matches:
        raise InputError(
            "no file matches this pattern", path=pattern, hint="check the folder and the wildcard"
        )
    if not files:
        raise InputError(
            f"{len(matches)} file(s) match this pattern but none is an image ({matches[0].name}, ...)",
            path=pattern,
            hint="a glob inside one folder is read as an image sequence; name videos one by one "
            "or glob from a folder above them",
        )
    return _classify(pattern, files, sequence_name=folder.resolve().name)


def _open_printf(pattern: Path, directive: re.Match[str]) -> ImageSource:
    """Frame numbers are read back by formatting: ``%04d`` takes ``0007`` and ``12345`` but not ``7``."""
    name = directive.string
    head, tail = name[: directive.start()], name[directive.end() :]
    matcher = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail))
    items = []
    for path in _image_files(_listing(pattern.parent)):
        match = matcher.fullmatch(path.name)
        if match and head + directive.group() % int(match.group(1)) + tail == path.name:
            items.append((int(match.group(1)), path))
    if not items:
        raise InputError(
            "no image files match this pattern",
            path=pattern,
            hint="check the folder, the name and the zero padding: %04d means 0001",
        )
    seq_name = head.rstrip(_SEPARATORS) or pattern.parent.resolve().name
    return ImageSource(pattern, "sequence", [_Item(n, seq_name, p) for n, p in sorted(items)])


def _image_files(paths: Iterable[Path]) -> list[Path]:
    return sorted(
        (p for p in paths if is_image_file(p) and not p.name.startswith(".") and p.is_file()),
        key=lambda p: natural_key(p.name),
    )


def _shown_size(path: Path) -> tuple[int, int] | None:
    """An image's (width, height) as decoded: from its header, or by decoding where none is read.

    None when the file cannot be read at all: that frame's own read reports it (naming the frame,
    after the frames before it are written), so one damaged file does not turn a shot into stills.
    """
    try:
        with path.open("rb") as stream:
            header = read_header(stream)
        if header is not None:
            return header.shown_size
        image = _read(path)
    except (OSError, InputError):
        return None
    return int(image.shape[1]), int(image.shape[0])


def _one_size(files: list[Path]) -> bool:
    """Whether every readable file has one size (stops at the first that differs)."""
    seen: tuple[int, int] | None = None
    for path in files:
        size = _shown_size(path)
        if size is None:
            continue
        if seen is not None and size != seen:
            return False
        seen = size
    return True


def _classify(where: Path, files: list[Path], sequence_name: str) -> ImageSource:
    """A sequence when all files are numbered with one prefix and suffix and share one size."""
    numbered = [(_NUMBERED.fullmatch(p.stem), p) for p in files]
    groups = {(m.group("prefix"), p.suffix.lower()) for m, p in numbered if m}
    if len(files) >= 2 and len(groups) == 1 and all(m for m, _ in numbered) and _one_size(files):
        prefix = next(iter(groups))[0]
        name = prefix.rstrip(_SEPARATORS) or sequence_name
        items = sorted((int(m.group("number")), p) for m, p in numbered if m)
        for (a, pa), (b, pb) in zip(items, items[1:], strict=False):
            if a == b:
                raise InputError(
                    f"{pa.name} and {pb.name} are both frame {a}",
                    path=where,
                    frame=a,
                    hint="keep one zero-padding style per sequence",
                )
        return ImageSource(where, "sequence", [_Item(n, name, p) for n, p in items])
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise InputError(
                f"{stems[path.stem].name} and {path.name} share the name {path.stem!r}, so their "
                "outputs would overwrite each other",
                path=where,
                hint="rename or move one of them",
            )
        stems[path.stem] = path
    return ImageSource(where, "stills", [_Item(i, p.stem, p) for i, p in enumerate(files)])
