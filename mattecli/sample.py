"""A procedural demo clip with exact ground truth, so mattecli can be tried and scored anywhere.

The scene is a deforming blob that moves over a slowly panning textured background. It carries
the three kinds of edge that matting has to get right: a hard opaque core with anti-aliased and
defocused boundaries, hair-like strands thinner than a pixel (drawn at 4x and area-averaged, so
their alpha is true sub-pixel coverage), and a semi-transparent veil (alpha about 0.3 to 0.6).
Layers are combined with the "over" operator in premultiplied float, and every frame is composited
from the stored 8-bit alpha and foreground, ``I = alpha * F + (1 - alpha) * B``, so the files on
disk are exactly the ground truth of the pixels that went into the encoder.

Everything is a function of the seed and the frame number, hence reproducible.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mattecli.errors import InputError
from mattecli.media.imageio import atomic_path, write_image
from mattecli.media.trimaps import trimap_from_alpha

CLIP_NAME = "clip"
FPS = 24
DEFAULT_FRAMES = 48
DEFAULT_WIDTH = 640
DEFAULT_HEIGHT = 360
CRF = 16  # near-transparent H.264 quality, so a run on the clip is scored on the matte, not on codec noise

_LOOP = 48  # frames per period of every motion; longer clips repeat the loop
_SUPERSAMPLE = 4  # strands are drawn at this scale; one 4x pixel is a quarter-pixel wide hair
_STRANDS = 420
_STRAND_POINTS = 10


def frame_file(index: int) -> str:
    """Ground-truth file name of frame ``index``; trimap matching finds it by name and number."""
    return f"{CLIP_NAME}.{index:06d}.png"


_FRAME_FILE = re.compile(rf"{CLIP_NAME}\.(\d{{6}})\.png")


@dataclass(frozen=True)
class SampleFrame:
    """One rendered frame and its ground truth (all uint8)."""

    image: np.ndarray  # H x W x 3 composite that goes to the encoder
    alpha: np.ndarray  # H x W
    foreground: np.ndarray  # H x W x 3, defined everywhere (the body colour where alpha is 0)
    background: np.ndarray  # H x W x 3
    trimap: np.ndarray  # H x W, 0/128/255


class SampleScene:
    """The procedural scene: textures and strand layout are drawn once from the seed."""

    def __init__(self, width: int, height: int, seed: int) -> None:
        self.width = width
        self.height = height
        self.scale = min(width, height) / 360.0
        self.unknown_width = max(2, round(6 * self.scale))
        rng = np.random.default_rng(seed)
        self._margin = math.ceil(0.1 * width)
        self._canvas = self._background_canvas(rng)
        self._ys, self._xs = np.mgrid[0:height, 0:width].astype(np.float32)
        # Body shape: harmonics of the outline, with phase speeds so it deforms over the loop.
        self._harmonics = [
            (k, amp, float(rng.uniform(0, 2 * np.pi)), int(rng.choice([-2, -1, 1, 2])))
            for k, amp in ((2, 0.08), (3, 0.05), (5, 0.03), (7, 0.015))
        ]
        self._body_colour = np.array(rng.uniform([0.7, 0.3, 0.1], [0.95, 0.55, 0.3]), np.float32)
        self._hair_colour = np.array(rng.uniform([0.85, 0.7, 0.35], [1.0, 0.85, 0.55]), np.float32)
        self._veil_colour = np.array(rng.uniform([0.45, 0.65, 0.85], [0.65, 0.85, 1.0]), np.float32)
        # Strands grow from the upper half of the outline, outwards with a random tilt.
        self._strand_angle = rng.uniform(-np.pi * 1.05, np.pi * 0.05, _STRANDS).astype(np.float32)
        self._strand_tilt = rng.normal(0, 0.35, _STRANDS).astype(np.float32)
        self._strand_length = rng.uniform(0.2, 0.6, _STRANDS).astype(np.float32)
        self._strand_bend = rng.normal(0, 0.5, _STRANDS).astype(np.float32)
        self._strand_phase = rng.uniform(0, 2 * np.pi, _STRANDS).astype(np.float32)
        self._strand_thick = rng.random(_STRANDS) < 0.25  # a quarter are twice as wide (half a pixel)

    def _background_canvas(self, rng: np.random.Generator) -> np.ndarray:
        """Smooth colour clouds, mid-scale mottling, diagonal weave and fine grain, larger than a frame."""
        h, w = self.height + 2 * self._margin, self.width + 2 * self._margin
        clouds = cv2.resize(rng.random((5, 8, 3), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        mottle = cv2.resize(
            rng.random((max(2, h // 24), max(2, w // 24)), dtype=np.float32),
            (w, h),
            interpolation=cv2.INTER_CUBIC,
        )
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        period = 14.0 * self.scale
        weave = np.sin((xs + ys) * (2 * np.pi / period)) * np.sin((xs - ys) * (2 * np.pi / (1.7 * period)))
        grain = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0), 0.8)
        base = np.array([0.25, 0.35, 0.3], np.float32) + 0.45 * clouds
        shade = 0.12 * (mottle - 0.5) + 0.05 * weave + 0.06 * grain
        return _to_u8(np.maximum(base + shade[:, :, None], 0.0))

    def render(self, index: int) -> SampleFrame:
        phase = 2 * np.pi * (index % _LOOP) / _LOOP
        cx = self.width * (0.5 + 0.12 * math.sin(phase))
        cy = self.height * (0.56 + 0.05 * math.sin(2 * phase + 1.0))
        radius = 0.25 * self.height
        strands = self._strands(cx, cy, radius, phase)
        # Only the box around the object is rendered; outside it alpha is 0.
        reach = 1.9 * radius + 4 * self.scale  # outline wobble and veil stay inside this
        x0 = max(0, math.floor(min(cx - reach, strands[..., 0].min())) - 2)
        y0 = max(0, math.floor(min(cy - reach, strands[..., 1].min())) - 2)
        x1 = min(self.width, math.ceil(max(cx + reach, strands[..., 0].max())) + 3)
        y1 = min(self.height, math.ceil(max(cy + reach, strands[..., 1].max())) + 3)
        box = (slice(y0, y1), slice(x0, x1))

        background = self._background(phase)
        body_colour = self._body_colour_field(cx, cy, radius)
        dx, dy = self._xs[box] - cx, self._ys[box] - cy
        body_alpha = self._body_alpha(np.arctan2(dy, dx), np.hypot(dx, dy), radius, phase)
        veil_alpha = self._veil_alpha(dx, dy, radius, phase)
        hair_alpha = _coverage(
            strands - np.array([x0, y0], np.float32), (y1 - y0, x1 - x0), self._strand_thick
        )

        # Back to front, premultiplied: body, then the veil over it, then the hair over both.
        alpha = body_alpha
        premult = body_alpha[:, :, None] * body_colour[box]
        for layer_alpha, colour in ((veil_alpha, self._veil_colour), (hair_alpha, self._hair_colour)):
            a = layer_alpha[:, :, None]
            premult = a * colour + (1 - a) * premult
            alpha = layer_alpha + (1 - layer_alpha) * alpha
        covered = alpha[:, :, None] > 1e-6
        foreground = body_colour.copy()
        foreground[box] = np.where(covered, premult / np.maximum(alpha, 1e-6)[:, :, None], body_colour[box])

        alpha8 = np.zeros((self.height, self.width), np.uint8)
        alpha8[box] = _to_u8(alpha)
        foreground8 = _to_u8(foreground)
        # The composite is made from the stored 8-bit values, so the ground truth is exact for it.
        a = alpha8[box].astype(np.float32)[:, :, None]
        composite = background.copy()
        composite[box] = _to_u8((a * foreground8[box] + (255 - a) * background[box]) / np.float32(255 * 255))
        return SampleFrame(
            image=composite,
            alpha=alpha8,
            foreground=foreground8,
            background=background,
            trimap=trimap_from_alpha(alpha8, self.unknown_width),
        )

    def _background(self, phase: float) -> np.ndarray:
        shift_x = self._margin * (1 + 0.8 * math.sin(phase))
        shift_y = self._margin * (1 + 0.3 * math.cos(phase))
        warp = np.array([[1, 0, -shift_x], [0, 1, -shift_y]], np.float32)
        return cv2.warpAffine(
            self._canvas,
            warp,
            (self.width, self.height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )

    def _outline(self, theta: np.ndarray, radius: float, phase: float) -> np.ndarray:
        wobble = sum(amp * np.sin(k * theta + p0 + speed * phase) for k, amp, p0, speed in self._harmonics)
        return radius * (1 + wobble)

    def _body_alpha(self, theta: np.ndarray, rho: np.ndarray, radius: float, phase: float) -> np.ndarray:
        """Opaque inside the outline; the edge is anti-aliased on one side, defocused on the other."""
        inside = self._outline(theta, radius, phase) - rho
        defocus = np.maximum(0.0, np.sin(theta - 0.4 - 0.5 * math.sin(phase))) ** 2
        half_width = (0.6 + 4.5 * defocus) * self.scale
        return _smoothstep(-half_width, half_width, inside)

    def _body_colour_field(self, cx: float, cy: float, radius: float) -> np.ndarray:
        """Warm colour with spots and shading that travel with the body (separable, so cheap)."""
        dx = self._xs[0] - cx
        dy = self._ys[:, 0] - cy
        spots = np.sin(dy * (2 * np.pi / (17 * self.scale)))[:, None] * np.sin(
            dx * (2 * np.pi / (23 * self.scale))
        )
        distance = (dy * dy)[:, None] + (dx * dx)[None, :]
        light = 1.0 - 0.35 * np.minimum(distance / (radius * radius), 1.5) + 0.12 * spots
        return np.clip(light[:, :, None] * self._body_colour, 0.0, 1.0)

    def _veil_alpha(self, dx: np.ndarray, dy: np.ndarray, radius: float, phase: float) -> np.ndarray:
        """A fluttering translucent wing on the right side: alpha 0.3..0.6 in soft folds."""
        angle = 0.35 + 0.15 * math.sin(2 * phase)
        ox, oy = dx - 0.95 * radius, dy - 0.25 * radius
        u = ox * math.cos(angle) + oy * math.sin(angle)
        v = -ox * math.sin(angle) + oy * math.cos(angle)
        a, b = 0.75 * radius, 0.38 * radius * (1 + 0.1 * math.sin(3 * phase))
        inside = 1.0 - np.sqrt((u / a) ** 2 + (v / b) ** 2)  # > 0 inside the ellipse
        edge = _smoothstep(0.0, 2.0 * self.scale / b, inside)
        folds = 0.5 + 0.5 * np.sin(u * (2 * np.pi / (0.4 * radius)) + 2 * phase)
        return edge * (0.3 + 0.3 * folds)

    def _strands(self, cx: float, cy: float, radius: float, phase: float) -> np.ndarray:
        """Strand polylines (strands x points x 2, frame pixels) that sway with the phase."""
        roots_theta = self._strand_angle
        root_r = self._outline(roots_theta, radius, phase) - 3 * self.scale
        root = np.stack([cx + root_r * np.cos(roots_theta), cy + root_r * np.sin(roots_theta)], axis=-1)
        heading = roots_theta + self._strand_tilt
        direction = np.stack([np.cos(heading), np.sin(heading)], axis=-1)
        normal = np.stack([-direction[:, 1], direction[:, 0]], axis=-1)
        length = (self._strand_length * radius)[:, None, None]
        sway = self._strand_bend + 0.4 * np.sin(phase * 2 + self._strand_phase)
        t = np.linspace(0, 1, _STRAND_POINTS, dtype=np.float32)[None, :, None]
        bend = (t * t * sway[:, None, None]) * normal[:, None, :]
        return (root[:, None, :] + length * (t * direction[:, None, :] + bend)).astype(np.float32)


def _coverage(strands: np.ndarray, shape: tuple[int, int], thick: np.ndarray) -> np.ndarray:
    """Coverage of opaque strands a quarter (or, where ``thick``, half) pixel wide.

    Drawn at 4x with hard edges, so overlapping strands cover a pixel once, as real hairs do, then
    area-averaged down: the alpha is the covered fraction of each pixel in 1/16 steps.
    """
    n = _SUPERSAMPLE
    # Pixel centres sit at integers; at n-times scale pixel x's centre is at n * x + (n - 1) / 2.
    fixed = np.round((strands * n + (n - 1) / 2) * 16).astype(np.int32)  # 4 fractional bits
    canvas = np.zeros((shape[0] * n, shape[1] * n), np.uint8)
    for wide, width in ((False, 1), (True, 2)):
        cv2.polylines(
            canvas, list(fixed[thick == wide]), False, 255, thickness=width, lineType=cv2.LINE_8, shift=4
        )
    coverage = cv2.resize(canvas, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return coverage.astype(np.float32) / 255.0


def _smoothstep(edge0: Any, edge1: Any, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def _to_u8(x: np.ndarray) -> np.ndarray:
    """Float [0, 1] to uint8, rounded and saturated in one OpenCV pass (inputs are never negative)."""
    return cv2.convertScaleAbs(x, alpha=255.0)


@dataclass(frozen=True)
class SampleOutput:
    """What :func:`write_sample` wrote, for the summary and ``--json``."""

    directory: Path
    video: Path
    trimaps: Path
    alpha: Path
    foreground: Path
    frames: int
    width: int
    height: int
    fps: int
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "video": str(self.video),
            "trimaps": str(self.trimaps),
            "alpha": str(self.alpha),
            "foreground": str(self.foreground),
            "frames": self.frames,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "codec": "h264",
            "seed": self.seed,
        }


def write_sample(
    directory: Path,
    *,
    frames: int = DEFAULT_FRAMES,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    seed: int = 0,
    force: bool = False,
    on_frame: Callable[[int], None] | None = None,
) -> SampleOutput:
    """Render the demo clip and its ground truth into ``directory``; see the command's help for the layout.

    Refuses a non-empty folder unless ``force``; with ``force``, ground-truth frames left over from
    a longer earlier sample are removed so that ``eval`` does not count them. ``on_frame`` is
    called after each frame is written (for progress).
    """
    directory = Path(directory)
    _check_options(directory, frames, width, height, seed, force)
    import av

    out = SampleOutput(
        directory=directory,
        video=directory / f"{CLIP_NAME}.mp4",
        trimaps=directory / "trimaps",
        alpha=directory / "alpha",
        foreground=directory / "foreground",
        frames=frames,
        width=width,
        height=height,
        fps=FPS,
        seed=seed,
    )
    scene = SampleScene(width, height, seed)
    with atomic_path(out.video) as tmp, av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": str(CRF), "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            frame = scene.render(index)
            name = frame_file(index)
            write_image(out.trimaps / name, frame.trimap)
            write_image(out.alpha / name, frame.alpha)
            write_image(out.foreground / name, frame.foreground)
            picture = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
            picture.pts, picture.time_base = index, Fraction(1, FPS)
            container.mux(stream.encode(picture))
            if on_frame is not None:
                on_frame(index)
        container.mux(stream.encode())
    _remove_stale_frames(out, frames)
    return out


def _check_options(directory: Path, frames: int, width: int, height: int, seed: int, force: bool) -> None:
    if not 1 <= frames <= 999_999:
        raise InputError(f"--frames must be between 1 and 999999, got {frames}")
    if seed < 0:
        raise InputError(f"--seed must be 0 or more, got {seed}")
    for option, value in (("--width", width), ("--height", height)):
        if value < 64 or value > 8192 or value % 2:
            raise InputError(
                f"{option} must be an even number of pixels from 64 to 8192, got {value}",
                hint="H.264 in yuv420p needs even sizes",
            )
    if directory.exists() and not directory.is_dir():
        raise InputError("exists and is not a folder", path=directory, hint="choose a new folder name")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise InputError(
            "folder is not empty",
            path=directory,
            hint="choose an empty or new folder, or --force to overwrite",
        )


def _remove_stale_frames(out: SampleOutput, frames: int) -> None:
    """Delete our own ``clip.NNNNNN.png`` files past the last frame (from an earlier, longer sample)."""
    for folder in (out.trimaps, out.alpha, out.foreground):
        for path in folder.iterdir():
            match = _FRAME_FILE.fullmatch(path.name)
            if match and int(match.group(1)) >= frames:
                path.unlink()
