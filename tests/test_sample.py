"""``mattecli sample``: the demo clip decodes as promised and its ground truth is consistent."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from mattecli.cli import app
from mattecli.commands.sample import sample
from mattecli.media.imageio import read_gray, read_image
from mattecli.media.trimaps import TrimapIndex
from mattecli.sample import DEFAULT_FRAMES, PRESETS, SampleScene

FRAMES = 6


def _run(directory: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["sample", str(directory), "--frames", str(FRAMES), *args])
    return result.exit_code, result.stdout, result.stderr


def _decode(video: Path) -> tuple[list[np.ndarray], dict[str, object]]:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        info = {
            "codec": stream.codec_context.name,
            "size": (stream.height, stream.width),
            "fps": stream.average_rate,
            "pix_fmt": stream.codec_context.pix_fmt,
        }
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    return frames, info


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    directory = tmp_path_factory.mktemp("sample") / "demo"
    code, stdout, stderr = _run(directory, "--json")
    assert code == 0, stderr
    assert f"wrote {FRAMES} frames (640x360, 24 fps, H.264)" in stderr
    return directory, json.loads(stdout)


def _frame_gt(directory: Path, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    name = f"clip.{index:06d}.png"
    return (
        read_gray(directory / "alpha" / name),
        read_image(directory / "foreground" / name),
        read_gray(directory / "trimaps" / name),
    )


def test_default_is_48_frames() -> None:
    assert DEFAULT_FRAMES == 48 and PRESETS["demo"].frames == 48 and PRESETS["hard"].frames == 96
    assert inspect.signature(sample).parameters["frames"].default.default is None  # the preset's length
    assert inspect.signature(sample).parameters["preset"].default.default == "demo"


def test_json_lists_what_was_written(written: tuple[Path, dict[str, object]]) -> None:
    directory, report = written
    assert report["frames"] == FRAMES and report["codec"] == "h264"
    assert (report["width"], report["height"], report["fps"]) == (640, 360, 24)
    assert report["video"] == str(directory / "clip.mp4")
    for folder in ("trimaps", "alpha", "foreground"):
        assert report[folder] == str(directory / folder)
        names = sorted(p.name for p in (directory / folder).iterdir())
        assert names == [f"clip.{i:06d}.png" for i in range(FRAMES)]


def test_video_decodes_as_h264_at_the_stated_size_rate_and_length(written: tuple[Path, dict]) -> None:
    directory, _ = written
    frames, info = _decode(directory / "clip.mp4")
    assert info == {"codec": "h264", "size": (360, 640), "fps": 24, "pix_fmt": "yuv420p"}
    assert len(frames) == FRAMES
    assert frames[0].shape == (360, 640, 3)


def test_alpha_has_soft_edges_and_trimaps_agree_with_it(written: tuple[Path, dict]) -> None:
    directory, _ = written
    for index in range(FRAMES):
        alpha, foreground, trimap = _frame_gt(directory, index)
        assert alpha.shape == (360, 640) and foreground.shape == (360, 640, 3)
        assert set(np.unique(trimap).tolist()) == {0, 128, 255}
        assert (alpha[trimap == 255] == 255).all()
        assert (alpha[trimap == 0] == 0).all()
        unknown = alpha[trimap == 128] / 255.0
        fractional = (unknown > 0.05) & (unknown < 0.95)
        assert fractional.mean() > 0.3  # hair, veil and soft edges: about 46 % here
        # The veil is semi-transparent over a large area, not just along an edge.
        assert np.count_nonzero((alpha >= 0.3 * 255) & (alpha <= 0.6 * 255)) > 2000


def test_the_object_moves_and_deforms(written: tuple[Path, dict]) -> None:
    directory, _ = written
    first, last = _frame_gt(directory, 0)[0], _frame_gt(directory, FRAMES - 1)[0]
    centre = [np.argwhere(a == 255).mean(axis=0) for a in (first, last)]
    assert np.hypot(*(centre[1] - centre[0])) > 20  # pixels


def test_video_frames_are_the_composite_of_the_ground_truth(written: tuple[Path, dict]) -> None:
    directory, report = written
    frames, _ = _decode(directory / "clip.mp4")
    scene = SampleScene(640, 360, seed=int(report["seed"]))
    composites = []
    for index in range(FRAMES):
        alpha, foreground, _ = _frame_gt(directory, index)
        a = alpha[:, :, None] / 255.0
        composites.append(a * foreground + (1 - a) * scene.render(index).background)
    errors = [np.abs(frame - composite).mean() for frame, composite in zip(frames, composites, strict=True)]
    mismatch = np.abs(frames[FRAMES - 1] - composites[0]).mean()
    # H.264 at CRF 16 with 4:2:0 chroma: about 2.3 levels on average here.
    assert max(errors) < 4.0
    assert mismatch > 3 * max(errors)


def test_trimaps_match_the_clip_frames(written: tuple[Path, dict]) -> None:
    directory, _ = written
    index = TrimapIndex.open(directory / "trimaps")
    index.check([("clip", i) for i in range(FRAMES)])
    assert index.find("clip", 3) == directory / "trimaps" / "clip.000003.png"


def test_same_seed_same_files_other_seed_other_files(written: tuple[Path, dict], tmp_path: Path) -> None:
    directory, _ = written
    assert _run(tmp_path / "again")[0] == 0
    assert _run(tmp_path / "other", "--seed", "1")[0] == 0
    for sub in ("alpha/clip.000002.png", "foreground/clip.000005.png", "trimaps/clip.000000.png"):
        assert (directory / sub).read_bytes() == (tmp_path / "again" / sub).read_bytes()
        assert (directory / sub).read_bytes() != (tmp_path / "other" / sub).read_bytes()
    first, again = _decode(directory / "clip.mp4")[0], _decode(tmp_path / "again" / "clip.mp4")[0]
    assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))


def test_refuses_a_non_empty_folder_without_force(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    directory.mkdir()
    (directory / "keep.txt").write_text("mine")
    code, stdout, stderr = _run(directory)
    assert code == 4 and stdout == ""
    assert "folder is not empty" in stderr and "--force" in stderr
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]


def test_force_overwrites_and_drops_frames_of_a_longer_sample(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    assert _run(directory)[0] == 0
    result = CliRunner().invoke(app, ["sample", str(directory), "--frames", "2", "--force", "--seed", "3"])
    assert result.exit_code == 0, result.stderr
    for folder in ("trimaps", "alpha", "foreground"):
        assert sorted(p.name for p in (directory / folder).iterdir()) == [
            "clip.000000.png",
            "clip.000001.png",
        ]
    assert len(_decode(directory / "clip.mp4")[0]) == 2


def test_odd_sizes_are_refused(tmp_path: Path) -> None:
    code, _, stderr = _run(tmp_path / "demo", "--width", "641")
    assert code == 4
    assert "--width must be an even number of pixels" in stderr
    assert not (tmp_path / "demo").exists()


# The hard preset, at a small size so that its seven sub-frame renders per frame stay quick.
HARD_SIZE = (192, 108)


def test_hard_preset_writes_backgrounds_and_a_consistent_composite(tmp_path: Path) -> None:
    directory = tmp_path / "hard"
    width, height = HARD_SIZE
    args = ["sample", str(directory), "--preset", "hard", "--frames", "3"]
    result = CliRunner().invoke(app, [*args, "--width", str(width), "--height", str(height), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["preset"] == "hard" and report["frames"] == 3
    assert report["background"] == str(directory / "background")
    frames, info = _decode(directory / "clip.mp4")
    assert len(frames) == 3 and info["size"] == (height, width)
    for index, frame in enumerate(frames):
        alpha, foreground, trimap = _frame_gt(directory, index)
        background = read_image(directory / "background" / f"clip.{index:06d}.png")
        a = alpha[:, :, None] / 255.0
        composite = a * foreground + (1 - a) * background
        assert np.abs(frame - composite).mean() < 4.0  # H.264 noise only, as for the demo clip
        assert (alpha[trimap == 255] == 255).all() and (alpha[trimap == 0] == 0).all()
    # A demo sample written over it with --force leaves no stale backgrounds behind.
    result = CliRunner().invoke(app, ["sample", str(directory), "--frames", "2", "--force", "--width", "160"])
    assert result.exit_code == 0, result.stderr
    assert list((directory / "background").iterdir()) == []


def test_hard_frames_are_exact_composites_of_their_8bit_ground_truth() -> None:
    frame = SampleScene(*HARD_SIZE, seed=2, preset=PRESETS["hard"]).render(7)
    a = frame.alpha.astype(np.float64)[:, :, None]
    composite = (a * frame.foreground + (255 - a) * frame.background) / 255
    assert np.abs(frame.image - composite).max() <= 0.5 + 1e-6  # one rounding to 8 bits


def _gradients(alpha: np.ndarray) -> tuple[float, float]:
    """Summed |d alpha / dx| and |d alpha / dy|."""
    alpha = alpha.astype(np.float64)
    return float(np.abs(np.diff(alpha, axis=1)).sum()), float(np.abs(np.diff(alpha, axis=0)).sum())


def test_motion_blur_softens_alpha_along_the_motion() -> None:
    hard = PRESETS["hard"]
    # Frame 0: the subject and the camera pan move fastest, and mostly sideways.
    blurred = SampleScene(320, 180, seed=0, preset=hard).render(0).alpha
    sharp = SampleScene(320, 180, seed=0, preset=dataclasses.replace(hard, sub_frames=1)).render(0).alpha
    soft = lambda alpha: np.count_nonzero((alpha > 12) & (alpha < 243))  # noqa: E731
    assert soft(blurred) > 1.1 * soft(sharp)  # 1.13 here
    (bx, by), (sx, sy) = _gradients(blurred), _gradients(sharp)
    assert bx / sx < 0.8 * (by / sy)  # horizontal change loses more contrast: 0.40 against 0.59 here
    # The ground truth is the mean of the sharp instants, not a blur of one of them: opaque
    # area shrinks only where the body moved, so most of it survives.
    assert np.count_nonzero(blurred == 255) > 0.7 * np.count_nonzero(sharp == 255)


def test_hard_camera_moves_subject_and_background_together() -> None:
    hard = PRESETS["hard"]
    still = dataclasses.replace(hard, camera=0.0)
    held, fixed = (SampleScene(320, 180, seed=0, preset=p).render(8) for p in (hard, still))

    def best_shift(before: np.ndarray, after: np.ndarray, reach: int = 30) -> tuple[int, int]:
        """The whole-pixel (dx, dy) that best maps ``before`` onto ``after`` (mean |difference|)."""
        b, a = before.astype(np.float64), after.astype(np.float64)
        inner = (slice(reach, -reach), slice(reach, -reach))
        errors = {
            (dx, dy): np.abs(np.roll(b, (dy, dx), axis=(0, 1))[inner] - a[inner]).mean()
            for dx in range(-reach, reach + 1)
            for dy in range(-reach // 2, reach // 2 + 1)
        }
        return min(errors, key=errors.__getitem__)

    bx, by = best_shift(fixed.background, held.background)
    centre = [np.average(np.indices(f.alpha.shape), axis=(1, 2), weights=f.alpha) for f in (fixed, held)]
    sy, sx = centre[1] - centre[0]
    assert np.hypot(bx, by) > 5  # the pan has carried the view well away (pixels at 180 lines)
    assert (sx, sy) == pytest.approx((bx, by), abs=1.0)  # the subject moved with the background
    moving = SampleScene(320, 180, seed=0, preset=hard)
    assert not np.array_equal(moving.render(3).background, moving.render(4).background)


def test_hard_has_more_and_thinner_hair() -> None:
    demo, hard = PRESETS["demo"], PRESETS["hard"]
    assert hard.strands >= 3 * demo.strands
    assert hard.supersample > demo.supersample  # one drawn pixel is a thinner strand
    assert hard.loop == hard.frames  # the whole clip is one motion period: nothing repeats
