"""Sinks by round trip: write a frame's outputs, read the files back, compare with numbers computed here."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from mattecli.errors import InputError
from mattecli.media.compose import parse_background, parse_colour
from mattecli.media.frame import Frame
from mattecli.media.imageio import read_any, write_image
from mattecli.media.naming import name_pattern
from mattecli.media.sinks import OutputSpec, Sinks

H, W = 48, 64
FPS = Fraction(24)


def _alpha(seed: int = 0) -> np.ndarray:
    """Random float32 matte with exact 0 and 1 regions (where straight and premultiplied differ most)."""
    a = np.random.default_rng(seed).random((H, W), dtype=np.float32)
    a[:8, :8], a[8:16, :8] = 0.0, 1.0
    return a


def _fg(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((H, W, 3), dtype=np.float32)


def _frame(index: int = 7, name: str = "shot", source: Path = Path("shot.mp4")) -> Frame:
    image = np.random.default_rng(100 + index).integers(0, 256, (H, W, 3), dtype=np.uint8)
    return Frame(index=index, name=name, image=image, source=source, time=index / 24)


def _q(x: np.ndarray, bits: int) -> np.ndarray:
    """The nearest code at ``bits`` bits, computed here in float64 independently of the sinks."""
    return np.rint(np.clip(x.astype(np.float64), 0, 1) * (2**bits - 1)).astype(
        np.uint8 if bits == 8 else np.uint16
    )


def _write_one(
    tmp_path: Path, frame: Frame | None = None, fg: np.ndarray | None = None, **spec
) -> list[Path]:
    frame = frame or _frame()
    sinks = Sinks(OutputSpec(tmp_path / "out", **spec), kind="video", fps=FPS)
    with sinks:
        sinks.write(frame, _alpha(), fg)
    return sinks.outputs_for(frame)


# --- alpha -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "name", "bits"), [("png8", "png", 8), ("png16", "png", 16), ("tiff", "tif", 16)]
)
def test_alpha_integer_formats_hold_the_nearest_code(tmp_path: Path, fmt: str, name: str, bits: int) -> None:
    (path,) = _write_one(tmp_path, alpha=fmt)
    assert path == tmp_path / "out" / "alpha" / f"shot.000007.{name}"
    stored = read_any(path)
    assert stored.dtype == (np.uint8 if bits == 8 else np.uint16) and stored.shape == (H, W)
    np.testing.assert_array_equal(stored, _q(_alpha(), bits))
    assert np.abs(stored / (2**bits - 1) - _alpha()).max() <= 0.5 / (2**bits - 1) + 1e-12


def test_alpha_exr_is_float32_exact(tmp_path: Path) -> None:
    (path,) = _write_one(tmp_path, alpha="exr")
    import OpenEXR

    with OpenEXR.File(str(path), separate_channels=True) as f:
        assert list(f.channels()) == ["A"]  # the matte convention compositors read
    stored = read_any(path)
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, _alpha())


# --- foreground ------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 16])
def test_foreground_png_is_straight_by_default(tmp_path: Path, bits: int) -> None:
    (path,) = _write_one(tmp_path, alpha=None, foreground=f"png{bits}", fg=_fg())
    assert path.parent.name == "fg"
    stored = read_any(path)
    assert stored.shape == (H, W, 4)
    np.testing.assert_array_equal(stored[:, :, :3], _q(_fg(), bits))  # F itself, even where alpha = 0
    np.testing.assert_array_equal(stored[:, :, 3], _q(_alpha(), bits))
    assert stored[:8, :8, :3].any()  # alpha = 0 there, yet the colour is kept


@pytest.mark.parametrize("bits", [8, 16])
def test_foreground_png_premultiplied(tmp_path: Path, bits: int) -> None:
    (path,) = _write_one(tmp_path, alpha=None, foreground=f"png{bits}", premultiplied=True, fg=_fg())
    stored = read_any(path)
    want = _fg() * _alpha()[:, :, None]  # the float32 product, as the EXR test below
    np.testing.assert_array_equal(stored[:, :, :3], _q(want, bits))
    assert not stored[:8, :8, :3].any()  # alpha = 0: premultiplied colour is black
    np.testing.assert_array_equal(stored[8:16, :8, :3], _q(_fg()[8:16, :8], bits))  # alpha = 1: F


def test_foreground_exr_is_premultiplied_by_default_and_exact(tmp_path: Path) -> None:
    (path,) = _write_one(tmp_path, alpha=None, foreground="exr", fg=_fg())
    stored = read_any(path)
    assert stored.dtype == np.float32 and stored.shape == (H, W, 4)
    np.testing.assert_array_equal(stored[:, :, :3], _fg() * _alpha()[:, :, None])  # float32 product
    np.testing.assert_array_equal(stored[:, :, 3], _alpha())


def test_foreground_exr_straight_on_request(tmp_path: Path) -> None:
    (path,) = _write_one(tmp_path, alpha=None, foreground="exr", premultiplied=False, fg=_fg())
    np.testing.assert_array_equal(read_any(path)[:, :, :3], _fg())


def test_without_a_foreground_estimate_the_source_colour_is_used(tmp_path: Path) -> None:
    frame = _frame()
    (path,) = _write_one(tmp_path, frame=frame, alpha=None, foreground="png8")
    np.testing.assert_array_equal(read_any(path)[:, :, :3], frame.image)


# --- composite -------------------------------------------------------------------------------


def test_composite_over_a_colour(tmp_path: Path) -> None:
    background = parse_background("#ff8000")
    assert background == (255, 128, 0) == parse_colour("255, 128, 0")
    (path,) = _write_one(tmp_path, alpha=None, composite=background, fg=_fg())
    assert path == tmp_path / "out" / "comp" / "shot.000007.png"
    a = _alpha().astype(np.float64)[:, :, None]
    want = a * _fg() + (1 - a) * (np.array([255, 128, 0]) / 255)
    stored = read_any(path)
    assert stored.shape == (H, W, 3) and stored.dtype == np.uint8
    assert np.abs(stored / 255 - want).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(
        stored[:8, :8], np.broadcast_to(np.array([255, 128, 0], np.uint8), (8, 8, 3))
    )


def _blocky(width: int, height: int, block: int) -> np.ndarray:
    """An RGB image of constant block x block squares, so area downscaling by ``block`` is exact."""
    small = np.random.default_rng(5).integers(0, 256, (height // block, width // block, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, block, axis=0), block, axis=1)


def test_composite_over_an_image_scaled_to_cover(tmp_path: Path) -> None:
    """A 128x96 plate behind a 64x48 frame is halved (same aspect): B is the plate's 2x2 means."""
    plate = _blocky(2 * W, 2 * H, 2)
    write_image(tmp_path / "plate.png", plate)
    (path,) = _write_one(
        tmp_path, alpha=None, composite=parse_background(str(tmp_path / "plate.png")), fg=_fg()
    )
    b = plate[::2, ::2] / 255
    a = _alpha().astype(np.float64)[:, :, None]
    stored = read_any(path)
    assert np.abs(stored / 255 - (a * _fg() + (1 - a) * b)).max() <= 0.5 / 255 + 1e-6


def test_composite_over_an_image_cropped_to_the_centre(tmp_path: Path) -> None:
    """A 64x96 plate (taller than the frame) is not scaled, only cropped to its middle 48 rows."""
    plate = np.random.default_rng(6).integers(0, 65536, (2 * H, W, 3), dtype=np.uint16)  # 16-bit plate
    write_image(tmp_path / "plate.png", plate)
    (path,) = _write_one(
        tmp_path, alpha=None, composite=tmp_path / "plate.png", composite_format="png16", fg=_fg()
    )
    b = plate[H // 2 : H // 2 + H] / 65535
    a = _alpha().astype(np.float64)[:, :, None]
    stored = read_any(path)
    assert stored.dtype == np.uint16
    assert np.abs(stored / 65535 - (a * _fg() + (1 - a) * b)).max() <= 0.5 / 65535 + 1e-6


def test_background_that_is_neither_colour_nor_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a colour") as info:
        parse_background(str(tmp_path / "missing.png"))
    assert info.value.hint
    with pytest.raises(InputError, match="above 255"):
        parse_colour("300,0,0")


# --- names, resume ---------------------------------------------------------------------------


def test_default_names_by_source_kind(tmp_path: Path) -> None:
    spec = OutputSpec(tmp_path, alpha="exr", foreground="png16", composite=(0, 0, 0))
    video = Sinks(spec, kind="video", fps=FPS)
    assert [p.relative_to(tmp_path).as_posix() for p in video.outputs_for(_frame(12))] == [
        "alpha/shot.000012.exr",
        "fg/shot.000012.png",
        "comp/shot.000012.png",
    ]
    stills = Sinks(spec, kind="stills", fps=None)
    photo = _frame(3, name="IMG_0042", source=tmp_path / "IMG_0042.jpg")
    assert [p.name for p in stills.outputs_for(photo)] == ["IMG_0042.exr", "IMG_0042.png", "IMG_0042.png"]
    custom = Sinks(
        OutputSpec(tmp_path, alpha="tiff", pattern="{stem}_v2_{frame:04d}.{ext}"), kind="sequence", fps=None
    )
    assert [p.name for p in custom.outputs_for(_frame(1001))] == ["shot_v2_1001.tif"]


@pytest.mark.parametrize(
    ("pattern", "kind", "message"),
    [
        ("{stem}.{frame:06d}.{ext}", "video", None),
        ("{stem}.{ext}", "stills", None),
        ("{stem}.{ext}", "video", "has no {frame}"),
        ("{stem}.{ext}", "sequence", "has no {frame}"),
        ("{stem}.{frame}.{shot}.{ext}", "video", "unknown field {shot}"),
        ("{0}.{frame}.{ext}", "video", "unknown field {0}"),
        ("{stem.upper}.{frame}.{ext}", "video", "unknown field"),
        ("{stem!r}.{frame}.{ext}", "video", "conversion"),
        ("mattes/{stem}.{frame}.{ext}", "video", "path separator"),
        ("{stem}\\{frame}.{ext}", "video", "path separator"),
        ("{stem}.{frame}.png", "video", "must end with .{ext}"),
        ("{stem}.{frame}.{ext}.bak", "video", "must end with .{ext}"),
        ("{stem:d}.{frame}.{ext}", "video", "Unknown format code"),
        ("{stem.{frame}.{ext}", "video", "unknown field|expected"),
    ],
)
def test_name_pattern_validation(pattern: str, kind: str, message: str | None) -> None:
    if message is None:
        assert name_pattern(pattern, kind).render(stem="a", frame=5, ext="png").endswith(".png")
        return
    with pytest.raises(InputError, match=message) as info:
        name_pattern(pattern, kind)
    assert pattern in str(info.value) and info.value.hint


def test_sinks_refuse_a_bad_pattern_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="has no {frame}"):
        Sinks(OutputSpec(tmp_path, pattern="{stem}.{ext}"), kind="video", fps=FPS)
    assert not tmp_path.joinpath("alpha").exists()


def test_outputs_for_and_is_complete(tmp_path: Path) -> None:
    spec = OutputSpec(tmp_path, alpha="png16", foreground="exr", composite=(255, 255, 255))
    frame, other = _frame(3), _frame(4)
    with Sinks(spec, kind="video", fps=FPS) as sinks:
        assert not sinks.is_complete(frame)
        sinks.write(frame, _alpha(), _fg())
        assert sinks.is_complete(frame) and not sinks.is_complete(other)
        assert all(p.is_file() for p in sinks.outputs_for(frame))
    # A later run (--resume) sees the frame as done, until one of its files goes missing.
    again = Sinks(spec, kind="video", fps=FPS)
    assert again.is_complete(frame)
    again.outputs_for(frame)[1].unlink()
    assert not again.is_complete(frame)
    assert not list(tmp_path.rglob(".*"))  # no temporary files anywhere


def test_a_video_output_makes_every_frame_incomplete(tmp_path: Path) -> None:
    """--resume cannot skip frames that a video output still needs."""
    spec = OutputSpec(tmp_path, alpha="png8", video="ffv1")
    with Sinks(spec, kind="video", fps=FPS) as sinks:
        sinks.write(_frame(0), _alpha())
    assert (tmp_path / "alpha" / "shot.000000.png").is_file()
    assert not Sinks(spec, kind="video", fps=FPS).is_complete(_frame(0))
    assert Sinks(OutputSpec(tmp_path, alpha="png8"), kind="video", fps=FPS).is_complete(_frame(0))


def test_photos_whose_names_collide_are_refused(tmp_path: Path) -> None:
    with Sinks(OutputSpec(tmp_path, alpha="png8"), kind="stills", fps=None) as sinks:
        sinks.write(_frame(0, name="a", source=tmp_path / "a.jpg"), _alpha())
        sinks.write(_frame(0, name="a", source=tmp_path / "a.jpg"), _alpha())  # the same photo again: fine
        with pytest.raises(InputError, match="overwrite the output of a.jpg") as info:
            sinks.write(_frame(1, name="a", source=tmp_path / "a.png"), _alpha())
    assert info.value.path == tmp_path / "a.png" and "{frame}" in (info.value.hint or "")


def test_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no output"):
        Sinks(OutputSpec(tmp_path, alpha=None), kind="video", fps=FPS)
    with pytest.raises(InputError, match="photos cannot be written as a video"):
        Sinks(OutputSpec(tmp_path, video="prores"), kind="stills", fps=None)
    with pytest.raises(InputError, match="no frame rate") as info:
        Sinks(OutputSpec(tmp_path, video="ffv1"), kind="sequence", fps=None)
    assert "--fps" in (info.value.hint or "")
    Sinks(OutputSpec(tmp_path, video="ffv1", fps=Fraction(25)), kind="sequence", fps=None)  # given: fine
    with pytest.raises(InputError, match="keeps the source's rate"):  # retiming would break the audio sync
        Sinks(OutputSpec(tmp_path, video="ffv1", fps=Fraction(25)), kind="video", fps=FPS)
    with pytest.raises(ValueError, match="alpha"):
        OutputSpec(tmp_path, alpha="jpeg")  # type: ignore[arg-type]


# --- video through the sinks ------------------------------------------------------------------


def test_video_output_with_images_is_renamed_into_place(tmp_path: Path) -> None:
    spec = OutputSpec(tmp_path, alpha="png16", video="png-mov", fps=Fraction(25))
    frames = [_frame(i, name="seq") for i in range(1001, 1004)]
    with Sinks(spec, kind="sequence", fps=None) as sinks:
        for frame in frames:
            sinks.write(frame, _alpha(frame.index), _fg(frame.index))
        assert sinks.video_path == tmp_path / "seq.rgba.mov"
        assert not sinks.video_path.exists()  # still under its temporary name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha", "seq.rgba.mov"]
    with av.open(str(tmp_path / "seq.rgba.mov")) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 25
        decoded = [f.to_ndarray(format="rgba64le") for f in container.decode(stream)]
    assert len(decoded) == 3
    for got, frame in zip(decoded, frames, strict=True):  # straight colour + alpha, 16 bits, exact
        np.testing.assert_array_equal(got, _q(np.dstack([_fg(frame.index), _alpha(frame.index)]), 16))


def test_alpha_only_video_is_named_for_its_content(tmp_path: Path) -> None:
    spec = OutputSpec(tmp_path, alpha=None, video="ffv1", video_content="alpha")
    with Sinks(spec, kind="video", fps=FPS) as sinks:
        sinks.write(_frame(0), _alpha())
    with av.open(str(tmp_path / "shot.alpha.mkv")) as container:
        (got,) = [f.to_ndarray(format="gray16le") for f in container.decode(video=0)]
    np.testing.assert_array_equal(got, _q(_alpha(), 16))


def test_failed_run_leaves_no_video_and_no_temporary_file(tmp_path: Path) -> None:
    spec = OutputSpec(tmp_path, alpha=None, video="prores")
    with pytest.raises(InputError, match="one size") as info, Sinks(spec, kind="video", fps=FPS) as sinks:
        sinks.write(_frame(0), _alpha())
        sinks.write(_frame(1), _alpha())
        assert len(list(tmp_path.iterdir())) == 1  # the temporary file, under a hidden name
        small = Frame(2, "shot", np.zeros((H // 2, W, 3), np.uint8), Path("shot.mp4"))
        sinks.write(small, np.zeros((H // 2, W), np.float32))
    assert info.value.frame == 2
    assert list(tmp_path.iterdir()) == []


def test_interrupted_run_leaves_no_video(tmp_path: Path) -> None:
    spec = OutputSpec(tmp_path, alpha="png8", video="png-mov")
    with pytest.raises(KeyboardInterrupt), Sinks(spec, kind="video", fps=FPS) as sinks:
        sinks.write(_frame(0), _alpha())
        raise KeyboardInterrupt
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")] == [
        "alpha",
        "alpha/shot.000000.png",
    ]


def test_a_video_named_by_frame_range(tmp_path: Path) -> None:
    """Chunks of one shot into one folder (``--start``/``--end``) each keep their own video."""
    for first, last in ((0, 2), (3, 5)):
        spec = OutputSpec(tmp_path, alpha=None, video="ffv1", video_content="alpha", video_names_frames=True)
        with Sinks(spec, kind="video", fps=FPS) as sinks:
            for index in range(first, last + 1):
                sinks.write(_frame(index), _alpha())
        assert sinks.video_path == tmp_path / f"shot.{first:06d}-{last:06d}.alpha.mkv"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "shot.000000-000002.alpha.mkv",
        "shot.000003-000005.alpha.mkv",
    ]
    for path in tmp_path.glob("*.mkv"):
        with av.open(str(path)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 3
