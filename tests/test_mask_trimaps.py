"""Trimaps from masks (mattecli.mask_trimaps): thresholds, the band's width and shape, input types."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mattecli.errors import InputError
from mattecli.mask_trimaps import BandWidth, MaskTrimapSettings, trimap_from_mask


def _settings(band: str, **kwargs: object) -> MaskTrimapSettings:
    return MaskTrimapSettings(band=BandWidth.parse(band), **kwargs)  # type: ignore[arg-type]


def _disc(height: int, width: int, radius: float, centre: tuple[float, float] | None = None) -> np.ndarray:
    cy, cx = centre if centre is not None else ((height - 1) / 2, (width - 1) / 2)
    ys, xs = np.mgrid[0:height, 0:width]
    return np.hypot(ys - cy, xs - cx) <= radius


def _reference(mask: np.ndarray, settings: MaskTrimapSettings) -> np.ndarray:
    """The definition over the whole frame, without the bounding-box shortcut of the module."""
    values = mask.astype(np.float64) / (255.0 if mask.dtype == np.uint8 else 1.0)
    fg = values >= settings.fg_threshold
    bg = values <= settings.bg_threshold
    reach = settings.band.pixels(*mask.shape) / 2 + 0.5
    trimap = np.full(mask.shape, 128, np.uint8)
    for region, value in ((bg, 0), (fg, 255)):
        distance = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        trimap[region & (distance >= reach)] = value
    return trimap


def test_band_is_total_width_half_each_side_of_a_straight_edge() -> None:
    mask = np.zeros((40, 80), np.uint8)
    mask[:, :40] = 255
    for width, per_side in ((12, 6), (13, 6), (2, 1), (0, 0)):
        row = trimap_from_mask(mask, _settings(f"{width}px"))[20]
        assert (row[: 40 - per_side] == 255).all()
        assert (row[40 - per_side : 40 + per_side] == 128).all()
        assert (row[40 + per_side :] == 0).all()


def test_disc_band_is_euclidean_not_square_steps() -> None:
    """The band around a disc is as wide along diagonals as along rows (3x3 erosion: 41% wider there)."""
    mask = _disc(301, 301, 80.0)
    trimap = trimap_from_mask(mask, _settings("20px"))
    assert set(np.unique(trimap)) == {0, 128, 255}
    ys, xs = np.mgrid[0:301, 0:301]
    radius = np.hypot(ys - 150, xs - 150)
    unknown = trimap == 128
    # Pixel centres farther than half the band (plus the half pixel to the digital edge) are known.
    assert unknown[np.abs(radius - 80) < 9].all()
    assert not unknown[np.abs(radius - 80) > 11.5].any()
    along_row = np.count_nonzero(unknown[150])  # two crossings of the band
    along_diagonal = np.count_nonzero(np.diagonal(unknown)) * np.sqrt(2)
    # 2 x 20, give or take a pixel per side where the digital circle is not half a pixel from a centre
    assert 40 <= along_row <= 42
    assert along_diagonal == pytest.approx(along_row, abs=3)


def test_matches_the_definition_over_the_whole_frame() -> None:
    """The bounding-box shortcut gives what distance transforms over the whole frame give."""
    rng = np.random.default_rng(4)
    for case in range(6):
        mask = np.zeros((90, 130), np.uint8)
        for _ in range(3):
            centre = (int(rng.integers(-10, 130)), int(rng.integers(-10, 90)))
            cv2.circle(mask, centre, int(rng.integers(3, 30)), int(rng.integers(20, 256)), -1)
        mask = cv2.GaussianBlur(mask, (0, 0), 2.0) if case % 2 else mask
        for settings in (_settings("9px"), _settings("3%", fg_threshold=0.7, bg_threshold=0.2)):
            assert np.array_equal(trimap_from_mask(mask, settings), _reference(mask, settings)), case


def test_diagonal_band_is_the_same_on_a_plate_and_its_half_size_proxy() -> None:
    plate = _disc(720, 1280, 200.0).astype(np.uint8) * 255
    proxy = cv2.resize(plate, (640, 360), interpolation=cv2.INTER_AREA)
    # The proxy's edge is soft (area-averaged); cut at 0.5, only the band makes unknown pixels.
    relative = _settings("3%", soft_unknown=False)
    full, half = trimap_from_mask(plate, relative), trimap_from_mask(proxy, relative)
    assert relative.band.pixels(720, 1280) == pytest.approx(2 * relative.band.pixels(360, 640))
    full_share, half_share = np.mean(full == 128), np.mean(half == 128)
    assert full_share == pytest.approx(half_share, rel=0.02)
    # Pixels give the same count on both, so the proxy's band is twice as wide relative to the picture.
    fixed = _settings("20px", soft_unknown=False)
    assert np.mean(trimap_from_mask(proxy, fixed) == 128) == pytest.approx(
        2 * np.mean(trimap_from_mask(plate, fixed) == 128), rel=0.05
    )


def test_thresholds_and_soft_unknown() -> None:
    """Flat patches of 0, 0.03, 0.3, 0.7, 0.97, 1 with no band: only the soft ones are unknown."""
    levels = np.array([0.0, 0.03, 0.3, 0.7, 0.97, 1.0], np.float32)
    mask = np.repeat(levels, 20)[None, :].repeat(10, axis=0)
    soft = trimap_from_mask(mask, _settings("0"))[5, ::20]
    assert soft.tolist() == [0, 0, 128, 128, 255, 255]
    tight = trimap_from_mask(mask, _settings("0", fg_threshold=0.99, bg_threshold=0.01))[5, ::20]
    assert tight.tolist() == [0, 128, 128, 128, 128, 255]
    cut = trimap_from_mask(mask, _settings("0", soft_unknown=False))[5, ::20]
    assert cut.tolist() == [0, 0, 0, 255, 255, 255]  # split half-way between the thresholds


def test_soft_unknown_keeps_a_feathered_edge_unknown_beyond_the_band() -> None:
    ramp = np.tile(np.linspace(0, 1, 101, dtype=np.float32), (8, 1))  # a 100-pixel feather
    on = trimap_from_mask(ramp, _settings("4px"))[4]
    off = trimap_from_mask(ramp, _settings("4px", soft_unknown=False))[4]
    soft = (ramp[4] > 0.05) & (ramp[4] < 0.95)
    assert (on[soft] == 128).all() and np.count_nonzero(on == 128) == np.count_nonzero(soft) + 4
    assert np.count_nonzero(off == 128) == 4


def test_bit_depths_and_label_masks_give_the_same_trimap() -> None:
    eight = cv2.GaussianBlur(_disc(120, 160, 40.0).astype(np.uint8) * 255, (0, 0), 3.0)
    settings = _settings("10px")
    expected = trimap_from_mask(eight, settings)
    assert np.array_equal(trimap_from_mask(eight.astype(np.uint16) * 257, settings), expected)
    assert np.array_equal(trimap_from_mask(eight.astype(np.float32) / 255, settings), expected)
    assert np.array_equal(trimap_from_mask(eight.astype(np.float64) / 255, settings), expected)
    binary = _disc(120, 160, 40.0)
    labelled = trimap_from_mask(binary, settings)
    assert np.array_equal(trimap_from_mask(binary.astype(np.uint8), settings), labelled)  # 0/1, not 0/255
    assert np.array_equal(trimap_from_mask(binary.astype(np.uint16) * 65535, settings), labelled)
    assert (labelled == 255).any()


def test_edges_of_the_frame_are_not_mask_edges() -> None:
    mask = np.zeros((50, 50), np.uint8)
    mask[:, :30] = 255  # touches the top, bottom and left of the frame
    trimap = trimap_from_mask(mask, _settings("10px"))
    assert (trimap[:, :25] == 255).all() and (trimap[:, 35:] == 0).all()
    assert (trimap_from_mask(np.zeros((30, 40), np.uint8), _settings("10px")) == 0).all()
    assert (trimap_from_mask(np.full((30, 40), 255, np.uint8), _settings("10px")) == 255).all()


def test_float_masks_are_clipped_and_nan_is_soft() -> None:
    mask = np.array([[-0.5, 0.5, 2.0, np.nan]], np.float32).repeat(4, axis=0)
    assert trimap_from_mask(mask, _settings("0"))[0].tolist() == [0, 128, 255, 128]


@pytest.mark.parametrize(
    ("text", "value", "unit", "shown"),
    [("12", 12.0, "px", "12px"), ("12px", 12.0, "px", "12px"), (" 7.5PX ", 7.5, "px", "7.5px"),
     ("0.5%", 0.005, "diagonal", "0.5%"), ("4%", 0.04, "diagonal", "4%"), (".5%", 0.005, "diagonal", "0.5%")],
)  # fmt: skip
def test_band_width_parsing(text: str, value: float, unit: str, shown: str) -> None:
    band = BandWidth.parse(text)
    assert (band.value, band.unit, str(band)) == (pytest.approx(value), unit, shown)
    assert BandWidth.parse(str(band)) == band


@pytest.mark.parametrize("text", ["", "abc", "-3", "12 pixels", "150%", "1e3", "nan"])
def test_bad_band_widths_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="band"):
        BandWidth.parse(text)


def test_band_in_pixels_of_a_diagonal() -> None:
    assert BandWidth(0.01, "diagonal").pixels(300, 400) == pytest.approx(5.0)
    assert BandWidth(12).pixels(300, 400) == 12


@pytest.mark.parametrize(("fg", "bg"), [(0.5, 0.5), (0.2, 0.8), (1.5, 0.1), (0.9, -0.1)])
def test_bad_thresholds_are_refused(fg: float, bg: float) -> None:
    with pytest.raises(InputError, match="threshold"):
        MaskTrimapSettings(fg_threshold=fg, bg_threshold=bg)


def test_mask_must_be_one_channel() -> None:
    with pytest.raises(ValueError, match="one channel"):
        trimap_from_mask(np.zeros((4, 4, 3), np.uint8), MaskTrimapSettings())
