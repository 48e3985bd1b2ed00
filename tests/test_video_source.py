"""Video sources through PyAV: metadata, exact frame numbers after seeking, precision, rotation, damage."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from mattecli.errors import InputError
from mattecli.media.sources import open_source
from mattecli.media.video import VideoSource


def _encode(
    path: Path,
    frames: list[np.ndarray],
    *,
    codec: str,
    pix_fmt: str,
    in_format: str,
    rate: int = 24,
    options: dict[str, str] | None = None,
    rotation: int | None = None,
) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, options=options or {})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format=in_format)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _numbered_frames(count: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Frames that differ from each other (a moving bar plus noise), so a wrong index shows."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(count):
        image = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
        image[:, (i * 3) % w : (i * 3) % w + 4] = 255
        frames.append(image)
    return frames


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """H.264 with B-frames and a keyframe every 10 frames, so seeking really lands mid-stream."""
    path = tmp_path_factory.mktemp("video") / "gop.mp4"
    options = {"g": "10", "keyint_min": "10", "bf": "2", "sc_threshold": "0", "crf": "18"}
    return _encode(
        path, _numbered_frames(60), codec="libx264", pix_fmt="yuv420p", in_format="rgb24", options=options
    )


def test_juggle_info_and_first_frames(shared_data: Path) -> None:
    path = shared_data / "video" / "sam2_juggle.mp4"
    with open_source(path) as source:
        assert isinstance(source, VideoSource)
        info = source.info
        assert (info.kind, info.width, info.height, info.fps, info.frame_count) == (
            "video",
            1280,
            720,
            Fraction(24),
            247,
        )
        assert (info.bit_depth, info.has_audio, info.rotation) == (8, False, 0)
        ids = source.frame_ids()
        frames = list(source.frames(end=2))
    assert len(ids) == 247 and ids[0] == ("sam2_juggle", 0) and ids[-1] == ("sam2_juggle", 246)
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.time for f in frames] == pytest.approx([0.0, 1 / 24, 2 / 24])
    assert all(f.name == "sam2_juggle" and f.source == path for f in frames)
    assert frames[0].image.dtype == np.uint8 and frames[0].image.shape == (720, 1280, 3)
    assert not np.array_equal(frames[0].image, frames[1].image)


def test_juggle_start_100_matches_sequential_decode(shared_data: Path) -> None:
    path = shared_data / "video" / "sam2_juggle.mp4"
    with open_source(path) as source:
        jumped = list(source.frames(start=100, end=101))
        sequential = [f for f in source.frames(end=101, prefetch=0) if f.index >= 100]
    assert [f.index for f in jumped] == [100, 101]
    assert jumped[0].time == pytest.approx(100 / 24)
    for a, b in zip(jumped, sequential, strict=True):
        assert a.index == b.index
        np.testing.assert_array_equal(a.image, b.image)


def test_dog_has_audio_and_ntsc_rate(shared_data: Path) -> None:
    with open_source(shared_data / "video" / "sam2_dog.mp4") as source:
        info = source.info
    assert (info.fps, info.frame_count, info.has_audio) == (Fraction(30000, 1001), 289, True)


def test_seek_lands_on_the_keyframe_before_and_numbers_stay_exact(gop_video: Path) -> None:
    with open_source(gop_video) as source:
        reference = {f.index: f.image for f in source.frames(prefetch=0)}
        assert sorted(reference) == list(range(60))
        for start in (1, 9, 10, 11, 37, 58):
            got = list(source.frames(start=start, end=start + 2))
            assert [f.index for f in got] == [i for i in (start, start + 1, start + 2) if i < 60]
            for frame in got:
                np.testing.assert_array_equal(frame.image, reference[frame.index])
        # White-box: the decoder really started at the keyframe before 37, not at frame 0.
        decoded = source._decoded_from(37)
        assert next(decoded)[0] == 30
        decoded.close()
        assert [f.index for f in source.frames(start=5, end=30, every=10)] == [5, 15, 25]
        assert [f.index for f in source.frames(start=50, every=4)] == [50, 54, 58]


def test_ten_bit_video_keeps_its_precision(tmp_path: Path) -> None:
    h, w = 32, 64
    levels = (np.arange(h * w).reshape(h, w) // 2).astype(np.uint16)  # every 10-bit level, grey
    image = np.repeat((levels * 64)[:, :, None], 3, axis=2)
    path = _encode(
        tmp_path / "ten.mkv", [image] * 3, codec="ffv1", pix_fmt="yuv420p10le", in_format="rgb48le"
    )
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # MKV states no count: it must be estimated
    with open_source(path) as source:
        assert (source.info.bit_depth, source.info.frame_count) == (10, 3)
        frames = list(source.frames())
    decoded = frames[0].image
    assert decoded.dtype == np.uint16 and decoded.shape == (h, w, 3)
    assert len(np.unique(decoded)) > 256
    # FFV1 is lossless; what remains is the limited-range YUV step: half of 65535/876 ~ 37.
    assert np.abs(decoded.astype(np.int32) - image).max() <= 40


def test_prores_422_ten_bit(tmp_path: Path) -> None:
    # A warm grey ramp over all 1024 levels: chroma is nearly constant, so 4:2:2 subsampling
    # adds nothing and the error left is ProRes's own quantisation.
    levels = (np.arange(32 * 64).reshape(32, 64) // 2).astype(np.float64) * 64
    image = np.round(np.stack([levels, levels * 0.9, levels * 0.8], axis=2)).astype(np.uint16)
    path = _encode(
        tmp_path / "p.mov", [image] * 2, codec="prores_ks", pix_fmt="yuv422p10le", in_format="rgb48le"
    )
    with open_source(path) as source:
        assert (source.info.bit_depth, source.info.frame_count) == (10, 2)
        decoded = next(source.frames()).image
    assert decoded.dtype == np.uint16
    assert len(np.unique(decoded[:, :, 0])) > 256
    error = np.abs(decoded.astype(np.int32) - image)
    assert error.mean() < 48 and error.max() < 4 * 64  # 64 = one 10-bit step in 16-bit units


def test_float_video_is_read_without_clamping(tmp_path: Path) -> None:
    image = np.random.default_rng(3).normal(0.5, 2.0, (16, 32, 3)).astype(np.float32)
    path = _encode(tmp_path / "f.mov", [image] * 2, codec="exr", pix_fmt="gbrpf32le", in_format="gbrpf32le")
    with open_source(path) as source:
        assert source.info.bit_depth == 32
        decoded = next(source.frames()).image
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, image)


@pytest.mark.parametrize(("tag", "reported", "turns"), [(90, 90, 1), (-90, 270, 3), (180, 180, 2)])
def test_rotation_metadata_is_applied(tmp_path: Path, tag: int, reported: int, turns: int) -> None:
    image = np.zeros((32, 64, 3), np.uint8)
    image[:4, :8] = 255  # a marker in the stored top-left corner
    lossless = {"codec": "libx264", "pix_fmt": "yuv444p", "in_format": "rgb24", "options": {"qp": "0"}}
    plain = _encode(tmp_path / "plain.mp4", [image] * 2, **lossless)
    turned = _encode(tmp_path / "turned.mp4", [image] * 2, rotation=tag, **lossless)
    with open_source(plain) as a, open_source(turned) as b:
        stored = next(a.frames()).image
        upright = next(b.frames()).image
        assert (a.info.rotation, b.info.rotation) == (0, reported)
        expected_size = (32, 64) if turns % 2 else (64, 32)
        assert (b.info.width, b.info.height) == expected_size
    np.testing.assert_array_equal(stored, image)  # lossless, so the rotation is all that differs
    np.testing.assert_array_equal(upright, np.rot90(stored, turns))
    ys, xs = np.nonzero(upright[:, :, 0] > 128)
    corner = {1: (56, 0), 3: (0, 28), 2: (28, 56)}[turns]  # counter-clockwise quarter turns
    assert (ys.min(), xs.min()) == corner


def test_truncated_video_names_the_frame(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / "video" / "sam2_juggle.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with open_source(cut) as source:
        # Half the bytes end inside the packet of frame 96. Frames 94 and 95 are B-frames stored
        # after it, so the file holds 95 frames' packets: 0-93 and the cut one.
        assert source.info.frame_count == 95
        got = []
        with pytest.raises(InputError) as info:
            for frame in source.frames(start=80):
                got.append(frame.index)
    err = info.value
    # 0-93 is all that can be whole; those arrive, then the error names the first frame missing.
    assert got == list(range(80, 94))
    assert err.path == cut and err.frame == 94
    assert "cut short: frames from 94 on are missing" in str(err) and "re-export" in str(err)


def test_damaged_bytes_mid_stream_are_reported(shared_data: Path, tmp_path: Path) -> None:
    data = bytearray((shared_data / "video" / "sam2_juggle.mp4").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 50] = np.random.default_rng(1).integers(0, 256, 50, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    with open_source(bad) as source, pytest.raises(InputError) as info:
        for _ in source.frames(start=80):
            pass
    assert info.value.path == bad and 80 <= info.value.frame < 247


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"this is not a video" * 50, "cannot read this file as a video"), (b"", "cannot read this file")],
)
def test_unreadable_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "clip.mov"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        open_source(path)
    assert info.value.path == path


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        samples = np.zeros((1, 800), np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with pytest.raises(InputError, match="no video stream"):
        open_source(path)


# Phone-style variable frame rate: gaps of 1 ms to 134 ms between frames (time base 1/1000).
_VFR_MS = [0, 33, 50, 51, 120, 200, 210, 215, 300, 400, 401, 402, 500, 533, 566, 700]


def _vfr_video(path: Path, codec: str, pix_fmt: str, options: dict[str, str]) -> Path:
    """Frames whose brightness is 12 * k + 20 for the k-th, at the irregular times above."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=30, options=options)
        stream.height, stream.width, stream.pix_fmt = 32, 48, pix_fmt
        stream.codec_context.time_base = Fraction(1, 1000)
        for k, ms in enumerate(_VFR_MS):
            frame = av.VideoFrame.from_ndarray(np.full((32, 48, 3), 12 * k + 20, np.uint8), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt", "options"),
    [
        ("vfr.mkv", "libx264", "yuv444p", {"qp": "0", "bf": "2", "g": "6"}),
        ("vfr.mp4", "libx264", "yuv444p", {"qp": "0", "bf": "2", "g": "6"}),
        ("vfr.webm", "libvpx-vp9", "yuv420p", {"g": "6"}),
    ],
)
def test_variable_frame_rate_is_numbered_by_order_without_gaps_or_collisions(
    tmp_path: Path, name: str, codec: str, pix_fmt: str, options: dict[str, str]
) -> None:
    path = _vfr_video(tmp_path / name, codec, pix_fmt, options)
    count = len(_VFR_MS)
    with open_source(path) as source:
        # MKV and WebM state no frame count; the packets' timestamps give the exact one.
        assert source.info.frame_count == count
        assert source.frame_ids() == [("vfr", k) for k in range(count)]
        frames = list(source.frames(prefetch=0))
        assert [f.index for f in frames] == list(range(count))
        # Frame k is the k-th frame encoded (its brightness says which), so trimap k pairs with it.
        assert [round((f.image.mean() - 20) / 12) for f in frames] == list(range(count))
        assert [f.time for f in frames] == pytest.approx([ms / 1000 for ms in _VFR_MS])
        for start in (3, 10, 11, 15):  # a seek (farm chunk) numbers frames as the full pass does
            got = list(source.frames(start=start, end=start + 1))
            assert [f.index for f in got] == [k for k in (start, start + 1) if k < count]
            for frame in got:
                assert round((frame.image.mean() - 20) / 12) == frame.index
