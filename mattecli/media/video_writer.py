"""Video outputs that keep alpha (ProRes 4444, PNG-in-MOV, FFV1), with the source's audio carried along.

The file is written under a temporary name beside its final one, through the descriptor that
created it (:class:`mattecli.media.atomic.AtomicFile`; FFmpeg writes through a file object on it,
never by name), and renamed only when the writer closes without error, so a killed or failed run
leaves neither a truncated video nor litter. A write failure names the video, and the frame when
it happened while that frame was written (FFmpeg buffers up to 32 KiB, so a failure can surface
one frame after the frame whose bytes did not fit).

Codec choices (round trips measured with PyAV 18 / FFmpeg 8, see tests/test_video_writer.py):

* ``prores``: ``prores_ks`` profile 4444, ``yuva444p10le``, in .mov; what editorial tools read.
  Colour is lossy (ProRes is a DCT codec), stored as video-range Y'CbCr with the BT.709 matrix and
  tagged so. Alpha is coded losslessly at 10 bits. The writer fills the planes itself rather than
  letting swscale convert: swscale truncates 16-bit alpha to 10 bits (error up to a whole code)
  and its 16-bit RGB path puts white at Y' = 943 instead of 940, which a decoder that follows
  BT.709 reads as 1.003 (PyAV's own round trip hides it: its decoder makes the opposite error).
  Every plane is rounded to the nearest code: alpha error at most half a 10-bit code.
* ``png-mov``: PNG frames in .mov at 16 bits (``rgba64be`` / ``gray16be``): exact at 16 bits.
* ``ffv1``: FFV1 level 3, intra-only, slice CRCs, 16 bits (``rgba64le`` / ``gray16le``), in .mkv
  because FFmpeg's mov muxer refuses FFV1: exact at 16 bits; the archival choice.

An alpha-only matte video stores the matte as grey: 16-bit grey for ``png-mov``/``ffv1`` (exact),
and as luma for ``prores`` (video-range Y', neutral chroma; lossy like any ProRes picture).

Audio: the first audio stream of ``audio_source`` is copied packet for packet (no re-encode) when
the container takes its codec (AAC, MP3, Opus, FLAC, PCM... into .mov and .mkv). Otherwise (e.g.
Vorbis into .mov) it is decoded and written as 24-bit PCM, which every editorial tool reads, rather
than failing the run. The audio kept is the span of the frames written: from the first frame's
time to one frame after the last, so a partial run (a frame range) gets the matching audio, in
sync. Frame times count from the source's first video frame (as ``Frame.time`` does); audio from
before that frame (a video stream that starts late) is left out. The cut falls on audio packet
boundaries (about 21 ms for AAC at 48 kHz); when the first frame is the start of the audio, the
encoder's priming packets are kept too.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Literal

import av
import numpy as np
from av.audio.resampler import AudioResampler
from av.video.reformatter import ColorRange

from mattecli.errors import InputError, OutputError
from mattecli.media.atomic import AtomicFile, write_failure
from mattecli.media.compose import quantize
from mattecli.media.naming import video_name

VideoCodec = Literal["prores", "png-mov", "ffv1"]
VideoContent = Literal["rgba", "alpha"]

# 24-bit PCM: lossless for any decoded source and read by every editorial tool, in .mov and .mkv.
PCM_CODEC = "pcm_s24le"
_NOT_KEPT = "; the video is not kept"  # what a failed video output leaves: nothing under its name
_BT709 = 1  # ITU-T H.273 code for BT.709 primaries, transfer and matrix
_KR, _KB = 0.2126, 0.0722  # BT.709 luma weights of R and B


@dataclass(frozen=True, slots=True)
class _Format:
    encoder: str
    suffix: str
    muxer: str
    rgba_pix_fmt: str
    gray_pix_fmt: str
    options: dict[str, str] = field(default_factory=dict)


FORMATS: dict[str, _Format] = {
    "prores": _Format("prores_ks", ".mov", "mov", "yuva444p10le", "yuv444p10le", {"profile": "4444"}),
    "png-mov": _Format("png", ".mov", "mov", "rgba64be", "gray16be"),
    "ffv1": _Format(
        "ffv1", ".mkv", "matroska", "rgba64le", "gray16le", {"level": "3", "g": "1", "slicecrc": "1"}
    ),
}


def video_suffix(codec: VideoCodec) -> str:
    return FORMATS[codec].suffix


class VideoWriter:
    """One video output. Use as a context manager: a clean exit renames the file into place.

    :meth:`write` takes float32 images in [0, 1]: H x W x 4 RGBA for ``content="rgba"``, H x W for
    ``content="alpha"``, with the frame's index (for its timestamp) and its source time (for audio).
    ``name_frames``: the published name carries the first and last frame numbers written
    (:func:`mattecli.media.naming.video_name`); ``path`` then becomes that name on a clean close.
    Write failures are raised as :class:`mattecli.errors.OutputError` naming the video.
    """

    def __init__(
        self,
        path: Path,
        *,
        codec: VideoCodec,
        content: VideoContent,
        width: int,
        height: int,
        fps: Fraction,
        audio_source: Path | None = None,
        name_frames: bool = False,
    ) -> None:
        self.path = Path(path)
        self._name_frames = name_frames
        self._codec = codec
        self._content = content
        self._fps = Fraction(fps)
        self._size = (height, width)
        self._first_index: int | None = None
        self._last: tuple[int, float] | None = None  # (index, source time) of the last frame
        fmt = FORMATS[codec]
        self._suffix = fmt.suffix
        with ExitStack() as stack:
            self._file = AtomicFile(self.path)
            stack.callback(self._file.discard)  # on any failure below and on an unclean close
            self._container = av.open(_Descriptor(self._file), "w", format=fmt.muxer)
            stack.callback(self._container.close)
            stream = self._container.add_stream(fmt.encoder, rate=self._fps, options=fmt.options)
            stream.width, stream.height = width, height
            stream.pix_fmt = fmt.rgba_pix_fmt if content == "rgba" else fmt.gray_pix_fmt
            if codec == "prores":
                _tag_bt709(stream.codec_context)
            self._stream = stream
            self._audio = _AudioTrack.open(audio_source, self._container) if audio_source else None
            if self._audio is not None:
                stack.callback(self._audio.close)
            self._stack = stack.pop_all()

    def write(self, image: np.ndarray, *, index: int, time: float | None = None) -> None:
        """Encode one frame.

        ``time``: seconds from the source's first video frame (``Frame.time``); default
        ``index / fps``. It places the audio; the picture's own timestamp follows ``index``.
        """
        if image.shape[:2] != self._size:
            h, w = self._size
            raise InputError(
                f"frame is {image.shape[1]}x{image.shape[0]} but the video output is {w}x{h}",
                path=self.path,
                frame=index,
                hint="a video output needs frames of one size; write image files for mixed sizes",
            )
        if self._first_index is None:
            self._first_index = index
        elif self._last is not None and index <= self._last[0]:
            raise ValueError(f"frames must be written in increasing order ({index} after {self._last[0]})")
        source_time = float(index / self._fps) if time is None else time
        if self._audio is not None and self._last is None:
            self._audio.begin(source_time)
        frame = self._to_frame(image)
        frame.pts = index - self._first_index  # in units of 1/fps, the encoder's time base
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            self._last = (index, source_time)
            if self._audio is not None:
                self._audio.feed_until(source_time + 1 / self._fps)
        except (OSError, av.FFmpegError, OutputError) as exc:  # OutputError: from the descriptor's writes
            raise write_failure(self.path, exc, frame=index, outcome=_NOT_KEPT) from None

    def _to_frame(self, image: np.ndarray) -> av.VideoFrame:
        if self._codec != "prores":
            # 16-bit codes; PyAV only reorders the words into the stream's pix_fmt: exact.
            fmt = "gray16le" if self._content == "alpha" else "rgba64le"
            return av.VideoFrame.from_ndarray(quantize(image, np.uint16), format=fmt)
        height, width = self._size
        frame = av.VideoFrame(width, height, self._stream.pix_fmt)
        rgb = np.repeat(image[:, :, None], 3, axis=2) if self._content == "alpha" else image[:, :, :3]
        for plane, values in zip(frame.planes, _ycbcr709_10bit(rgb), strict=False):
            _set_plane(plane, values)
        if self._content == "rgba":
            _set_plane(frame.planes[3], _codes(np.clip(image[:, :, 3], 0.0, 1.0, dtype=np.float64), 0, 1023))
        _tag_bt709(frame)  # FFmpeg's encoders take the colour tags from the frames
        return frame

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            with contextlib.suppress(av.FFmpegError, OSError, OutputError):  # keep the first error
                self._stack.__exit__(exc_type, exc, tb)  # the temporary file is removed
            return
        try:
            self._finish()
        except BaseException as err:
            with contextlib.suppress(av.FFmpegError, OSError, OutputError):
                self._stack.__exit__(type(err), err, err.__traceback__)
            if isinstance(err, (OSError, av.FFmpegError, OutputError)):
                doing = "cannot finish the video"
                raise write_failure(self.path, err, doing=doing, outcome=_NOT_KEPT) from None
            raise

    def _finish(self) -> None:
        """Flush the encoder and the audio, close the container, publish under the final name."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        if self._audio is not None and self._last is not None:
            self._audio.finish(self._last[1] + 1 / self._fps)
        self._container.close()  # writes the index (moov, cues): the last bytes of the file
        if self._name_frames and self._first_index is not None and self._last is not None:
            content = self._content
            stem = self.path.name.removesuffix(f".{content}{self._suffix}")
            name = video_name(stem, content, self._suffix, (self._first_index, self._last[0]))
            self.path = self.path.with_name(name)
        self._file.publish(self.path)
        self._stack.close()  # the audio source; closing the container again is a no-op


class _Descriptor(io.RawIOBase):
    """A file object over an :class:`AtomicFile`'s descriptor, for FFmpeg (through PyAV) to write.

    Every write goes whole through :meth:`AtomicFile.write` (which names the video on failure);
    seeking is the descriptor's own, which the muxers need to write their index at the start.
    """

    def __init__(self, file: AtomicFile) -> None:
        super().__init__()
        self._file = file

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._file.write(data)
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._file.fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self._file.fd, 0, os.SEEK_CUR)


def _codes(values: np.ndarray, low: float, span: float) -> np.ndarray:
    """``low + span * values`` rounded to the nearest code, as little-endian uint16 (values in float64)."""
    return np.rint(low + span * values).astype("<u2")


def _ycbcr709_10bit(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB in [0, 1] to video-range 10-bit Y'CbCr (Y' 64..940, Cb/Cr 64..960) with the BT.709 matrix."""
    r, g, b = np.moveaxis(np.clip(rgb, 0.0, 1.0, dtype=np.float64), 2, 0)
    y = _KR * r + (1.0 - _KR - _KB) * g + _KB * b
    cb = (b - y) / (2.0 * (1.0 - _KB))
    cr = (r - y) / (2.0 * (1.0 - _KR))
    return _codes(y, 64, 876), _codes(cb, 512, 896), _codes(cr, 512, 896)


def _tag_bt709(target: av.VideoFrame | av.video.codeccontext.VideoCodecContext) -> None:
    target.colorspace = target.color_primaries = target.color_trc = _BT709
    target.color_range = ColorRange.MPEG


def _set_plane(plane: av.video.plane.VideoPlane, values: np.ndarray) -> None:
    """Overwrite one plane of a frame with an H x W array, respecting the plane's row padding."""
    rows = np.zeros((plane.height, plane.line_size // values.itemsize), dtype=values.dtype)
    rows[:, : plane.width] = values
    plane.update(rows.tobytes())


class _AudioTrack:
    """The first audio stream of a source file, muxed into an output in step with its video."""

    def __init__(
        self, source: av.container.InputContainer, output: av.container.OutputContainer, origin: float
    ) -> None:
        self._input = source
        self._origin = origin
        self._stream = source.streams.audio[0]
        self._time_base = self._stream.time_base
        self._rate = self._stream.sample_rate
        if self._stream.codec_context.name in output.supported_codecs:
            self._out = output.add_stream_from_template(self._stream)
            self._resampler = None
        else:
            layout = self._stream.layout.name
            self._out = output.add_stream(PCM_CODEC, rate=self._rate, layout=layout)
            self._resampler = AudioResampler(format=self._out.format, layout=layout, rate=self._rate)
        self._output = output
        self._packets: Iterator[av.Packet] = iter(())
        self._pending: av.Packet | None = None
        self._start = 0.0
        self._next_sample: int | None = None

    @classmethod
    def open(cls, path: Path, output: av.container.OutputContainer) -> _AudioTrack | None:
        """The audio of ``path``, or None when it has no audio stream."""
        try:
            source = av.open(str(path))
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot read audio: {exc}", path=path, hint="write without audio") from None
        if not source.streams.audio:
            source.close()
            return None
        video = source.streams.video
        # Frame times count from the first video frame; audio timestamps from the file's origin.
        origin = video[0].start_time * video[0].time_base if video and video[0].start_time is not None else 0
        try:
            return cls(source, output, float(origin))
        except BaseException:
            source.close()
            raise

    def begin(self, start: float) -> None:
        """Align the audio so that ``start`` (the first frame written, in frame time) plays at 0."""
        start += self._origin
        first = (
            float(self._stream.start_time * self._time_base) if self._stream.start_time is not None else 0.0
        )
        keep_lead = start <= first  # the whole start of the stream, priming packets included
        if not keep_lead:
            self._input.seek(int(start / self._time_base), stream=self._stream, backward=True)
        self._start = start
        self._packets = (
            packet
            for packet in self._input.demux(self._stream)
            if packet.size
            and _start_time(packet) is not None
            and (keep_lead or _start_time(packet) + _duration(packet) > start)
        )
        self._pending = next(self._packets, None)

    def feed_until(self, until: float) -> None:
        """Mux every packet that starts before frame time ``until``."""
        until += self._origin
        while self._pending is not None and _start_time(self._pending) < until:
            self._mux(self._pending)
            self._pending = next(self._packets, None)

    def finish(self, end: float) -> None:
        self.feed_until(end)
        self._pending = None
        if self._resampler is not None:
            self._encode(self._stream.codec_context.decode(None))
            self._encode_resampled(self._resampler.resample(None))
            for packet in self._out.encode(None):
                self._output.mux(packet)

    def close(self) -> None:
        self._input.close()

    def _mux(self, packet: av.Packet) -> None:
        if self._resampler is not None:
            self._encode(self._stream.codec_context.decode(packet))
            return
        shift = round(self._start / self._time_base)
        packet.stream = self._out
        if packet.pts is not None:
            packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        self._output.mux(packet)

    def _encode(self, frames: list[av.AudioFrame]) -> None:
        """Decoded source audio to PCM, timed from the first frame's position relative to the start."""
        assert self._resampler is not None
        for frame in frames:
            if self._next_sample is None and frame.pts is not None:
                self._next_sample = round((frame.pts * self._time_base - self._start) * self._rate)
            self._encode_resampled(self._resampler.resample(frame))

    def _encode_resampled(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            frame.pts = self._next_sample if self._next_sample is not None else 0
            frame.time_base = Fraction(1, self._rate)
            self._next_sample = frame.pts + frame.samples
            for packet in self._out.encode(frame):
                self._output.mux(packet)


def _start_time(packet: av.Packet) -> float | None:
    ts = packet.pts if packet.pts is not None else packet.dts
    return None if ts is None else float(ts * packet.time_base)


def _duration(packet: av.Packet) -> float:
    return float((packet.duration or 0) * packet.time_base)
