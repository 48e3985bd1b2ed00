"""The benchmark's workload: a clip built from real matting data, with its ground truth and trimaps.

A benchmark on random pixels says nothing about a matting tool: the cost of tiled inference depends on
how much of the frame the trimap leaves unknown, and quality needs a ground truth. So the clip is
composited from the alphamatting.com photos (real hair, fur, plants and glass, with triangulation
ground truth) moving over the real background photos:

* **Foregrounds.** Two of the images the default model holds out from training (the split of
  ``training/configs/bandmatte.toml``, drawn by :func:`training.data.split_names`), so quality
  is measured on images the network never saw. Their foreground colour is re-estimated from the photo
  and its alpha the way the training data is (the config's estimator, pymatting's multi-level solver,
  cached in the work folder), because the photos only give the composite over the original backdrop.
* **Scale.** The photos (800 px on the long side) appear at their own size in a 1080-line frame and
  scaled with the frame height otherwise (2x at 4K), so every resolution shows the same composition.
* **Motion.** Each foreground stands on the bottom edge (the photos' lower border, a straight cut
  through the object, stays out of frame) and drifts on a slow Lissajous path (sub-pixel
  positions, so its alpha is resampled every frame) while the background pans: no two frames are
  alike.
* **Ground truth.** Layers are combined with the "over" operator in premultiplied float; the alpha
  is stored as 8-bit PNG and every frame is composited from that stored alpha, ``I = aF + (1 - a)B``,
  so the files on disk are exactly the truth of the pixels that go to the encoder.
* **Trimaps.** Dilation and erosion of the ground truth (:func:`mattecli.media.trimaps.trimap_from_alpha`)
  by a band of 6 px per unit of foreground scale. Six pixels is the width at which those trimaps have
  as many unknown pixels as the alphamatting.com Trimap1 (the standard "small" trimap) on the same
  images (median over the 21 images; 5 to 7 px on all but one), i.e. a typical trimap.
* **Encoding.** ProRes 4444 at 10 bits through mattecli's own :class:`VideoWriter`: the intra-frame,
  high-quality codec a VFX plate arrives in, so decoding costs what it costs in production (10-bit
  sources decode to 16-bit RGB).

Files (``bench.mov``, ``alpha/bench.000000.png``, ``trimaps/bench.000000.png``) are named so that
``mattecli run`` matches the trimaps by itself. Everything is a function of the parameters and the
seed; a workload is built in a hidden folder and renamed into place when complete, and a later run
with the same parameters reuses it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from mattecli.errors import InputError
from mattecli.media.compose import fit_background, quantize
from mattecli.media.imageio import read_gray, write_image
from mattecli.media.trimaps import trimap_from_alpha

# Bump when the rendering changes, so that cached workloads of the old kind are not reused.
VERSION = 1
CLIP_NAME = "bench"
FPS = 24
RESOLUTIONS = {"1080p": (1920, 1080), "4k": (3840, 2160)}
FOREGROUNDS_PER_CLIP = 2
# The trimap band (px each side of every soft edge) at which trimap_from_alpha gives as many
# unknown pixels as alphamatting.com's Trimap1 on the same image at its own size (see above).
TRIMAP1_BAND = 6
REFERENCE_HEIGHT = 1080  # frame height at which the foregrounds keep their own size
# Motion, as fractions of the frame and periods in frames.
DRIFT = (0.05, 0.03)
DRIFT_PERIODS = (48, 72)
PAN = 0.03
PAN_PERIOD = 96

_WXH = re.compile(r"(\d+)[xX](\d+)")
_MARKER = "workload.json"


def parse_resolution(text: str) -> tuple[str, int, int]:
    """``1080p``, ``4k`` or ``WxH`` (even sides, 64 px or more) to (label, width, height)."""
    label = text.strip().lower()
    if label in ("2160p", "uhd"):
        label = "4k"
    if label in RESOLUTIONS:
        return (label, *RESOLUTIONS[label])
    match = _WXH.fullmatch(label)
    if match is None:
        raise InputError(f"unknown resolution {text!r}", hint="use 1080p, 4k or WIDTHxHEIGHT, e.g. 640x360")
    width, height = int(match[1]), int(match[2])
    if min(width, height) < 64 or width % 2 or height % 2:
        raise InputError(
            f"resolution {text}: both sides must be even and at least 64 px",
            hint="ProRes needs even sizes; e.g. 640x360",
        )
    return f"{width}x{height}", width, height


@dataclass(frozen=True)
class WorkloadSpec:
    """What a workload is made from; equal specs give identical files."""

    width: int
    height: int
    frames: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise InputError(f"a workload needs at least one frame, not {self.frames}")

    @property
    def key(self) -> str:
        """Folder name in the work folder (the version is part of it, so old caches are not reused)."""
        return f"{self.width}x{self.height}-{self.frames}f-seed{self.seed}-v{VERSION}"


@dataclass(frozen=True)
class Workload:
    """A built workload on disk (see the module docstring for the layout)."""

    root: Path
    spec: WorkloadSpec
    foregrounds: tuple[str, ...]  # alphamatting names, back to front
    background: str  # file name in the data's backgrounds folder
    scale: float  # foreground scale (1 at 1080 lines)
    unknown_width: int  # trimap band, px each side of every soft edge
    unknown_fraction: float  # mean share of the frame's pixels in the trimaps' unknown band
    estimator: str  # how the foreground colours were re-estimated

    @property
    def video(self) -> Path:
        return self.root / f"{CLIP_NAME}.mov"

    @property
    def trimaps(self) -> Path:
        return self.root / "trimaps"

    @property
    def alpha(self) -> Path:
        return self.root / "alpha"

    def frame_file(self, index: int) -> str:
        return f"{CLIP_NAME}.{index:06d}.png"

    def gt_alpha(self, index: int) -> np.ndarray:
        """Ground-truth alpha of frame ``index``, uint8."""
        return read_gray(self.alpha / self.frame_file(index))

    def trimap(self, index: int) -> np.ndarray:
        """The trimap of frame ``index``, uint8 0/128/255."""
        return read_gray(self.trimaps / self.frame_file(index))

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["root"] = str(self.root)
        data["video"] = str(self.video)
        data["codec"] = "ProRes 4444 (prores_ks, yuva444p10le, BT.709), 24 fps"
        return data

    @classmethod
    def load(cls, root: Path) -> Workload:
        data = json.loads((root / _MARKER).read_text(encoding="utf-8"))
        return cls(
            root=root,
            spec=WorkloadSpec(**data["spec"]),
            foregrounds=tuple(data["foregrounds"]),
            background=data["background"],
            scale=data["scale"],
            unknown_width=data["unknown_width"],
            unknown_fraction=data["unknown_fraction"],
            estimator=data["estimator"],
        )


def is_built(spec: WorkloadSpec, work: Path) -> bool:
    """Whether ``work`` already holds the complete workload of ``spec``."""
    return (Path(work) / spec.key / _MARKER).is_file()


def build_workload(
    spec: WorkloadSpec, work: Path, *, on_frame: Callable[[int], None] | None = None
) -> Workload:
    """The workload for ``spec`` in ``work``: reused when it exists, else built (see the module docstring).

    ``on_frame`` is called after each frame is written, for progress.
    """
    work = Path(work)
    final = work / spec.key
    if is_built(spec, work):
        return Workload.load(final)
    work.mkdir(parents=True, exist_ok=True)
    scene = _Scene(spec, work / "foregrounds")
    building = Path(tempfile.mkdtemp(prefix=f".{spec.key}.", dir=work))
    try:
        workload = scene.write(building, on_frame)
        (building / _MARKER).write_text(json.dumps(_stored(workload), indent=2), encoding="utf-8")
        if final.exists() and not is_built(spec, work):  # not ours to keep: no complete workload in it
            shutil.rmtree(final)
        try:
            os.replace(building, final)
        except OSError:  # another run finished the same workload first: keep that one
            if not is_built(spec, work):
                raise
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return Workload.load(final)


def _stored(workload: Workload) -> dict[str, object]:
    data = asdict(workload)
    del data["root"]  # the folder is renamed after this is written
    return data


@dataclass(frozen=True)
class _Layer:
    """One foreground: premultiplied colour and alpha (h x w x 4) and its path over the frame."""

    rgba: np.ndarray
    centre: tuple[float, float]
    phase: tuple[float, float]


class _Scene:
    """The drawn choices of one workload (foregrounds, background, motion) and frame rendering."""

    def __init__(self, spec: WorkloadSpec, cache: Path) -> None:
        from training.config import load_config
        from training.data import BackgroundSet, ImageAlphaDataset, split_names
        from training.data.composite import resize_to

        config = load_config(Path(__file__).resolve().parents[2] / "training/configs/bandmatte.toml")
        data = config.data
        assert data.image is not None and data.backgrounds is not None
        names = ImageAlphaDataset(data.image, data.alpha).names
        _, held_out = split_names(names, data.holdout, data.holdout_seed)
        rng = np.random.default_rng(spec.seed)
        count = min(FOREGROUNDS_PER_CLIP, len(held_out))
        chosen = sorted(str(name) for name in rng.choice(held_out, size=count, replace=False))
        items = ImageAlphaDataset(data.image, data.alpha, data.estimator, cache, names=chosen)
        backgrounds = BackgroundSet(data.backgrounds)
        which = int(rng.integers(len(backgrounds)))

        self.spec = spec
        self.estimator = data.estimator
        self.names = tuple(chosen)
        self.background_name = backgrounds.files[which].name
        self.scale = spec.height / REFERENCE_HEIGHT
        self.unknown_width = max(1, round(TRIMAP1_BAND * self.scale))
        width, height = spec.width, spec.height
        self.pan = (round(PAN * width), round(PAN * height))
        self.canvas = fit_background(backgrounds[which], width + 2 * self.pan[0], height + 2 * self.pan[1])
        self.pan_phase = float(rng.uniform(0, 2 * np.pi))
        self.layers = []
        for k in range(len(items)):
            item = items[k]
            h, w = item.alpha.shape
            size = (max(1, round(h * self.scale)), max(1, round(w * self.scale)))
            rgba = resize_to(np.dstack([item.fg * item.alpha[:, :, None], item.alpha]), *size)
            # Side by side, standing on the bottom edge: the photos' lower border (a straight cut
            # through the object) stays out of frame at every point of the drift.
            centre = (width * (k + 0.5) / len(items), height * (1 + DRIFT[1]) - size[0] / 2)
            phase = (float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi)))
            self.layers.append(_Layer(np.ascontiguousarray(rgba, dtype=np.float32), centre, phase))

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``index``: the RGB composite (float32) and its ground-truth alpha (uint8)."""
        height, width = self.spec.height, self.spec.width
        colour = np.zeros((height, width, 3), np.float32)  # premultiplied
        cover = np.zeros((height, width), np.float32)
        for layer in self.layers:
            h, w = layer.rgba.shape[:2]
            x, y = (
                centre + amount * side * math.sin(2 * math.pi * index / period + phase)
                for centre, amount, side, period, phase in zip(
                    layer.centre, DRIFT, (width, height), DRIFT_PERIODS, layer.phase, strict=True
                )
            )
            left, top = x - w / 2, y - h / 2
            x0, y0 = max(0, math.floor(left)), max(0, math.floor(top))
            x1, y1 = min(width, math.ceil(left + w)), min(height, math.ceil(top + h))
            if x1 <= x0 or y1 <= y0:
                continue
            shift = np.float32([[1, 0, left - x0], [0, 1, top - y0]])
            patch = cv2.warpAffine(
                layer.rgba, shift, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
            )
            a = patch[:, :, 3]
            region = (slice(y0, y1), slice(x0, x1))
            colour[region] = patch[:, :, :3] + (1.0 - a)[:, :, None] * colour[region]
            cover[region] = a + (1.0 - a) * cover[region]
        alpha = quantize(cover, np.uint8)
        fg = np.divide(colour, cover[:, :, None], out=np.zeros_like(colour), where=cover[:, :, None] > 0)
        np.clip(fg, 0.0, 1.0, out=fg)
        a = alpha.astype(np.float32)[:, :, None] * np.float32(1 / 255)
        turn = math.sin(2 * math.pi * index / PAN_PERIOD + self.pan_phase)
        ox, oy = (round(p * (1 + turn)) for p in self.pan)
        background = self.canvas[oy : oy + height, ox : ox + width]
        return a * fg + (1.0 - a) * background, alpha

    def write(self, root: Path, on_frame: Callable[[int], None] | None) -> Workload:
        from mattecli.media.video_writer import VideoWriter

        spec = self.spec
        unknown = 0
        video = root / f"{CLIP_NAME}.mov"
        opaque = np.ones((spec.height, spec.width, 1), np.float32)
        with VideoWriter(
            video, codec="prores", content="rgba", width=spec.width, height=spec.height, fps=Fraction(FPS)
        ) as writer:
            for index in range(spec.frames):
                image, alpha = self.render(index)
                trimap = trimap_from_alpha(alpha, self.unknown_width)
                unknown += int(np.count_nonzero(trimap == 128))
                name = f"{CLIP_NAME}.{index:06d}.png"
                write_image(root / "alpha" / name, alpha)
                write_image(root / "trimaps" / name, trimap)
                writer.write(np.concatenate([image, opaque], axis=2), index=index)
                if on_frame is not None:
                    on_frame(index)
        return Workload(
            root=root,
            spec=spec,
            foregrounds=self.names,
            background=self.background_name,
            scale=self.scale,
            unknown_width=self.unknown_width,
            unknown_fraction=unknown / (spec.frames * spec.width * spec.height),
            estimator=self.estimator,
        )
