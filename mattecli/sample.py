"""A procedural demo clip with exact ground truth, so mattecli can be tried and scored anywhere.

The scene is a deforming blob that moves over a slowly panning textured background. It carries
the three kinds of edge that matting has to get right: a hard opaque core with anti-aliased and
defocused boundaries, hair-like strands thinner than a pixel (drawn at 4x and area-averaged, so
their alpha is true sub-pixel coverage), and a semi-transparent veil (alpha about 0.3 to 0.6).
Layers are combined with the "over" operator in premultiplied float, and every frame is composited
from the stored 8-bit alpha and foreground, ``I = alpha * F + (1 - alpha) * B``, so the files on
disk are exactly the ground truth of the pixels that went into the encoder.

Everything is a function of the seed and the frame number, hence reproducible.

The ``hard`` preset makes the same scene harder, for judging temporal coherence: a longer clip
(96 frames, one motion period, so nothing repeats), a hand-held camera (a pan plus shake that moves
the background and the subject together), motion blur (a 180-degree shutter sampled at 7 times per
frame: alpha is the mean of the sub-frame alphas, the premultiplied foreground the mean of the
premultiplied sub-frame foregrounds, the background the mean of the sub-frame backgrounds, so the
ground truth stays exact for the blurred composite) and three times as many strands, down to an
eighth of a pixel wide (drawn at 8x).
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
DEFAULT_WIDTH = 640
DEFAULT_HEIGHT = 360
CRF = 16  # near-transparent H.264 quality, so a run on the clip is scored on the matte, not on codec noise

_STRAND_POINTS = 10


@dataclass(frozen=True)
class ScenePreset:
    """How hard the clip is: length, camera, motion blur and hair."""

    name: str
    frames: int  # default clip length
    loop: int  # frames per period of every motion; longer clips repeat the loop
    strands: int
    supersample: int  # strands are drawn at this scale; one pixel there is a 1/supersample-wide hair
    sub_frames: int  # times rendered and averaged per frame (motion blur); 1 = a sharp frame
    shutter: float  # fraction of the frame interval the shutter is open
    camera: float  # hand-held camera: pan and shake amplitude, in pixels at 360 lines
    swing: float  # the subject's horizontal swing, a fraction of the width
    margin: float  # background canvas margin around the frame, a fraction of the width
    drift: tuple[float, float]  # the background's own slow drift (x, y), a fraction of the margin


PRESETS = {
    "demo": ScenePreset("demo", 48, 48, 420, 4, 1, 0.0, 0.0, 0.12, 0.1, (0.8, 0.3)),
    "hard": ScenePreset("hard", 96, 96, 1260, 8, 7, 0.5, 1.0, 0.2, 0.3, (0.25, 0.25)),
}
DEFAULT_FRAMES = PRESETS["demo"].frames


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
    background: np.ndarray  # H x W x 3 (motion-blurred like the subject in the hard preset)
    trimap: np.ndarray  # H x W, 0/128/255


class SampleScene:
    """The procedural scene: textures and strand layout are drawn once from the seed."""

    def __init__(self, width: int, height: int, seed: int, preset: ScenePreset = PRESETS["demo"]) -> None:
        self.width = width
        self.height = height
        self.preset = preset
        self.scale = min(width, height) / 360.0
        self.unknown_width = max(2, round(6 * self.scale))
        rng = np.random.default_rng(seed)
        self._margin = math.ceil(preset.margin * width)
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
        self._strand_angle = rng.uniform(-np.pi * 1.05, np.pi * 0.05, preset.strands).astype(np.float32)
        self._strand_tilt = rng.normal(0, 0.35, preset.strands).astype(np.float32)
        self._strand_length = rng.uniform(0.2, 0.6, preset.strands).astype(np.float32)
        self._strand_bend = rng.normal(0, 0.5, preset.strands).astype(np.float32)
        self._strand_phase = rng.uniform(0, 2 * np.pi, preset.strands).astype(np.float32)
        self._strand_thick = rng.random(preset.strands) < 0.25  # a quarter are twice as wide (half a pixel)

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
        n = self.preset.sub_frames
        if n == 1:
            box, alpha, premult, body_colour, background = self._layers(index)
        else:  # motion blur: the mean of n sharp renders spread over the open shutter
            alpha = np.zeros((self.height, self.width), np.float32)
            premult = np.zeros((self.height, self.width, 3), np.float32)
            backgrounds = np.zeros((self.height, self.width, 3), np.float32)
            for k in range(n):
                time = index + self.preset.shutter * ((k + 0.5) / n - 0.5)
                sub_box, sub_alpha, sub_premult, colour, sub_background = self._layers(time)
                alpha[sub_box] += sub_alpha / n
                premult[sub_box] += sub_premult / n
                backgrounds += sub_background / np.float32(255 * n)
                if k == n // 2:
                    body_colour = colour  # the foreground colour where no sub-frame covers a pixel
            box = (slice(0, self.height), slice(0, self.width))
            background = _to_u8(backgrounds)

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

    def _camera(self, time: float) -> tuple[float, float]:
        """Hand-held camera offset in pixels at ``time`` (frames): a slow pan and a faster shake."""
        if self.preset.camera == 0:
            return 0.0, 0.0
        amplitude = self.preset.camera * self.scale
        phase = 2 * np.pi * time / self.preset.loop
        pan_x, pan_y = 40 * math.sin(phase), 10 * math.sin(2 * phase + 0.5)
        shake_x = 3 * math.sin(2 * np.pi * time * 0.23) + 2 * math.sin(2 * np.pi * time * 0.41 + 1)
        shake_y = 2.5 * math.sin(2 * np.pi * time * 0.29 + 2) + 1.5 * math.sin(2 * np.pi * time * 0.47)
        return amplitude * (pan_x + shake_x), amplitude * (pan_y + shake_y)

    def _layers(
        self, time: float
    ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One sharp instant: the object's box, its float alpha and premultiplied colour there,
        the body colour field (whole frame) and the 8-bit background."""
        loop = self.preset.loop
        phase = 2 * np.pi * (time % loop) / loop
        camera_x, camera_y = self._camera(time)
        cx = self.width * (0.5 + self.preset.swing * math.sin(phase)) + camera_x
        cy = self.height * (0.56 + 0.05 * math.sin(2 * phase + 1.0)) + camera_y
        radius = 0.25 * self.height
        strands = self._strands(cx, cy, radius, phase)
        # Only the box around the object is rendered; outside it alpha is 0.
        reach = 1.9 * radius + 4 * self.scale  # outline wobble and veil stay inside this
        x0 = max(0, math.floor(min(cx - reach, strands[..., 0].min())) - 2)
        y0 = max(0, math.floor(min(cy - reach, strands[..., 1].min())) - 2)
        x1 = min(self.width, math.ceil(max(cx + reach, strands[..., 0].max())) + 3)
        y1 = min(self.height, math.ceil(max(cy + reach, strands[..., 1].max())) + 3)
        box = (slice(y0, y1), slice(x0, x1))

        background = self._background(phase, camera_x, camera_y)
        body_colour = self._body_colour_field(cx, cy, radius)
        dx, dy = self._xs[box] - cx, self._ys[box] - cy
        body_alpha = self._body_alpha(np.arctan2(dy, dx), np.hypot(dx, dy), radius, phase)
        veil_alpha = self._veil_alpha(dx, dy, radius, phase)
        hair_alpha = _coverage(
            strands - np.array([x0, y0], np.float32),
            (y1 - y0, x1 - x0),
            self._strand_thick,
            self.preset.supersample,
        )

        # Back to front, premultiplied: body, then the veil over it, then the hair over both.
        alpha = body_alpha
        premult = body_alpha[:, :, None] * body_colour[box]
        for layer_alpha, colour in ((veil_alpha, self._veil_colour), (hair_alpha, self._hair_colour)):
            a = layer_alpha[:, :, None]
            premult = a * colour + (1 - a) * premult
            alpha = layer_alpha + (1 - layer_alpha) * alpha
        return box, alpha, premult, body_colour, background

    def _background(self, phase: float, camera_x: float, camera_y: float) -> np.ndarray:
        """The canvas as the camera sees it: a slow drift of its own, and the camera's move."""
        drift_x, drift_y = self.preset.drift
        shift_x = self._margin * (1 + drift_x * math.sin(phase)) - camera_x
        shift_y = self._margin * (1 + drift_y * math.cos(phase)) - camera_y
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


def _coverage(strands: np.ndarray, shape: tuple[int, int], thick: np.ndarray, n: int) -> np.ndarray:
    """Coverage of opaque strands 1/n (or, where ``thick``, 2/n) pixel wide.

    Drawn at n-times scale with hard edges, so overlapping strands cover a pixel once, as real
    hairs do, then area-averaged down: the alpha is the covered fraction of each pixel in 1/n^2 steps.
    """
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
    preset: str = "demo"
    background: Path | None = None  # the hard preset's blurred backgrounds; the demo's are not stored

    def to_json(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
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
            **({"background": str(self.background)} if self.background is not None else {}),
        }


def write_sample(
    directory: Path,
    *,
    frames: int | None = None,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    seed: int = 0,
    force: bool = False,
    on_frame: Callable[[int], None] | None = None,
    preset: str = "demo",
) -> SampleOutput:
    """Render the demo clip and its ground truth into ``directory``; see the command's help for the layout.

    ``frames`` defaults to the preset's length (48 for ``demo``, 96 for ``hard``). The ``hard``
    preset also writes ``background/``, its motion-blurred backgrounds, so the composite can be
    checked against stored files alone.

    Refuses a non-empty folder unless ``force``; with ``force``, ground-truth frames left over from
    a longer earlier sample are removed so that ``eval`` does not count them. ``on_frame`` is
    called after each frame is written (for progress).
    """
    directory = Path(directory)
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}", hint=f"use one of {', '.join(PRESETS)}")
    scene_preset = PRESETS[preset]
    frames = scene_preset.frames if frames is None else frames
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
        preset=preset,
        background=directory / "background" if scene_preset.sub_frames > 1 else None,
    )
    scene = SampleScene(width, height, seed, scene_preset)
    with atomic_path(out.video) as tmp, av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": str(CRF), "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            frame = scene.render(index)
            name = frame_file(index)
            write_image(out.trimaps / name, frame.trimap)
            write_image(out.alpha / name, frame.alpha)
            write_image(out.foreground / name, frame.foreground)
            if out.background is not None:
                write_image(out.background / name, frame.background)
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
    """Delete our own ``clip.NNNNNN.png`` files past the last frame (from an earlier, longer sample),
    and the backgrounds of an earlier hard sample when this one stores none."""
    backgrounds = out.directory / "background"
    for folder, keep in (
        (out.trimaps, frames),
        (out.alpha, frames),
        (out.foreground, frames),
        (backgrounds, frames if out.background is not None else 0),
    ):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = _FRAME_FILE.fullmatch(path.name)
            if match and int(match.group(1)) >= keep:
                path.unlink()
