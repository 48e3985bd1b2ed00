"""Reading and writing single image files: PNG, JPEG, TIFF (through OpenCV) and EXR (OpenEXR).

OpenCV 5 wheels are built without OpenEXR, so EXR goes through the ``openexr`` package. Every
image is encoded in memory and written whole through :class:`mattecli.media.atomic.AtomicFile`
(temporary name, fsync, checked rename), so a killed run never leaves a half-written file under
the final name, and :func:`looks_whole` lets ``--resume`` refuse one that is empty or cut short.
"""

from __future__ import annotations

import io
import stat
from pathlib import Path

import cv2
import numpy as np

from mattecli.errors import InputError
from mattecli.media.atomic import AtomicFile
from mattecli.media.atomic import atomic_path as atomic_path  # re-exported for training and engines
from mattecli.media.imageheader import PNG_SIGNATURE, png_damage

# Every decode failure becomes one InputError naming the file; OpenCV's own log lines about it
# ("[ERROR:0@0.03] global loadsave.cpp ... can't read header") would only repeat it, split over
# several lines of stderr.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

_DAMAGED_HINT = "copy or export it again"

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".bmp", ".webp"})


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


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


def _encode_exr(image: np.ndarray, half: bool) -> bytes:
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
    buffer = io.BytesIO()
    with OpenEXR.File(header, {k: np.ascontiguousarray(v) for k, v in channels.items()}) as f:
        f.write(buffer)
    return buffer.getvalue()


def _encode_cv(suffix: str, image: np.ndarray, params: list[int]) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(suffix, image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode {suffix}")
    return encoded


PNG_DEFLATE_LEVEL = 1


def encode_image(suffix: str, image: np.ndarray, *, half: bool = False) -> np.ndarray | bytes:
    """The bytes of an image file in the format of ``suffix`` (see :func:`write_image`)."""
    suffix = suffix.lower()
    if suffix == ".exr":
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError("EXR takes float images")
        return _encode_exr(image, half)
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{suffix} takes uint8 or uint16 images, not {image.dtype}")
    params: list[int] = []
    if suffix == ".png":
        # Deflate level 1: a 1080p 16-bit RGBA frame encodes in 0.16 s instead of 1.7 s at level 3,
        # for files about 11% larger (measured here); at video rates the writer must keep up.
        params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_DEFLATE_LEVEL]
    elif suffix in (".tif", ".tiff"):
        params = [cv2.IMWRITE_TIFF_COMPRESSION, 5]  # LZW: lossless, read everywhere
    return _encode_cv(suffix, image, params)


def write_image(
    path: str | Path, image: np.ndarray, *, half: bool = False, allow_folder_link: bool = True
) -> None:
    """Write a grey, RGB or RGBA array atomically; the format follows the suffix.

    uint8 and uint16 go to PNG/TIFF unchanged; float arrays go to EXR (``half`` for float16).
    A single-channel EXR is written as channel ``A``, the convention compositors use for mattes.
    The file is encoded first, so a write failure is only ever about the disk, and is raised as
    :class:`mattecli.errors.OutputError` naming ``path``. ``allow_folder_link`` False refuses a
    folder that is a symlink (see :class:`mattecli.media.atomic.AtomicFile`).
    """
    path = Path(path)
    data = encode_image(path.suffix, image, half=half)
    with AtomicFile(path, allow_link=allow_folder_link) as out:
        out.write(memoryview(data))


# What a whole file of each written format starts with (and, for PNG, ends with).
_MAGIC = {
    ".png": b"\x89PNG\r\n\x1a\n",
    ".exr": b"\x76\x2f\x31\x01",
    ".tif": (b"II*\x00", b"MM\x00*"),
    ".tiff": (b"II*\x00", b"MM\x00*"),
}
_PNG_END = b"IEND\xaeB`\x82"


def looks_whole(path: Path) -> bool:
    """True when ``path`` is a regular file (not a link) that starts like its format and, for PNG,
    ends with the IEND chunk: what ``--resume`` needs before trusting an output without decoding it.

    Files are published whole after an fsync, so an empty or short file means a crash of the
    machine (or a copy) rather than of this tool; it is computed again rather than trusted.
    """
    try:
        info = path.lstat()
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return False
    suffix = path.suffix.lower()
    magic = _MAGIC.get(suffix)
    if magic is None:
        return True
    starts = (magic,) if isinstance(magic, bytes) else magic
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if suffix == ".png":
                f.seek(-len(_PNG_END), 2)
                if f.read() != _PNG_END:
                    return False
    except OSError:
        return False
    return any(head.startswith(m) for m in starts)


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
