"""FBA input encodings: golden trimap encoding, hand-computed distances, empty regions, layouts,
and the windowed encoding of tiles against the whole-frame one on real trimaps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mattecli.inputs import FrameInputs
from mattecli.media.imageio import read_gray
from mattecli.models import contract_for
from mattecli.preprocess import (
    ALIGNMENT,
    FBA_ENCODING_LENGTH,
    FBA_ENCODING_REACH,
    FBA_ENCODING_SCALES,
    FBA_ENCODING_TOLERANCE,
    Scratch,
    definite_regions,
    encoding_reach,
    encoding_window,
    fba_inputs,
    fba_trimap_encoding,
    imagenet_normalise,
    region_distance,
    two_channel_trimap,
)
from mattecli.tiling import plan_tiles


def chw(a: np.ndarray) -> np.ndarray:
    return a.transpose(2, 0, 1)


def test_golden_trimap_encoding(shared_reference: Path) -> None:
    golden = np.load(shared_reference / "fba_golden.npz")
    two_chan = golden["two_chan_trimap"][0].transpose(1, 2, 0)
    encoding = fba_trimap_encoding(two_chan)
    assert encoding.shape == (96, 128, 6) and encoding.dtype == np.float32
    expected = golden["trimap_transformed"][0]
    assert np.abs(chw(encoding) - expected).max() < 1e-5
    # The crop has both regions and an unknown band: every map is non-trivial.
    assert all(0.0 < m.mean() < 1.0 for m in expected)


def test_golden_imagenet_normalisation(shared_reference: Path) -> None:
    golden = np.load(shared_reference / "fba_golden.npz")
    normalised = imagenet_normalise(golden["image"][0].transpose(1, 2, 0))
    assert np.abs(chw(normalised) - golden["image_n"][0]).max() < 1e-6


def test_hand_computed_distances() -> None:
    trimap = np.full((9, 11), 128, np.uint8)
    trimap[4, 5] = 255  # one definite-foreground pixel
    trimap[:, 0] = 0  # a definite-background column
    encoding = fba_trimap_encoding(two_channel_trimap(trimap))
    sigmas = [0.02 * 320, 0.08 * 320, 0.16 * 320]
    for j, sigma in enumerate(sigmas):
        fg, bg = encoding[..., 3 + j], encoding[..., j]
        assert fg[4, 5] == 1.0 and bg[2, 0] == 1.0
        np.testing.assert_allclose(fg[4, 8], np.exp(-9 / (2 * sigma**2)), rtol=1e-6)  # d = 3
        np.testing.assert_allclose(fg[1, 9], np.exp(-25 / (2 * sigma**2)), rtol=1e-5)  # d = 5 (3-4-5)
        np.testing.assert_allclose(bg[7, 10], np.exp(-100 / (2 * sigma**2)), rtol=1e-5)  # d = 10
    assert encoding[4, 8, 3] < encoding[4, 8, 4] < encoding[4, 8, 5]  # wider scales decay slower


def test_missing_region_gives_zero_maps() -> None:
    """No definite background: its distance is infinite everywhere, so its maps are 0 (as the reference)."""
    trimap = np.full((6, 8), 128, np.uint8)
    trimap[:, 6:] = 255
    encoding = fba_trimap_encoding(two_channel_trimap(trimap))
    assert not encoding[..., :3].any()
    assert encoding[..., 3:].min() > 0.0 and encoding[0, 7, 3] == 1.0
    all_unknown = fba_trimap_encoding(two_channel_trimap(np.full((4, 4), 128, np.uint8)))
    assert not all_unknown.any()


@pytest.mark.parametrize(
    ("dtype", "unknown", "full"), [(np.uint8, 128, 255), (np.uint16, 32768, 65535), (np.float32, 0.5, 1.0)]
)
def test_two_channel_trimap_dtypes(dtype: type, unknown: float, full: float) -> None:
    trimap = np.array([[0, unknown, full]], dtype=dtype)
    two_chan = two_channel_trimap(trimap)
    assert two_chan.dtype == np.float32
    np.testing.assert_array_equal(two_chan[..., 0], [[1, 0, 0]])
    np.testing.assert_array_equal(two_chan[..., 1], [[0, 0, 1]])


def test_two_channel_trimap_rejects_colour() -> None:
    with pytest.raises(ValueError, match="single-channel"):
        two_channel_trimap(np.zeros((4, 4, 3), np.uint8))


def test_fba_inputs_layout() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.random((10, 12, 3), dtype=np.float32)
    trimap = np.full((10, 12), 128, np.uint8)
    trimap[:3] = 0
    trimap[-3:] = 255
    inputs = fba_inputs(rgb, trimap)
    assert list(inputs) == ["image", "two_chan_trimap", "trimap_transformed"]
    assert [v.shape for v in inputs.values()] == [(1, 3, 10, 12), (1, 2, 10, 12), (1, 6, 10, 12)]
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in inputs.values())
    np.testing.assert_array_equal(inputs["image"][0], chw(rgb))
    np.testing.assert_array_equal(
        inputs["trimap_transformed"][0], chw(fba_trimap_encoding(two_channel_trimap(trimap)))
    )


# --- the encoding computed over a window around the tiles ----------------------------------------

SIGMAS = np.array([s * FBA_ENCODING_LENGTH for s in FBA_ENCODING_SCALES])
FBA = contract_for("fba-resnet18")


def test_reach_is_the_smallest_distance_that_keeps_every_map_under_the_tolerance() -> None:
    assert FBA_ENCODING_REACH == 270
    widest = SIGMAS.max()
    assert np.exp(-(FBA_ENCODING_REACH**2) / (2 * widest**2)) <= FBA_ENCODING_TOLERANCE
    assert np.exp(-((FBA_ENCODING_REACH - 1) ** 2) / (2 * widest**2)) > FBA_ENCODING_TOLERANCE
    assert encoding_reach(1e-3) < FBA_ENCODING_REACH


@pytest.mark.parametrize("name", ["GT01", "GT14", "GT26"])
def test_windowed_encoding_stays_within_the_proved_bound_on_real_trimaps(
    shared_data: Path, name: str
) -> None:
    """Each tile of a real trimap, its encoding computed over the tile grown by ``reach`` only.

    Where the true distance is at most ``reach`` the maps equal the whole-frame ones; elsewhere
    they may differ, by less than exp(-reach^2 / 2 sigma^2) per map. Small reaches make the window
    cut off real region pixels (the maps do differ there); the production reach keeps every
    difference under the tolerance.
    """
    trimap = read_gray(shared_data / "alphamatting" / "trimap" / f"{name}.png")
    frame = FrameInputs(FBA, np.zeros((*trimap.shape, 3), np.uint8), trimap)
    padded = frame.trimap
    whole = fba_trimap_encoding(two_channel_trimap(padded)).transpose(2, 0, 1)
    distances = [
        cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        for region in definite_regions(padded)
    ]
    plan = plan_tiles(frame.unknown, tile=128, context=16, blend=16, multiple=8)
    assert len(plan) >= 5
    for reach in (16, 48, FBA_ENCODING_REACH):
        bound = np.tile(np.exp(-(reach**2) / (2 * SIGMAS**2)), 2)  # per map: bg s1..s3, fg s1..s3
        worst = np.zeros(6)
        cut_off = 0
        for y, x, h, w in plan.rects():
            frame.read_only([(y, x, h, w)], reach=reach)
            window = frame.write("trimap_gauss6", y, x, np.empty((6, h, w), np.float32))
            diff = np.abs(window - whole[:, y : y + h, x : x + w])
            worst = np.maximum(worst, diff.reshape(6, -1).max(axis=1))
            for k, dist in enumerate(distances):
                near = dist[y : y + h, x : x + w] <= reach
                assert diff[3 * k : 3 * k + 3][:, near].max(initial=0.0) <= 1e-6, "wrong where d <= reach"
                cut_off += int(np.count_nonzero(diff[3 * k : 3 * k + 3][:, ~near]))
        assert (worst <= bound + 1e-7).all(), (reach, worst, bound)
        if reach < 100:
            assert cut_off > 0 and worst.max() > 0.1, "the window cut nothing off: the test proves nothing"
        else:
            assert worst.max() <= FBA_ENCODING_TOLERANCE


def test_windowed_encoding_of_a_whole_plan_matches_the_whole_frame_within_the_tolerance(
    shared_data: Path,
) -> None:
    """A real trimap in a larger frame (an object in a wide shot).

    The window is the tiles' bounding box grown by the production reach, well short of the frame.
    """
    trimap = read_gray(shared_data / "alphamatting" / "trimap" / "GT05.png")
    canvas = np.zeros((1200, 1800), np.uint8)
    canvas[100 : 100 + trimap.shape[0], 800 : 800 + trimap.shape[1]] = trimap
    frame = FrameInputs(FBA, np.zeros((*canvas.shape, 3), np.uint8), canvas)
    plan = plan_tiles(frame.unknown, tile=256, context=32, blend=16, multiple=8)
    frame.read_only(plan.rects())
    y0, x0, y1, x1 = encoding_window(plan.rects(), *canvas.shape)
    assert (y1 - y0) * (x1 - x0) < 0.75 * canvas.size  # the window really is smaller than the frame
    whole = fba_trimap_encoding(two_channel_trimap(canvas)).transpose(2, 0, 1)
    for y, x, h, w in plan.rects():
        window = frame.write("trimap_gauss6", y, x, np.empty((6, h, w), np.float32))
        assert np.abs(window - whole[:, y : y + h, x : x + w]).max() <= FBA_ENCODING_TOLERANCE
    with pytest.raises(ValueError, match="outside the encoding window"):
        frame.write("trimap_gauss6", 0, 0, np.empty((6, 64, 64), np.float32))


def test_distances_land_in_an_aligned_reused_buffer_and_repeat_exactly() -> None:
    rng = np.random.default_rng(4)
    region = rng.random((123, 217)) < 0.01
    scratch = Scratch()
    first = region_distance(region, scratch, "d")
    assert first is not None and first.ctypes.data % ALIGNMENT == 0
    kept = first.copy()
    again = region_distance(region, scratch, "d")
    assert again is not None and np.shares_memory(first, again)  # the same memory, frame after frame
    np.testing.assert_array_equal(again, kept)
    assert region_distance(np.zeros((5, 5), bool), scratch, "d") is None  # no region: infinitely far


def test_scratch_buffers_only_grow_and_stay_aligned() -> None:
    scratch = Scratch()
    big = scratch.get("a", (100, 300))
    small = scratch.get("a", (40, 20), np.int32)
    assert np.shares_memory(big, small) and small.flags.c_contiguous and small.dtype == np.int32
    bigger = scratch.get("a", (400, 300))
    assert not np.shares_memory(big, bigger)
    for array in (big, small, bigger, scratch.get("b", (3, 7), np.uint8)):
        assert array.ctypes.data % ALIGNMENT == 0
    assert scratch.nbytes == 400 * 300 * 4 + 3 * 7
