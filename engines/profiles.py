"""TensorRT optimisation profiles: which batch/height/width ranges an engine accepts, in pure Python.

A TensorRT engine built from a graph with dynamic N/H/W runs only inputs inside the box
``min <= shape <= max`` of one of its optimisation profiles, picks its kernels for ``opt``, and
sizes its activation memory for ``max``. Every graph input of a mattecli model shares N, H and W
(the image and its trimap encodings), so a profile here is one (N, H, W) box applied to all
inputs, each with its own static channel count.

What mattecli feeds an engine decides the profiles:

- tiled inference sends crops of exactly ``tile x tile`` (a frame smaller than the tile along
  an axis gives a tile that spans that axis, so smaller sizes down to the size multiple occur),
  in batches of up to ``batch`` tiles (the last batch of a frame may be short): so ``opt`` is the
  full batch of full tiles, ``max`` the same, and ``min`` one tile of one size multiple;
- whole-frame inference (``--max-size``) sends one frame at a time, padded to the size multiple.
  It gets a *second* profile with N = 1 rather than widening the tile profile: TensorRT reserves
  memory for the largest shape in a profile, and a box of ``batch x max_size x max_size`` would
  cost ``batch`` times the memory any real input needs.

Keeping this free of TensorRT lets every rule be tested on machines without a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mattecli.errors import InputError

ShapeNHW = tuple[int, int, int]
Shape4 = tuple[int, int, int, int]

_AXES = ("batch", "height", "width")


@dataclass(frozen=True)
class Profile:
    """One optimisation profile as (N, H, W) bounds shared by every graph input."""

    min: ShapeNHW
    opt: ShapeNHW
    max: ShapeNHW

    def contains(self, shape: ShapeNHW) -> bool:
        return all(lo <= v <= hi for lo, v, hi in zip(self.min, shape, self.max, strict=True))

    def for_channels(self, channels: int) -> tuple[Shape4, Shape4, Shape4]:
        """The (min, opt, max) NCHW shapes TensorRT takes for an input with ``channels`` channels."""
        return tuple((s[0], channels, s[1], s[2]) for s in (self.min, self.opt, self.max))  # type: ignore[return-value]

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


def select_profile(profiles: Sequence[Profile], shape: ShapeNHW) -> int:
    """Index of the first profile whose box holds ``shape``; InputError naming every box otherwise."""
    for index, profile in enumerate(profiles):
        if profile.contains(shape):
            return index
    boxes = "; ".join(p.describe() for p in profiles)
    raise InputError(
        f"batch {format_shape(shape)} (NxHxW) is outside every optimisation profile of this engine ({boxes})",
        hint="run with a --tile and --batch inside the profile, or rebuild the engine with "
        "`mattecli build-engine` for this tile size, batch or --max-size",
    )
