"""One frame and its trimap to alpha and foreground: predictor -> optional TTA or refinement -> fusion.

The plain chain (no TTA, no refinement, the default) builds nothing the size of the frame beyond
what the trimap fixes anyway::

    inputs = FrameInputs(frame, trimap)          preprocess
    work   = predictor.plan(inputs)              preprocess   (whole frame, tiles, or band cells)
    pixels = decided pixels the work computes    fusion
    values = work.values(pixels)                 fusion       (engine calls and their inputs inside)
    alpha, fg = fusion(image, trimap, values)    fusion

With TTA or backpropagating refinement, the predictor is run as a whole-frame function
(:meth:`FrameMatter.predict`), every view of the frame through it (:func:`mattecli.tta.predict_tta`)
or the refinement around it (:func:`mattecli.refine.backprop_refine`), and the fusion stage takes
the averaged outputs. Each stage is timed where this chain calls it (:mod:`mattecli.stage_timing`).
"""

from __future__ import annotations

import numpy as np

from engines.base import Engine
from mattecli.band_predictor import CellChoice
from mattecli.frame_fusion import FrameFusion
from mattecli.inputs import FrameInputs, ModelInputs, build_inputs, pad_reflect, unit_rgb
from mattecli.media.frame import Frame
from mattecli.predictors import NetworkPass, predictor_for
from mattecli.preprocess import Scratch
from mattecli.run_options import RefineOptions, TileOptions
from mattecli.stage_timing import timed
from mattecli.summary import StageClock
from mattecli.tiling import PixelSet
from mattecli.tta import TTAMode, predict_tta


class FrameMatter:
    """One frame (and its trimap) to alpha and foreground, with the options of a run.

    ``want_foreground``: return the model's foreground (when it has one) for the outputs that
    show colour; without it only alpha is returned, and only the pixels alpha needs are computed.
    ``band_cells`` (band models only): ``"all"`` computes every cell of the frame instead of the
    band's, to compare band inference with whole-frame inference.

    Work buffers live in ``scratch`` and are reused from frame to frame, so one FrameMatter
    serves one frame at a time.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        tiles: TileOptions,
        tta: TTAMode,
        fusion: bool,
        want_foreground: bool,
        clock: StageClock,
        refine: RefineOptions | None = None,
        band_cells: CellChoice = "band",
    ) -> None:
        if refine is not None:
            from mattecli.refine import refinable_network

            refinable_network(engine)  # refuse a non-torch engine or a network without BRMs up front
        self.engine = engine
        self.contract = engine.contract
        self.tta = tta
        self.refine = refine
        self.clock = clock
        self.scratch = Scratch()
        has_foreground = self.contract.output_name("foreground") is not None
        self.fusion = FrameFusion(fusion=fusion, returns_foreground=want_foreground and has_foreground)
        self.predictor = predictor_for(
            engine,
            tiles=tiles,
            band_cells=band_cells,
            kinds=self.fusion.kinds,
            scratch=self.scratch,
            clock=clock,
        )
        # The chain's stages, each timed where the chain calls it.
        self._inputs = timed(clock, "preprocess", self._frame_inputs)
        self._plan = timed(clock, "preprocess", self.predictor.plan)
        self._select = timed(clock, "fusion", self._selected_pixels)
        self._network = timed(clock, "fusion", _network_values)  # blending; engine calls inside
        self._fuse = timed(clock, "fusion", self.fusion)
        self._unit_rgb = timed(clock, "preprocess", unit_rgb)
        self._views = timed(clock, "engine", predict_tta)  # every view's stages inside
        self._gather = timed(clock, "fusion", _gathered)
        self._model_inputs = timed(clock, "preprocess", build_inputs)
        self._fill = timed(clock, "fusion", self._filled)

    def __call__(self, frame: Frame, trimap: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Alpha (H x W) and foreground (H x W x 3, or None), float32; see :class:`FrameFusion`."""
        height, width = frame.height, frame.width
        if self.tta == "none" and self.refine is None:
            inputs = self._inputs(frame.image, trimap)
            work = self._plan(inputs)
            pixels = self._select(work, inputs.trimap, inputs.padded_shape, height, width)
            values = self._network(work, pixels)
            return self._fuse(inputs.image, inputs.trimap, pixels, values, height, width)
        image = self._unit_rgb(frame.image)
        whole = self._views(self.predict, image, trimap, self.tta, self.contract.size_multiple)
        pixels = self._select(None, trimap, (height, width), height, width)
        values = self._gather(whole, pixels)
        return self._fuse(frame.image, trimap, pixels, values, height, width)  # the plate's own colour

    def predict(self, image: np.ndarray, trimap: np.ndarray | None) -> dict[str, np.ndarray]:
        """The network's outputs for one view of the frame (C x H x W, cropped to the view).

        Pixels the network does not compute take the trimap's alpha and the image's colour.
        This is the predictor as TTA sees it: any view in, whole outputs out.
        """
        if self.refine is not None and trimap is not None:
            return self._refined(self._model_inputs(self.contract, image, trimap), trimap)
        inputs = self._inputs(image, trimap)
        work = self._plan(inputs)
        height, width = image.shape[:2]
        pixels = self._select(work, None, inputs.padded_shape, height, width)
        values = self._network(work, pixels)
        return self._fill(inputs, pixels, values, height, width)

    def _frame_inputs(self, image: np.ndarray, trimap: np.ndarray | None) -> FrameInputs:
        return FrameInputs(self.contract, image, trimap, self.scratch)

    def _selected_pixels(
        self,
        work: NetworkPass | None,
        trimap: np.ndarray | None,
        shape: tuple[int, int],
        height: int,
        width: int,
    ) -> PixelSet:
        """The pixels of ``shape`` whose output the network decides (every one without a trimap),
        less those the planned ``work`` does not compute and those outside the ``height`` x
        ``width`` frame at the top left (padding)."""
        mask = self.fusion.decided_pixels(trimap, shape)
        if work is not None:
            mask = work.restrict(mask)
        mask[height:] = False
        mask[:, width:] = False
        return PixelSet(mask, self.scratch)

    def _filled(
        self, inputs: FrameInputs, pixels: PixelSet, values: dict[str, np.ndarray], height: int, width: int
    ) -> dict[str, np.ndarray]:
        """Whole C x H x W outputs: ``values`` at ``pixels``; elsewhere the trimap's alpha and the
        image's colour."""
        colour = np.ascontiguousarray(unit_rgb(inputs.image).transpose(2, 0, 1))
        fill = {"alpha": inputs.known_alpha()[None], "foreground": colour, "background": colour}
        whole = {}
        for kind in self.fusion.kinds:
            out = fill[kind].copy()
            if kind in values:
                pixels.scatter(values[kind], out)
            whole[kind] = out[:, :height, :width]
        return whole

    def _refined(self, inputs: ModelInputs, trimap: np.ndarray) -> dict[str, np.ndarray]:
        """Backpropagating refinement over the whole frame.

        Not tiled: its costs average over the whole trimap boundary and unknown band, and one set
        of refinement tensors serves the whole image, as in the paper.
        """
        from mattecli.refine import backprop_refine

        assert self.refine is not None
        result = backprop_refine(
            self.engine,  # type: ignore[arg-type]  # refinable_network checked it is a TorchEngine
            {kind: array[None] for kind, array in inputs.arrays.items()},
            pad_reflect(trimap, *inputs.padded_shape),
            steps=self.refine.steps,
            lr=self.refine.lr,
        )
        return {"alpha": inputs.crop(result.alpha[0])}


def _network_values(work: NetworkPass, pixels: PixelSet) -> dict[str, np.ndarray]:
    """The network's N x C values at ``pixels``; the engine is not called when there are none."""
    return work.values(pixels) if len(pixels) else {}


def _gathered(whole: dict[str, np.ndarray], pixels: PixelSet) -> dict[str, np.ndarray]:
    """Whole C x H x W outputs' N x C values at ``pixels``."""
    return {kind: pixels.gather(value) for kind, value in whole.items()}
