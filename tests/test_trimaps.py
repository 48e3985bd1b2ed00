"""Trimap matching, cleaning and validation, on synthetic folders and the real trimaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from media_files import write_exif_jpeg

from mattecli.errors import InputError
from mattecli.media.imageio import read_gray, write_image
from mattecli.media.sources import open_source
from mattecli.media.trimaps import TrimapIndex, off_level_pixels, quantize_trimap, trimap_from_alpha


def _trimap(height: int = 8, width: int = 12, value: int = 128) -> np.ndarray:
    tri = np.zeros((height, width), np.uint8)
    tri[:, width // 3 :] = value
    tri[:, 2 * width // 3 :] = 255
    return tri


def _folder(root: Path, *names: str, shape: tuple[int, int] = (8, 12)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_image(root / name, _trimap(*shape))
    return root


# --- quantisation -------------------------------------------------------------------------------


def test_quantize_8bit_thresholds() -> None:
    gray = np.array([[0, 1, 84, 85, 102, 128, 170, 171, 254, 255]], np.uint8)
    assert quantize_trimap(gray).tolist() == [[0, 0, 0, 128, 128, 128, 128, 255, 255, 255]]
    assert off_level_pixels(gray) == 7  # all but 0, 128, 255


def test_quantize_16bit_and_float_use_the_same_fractions() -> None:
    levels16 = np.array([[0, 85 * 257 - 1, 85 * 257, 32768, 170 * 257, 170 * 257 + 1, 65535]], np.uint16)
    assert quantize_trimap(levels16).tolist() == [[0, 0, 128, 128, 128, 255, 255]]
    assert off_level_pixels(levels16) == 4
    floats = np.array([[0.0, 0.33, 0.34, 0.5, 0.66, 0.67, 1.0, np.nan]], np.float32)
    assert quantize_trimap(floats).tolist() == [[0, 0, 128, 128, 128, 255, 255, 128]]
    assert off_level_pixels(floats) == 5


def test_quantize_rejects_colour_arrays() -> None:
    with pytest.raises(ValueError, match="one channel"):
        quantize_trimap(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize(("name", "share"), [("bulb", 0.0036), ("retriever", 0.0069)])
def test_real_antialiased_vitmatte_trimaps_are_quantised(shared_data: Path, name: str, share: float) -> None:
    path = shared_data / "examples/vitmatte_demo/trimap_raw" / f"{name}.png"
    raw = read_gray(path)
    index = TrimapIndex.open(path)
    tri = index.load(name, 0, raw.shape)
    assert tri.dtype == np.uint8 and set(np.unique(tri).tolist()) == {0, 128, 255}
    off = ~np.isin(raw, [0, 128, 255])
    assert index.remapped == {path: int(off.sum())}
    assert round(off.mean(), 4) == share  # SOURCES.md section 4: 0.36 % and 0.69 %
    assert np.array_equal(tri[~off], raw[~off])  # clean pixels are untouched
    np.testing.assert_array_equal(tri[off & (raw < 85)], 0)
    np.testing.assert_array_equal(tri[off & (raw > 170)], 255)


def test_pymatting_lemur_trimap_maps_102_to_unknown(shared_data: Path) -> None:
    path = shared_data / "examples/lemur/trimap_pymatting.png"
    index = TrimapIndex.open(path)
    tri = index.load("lemur", 0, (440, 680))
    values, counts = np.unique(tri, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == {0: 176326, 128: 38666, 255: 84208}
    assert index.remapped == {path: 38666}


def test_real_alphamatting_trimaps_load_unchanged(shared_data: Path) -> None:
    folder = shared_data / "alphamatting/trimap"
    index = TrimapIndex.open(folder)
    names = sorted(p.stem for p in folder.glob("GT*.png"))
    assert len(names) == 21
    frames = [(name, position) for position, name in enumerate(names)]
    index.check(frames)
    for name, position in frames[::4]:
        path = folder / f"{name}.png"
        assert index.find(name, position) == path
        raw = read_gray(path)
        assert np.array_equal(index.load(name, position, raw.shape), raw)
    assert index.remapped == {}


# --- matching -----------------------------------------------------------------------------------


def test_match_by_stem_for_photos(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "t", "GT01.png", "GT02.png", "cat.tif")
    index = TrimapIndex.open(folder)
    frames = [("GT01", 0), ("GT02", 1), ("cat", 2)]
    index.check(frames)
    assert [index.find(*frame).name for frame in frames] == ["GT01.png", "GT02.png", "cat.tif"]


def test_match_by_name_and_number_in_common_spellings(tmp_path: Path) -> None:
    spellings = ["clip.000012.png", "clip_13.png", "clip-0014.png", "clip15.png", "clip 16.png"]
    index = TrimapIndex.open(_folder(tmp_path / "t", *spellings, "take2.7.png", "shot.1001.png"))
    assert [index.find("clip", i).name for i in (12, 13, 14, 15, 16)] == spellings
    assert index.find("take2", 7).name == "take2.7.png"  # a name that ends in a digit needs a separator
    assert index.find("shot", 1001).name == "shot.1001.png"  # a sequence keeps its own numbers
    assert index.find("clip", 17) is None


def test_match_by_frame_number_alone(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "t", "0012.png", "13.png", "matte_14.exr.png")
    index = TrimapIndex.open(folder)
    index.check([("shot", 12), ("shot", 13)])
    assert index.find("shot", 12).name == "0012.png"
    assert index.find("shot", 13).name == "13.png"
    assert index.find("shot", 14) is None  # the number must be the whole stem
    assert index.find("shot", 1001) is None


@pytest.mark.parametrize("stem", ["trimap.0012", "other.000012", "clip_12", "m12", "x 12"])
def test_a_number_with_any_prefix_is_not_a_bare_number(tmp_path: Path, stem: str) -> None:
    # Rule 3 used to take any trailing number: shotB would silently use clip's (or other's) trimaps.
    index = TrimapIndex.open(_folder(tmp_path / "t", f"{stem}.png"))
    assert index.find("shotB", 12) is None


def test_another_shots_trimaps_are_refused_and_named(tmp_path: Path) -> None:
    index = TrimapIndex.open(_folder(tmp_path / "t", *(f"clip.{i:06d}.png" for i in range(3))))
    with pytest.raises(InputError) as caught:
        index.check([("shotB", i) for i in range(3)])
    message = str(caught.value)
    assert "no trimap for 3 of 3 frames" in message
    assert "the numbered trimaps here are named for 'clip', not for this run's inputs" in message


def test_a_missing_numbered_trimap_does_not_borrow_another_names_number(tmp_path: Path) -> None:
    index = TrimapIndex.open(_folder(tmp_path / "t", "clip.000019.png", "other.000020.png"))
    with pytest.raises(InputError, match=r"no trimap for 1 of 2 frames: clip \(frame 20\)") as caught:
        index.check([("clip", 19), ("clip", 20)])
    assert "named for" not in str(caught.value)  # clip's own trimaps are here: no note about others


def test_name_beats_number_and_named_trimaps_are_not_borrowed(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "t", "clip.000003.png", "0003.png")
    index = TrimapIndex.open(folder)
    assert index.find("clip", 3).name == "clip.000003.png"
    index.check([("clip", 3), ("other", 3)])
    assert index.find("other", 3).name == "0003.png"  # clip.000003 belongs to clip


def test_a_missing_photo_trimap_does_not_borrow_by_position(tmp_path: Path) -> None:
    # Photos are numbered by position, so GT03 is frame 2: without the guard it would take GT02.png.
    index = TrimapIndex.open(_folder(tmp_path / "t", "GT01.png", "GT02.png"))
    with pytest.raises(InputError) as caught:
        index.check([("GT01", 0), ("GT02", 1), ("GT03", 2)])
    assert "no trimap for 1 of 3 frames: GT03 (frame 2)" in str(caught.value)


def test_one_trimap_for_every_frame(tmp_path: Path) -> None:
    path = tmp_path / "all.png"
    write_image(path, _trimap())
    index = TrimapIndex.open(path)
    index.check([("clip", i) for i in range(100)])
    assert {index.find("clip", i) for i in range(100)} == {path}
    first = index.load("clip", 0, (8, 12))
    assert index.load("clip", 99, (8, 12)) is first  # read once
    assert not first.flags.writeable


def test_missing_trimaps_are_counted_and_named(tmp_path: Path) -> None:
    index = TrimapIndex.open(_folder(tmp_path / "t", *(f"clip.{i:04d}.png" for i in range(5))))
    with pytest.raises(InputError) as caught:
        index.check([("clip", i) for i in range(20)])
    message = str(caught.value)
    assert "no trimap for 15 of 20 frames" in message
    assert (
        "clip (frame 5), clip (frame 6), clip (frame 7), clip (frame 8), clip (frame 9) and 10 more"
        in message
    )
    assert str(tmp_path / "t") in message and "000012.png" in message  # the folder and the naming hint
    assert caught.value.exit_code == 4


def test_loading_a_frame_without_trimap_names_the_frame(tmp_path: Path) -> None:
    index = TrimapIndex.open(_folder(tmp_path / "t", "0000.png"))
    with pytest.raises(InputError, match="frame 7: no trimap for frame clip"):
        index.load("clip", 7, (8, 12))


def test_ambiguous_frame_numbers_name_both_files(tmp_path: Path) -> None:
    index = TrimapIndex.open(_folder(tmp_path / "t", "0012.png", "12.tif"))
    with pytest.raises(InputError) as caught:
        index.check([("clip", 12)])
    assert "2 trimaps fit frame clip: 0012.png and 12.tif" in str(caught.value)
    assert caught.value.frame == 12


def test_ambiguous_spellings_of_one_name_are_an_error(tmp_path: Path) -> None:
    index = TrimapIndex.open(_folder(tmp_path / "t", "clip.12.png", "clip.0012.png"))
    with pytest.raises(InputError, match="clip.0012.png and clip.12.png"):
        index.find("clip", 12)
    index = TrimapIndex.open(_folder(tmp_path / "u", "GT01.png", "GT01.tif"))
    with pytest.raises(InputError, match="GT01.png and GT01.tif"):
        index.find("GT01", 0)


def test_hidden_and_non_image_files_are_ignored(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "t", "0001.png", ".0002.part.png")
    (folder / "0002.txt").write_text("notes")
    index = TrimapIndex.open(folder)
    assert index.find("clip", 1).name == "0001.png"
    assert index.find("clip", 2) is None


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="trimap folder or file not found"):
        TrimapIndex.open(tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="not an image file"):
        TrimapIndex.open(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no trimap images in this folder"):
        TrimapIndex.open(tmp_path / "empty")


# --- validation ---------------------------------------------------------------------------------


def test_size_mismatch_names_file_frame_and_both_sizes(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "t", "clip.000004.png", shape=(360, 640))
    index = TrimapIndex.open(folder)
    with pytest.raises(InputError) as caught:
        index.load("clip", 4, (720, 1280))
    message = str(caught.value)
    assert str(folder / "clip.000004.png") in message
    assert "frame 4" in message
    assert "trimap is 360x640 (HxW) but frame clip is 720x1280" in message
    assert "--resize-trimaps to resize with nearest-neighbour" in message


@pytest.mark.parametrize("resize", [False, True])
def test_trimap_of_an_exif_rotated_photo_at_its_stored_size_says_rotate(tmp_path: Path, resize: bool) -> None:
    # A phone portrait: stored 96x64 (WxH) and tagged to be shown turned; the trimap was painted
    # on the stored picture. Resizing it onto the 64x96 photo would squash it into a wrong matte.
    photo = write_exif_jpeg(tmp_path / "IMG_0001.jpg", np.zeros((64, 96, 3), np.uint8), orientation=6)
    with open_source(photo) as source:
        frame = next(source.frames(prefetch=0))
    assert frame.image.shape[:2] == (96, 64)
    folder = _folder(tmp_path / "t", "IMG_0001.png", shape=(64, 96))
    index = TrimapIndex.open(folder)
    with pytest.raises(InputError) as caught:
        index.load(frame.name, frame.index, (frame.height, frame.width), resize=resize)
    message = str(caught.value)
    assert "trimap is 64x96 (HxW), the 96x64 frame IMG_0001 turned by a quarter" in message
    assert "rotate the trimap" in message and "orientation tag" in message
    assert "--resize-trimaps" not in message and str(folder / "IMG_0001.png") in message


def test_resize_uses_nearest_neighbour_on_real_antialiased_trimap(shared_data: Path) -> None:
    path = shared_data / "examples/vitmatte_demo/trimap_raw/bulb.png"
    tri = TrimapIndex.open(path).load("bulb", 0, (333, 517), resize=True)
    assert tri.shape == (333, 517)
    assert set(np.unique(tri).tolist()) == {0, 128, 255}
    # The unknown share survives the resize (about 8.5 % of the bulb trimap is unknown).
    assert abs((tri == 128).mean() - (quantize_trimap(read_gray(path)) == 128).mean()) < 0.005


def test_all_unknown_trimap_is_accepted_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    write_image(path, np.full((8, 12), 128, np.uint8))
    index = TrimapIndex.open(path)
    assert (index.load("x", 0, (8, 12)) == 128).all()
    assert index.all_unknown == {path}


# --- trimap from alpha --------------------------------------------------------------------------


def test_trimap_from_real_alpha_agrees_with_it(shared_data: Path) -> None:
    alpha = read_gray(shared_data / "alphamatting/alpha/GT01.png")
    tri = trimap_from_alpha(alpha, 10)
    assert set(np.unique(tri).tolist()) == {0, 128, 255}
    assert (alpha[tri == 255] == 255).all()
    assert (alpha[tri == 0] == 0).all()
    fractional = (alpha > 0) & (alpha < 255)
    assert (tri[fractional] == 128).all()
    # Float alpha gives the same trimap.
    assert np.array_equal(trimap_from_alpha(alpha.astype(np.float32) / 255, 10), tri)


def _edge_alpha() -> np.ndarray:
    """Opaque on the left, a soft 4-pixel ramp at x = 40..43, clear from x = 44."""
    alpha = np.zeros((31, 90), np.uint8)
    alpha[:, :40] = 255
    alpha[:, 40:44] = [200, 150, 100, 50]
    return alpha


def test_trimap_from_alpha_band_width() -> None:
    alpha = _edge_alpha()
    tri = trimap_from_alpha(alpha, 5)
    # Opaque shrinks by 5 (ends at x = 34), coverage grows by 5 (ends at x = 48).
    assert np.flatnonzero(tri[15] == 255).max() == 34
    assert np.flatnonzero(tri[15] == 128).tolist() == list(range(35, 49))
    assert np.array_equal(np.unique(trimap_from_alpha(alpha, 0)[15], return_counts=True)[1], [46, 4, 40])


def test_trimap_from_alpha_random_widths_stay_in_range() -> None:
    alpha = _edge_alpha()
    rng = np.random.default_rng(0)
    widths = set()
    for _ in range(40):
        unknown = np.flatnonzero(trimap_from_alpha(alpha, 6, rng=rng)[15] == 128)
        shrink, grow = 40 - unknown[0], unknown[-1] - 43
        assert 1 <= grow <= 6 and 1 <= shrink <= 6
        widths.add((int(grow), int(shrink)))
    assert len(widths) > 10
