"""The predictor stage of the frame path: one frame's inputs -> the network's outputs at chosen pixels.

Two predictors, one per kind of model:

* :class:`TilePredictor`, for networks that take a whole frame (FBA, GFM, ...): the whole padded
  frame in one engine call, or tiles over the trimap's unknown band (:mod:`mattecli.tiling`);
* :class:`BandPredictor`, for band models (:mod:`mattecli.band_inputs`): one engine call on the
  frame's coarse view and the cells of the unknown band (:class:`mattecli.band_predictor.BandPlan`).

Both first *plan* a frame, which says which pixels the engine work will compute
(:meth:`NetworkPass.restrict`); the caller then chooses the pixels it needs among those, and only
their values are gathered (:meth:`NetworkPass.values`). The engine call is timed as ``engine`` and
building its inputs as ``preprocess``, where the predictor hands them to each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np

from engines.base import Engine
from mattecli.band_predictor import BandPlan, CellChoice
from mattecli.inputs import INPUT_CHANNELS, FrameInputs
from mattecli.preprocess import Scratch
from mattecli.run_options import TileOptions
from mattecli.stage_timing import timed
from mattecli.summary import StageClock
from mattecli.tiling import PixelSet, TilePlan, plan_tiles, stitch_tiles

Infer = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
Accepts = Callable[[Mapping[str, tuple[int, ...]]], bool]
WriteInput = Callable[[str, int, int, np.ndarray], object]


class NetworkPass(Protocol):
    """The engine work planned for one frame."""

    def restrict(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` (padded H x W bool) with the pixels this pass does not compute cleared, in place."""
        ...

    def values(self, pixels: PixelSet) -> dict[str, np.ndarray]:
        """The network's N x C outputs per kind at ``pixels``, all of which the pass computes."""
        ...


class Predictor(Protocol):
    """Plans the engine work of a frame."""

    def plan(self, inputs: FrameInputs) -> NetworkPass: ...


class _WholeFrame:
    """One engine call on the whole padded frame."""

    def __init__(
        self,
        inputs: FrameInputs,
        infer: Infer,
        write_input: WriteInput,
        kinds: tuple[str, ...],
        scratch: Scratch,
    ) -> None:
        self._inputs, self._infer, self._write_input = inputs, infer, write_input
        self._kinds, self._scratch = kinds, scratch

    def restrict(self, mask: np.ndarray) -> np.ndarray:
        return mask

    def values(self, pixels: PixelSet) -> dict[str, np.ndarray]:
        inputs = self._inputs
        feed = {
            kind: self._scratch.get(f"feed-{kind}", (1, INPUT_CHANNELS[kind], *inputs.padded_shape))
            for kind in inputs.kinds
        }
        for kind, buffer in feed.items():
            self._write_input(kind, 0, 0, buffer[0])
        outputs = self._infer(feed)
        return {kind: pixels.gather(outputs[kind][0]) for kind in self._kinds}


class _Tiles:
    """Engine calls on batches of tiles, blended where they overlap."""

    def __init__(
        self,
        inputs: FrameInputs,
        plan: TilePlan,
        infer: Infer,
        write_input: WriteInput,
        kinds: tuple[str, ...],
        batch: int,
        scratch: Scratch,
    ) -> None:
        self._inputs, self._plan, self._infer, self._write_input = inputs, plan, infer, write_input
        self._kinds, self._batch, self._scratch = kinds, batch, scratch

    def restrict(self, mask: np.ndarray) -> np.ndarray:
        mask &= self._plan.coverage()
        return mask

    def values(self, pixels: PixelSet) -> dict[str, np.ndarray]:
        inputs = self._inputs
        inputs.read_only(self._plan.rects())
        return stitch_tiles(
            self._infer,
            self._write_input,
            {kind: INPUT_CHANNELS[kind] for kind in inputs.kinds},
            self._plan,
            pixels,
            self._kinds,
            batch_size=self._batch,
            scratch=self._scratch,
        )


class TilePredictor:
    """A whole-frame network, run on the whole padded frame or on tiles of the unknown band.

    Tiles are for frames too big to run whole. When one engine call's worth of tiles would
    already hold as many pixels as the whole frame, the frame costs no more memory and less
    compute whole (tiles overlap), and its network sees all the context: it then runs whole,
    provided the engine accepts the whole frame's shape (a TensorRT engine built for 512 x 512
    tiles does not), and is tiled otherwise. ``tiles.size=None`` always runs whole frames.
    """

    def __init__(
        self, engine: Engine, tiles: TileOptions, kinds: tuple[str, ...], scratch: Scratch, clock: StageClock
    ) -> None:
        self._engine = engine
        self._tiles = tiles
        self._kinds = kinds
        self._scratch = scratch
        self._clock = clock
        self._infer = timed(clock, "engine", engine.infer)

    def plan(self, inputs: FrameInputs) -> NetworkPass:
        write_input = timed(self._clock, "preprocess", inputs.write)
        whole = _WholeFrame(inputs, self._infer, write_input, self._kinds, self._scratch)
        tiles = self._tiles
        if tiles.size is None:
            return whole
        plan = plan_tiles(
            inputs.unknown,
            tile=tiles.size,
            context=tiles.context,
            blend=tiles.blend,
            multiple=self._engine.contract.size_multiple,
        )
        padded_h, padded_w = inputs.padded_shape
        one_call = min(len(plan), tiles.batch) * plan.tile_h * plan.tile_w
        if len(plan) and padded_h * padded_w <= one_call and self._accepts_whole(inputs):
            return whole
        return _Tiles(inputs, plan, self._infer, write_input, self._kinds, tiles.batch, self._scratch)

    def _accepts_whole(self, inputs: FrameInputs) -> bool:
        shapes = {kind: (1, INPUT_CHANNELS[kind], *inputs.padded_shape) for kind in inputs.kinds}
        return self._engine.accepts(shapes)


class _Band:
    """One engine call on the coarse view and the plan's cells."""

    def __init__(
        self, plan: BandPlan, infer: Infer, accepts: Accepts, clock: StageClock, kinds: tuple[str, ...]
    ) -> None:
        self._plan, self._infer, self._accepts, self._kinds = plan, infer, accepts, kinds
        self._feed = timed(clock, "preprocess", plan.feed)

    def restrict(self, mask: np.ndarray) -> np.ndarray:
        mask &= self._plan.coverage()
        return mask

    def values(self, pixels: PixelSet) -> dict[str, np.ndarray]:
        return self._plan.values(self._infer, self._feed(), pixels, self._kinds, self._accepts)


class BandPredictor:
    """A band model: global context from a coarse view of the frame, full resolution only in the band.

    ``cells="all"`` computes every cell of the frame: the whole-frame inference that band
    inference reproduces inside the band (for fidelity checks).
    """

    def __init__(self, engine: Engine, cells: CellChoice, kinds: tuple[str, ...], clock: StageClock) -> None:
        self._cells = cells
        self._kinds = kinds
        self._clock = clock
        self._infer = timed(clock, "engine", engine.infer)
        self._accepts = engine.accepts

    def plan(self, inputs: FrameInputs) -> NetworkPass:
        return _Band(BandPlan(inputs, self._cells), self._infer, self._accepts, self._clock, self._kinds)


def predictor_for(
    engine: Engine,
    *,
    tiles: TileOptions,
    band_cells: CellChoice,
    kinds: tuple[str, ...],
    scratch: Scratch,
    clock: StageClock,
) -> Predictor:
    """The predictor for ``engine``'s model, computing the output ``kinds``."""
    if engine.contract.architecture == "band":
        return BandPredictor(engine, band_cells, kinds, clock)
    return TilePredictor(engine, tiles, kinds, scratch, clock)
