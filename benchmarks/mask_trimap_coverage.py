"""How much of the demo clip's true soft edge `mattecli trimap` marks unknown, from masks (issue 13).

The demo clip's ground-truth alphas are cut at 50% into binary masks (alpha >= 128 is foreground),
``mattecli trimap`` turns them into trimaps with its default settings, and the script counts the
true soft pixels (ground truth strictly between 0 and 255) that fall in the unknown band, over all
frames, together with the mean fraction of a frame that is unknown (the price of the band).

    python benchmarks/mask_trimap_coverage.py                 # renders the 48-frame demo clip first
    python benchmarks/mask_trimap_coverage.py --demo demo --band 3% --json
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import typer
from measure_common import mattecli

from mattecli.console import user_errors
from mattecli.errors import InputError
from mattecli.media.imageio import images_by_stem, read_gray, write_image
from mattecli.sample import write_sample


def masks_from_alphas(alphas: Path, masks: Path) -> int:
    """Write each 8-bit ground-truth alpha of ``alphas`` cut at 50% (0/255) into ``masks``; the count."""
    files = images_by_stem(alphas, "ground-truth alpha")
    for stem, path in files.items():
        write_image(masks / f"{stem}.png", np.where(read_gray(path) >= 128, 255, 0).astype(np.uint8))
    return len(files)


def coverage(alphas: Path, trimaps: Path) -> dict[str, float | int]:
    """Soft pixels inside the unknown band over all frames, and the mean unknown fraction of a frame."""
    truth = images_by_stem(alphas, "ground-truth alpha")
    made = images_by_stem(trimaps, "trimap")
    if set(truth) != set(made):
        raise InputError("the trimaps are not named after the ground-truth alphas", path=trimaps)
    soft_total = soft_covered = 0
    unknown: list[float] = []
    worst = 1.0
    for stem, path in truth.items():
        alpha, trimap = read_gray(path), read_gray(made[stem])
        soft = (alpha > 0) & (alpha < 255)
        covered = int(np.count_nonzero(soft & (trimap == 128)))
        soft_total += int(np.count_nonzero(soft))
        soft_covered += covered
        worst = min(worst, covered / max(1, int(np.count_nonzero(soft))))
        unknown.append(float(np.mean(trimap == 128)))
    return {
        "frames": len(truth),
        "soft_pixels": soft_total,
        "coverage": soft_covered / soft_total if soft_total else 1.0,
        "worst_frame_coverage": worst,
        "unknown_fraction": float(np.mean(unknown)),
    }


def main(
    demo: Path | None = typer.Option(
        None,
        "--demo",
        help="A `mattecli sample` folder (default: render the 48-frame clip into a temp folder).",
    ),
    band: str | None = typer.Option(None, "--band", help="Passed to `mattecli trimap` (default: its own)."),
    json_output: bool = typer.Option(False, "--json", help="Print the numbers as JSON."),
) -> None:
    with user_errors(), tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if demo is None:
            demo = work / "demo"
            write_sample(demo)
        masks_from_alphas(demo / "alpha", work / "masks")
        args = ["trimap", str(work / "masks"), "-o", str(work / "trimaps"), "--json"]
        settings = json.loads(mattecli(args + ([] if band is None else ["--band", band])))
        numbers = coverage(demo / "alpha", work / "trimaps")
        numbers.update(band=settings["settings"]["band"], band_pixels=settings["band_pixels"])
        if json_output:
            typer.echo(json.dumps(numbers, indent=2))
            return
        typer.echo(
            f"{numbers['frames']} frames, band {numbers['band']} ({numbers['band_pixels']:.1f} px): "
            f"{numbers['coverage']:.2%} of {numbers['soft_pixels']} soft pixels unknown "
            f"(worst frame {numbers['worst_frame_coverage']:.2%}); "
            f"{numbers['unknown_fraction']:.1%} of a frame unknown on average"
        )


if __name__ == "__main__":
    typer.run(main)
