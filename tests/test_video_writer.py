"""Video outputs by round trip: write with VideoWriter, decode with PyAV, compare with what was written."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from mattecli.errors import InputError
from mattecli.media.sinks import OutputSpec, Sinks
from mattecli.media.sources import open_source
from mattecli.media.video_writer import VideoWriter

H, W = 48, 64
N = 6
FPS = Fraction(30000, 1001)


def _alpha(i: int) -> np.ndarray:
    """A matte with exact 0 and 1 blocks, a ramp through every 16-bit level region, and noise."""
    rng = np.random.default_rng(i)
    a = np.tile(np.linspace(0.0, 1.0, W, dtype=np.float32), (H, 1))
    a[:8, :8], a[8:16, :8] = 0.0, 1.0
    a[20:40, 16:56] = rng.random((20, 40), dtype=np.float32)
    return a


def _colour(i: int) -> np.ndarray:
    """Smooth colour (ProRes is a DCT codec: noise would measure the codec, not the writer)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    return np.dstack([xx / (W - 1), yy / (H - 1), 0.5 + 0.4 * np.sin(xx / 7 + i)]).astype(np.float32)


def _rgba(i: int) -> np.ndarray:
    return np.dstack([_colour(i), _alpha(i)])


def _write(path: Path, codec: str, content: str, images: list[np.ndarray], **kwargs) -> Path:
    with VideoWriter(path, codec=codec, content=content, width=W, height=H, fps=FPS, **kwargs) as writer:
        for i, image in enumerate(images):
            writer.write(image, index=i)
    return path


def _decode(path: Path, fmt: str) -> tuple[list[np.ndarray], av.video.stream.VideoStream]:
    """Every frame as 16-bit codes (``rgba64le`` or ``gray16le``), and the video stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format=fmt) for f in container.decode(stream)], stream


def _q16(x: np.ndarray) -> np.ndarray:
    """The nearest 16-bit codes, computed here independently of the writer."""
    return np.rint(np.clip(x.astype(np.float64), 0, 1) * 65535).astype(np.uint16)


@pytest.mark.parametrize(("codec", "suffix"), [("png-mov", ".mov"), ("ffv1", ".mkv")])
def test_lossless_rgba_is_exact_at_16_bits(tmp_path: Path, codec: str, suffix: str) -> None:
    images = [_rgba(i) for i in range(N)]
    path = _write(tmp_path / f"clip{suffix}", codec, "rgba", images)
    decoded, stream = _decode(path, "rgba64le")
    assert len(decoded) == N
    assert stream.average_rate == FPS
    for got, want in zip(decoded, images, strict=True):
        np.testing.assert_array_equal(got, _q16(want))


@pytest.mark.parametrize(("codec", "suffix"), [("png-mov", ".mov"), ("ffv1", ".mkv")])
def test_lossless_matte_is_exact_at_16_bits(tmp_path: Path, codec: str, suffix: str) -> None:
    images = [_alpha(i) for i in range(N)]
    path = _write(tmp_path / f"matte{suffix}", codec, "alpha", images)
    decoded, _ = _decode(path, "gray16le")
    assert len(decoded) == N
    for got, want in zip(decoded, images, strict=True):
        np.testing.assert_array_equal(got, _q16(want))


def _prores_planes(path: Path) -> tuple[list[np.ndarray], av.video.stream.VideoStream]:
    """Decoded ProRes frames as stored: Y', Cb, Cr (and alpha) planes, normalised to [0, 1].

    Read straight from the decoder's 12-bit planes and normalised with the BT.709 video-range
    definition, as an editorial tool does, so that no swscale conversion sits between the file and
    the comparison. Returns H x W x C arrays: C = 4 (R, G, B, alpha) or 1 (luma).
    """
    kr, kb = 0.2126, 0.0722
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            assert frame.format.name in ("yuva444p12le", "yuv444p12le")
            planes = [
                np.frombuffer(p, "<u2").reshape(p.height, -1)[:, : p.width].astype(np.float64)
                for p in frame.planes
            ]
            y = (planes[0] - 256) / 3504
            if len(planes) == 3 and np.array_equal(planes[1], planes[2]):
                out.append(y[:, :, None])  # a grey picture: the luma is the matte
                continue
            cb, cr = (planes[1] - 2048) / 3584, (planes[2] - 2048) / 3584
            r, b = y + 2 * (1 - kr) * cr, y + 2 * (1 - kb) * cb
            g = (y - kr * r - kb * b) / (1 - kr - kb)
            out.append(np.dstack([r, g, b, planes[3] / 4095]))
        return out, stream


def test_prores_4444_keeps_alpha_within_10_bit_rounding(tmp_path: Path) -> None:
    images = [_rgba(i) for i in range(N)]
    path = _write(tmp_path / "clip.mov", "prores", "rgba", images)
    decoded, stream = _prores_planes(path)
    ctx = stream.codec_context
    assert (ctx.name, ctx.codec_tag) == ("prores", "ap4h")  # ProRes 4444
    assert (ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range) == (1, 1, 1, 1)  # BT.709
    assert stream.average_rate == FPS and len(decoded) == N
    alpha_err = max(
        np.abs(got[:, :, 3] - want[:, :, 3]).max() for got, want in zip(decoded, images, strict=True)
    )
    colour_err = [np.abs(got[:, :, :3] - want[:, :, :3]) for got, want in zip(decoded, images, strict=True)]
    colour_max, colour_mean = max(e.max() for e in colour_err), np.mean([e.mean() for e in colour_err])
    print(
        f"prores alpha max err {alpha_err * 1023:.4f}/1023; colour max {colour_max * 1023:.3f}/1023", end=""
    )
    print(f", mean {colour_mean * 1023:.3f}/1023")
    # Alpha is coded losslessly: the error is the writer's rounding to 10 bits (at most half a
    # code) plus the decoder's widening of 10-bit codes to 12 bits (within one 12-bit code).
    # Measured 0.676/1023 against this bound of 0.744/1023.
    assert alpha_err <= 0.5 / 1023 + 1 / 4095
    # Colour is lossy (DCT). Measured on this smooth picture with hard alpha-block edges:
    # max 2.6/1023, mean 0.40/1023; the bounds leave room for other FFmpeg builds, no more.
    assert colour_max <= 4 / 1023
    assert colour_mean <= 1 / 1023
    assert all(d[:8, :8, 3].max() == 0 and d[8:16, :8, 3].min() == 1 for d in decoded)  # 0 and 1 exact


def test_prores_matte_is_video_range_luma(tmp_path: Path) -> None:
    images = [_alpha(i) for i in range(N)]
    path = _write(tmp_path / "matte.mov", "prores", "alpha", images)
    decoded, stream = _prores_planes(path)
    assert stream.codec_context.pix_fmt.startswith("yuv444p")
    err = [np.abs(got[:, :, 0] - want) for got, want in zip(decoded, images, strict=True)]
    print(f"prores luma matte max err {max(e.max() for e in err) * 1023:.3f}/1023")
    # Luma goes through ProRes' DCT (lossy; png-mov and ffv1 are the exact matte formats). Measured:
    # max 6.05/1023 in the noise patch, about 2-3/1023 at the hard edges, mean 0.48/1023 (10-bit
    # video range alone would give 0.29/1023 on average).
    assert max(e.max() for e in err) <= 8 / 1023
    assert np.mean([e.mean() for e in err]) <= 1 / 1023


def test_timestamps_follow_the_frame_numbers(tmp_path: Path) -> None:
    """A range that starts at frame 100 starts the file at 0; a skipped frame leaves a gap."""
    path = tmp_path / "clip.mov"
    with VideoWriter(path, codec="png-mov", content="alpha", width=W, height=H, fps=FPS) as writer:
        for index in (100, 101, 103):
            writer.write(_alpha(index), index=index)
    with av.open(str(path)) as container:
        times = [frame.time for frame in container.decode(video=0)]
    np.testing.assert_allclose(times, [0.0, float(1 / FPS), float(3 / FPS)], atol=1e-6)


def test_wrong_frame_size_is_an_input_error_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "clip.mov"
    with (
        pytest.raises(InputError, match="64x48") as info,
        VideoWriter(path, codec="prores", content="rgba", width=W, height=H, fps=FPS) as writer,
    ):
        writer.write(_rgba(0), index=0)
        writer.write(np.zeros((H + 2, W, 4), np.float32), index=1)
    assert info.value.frame == 1 and info.value.hint
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_no_final_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.mkv"
    with (
        pytest.raises(RuntimeError, match="killed"),
        VideoWriter(path, codec="ffv1", content="rgba", width=W, height=H, fps=FPS) as writer,
    ):
        writer.write(_rgba(0), index=0)
        writer.write(_rgba(1), index=1)
        assert not path.exists() and len(list(tmp_path.iterdir())) == 1  # only the temporary file
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


# --- audio -----------------------------------------------------------------------------------

AUDIO_RATE = 48000
SOURCE_FRAMES, SOURCE_FPS = 24, Fraction(24)


def _sine(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * 440 * (c + 1) * t) for c in range(channels)]).astype(np.float32)


def _make_source(
    path: Path, audio_codec: str | None, rate: int = AUDIO_RATE, layout: str = "mono", video_start: int = 0
) -> Path:
    """A 1-second clip: 24 frames at 24 fps and, unless ``audio_codec`` is None, a sine per channel.

    ``video_start``: the first picture's timestamp in frames (the audio always starts at 0).
    """
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=SOURCE_FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        streams = [video]
        if audio_codec is not None:
            audio = out.add_stream(audio_codec, rate=rate, layout=layout)
            audio.codec_context.options = {"strict": "experimental"}  # FFmpeg's own Vorbis encoder
            streams.append(audio)
        for i in range(SOURCE_FRAMES):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), i * 10, np.uint8), format="rgb24")
            frame.pts = video_start + i
            for packet in video.encode(frame):
                out.mux(packet)
        if audio_codec is not None:
            signal = _sine(rate, SOURCE_FRAMES / SOURCE_FPS, 1 if layout == "mono" else 2)
            for start in range(0, signal.shape[1], 1024):
                chunk = np.ascontiguousarray(signal[:, start : start + 1024])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                frame.sample_rate, frame.pts = rate, start
                for packet in audio.encode(frame):
                    out.mux(packet)
        for stream in streams:
            for packet in stream.encode():
                out.mux(packet)
    return path


def _write_range(path: Path, source: Path, frames: range, codec: str = "prores") -> Path:
    """Write frames ``frames`` of the source's timeline (times i / 24) with the source's audio."""
    with VideoWriter(
        path, codec=codec, content="rgba", width=W, height=H, fps=SOURCE_FPS, audio_source=source
    ) as writer:
        for i in frames:
            writer.write(_rgba(i), index=i, time=float(i / SOURCE_FPS))
    return path


def _audio_packets(path: Path) -> tuple[list[av.Packet], av.audio.stream.AudioStream]:
    container = av.open(str(path))
    stream = container.streams.audio[0]
    return [p for p in container.demux(stream) if p.size], stream


def _audio_samples(path: Path) -> np.ndarray:
    """All decoded audio, channels x samples, as float64 in [-1, 1]."""
    with av.open(str(path)) as container:
        chunks = []
        for frame in container.decode(audio=0):
            data = frame.to_ndarray()
            if frame.format.name in ("s32", "s32p"):
                data = data / 2.0**31
            chunks.append(
                data.reshape(-1, frame.samples)
                if frame.format.is_planar
                else data.reshape(frame.samples, -1).T
            )
        return np.concatenate(chunks, axis=1).astype(np.float64)


def test_audio_is_copied_packet_for_packet(tmp_path: Path) -> None:
    source = _make_source(tmp_path / "src.mp4", "aac")
    out = _write_range(tmp_path / "out.mov", source, range(SOURCE_FRAMES))
    src_packets, src_stream = _audio_packets(source)
    out_packets, out_stream = _audio_packets(out)
    assert out_stream.codec_context.name == src_stream.codec_context.name == "aac"
    assert out_stream.sample_rate == src_stream.sample_rate == AUDIO_RATE
    assert out_stream.codec_context.channels == 1
    # Copied, not re-encoded: the same packets, byte for byte, at the same times.
    assert [bytes(p) for p in out_packets] == [bytes(p) for p in src_packets]
    assert [p.pts * p.time_base for p in out_packets] == [p.pts * p.time_base for p in src_packets]
    assert _audio_samples(out).shape == _audio_samples(source).shape


def test_partial_range_gets_the_audio_of_that_range(tmp_path: Path) -> None:
    source = _make_source(tmp_path / "src.mp4", "aac")
    out = _write_range(tmp_path / "out.mov", source, range(12, 24))  # source times 0.5 s .. 1.0 s
    src_packets, _ = _audio_packets(source)
    out_packets, out_stream = _audio_packets(out)
    start = Fraction(1, 2)
    tb = src_packets[0].time_base
    # Kept: every source packet that overlaps [0.5 s, 1.0 s), shifted so that 0.5 s plays at 0.
    want = [p for p in src_packets if (p.pts + p.duration) * tb > start]
    assert [bytes(p) for p in out_packets] == [bytes(p) for p in want]
    assert [p.pts * p.time_base for p in out_packets] == [p.pts * tb - start for p in want]
    duration = sum(p.duration for p in out_packets) * out_stream.time_base
    assert abs(duration - start) <= Fraction(1024, AUDIO_RATE)  # within one AAC packet


def test_audio_follows_a_video_stream_that_starts_late(tmp_path: Path) -> None:
    """Frame times count from the first picture (0.5 s into this file): audio before it is left out."""
    source = _make_source(tmp_path / "src.mkv", "aac", video_start=12)
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        assert stream.start_time * stream.time_base == Fraction(1, 2)
    out = _write_range(tmp_path / "out.mov", source, range(SOURCE_FRAMES))  # frame times 0 .. 23/24
    src_packets, _ = _audio_packets(source)
    out_packets, _ = _audio_packets(out)
    start = Fraction(1, 2)
    want = [p for p in src_packets if (p.pts + p.duration) * p.time_base > start]
    assert 0 < len(want) < len(src_packets)
    assert [bytes(p) for p in out_packets] == [bytes(p) for p in want]
    assert [p.pts * p.time_base for p in out_packets] == [p.pts * p.time_base - start for p in want]


def test_audio_the_container_cannot_take_is_written_as_pcm(tmp_path: Path) -> None:
    """Vorbis cannot go into .mov: it is decoded and stored as 24-bit PCM, sample for sample."""
    source = _make_source(tmp_path / "src.mkv", "vorbis", rate=44100, layout="stereo")
    out = _write_range(tmp_path / "out.mov", source, range(SOURCE_FRAMES))
    _, out_stream = _audio_packets(out)
    assert out_stream.codec_context.name == "pcm_s24le"
    assert (out_stream.sample_rate, out_stream.codec_context.channels) == (44100, 2)
    want, got = _audio_samples(source), _audio_samples(out)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 2.0**-23  # 24-bit quantisation of the decoded source


def test_source_without_audio_gives_a_silent_video(tmp_path: Path) -> None:
    source = _make_source(tmp_path / "src.mp4", None)
    out = _write_range(tmp_path / "out.mkv", source, range(4), codec="ffv1")
    with av.open(str(out)) as container:
        assert not container.streams.audio
        assert len(list(container.decode(video=0))) == 4


def test_partial_run_from_a_real_source_through_the_sinks(tmp_path: Path) -> None:
    """open_source -> Sinks: frames 6..17 of the clip get the audio of 0.25 s .. 0.75 s, in sync."""
    clip = _make_source(tmp_path / "clip.mp4", "aac")
    spec = OutputSpec(tmp_path / "out", alpha=None, video="prores")
    with open_source(clip) as source:
        info = source.info
        assert (info.kind, info.fps, info.has_audio) == ("video", SOURCE_FPS, True)
        sinks = Sinks(spec, kind=info.kind, fps=info.fps, audio_source=clip)
        with sinks:
            for frame in source.frames(start=6, end=17, prefetch=0):
                sinks.write(frame, np.full((frame.height, frame.width), frame.index / 32, np.float32))
    out = tmp_path / "out" / "clip.rgba.mov"
    assert sinks.video_path == out
    decoded, _ = _prores_planes(out)
    assert [round(float(d[0, 0, 3]) * 32) for d in decoded] == list(range(6, 18))  # frames in order
    src_packets, _ = _audio_packets(clip)
    out_packets, _ = _audio_packets(out)
    start, end = Fraction(6, 24), Fraction(18, 24)
    want = [
        p for p in src_packets if (p.pts + p.duration) * p.time_base > start and p.pts * p.time_base < end
    ]
    assert [bytes(p) for p in out_packets] == [bytes(p) for p in want]
    assert [p.pts * p.time_base for p in out_packets] == [p.pts * p.time_base - start for p in want]
