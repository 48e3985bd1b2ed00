"""Masks as the trimap source of a run (``run --mask-dir``) and as trimap files (``mattecli trimap``).

Masks are read the way the other inputs are: a folder or pattern of images (8/16-bit PNG, TIFF,
EXR) through :func:`mattecli.media.sources.open_source`, or a video of masks through PyAV. Each
mask becomes a trimap with :func:`mattecli.mask_trimaps.trimap_from_mask` at the size of the frame
it is for, so a band given as a fraction of the diagonal means the same on a proxy and on the plate.

Matching a mask to a frame of ``run`` follows the trimap rules (:class:`mattecli.media.trimaps.TrimapIndex`:
same name and number, same name, or the number alone; one image for every frame). A video of masks
gives frame ``k``'s mask to frame ``k`` of every input, like a folder of ``000012.png`` masks.

``mattecli trimap`` names each trimap so that ``run --trimap-dir`` matches it to the same frames:
an image mask's trimap keeps the mask's stem (``clip.000012.tif`` -> ``clip.000012.png``), and
frame ``k`` of a video of masks becomes ``00000k.png`` (six digits), which matches frame ``k`` of
any input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mattecli.errors import InputError, OutputError
from mattecli.mask_trimaps import UNKNOWN, MaskTrimapSettings, trimap_from_mask
from mattecli.media.frame import Frame
from mattecli.media.imageio import is_image_file, read_gray, write_image
from mattecli.media.sources import Source, open_source
from mattecli.media.trimaps import TrimapIndex
from mattecli.summary import Reporter
from mattecli.trimap_sources import FrameReader

# How many mask file names a warning lists.
NAMES_SHOWN = 3
_RESIZE_HINT = "--resize-trimaps to resize the masks to the frames (bilinear, before the band is drawn)"


def mask_plane(image: np.ndarray) -> np.ndarray:
    """One channel of a decoded mask: the grey value of an RGB frame whose channels agree, else its luma."""
    if image.ndim == 2:
        return image
    if np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 0], image[:, :, 2]):
        return np.ascontiguousarray(image[:, :, 0])
    return cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)


def trimap_file_name(frame: Frame, kind: str) -> str:
    """The file name ``mattecli trimap`` gives the trimap of this mask (see the module docstring)."""
    if kind == "video":
        return f"{frame.index:06d}.png"
    return f"{frame.source.stem}.png"


def _has_foreground(trimap: np.ndarray) -> bool:
    return bool(np.any(trimap != 0))


@dataclass
class TrimapsWritten:
    """What :func:`write_mask_trimaps` did, for the summary line and ``--json``."""

    masks: Path
    output: Path
    settings: MaskTrimapSettings
    frames: int = 0
    width: int = 0
    height: int = 0
    unknown_sum: float = 0.0
    empty: list[str] | None = None

    @property
    def unknown_fraction(self) -> float:
        """Mean fraction of a frame that is unknown."""
        return self.unknown_sum / self.frames if self.frames else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "masks": str(self.masks),
            "output": str(self.output),
            "frames": self.frames,
            "width": self.width,
            "height": self.height,
            "band_pixels": round(self.settings.band.pixels(self.height, self.width), 3),
            "settings": self.settings.describe(),
            "unknown_fraction": round(self.unknown_fraction, 6),
            "masks_without_foreground": self.empty or [],
        }


def write_mask_trimaps(
    masks: Path,
    output: Path,
    settings: MaskTrimapSettings,
    *,
    on_frame: Callable[[int], None] | None = None,
) -> TrimapsWritten:
    """Write one 8-bit PNG trimap per mask of ``masks`` into ``output`` (created if missing).

    Each file is written atomically, so a killed command leaves only whole trimaps. Refuses an
    output folder that is the masks' own folder, where trimaps could replace masks of the same stem.
    """
    with open_source(masks) as source:
        folder = masks if masks.is_dir() else masks.parent
        if source.info.kind != "video" and output.resolve() == folder.resolve():
            raise OutputError(
                "the output folder is the masks' folder, where trimaps would replace masks of the same name",
                path=output,
                hint="write the trimaps to another folder (-o)",
            )
        if output.exists() and not output.is_dir():
            raise OutputError(
                "exists and is not a folder", path=output, hint="choose a folder for the trimaps"
            )
        done = TrimapsWritten(masks=masks, output=output, settings=settings, empty=[])
        for frame in source.frames(prefetch=2):
            trimap = trimap_from_mask(mask_plane(frame.image), settings)
            name = trimap_file_name(frame, source.info.kind)
            write_image(output / name, trimap)
            done.frames += 1
            done.height, done.width = trimap.shape
            done.unknown_sum += float(np.count_nonzero(trimap == UNKNOWN)) / trimap.size
            if not _has_foreground(trimap):
                done.empty.append(name)  # type: ignore[union-attr]
            if on_frame is not None:
                on_frame(frame.index)
    return done


class MaskTrimaps:
    """``run --mask-dir``: each frame's trimap made on the fly from its mask (a :class:`TrimapSource`)."""

    def __init__(self, spec: Path, settings: MaskTrimapSettings) -> None:
        self.spec = Path(spec)
        self.settings = settings
        self._index: TrimapIndex | None = None
        self._video: Source | None = None
        self._decoded: Iterator[Frame] | None = None
        self._last: Frame | None = None
        self._cache: tuple[tuple[Path, tuple[int, int], bool], np.ndarray] | None = None
        self._empty: list[str] = []
        self._warned = 0
        if not self.spec.exists():
            raise InputError(
                "mask folder, image or video not found",
                path=self.spec,
                hint="--mask-dir takes a folder of masks named after the frames, one mask for every "
                "frame, or a video of masks",
            )
        if self.spec.is_file() and not is_image_file(self.spec):
            self._video = open_source(self.spec)
        else:
            self._index = TrimapIndex.open(self.spec, kind="mask", option="--mask-dir")

    def check(self, frames: Iterable[tuple[str, int]]) -> None:
        """Every frame has its mask: a file that fits it, or a frame of the mask video with its number."""
        if self._index is not None:
            self._index.check(frames)
            return
        assert self._video is not None
        count = self._video.info.frame_count
        if count is None:
            return  # counted as it is read: a frame past the end is reported then
        beyond = sorted({index for _, index in frames if index >= count})
        if beyond:
            raise InputError(
                f"the mask video has {count} frames (0-{count - 1}) but the run needs frame {beyond[-1]}",
                path=self.spec,
                hint="give a mask for every frame, or limit the run with --end",
            )

    def begin_input(self, frames: Sequence[tuple[str, int]] | None, read: FrameReader) -> None:
        """Nothing is carried between frames; a mask video is read again from the next input's first frame."""
        self._close_video_pass()

    def restart_index(self, first_incomplete: int) -> int:
        return first_incomplete

    def trimap(self, frame: Frame, *, resize: bool) -> np.ndarray:
        """The trimap of ``frame``'s mask at the frame's size (read-only uint8, exactly 0/128/255)."""
        size = (frame.height, frame.width)
        if self._index is not None:
            path = self._index.find(frame.name, frame.index)
            if path is None:
                raise InputError(f"no mask for frame {frame.name}", path=self.spec, frame=frame.index)
            key = (path, size, resize)
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
            mask, where = read_gray(path), path
        else:
            key = None
            mask, where = self._video_mask(frame.index), self.spec
        trimap = trimap_from_mask(self._fitted(mask, where, frame, resize), self.settings)
        trimap.setflags(write=False)
        if not _has_foreground(trimap):
            self._empty.append(where.name if key is not None else f"{where.name} frame {frame.index}")
        if key is not None and self._index is not None and self._index.single:
            self._cache = (key, trimap)
        return trimap

    def warn(self, reporter: Reporter) -> None:
        """One line about masks without any foreground (their frames' alpha is zero everywhere)."""
        new = self._empty[self._warned :]
        self._warned = len(self._empty)
        if new:
            shown = ", ".join(new[:NAMES_SHOWN])
            more = f" and {len(new) - NAMES_SHOWN} more" if len(new) > NAMES_SHOWN else ""
            reporter.warn(
                f"{len(new)} mask(s) hold no foreground, so their frames' alpha is 0: {shown}{more}"
            )

    def _fitted(self, mask: np.ndarray, path: Path, frame: Frame, resize: bool) -> np.ndarray:
        """The mask at the frame's size: refused when it differs, resized (bilinear) with ``resize``."""
        height, width = frame.height, frame.width
        if mask.shape == (height, width):
            return mask
        shown = f"mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but frame {frame.name} is {height}x{width}"
        if mask.shape == (width, height):
            raise InputError(
                shown + ", turned by a quarter",
                path=path,
                frame=frame.index,
                hint="rotate the mask to match the picture as viewers show it",
            )
        if not resize:
            raise InputError(shown, path=path, frame=frame.index, hint=_RESIZE_HINT)
        if mask.dtype == np.bool_:
            mask = mask.view(np.uint8)
        return cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)

    def _video_mask(self, index: int) -> np.ndarray:
        """Frame ``index`` of the mask video, read forward (a new pass only when the run goes back)."""
        assert self._video is not None
        if self._last is None or index < self._last.index:
            self._close_video_pass()
            self._decoded = self._video.frames(start=index, prefetch=0)
        assert self._decoded is not None
        while self._last is None or self._last.index < index:
            self._last = next(self._decoded, None)
            if self._last is None:
                break
        if self._last is None or self._last.index != index:
            raise InputError(
                f"the mask video has no frame {index}",
                path=self.spec,
                frame=index,
                hint="give a mask for every frame, or limit the run with --end",
            )
        return mask_plane(self._last.image)

    def _close_video_pass(self) -> None:
        if self._decoded is not None:
            self._decoded.close()  # type: ignore[attr-defined]
        self._decoded, self._last = None, None
