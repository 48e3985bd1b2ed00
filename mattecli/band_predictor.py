"""The predictor of band models: one engine call per frame, on the coarse view and the band's cells.

For a band model (:mod:`mattecli.band_inputs`) the frame's plan is its *cells*: the 16×16 squares
holding unknown trimap pixels. One engine call takes the frame's coarse view and every cell's
patch, and returns each cell's alpha, F and B; pixels outside the cells keep what the trimap
fixes. ``cells="all"`` computes every cell of the frame instead: the whole-frame inference that
band inference must (and by construction does) reproduce inside the band.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import numpy as np

from mattecli import band_inputs
from mattecli.errors import InputError
from mattecli.inputs import FrameInputs
from mattecli.tiling import PixelSet

CellChoice = Literal["band", "all"]
# The most cells one engine call computes. The refiner's activations grow with the cells of a call,
# so a frame with more cells goes in several calls, each repeating the coarse pass. Measured on 2
# cores with the packaged model, an 8000x6000 photo with 40 % of it unknown (75,000 cells; its
# coarse pass alone: 2.4 GB, 2.6 s): one call 20.3 GB peak resident and 57 s; at most 16,384 cells
# a call 10.7 GB, 48 s; 8,192: 6.8 GB, 46 s; 4,096: 6.1 GB, 67 s (the coarse pass repeated 19
# times). A 4K frame with 35 % unknown: 2.9 GB and 5.9 s in one call, 2.6 GB and 6.9 s in two.
MAX_CELLS_PER_CALL = 8192
UNBOUNDED_CELLS = 1 << 30  # a count no engine with a fixed maximum accepts


class BandPlan:
    """The cells of one padded frame and the inputs of the engine call that computes them."""

    def __init__(
        self,
        inputs: FrameInputs,
        cells: CellChoice = "band",
        geometry: band_inputs.BandGeometry = band_inputs.DEFAULT_GEOMETRY,
    ) -> None:
        if inputs.trimap is None:
            raise ValueError("a band model needs a trimap")
        self.geometry = geometry
        self.padded_shape = inputs.padded_shape
        if cells == "all":
            self.cells = band_inputs.all_cells(inputs.height, inputs.width, geometry.cell)
        else:
            self.cells = band_inputs.band_cells(inputs.trimap, inputs.height, inputs.width, geometry.cell)
        self._inputs = inputs

    def __len__(self) -> int:
        return len(self.cells)

    def coverage(self) -> np.ndarray:
        """Padded H×W bool: the pixels of the plan's cells."""
        c = self.geometry.cell
        grid = np.zeros((self.padded_shape[0] // c, self.padded_shape[1] // c), dtype=bool)
        grid[self.cells[:, 0], self.cells[:, 1]] = True
        return np.repeat(np.repeat(grid, c, axis=0), c, axis=1)

    def feed(self) -> dict[str, np.ndarray]:
        """The engine's three inputs, keyed by kind."""
        image, trimap = self._inputs.image, self._inputs.trimap
        assert trimap is not None
        coarse = band_inputs.coarse_input(image, trimap, self.geometry)
        return {
            "band_coarse": coarse,
            "band_patches": band_inputs.patch_input(image, trimap, self.cells, self.geometry),
            "band_index": band_inputs.patch_index(self.cells, *coarse.shape[2:], self.geometry),
        }

    def calls(
        self,
        feed: Mapping[str, np.ndarray],
        accepts: Callable[[Mapping[str, tuple[int, ...]]], bool] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """The feed split into engine calls: one, unless the engine or memory caps the cells per call.

        A TensorRT engine takes only as many cells as its profile's maximum, for which it reserved
        its memory when it was built; an engine that takes any number (ONNX Runtime, torch)
        allocates per call, so it gets at most :data:`MAX_CELLS_PER_CALL`. The cells then go in
        consecutive groups, each with the frame's coarse view (the coarse pass is repeated, the
        outputs are the same).
        """
        total = len(self.cells)
        if total == 0:
            return [dict(feed)]

        def shapes(count: int) -> dict[str, tuple[int, ...]]:
            return {
                kind: array.shape if kind == "band_coarse" else (count, *array.shape[1:])
                for kind, array in feed.items()
            }

        def fits(count: int) -> bool:
            return accepts is None or accepts(shapes(count))

        size = total
        if fits(UNBOUNDED_CELLS):  # an engine that allocates per call: even groups under the cap
            size = math.ceil(total / math.ceil(total / MAX_CELLS_PER_CALL))
        while size > 1 and not fits(size):
            size = (size + 1) // 2
        if not fits(size):
            raise InputError(
                f"the engine accepts no call for this frame "
                f"({self.padded_shape[1]}x{self.padded_shape[0]} padded)",
                hint="rebuild the TensorRT engine with a --max-size that covers the frame",
            )
        return [
            {
                kind: array if kind == "band_coarse" else array[start : start + size]
                for kind, array in feed.items()
            }
            for start in range(0, total, size)
        ]

    def values(
        self,
        infer: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]],
        feed: Mapping[str, np.ndarray],
        pixels: PixelSet,
        kinds: Iterable[str],
        accepts: Callable[[Mapping[str, tuple[int, ...]]], bool] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the engine and pick each kind's N×C values at ``pixels`` (all inside the cells)."""
        calls = self.calls(feed, accepts)
        parts = [infer(call) for call in calls]
        outputs = {kind: np.concatenate([part[kind] for part in parts]) for kind in parts[0]}
        c = self.geometry.cell
        slot_of = np.full((self.padded_shape[0] // c, self.padded_shape[1] // c), -1, dtype=np.int64)
        slot_of[self.cells[:, 0], self.cells[:, 1]] = np.arange(len(self.cells))
        y, x = np.divmod(pixels.index, self.padded_shape[1])
        slot = slot_of[y // c, x // c]
        position = (y % c) * c + (x % c)
        values = {}
        for kind in kinds:
            out = outputs[kind]
            values[kind] = out.reshape(out.shape[0], out.shape[1], -1)[slot, :, position]
        return values
