"""A catalogue of bad inputs, run through the real ``mattecli run`` with the shipped default model.

Each bad file, trimap or option must give one error line naming the file (and frame), the exit
code the README documents (1: some inputs failed, the others were written; 4: refused before any
frame; 2: a malformed option), no traceback, and every good input of the same call written.
Images are small (120x90 and less, cut from a real alphamatting photo) so the whole file stays fast.
Decoding trimaps from mutated bytes is fuzzed with hypothesis at the end (image headers are fuzzed
in test_imageheader.py).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from media_files import write_cmyk_jpeg, write_exif_jpeg
from typer.testing import CliRunner

from mattecli.cli import app
from mattecli.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, EXIT_USAGE, InputError
from mattecli.media.imageio import read_gray, read_image, write_image
from mattecli.media.trimaps import TrimapIndex

WIDTH, HEIGHT = 120, 90


@pytest.fixture(scope="module")
def photo(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """GT01 of alphamatting.com and its trimap, shrunk to 120x90 (trimap by nearest neighbour)."""
    image = read_image(shared_data / "alphamatting" / "image" / "GT01.png")
    trimap = read_gray(shared_data / "alphamatting" / "trimap" / "GT01.png")
    small = cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    return small, cv2.resize(trimap, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST)


def _run(*args: str | Path) -> tuple[int, str]:
    """Run ``mattecli run`` in-process; the exit code and everything it printed for humans."""
    result = CliRunner().invoke(app, ["run", *map(str, args)])
    output = result.stdout + result.stderr
    assert "Traceback" not in output and result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.stderr


def _error_line(stderr: str, name: str) -> str:
    """The one error line about ``name`` (a file name); fails if there are none or several."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:") and name in line]
    assert len(lines) == 1, f"expected one error line naming {name}:\n{stderr}"
    return lines[0]


def _alphas(out: Path) -> list[str]:
    folder = out / "alpha"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_bad_media_fail_one_line_each_and_good_inputs_are_written(
    tmp_path: Path, photo: tuple[np.ndarray, np.ndarray]
) -> None:
    image, trimap = photo
    trimaps = tmp_path / "t"
    good = {
        "good.png": image,
        "one.png": image[:1, :1],  # 1x1
        "odd.png": image[:5, :7],  # 7x5
        "deep.png": image.astype(np.uint16) * 257,  # 16-bit
        "grey.png": cv2.cvtColor(image, cv2.COLOR_RGB2GRAY),
    }
    for name, pixels in good.items():
        write_image(tmp_path / name, pixels)
        write_image(trimaps / name, trimap[: pixels.shape[0], : pixels.shape[1]])
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (tmp_path / "jpeg_named.png").write_bytes(jpeg.tobytes())  # mislabelled, but a whole image
    write_image(trimaps / "jpeg_named.png", trimap)
    # A portrait photo stored landscape with EXIF orientation 6; its trimap drawn as it is shown.
    write_exif_jpeg(tmp_path / "portrait.jpg", np.ascontiguousarray(np.rot90(image, 1)), orientation=6)
    write_image(trimaps / "portrait.png", trimap)
    written = [f"{name.rsplit('.', 1)[0]}.png" for name in [*good, "jpeg_named.png", "portrait.jpg"]]
    if write_cmyk_jpeg(tmp_path / "cmyk.jpg", image):
        write_image(trimaps / "cmyk.png", trimap)
        written.append("cmyk.png")

    png = (tmp_path / "good.png").read_bytes()
    bad = {
        "zero.png": (b"", "the file is empty"),
        "cut.png": (png[: len(png) * 3 // 10], "the file is cut short"),
        "flipped.png": (png[:60] + bytes([png[60] ^ 0x10]) + png[61:], "the file is damaged"),
        "text.png": (b"just some notes, not a picture\n" * 20, "cannot decode this image"),
        "cut.jpg": (jpeg.tobytes()[: len(jpeg) // 2], "cannot decode this image"),
    }
    for name, (content, _) in bad.items():
        (tmp_path / name).write_bytes(content)
        write_image(trimaps / f"{name.rsplit('.', 1)[0]}.png", trimap)
    video_named = tmp_path / "movie.png"  # a video under an image name
    video_named.write_bytes(b"\0\0\0\x20ftypisom" + b"\0" * 200)
    write_image(trimaps / "movie.png", trimap)

    out = tmp_path / "out"
    inputs = [tmp_path / name for name in [*good, "jpeg_named.png", "portrait.jpg", *bad, "movie.png"]]
    if "cmyk.png" in written:
        inputs.append(tmp_path / "cmyk.jpg")
    code, stderr = _run(*inputs, "-t", trimaps, "-o", out)

    assert code == EXIT_FAILED
    for name, (_, message) in bad.items():
        assert message in _error_line(stderr, str(tmp_path / name))
    assert "cannot decode this image" in _error_line(stderr, "movie.png")
    assert _alphas(out) == sorted(written)
    portrait = read_gray(out / "alpha" / "portrait.png")
    assert portrait.shape == (HEIGHT, WIDTH)  # as shown, and matched to the trimap drawn that way
    assert (portrait[trimap == 255] == 65535).all() and (portrait[trimap == 0] == 0).all()


def test_bad_trimaps_fail_their_frame_and_the_others_are_written(
    tmp_path: Path, photo: tuple[np.ndarray, np.ndarray]
) -> None:
    image, trimap = photo
    trimaps = tmp_path / "t"
    rgb = np.repeat(trimap[:, :, None], 3, axis=2)
    odd_values = trimap.copy()
    odd_values[trimap == 128] = 100  # pymatting-like grey, and anti-aliased 37 / 220 next to it
    odd_values[:2][trimap[:2] == 0] = 37
    odd_values[-2:][trimap[-2:] == 255] = 220
    accepted = {
        "all_unknown": np.full_like(trimap, 128),
        "all_background": np.zeros_like(trimap),
        "odd_values": odd_values,
        "rgb": rgb,
        "rgba": np.dstack([rgb, np.full_like(trimap, 255)]),
        "deep": trimap.astype(np.uint16) * 257,
    }
    refused = {
        "small": (cv2.resize(trimap, (60, 45), interpolation=cv2.INTER_NEAREST), "--resize-trimaps"),
        "turned": (np.ascontiguousarray(np.rot90(trimap)), "rotate the trimap"),
        "empty": (None, "the file is empty"),
    }
    for name, tri in accepted.items():
        write_image(tmp_path / f"{name}.png", image)
        write_image(trimaps / f"{name}.png", tri)
    for name, (tri, _) in refused.items():
        write_image(tmp_path / f"{name}.png", image)
        if tri is None:
            (trimaps / f"{name}.png").write_bytes(b"")
        else:
            write_image(trimaps / f"{name}.png", tri)

    out = tmp_path / "out"
    names = [*accepted, *refused]
    code, stderr = _run(*(tmp_path / f"{n}.png" for n in names), "-t", trimaps, "-o", out)

    assert code == EXIT_FAILED
    for name, (_, message) in refused.items():
        line = _error_line(stderr, str(trimaps / f"{name}.png"))  # the trimap file is named
        assert message in line and "frame 0" in line
    assert "resize" not in _error_line(stderr, "turned.png").split("rotate the trimap")[1]
    assert _alphas(out) == sorted(f"{n}.png" for n in accepted)
    assert not read_gray(out / "alpha" / "all_background.png").any()
    assert "quantised" in stderr and "unknown everywhere" in stderr  # warned, not failed


def test_missing_and_doubled_trimaps_are_refused_before_any_frame(
    tmp_path: Path, photo: tuple[np.ndarray, np.ndarray]
) -> None:
    image, trimap = photo
    shot = tmp_path / "shot"
    for n in (1, 2, 3):
        write_image(shot / f"shot.{n:04d}.png", image)
    missing, doubled = tmp_path / "missing", tmp_path / "doubled"
    for n in (1, 3):  # missing in the middle
        write_image(missing / f"shot.{n:04d}.png", trimap)
    shutil.copytree(missing, doubled)
    write_image(doubled / "shot.0002.png", trimap)
    write_image(doubled / "shot.2.png", trimap)  # two files claim frame 2

    code, stderr = _run(shot, "-t", missing, "-o", tmp_path / "out1")
    assert code == EXIT_BAD_INPUT and _alphas(tmp_path / "out1") == []
    assert "no trimap for 1 of 3 frames: shot (frame 2)" in _error_line(stderr, str(missing))

    code, stderr = _run(shot, "-t", doubled, "-o", tmp_path / "out2")
    assert code == EXIT_BAD_INPUT and _alphas(tmp_path / "out2") == []
    assert "2 trimaps fit frame shot" in _error_line(stderr, "shot.0002.png")


def test_another_shots_trimaps_are_refused(tmp_path: Path, photo: tuple[np.ndarray, np.ndarray]) -> None:
    image, trimap = photo
    for n in (1, 2):
        write_image(tmp_path / "shotB" / f"shotB.{n:04d}.png", image)
        write_image(tmp_path / "t" / f"clip.{n:06d}.png", trimap)
    code, stderr = _run(tmp_path / "shotB", "-t", tmp_path / "t", "-o", tmp_path / "out")
    assert code == EXIT_BAD_INPUT
    assert "named for 'clip'" in _error_line(stderr, "no trimap for 2 of 2 frames")


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (["--start", "5", "--end", "2"], EXIT_BAD_INPUT, "ends (2) before it starts (5)"),
        (["--tile", "8", "--context", "40"], EXIT_BAD_INPUT, "leaves no room for 2 x context 40"),
        (["--composite", "#zzzzzz"], EXIT_BAD_INPUT, "#zzzzzz: not a colour"),
        (["--fps", "abc"], EXIT_BAD_INPUT, "is not a frame rate"),
        (["--every", "0"], EXIT_USAGE, "--every"),  # Typer's own range check: usage, exit 2
        (["--alpha", "gif"], EXIT_USAGE, "gif"),
    ],
)
def test_bad_options_are_refused_in_one_line(
    tmp_path: Path, photo: tuple[np.ndarray, np.ndarray], options: list[str], code: int, message: str
) -> None:
    image, trimap = photo
    write_image(tmp_path / "a.png", image)
    write_image(tmp_path / "t" / "a.png", trimap)
    got, stderr = _run(tmp_path / "a.png", "-t", tmp_path / "t", "-o", tmp_path / "out", *options)
    assert got == code and message in stderr
    if code == EXIT_BAD_INPUT:
        _error_line(stderr, message)
    assert _alphas(tmp_path / "out") == []


def test_a_video_glob_matching_nothing_says_so(tmp_path: Path, photo: tuple[np.ndarray, np.ndarray]) -> None:
    image, trimap = photo
    write_image(tmp_path / "a.png", image)
    write_image(tmp_path / "t" / "a.png", trimap)
    (tmp_path / "clips").mkdir()
    code, stderr = _run(
        tmp_path / "clips" / "*.mp4", tmp_path / "a.png", "-t", tmp_path / "t", "-o", tmp_path / "o"
    )
    line = _error_line(stderr, "*.mp4")
    assert "no file matches this pattern" in line and "image" not in line.split("(")[0]
    assert code == EXIT_FAILED and _alphas(tmp_path / "o") == ["a.png"]


def _faststart(source: Path, target: Path) -> Path:
    """Copy an MP4's packets into one whose index (moov) comes before the data."""
    with av.open(str(source)) as inp, av.open(str(target), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return target


def test_an_mp4_cut_at_30_percent_keeps_the_frames_before_and_names_the_first_missing(
    tmp_path: Path,
) -> None:
    clip = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["sample", str(clip), "--frames", "24", "--width", "96", "--height", "64"]
    )
    assert result.exit_code == EXIT_OK, result.stderr
    # Cameras and web downloads put the index first (faststart), so a cut file still opens.
    video = _faststart(clip / "clip.mp4", tmp_path / "clip.mp4")
    data = video.read_bytes()
    video.write_bytes(data[: len(data) * 3 // 10])

    code, stderr = _run(video, "-t", clip / "trimaps", "-o", tmp_path / "out")

    assert code == EXIT_FAILED
    line = _error_line(stderr, "clip.mp4")
    first_missing = len(_alphas(tmp_path / "out"))
    assert first_missing > 0
    assert _alphas(tmp_path / "out") == [f"clip.{k:06d}.png" for k in range(first_missing)]
    assert f"frame {first_missing}: the file is cut short: frames from {first_missing} on are missing" in line


# --- trimap decoding, fuzzed ---------------------------------------------------------------------

_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(data=st.data())
def test_fuzzed_trimap_files_load_clean_or_fail_as_one_input_error(
    tmp_path: Path, data: st.DataObject
) -> None:
    """Any bytes under a trimap's name: a 0/128/255 trimap of the frame's size, or one InputError."""
    suffix = data.draw(st.sampled_from([".png", ".tif", ".jpg", ".exr"]))
    height, width = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    levels = data.draw(st.lists(st.integers(0, 255), min_size=height * width, max_size=height * width))
    pixels = np.array(levels, np.uint8).reshape(height, width)
    file = Path(tempfile.mkdtemp(dir=tmp_path)) / f"clip{suffix}"
    write_image(file, pixels.astype(np.float32) / 255 if suffix == ".exr" else pixels)
    raw = bytearray(file.read_bytes())
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    for _ in range(data.draw(st.integers(0, 3))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    file.write_bytes(bytes(raw))
    index = TrimapIndex.open(file)
    try:
        trimap = index.load("clip", 0, (height, width), resize=data.draw(st.booleans()))
    except InputError as exc:
        assert exc.path == file and "\n" not in str(exc)
    else:
        assert trimap.dtype == np.uint8 and set(np.unique(trimap)) <= {0, 128, 255}
        assert trimap.shape == (height, width)


def test_a_call_whose_inputs_all_fail_to_open_is_bad_input(
    tmp_path: Path, photo: tuple[np.ndarray, np.ndarray]
) -> None:
    """Nothing can run: exit 4 (bad input) with the file named, not exit 1 (some inputs failed)."""
    trimap = tmp_path / "trimap.png"
    write_image(trimap, photo[1])
    missing = tmp_path / "nowhere.png"
    code, stderr = _run(missing, "-t", trimap, "-o", tmp_path / "out")
    assert code == EXIT_BAD_INPUT
    assert str(missing) in _error_line(stderr, "nowhere.png")
    (tmp_path / "zero.png").write_bytes(b"")
    code, stderr = _run(missing, tmp_path / "zero.png", "-t", trimap, "-o", tmp_path / "out")
    assert code == EXIT_BAD_INPUT and "1 more input" in stderr
    assert not (tmp_path / "out" / "alpha").exists()
