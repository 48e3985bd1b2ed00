"""Image sources: numbered sequences, stills, patterns, frame ranges, and the errors users meet."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from media_files import write_exif_jpeg

from mattecli.errors import InputError
from mattecli.media.imageio import read_image, write_image
from mattecli.media.sources import natural_key, open_source


def _ramp16(h: int, w: int, seed: int) -> np.ndarray:
    """A 16-bit image using far more than 256 levels, different per seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 65536, size=(h, w, 3), dtype=np.uint16)


def _sequence(folder: Path, template: str, numbers, make) -> dict[int, np.ndarray]:
    images = {}
    for n in numbers:
        images[n] = make(n)
        write_image(folder / template.format(n), images[n])
    return images


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["f10.png", "f2.png", "F1.png", "f01.png", "g.png", "f1a.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f01.png", "f1a.png", "f2.png", "f10.png", "g.png"]


def test_bedroom_frames_are_a_numbered_sequence_named_after_the_folder(shared_data: Path) -> None:
    folder = shared_data / "video" / "sam2_bedroom_frames"
    with open_source(folder) as source:
        info = source.info
        assert (info.kind, info.width, info.height, info.frame_count, info.bit_depth) == (
            "sequence",
            960,
            540,
            60,
            8,
        )
        assert info.fps is None and info.rotation == 0 and not info.has_audio
        ids = source.frame_ids()
        assert ids == [("sam2_bedroom_frames", i) for i in range(60)]
        frames = list(source.frames(start=10, end=20, every=5))
    assert [f.index for f in frames] == [10, 15, 20]
    assert frames[1].source == folder / "00015.jpg"
    assert frames[1].name == "sam2_bedroom_frames"
    assert frames[1].image.dtype == np.uint8 and frames[1].image.shape == (540, 960, 3)
    np.testing.assert_array_equal(frames[1].image, read_image(folder / "00015.jpg"))


def test_single_still(shared_data: Path) -> None:
    path = shared_data / "alphamatting" / "image" / "GT01.png"
    with open_source(path) as source:
        frames = list(source.frames())
        assert source.info.kind == "stills"
        assert source.frame_ids() == [("GT01", 0)]
    assert len(frames) == 1
    (frame,) = frames
    assert (frame.index, frame.name, frame.source, frame.time) == (0, "GT01", path, None)
    assert (source.info.width, source.info.height) == (frame.width, frame.height)
    np.testing.assert_array_equal(frame.image, read_image(path))


@pytest.mark.parametrize(
    ("suffix", "make", "depth"),
    [
        (".png", lambda n: _ramp16(24, 32, n), 16),
        (".tif", lambda n: _ramp16(24, 32, n), 16),
        (".exr", lambda n: np.random.default_rng(n).normal(0.5, 2.0, (24, 32, 3)).astype(np.float32), 32),
    ],
)
def test_deep_sequences_round_trip_exactly(tmp_path: Path, suffix: str, make, depth: int) -> None:
    images = _sequence(tmp_path, "plate_v002.{:04d}" + suffix, range(1001, 1006), make)
    with open_source(tmp_path / f"plate_v002.%04d{suffix}") as source:
        assert (source.info.kind, source.info.bit_depth, source.info.frame_count) == ("sequence", depth, 5)
        frames = list(source.frames())
    assert [f.index for f in frames] == [1001, 1002, 1003, 1004, 1005]
    assert {f.name for f in frames} == {"plate_v002"}
    for frame in frames:
        assert frame.image.dtype == images[frame.index].dtype
        np.testing.assert_array_equal(frame.image, images[frame.index])
    if depth == 16:
        assert len(np.unique(frames[0].image)) > 256
    else:
        assert frames[0].image.min() < 0 and frames[0].image.max() > 1  # scene-linear values kept


def test_printf_hash_glob_and_folder_agree(tmp_path: Path) -> None:
    _sequence(tmp_path, "shot.{:04d}.png", [7, 8, 10, 9], lambda n: np.full((8, 8, 3), n, np.uint8))
    results = {}
    for spec in ("shot.%04d.png", "shot.####.png", "shot.*.png", ""):
        with open_source(tmp_path / spec if spec else tmp_path) as source:
            assert source.info.kind == "sequence"
            results[spec] = [(f.name, f.index, int(f.image[0, 0, 0])) for f in source.frames()]
    expected = [("shot", n, n) for n in (7, 8, 9, 10)]
    assert all(got == expected for got in results.values()), results


def test_printf_padding_is_exact(tmp_path: Path) -> None:
    _sequence(tmp_path, "shot.{:04d}.png", [1, 2], lambda n: np.zeros((4, 4, 3), np.uint8))
    write_image(tmp_path / "shot.3.png", np.zeros((4, 4, 3), np.uint8))  # unpadded: not %04d
    write_image(tmp_path / "shot.12345.png", np.zeros((4, 4, 3), np.uint8))  # wider is still %04d
    with open_source(tmp_path / "shot.%04d.png") as source:
        assert [i for _, i in source.frame_ids()] == [1, 2, 12345]
    with open_source(tmp_path / "shot.%d.png") as source:
        assert [i for _, i in source.frame_ids()] == [3, 12345]


def test_hidden_and_partial_files_are_ignored(tmp_path: Path) -> None:
    _sequence(tmp_path, "shot_{:03d}.png", [1, 2], lambda n: np.zeros((4, 4, 3), np.uint8))
    write_image(tmp_path / ".shot_003.part.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(tmp_path) as source:
        assert source.frame_ids() == [("shot", 1), ("shot", 2)]


def test_unrelated_photos_are_stills_in_natural_order_and_may_differ_in_size(tmp_path: Path) -> None:
    write_image(tmp_path / "product10.png", np.zeros((10, 20, 3), np.uint8))
    write_image(tmp_path / "product9.jpg", np.zeros((30, 15, 3), np.uint8))
    write_image(tmp_path / "cat.png", np.zeros((6, 6, 3), np.uint16))
    with open_source(tmp_path) as source:
        assert source.info.kind == "stills"
        frames = list(source.frames())
    assert [(f.index, f.name, f.image.shape[:2]) for f in frames] == [
        (0, "cat", (6, 6)),
        (1, "product9", (30, 15)),
        (2, "product10", (10, 20)),
    ]


def test_range_and_every_on_stills_count_positions(tmp_path: Path) -> None:
    for name in "abcde":
        write_image(tmp_path / f"{name}.png", np.zeros((4, 4, 3), np.uint8))
    with open_source(tmp_path / "*.png") as source:
        assert [f.name for f in source.frames(start=1, every=2)] == ["b", "d"]
        assert [f.index for f in source.frames(end=1)] == [0, 1]


def test_every_counts_from_first_frame_and_gaps_are_allowed(tmp_path: Path) -> None:
    _sequence(
        tmp_path,
        "s.{:04d}.png",
        [1001, 1002, 1003, 1005, 1006, 1007],
        lambda n: np.zeros((4, 4, 3), np.uint8),
    )
    with open_source(tmp_path) as source:
        assert [f.index for f in source.frames(every=2)] == [1001, 1003, 1005, 1007]
        assert [f.index for f in source.frames(start=1002, end=1006, every=2)] == [1002, 1006]
        with pytest.raises(InputError, match="no frames in the range 1004-1004"):
            list(source.frames(start=1004, end=1004))


def test_range_that_selects_nothing_is_an_error(tmp_path: Path) -> None:
    _sequence(tmp_path, "s.{:04d}.png", [1001, 1002], lambda n: np.zeros((4, 4, 3), np.uint8))
    with open_source(tmp_path) as source:
        with pytest.raises(InputError, match="no frames in the range 2000-2100") as info:
            list(source.frames(start=2000, end=2100))
        assert "frames 1001-1002" in str(info.value)
        with pytest.raises(InputError, match="before it starts"):
            source.frames(start=5, end=4)
        with pytest.raises(InputError, match="--every"):
            source.frames(every=0)


def test_mixed_sizes_name_the_file_the_frame_and_both_sizes(tmp_path: Path) -> None:
    _sequence(tmp_path, "shot.{:04d}.png", [1, 2, 4], lambda n: np.zeros((24, 32, 3), np.uint8))
    write_image(tmp_path / "shot.0003.png", np.zeros((30, 40, 3), np.uint8))
    with open_source(tmp_path / "shot.%04d.png") as source:
        got = []
        with pytest.raises(InputError) as info:
            for frame in source.frames():  # through the background thread: type is kept
                got.append(frame.index)
    assert got == [1, 2]
    err = info.value
    assert err.path == tmp_path / "shot.0003.png" and err.frame == 3
    assert "40x30 but the sequence is 32x24" in str(err)


def test_mixed_bit_depth_in_a_sequence_is_an_error(tmp_path: Path) -> None:
    write_image(tmp_path / "s.01.png", np.zeros((4, 4, 3), np.uint16))
    write_image(tmp_path / "s.02.png", np.zeros((4, 4, 3), np.uint8))
    with open_source(tmp_path) as source, pytest.raises(InputError, match="8-bit but the sequence is 16-bit"):
        list(source.frames(prefetch=0))


def test_duplicate_frame_numbers_and_colliding_stems_are_errors(tmp_path: Path) -> None:
    seq, stills = tmp_path / "seq", tmp_path / "stills"
    write_image(seq / "s.1.png", np.zeros((4, 4, 3), np.uint8))
    write_image(seq / "s.01.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="both frame 1"):
        open_source(seq)
    write_image(stills / "photo.png", np.zeros((4, 4, 3), np.uint8))
    write_image(stills / "photo.jpg", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="share the name 'photo'"):
        open_source(stills)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing.mp4", "no such file or folder"),
        ("empty", "folder holds no image files"),
        ("empty/shot.%04d.exr", "no image files match"),
        ("empty/shot.*.png", "no file matches this pattern"),
        ("empty/*.mp4", "no file matches this pattern"),  # a video glob: not "no image files"
        ("empty/*.txt", r"1 file\(s\) match this pattern but none is an image"),
        ("nowhere/shot.%04d.exr", "folder does not exist"),
    ],
)
def test_missing_inputs_name_the_path_and_say_what_to_do(tmp_path: Path, spec: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match=message) as info:
        open_source(tmp_path / spec)
    assert str(tmp_path) in str(info.value)
    if message == "no such file or folder":
        assert "pattern like shot.%04d.exr" in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "the file is damaged"),
        (b"", "the file is empty"),  # used to escape as a cv2.error traceback from imdecode
        (b"not an image at all", "cannot decode this image"),
    ],
)
def test_unreadable_image_is_an_input_error(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        open_source(bad)
    assert info.value.path == bad


def test_close_stops_running_iterators(tmp_path: Path) -> None:
    _sequence(tmp_path, "s.{:03d}.png", range(1, 21), lambda n: np.zeros((4, 4, 3), np.uint8))
    before = threading.active_count()
    source = open_source(tmp_path)
    frames = source.frames(prefetch=2)
    assert next(frames).index == 1
    assert threading.active_count() == before + 1
    source.close()
    assert threading.active_count() == before
    assert list(frames) == []


def test_camera_folder_of_different_sizes_is_stills_named_after_each_file(tmp_path: Path) -> None:
    # Numbered with one prefix, but a portrait beside a landscape photo: not a shot.
    write_image(tmp_path / "IMG_0001.jpg", np.full((800, 497, 3), 90, np.uint8))
    write_image(tmp_path / "IMG_0002.jpg", np.full((552, 800, 3), 160, np.uint8))
    with open_source(tmp_path) as source:
        assert source.info.kind == "stills"
        assert source.frame_ids() == [("IMG_0001", 0), ("IMG_0002", 1)]
        shapes = [frame.image.shape for frame in source.frames(prefetch=0)]
    assert shapes == [(800, 497, 3), (552, 800, 3)]


def test_camera_folder_sizes_count_after_exif_orientation(tmp_path: Path) -> None:
    # Both stored 96x64, but the first is tagged to be shown turned (a portrait): two stills.
    write_exif_jpeg(tmp_path / "DSC00001.jpg", np.zeros((64, 96, 3), np.uint8), orientation=6)
    write_exif_jpeg(tmp_path / "DSC00002.jpg", np.zeros((64, 96, 3), np.uint8), orientation=1)
    with open_source(tmp_path) as source:
        assert source.info.kind == "stills"
        assert [frame.image.shape[:2] for frame in source.frames(prefetch=0)] == [(96, 64), (64, 96)]
    # Tagged alike, they are one size as shown: a sequence.
    write_exif_jpeg(tmp_path / "DSC00002.jpg", np.zeros((64, 96, 3), np.uint8), orientation=6)
    with open_source(tmp_path) as source:
        assert (source.info.kind, source.info.width, source.info.height) == ("sequence", 64, 96)


def test_equal_sizes_or_a_pattern_make_a_sequence(tmp_path: Path) -> None:
    for n in (1, 2):
        write_image(tmp_path / f"IMG_000{n}.jpg", np.zeros((40, 30, 3), np.uint8))
    with open_source(tmp_path) as source:
        assert source.info.kind == "sequence"
        assert source.frame_ids() == [("IMG", 1), ("IMG", 2)]
    write_image(tmp_path / "IMG_0002.jpg", np.zeros((30, 40, 3), np.uint8))
    with open_source(tmp_path) as source:
        assert source.info.kind == "stills"
    with open_source(tmp_path / "IMG_####.jpg") as source:  # the user said it is a sequence
        assert source.info.kind == "sequence"
        with pytest.raises(InputError, match="40x30 but the sequence is 30x40"):
            list(source.frames(prefetch=0))


def test_a_damaged_frame_does_not_turn_a_sequence_into_stills(tmp_path: Path) -> None:
    _sequence(tmp_path, "s.{:03d}.png", [1, 2, 3], lambda n: np.zeros((4, 6, 3), np.uint8))
    (tmp_path / "s.002.png").write_bytes(b"")
    with open_source(tmp_path) as source:
        assert source.info.kind == "sequence"
        got = []
        with pytest.raises(InputError, match="empty") as info:
            for frame in source.frames(prefetch=0):
                got.append(frame.index)
    assert got == [1] and info.value.frame == 2 and info.value.path == tmp_path / "s.002.png"
