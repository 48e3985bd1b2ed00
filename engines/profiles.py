"""TensorRT optimisation profiles: which input shapes an engine accepts, in pure Python.

A TensorRT engine built from a graph with dynamic axes runs only inputs inside the box
``min <= shape <= max`` of one of its optimisation profiles, picks its kernels for ``opt``, and
sizes its activation memory for ``max``. Every input of one call must fit the *same* profile.

A :class:`Profile` here is three (N, H, W) shapes; :func:`input_box` turns it into the
(min, opt, max) shape of each graph input, by what mattecli feeds that input (its *kind*):

- whole-frame models (``image``, ``trimap_*``): N x C x H x W, N images of H x W sharing the
  profile's N, H and W, each input with its own static channel count C;
- band models (:mod:`mattecli.band_inputs`): N is the number of band *cells* in the call and
  H x W the padded frame. ``band_coarse`` is 1 x 11 x H/4 x W/4 (the frame shrunk by the coarse
  scale), ``band_patches`` N x 5 x 22 x 22 and ``band_index`` N x 64.

Sizes that do not follow the profile (channels, a patch's side) are the ones mattecli always
feeds (:data:`mattecli.inputs.INPUT_CHANNELS`, :mod:`mattecli.band_inputs`); ``build-engine``
refuses a graph whose static sizes differ, so an engine never expects what the pipeline cannot
send.

What mattecli feeds an engine decides the profiles:

- tiled inference sends crops of exactly ``tile x tile`` (a frame smaller than the tile along
  an axis gives a tile that spans that axis, so smaller sizes down to the size multiple occur),
  in batches of up to ``batch`` tiles (the last batch of a frame may be short): so ``opt`` is the
  full batch of full tiles, ``max`` the same, and ``min`` one tile of one size multiple;
- whole-frame inference (``--max-size``) sends one frame at a time, padded to the size multiple.
  It gets a *second* profile with N = 1 rather than widening the tile profile: TensorRT reserves
  memory for the largest shape in a profile, and a box of ``batch x max_size x max_size`` would
  cost ``batch`` times the memory any real input needs;
- a band model sends one call per frame holding all of that frame's band cells, so one profile
  spans frame sizes and cell counts together (:func:`band_profile`).

Keeping this free of TensorRT lets every rule be tested on machines without a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mattecli import band_inputs
from mattecli.errors import InputError
from mattecli.inputs import INPUT_CHANNELS

ShapeNHW = tuple[int, int, int]
Shape = tuple[int, ...]
Box = tuple[Shape, Shape, Shape]  # (min, opt, max) of one input

_AXES = ("batch", "height", "width")


_WINDOW = band_inputs.DEFAULT_GEOMETRY.window  # side of a band patch: a cell and its margins
# What sets each axis of an input, by the input's kind: "batch"/"height"/"width" (the profile's
# N, H, W), "coarse_height"/"coarse_width" (H and W shrunk by the band model's coarse scale), or a
# number: a size mattecli always feeds (channels, a band patch's side). Each axis also has a name
# for messages.
Layout = tuple[tuple[str, str | int], ...]
_LAYOUTS: dict[str, Layout] = {
    **{
        kind: (("batch", "batch"), ("channels", channels), ("height", "height"), ("width", "width"))
        for kind, channels in INPUT_CHANNELS.items()
    },
    "band_coarse": (
        ("batch", 1),
        ("channels", band_inputs.COARSE_CHANNELS),
        ("height", "coarse_height"),
        ("width", "coarse_width"),
    ),
    "band_patches": (
        ("cells", "batch"),
        ("channels", band_inputs.PATCH_CHANNELS),
        ("height", _WINDOW),
        ("width", _WINDOW),
    ),
    "band_index": (("cells", "batch"), ("window", band_inputs.DEFAULT_GEOMETRY.coarse_span**2)),
}


def layout(kind: str) -> Layout:
    """(axis name, what sets it) for each axis of an input of ``kind``."""
    return _LAYOUTS[kind]


@dataclass(frozen=True)
class InputLayout:
    """A graph input as profiles see it: its name and the kind of array mattecli feeds it."""

    name: str
    kind: str


@dataclass(frozen=True)
class Profile:
    """One optimisation profile as (N, H, W) bounds: tiles or frames per call and their size, or a
    band model's cells per call and its padded frame size."""

    min: ShapeNHW
    opt: ShapeNHW
    max: ShapeNHW

    def describe(self) -> str:
        return f"min {format_shape(self.min)}, opt {format_shape(self.opt)}, max {format_shape(self.max)}"

    def to_json(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[int]]) -> Profile:
        def shape(key: str) -> ShapeNHW:
            values = tuple(int(v) for v in data[key])
            if len(values) != 3:
                raise ValueError(f"profile {key} has {len(values)} values, expected N, H, W")
            return values  # type: ignore[return-value]

        return cls(shape("min"), shape("opt"), shape("max"))


def _axis_size(source: str | int, nhw: ShapeNHW) -> int:
    if isinstance(source, int):
        return source
    n, h, w = nhw
    return {
        "batch": n,
        "height": h,
        "width": w,
        "coarse_height": h // band_inputs.SCALE,
        "coarse_width": w // band_inputs.SCALE,
    }[source]


def input_box(profile: Profile, kind: str) -> Box:
    """The (min, opt, max) shapes TensorRT takes, under ``profile``, for an input mattecli feeds ``kind``."""
    sources = [source for _, source in layout(kind)]

    def shape(nhw: ShapeNHW) -> Shape:
        return tuple(_axis_size(source, nhw) for source in sources)

    return shape(profile.min), shape(profile.opt), shape(profile.max)


def holds(profile: Profile, inputs: Sequence[InputLayout], shapes: Mapping[str, Sequence[int]]) -> bool:
    """Whether one call with inputs of ``shapes`` (by graph input name) fits ``profile``.

    Every input must be there, with the rank, fixed sizes and ranges its box gives, and inputs
    that share an axis must agree on it (the N, H and W of a frame's image and trimap encodings;
    the cell count of a band model's patches and index).
    """
    if set(shapes) != {i.name for i in inputs}:
        return False
    shared: dict[str, set[int]] = {}
    for graph_input in inputs:
        low, _, high = input_box(profile, graph_input.kind)
        shape = tuple(int(v) for v in shapes[graph_input.name])
        if len(shape) != len(low):
            return False
        if any(not lo <= v <= hi for lo, v, hi in zip(low, shape, high, strict=True)):
            return False
        for (_, source), size in zip(layout(graph_input.kind), shape, strict=True):
            if isinstance(source, str):
                shared.setdefault(source, set()).add(size)
    return all(len(sizes) == 1 for sizes in shared.values())


def format_shape(shape: Iterable[int]) -> str:
    return "x".join(str(v) for v in shape)


def parse_shape(text: str, *, option: str) -> ShapeNHW:
    """Parse ``NxHxW`` (e.g. ``4x512x512``) as given to ``--min``/``--opt``/``--max``."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise InputError(
            f"{option} {text!r} is not a shape",
            hint=f"write batch x height x width as positive integers, e.g. {option} 4x512x512",
        )
    return values  # type: ignore[return-value]


def _round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def tile_profiles(
    tile: int, batch: int, multiple: int, *, max_size: int | None = None
) -> tuple[Profile, ...]:
    """Profiles for tiled inference with ``tile`` and ``batch``, plus a whole-frame one for ``max_size``.

    ``tile`` must be a multiple of the model's size multiple: the tiler would otherwise round it
    down, and an engine whose ``opt`` is a size the tiler never sends is tuned for nothing.
    ``max_size`` is the longest frame side; frames are padded up to the size multiple, so the
    whole-frame profile reaches the next multiple.
    """
    if batch < 1:
        raise InputError(f"--batch {batch} must be at least 1")
    if tile < multiple or tile % multiple:
        lower = max(multiple, tile // multiple * multiple)
        raise InputError(
            f"--tile {tile} is not a multiple of this model's size multiple {multiple}",
            hint=f"use --tile {lower} or {lower + multiple}; tiles are cut in multiples of {multiple}",
        )
    tiles = Profile(min=(1, multiple, multiple), opt=(batch, tile, tile), max=(batch, tile, tile))
    if max_size is None:
        return (tiles,)
    if max_size < 1:
        raise InputError(f"--max-size {max_size} must be a positive frame side in pixels")
    side = _round_up(max_size, multiple)
    frame = Profile(min=(1, multiple, multiple), opt=(1, side, side), max=(1, side, side))
    return tiles, frame


# A band model's default profile: frames from one size multiple up to 4K (3840 x 2160 and DCI
# 4096 x 2160, both padded to 2176 rows), up to every cell of the largest frame (what
# `run --band-cells all` and a trimap that is all unknown send). Kernels are tuned for a padded
# 1080p frame whose band holds a tenth of its cells: the issue measured about 7 % unknown pixels
# on the bench's 1080p video workload, and cells round the band outwards. (The band cells of the
# 42 alphamatting.com photo trimaps in the shared data hold 13 to 57 % of their cells, median 24 %;
# opt only steers kernel choice, every count up to max runs.)
BAND_MAX_FRAME = (2176, 4096)  # height, width
BAND_OPT_FRAME = (1152, 1920)
BAND_OPT_SHARE = 10  # opt cells = the opt frame's cells / this


def frame_cells(height: int, width: int) -> int:
    """How many cells a padded ``height x width`` frame holds: the most one band call sends."""
    return -(-height // band_inputs.CELL) * -(-width // band_inputs.CELL)


def band_profile(multiple: int, *, max_size: int | None = None, max_cells: int | None = None) -> Profile:
    """The profile of a band model: N = band cells per call, H x W = the padded frame.

    ``max_size`` (the longest frame side, either orientation) replaces the default 4096 x 2176
    landscape box by a square one; ``max_cells`` caps the cells per call (default: every cell
    of the largest frame). TensorRT sizes the refiner's memory for ``max_cells``: a lower cap
    saves GPU memory, and frames whose band holds more cells are refused.
    """
    if max_size is None:
        max_h, max_w = BAND_MAX_FRAME
    elif max_size < 1:
        raise InputError(
            f"--max-size {max_size} must be a positive frame side in pixels",
            hint="a band model runs every frame whole (coarse view + band cells), so it has no "
            "tiles-only profile",
        )
    else:
        max_h = max_w = _round_up(max_size, multiple)
    every_cell = frame_cells(max_h, max_w)
    if max_cells is None:
        max_cells = every_cell
    elif max_cells < 1:
        raise InputError(f"--max-cells {max_cells} must be at least 1")
    opt_h, opt_w = min(BAND_OPT_FRAME[0], max_h), min(BAND_OPT_FRAME[1], max_w)
    opt_cells = max(1, min(max_cells, frame_cells(opt_h, opt_w) // BAND_OPT_SHARE))
    return Profile(min=(1, multiple, multiple), opt=(opt_cells, opt_h, opt_w), max=(max_cells, max_h, max_w))


def explicit_profile(min_: ShapeNHW, opt: ShapeNHW, max_: ShapeNHW, multiple: int) -> Profile:
    """A profile from ``--min/--opt/--max``, checked for order and for the model's size multiple."""
    problems = []
    for axis, lo, mid, hi in zip(_AXES, min_, opt, max_, strict=True):
        if not lo <= mid <= hi:
            problems.append(f"{axis} must satisfy min <= opt <= max (got {lo}, {mid}, {hi})")
    for name, shape in (("--min", min_), ("--opt", opt), ("--max", max_)):
        bad = [f"{axis} {v}" for axis, v in zip(_AXES[1:], shape[1:], strict=True) if v % multiple]
        if bad:
            problems.append(f"{name} {format_shape(shape)}: {', '.join(bad)} not a multiple of {multiple}")
    if problems:
        raise InputError(
            "invalid optimisation profile: " + "; ".join(problems),
            hint=f"give --min/--opt/--max as NxHxW with H and W multiples of {multiple}, "
            "each shape no larger than the next (e.g. --min 1x64x64 --opt 4x512x512 --max 4x512x512)",
        )
    return Profile(min_, opt, max_)


def select_profile(
    profiles: Sequence[Profile], inputs: Sequence[InputLayout], shapes: Mapping[str, Sequence[int]]
) -> int:
    """Index of the first profile that holds the call's ``shapes``; InputError naming every box otherwise."""
    for index, profile in enumerate(profiles):
        if holds(profile, inputs, shapes):
            return index
    fed = ", ".join(f"{name} {format_shape(shape)}" for name, shape in shapes.items())
    boxes = "; ".join(p.describe() for p in profiles)
    raise InputError(
        f"inputs {fed} are outside every optimisation profile of this engine ({boxes})",
        hint="run with a --tile and --batch inside the profile, or rebuild the engine with "
        "`mattecli build-engine` for this tile size, batch or --max-size (band models: --max-size "
        "and --max-cells)",
    )
