"""``mattecli sample``: the demo clip decodes as promised and its ground truth is consistent."""

from __future__ import annotations

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
from mattecli.sample import DEFAULT_FRAMES, SampleScene

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
    assert DEFAULT_FRAMES == 48
    assert inspect.signature(sample).parameters["frames"].default.default == DEFAULT_FRAMES


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
