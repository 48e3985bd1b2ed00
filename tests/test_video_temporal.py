"""Keyframe trimaps (``run --keyframes``), ``run --temporal`` and the optical flow under both.

The targets of issue 13 are checked on the full 48-frame demo clip with the packaged model (two
runs of about 3 s each): keyframes every 12 frames keep SAD within 10 % of per-frame trimaps, and
``--temporal`` lowers the motion-compensated flicker (MESSDdt) without raising SAD by more than
2 %. Resuming a stateful run gives the files an uninterrupted run gives.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import file_hashes, sample_clip
from typer.testing import CliRunner

from mattecli.cli import app
from mattecli.keyframes import KeyframeTrimaps
from mattecli.media.frame import Frame
from mattecli.media.imageio import read_gray, read_image
from mattecli.media.sources import open_source
from mattecli.media.trimaps import TrimapIndex
from mattecli.motion import MotionTracker

KEY_EVERY = 12


def _cli(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _keyframes(trimaps: Path, folder: Path, every: int) -> Path:
    folder.mkdir()
    for position, path in enumerate(sorted(trimaps.iterdir())):
        if position % every == 0:
            shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default 48-frame demo clip, matted with per-frame trimaps (out/)."""
    folder = sample_clip(tmp_path_factory.mktemp("demo") / "demo")
    code, _, err = _cli("run", folder / "clip.mp4", "-t", folder / "trimaps", "-o", folder / "out", "-q")
    assert code == 0, err
    return folder


def _scores(demo: Path, out: Path) -> dict[str, float]:
    code, stdout, err = _cli(
        "eval", out / "alpha", demo / "alpha", "-t", demo / "trimaps", "--temporal", "--json"
    )
    assert code == 0, err
    result = json.loads(stdout)
    return {"sad": result["mean"]["paper"]["sad"], **result["temporal"]["mean"]}


def test_flow_finds_a_shift_and_flags_the_uncovered_strip(shared_data: Path) -> None:
    photo = read_image(sorted((shared_data / "backgrounds").iterdir())[0])
    photo = cv2.resize(photo, (480, 320), interpolation=cv2.INTER_AREA)
    dx, dy = 6, 4  # the picture moves right and down: the current pixel x was at x - 6
    moved = cv2.warpAffine(
        photo, np.float32([[1, 0, dx], [0, 1, dy]]), (480, 320), borderMode=cv2.BORDER_REFLECT
    )
    tracker = MotionTracker()
    tracker.advance(Frame(0, "p", photo, Path("p")))
    assert tracker.motion() is None  # nothing before the first frame
    tracker.advance(Frame(1, "p", moved, Path("p")))
    motion = tracker.motion()
    assert motion is not None and tracker.motion() is motion  # computed once per frame
    ys, xs = np.mgrid[0:320, 0:480]
    inner = (slice(40, 280), slice(40, 440))
    assert np.median(xs[inner] - motion.map_x[inner]) == pytest.approx(dx, abs=0.25)
    assert np.median(ys[inner] - motion.map_y[inner]) == pytest.approx(dy, abs=0.25)
    assert motion.uncertain[inner].mean() < 0.05
    assert motion.uncertain[:, :dx].mean() > 0.5  # the strip the shift uncovered came from nowhere
    # Warping the previous frame reproduces the current one away from that strip.
    warped = motion.warp(photo[..., 1].astype(np.float32))
    assert np.abs(warped[inner] - moved[..., 1][inner].astype(np.float32)).mean() < 4.0


def test_keyframes_every_12_frames_keep_sad_within_10_percent(demo: Path, tmp_path: Path) -> None:
    keys = _keyframes(demo / "trimaps", tmp_path / "keys", KEY_EVERY)
    out = tmp_path / "out"
    code, _, err = _cli("run", demo / "clip.mp4", "-t", keys, "--keyframes", "-o", out, "-q")
    assert code == 0, err
    per_frame, carried = _scores(demo, demo / "out"), _scores(demo, out)
    assert carried["sad"] <= 1.10 * per_frame["sad"]
    # A keyframe is matted with its own trimap, exactly as in the per-frame run.
    mine, reference = file_hashes(out / "alpha"), file_hashes(demo / "out" / "alpha")
    assert len(mine) == 48
    for index in range(0, 48, KEY_EVERY):
        name = f"clip.{index:06d}.png"
        assert mine[name] == reference[name]
    assert mine != reference


def test_frames_nearer_the_next_keyframe_get_its_trimap_carried_back(demo: Path, tmp_path: Path) -> None:
    """Carrying back from the next keyframe halves the longest carry: closer to the true trimaps."""
    keys = _keyframes(demo / "trimaps", tmp_path / "keys", KEY_EVERY)
    source = open_source(str(demo / "clip.mp4"))
    frames = source.frame_ids()[: KEY_EVERY + 1]

    def agreement(two_way: bool) -> list[float]:
        carried = KeyframeTrimaps(TrimapIndex.open(keys))
        read = (lambda first, last: source.frames(first, last, 1, prefetch=0)) if two_way else None
        carried.begin_input(frames, read)
        shares = []
        for frame in source.frames(0, KEY_EVERY, 1, prefetch=0):
            trimap = carried.trimap(frame, resize=False)
            assert set(np.unique(trimap)) <= {0, 128, 255}
            truth = read_gray(demo / "trimaps" / f"clip.{frame.index:06d}.png")
            shares.append(float(np.mean(trimap == truth)))
        return shares

    forward, both = agreement(False), agreement(True)
    source.close()
    assert forward[:7] == both[:7]  # frames 1-6 are nearer frame 0: carried forward either way
    assert both[0] == both[KEY_EVERY] == 1.0  # the keyframes themselves
    assert np.mean(both[7:KEY_EVERY]) > np.mean(forward[7:KEY_EVERY])
    assert both[11] > forward[11]  # one step back from frame 12 against eleven forward


def test_temporal_lowers_flicker_without_raising_sad(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, err = _cli("run", demo / "clip.mp4", "-t", demo / "trimaps", "--temporal", "-o", out, "-q")
    assert code == 0, err
    before, after = _scores(demo, demo / "out"), _scores(demo, out)
    assert after["sad"] <= 1.02 * before["sad"]
    assert after["messddt"] < 0.95 * before["messddt"]
    assert after["dtssd"] < before["dtssd"]
    for index in (0, 20, 47):  # pixels the trimap decides are never blended
        trimap = read_gray(demo / "trimaps" / f"clip.{index:06d}.png")
        alpha = read_gray(out / "alpha" / f"clip.{index:06d}.png")
        assert (alpha[trimap == 0] == 0).all() and (alpha[trimap == 255] == 65535).all()
    first = "clip.000000.png"  # nothing to blend with yet
    assert (out / "alpha" / first).read_bytes() == (demo / "out" / "alpha" / first).read_bytes()


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_clip(tmp_path_factory.mktemp("short") / "demo", 12, (192, 112))


@pytest.mark.parametrize("flags", [("--keyframes",), ("--temporal",), ("--keyframes", "--temporal")])
def test_a_resumed_stateful_run_writes_what_an_uninterrupted_one_does(
    short: Path, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    keys = _keyframes(short / "trimaps", tmp_path / "keys", 5)  # keyframes 0, 5, 10
    trimaps = keys if "--keyframes" in flags else short / "trimaps"
    out = tmp_path / "out"
    run = ("run", short / "clip.mp4", "-t", trimaps, "-o", out, "-q", "--json", *flags)
    assert _cli(*run)[0] == 0
    whole = file_hashes(out / "alpha")
    for index in (7, 8, 11):  # as a run killed after frame 6 (and one out of order) leaves it
        (out / "alpha" / f"clip.{index:06d}.png").unlink()
    code, stdout, err = _cli(*run, "--resume")
    assert code == 0, err
    assert file_hashes(out / "alpha") == whole
    skipped = json.loads(stdout)["inputs"][0]["frames_skipped"]
    # Keyframes restart at the keyframe before the gap (5); --temporal at the start of the range.
    assert skipped == (0 if "--temporal" in flags else 5)


def test_keyframes_need_a_trimap_for_the_first_frame(short: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    shutil.copy(short / "trimaps" / "clip.000004.png", keys)
    code, _, err = _cli("run", short / "clip.mp4", "-t", keys, "--keyframes", "-o", tmp_path / "out")
    assert code == 4
    assert "clip (frame 0)" in err and "--keyframes needs a trimap for the first frame" in err
    assert "Traceback" not in err
    # Starting the range at the keyframe is fine.
    code, _, err = _cli(
        "run", short / "clip.mp4", "-t", keys, "--keyframes", "--start", "4", "-o", tmp_path / "o2", "-q"
    )
    assert code == 0, err
    assert len(list((tmp_path / "o2" / "alpha").iterdir())) == 8


def test_a_plan_with_keyframes_starts_every_chunk_at_a_keyframe(short: Path, tmp_path: Path) -> None:
    keys = _keyframes(short / "trimaps", tmp_path / "keys", 4)  # keyframes 0, 4, 8
    job = ["--", str(short / "clip.mp4"), "-t", str(keys), "--keyframes", "-o", str(tmp_path / "out")]
    code, _, err = _cli("plan", "--chunks", "3", "-p", tmp_path / "good", *job)  # 0-3, 4-7, 8-11
    assert code == 0, err
    code, _, err = _cli("plan", "--chunks", "2", "-p", tmp_path / "bad", *job)  # 0-5, 6-11
    assert code == 4 and "would start" in err and "frame 6" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


def test_stateful_options_are_refused_where_they_cannot_work(short: Path, tmp_path: Path) -> None:
    code, _, err = _cli("run", short / "clip.mp4", "--keyframes", "-o", tmp_path / "a")
    assert code == 4 and "--keyframes needs --trimap-dir" in err
    code, _, err = _cli(
        "run",
        short / "clip.mp4",
        "-t",
        short / "trimaps",
        "--temporal",
        "--executor",
        "ray",
        "-o",
        tmp_path / "b",
    )
    assert code == 4 and "cannot be split into Ray tasks" in err
