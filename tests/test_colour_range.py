"""Colour range: a float EXR plate's values outside [0, 1] survive where the tool uses the plate's own colour.

The network sees every plate clipped to [0, 1] (the range it was trained on), so alpha cannot
depend on highlights. But on the trimap's definite foreground the foreground output *is* the plate,
and a scene-referred EXR's highlights (above 1) and negative values must reach ``--fg exr`` as
they were stored, not clipped. Runs the real CLI with the packaged default model on a crop of a
real photo written as EXR by the project's own writer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from mattecli.cli import app
from mattecli.frame_fusion import FrameFusion
from mattecli.media.frame import to_float
from mattecli.media.imageio import read_any, read_gray, read_image, write_image
from mattecli.tiling import PixelSet

# A crop of GT04 with a wide definite foreground and a real unknown band.
CROP = (slice(150, 310), slice(150, 390))
HIGHLIGHT_GAIN = np.float32(3.5)  # above 1 everywhere the photo is brighter than 1/3.5
NEGATIVE = np.float32(-0.25)  # a value a scene-linear plate can hold after a colour transform


def _plates(shared_data: Path, folder: Path) -> tuple[Path, Path, Path, np.ndarray]:
    """Write a highlighted EXR plate, the same plate clipped to [0, 1], and the trimap.

    Returns their paths and the trimap's definite foreground, where every value was scaled (most
    above 1) and some set below 0.
    """
    photo = to_float(read_image(shared_data / "alphamatting" / "image" / "GT04.png")[CROP])
    trimap = read_gray(shared_data / "alphamatting" / "trimap" / "GT04.png")[CROP]
    definite = trimap == 255
    assert definite.mean() > 0.2 and (trimap == 128).mean() > 0.05  # a real band and a real interior
    plate = photo.copy()
    plate[definite] *= HIGHLIGHT_GAIN
    negative = definite & (np.arange(definite.shape[1])[None, :] % 7 == 0)  # a few columns go below 0
    plate[negative, 1] = NEGATIVE
    assert plate.max() > 2.0 and plate.min() < 0.0
    folder.mkdir()
    write_image(folder / "plate.exr", plate)
    write_image(folder / "clipped.exr", np.clip(plate, 0.0, 1.0))
    write_image(folder / "trimap.png", trimap)
    return folder / "plate.exr", folder / "clipped.exr", folder / "trimap.png", definite


def _run(plate: Path, trimap: Path, out: Path, *options: str) -> tuple[np.ndarray, np.ndarray]:
    """``mattecli run PLATE -t TRIMAP -o OUT --fg exr`` with the default model: (fg RGBA, alpha)."""
    args = ["run", str(plate), "-t", str(trimap), "-o", str(out), "--fg", "exr", *options]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    foreground = read_any(out / "fg" / f"{plate.stem}.exr")
    alpha = read_gray(out / "alpha" / f"{plate.stem}.png")
    return foreground, alpha


def test_exr_highlights_pass_through_on_the_definite_foreground(shared_data: Path, tmp_path: Path) -> None:
    plate_path, clipped_path, trimap_path, changed = _plates(shared_data, tmp_path / "in")
    plate = read_image(plate_path)  # exactly what the tool decodes
    assert plate.dtype == np.float32 and plate.max() > 1.0

    foreground, alpha = _run(plate_path, trimap_path, tmp_path / "out")
    assert foreground.dtype == np.float32 and foreground.shape == (*plate.shape[:2], 4)
    # EXR is premultiplied by default; alpha is exactly 1 there, so the stored colour is the plate's.
    assert np.array_equal(foreground[changed, 3], np.ones(int(changed.sum()), dtype=np.float32))
    np.testing.assert_array_equal(foreground[changed, :3], plate[changed])

    # The network saw the plate clipped to [0, 1] either way, so alpha is the clipped plate's.
    _, clipped_alpha = _run(clipped_path, trimap_path, tmp_path / "out-clipped")
    np.testing.assert_array_equal(alpha, clipped_alpha)
    # Where the network's colour is used (the unknown band), it stays in [0, 1].
    trimap = read_gray(trimap_path)
    band = foreground[trimap == 128, :3]
    assert band.min() >= 0.0 and band.max() <= 1.0


def test_exr_highlights_pass_through_with_test_time_augmentation(shared_data: Path, tmp_path: Path) -> None:
    """``--tta`` averages whole-frame views before fusion; the definite foreground is still the plate."""
    plate_path, _, trimap_path, changed = _plates(shared_data, tmp_path / "in")
    foreground, _ = _run(plate_path, trimap_path, tmp_path / "out", "--tta", "flip")
    np.testing.assert_array_equal(foreground[changed, :3], read_image(plate_path)[changed])


def test_fusion_keeps_the_plate_where_no_network_output_reaches() -> None:
    """Pixels the planned work does not compute (outside a band model's cells) keep the plate as
    decoded; the pixels the network computes get its fused colour, in [0, 1]."""
    rng = np.random.default_rng(12)
    height, width = 24, 40
    plate = rng.uniform(-0.5, 3.0, (height, width, 3)).astype(np.float32)
    trimap = rng.choice(np.array([0, 128, 255], dtype=np.uint8), (height, width))
    fusion = FrameFusion(fusion=True, returns_foreground=True)
    reached = fusion.decided_pixels(trimap, (height, width)) & (rng.random((height, width)) < 0.5)
    pixels = PixelSet(reached)
    values = {
        kind: rng.random((len(pixels), channels), dtype=np.float32)
        for kind, channels in (("alpha", 1), ("foreground", 3), ("background", 3))
    }
    alpha, foreground = fusion(plate, trimap, pixels, values, height, width)
    assert foreground is not None and not np.shares_memory(foreground, plate)
    np.testing.assert_array_equal(foreground[~reached], plate[~reached])  # definite fg included
    opaque = reached & (alpha == 1.0)
    np.testing.assert_array_equal(foreground[opaque], plate[opaque])
    computed = foreground[reached & (alpha < 1.0)]
    assert computed.size and computed.min() >= 0.0 and computed.max() <= 1.0
