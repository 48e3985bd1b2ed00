"""Output safety: nothing of the user's is replaced, links are never written through, failures name the
output, ``--resume`` trusts only whole files of the same settings, and one folder takes one run at a time.

Unit tests write real files with the real writers; the command tests run the packaged default model on
a 12-frame ``mattecli sample`` clip (a second or two each).
"""

from __future__ import annotations

import errno
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from mattecli.cli import app
from mattecli.errors import OutputError
from mattecli.media.atomic import TEMP_NAME, AtomicFile, atomic_path, write_failure
from mattecli.media.frame import Frame
from mattecli.media.imageio import looks_whole, read_gray, write_image
from mattecli.media.manifest import (
    MANIFEST_NAME,
    begin_run,
    check_resume,
    finish_run,
    pixel_settings,
    read_manifest,
)
from mattecli.media.outfolder import LOCK_NAME, OutputLock
from mattecli.media.sinks import OutputSpec, Sinks
from mattecli.media.video_writer import VideoWriter

FRAMES = 12
MISSING_MODEL = "no-such-model.onnx"  # a run that reaches the model fails on this instead


def _image(h: int = 32, w: int = 48) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 65536, (h, w), dtype=np.uint16)


def _run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", *map(str, args)])
    return result.exit_code, result.stderr


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sample") / "demo"
    result = CliRunner().invoke(
        app, ["sample", str(folder), "--frames", str(FRAMES), "--width", "160", "--height", "96"]
    )
    assert result.exit_code == 0, result.stderr
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- publishing a file ------------------------------------------------------------------------------


def test_a_symlink_at_the_final_name_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").symlink_to(victim)
    write_image(out / "a.png", _image())
    assert victim.read_bytes() == b"precious"
    assert not (out / "a.png").is_symlink() and np.array_equal(read_gray(out / "a.png"), _image())


def test_a_temporary_swapped_for_a_symlink_mid_write_changes_nothing_elsewhere(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    victim.chmod(0o600)
    out = tmp_path / "out"
    atomic = AtomicFile(out / "a.png")
    atomic.write(b"first half ")
    os.unlink(atomic.temp_path)  # what anyone who can write into the folder could do
    os.symlink(victim, atomic.temp_path)
    atomic.write(b"second half")
    with pytest.raises(OutputError, match="replaced by something else") as err:
        atomic.publish()
    assert err.value.path == out / "a.png"
    assert victim.read_bytes() == b"precious" and (victim.stat().st_mode & 0o777) == 0o600
    assert not (out / "a.png").exists()  # the link is not published as the output


def test_a_video_temporary_swapped_for_a_symlink_is_not_published(tmp_path: Path) -> None:
    victim = tmp_path / "victim.mov"
    victim.write_bytes(b"precious")
    writer = VideoWriter(
        tmp_path / "out" / "shot.rgba.mov",
        codec="prores",
        content="rgba",
        width=32,
        height=16,
        fps=Fraction(24),
    )
    temporaries = [p for p in (tmp_path / "out").iterdir() if TEMP_NAME.match(p.name)]
    assert len(temporaries) == 1
    with pytest.raises(OutputError, match="replaced by something else"), writer:
        writer.write(np.full((16, 32, 4), 0.5, np.float32), index=0)
        temporaries[0].unlink()
        temporaries[0].symlink_to(victim)
        writer.write(np.full((16, 32, 4), 0.5, np.float32), index=1)
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / "out" / "shot.rgba.mov").exists()


def test_files_take_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_image(tmp_path / "a.png", _image())
        with atomic_path(tmp_path / "b.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o640


def test_a_name_of_246_characters_works(tmp_path: Path) -> None:
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    name = "x" * (246 - len(".png")) + ".png"
    assert len(name) == 246 <= limit
    write_image(tmp_path / name, _image())
    assert np.array_equal(read_gray(tmp_path / name), _image())
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_write_failure_names_the_output_and_the_reason_in_words(tmp_path: Path) -> None:
    failure = write_failure(tmp_path / "alpha" / "a.png", OSError(errno.ENOSPC, "x"), frame=2)
    assert str(failure).startswith(
        f"{tmp_path / 'alpha' / 'a.png'}: frame 2: cannot write: no space left on device"
    )
    assert ".part" not in str(failure)


def test_an_output_subfolder_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "alpha").symlink_to(elsewhere)
    frame = Frame(index=0, name="shot", image=np.zeros((8, 8, 3), np.uint8), source=Path("shot.mp4"))
    with (
        pytest.raises(OutputError, match="symbolic link") as err,
        Sinks(OutputSpec(tmp_path / "out"), kind="video", fps=Fraction(24)) as sinks,
    ):
        sinks.write(frame, np.zeros((8, 8), np.float32))
    assert err.value.frame == 0 and list(elsewhere.iterdir()) == []


# --- what --resume trusts ---------------------------------------------------------------------------


def test_resume_trusts_only_whole_files(tmp_path: Path) -> None:
    frame = Frame(index=3, name="shot", image=np.zeros((8, 8, 3), np.uint8), source=Path("shot.mp4"))
    sinks = Sinks(OutputSpec(tmp_path, alpha="png16", foreground="exr"), kind="video", fps=Fraction(24))
    with sinks:
        sinks.write(frame, np.full((8, 8), 0.5, np.float32), np.full((8, 8, 3), 0.5, np.float32))
    assert sinks.is_complete(frame)
    alpha, fg = sinks.outputs_for(frame)
    whole = alpha.read_bytes()
    for damaged in (b"", whole[:-5], b"not a png" + whole[9:]):
        alpha.write_bytes(damaged)
        assert not looks_whole(alpha) and not sinks.is_complete(frame)
    alpha.write_bytes(whole)
    fg.write_bytes(b"")
    assert not sinks.is_complete(frame)
    fg.unlink()
    fg.symlink_to(alpha)
    assert not sinks.is_complete(frame)


def _settings(spec: OutputSpec, model: Path, tta: str = "none") -> dict[str, object]:
    return pixel_settings(
        spec,
        model=model,
        engine="ort",
        device="cpu",
        tta=tta,
        refine=None,
        fusion=None,
        tiles=(512, 32, 32, 4),
        trimap_dir=None,
        resize_trimaps=False,
    )


def test_the_manifest_refuses_a_resume_with_other_settings_and_a_half_rewritten_folder(
    tmp_path: Path,
) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"model one")
    spec = OutputSpec(tmp_path / "out")
    first = _settings(spec, model)
    check_resume(spec, first)  # an empty folder: nothing to contradict
    begin_run(spec, first, resume=False)
    write_image(spec.directory / "alpha" / "a.png", _image())
    finish_run(spec, first, every_frame=True)
    check_resume(spec, first)

    with pytest.raises(OutputError, match="--tta none before, flip now"):
        check_resume(spec, _settings(spec, model, tta="flip"))
    model.write_bytes(b"model two")
    with pytest.raises(OutputError, match="model sha256 .* before, .* now"):
        check_resume(spec, _settings(spec, model))

    # A fresh run of other settings over these outputs, stopped half-way: both kinds are there.
    second = _settings(spec, model)
    begin_run(spec, second, resume=False)
    with pytest.raises(OutputError, match="two kinds"):
        check_resume(spec, second)
    finish_run(spec, second, every_frame=False)  # a frame range leaves the other frames as they were
    with pytest.raises(OutputError, match="two kinds"):
        check_resume(spec, second)
    finish_run(spec, second, every_frame=True)
    check_resume(spec, second)
    assert read_manifest(spec.directory) is not None


def test_resume_without_a_manifest_over_outputs_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"model")
    spec = OutputSpec(tmp_path / "out")
    write_image(spec.directory / "alpha" / "a.png", _image())
    with pytest.raises(OutputError, match=f"no {MANIFEST_NAME}"):
        check_resume(spec, _settings(spec, model))


# --- the run command --------------------------------------------------------------------------------


def test_an_output_that_would_replace_the_inputs_is_refused_before_anything_is_written(
    clip: Path, tmp_path: Path
) -> None:
    shots = tmp_path / "shots"
    shutil.copytree(clip / "foreground", shots / "alpha")  # a sequence in a folder named alpha
    before = _snapshot(shots)
    code, stderr = _run(shots / "alpha", "-t", clip / "trimaps", "-o", shots)
    assert code == 4, stderr
    assert "read from" in stderr and "Traceback" not in stderr
    assert _snapshot(shots) == before

    trimaps = tmp_path / "t"
    shutil.copytree(clip / "trimaps", trimaps / "alpha")
    before = _snapshot(trimaps)
    code, stderr = _run(clip / "clip.mp4", "-t", trimaps / "alpha", "-o", trimaps)
    assert code == 4 and "read from" in stderr, stderr
    assert _snapshot(trimaps) == before


@pytest.mark.parametrize("case", ["file", "under-a-file", "symlinked-alpha"])
def test_an_unusable_output_folder_is_exit_4_before_the_model_loads(
    case: str, clip: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    output = {"file": blocker, "under-a-file": blocker / "out", "symlinked-alpha": tmp_path / "out"}[case]
    if case == "symlinked-alpha":
        (tmp_path / "elsewhere").mkdir()
        output.mkdir()
        (output / "alpha").symlink_to(tmp_path / "elsewhere")
    # The model file does not exist: an error about it would mean the model was reached first.
    code, stderr = _run(
        clip / "clip.mp4", "-t", clip / "trimaps", "-o", output, "-m", tmp_path / MISSING_MODEL
    )
    assert code == 4, stderr
    assert MISSING_MODEL not in stderr and "Traceback" not in stderr
    assert {"file": "is a file", "under-a-file": "not a directory", "symlinked-alpha": "symbolic link"}[
        case
    ] in stderr.lower()
    assert not (tmp_path / "elsewhere").exists() or list((tmp_path / "elsewhere").iterdir()) == []


def test_a_second_run_into_a_locked_folder_is_refused(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    lock = OutputLock(out)  # another run holds the folder
    try:
        code, stderr = _run(clip / "clip.mp4", "-t", clip / "trimaps", "-o", out)
    finally:
        lock.release()
    assert code == 4, stderr
    assert "another mattecli run" in stderr and f"pid {os.getpid()}" in stderr and str(out) in stderr
    assert not (out / "alpha").exists() or list((out / "alpha").iterdir()) == []
    code, stderr = _run(clip / "clip.mp4", "-t", clip / "trimaps", "-o", out)  # released: it runs
    assert code == 0, stderr
    assert (out / LOCK_NAME).read_text() == ""


def test_a_write_failure_on_frame_2_is_reported_as_frame_2(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "alpha" / "clip.000002.png").mkdir(parents=True)  # frame 2's alpha cannot be renamed into place
    code, stderr = _run(clip / "clip.mp4", "-t", clip / "trimaps", "-o", out)
    assert code == 1
    line = next(line for line in stderr.splitlines() if "error:" in line)
    assert f"{out / 'alpha' / 'clip.000002.png'}: frame 2: cannot write: is a directory" in line
    assert (out / "alpha" / "clip.000001.png").is_file()
    assert not [p for p in (out / "alpha").iterdir() if TEMP_NAME.match(p.name)]


def test_resume_recomputes_a_damaged_frame_and_removes_stale_temporaries(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = (clip / "clip.mp4", "-t", clip / "trimaps", "-o", out)
    assert _run(*args)[0] == 0
    whole = _snapshot(out / "alpha")
    (out / "alpha" / "clip.000005.png").write_bytes(b"")  # a node crash before the data reached the disk
    stale = out / "alpha" / ".mattecli-0123456789ab.part"
    stale.write_bytes(b"left by a SIGKILL")
    code, stderr = _run(*args, "--resume")
    assert code == 0, stderr
    assert "removed 1 temporary file" in stderr
    assert _snapshot(out / "alpha") == whole

    code, stderr = _run(*args, "--resume", "--tta", "flip")
    assert code == 4 and "--tta none before, flip now" in stderr, stderr


def test_a_frame_range_names_the_video_so_chunks_do_not_collide(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = (clip / "clip.mp4", "-t", clip / "trimaps", "-o", out, "--alpha", "none", "--video", "prores")
    assert _run(*args, "--start", "0", "--end", "5")[0] == 0
    assert _run(*args, "--start", "6", "--end", "11")[0] == 0
    videos = sorted(p.name for p in out.glob("*.mov"))
    assert videos == ["clip.000000-000005.rgba.mov", "clip.000006-000011.rgba.mov"]
    for name in videos:
        with av.open(str(out / name)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 6
    assert _run(*args)[0] == 0  # no range: the plain name
    assert (out / "clip.rgba.mov").is_file()
