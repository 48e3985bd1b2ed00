"""Video files through PyAV: anything the bundled FFmpeg reads.

Pixels keep their precision: 8-bit video gives uint8 RGB, video with more bits per component
(10-bit ProRes, 12-bit, 16-bit RGB) gives uint16 RGB, and float video (EXR in MOV) gives float32,
so a 10-bit grade is not banded to 8 bits before the matte is pulled.

Frame numbers count the frames in presentation order: frame 0 is the first frame shown, frame
``k`` the ``k``-th after it, whatever the timestamps say. Numbering by ``pts * average fps`` would
give variable-frame-rate phone footage gaps and collisions (two frames 10 ms apart round to one
number), so trimaps named by number would pair with the wrong frames. To number a pass that
seeks to ``--start 100`` exactly as a pass from frame 0, the source reads every video packet's
timestamp once when it opens (demuxing only, no decoding: one read of the file, small beside the
matting): the sorted timestamps are the frame table, a frame's number is its timestamp's place in
it, and a seek goes to the timestamp of the frame wanted. The table also gives the exact frame
count, where MKV and WebM state none. A stream without timestamps (a raw ``.h264``) is numbered by
counting decoded frames, and reaching a frame then means decoding from the start.

The display matrix (phone footage shot upright is stored sideways with a rotation tag) is
applied with :func:`numpy.rot90`, so frames come out the way players show them. Mirroring flags
in the matrix are not applied; cameras do not write them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Generator, Iterator
from contextlib import closing
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from mattecli.errors import InputError
from mattecli.media.frame import Frame
from mattecli.media.sources import Source, SourceInfo, selected

# Float pixel formats PyAV hands over as H x W x C float32 in RGB(A) order without conversion.
_FLOAT_RGB = frozenset({"gbrpf32le", "gbrapf32le", "rgbf32le", "rgbaf32le"})
_REENCODE_HINT = "the file looks damaged; re-export or re-download it, or transcode it to ProRes or FFV1"


class VideoSource(Source):
    """A video file's first video stream."""

    def __init__(self, path: Path) -> None:
        with _open(path) as container:
            stream = _video_stream(container, path)
            self._stream_index = stream.index
            self._time_base = Fraction(stream.time_base) if stream.time_base else None
            self._fps = _frame_rate(stream)
            first = _first_frame(container, stream, path)
            estimate = _frame_count(container, stream, self._fps)
            has_audio = bool(container.streams.audio)
        with _open(path) as container:  # a fresh demuxer: the first one has moved past the start
            self._table = _frame_table(container.streams.video[self._stream_index], container)
        self._first_pts = self._table[0] if self._table else first.pts
        # FFmpeg reports the rotation counter-clockwise in [-180, 180]; keep quarter turns.
        self._turns = round((first.rotation or 0) / 90) % 4
        self._format, bit_depth = _output_format(first.format)
        width, height = (first.height, first.width) if self._turns % 2 else (first.width, first.height)
        info = SourceInfo(
            kind="video",
            width=width,
            height=height,
            fps=self._fps,
            frame_count=len(self._table) if self._table else estimate,
            bit_depth=bit_depth,
            has_audio=has_audio,
            rotation=self._turns * 90,
        )
        super().__init__(path, info)

    def frame_ids(self) -> list[tuple[str, int]]:
        if self.info.frame_count is None:
            raise InputError(
                "the container states neither a frame count nor a duration",
                path=self.path,
                hint="remux it into MP4/MOV/MKV (ffmpeg -i IN -c copy OUT.mkv) so the frames are counted",
            )
        return [(self.path.stem, i) for i in range(self.info.frame_count)]

    def _frames(self, start: int | None, end: int | None, every: int) -> Generator[Frame, None, None]:
        first = 0 if start is None else start
        with closing(self._decoded_from(first)) as decoded:
            for index, frame in decoded:
                if end is not None and index > end:
                    return
                if selected(index, first, end, every):
                    yield self._to_frame(frame, index)

    def _to_frame(self, frame: av.VideoFrame, index: int) -> Frame:
        image = frame.to_ndarray() if self._format is None else frame.to_ndarray(format=self._format)
        if image.shape[2] == 4:  # float RGBA read as stored: the pipeline takes RGB
            image = image[:, :, :3]
        if self._turns:
            image = np.rot90(image, self._turns)
        image = np.ascontiguousarray(image)  # rot90 and slicing give views; consumers want plain arrays
        time = None
        if frame.pts is not None and self._first_pts is not None and self._time_base is not None:
            time = float((frame.pts - self._first_pts) * self._time_base)
        return Frame(index=index, name=self.path.stem, image=image, source=self.path, time=time)

    def _decoded_from(self, first: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """``(index, frame)`` in presentation order, starting at or a little before ``first``.

        Seeks to the keyframe before ``first`` when it can. If the seek fails or the demuxer
        lands after the target (an imprecise index in some files), it decodes from the
        beginning instead, so the frames are always right, only sometimes slower to reach.
        """
        if self._table and first >= len(self._table):
            return  # past the last frame: nothing to decode
        if first > 0 and self._seekable:
            with self._open_decoder() as container:
                if self._seek(container, first):
                    with closing(self._indexed(container, seek_to=first)) as frames:
                        head = next(frames, None)
                        if head is None:  # nothing at or after the seek point: past the end
                            return
                        if head[0] <= first:
                            yield head
                            yield from frames
                            return
        with self._open_decoder() as container, closing(self._indexed(container)) as frames:
            yield from frames

    def _open_decoder(self) -> av.container.InputContainer:
        """A fresh container per pass, so passes are independent and each thread owns its own."""
        container = _open(self.path)
        # Frame and slice threads (FFmpeg's default is slice threads only); set before decoding.
        container.streams.video[self._stream_index].thread_type = "AUTO"
        return container

    def _seek(self, container: av.container.InputContainer, index: int) -> bool:
        """Move to the keyframe at or before frame ``index``; False where the file cannot seek."""
        stream = container.streams.video[self._stream_index]
        try:
            container.seek(self._table[index], stream=stream, backward=True, any_frame=False)
        except (av.FFmpegError, OSError):
            return False
        return True

    @property
    def _seekable(self) -> bool:
        return bool(self._table)

    def _indexed(
        self, container: av.container.InputContainer, seek_to: int | None = None
    ) -> Iterator[tuple[int, av.VideoFrame]]:
        """Decode one stream, numbering frames from their timestamps; turn damage into InputError.

        ``seek_to`` tells that the container was just moved towards that frame, so the first
        frame's number is known only from its timestamp.

        Packets are demuxed here rather than through ``container.decode`` because, with frame
        threading, FFmpeg drops the decode error of a packet cut short by a truncated file and
        just ends the stream early. The demuxer marks such a packet corrupt, so the check is
        made on the packet: the frames completed before it are still delivered, then the error
        names the frame the packet belongs to.
        """
        stream = container.streams.video[self._stream_index]
        packets = container.demux(stream)
        last = None if seek_to is not None else -1
        cut_at = None
        while cut_at is None:
            expected = (seek_to or 0) if last is None else last + 1
            try:
                packet = next(packets, None)
                if packet is None:
                    return
                if packet.is_corrupt:
                    # Cut short: first hand over the frames shown before the cut that decode.
                    cut_at = self._index_at(packet.pts, expected)
                    frames = stream.decode(None)
                else:
                    frames = stream.decode(packet)
            except (av.FFmpegError, OSError) as exc:
                raise InputError(
                    f"cannot decode the video: {_reason(exc)}",
                    path=self.path,
                    frame=expected,
                    hint=_REENCODE_HINT,
                ) from exc
            for frame in frames:
                index = self._index_at(frame.pts, expected)
                if last is not None and index <= last:
                    index = last + 1
                if cut_at is not None and index >= cut_at:
                    break
                if frame.is_corrupt:
                    raise InputError(
                        "this frame decodes damaged (FFmpeg concealed missing data)",
                        path=self.path,
                        frame=index,
                        hint=_REENCODE_HINT,
                    )
                last, expected = index, index + 1
                yield index, frame
        # Frames shown between the last one delivered and the cut (B-frames that need the cut
        # frame) are lost too, so the error names the first frame that did not come out.
        missing = (seek_to or 0) if last is None else last + 1
        raise InputError(
            f"the file is cut short: frames from {missing} on are missing",
            path=self.path,
            frame=missing,
            hint=_REENCODE_HINT,
        )

    def _index_at(self, pts: int | None, fallback: int) -> int:
        """A timestamp's place in the frame table; ``fallback`` (the next number) when it has none."""
        if pts is None or not self._table:
            return fallback
        place = bisect_left(self._table, pts)
        return place if place < len(self._table) and self._table[place] == pts else fallback


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError) as exc:
        raise InputError(
            f"cannot read this file as a video or an image: {_reason(exc)}",
            path=path,
            hint="give a video FFmpeg can read, an image (PNG, JPEG, TIFF, EXR), a folder or a pattern",
        ) from exc


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise InputError(
            "the file has no video stream", path=path, hint="give a video file, not an audio or data file"
        )
    return container.streams.video[0]


def _first_frame(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: Path
) -> av.VideoFrame:
    """Decode the first frame: the only reliable place for rotation, pixel format and start pts.

    A packet cut short by a truncated file is not sent to the decoder (it would fail the whole
    open); the decoder is drained instead, so a file cut after its first frame still opens and
    its whole frames can be matted (see :meth:`VideoSource._indexed`).
    """
    try:
        for packet in container.demux(stream):
            for frame in stream.decode(None if packet.is_corrupt else packet):
                return frame
            if packet.is_corrupt:
                break
    except (av.FFmpegError, OSError) as exc:
        raise InputError(
            f"cannot decode the video: {_reason(exc)}", path=path, frame=0, hint=_REENCODE_HINT
        ) from exc
    raise InputError("the video stream holds no frames", path=path, hint=_REENCODE_HINT)


def _frame_rate(stream: av.video.stream.VideoStream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return None


def _frame_table(
    stream: av.video.stream.VideoStream, container: av.container.InputContainer
) -> list[int] | None:
    """Every frame's presentation timestamp, sorted: frame ``k`` is the ``k``-th shown.

    Packets the demuxer marks to be discarded (cut off by an MP4 edit list) are never shown, so
    they are not frames. None when a packet has no timestamp or two share one: such a stream can
    only be numbered by counting. A damaged file keeps the frames read before the damage (its
    decoder then reports where it stops).
    """
    stamps: list[int] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue
            if packet.pts is None:
                return None
            stamps.append(packet.pts)
    except (av.FFmpegError, OSError):
        pass
    stamps.sort()
    if any(a == b for a, b in zip(stamps, stamps[1:], strict=False)):
        return None
    return stamps


def _frame_count(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, fps: Fraction | None
) -> int | None:
    """The container's count, or duration x rate when it says 0 (MKV, WebM and raw streams do).

    Only an estimate: used for streams the frame table cannot number (packets without timestamps).
    """
    if stream.frames > 0:
        return int(stream.frames)
    if fps is None:
        return None
    if stream.duration and stream.time_base:
        seconds = stream.duration * Fraction(stream.time_base)
    elif container.duration:
        seconds = Fraction(container.duration, av.time_base)
    else:
        return None
    return round(seconds * fps)


def _output_format(pixel_format: av.VideoFormat) -> tuple[str | None, int]:
    """The RGB format that keeps the source's precision, and the source's bits per component.

    ``None`` means the frames are float RGB(A) already and are read as they are: swscale would
    clamp them to [0, 1] and quantise them, which would destroy scene-linear values.
    """
    if pixel_format.name in _FLOAT_RGB:
        return None, 32
    bits = max(component.bits for component in pixel_format.components)
    if "f16" in pixel_format.name or "f32" in pixel_format.name:
        return "gbrpf32le", 32
    if bits > 8:
        return "rgb48le", bits
    return "rgb24", 8
