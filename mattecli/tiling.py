"""Tiled inference over the trimap's unknown band.

A 4K frame through a matting network whole costs gigabytes and mostly computes pixels whose
alpha the trimap already fixes. The tiler cuts the (padded) frame into equal tiles on a grid,
keeps only the tiles whose *weighted* area holds an unknown pixel, and blends their outputs:

- each tile edge that lies inside the frame gives up ``context`` pixels that only feed the
  network's receptive field (weight 0), then ramps up over ``blend`` pixels with a raised cosine;
  edges on the frame border keep full weight, as whole-frame inference would;
- grid steps are multiples of the model's size multiple, so every tile sees the same
  down-sampling phase as the whole frame (a stride-8 encoder gives the same features);
- outputs are accumulated with their weights and normalised by the weight sum.

For a network whose receptive-field radius is at most ``context``, every pixel with a non-zero
weight is computed exactly as in the whole frame, so the stitched result equals whole-frame
inference up to float rounding (a test shows it). Networks with global pooling see less context
per tile; how much that moves the error is measured, not assumed (see the README).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """One tile: its top-left corner in the padded frame and its blend weights."""

    y: int
    x: int
    weight: np.ndarray  # tile_h x tile_w float32, zero over context margins


@dataclass(frozen=True)
class TilePlan:
    """Where tiles go on a padded frame of ``height`` x ``width``, all of one size."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    tiles: tuple[Tile, ...]

    def __len__(self) -> int:
        return len(self.tiles)

    def batches(self, size: int) -> Iterator[tuple[Tile, ...]]:
        """Tiles in groups of ``size`` for batched inference."""
        for start in range(0, len(self.tiles), size):
            yield self.tiles[start : start + size]


def _origins(length: int, tile: int, step: int) -> list[int]:
    """Tile origins along one axis: a regular grid whose last tile ends at the border."""
    if tile >= length:
        return [0]
    origins = list(range(0, length - tile, step))
    origins.append(length - tile)
    return sorted(set(origins))


def _ramp(length: int, start_inside: bool, end_inside: bool, context: int, blend: int) -> np.ndarray:
    """1-D weights along a tile: 0 over context margins, raised-cosine ramps, 1 in the middle."""
    w = np.ones(length, dtype=np.float32)
    k = np.arange(blend, dtype=np.float32)
    rise = (0.5 - 0.5 * np.cos(np.pi * (k + 0.5) / blend)).astype(np.float32) if blend else k
    if start_inside:
        w[:context] = 0.0
        w[context : context + blend] = rise
    if end_inside:
        w[length - context :] = 0.0
        w[length - context - blend : length - context] = np.minimum(
            w[length - context - blend : length - context], rise[::-1]
        )
    return w


def plan_tiles(
    unknown: np.ndarray,
    *,
    tile: int,
    context: int,
    blend: int,
    multiple: int,
) -> TilePlan:
    """Plan tiles over a padded frame whose unknown pixels are ``unknown`` (H x W bool).

    ``unknown``'s size must already be a multiple of ``multiple``. A frame smaller than ``tile``
    along an axis gets one tile spanning that axis.
    """
    height, width = unknown.shape
    if height % multiple or width % multiple:
        raise ValueError(f"frame {height}x{width} is not padded to a multiple of {multiple}")
    tile = max(multiple, tile // multiple * multiple)
    if tile - 2 * context - blend < multiple:
        raise ValueError(
            f"tile {tile} leaves no room for 2 x context {context} + blend {blend}; use a larger tile"
        )
    tile_h, tile_w = min(tile, height), min(tile, width)
    step = (tile - 2 * context - blend) // multiple * multiple
    ys, xs = _origins(height, tile_h, step), _origins(width, tile_w, step)

    # Row/column weight profiles depend only on whether each edge is inside the frame.
    tiles = []
    for y in ys:
        wy = _ramp(tile_h, y > 0, y + tile_h < height, context, blend)
        rows = unknown[y : y + tile_h]
        for x in xs:
            wx = _ramp(tile_w, x > 0, x + tile_w < width, context, blend)
            region = rows[:, x : x + tile_w]
            # Keep the tile only if an unknown pixel falls where its weight is non-zero.
            if not region[np.ix_(wy > 0, wx > 0)].any():
                continue
            tiles.append(Tile(y, x, np.outer(wy, wx)))
    return TilePlan(height, width, tile_h, tile_w, tuple(tiles))


class Stitcher:
    """Accumulates weighted tile outputs into whole-frame channels."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        self._sum = np.zeros((channels, height, width), dtype=np.float32)
        self._weight = np.zeros((height, width), dtype=np.float32)

    def add(self, tile: Tile, output: np.ndarray) -> None:
        """Add one tile's C x h x w output."""
        h, w = tile.weight.shape
        self._sum[:, tile.y : tile.y + h, tile.x : tile.x + w] += output * tile.weight
        self._weight[tile.y : tile.y + h, tile.x : tile.x + w] += tile.weight

    @property
    def covered(self) -> np.ndarray:
        """H x W bool: pixels that some tile computed."""
        return self._weight > 0

    def result(self, fill: np.ndarray) -> np.ndarray:
        """Blended C x H x W output; pixels no tile covered take ``fill`` (C x H x W)."""
        out = fill.astype(np.float32, copy=True)
        covered = self.covered
        out[:, covered] = self._sum[:, covered] / self._weight[covered]
        return out


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """The smallest size at least ``height`` x ``width`` whose sides are multiples of ``multiple``."""
    return math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple


def infer_tiled(
    infer: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]],
    inputs: Mapping[str, np.ndarray],
    plan: TilePlan,
    fill: Mapping[str, np.ndarray],
    *,
    batch_size: int = 4,
) -> dict[str, np.ndarray]:
    """Run ``infer`` over the plan's tiles in batches and blend the outputs.

    ``inputs`` are whole-frame C x H x W arrays keyed by input kind; ``fill`` gives, per output
    kind, the C x H x W values for pixels no tile covers (the trimap's alpha, the image's colour).
    """
    stitchers: dict[str, Stitcher] = {}
    for batch in plan.batches(batch_size):
        feed = {
            kind: np.stack([a[:, t.y : t.y + plan.tile_h, t.x : t.x + plan.tile_w] for t in batch])
            for kind, a in inputs.items()
        }
        outputs = infer(feed)
        for kind, value in outputs.items():
            if kind not in fill:
                continue
            st = stitchers.setdefault(kind, Stitcher(value.shape[1], plan.height, plan.width))
            for t, out in zip(batch, value, strict=True):
                st.add(t, out)
    return {
        kind: (stitchers[kind].result(base) if kind in stitchers else base.astype(np.float32))
        for kind, base in fill.items()
    }
