"""Reading and writing single image files: PNG, JPEG, TIFF (through OpenCV) and EXR (OpenEXR).

OpenCV 5 wheels are built without OpenEXR, so EXR goes through the ``openexr`` package. Every
write goes to a temporary name in the destination folder and is renamed into place, so a killed
run never leaves a half-written file under the final name (and ``--resume`` can trust what exists).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from mattecli.errors import InputError
from mattecli.media.imageheader import PNG_SIGNATURE, png_damage

# Every decode failure becomes one InputError naming the file; OpenCV's own log lines about it
# ("[ERROR:0@0.03] global loadsave.cpp ... can't read header") would only repeat it, split over
# several lines of stderr.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

_DAMAGED_HINT = "copy or export it again"


def _file_mode() -> int:
    """The mode a plain ``open()`` would give a new file under the process umask.

    Read once at import: ``os.umask`` can only be read by setting it, which would race with
    writer threads if done per file.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".bmp", ".webp"})


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only if the block succeeds.

    The temporary name keeps the real suffix last so that writers which choose a format from the
    extension (OpenCV, FFmpeg muxers) still recognise it.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".part{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600 files; outputs must be readable by others
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def _read_exr(path: Path) -> np.ndarray:
    import OpenEXR

    try:
        with OpenEXR.File(str(path), separate_channels=True) as f:
            channels = {name: channel.pixels for name, channel in f.channels().items()}
    except (RuntimeError, ValueError) as exc:  # what the bindings raise for a cut or damaged file
        raise InputError(f"cannot read this EXR: {exc}", path=path, hint=_DAMAGED_HINT) from exc
    if any(pixels is None for pixels in channels.values()):  # a damaged part reads as no pixels
        raise InputError("cannot read this EXR's pixels", path=path, hint=_DAMAGED_HINT)
    names = set(channels)
    if {"R", "G", "B"} <= names:
        order = ("R", "G", "B", "A") if "A" in names else ("R", "G", "B")
        return np.stack([channels[c] for c in order], axis=-1).astype(np.float32)
    for single in ("A", "Y", "Z"):
        if single in names:
            return np.asarray(channels[single], dtype=np.float32)
    if len(names) == 1:
        return np.asarray(next(iter(channels.values())), dtype=np.float32)
    raise InputError(f"EXR has channels {sorted(names)}; expected R,G,B or a single A/Y channel", path=path)


def _read_cv(path: Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)  # handles non-ASCII paths, unlike cv2.imread
    if data.size == 0:  # cv2.imdecode raises an assertion on an empty buffer
        raise InputError("the file is empty (0 bytes)", path=path, hint=_DAMAGED_HINT)
    damage = png_damage(data.tobytes()) if data[:8].tobytes() == PNG_SIGNATURE else None
    if damage:  # caught before libpng, which prints its own line to stderr
        raise InputError(damage, path=path, hint=_DAMAGED_HINT)
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as exc:  # OpenCV 5 raises for some malformed headers instead of returning None
        image = None
        reason = str(exc).strip().splitlines()[-1]
    else:
        reason = ""
    if image is None:
        raise InputError(
            "cannot decode this image: it is not a complete PNG, JPEG, TIFF, BMP or WebP file"
            + (f" ({reason})" if reason else ""),
            path=path,
            hint=_DAMAGED_HINT,
        )
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def read_any(path: str | Path) -> np.ndarray:
    """Read an image as stored: H x W (grey) or H x W x C in RGB(A) order, at its own bit depth."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    if path.suffix.lower() == ".exr":
        return _read_exr(path)
    return _read_cv(path)


def read_image(path: str | Path) -> np.ndarray:
    """Read an RGB image (H x W x 3) keeping its precision: uint8, uint16 or float32.

    Grey images become three equal channels and an alpha channel is dropped, so photos saved
    as RGBA with opaque alpha (common in matting datasets) read like any RGB image.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() != ".exr":
        # Decoding as colour applies a JPEG's EXIF orientation, so photos come out the way
        # viewers (and the trimap painter's tools) show them; ANYDEPTH keeps 16-bit data.
        return _read_cv(path, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    image = read_any(path)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    if image.shape[2] == 2:  # grey + alpha
        return np.repeat(image[:, :, :1], 3, axis=2)
    return image


def read_gray(path: str | Path) -> np.ndarray:
    """Read a single-channel image (trimap, alpha matte) at its own bit depth.

    Files stored as RGB or RGBA whose colour channels are identical (a common way of saving
    mattes) give that channel; a genuinely coloured image is converted to luma.
    """
    image = read_any(path)
    if image.ndim == 2:
        return image
    colour = image[:, :, :3] if image.shape[2] >= 3 else image[:, :, :1]
    if colour.shape[2] == 1 or (
        np.array_equal(colour[:, :, 0], colour[:, :, 1]) and np.array_equal(colour[:, :, 0], colour[:, :, 2])
    ):
        return np.ascontiguousarray(colour[:, :, 0])
    return cv2.cvtColor(np.ascontiguousarray(colour), cv2.COLOR_RGB2GRAY)


def _write_exr(path: Path, image: np.ndarray, half: bool) -> None:
    import OpenEXR

    dtype = np.float16 if half else np.float32
    if image.ndim == 2:
        channels = {"A": image.astype(dtype)}
    elif image.shape[2] == 3:
        channels = {"RGB": image.astype(dtype)}
    elif image.shape[2] == 4:
        channels = {"RGBA": image.astype(dtype)}
    else:
        raise ValueError(f"cannot write {image.shape[2]} channels to EXR")
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {k: np.ascontiguousarray(v) for k, v in channels.items()}) as f:
        f.write(str(path))


def _write_cv(path: Path, image: np.ndarray, params: list[int]) -> None:
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise OSError(f"OpenCV could not encode {path.suffix} for {path}")
    encoded.tofile(str(path))


def write_image(path: str | Path, image: np.ndarray, *, half: bool = False) -> None:
    """Write a grey, RGB or RGBA array atomically; the format follows the suffix.

    uint8 and uint16 go to PNG/TIFF unchanged; float arrays go to EXR (``half`` for float16).
    A single-channel EXR is written as channel ``A``, the convention compositors use for mattes.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    writer: Callable[[Path], None]
    if suffix == ".exr":
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError("EXR takes float images")

        def writer(p: Path) -> None:
            _write_exr(p, image, half)
    else:
        if image.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"{suffix} takes uint8 or uint16 images, not {image.dtype}")
        params: list[int] = []
        if suffix == ".png":
            params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
        elif suffix in (".tif", ".tiff"):
            params = [cv2.IMWRITE_TIFF_COMPRESSION, 5]  # LZW: lossless, read everywhere

        def writer(p: Path) -> None:
            _write_cv(p, image, params)

    with atomic_path(path) as tmp:
        writer(tmp)


def images_by_stem(path: Path, role: str) -> dict[str, Path]:
    """The image files of a folder (or one image file) by stem, for matching folders by image name.

    Hidden files (half-written outputs of an atomic write) are skipped; two files with one stem
    (``GT01.png`` and ``GT01.jpg``) are an error, since either could be meant.
    """
    path = Path(path)
    if path.is_file():
        return {path.stem: path}
    if not path.is_dir():
        raise InputError(f"{role} not found", path=path, hint=f"give a folder of {role} images or one file")
    by_stem: dict[str, Path] = {}
    for file in sorted(path.iterdir()):
        if not file.is_file() or file.name.startswith(".") or not is_image_file(file):
            continue
        if file.stem in by_stem:
            raise InputError(
                f"two {role} files share the name {file.stem!r}: {by_stem[file.stem].name} and {file.name}",
                path=path,
                hint="keep one file per image name",
            )
        by_stem[file.stem] = file
    if not by_stem:
        raise InputError(f"no {role} images in this folder", path=path)
    return by_stem
