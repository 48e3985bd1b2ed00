"""Real image files the tests need and OpenCV cannot write directly: EXIF-rotated and CMYK JPEGs.

The EXIF block is built byte by byte (a TIFF header and one directory entry), the way a camera
writes it, so the tests do not depend on an EXIF library.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np


def exif_app1(orientation: int) -> bytes:
    """A JPEG APP1 segment holding an EXIF block with only the orientation tag (0x0112)."""
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)  # SHORT, one value, left-justified
    tiff = b"MM\0*" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + struct.pack(">I", 0)
    payload = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def write_exif_jpeg(path: Path, stored_rgb: np.ndarray, orientation: int, quality: int = 95) -> Path:
    """Write ``stored_rgb`` as a JPEG whose EXIF orientation tells viewers to turn it.

    Orientation 6 means "turn 90 degrees clockwise to view": a phone held upright stores its
    portrait photo landscape and sets 6.
    """
    bgr = cv2.cvtColor(stored_rgb, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    data = encoded.tobytes()
    path.write_bytes(data[:2] + exif_app1(orientation) + data[2:])  # right after the SOI marker
    return path


def write_cmyk_jpeg(path: Path, rgb: np.ndarray) -> bool:
    """Write a CMYK JPEG (as print workflows and some stock libraries deliver) if Pillow is here.

    OpenCV cannot encode CMYK; returns False when no writer is available.
    """
    try:
        from PIL import Image
    except ImportError:
        return False
    Image.fromarray(rgb).convert("CMYK").save(path, "JPEG", quality=95)
    return True
