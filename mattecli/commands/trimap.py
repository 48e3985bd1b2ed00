"""``mattecli trimap``: masks (binary or soft) to 0/128/255 trimaps that ``run --trimap-dir`` matches."""

from __future__ import annotations

from pathlib import Path

import typer

from mattecli.console import err_console, print_json, progress_bar, user_errors

# The defaults of mattecli.mask_trimaps.MaskTrimapSettings, repeated here so that --help needs no OpenCV
# (tests/test_trimap_command.py checks that they agree).
DEFAULT_BAND = "4%"
DEFAULT_FG_THRESHOLD = 0.95
DEFAULT_BG_THRESHOLD = 0.05
BAND_HELP = (
    "Total width of the unknown band, half on each side of the mask's edge: pixels (12, 12px) "
    "or a percentage of the frame's diagonal (4%)."
)
FG_THRESHOLD_HELP = "Mask values at or above this (0-1) are foreground."
BG_THRESHOLD_HELP = "Mask values at or below this (0-1) are background."
SOFT_UNKNOWN_HELP = (
    "Mask values between the thresholds are unknown wherever they are; "
    "the --no- form cuts the mask half-way between the thresholds instead."
)


def trimap(
    masks: Path = typer.Argument(
        ...,
        help="A folder or pattern of masks (8/16-bit PNG, TIFF, EXR; mask.%04d.png), one mask image, "
        "or a video of masks.",
        metavar="MASKS",
        show_default=False,
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the trimaps (created if missing)."),
    band: str = typer.Option(DEFAULT_BAND, "--band", help=BAND_HELP),
    fg_threshold: float = typer.Option(DEFAULT_FG_THRESHOLD, "--fg-threshold", help=FG_THRESHOLD_HELP),
    bg_threshold: float = typer.Option(DEFAULT_BG_THRESHOLD, "--bg-threshold", help=BG_THRESHOLD_HELP),
    soft_unknown: bool = typer.Option(True, "--soft-unknown/--no-soft-unknown", help=SOFT_UNKNOWN_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print what was written as JSON on stdout."),
) -> None:
    """Make trimaps from masks: definite foreground and background, and an unknown band of set width.

    The band is measured with an exact distance transform from the mask's edge. Given as a
    percentage of the diagonal (the default), a 4K plate and its half-size proxy get the same band.
    Soft mask values (between the thresholds: a feathered roto edge, a soft alpha) are unknown too.
    Each trimap is an 8-bit PNG named so that `run --trimap-dir` finds it: an image mask's trimap
    keeps the mask's name (masks/clip.000012.png -> OUT/clip.000012.png), frame 12 of a video of
    masks becomes OUT/000012.png. `run --mask-dir` does the same on the fly, without files.

    Examples:

    ```
    mattecli trimap masks/ -o trimaps/                        # band 4% of the diagonal
    mattecli trimap "roto/shot.%04d.exr" -o trimaps/ --band 24px
    mattecli trimap masks.mp4 -o trimaps/ --band 2% --no-soft-unknown --json
    mattecli run shot.mp4 -t trimaps/ -o out/
    ```
    """
    from mattecli.mask_source import write_mask_trimaps
    from mattecli.mask_trimaps import BandWidth, MaskTrimapSettings

    with user_errors():
        settings = MaskTrimapSettings(
            fg_threshold=fg_threshold,
            bg_threshold=bg_threshold,
            band=BandWidth.parse(band),
            soft_unknown=soft_unknown,
        )
        with progress_bar("trimaps") as progress:
            task = progress.add_task("trimaps", total=None)
            done = write_mask_trimaps(masks, output, settings, on_frame=lambda _index: progress.advance(task))
        pixels = settings.band.pixels(done.height, done.width)
        lines = [
            f"wrote {done.frames} trimaps ({done.width}x{done.height}) to {output}: band {settings.band} "
            f"= {pixels:.1f} px, {done.unknown_fraction:.1%} of a frame unknown on average"
        ]
        if done.empty:
            lines.append(
                f"warning: {len(done.empty)} mask(s) hold no foreground: {', '.join(done.empty[:3])}"
            )
        err_console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
        if json_output:
            print_json(done.to_json())
