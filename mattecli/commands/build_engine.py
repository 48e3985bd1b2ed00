"""``mattecli build-engine``: build a TensorRT engine (plus its JSON sidecar) from an exported ONNX file.

Every check that does not need TensorRT runs first: the ONNX file, the profile options, the
device string. A user on a laptop without TensorRT therefore still learns that the file lacks a
contract or that ``--tile 500`` is not a multiple of 32, and only then that TensorRT is missing.

Which profiles the engine gets follows the model's architecture: a whole-frame model runs tiles
and whole frames (``--tile``, ``--batch``, ``--max-size``); a band model runs one call per frame
with all of its band cells (``--max-size``, ``--max-cells``; :func:`engines.profiles.band_profile`).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mattecli.console import err_console, print_json, user_errors
from mattecli.errors import InputError

if TYPE_CHECKING:
    from engines.profiles import Profile
    from mattecli.models import ModelContract

DEFAULT_TILE = 512
DEFAULT_BATCH = 4
# `mattecli run` sends a frame whole when one engine call's worth of tiles would hold as many pixels
# (an 800x600 photo, the 640x360 demo clip) and with --no-tile: without a whole-frame profile a
# default engine would refuse those. 1920 covers 1080p (padded to 1088) in landscape and portrait;
# larger frames are tiled.
DEFAULT_MAX_SIZE = 1920


class HardwareCompat(StrEnum):
    none = "none"
    ampere_plus = "ampere+"
    same_cc = "same-cc"


def build_engine(
    model: Path = typer.Argument(
        ..., help="The ONNX file written by `mattecli export` (fp16 variant for --fp16)."
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Engine file to write (default: MODEL with the suffix .engine)."
    ),
    tile: int | None = typer.Option(
        None,
        "--tile",
        help="Tile side the engine is tuned for, a multiple of the model's size multiple "
        f"(default {DEFAULT_TILE}).",
    ),
    batch: int | None = typer.Option(None, "--batch", help=f"Tiles per batch (default {DEFAULT_BATCH})."),
    max_size: int | None = typer.Option(
        None,
        "--max-size",
        help="Also accept whole frames up to this side (one at a time), as a second profile "
        f"(default {DEFAULT_MAX_SIZE}; 0 for tiles only). Band models: frames up to this side in "
        "either orientation (default 4096x2176, landscape 4K).",
    ),
    max_cells: int | None = typer.Option(
        None,
        "--max-cells",
        help="Band models only: the most band cells (16x16) one frame may send; less GPU memory, "
        "frames with more are refused (default: every cell of the largest frame).",
    ),
    min_shape: str | None = typer.Option(
        None,
        "--min",
        help="Explicit profile minimum, NxHxW (e.g. 1x64x64); for a band model N counts band cells "
        "and HxW is the padded frame.",
    ),
    opt_shape: str | None = typer.Option(
        None, "--opt", help="Explicit profile optimum, NxHxW (e.g. 4x512x512)."
    ),
    max_shape: str | None = typer.Option(
        None, "--max", help="Explicit profile maximum, NxHxW (e.g. 4x512x512)."
    ),
    fp16: bool = typer.Option(
        False, "--fp16", help="Require an fp16 ONNX file (TensorRT takes precision from the graph)."
    ),
    workspace: float = typer.Option(4.0, "--workspace", help="Builder workspace limit in GiB."),
    timing_cache: Path | None = typer.Option(
        None, "--timing-cache", help="Timing cache file to load and update (default: beside the engine)."
    ),
    optimization_level: int = typer.Option(
        3, "--builder-optimization-level", min=0, max=5, help="0 builds fastest, 5 searches longest."
    ),
    version_compatible: bool = typer.Option(
        False, "--version-compatible", help="Let later TensorRT releases of the same major run the engine."
    ),
    hardware_compatibility: HardwareCompat = typer.Option(
        HardwareCompat.none,
        "--hardware-compatibility",
        help="ampere+: any sm_80+ GPU; same-cc: any GPU of this compute capability (both may run slower).",
    ),
    device: str = typer.Option("cuda:0", "--device", help="GPU to build on: cuda or cuda:N."),
    force: bool = typer.Option(
        False, "--force", help="Rebuild even if the engine on disk matches this build."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print what was built as JSON on stdout."),
) -> None:
    """Build a TensorRT engine from an exported ONNX model, with its JSON sidecar.

    By default the engine has two optimisation profiles: tiles (--tile and --batch set the
    shape TensorRT optimises for; smaller tiles and short batches also run) and whole frames one
    at a time up to --max-size on either side (default 1920: 1080p landscape or portrait; `run`
    tiles larger frames). Or give one explicit profile with --min, --opt and --max (all three,
    as NxHxW).

    A band model (the default model's architecture) sends each frame in one call: its coarse
    view and the patches of every band cell. Its one profile takes frames from 128x128 up to
    4096x2176 (or up to --max-size on either side) with 1 to every cell of the largest frame (or
    --max-cells), tuned for a 1080p frame whose band holds a tenth of its cells. --min/--opt/--max
    give it as CELLSxHxW.

    Beside MODEL.engine it writes MODEL.engine.json (TensorRT version, GPU, compute capability,
    ONNX sha256, profiles, precision, the model contract) and a timing cache that later builds
    reuse. `mattecli run` refuses an engine whose sidecar does not match the machine.

    Needs TensorRT and an NVIDIA GPU: pip install -e ".\\[gpu]" on Linux.

    Examples:

    ```
    mattecli build-engine fba.onnx
    mattecli build-engine fba-fp16.onnx --fp16 --tile 768 --batch 2 -o fba-768.engine
    mattecli build-engine gfm.onnx --tile 512 --batch 4 --max-size 2048
    mattecli build-engine fba.onnx --max-size 0                # tiles only: the least GPU memory
    mattecli build-engine fba.onnx --min 1x64x64 --opt 4x512x512 --max 4x512x512 --workspace 8
    mattecli build-engine fba.onnx --version-compatible --hardware-compatibility ampere+ --json
    mattecli build-engine band.onnx                            # band model: frames up to 4096x2176
    mattecli build-engine band.onnx --max-size 1920 --max-cells 6000
    mattecli build-engine band.onnx --min 1x128x128 --opt 800x1152x1920 --max 14400x1920x1920
    ```
    """
    from engines.base import parse_device
    from engines.tensorrt import require_cuda
    from engines.trt_build import BuildOptions, describe_profiles, inspect_onnx
    from engines.trt_build import build_engine as build

    def say(line: str) -> None:
        err_console.print(line, markup=False, highlight=False)

    with user_errors():
        dev = parse_device(device)
        require_cuda(dev)
        facts = inspect_onnx(model, fp16=fp16)
        profiles = choose_profiles(
            facts.contract,
            tile=tile,
            batch=batch,
            max_size=max_size,
            max_cells=max_cells,
            explicit=(min_shape, opt_shape, max_shape),
        )
        options = BuildOptions(
            device=dev,
            workspace_gib=workspace,
            timing_cache=timing_cache,
            optimization_level=optimization_level,
            version_compatible=version_compatible,
            hardware_compatibility=hardware_compatibility.value,  # type: ignore[arg-type]
            force=force,
        )
        out = output if output is not None else model.with_suffix(".engine")
        result = build(facts, profiles, out, options, say=say)
        if not result.kept_existing:
            side = result.sidecar
            say(
                f"wrote {result.engine} ({result.engine_bytes / 2**20:.1f} MiB, {side.precision}) in "
                f"{result.seconds:.1f} s, with {result.engine.name}.json\n"
                f"{describe_profiles(side.profiles, band=side.contract.architecture == 'band')}\n"
                f"  timing cache: {result.timing_cache}"
                + (" (reused)" if result.timing_cache_reused else " (new)")
            )
        if json_output:
            print_json(result.to_json())


def choose_profiles(
    contract: ModelContract,
    *,
    tile: int | None = None,
    batch: int | None = None,
    max_size: int | None = None,
    max_cells: int | None = None,
    explicit: tuple[str | None, str | None, str | None] = (None, None, None),
) -> tuple[Profile, ...]:
    """The optimisation profiles build-engine's options ask for, for a model with ``contract``.

    ``explicit`` is ``(--min, --opt, --max)``: one profile exactly as given. Otherwise, for a band
    model, one profile of frames up to ``max_size`` and up to ``max_cells`` cells per call
    (:func:`engines.profiles.band_profile`); for any other model a tile profile from
    ``tile``/``batch`` and, unless ``max_size`` is 0, a whole-frame profile up to ``max_size``
    (default :data:`DEFAULT_MAX_SIZE`).
    """
    from engines.profiles import band_profile, explicit_profile, parse_shape, tile_profiles

    multiple = contract.size_multiple
    band = contract.architecture == "band"
    if any(v is not None for v in explicit):
        min_shape, opt_shape, max_shape = explicit
        if min_shape is None or opt_shape is None or max_shape is None:
            raise InputError(
                "--min, --opt and --max go together",
                hint="give all three, e.g. --min 1x64x64 --opt 4x512x512 --max 4x512x512",
            )
        if any(v is not None for v in (tile, batch, max_size, max_cells)):
            raise InputError(
                "--min/--opt/--max replace --tile, --batch, --max-size and --max-cells",
                hint="use one way of giving the profile",
            )
        return (
            explicit_profile(
                parse_shape(min_shape, option="--min"),
                parse_shape(opt_shape, option="--opt"),
                parse_shape(max_shape, option="--max"),
                multiple,
            ),
        )
    if band:
        if tile is not None or batch is not None:
            raise InputError(
                f"--tile and --batch are for tiled models; {contract.name} is a band model, which "
                "sends each frame in one call of its band cells",
                hint="set the frames and cells it takes with --max-size and --max-cells",
            )
        return (band_profile(multiple, max_size=max_size, max_cells=max_cells),)
    if max_cells is not None:
        raise InputError(
            f"--max-cells is for band models; {contract.name} runs tiles and whole frames",
            hint="set what it takes with --tile, --batch and --max-size",
        )
    if max_size is None:
        max_size = DEFAULT_MAX_SIZE
    return tile_profiles(
        DEFAULT_TILE if tile is None else tile,
        DEFAULT_BATCH if batch is None else batch,
        multiple,
        max_size=max_size or None,
    )
