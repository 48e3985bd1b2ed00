"""What an image file's header says, read without decoding its pixels: size and EXIF orientation.

Opening a folder must tell a numbered shot (every frame one size) from a camera folder
(``IMG_0001.jpg`` portrait beside ``IMG_0002.jpg`` landscape) without decoding every file: a
2,000-frame EXR shot would otherwise be decoded once just to be opened. So the size comes from
the header, which costs a few small reads per file. PNG, JPEG, TIFF, EXR and BMP are read here;
for anything else (WebP) :func:`read_header` answers None and the caller decodes.

A JPEG's EXIF orientation is read too, because OpenCV turns the picture upright when it decodes
it: a photo stored 800x497 with orientation 6 comes out 497x800, and that is the size every
comparison (a sequence's frames, a trimap) must use.

:func:`png_damage` checks a PNG's chunk structure and checksums before libpng sees it, because
libpng prints its own complaint to stderr on a cut or damaged file, which would break the
tool's one-line error.

Every parser takes arbitrary bytes (tests fuzz them): a malformed header gives None, never an
exception.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXR_MAGIC = b"\x76\x2f\x31\x01"
_EXIF_ORIENTATION_TAG = 0x0112
_TIFF_WIDTH_TAG, _TIFF_HEIGHT_TAG = 256, 257
# A JPEG's APP segments (EXIF, ICC profile, XMP) are at most 64 KiB each; a header with more than
# this many segments before its frame header is not a photo.
_MAX_JPEG_SEGMENTS = 256
_MAX_EXR_ATTRIBUTES = 1024


@dataclass(frozen=True, slots=True)
class Header:
    """An image's stored size and the EXIF orientation (1-8) that decoding applies."""

    format: str  # "png", "jpeg", "tiff", "exr" or "bmp"
    width: int  # as stored, before the orientation turns it
    height: int
    orientation: int = 1

    @property
    def turned(self) -> bool:
        """Whether decoding turns the picture by a quarter (EXIF orientations 5-8)."""
        return self.orientation in (5, 6, 7, 8)

    @property
    def shown_size(self) -> tuple[int, int]:
        """(width, height) as decoded and as viewers show it."""
        return (self.height, self.width) if self.turned else (self.width, self.height)


def read_header(stream: BinaryIO) -> Header | None:
    """The header of an image file opened for binary reading; None when it cannot be read here."""
    try:
        head = stream.read(32)
        stream.seek(0)
        if head.startswith(PNG_SIGNATURE):
            return _png(head)
        if head.startswith(b"\xff\xd8"):
            return _jpeg(stream)
        if head[:4] in (b"II*\0", b"MM\0*"):
            data = stream.read(1 << 20)  # IFD0 sits near the start in what writers produce
            size = _tiff_fields(data)
            width, height = size.get(_TIFF_WIDTH_TAG), size.get(_TIFF_HEIGHT_TAG)
            return Header("tiff", width, height) if width and height else None
        if head.startswith(_EXR_MAGIC):
            return _exr(stream)
        if head.startswith(b"BM"):
            return _bmp(head)
    except (OSError, struct.error, ValueError, IndexError):
        return None
    return None


def read_header_bytes(data: bytes) -> Header | None:
    """:func:`read_header` of bytes already in memory."""
    return read_header(io.BytesIO(data))


def png_damage(data: bytes) -> str | None:
    """Why a PNG's bytes would fail to decode (cut short, a bad checksum), or None when whole."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    at = len(PNG_SIGNATURE)
    while True:
        if at + 8 > len(data):
            return "the file is cut short (it ends before the PNG's end marker)"
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        end = at + 12 + length
        if end > len(data):
            return f"the file is cut short (inside its {kind.decode('latin-1')!r} chunk)"
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(data[at + 4 : end - 4]) != crc:
            return f"the file is damaged (its {kind.decode('latin-1')!r} chunk fails its checksum)"
        if kind == b"IEND":
            return None
        at = end


def _png(head: bytes) -> Header | None:
    if head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return Header("png", width, height) if width and height else None


def _jpeg(stream: BinaryIO) -> Header | None:
    """Walk the markers to the frame header (SOFn), reading the EXIF orientation on the way."""
    stream.seek(2)
    orientation = 1
    for _ in range(_MAX_JPEG_SEGMENTS):
        byte = stream.read(1)
        if byte != b"\xff":  # a marker must follow the previous segment directly
            return None
        while byte == b"\xff":  # fill bytes may pad a marker
            byte = stream.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker == 0xD8 or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue  # markers without a length
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        length_bytes = stream.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if length < 2:
            return None
        body = stream.read(length - 2)
        if len(body) < length - 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", body[1:5])
            return Header("jpeg", width, height, orientation) if width and height else None
        if marker == 0xE1 and body.startswith(b"Exif\0\0"):
            orientation = _exif_orientation(body[6:])
    return None


def _exif_orientation(tiff: bytes) -> int:
    """The orientation tag of an EXIF block; 1 (as stored) when it is absent or unreadable."""
    try:
        found = _tiff_fields(tiff).get(_EXIF_ORIENTATION_TAG, 1)
    except (struct.error, IndexError):
        return 1
    return found if 1 <= found <= 8 else 1


def _tiff_fields(data: bytes) -> dict[int, int]:
    """The SHORT and LONG fields of a TIFF structure's first directory (EXIF uses the same layout)."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None:
        return {}
    (offset,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    fields: dict[int, int] = {}
    for k in range(count):
        entry = data[offset + 2 + 12 * k : offset + 14 + 12 * k]
        if len(entry) < 12:
            break
        tag, kind, number = struct.unpack(order + "HHI", entry[:8])
        if number != 1:
            continue
        if kind == 3:  # SHORT, left-justified in the value field
            fields[tag] = struct.unpack(order + "H", entry[8:10])[0]
        elif kind == 4:  # LONG
            fields[tag] = struct.unpack(order + "I", entry[8:12])[0]
    return fields


def _exr(stream: BinaryIO) -> Header | None:
    """The dataWindow attribute of an OpenEXR header (name, type, size, value; an empty name ends it)."""
    data = stream.read(1 << 16)
    at = 8  # magic and version
    for _ in range(_MAX_EXR_ATTRIBUTES):
        name_end = data.index(b"\0", at)
        name = data[at:name_end]
        if not name:
            return None
        type_end = data.index(b"\0", name_end + 1)
        (size,) = struct.unpack("<i", data[type_end + 1 : type_end + 5])
        value = data[type_end + 5 : type_end + 5 + size]
        if name == b"dataWindow" and data[name_end + 1 : type_end] == b"box2i" and len(value) == 16:
            x0, y0, x1, y1 = struct.unpack("<iiii", value)
            width, height = x1 - x0 + 1, y1 - y0 + 1
            return Header("exr", width, height) if width > 0 and height > 0 else None
        if size < 0:
            return None
        at = type_end + 5 + size
    return None


def _bmp(head: bytes) -> Header | None:
    (dib,) = struct.unpack("<I", head[14:18])
    if dib == 12:
        width, height = struct.unpack("<HH", head[18:22])
    elif dib >= 40:
        width, height = struct.unpack("<ii", head[18:26])
    else:
        return None
    height = abs(height)  # negative means stored top-down
    return Header("bmp", width, height) if width > 0 and height > 0 else None
