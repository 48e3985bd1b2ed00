"""The whole artist path on real footage without ground truth: keyer masks → trimaps → run → ProRes 4444.

Issue 13, item 5. The real clips in ``../shared/data/video`` have no alpha, so nothing here is a
score: the script shows what a person gets from the commands a person would type, and writes a
contact sheet to look at.

**The keyer** is a difference key against a clean plate, which works because the default clip
(``sam2_dog.mp4``: a woman playing with a dog in a paved courtyard) is shot from a locked-off
camera (phase correlation between frames 4 apart over the clip: no shift above 0.1 px at 640 px
wide) and both subjects move:

1. **Plate**: the per-pixel median of every ``--plate-step``-th frame of the whole clip. The dog
   crosses the frame, so it vanishes from the median; the woman stays near one spot and leaves a
   faint ghost there, which makes the key weaker on her legs.
2. **Distance**: per pixel, in CIE L*a*b* (OpenCV's 8-bit scaling),
   ``sqrt((luma_weight * ΔL)^2 + Δa^2 + Δb^2)`` against the plate. ``--luma-weight`` below 1 counts
   a brightness change less than a colour change, so the dog's soft shadow on the grey concrete
   (a darkening without a hue change) keys less than the dog.
3. **Threshold**: the distance, blurred with a Gaussian of sigma 2 px to quiet compression noise,
   above ``--threshold`` is foreground.
4. **Clean-up**: a 5 px elliptical opening removes speckle, a 15 px closing joins limbs cut by
   the ghost, connected components under ``--min-area`` pixels are dropped (leaves moving in the
   planters) and holes not connected to the frame's border are filled.

The binary masks go to ``mattecli trimap`` (``--band 2%``: see ``DEFAULT_BAND``), then to
``mattecli run`` with the packaged model, ``--video prores --composite "#00ff00"``, once per
frame and once with ``--temporal``. The ProRes file is opened with PyAV and checked (codec,
alpha pixel format, frame count, its alpha against the PNG alphas), and a contact sheet (rows:
sampled frames; columns: frame, trimap, alpha, composite, a full-resolution crop of the composite
around the subjects, alpha with ``--temporal``) is written.

    python benchmarks/real_clip_path.py                                   # frames 120-167 of sam2_dog.mp4
    python benchmarks/real_clip_path.py --start 0 --frames 24 --out /tmp/dog --sheet /tmp/dog.png
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import typer
from measure_common import mattecli

from mattecli.console import user_errors
from mattecli.errors import InputError
from mattecli.media.imageio import read_gray, read_image, write_image

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = (
    Path(os.environ.get("MATTECLI_DATA", REPO_ROOT.parent / "shared" / "data")) / "video" / "sam2_dog.mp4"
)
COMPOSITE_COLOUR = "#00ff00"
COLUMNS = ("frame", "trimap", "alpha", "composite", "composite 1:1", "alpha --temporal")
# The default clip's subjects are 150-400 px tall at 1280x720; the trimap command's default band (4 % of
# the diagonal, 59 px) left the dog almost wholly unknown, and the network then kept the concrete and
# ferns around both subjects (README: "A real clip, end to end"). 2 % (29 px) keeps more definite.
DEFAULT_BAND = "2%"


@dataclass(frozen=True)
class KeyerSettings:
    """The difference keyer's parameters (see the module docstring for what each does)."""

    threshold: float = 18.0
    luma_weight: float = 0.5
    min_area: int = 1500
    plate_step: int = 4


def read_frames(clip: Path, start: int, count: int) -> list[np.ndarray]:
    """Frames ``start`` to ``start + count - 1`` of ``clip`` (RGB uint8), numbered as ``run`` numbers them."""
    frames: list[np.ndarray] = []
    with av.open(str(clip)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= start + count:
                break
            if index >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
    if len(frames) != count:
        raise InputError(f"the clip has only {start + len(frames)} frames, not {start + count}", path=clip)
    return frames


def clean_plate(clip: Path, step: int) -> np.ndarray:
    """The per-pixel median of every ``step``-th frame of the whole clip (RGB uint8): the empty set."""
    with av.open(str(clip)) as container:
        frames = [
            f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i % step == 0
        ]
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


def key_mask(frame: np.ndarray, plate: np.ndarray, settings: KeyerSettings) -> np.ndarray:
    """A 0/255 mask of what differs from ``plate``: the difference key of the module docstring."""
    delta = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB).astype(np.float32) - cv2.cvtColor(
        plate, cv2.COLOR_RGB2LAB
    ).astype(np.float32)
    delta[..., 0] *= settings.luma_weight
    distance = cv2.GaussianBlur(np.sqrt(np.sum(delta * delta, axis=2)), (0, 0), 2)
    mask = (distance > settings.threshold).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15)))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    keep = (stats[:, cv2.CC_STAT_AREA] >= settings.min_area).astype(np.uint8)
    keep[0] = 0
    mask = keep[labels]
    # Holes: flood the background from outside a one-pixel frame of zeros; what it cannot reach is a hole.
    outside = np.pad(mask, 1)
    cv2.floodFill(outside, None, (0, 0), 2)
    return np.where(outside[1:-1, 1:-1] == 2, 0, 255).astype(np.uint8)


def write_masks(
    frames: list[np.ndarray], start: int, plate: np.ndarray, settings: KeyerSettings, masks: Path
) -> None:
    """One mask per frame, named by its frame number (``000120.png``) as ``run --trimap-dir`` matches."""
    for offset, frame in enumerate(frames):
        write_image(masks / f"{start + offset:06d}.png", key_mask(frame, plate, settings))


def run_matting(
    clip: Path, trimaps: Path, out: Path, start: int, end: int, extra: list[str]
) -> dict[str, float]:
    """``mattecli run`` on frames ``start..end``, ProRes 4444 and a green composite; its wall seconds."""
    began = time.perf_counter()
    mattecli(
        [
            "run", str(clip), "-t", str(trimaps), "-o", str(out), "--start", str(start), "--end", str(end),
            "--alpha", "png8", "--video", "prores", "--composite", COMPOSITE_COLOUR,
            "--quiet", "--json", *extra,
        ]
    )  # fmt: skip
    return {"seconds": time.perf_counter() - began}


def check_prores(video: Path, alphas: list[np.ndarray]) -> dict[str, object]:
    """Open the ProRes file with PyAV: codec, pixel format, frames, and its alpha against the PNG alphas.

    Raises when the codec is not ProRes, the pixel format has no alpha, or the frame count differs,
    so a broken video fails the script instead of passing silently. ``alpha_mad`` is the mean
    absolute difference (0-255) between the video's alpha plane and the written PNG alphas.
    """
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        codec, pix_fmt = stream.codec_context.name, stream.codec_context.pix_fmt
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        decoded = [frame.to_ndarray(format="rgba")[..., 3] for frame in container.decode(video=0)]
    if codec != "prores" or not pix_fmt or "a" not in pix_fmt.removeprefix("yuv").split("p")[0]:
        raise InputError(f"expected ProRes with alpha, found {codec} {pix_fmt}", path=video)
    if len(decoded) != len(alphas):
        raise InputError(f"{len(decoded)} frames in the video, {len(alphas)} alphas written", path=video)
    mad = float(
        np.mean(
            [
                np.mean(np.abs(v.astype(np.int16) - a.astype(np.int16)))
                for v, a in zip(decoded, alphas, strict=True)
            ]
        )
    )
    return {"codec": codec, "pix_fmt": pix_fmt, "frames": len(decoded), "video_fps": fps, "alpha_mad": mad}


def _cell(image: np.ndarray, width: int, label: str) -> np.ndarray:
    """``image`` (grey or RGB) scaled to ``width`` px wide, with ``label`` in its top-left corner."""
    rgb = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    height = round(rgb.shape[0] * width / rgb.shape[1])
    cell = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 0), 1)):
        cv2.putText(cell, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, thickness, cv2.LINE_AA)
    return cell


def zoom(image: np.ndarray, trimap: np.ndarray, width: int, height: int) -> np.ndarray:
    """A ``width`` x ``height`` crop of ``image`` at full resolution from the top of the largest subject.

    The largest connected region of the trimap's foreground and unknown pixels is the subject
    whose edges (head, hair, hands) are most worth seeing unscaled; the crop starts just above it.
    """
    _, labels, stats, _ = cv2.connectedComponentsWithStats((trimap > 0).astype(np.uint8))
    if len(stats) > 1:
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        x, y, w, _ = stats[biggest, :4]
        cx, top = int(x + w // 2), int(y)
    else:
        cx, top = image.shape[1] // 2, (image.shape[0] - height) // 2
    top = min(max(0, top), max(0, image.shape[0] - height))
    left = min(max(0, cx - width // 2), max(0, image.shape[1] - width))
    return image[top : top + height, left : left + width]


def contact_sheet(rows: list[tuple[int, list[np.ndarray]]], width: int) -> np.ndarray:
    """A grid: one row per ``(frame number, images)``, one column per image, each cell labelled."""
    lines = []
    for number, images in rows:
        labels = [f"{COLUMNS[0]} {number}", *COLUMNS[1 : len(images)]]
        lines.append(
            np.hstack([_cell(image, width, label) for image, label in zip(images, labels, strict=True)])
        )
    return np.vstack(lines)


def sample_positions(count: int, rows: int) -> list[int]:
    """``rows`` positions spread evenly over ``count`` frames, first and last included."""
    return sorted({round(i * (count - 1) / max(1, rows - 1)) for i in range(rows)})


def real_clip_path(
    clip: Path, start: int, count: int, out: Path, sheet: Path, *, settings: KeyerSettings = KeyerSettings(),
    band: str = DEFAULT_BAND, temporal: bool = True, rows: int = 6, cell_width: int = 320,
) -> dict[str, object]:  # fmt: skip
    """Masks → ``mattecli trimap`` → ``mattecli run`` (ProRes 4444) → contact sheet; the numbers measured."""
    end = start + count - 1
    frames = read_frames(clip, start, count)
    began = time.perf_counter()
    write_masks(frames, start, clean_plate(clip, settings.plate_step), settings, out / "masks")
    key_seconds = time.perf_counter() - began
    made = json.loads(
        mattecli(["trimap", str(out / "masks"), "-o", str(out / "trimaps"), "--json", "--band", band])
    )
    ways = {"per-frame": (out / "run", [])} | (
        {"--temporal": (out / "run-temporal", ["--temporal"])} if temporal else {}
    )
    numbers: dict[str, object] = {
        "clip": clip.name,
        "frames": f"{start}-{end}",
        "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
        "key_seconds": key_seconds,
        "unknown_fraction": made["unknown_fraction"],
        "band_pixels": made["band_pixels"],
    }
    alphas: dict[str, list[np.ndarray]] = {}
    for way, (folder, extra) in ways.items():
        timing = run_matting(clip, out / "trimaps", folder, start, end, extra)
        alphas[way] = [
            read_gray(folder / "alpha" / f"{clip.stem}.{n:06d}.png") for n in range(start, end + 1)
        ]
        video = folder / f"{clip.stem}.{start:06d}-{end:06d}.rgba.mov"
        numbers[way] = {
            **timing,
            "fps": count / timing["seconds"],
            "mean_alpha": float(np.mean([a.mean() for a in alphas[way]]) / 255),
            "video": str(video),
            **check_prores(video, alphas[way]),
        }
    if temporal:
        numbers["temporal_vs_per_frame_mad"] = float(
            np.mean(
                [
                    np.mean(np.abs(a.astype(np.int16) - b))
                    for a, b in zip(alphas["per-frame"], alphas["--temporal"], strict=True)
                ]
            )
        )
    grid = []
    for position in sample_positions(count, rows):
        number = start + position
        composite = read_image(out / "run" / "comp" / f"{clip.stem}.{number:06d}.png")
        trimap = read_gray(out / "trimaps" / f"{number:06d}.png")
        cell_height = round(composite.shape[0] * cell_width / composite.shape[1])
        cells = [
            frames[position],
            trimap,
            alphas["per-frame"][position],
            composite,
            zoom(composite, trimap, cell_width, cell_height),
        ]
        grid.append((number, cells + ([alphas["--temporal"][position]] if temporal else [])))
    sheet.parent.mkdir(parents=True, exist_ok=True)
    write_image(sheet, contact_sheet(grid, cell_width))
    numbers["sheet"] = str(sheet)
    return numbers


def main(
    clip: Path = typer.Option(DEFAULT_CLIP, "--clip", help="A video from a locked-off camera."),
    start: int = typer.Option(120, "--start", help="First frame (numbered from 0)."),
    frames: int = typer.Option(48, "--frames", min=2, help="How many frames from --start."),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for masks, trimaps and runs (default: a temp folder)."
    ),
    sheet: Path = typer.Option(
        REPO_ROOT / "benchmarks" / "results" / "real_clip_sam2_dog.png", "--sheet", help="Contact sheet PNG."
    ),
    threshold: float = typer.Option(
        KeyerSettings.threshold, "--threshold", help="Keyer distance threshold (Lab)."
    ),
    luma_weight: float = typer.Option(
        KeyerSettings.luma_weight, "--luma-weight", help="Weight of ΔL in the distance."
    ),
    min_area: int = typer.Option(
        KeyerSettings.min_area, "--min-area", help="Smallest kept component, pixels."
    ),
    plate_step: int = typer.Option(
        KeyerSettings.plate_step, "--plate-step", min=1, help="Plate from every N-th frame."
    ),
    band: str = typer.Option(DEFAULT_BAND, "--band", help="Passed to `mattecli trimap`."),
    temporal: bool = typer.Option(True, "--temporal/--no-temporal", help="Also run with --temporal."),
    json_output: bool = typer.Option(False, "--json", help="Print the numbers as JSON."),
) -> None:
    settings = KeyerSettings(threshold, luma_weight, min_area, plate_step)
    with user_errors(), tempfile.TemporaryDirectory() as tmp:
        numbers = real_clip_path(
            clip, start, frames, out or Path(tmp), sheet, settings=settings, band=band, temporal=temporal
        )
        if json_output:
            typer.echo(json.dumps(numbers, indent=2))
            return
        typer.echo(
            f"{numbers['clip']} frames {numbers['frames']} ({numbers['size']}): "
            f"keyer {numbers['key_seconds']:.1f} s; trimap band {numbers['band_pixels']:.1f} px, "
            f"{numbers['unknown_fraction']:.1%} of a frame unknown"
        )
        for way in ("per-frame", "--temporal"):
            if way in numbers:
                n = numbers[way]
                typer.echo(
                    f"  {way}: {n['frames']} frames in {n['seconds']:.1f} s ({n['fps']:.2f} fps), mean alpha "
                    f"{n['mean_alpha']:.3f}; ProRes check: {n['codec']} {n['pix_fmt']}, "
                    f"{n['frames']} frames at {n['video_fps']:.3f} fps, "
                    f"alpha vs PNG {n['alpha_mad']:.2f} / 255"
                )
        if temporal:
            typer.echo(
                "  mean |alpha per-frame - alpha --temporal|: "
                f"{numbers['temporal_vs_per_frame_mad']:.2f} / 255"
            )
        typer.echo(f"contact sheet: {numbers['sheet']}")


if __name__ == "__main__":
    typer.run(main)
