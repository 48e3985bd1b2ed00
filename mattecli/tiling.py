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

Blending keeps sums only for the pixels whose outputs are wanted (a :class:`PixelSet`, usually
the unknown band), not for whole frames: at 4K that is a few hundred thousand pixels instead of
eight million per channel, and the tiles' input and sum buffers are reused from batch to batch
and frame to frame (:class:`mattecli.preprocess.Scratch`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from mattecli.preprocess import Scratch


@dataclass(frozen=True)
class Tile:
    """One tile: its top-left corner in the padded frame and its blend weights.

    Tiles with the same edges inside the frame share one read-only weight array. ``core`` is
    the rectangle (top, bottom, left, right; tile coordinates, ends exclusive) where the weight
    is non-zero: the pixels this tile computes.
    """

    y: int
    x: int
    weight: np.ndarray  # tile_h x tile_w float32, zero over context margins
    core: tuple[int, int, int, int]


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

    def rects(self) -> list[tuple[int, int, int, int]]:
        """Each tile's (y, x, h, w): where its inputs are read."""
        return [(t.y, t.x, self.tile_h, self.tile_w) for t in self.tiles]

    def coverage(self) -> np.ndarray:
        """H x W bool: pixels where some tile has a non-zero weight (the pixels it computes)."""
        covered = np.zeros((self.height, self.width), dtype=bool)
        for t in self.tiles:
            top, bottom, left, right = t.core
            covered[t.y + top : t.y + bottom, t.x + left : t.x + right] = True
        return covered


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


def _positive(weights: np.ndarray) -> tuple[int, int]:
    """Where a 1-D ramp is non-zero, as (start, end): one run, since only the margins are zero."""
    nonzero = np.flatnonzero(weights)
    return int(nonzero[0]), int(nonzero[-1]) + 1


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

    # Row/column weight profiles depend only on whether each edge is inside the frame, so at most
    # sixteen weight arrays serve every tile.
    profiles: dict[tuple[bool, bool, bool, bool], np.ndarray] = {}
    tiles = []
    for y in ys:
        y_edges = (y > 0, y + tile_h < height)
        wy = _ramp(tile_h, *y_edges, context, blend)
        top, bottom = _positive(wy)
        for x in xs:
            x_edges = (x > 0, x + tile_w < width)
            wx = _ramp(tile_w, *x_edges, context, blend)
            left, right = _positive(wx)
            # Keep the tile only if an unknown pixel falls where its weight is non-zero.
            if not unknown[y + top : y + bottom, x + left : x + right].any():
                continue
            weight = profiles.get(y_edges + x_edges)
            if weight is None:
                weight = profiles[y_edges + x_edges] = np.outer(wy, wx)
                weight.flags.writeable = False
            tiles.append(Tile(y, x, weight, (top, bottom, left, right)))
    return TilePlan(height, width, tile_h, tile_w, tuple(tiles))


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """The smallest size at least ``height`` x ``width`` whose sides are multiples of ``multiple``."""
    return math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple


class PixelSet:
    """Some pixels of an H x W frame, in row-major order: where outputs are wanted.

    Outputs at these pixels are N x C arrays (channel-last, ready for per-pixel arithmetic such
    as fusion); :meth:`gather` and :meth:`scatter` move values between them and C x H x W frames.
    """

    def __init__(self, mask: np.ndarray, scratch: Scratch | None = None) -> None:
        self.shape: tuple[int, int] = mask.shape  # type: ignore[assignment]
        self.index = np.flatnonzero(mask)
        self._scratch = scratch if scratch is not None else Scratch()
        self._slots: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    @property
    def slots(self) -> np.ndarray:
        """H x W int32: each pixel's position in the set, -1 for pixels outside it."""
        if self._slots is None:
            slots = self._scratch.get("pixel-slots", self.shape, np.int32)
            slots.fill(-1)
            slots.ravel()[self.index] = np.arange(len(self.index), dtype=np.int32)
            self._slots = slots
        return self._slots

    def gather(self, array: np.ndarray) -> np.ndarray:
        """C x H x W (or H x W) → N x C (or N) values at the set's pixels."""
        if array.ndim == 2:
            return array.ravel()[self.index]
        return array.reshape(array.shape[0], -1)[:, self.index].T

    def scatter(self, values: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write N x C (or N) ``values`` into the set's pixels of ``out`` (C x H x W, or H x W)."""
        if out.ndim == 2:
            out.reshape(-1)[self.index] = values
        else:
            out.reshape(out.shape[0], -1)[:, self.index] = values.T
        return out


def stitch_tiles(
    infer: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]],
    write_input: Callable[[str, int, int, np.ndarray], object],
    channels: Mapping[str, int],
    plan: TilePlan,
    pixels: PixelSet,
    kinds: Iterable[str],
    *,
    batch_size: int = 4,
    scratch: Scratch | None = None,
) -> dict[str, np.ndarray]:
    """Run the plan's tiles through ``infer`` in batches; the blended outputs at ``pixels``.

    ``write_input(kind, y, x, out)`` fills ``out`` (C x tile_h x tile_w) with input ``kind`` for
    the tile at (y, x); ``channels`` gives each input kind's C. Returns, for each of ``kinds``
    that the network outputs, an N x C float32 array (a view of a C x N one): the weighted mean of
    the tiles' outputs at each pixel of ``pixels``, which must all be covered by some tile (see
    :meth:`TilePlan.coverage`). The arrays live in ``scratch`` until the next call with it.

    Sums are added tile by tile in plan order, as a whole-frame accumulator would, so the result
    is the same to the bit.
    """
    scratch = scratch if scratch is not None else Scratch()
    wanted = set(kinds)
    count = len(pixels)
    weight_sum = scratch.get("stitch-weight", (count,))
    weight_sum.fill(0.0)
    # Channel-first sums (C x N): each channel's gather and add runs over contiguous memory.
    sums: dict[str, np.ndarray] = {}
    slots = pixels.slots
    for batch in plan.batches(batch_size):
        feed = {
            kind: scratch.get(f"feed-{kind}", (len(batch), c, plan.tile_h, plan.tile_w))
            for kind, c in channels.items()
        }
        for i, t in enumerate(batch):
            for kind, buffer in feed.items():
                write_input(kind, t.y, t.x, buffer[i])
        outputs = infer(feed)
        for i, t in enumerate(batch):
            top, bottom, left, right = t.core
            core_slots = slots[t.y + top : t.y + bottom, t.x + left : t.x + right]
            take = core_slots >= 0
            where = core_slots[take]
            # Row-major positions in the whole tile, in the order of core_slots[take].
            rows, columns = np.divmod(np.flatnonzero(take), right - left)
            local = (rows + top) * plan.tile_w + (columns + left)
            weight = t.weight.ravel()[local]
            weight_sum[where] += weight
            for kind, value in outputs.items():
                if kind not in wanted:
                    continue
                channels_out = value.shape[1]
                if kind not in sums:
                    sums[kind] = scratch.get(f"stitch-{kind}", (channels_out, count))
                    sums[kind].fill(0.0)
                weighted = np.take(value[i].reshape(channels_out, -1), local, axis=1)
                weighted *= weight
                sums[kind][:, where] += weighted
    for total in sums.values():
        total /= weight_sum
    return {kind: total.T for kind, total in sums.items()}


def infer_tiled(
    infer: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]],
    inputs: Mapping[str, np.ndarray],
    plan: TilePlan,
    fill: Mapping[str, np.ndarray],
    *,
    batch_size: int = 4,
) -> dict[str, np.ndarray]:
    """Run ``infer`` over the plan's tiles in batches and blend the outputs into whole frames.

    ``inputs`` are whole-frame C x H x W arrays keyed by input kind; ``fill`` gives, per output
    kind, the C x H x W values for pixels no tile covers (the trimap's alpha, the image's colour).
    """

    def write_input(kind: str, y: int, x: int, out: np.ndarray) -> None:
        out[...] = inputs[kind][:, y : y + plan.tile_h, x : x + plan.tile_w]

    pixels = PixelSet(plan.coverage())
    channels = {kind: a.shape[0] for kind, a in inputs.items()}
    values = stitch_tiles(infer, write_input, channels, plan, pixels, fill, batch_size=batch_size)
    outputs = {kind: base.astype(np.float32, copy=True) for kind, base in fill.items()}
    for kind, value in values.items():
        pixels.scatter(value, outputs[kind])
    return outputs
