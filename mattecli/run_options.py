"""The options of ``mattecli run`` that shape the frame path, and the checks that refuse bad combinations.

The output options are :class:`mattecli.media.sinks.OutputSpec`. The checks here need only the
model's contract and the options, so a combination the model or output cannot honour stops the
run before any input is opened (:func:`check_options`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mattecli.errors import InputError
from mattecli.media.sinks import OutputSpec
from mattecli.media.sources import DEFAULT_PREFETCH
from mattecli.models import ModelContract
from mattecli.temporal import TemporalOptions
from mattecli.tiling import plan_tiles
from mattecli.tta import TTAMode
from mattecli.writer_thread import DEFAULT_WRITE_QUEUE


@dataclass(frozen=True)
class TileOptions:
    """Tiled inference over the unknown band; ``size=None`` runs every whole (padded) frame at once.

    A frame whose pixels fit in one engine call's worth of tiles runs whole even when tiling is on,
    if the engine accepts the whole frame's shape (see :class:`mattecli.predictors.TilePredictor`);
    a frame with no unknown pixel never reaches the engine.
    """

    size: int | None = 512
    context: int = 32  # pixels at inner tile edges that only feed the receptive field (README: tiling)
    blend: int = 32  # width of the raised-cosine ramp between overlapping tiles
    batch: int = 4  # tiles per engine call


@dataclass(frozen=True)
class RefineOptions:
    """LSA's backpropagating refinement (``--refine br``), with the paper's defaults."""

    steps: int = 100
    lr: float = 20.0


@dataclass(frozen=True)
class RunOptions:
    """How ``run`` processes frames (the output options are :class:`OutputSpec`)."""

    start: int | None = None  # inclusive frame numbers, as Source.frames counts them
    end: int | None = None
    every: int = 1
    resume: bool = False  # skip frames whose per-frame outputs all exist
    tiles: TileOptions = field(default_factory=TileOptions)
    fusion: bool | None = None  # None: on when the model's contract supports FBA fusion
    tta: TTAMode = "none"
    refine: RefineOptions | None = None  # backpropagating refinement, whole frames, torch engine
    resize_trimaps: bool = False
    temporal: TemporalOptions | None = None  # --temporal: blend the band with the previous result
    prefetch: int = DEFAULT_PREFETCH
    write_queue: int = DEFAULT_WRITE_QUEUE


def check_options(contract: ModelContract, output: OutputSpec, options: RunOptions, trimaps: bool) -> bool:
    """Refuse option combinations this model or output cannot honour; return whether fusion is on."""
    if options.start is not None and options.end is not None and options.end < options.start:
        raise InputError(
            f"the range ends ({options.end}) before it starts ({options.start})",
            hint="--end is the last frame number to process, inclusive",
        )
    if options.resume and output.video:
        raise InputError(
            "--resume cannot be used with a video output: a video file cannot be appended to",
            hint="run without --resume (the video is rewritten whole), or resume image outputs only",
        )
    if contract.needs_trimap and not trimaps:
        raise InputError(
            f"the model {contract.name} needs a trimap for every frame",
            hint="give a folder of trimaps (or one trimap image for all frames) with --trimap-dir",
        )
    if output.foreground and contract.output_name("foreground") is None:
        raise InputError(
            f"the model {contract.name} gives no foreground, so --fg cannot be written",
            hint="drop --fg (the composite and video outputs then use the source's colour)",
        )
    if options.refine is not None and options.tta != "none":
        raise InputError(
            "--refine br and --tta cannot be combined (every view would need its own 100 refinement steps)",
            hint="choose one of them",
        )
    can_fuse = contract.fusion == "fba"
    if options.fusion and not can_fuse:
        raise InputError(
            f"the model {contract.name} has no foreground and background outputs for FBA fusion",
            hint="drop --fusion",
        )
    tiles = options.tiles
    if tiles.size is not None:
        if min(tiles.size, tiles.batch) < 1 or min(tiles.context, tiles.blend) < 0:
            raise InputError("--tile and --batch must be positive, --context and --blend at least 0")
        try:  # the planner's own rule for margins that leave no room, checked on an empty frame
            m = contract.size_multiple
            plan_tiles(
                np.zeros((m, m), bool), tile=tiles.size, context=tiles.context, blend=tiles.blend, multiple=m
            )
        except ValueError as exc:
            raise InputError(
                f"tiling options: {exc}", hint="raise --tile or lower --context/--blend"
            ) from None
    return can_fuse if options.fusion is None else options.fusion
