"""benchmarks/real_clip_path.py on four real frames: keyer masks, trimaps, run, ProRes 4444, contact sheet."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np

from mattecli.media.imageio import read_gray, read_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from real_clip_path import KeyerSettings, real_clip_path  # noqa: E402


def test_real_clip_path_writes_prores_with_alpha_and_a_contact_sheet(
    shared_data: Path, tmp_path: Path
) -> None:
    clip = shared_data / "video" / "sam2_dog.mp4"
    sheet = tmp_path / "sheet.png"
    numbers = real_clip_path(
        clip, 140, 4, tmp_path / "work", sheet, settings=KeyerSettings(plate_step=16), temporal=False,
        rows=4, cell_width=160,
    )  # fmt: skip

    # The keyer found both subjects: every mask holds foreground, and far less than the whole frame.
    masks = [read_gray(tmp_path / "work" / "masks" / f"{n:06d}.png") for n in range(140, 144)]
    assert all(0.01 < np.mean(m == 255) < 0.3 for m in masks)

    run = numbers["per-frame"]
    with av.open(run["video"]) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "prores"
        assert stream.codec_context.pix_fmt.startswith("yuva444p")
        decoded = [frame.to_ndarray(format="rgba") for frame in container.decode(video=0)]
    assert len(decoded) == 4 and decoded[0].shape == (720, 1280, 4)
    assert run["frames"] == 4 and run["alpha_mad"] < 1.0
    # The video's alpha is the matte, not an opaque plane.
    assert 0.01 < np.mean(decoded[0][..., 3]) / 255 < 0.5

    grid = read_image(sheet)
    assert grid.shape == (4 * 90, 5 * 160, 3)
    assert 0.0 < numbers["unknown_fraction"] < 0.3
