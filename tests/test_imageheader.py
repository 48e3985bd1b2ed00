"""Image headers read without decoding: sizes and EXIF orientation agree with OpenCV's decode,
cut or damaged PNGs are caught before libpng, and no byte string makes the parsers raise."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from media_files import exif_app1, write_exif_jpeg

from mattecli.errors import InputError
from mattecli.media.imageheader import png_damage, read_header, read_header_bytes
from mattecli.media.imageio import read_image, write_image

# Few examples and no deadline: the suite runs on two busy cores.
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _encoded(suffix: str, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".bmp", ".exr"])
@pytest.mark.parametrize(("height", "width"), [(1, 1), (5, 7), (552, 800)])
def test_header_size_matches_the_decoded_size(tmp_path: Path, suffix: str, height: int, width: int) -> None:
    path = tmp_path / f"x{suffix}"
    if suffix == ".exr":
        write_image(path, np.zeros((height, width, 3), np.float32))
    else:
        write_image(path, np.zeros((height, width, 3), np.uint8))
    with path.open("rb") as stream:
        header = read_header(stream)
    assert header is not None and header.shown_size == (width, height)
    assert read_image(path).shape[:2] == (height, width)


@pytest.mark.parametrize(("orientation", "turned"), [(1, False), (3, False), (6, True), (8, True)])
def test_exif_orientation_is_read_and_matches_opencvs_decode(
    tmp_path: Path, orientation: int, turned: bool
) -> None:
    stored = np.zeros((64, 96, 3), np.uint8)
    path = write_exif_jpeg(tmp_path / "photo.jpg", stored, orientation)
    with path.open("rb") as stream:
        header = read_header(stream)
    assert header == type(header)("jpeg", 96, 64, orientation)
    assert header.turned is turned
    width, height = header.shown_size
    assert read_image(path).shape[:2] == (height, width)  # OpenCV turns it the same way


def test_png_damage_names_cut_and_bad_checksum() -> None:
    data = _encoded(".png", np.full((16, 16, 3), 7, np.uint8))
    assert png_damage(data) is None
    assert "cut short" in png_damage(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[40] ^= 0x01
    assert "fails its checksum" in png_damage(bytes(flipped))


@FUZZ
@given(st.binary(max_size=200))
def test_headers_of_random_bytes_never_raise(data: bytes) -> None:
    for prefix in (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"II*\0", b"MM\0*", b"v/1\x01", b"BM"):
        header = read_header_bytes(prefix + data)
        assert header is None or (header.width > 0 and header.height > 0)
        png_damage(prefix + data)


@FUZZ
@given(st.data())
def test_mutated_real_headers_never_raise_and_decode_fails_only_as_input_error(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Flip, cut or overwrite bytes of real small files: reading gives an image or one InputError."""
    suffix = data.draw(st.sampled_from([".png", ".jpg", ".tif", ".bmp", ".webp"]))
    original = bytearray(_encoded(suffix, np.arange(8 * 6 * 3, dtype=np.uint8).reshape(8, 6, 3)))
    if suffix == ".jpg":
        original[2:2] = exif_app1(data.draw(st.integers(0, 9)))
    mutated = original[: data.draw(st.integers(0, len(original)))]
    for _ in range(data.draw(st.integers(0, 4))):
        if mutated:
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    read_header(io.BytesIO(bytes(mutated)))
    path = tmp_path_factory.mktemp("fuzz") / f"m{suffix}"
    path.write_bytes(bytes(mutated))
    try:
        image = read_image(path)
    except InputError as exc:
        assert exc.path == path and "\n" not in str(exc)
    else:
        assert image.ndim == 3 and image.shape[2] == 3


def test_exr_header_without_data_window_is_unknown() -> None:
    assert read_header_bytes(b"v/1\x01\x02\0\0\0" + b"channels\0chlist\0\x01\0\0\0\0" + b"\0") is None
