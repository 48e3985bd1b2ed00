"""The predictor of band models: one engine call per frame, on the coarse view and the band's cells.

For a band model (:mod:`mattecli.band_inputs`) the frame's plan is its *cells*: the 16×16 squares
holding unknown trimap pixels. One engine call takes the frame's coarse view and every cell's
patch, and returns each cell's alpha, F and B; pixels outside the cells keep what the trimap
fixes. ``cells="all"`` computes every cell of the frame instead: the whole-frame inference that
band inference must (and by construction does) reproduce inside the band.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import numpy as np

from mattecli import band_inputs
from mattecli.errors import InputError
from mattecli.inputs import FrameInputs
from mattecli.tiling import PixelSet

CellChoice = Literal["band", "all"]


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
        self, feed: Mapping[str, np.ndarray], accepts: Callable[[Mapping[str, tuple[int, ...]]], bool]
    ) -> list[dict[str, np.ndarray]]:
        """The feed split into engine calls the engine accepts: one, unless it caps the cells per call.

        A TensorRT engine takes only as many cells as its profile's maximum; then the cells go in
        consecutive groups, each with the frame's coarse view (the coarse pass is repeated, the
        outputs are the same).
        """
        total = len(self.cells)

        def shapes(count: int) -> dict[str, tuple[int, ...]]:
            return {
                kind: array.shape if kind == "band_coarse" else (count, *array.shape[1:])
                for kind, array in feed.items()
            }

        size = total
        while size > 1 and not accepts(shapes(size)):
            size = (size + 1) // 2
        if not accepts(shapes(size)):
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
        calls = [dict(feed)] if accepts is None else self.calls(feed, accepts)
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
