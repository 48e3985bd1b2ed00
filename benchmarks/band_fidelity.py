"""Band inference against whole-frame inference of the same band model (issue 11's fidelity target).

A band model (``bandmatte-*``) computes full resolution only on the 16×16 cells that hold unknown
trimap pixels; its whole-frame inference computes every cell. Both run here through ``mattecli run``'s
per-frame work (fusion and known regions applied) on the alphamatting.com images with Trimap1, and
the table gives SAD over the unknown region for each, |SAD_band − SAD_whole| / SAD_whole per image,
the share of cells the band computes, and seconds per image for each.

    python benchmarks/band_fidelity.py --readme README.md
    python benchmarks/band_fidelity.py --model band.onnx --images GT07,GT12 --json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from measure_common import (
    Prediction,
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
    parse_list,
    predict,
    publish,
)

from engines.base import open_engine
from mattecli import band_inputs
from mattecli.console import progress_bar, user_errors
from mattecli.default_model import default_model_path
from mattecli.errors import InputError
from mattecli.inputs import pad_reflect
from mattecli.metrics import sad
from mattecli.run_options import TileOptions

README_SECTION = "band-fidelity-table"


def _row(item: Triplet, band: Prediction, whole: Prediction) -> dict[str, float | str]:
    height, width = item.trimap.shape
    size = band_inputs.padded_size(height, width)
    cells = len(band_inputs.band_cells(pad_reflect(item.trimap, *size), height, width))
    every = len(band_inputs.all_cells(height, width))
    sad_band = sad(band.alpha, item.alpha, item.trimap)
    sad_whole = sad(whole.alpha, item.alpha, item.trimap)
    return {
        "name": item.name,
        "sad_band": sad_band,
        "sad_whole": sad_whole,
        "delta_percent": 100.0 * abs(sad_band - sad_whole) / sad_whole if sad_whole else 0.0,
        "max_abs_alpha": float(np.abs(band.alpha - whole.alpha).max()),
        "cell_share": cells / every,
        "seconds_band": band.seconds,
        "seconds_whole": whole.seconds,
    }


def render(rows: list[dict[str, float | str]], holdout: list[str], caption: str) -> str:
    def mean(key: str) -> float:
        return float(np.mean([float(r[key]) for r in rows]))

    body = [
        [
            str(r["name"]) + (" (held out)" if r["name"] in holdout else ""),
            fmt(float(r["sad_whole"])),
            fmt(float(r["sad_band"])),
            fmt(float(r["delta_percent"]), 4),
            f"{float(r['max_abs_alpha']):.1e}",
            fmt(100.0 * float(r["cell_share"]), 1),
            fmt(float(r["seconds_whole"])),
            fmt(float(r["seconds_band"])),
        ]
        for r in rows
    ]
    body.append(
        [
            "**mean**",
            fmt(mean("sad_whole")),
            fmt(mean("sad_band")),
            fmt(mean("delta_percent"), 4),
            f"{max(float(r['max_abs_alpha']) for r in rows):.1e}",
            fmt(100.0 * mean("cell_share"), 1),
            fmt(mean("seconds_whole")),
            fmt(mean("seconds_band")),
        ]
    )
    header = ["image", "SAD whole", "SAD band", "Δ SAD %", "max Δα", "cells computed %", "s whole", "s band"]
    return caption + "\n\n" + markdown_table(header, body)


app = typer.Typer(add_completion=False)


@app.command()
def main(
    model: Path | None = typer.Option(
        None, "--model", "-m", help="Band model ONNX (default: the packaged one)."
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Data folder holding alphamatting/ (default: $MATTECLI_DATA, else ../shared/data).",
    ),
    images: str | None = typer.Option(None, "--images", help="Comma-separated image names (default: all)."),
    readme: Path | None = typer.Option(
        None, "--readme", help=f"Also replace the table between the README's {README_SECTION} markers."
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, help="ONNX Runtime threads."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of the markdown."),
) -> None:
    """Band cells only against every cell: SAD and time on the alphamatting images."""
    from training.config import repository_data_root

    with user_errors():
        if readme is not None:
            check_section(readme, README_SECTION)
        model = model if model is not None else default_model_path()
        engine = open_engine("ort", model, "cpu", threads=threads)
        try:
            contract = engine.contract
            if contract.architecture != "band":
                raise InputError(f"{contract.name} is not a band model", path=model)
            names = parse_list(images, "--images") if images is not None else None
            items = load_alphamatting(data if data is not None else repository_data_root(), names)
            whole_tiles = TileOptions(size=None)
            band = frame_matter(engine, whole_tiles, band_cells="band")
            whole = frame_matter(engine, whole_tiles, band_cells="all")
            rows = []
            with progress_bar("band vs whole frame") as bar:
                task = bar.add_task("images", total=len(items))
                for item in items:
                    rows.append(_row(item, predict(band, item), predict(whole, item)))
                    bar.advance(task)
        finally:
            engine.close()
        holdout = holdout_names(contract)
        caption = (
            f"Band inference (only the 16×16 cells holding unknown pixels) against whole-frame inference "
            f"(every cell) of {model_line(contract, model)} on {len(rows)} alphamatting.com images with "
            "Trimap1, both through `mattecli run`'s per-frame work (FBA fusion, known regions imposed); "
            "SAD over the unknown region as the DIM code computes it; "
            "Δ = |SAD_band − SAD_whole| / SAD_whole; "
            "max Δα: the largest alpha difference over the whole frame. Measured on "
            f"{machine_line(threads)}. Command: `{command_line()}`."
        )
        text = render(rows, holdout, caption)
        publish(
            text,
            {"model": str(model), "rows": rows, "table": text},
            readme=readme,
            section=README_SECTION,
            as_json=json_output,
        )


if __name__ == "__main__":
    app()
