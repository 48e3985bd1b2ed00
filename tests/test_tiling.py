"""Tiled inference: the plan covers the unknown band only, stitching is exact for local nets, and
blending only the band's pixels gives the whole-frame blend with buffers reused between frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.base import open_engine
from mattecli.preprocess import Scratch
from mattecli.tiling import PixelSet, TilePlan, padded_size, plan_tiles, stitch_tiles


def _band(height: int, width: int) -> np.ndarray:
    """A ring-shaped unknown band like a trimap around an object."""
    yy, xx = np.mgrid[:height, :width]
    r = np.hypot(yy - height * 0.45, xx - width * 0.4)
    return (r > 30) & (r < 42)


def test_plan_keeps_only_tiles_with_unknown_pixels_and_covers_the_band() -> None:
    band = _band(256, 320)
    plan = plan_tiles(band, tile=64, context=8, blend=8, multiple=8)
    total_grid = len(plan_tiles(np.ones_like(band), tile=64, context=8, blend=8, multiple=8))
    assert 0 < len(plan) < total_grid
    weight = np.zeros(band.shape, np.float32)
    for t in plan.tiles:
        assert t.y % 8 == 0 and t.x % 8 == 0
        region = band[t.y : t.y + plan.tile_h, t.x : t.x + plan.tile_w]
        assert region[t.weight > 0].any(), "a tile without an unknown pixel was planned"
        weight[t.y : t.y + plan.tile_h, t.x : t.x + plan.tile_w] += t.weight
    assert (weight[band] > 0).all(), "an unknown pixel is covered by no tile"


def test_empty_band_plans_no_tile_and_small_frame_gets_one_tile() -> None:
    assert len(plan_tiles(np.zeros((64, 64), bool), tile=64, context=4, blend=4, multiple=8)) == 0
    small = plan_tiles(np.ones((40, 48), bool), tile=512, context=16, blend=16, multiple=8)
    assert (len(small), small.tile_h, small.tile_w) == (1, 40, 48)
    assert (small.tiles[0].weight == 1).all()


def test_plan_rejects_unpadded_frames_and_tiles_too_small_for_their_margins() -> None:
    with pytest.raises(ValueError, match="multiple"):
        plan_tiles(np.ones((60, 64), bool), tile=64, context=4, blend=4, multiple=8)
    with pytest.raises(ValueError, match="larger tile"):
        plan_tiles(np.ones((256, 256), bool), tile=64, context=24, blend=16, multiple=8)


def test_tiled_equals_whole_frame_for_a_local_network(local_onnx: Path) -> None:
    from mattecli.tiling import infer_tiled

    engine = open_engine("ort", local_onnx, "cpu")
    height, width = padded_size(250, 330, 8)
    rng = np.random.default_rng(1)
    image = rng.random((3, height, width), dtype=np.float32)
    band = _band(height, width)
    whole = engine.infer({"image": image[None]})["alpha"][0]

    plan = plan_tiles(band, tile=96, context=4, blend=12, multiple=8)
    fill = {"alpha": np.full((1, height, width), -1.0, np.float32)}
    tiled = infer_tiled(engine.infer, {"image": image}, plan, fill, batch_size=3)["alpha"]

    covered = tiled[0] != -1.0
    assert covered[band].all()
    np.testing.assert_allclose(tiled[:, covered], whole[:, covered], atol=1e-5, rtol=0)
    # With margins smaller than the receptive field, tiles would disagree with the whole frame.
    loose = plan_tiles(band, tile=96, context=0, blend=12, multiple=8)
    off = infer_tiled(engine.infer, {"image": image}, loose, fill, batch_size=3)["alpha"]
    assert np.abs(off[:, covered] - whole[:, covered]).max() > 1e-3


def _whole_frame_blend(engine: object, image: np.ndarray, plan: TilePlan) -> tuple[np.ndarray, np.ndarray]:
    """The reference: every tile's whole output times its weight, summed over full-frame buffers."""
    total = np.zeros((1, plan.height, plan.width), np.float32)
    weight = np.zeros((plan.height, plan.width), np.float32)
    for t in plan.tiles:
        crop = image[None, :, t.y : t.y + plan.tile_h, t.x : t.x + plan.tile_w]
        out = engine.infer({"image": crop})["alpha"][0]  # type: ignore[attr-defined]
        total[:, t.y : t.y + plan.tile_h, t.x : t.x + plan.tile_w] += out * t.weight
        weight[t.y : t.y + plan.tile_h, t.x : t.x + plan.tile_w] += t.weight
    return total, weight


def test_blending_only_the_band_gives_the_whole_frame_blend_to_the_bit(local_onnx: Path) -> None:
    engine = open_engine("ort", local_onnx, "cpu", threads=1)
    height, width = padded_size(250, 330, 8)
    image = np.random.default_rng(2).random((3, height, width), dtype=np.float32)
    band = _band(height, width)
    plan = plan_tiles(band, tile=96, context=4, blend=12, multiple=8)
    total, weight = _whole_frame_blend(engine, image, plan)
    np.testing.assert_array_equal(plan.coverage(), weight > 0)

    pixels = PixelSet(band)
    assert len(pixels) == band.sum()

    def write_input(kind: str, y: int, x: int, out: np.ndarray) -> None:
        out[...] = image[:, y : y + plan.tile_h, x : x + plan.tile_w]

    values = stitch_tiles(engine.infer, write_input, {"image": 3}, plan, pixels, ["alpha"], batch_size=3)
    assert values["alpha"].shape == (len(pixels), 1)
    expected = total[:, band] / weight[band]
    np.testing.assert_array_equal(values["alpha"].T, expected)
    frame = pixels.scatter(values["alpha"], np.full((1, height, width), -1.0, np.float32))
    np.testing.assert_array_equal(pixels.gather(frame), values["alpha"])
    assert (frame[0][~band] == -1.0).all()


def test_tiles_share_read_only_weights_and_buffers_are_reused_across_batches_and_frames(
    local_onnx: Path,
) -> None:
    engine = open_engine("ort", local_onnx, "cpu", threads=1)
    band = _band(256, 320)
    plan = plan_tiles(band, tile=64, context=8, blend=8, multiple=8)
    full = plan_tiles(np.ones_like(band), tile=64, context=8, blend=8, multiple=8)
    assert len({id(t.weight) for t in full.tiles}) == 9 < len(full)  # 3 edge cases per axis
    with pytest.raises(ValueError, match="read-only"):
        full.tiles[0].weight[0, 0] = 2.0

    addresses: set[int] = set()

    def infer(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        addresses.add(feed["image"].ctypes.data)
        return engine.infer(feed)

    image = np.random.default_rng(3).random((3, 256, 320), dtype=np.float32)

    def write_input(kind: str, y: int, x: int, out: np.ndarray) -> None:
        out[...] = image[:, y : y + plan.tile_h, x : x + plan.tile_w]

    scratch = Scratch()
    pixels = PixelSet(band, scratch)
    first = stitch_tiles(infer, write_input, {"image": 3}, plan, pixels, ["alpha"], scratch=scratch)[
        "alpha"
    ].copy()
    held = scratch.nbytes
    again = stitch_tiles(infer, write_input, {"image": 3}, plan, pixels, ["alpha"], scratch=scratch)["alpha"]
    assert len(plan.tiles) > 4 and len(addresses) == 1  # every batch, both frames: one input buffer
    assert scratch.nbytes == held
    np.testing.assert_array_equal(again, first)
