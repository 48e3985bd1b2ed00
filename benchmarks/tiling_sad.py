"""How much tiled inference moves SAD against whole-frame inference, per tile size and margin (issue 4).

A tile sees only ``tile`` pixels of the frame; an FBA-style network pools over its whole input (PPM),
so a tile's output differs from the whole frame's even where the receptive field is covered. This
script measures that on the alphamatting.com images with Trimap1: SAD over the unknown region of
the final alpha (fusion and known regions as ``mattecli run`` applies them), whole frame against
each tile / context / blend setting, as |SAD_tiled - SAD_whole| / SAD_whole per image, with the
seconds per image. The defaults of ``mattecli run --tile/--context/--blend`` are chosen from it by the
rule printed under the table.

The pipeline runs a frame whole when one engine call's batch of tiles would hold as many pixels
as the frame, so the tiled runs here use a batch of one tile: every frame bigger than one tile is
really tiled.

    python benchmarks/tiling_sad.py --readme README.md
    python benchmarks/tiling_sad.py --model slim.onnx --images GT01 --tiles 320,512 --contexts 64
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import typer
from measure_common import (
    Triplet,
    check_section,
    command_line,
    fmt,
    frame_matter,
    holdout_names,
    load_alphamatting,
    machine_line,
    markdown_table,
    model_line,
    parse_ints,
    parse_list,
    predict,
    publish,
)

from engines.base import Engine, open_engine
from mattecli.console import progress_bar, user_errors
from mattecli.default_model import default_model_path
from mattecli.errors import InputError
from mattecli.inputs import build_inputs
from mattecli.media.frame import to_float
from mattecli.metrics import sad
from mattecli.run_options import TileOptions
from mattecli.tiling import plan_tiles

README_SECTION = "tiling-table"
DEFAULT_TILES = "256,320,384,512"
DEFAULT_CONTEXTS = "32,64,96"
# Settings whose tiles hold more than this many times the frames' pixels are not run: 256 px tiles
# with 96 px context step by 32 px and cost about 15 whole frames, a setting nobody would choose,
# and they alone would double the run time.
MAX_COST = 8.0
TOLERANCE = 1.0  # mean |ΔSAD| in % that the rule for the defaults accepts


@dataclass(frozen=True)
class Setting:
    tile: int
    context: int
    blend: int

    def options(self) -> TileOptions:
        return TileOptions(size=self.tile, context=self.context, blend=self.blend, batch=1)


@dataclass
class Measured:
    """One way of running the frames (whole, or one tiling setting): cost, SAD and seconds per image."""

    setting: Setting | None  # None: whole frames
    tiles: float = 1.0  # tiles per image
    cost: float = 1.0  # tile pixels over the (padded) frames' pixels
    skipped: str | None = None  # why it was not run
    sad: dict[str, float] = field(default_factory=dict)  # raw DIM SAD (sum / 1000) per image
    seconds: dict[str, float] = field(default_factory=dict)


def grid(tiles: Sequence[int], contexts: Sequence[int], blends: Sequence[int]) -> list[Setting]:
    return [Setting(t, c, b) for t in tiles for c in contexts for b in blends]


def plan(engine: Engine, items: list[Triplet], settings: list[Setting], max_cost: float) -> list[Measured]:
    """Each setting's tiles per image and pixel cost, from the tile plans alone (nothing runs yet).

    A setting the planner refuses (margins wider than the tile), or one costing more than
    ``max_cost`` whole frames, is marked skipped with the reason.
    """
    contract = engine.contract
    unknowns = [build_inputs(contract, to_float(item.image), item.trimap).unknown for item in items]
    frame_pixels = sum(unknown.size for unknown in unknowns)
    planned = []
    for setting in settings:
        try:
            plans = [
                plan_tiles(
                    unknown,
                    tile=setting.tile,
                    context=setting.context,
                    blend=setting.blend,
                    multiple=contract.size_multiple,
                )
                for unknown in unknowns
            ]
        except ValueError as exc:
            planned.append(Measured(setting, math.nan, math.nan, skipped=f"impossible: {exc}"))
            continue
        tiles = sum(len(p) for p in plans)
        cost = sum(len(p) * p.tile_h * p.tile_w for p in plans) / frame_pixels
        skipped = f"costs {cost:.1f} whole frames (over {max_cost:g})" if cost > max_cost else None
        planned.append(Measured(setting, tiles / len(items), cost, skipped=skipped))
    return planned


def measure(engine: Engine, items: list[Triplet], planned: list[Measured]) -> tuple[Measured, bool]:
    """Run every image whole and with every planned setting, filling in SAD and seconds.

    Returns the whole-frame run and whether fusion was on (as ``run`` decides for this model).
    """
    whole = Measured(None)
    matters = [(whole, frame_matter(engine, TileOptions(size=None)))]
    matters += [
        (m, frame_matter(engine, m.setting.options())) for m in planned if m.setting and not m.skipped
    ]
    if items:
        predict(matters[0][1], items[0])  # ONNX Runtime sizes its buffers on the first call
    with progress_bar("runs") as progress:
        task = progress.add_task("runs", total=len(items) * len(matters))
        for item in items:
            for measured, matter in matters:
                prediction = predict(matter, item)
                measured.sad[item.name] = sad(prediction.alpha, item.alpha, item.trimap)
                measured.seconds[item.name] = prediction.seconds
                progress.advance(task)
    return whole, matters[0][1].fusion.fusion


def deltas(measured: Measured, whole: Measured) -> dict[str, float]:
    """|SAD_tiled - SAD_whole| / SAD_whole per image, in %."""
    out = {}
    for name, tiled in measured.sad.items():
        reference = whole.sad[name]
        out[name] = (
            abs(tiled - reference) / reference * 100.0 if reference else (0.0 if tiled == 0 else math.inf)
        )
    return out


def summary(measured: Measured, whole: Measured, holdout: Sequence[str]) -> dict[str, float]:
    """Mean and max Δ% over all images, mean over the held-out ones, mean SAD and seconds."""
    if measured.skipped is not None:
        return {}
    d = deltas(measured, whole)
    held = [d[name] for name in holdout if name in d]
    count = len(d)
    return {
        "mean_delta": math.fsum(d.values()) / count,
        "max_delta": max(d.values()),
        "mean_delta_holdout": math.fsum(held) / len(held) if held else math.nan,
        "mean_sad": math.fsum(measured.sad.values()) / count,
        "seconds": math.fsum(measured.seconds.values()) / count,
    }


def recommend(planned: list[Measured], whole: Measured, tolerance: float) -> Measured | None:
    """The rule for the defaults: the fastest setting whose mean |ΔSAD| is within ``tolerance`` %."""
    fits = [m for m in planned if m.skipped is None and summary(m, whole, ())["mean_delta"] <= tolerance]
    return min(fits, key=lambda m: summary(m, whole, ())["seconds"], default=None)


def render(planned: list[Measured], whole: Measured, holdout: Sequence[str], caption: str) -> str:
    count = len(whole.sad)
    held = [name for name in holdout if name in whole.sad]
    header = [
        "tile",
        "context",
        "blend",
        "tiles / image",
        "tile px / frame px",
        f"mean Δ SAD % (all {count})",
        f"max Δ SAD % (all {count})",
        f"mean Δ SAD % (held-out {len(held)})",
        "mean SAD",
        "s / image",
    ]
    base = summary(whole, whole, held)
    rows = [["whole frame", "", "", "1", "1.00", "", "", "", fmt(base["mean_sad"]), fmt(base["seconds"])]]
    for m in planned:
        assert m.setting is not None
        s = m.setting
        head = [str(s.tile), str(s.context), str(s.blend)]
        if m.skipped is not None:
            cost = fmt(m.cost) if not math.isnan(m.cost) else "n/a"
            tiles = fmt(m.tiles, 1) if not math.isnan(m.tiles) else "n/a"
            rows.append([*head, tiles, cost, f"skipped: {m.skipped}", "", "", "", ""])
            continue
        v = summary(m, whole, held)
        rows.append(
            [
                *head,
                fmt(m.tiles, 1),
                fmt(m.cost),
                fmt(v["mean_delta"]),
                fmt(v["max_delta"]),
                fmt(v["mean_delta_holdout"]) if held else "n/a",
                fmt(v["mean_sad"]),
                fmt(v["seconds"]),
            ]
        )
    return f"{caption}\n\n{markdown_table(header, rows, left=1)}"


def caption(
    planned: list[Measured],
    whole: Measured,
    holdout: Sequence[str],
    *,
    model: str,
    fusion: bool,
    tolerance: float,
    machine: str,
    command: str,
) -> str:
    names = sorted(whole.sad)
    held = [name for name in holdout if name in whole.sad]
    held_text = (
        f"held out from training per the model's metadata: {', '.join(held)}; the others were trained on"
        if held
        else "the model's metadata names none of them as held out from training"
    )
    chosen = recommend(planned, whole, tolerance)
    if chosen is None:
        rule = f"no setting keeps the mean Δ within {tolerance:g} %"
    else:
        assert chosen.setting is not None
        s = chosen.setting
        rule = f"tile {s.tile}, context {s.context}, blend {s.blend}"
    return (
        f"Tiled against whole-frame inference for {model} on {len(names)} alphamatting.com "
        f"{'image' if len(names) == 1 else 'images'} "
        f"with Trimap1 ({held_text}). SAD is over the trimap's unknown region, computed as the official "
        f"DIM code does (8-bit, sum / 1000), on the final alpha ({'with' if fusion else 'without'} FBA "
        "fusion, known regions imposed); Δ = |SAD_tiled − SAD_whole| / SAD_whole per image. Both run "
        "through `mattecli run`'s per-frame work on ONNX Runtime on the CPU; the tiled runs use a batch "
        "of one tile, because the pipeline runs a frame whole when one engine call's tiles would hold as "
        "many pixels as the frame, so every frame larger than a tile is really tiled here. tiles / image "
        "counts the tiles computed (those covering unknown pixels); tile px / frame px is their pixels "
        "over the padded frames' pixels, the compute the tiling costs. s / image: wall seconds "
        "(preprocessing, inference, fusion). Rule for the defaults: the fastest setting whose mean Δ "
        f"over all images is at most {tolerance:g} %: {rule}. Measured on {machine}. "
        f"Command: `{command}`."
    )


def to_json(
    planned: list[Measured],
    whole: Measured,
    holdout: Sequence[str],
    *,
    model: Path,
    tolerance: float,
    table: str,
) -> dict:
    held = [name for name in holdout if name in whole.sad]
    chosen = recommend(planned, whole, tolerance)

    def entry(m: Measured) -> dict:
        s = m.setting
        return {
            "tile": s.tile if s else None,
            "context": s.context if s else None,
            "blend": s.blend if s else None,
            "tiles_per_image": None if math.isnan(m.tiles) else m.tiles,
            "pixel_cost": None if math.isnan(m.cost) else m.cost,
            "skipped": m.skipped,
            "sad": m.sad,
            "seconds": m.seconds,
            "delta_percent": deltas(m, whole) if m.skipped is None and s else {},
            "summary": {k: None if math.isnan(v) else v for k, v in summary(m, whole, held).items()},
        }

    return {
        "model": str(model),
        "images": sorted(whole.sad),
        "holdout": held,
        "whole": entry(whole),
        "settings": [entry(m) for m in planned],
        "tolerance_percent": tolerance,
        "recommended": None if chosen is None or chosen.setting is None else entry(chosen),
        "command": command_line(),
        "table": table,
    }


app = typer.Typer(add_completion=False)


@app.command()
def main(
    model: Path | None = typer.Option(
        None, "--model", "-m", help="ONNX model (default: the packaged default model)."
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Data folder holding alphamatting/ (default: $MATTECLI_DATA, else ../shared/data).",
    ),
    images: str | None = typer.Option(None, "--images", help="Comma-separated image names (default: all)."),
    tiles: str = typer.Option(DEFAULT_TILES, "--tiles", help="Comma-separated tile sizes."),
    contexts: str = typer.Option(DEFAULT_CONTEXTS, "--contexts", help="Comma-separated context margins."),
    blends: str = typer.Option(
        str(TileOptions().blend), "--blends", help="Comma-separated blend ramps (default: run's)."
    ),
    max_cost: float = typer.Option(
        MAX_COST, "--max-cost", min=1.0, help="Skip settings whose tiles cost more whole frames than this."
    ),
    tolerance: float = typer.Option(
        TOLERANCE, "--tolerance", min=0.0, help="Mean Δ SAD (%) the rule for the defaults accepts."
    ),
    readme: Path | None = typer.Option(
        None, "--readme", help=f"Also replace the table between the README's {README_SECTION} markers."
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, help="ONNX Runtime threads."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of the markdown."),
) -> None:
    """How much tiling moves SAD against whole-frame inference on the alphamatting images."""
    from training.config import repository_data_root

    with user_errors():
        settings = grid(
            parse_ints(tiles, "--tiles"), parse_ints(contexts, "--contexts"), parse_ints(blends, "--blends")
        )
        if any(s.tile == 0 for s in settings):
            raise InputError("--tiles must be positive")
        if readme is not None:
            check_section(readme, README_SECTION)
        model = model if model is not None else default_model_path()
        engine = open_engine("ort", model, "cpu", threads=threads)
        try:
            contract = engine.contract
            holdout = holdout_names(contract)  # none: the caption says so
            names = parse_list(images, "--images") if images is not None else None
            items = load_alphamatting(data if data is not None else repository_data_root(), names)
            planned = plan(engine, items, settings, max_cost)
            whole, fusion = measure(engine, items, planned)
        finally:
            engine.close()
        text = render(
            planned,
            whole,
            holdout,
            caption(
                planned,
                whole,
                holdout,
                model=model_line(contract, model),
                fusion=fusion,
                tolerance=tolerance,
                machine=machine_line(threads),
                command=command_line(),
            ),
        )
        publish(
            text,
            to_json(planned, whole, holdout, model=model, tolerance=tolerance, table=text),
            readme=readme,
            section=README_SECTION,
            as_json=json_output,
        )


if __name__ == "__main__":
    app()
