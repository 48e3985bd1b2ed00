"""``mattecli refine-foregrounds``: re-estimate the foreground colour of photos from their alpha mattes.

A preprocessing step for training data (and for cleaning foregrounds before compositing): each
photo + alpha pair becomes a foreground that is valid everywhere, written as a 16-bit RGB PNG
(8 bits would band the smooth colour extensions under alpha = 0). Every pairing problem is reported
before any work starts. Outputs are written atomically and existing ones are skipped, so a killed
run resumes where it stopped; a pair that cannot be read (wrong size, damaged file) is reported and
the others are still processed (exit code 1).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import typer

from mattecli.console import err_console, print_json, progress_bar, user_errors
from mattecli.errors import EXIT_FAILED, InputError


def refine_foregrounds(
    image_dir: Path = typer.Argument(..., help="Folder of photos (PNG, JPEG, TIFF, EXR)."),
    alpha_dir: Path = typer.Argument(..., help="Folder of alpha mattes named like the photos."),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Folder for the foregrounds (created if missing)."
    ),
    method: Literal["ml", "cf", "lsa"] = typer.Option(
        "ml",
        "--method",
        help="ml: pymatting's multi-level solver (fast, separates F from the photo's background); "
        "cf: Levin's closed form, as FBA (slow); lsa: LSA's multi-level smoothing of the photo itself "
        "(no pymatting needed, but keeps background colour in semi-transparent pixels).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print what was done as JSON on stdout."),
) -> None:
    """Re-estimate foreground colours from photos and alpha mattes, as a training preprocessing step.

    Photos and mattes are paired by name without suffix (image/GT01.png with
    alpha/GT01.png); the foreground goes to OUTPUT/GT01.png as a 16-bit RGB PNG.
    Foregrounds already in OUTPUT are skipped, so an interrupted run picks up
    where it stopped.

    Examples:

    ```
    mattecli refine-foregrounds data/image data/alpha -o data/fg

    mattecli refine-foregrounds data/image data/alpha -o data/fg_lsa --method lsa --json
    ```
    """
    from mattecli.foreground import check_method, pair_folders

    with user_errors():
        check_method(method)
        pairs = pair_folders({"image": image_dir, "alpha": alpha_dir})
        resolved = output.resolve()
        if resolved in (image_dir.resolve(), alpha_dir.resolve()):
            raise InputError(
                "the output folder is an input folder; its files would be overwritten",
                path=output,
                hint="write the foregrounds to a folder of their own",
            )
        report = _run(pairs, output, method)
    _summarise(report, output, method, json_output)
    if report["failed"]:
        raise typer.Exit(EXIT_FAILED)


def _run(pairs: list[tuple[str, dict[str, Path]]], output: Path, method: str) -> dict:
    from rich.markup import escape

    from mattecli.foreground import estimate_foreground, read_colour_and_alpha, write_foreground

    written: list[str] = []
    skipped: list[str] = []
    failed: list[dict[str, str]] = []
    start = time.perf_counter()
    with progress_bar(f"refining foregrounds ({method})") as progress:
        task = progress.add_task("refine", total=len(pairs))
        for name, files in pairs:
            target = output / f"{name}.png"
            if target.is_file():
                skipped.append(name)
            else:
                try:
                    image, alpha = read_colour_and_alpha(files["image"], files["alpha"])
                    write_foreground(target, estimate_foreground(image, alpha, method))  # type: ignore[arg-type]
                    written.append(name)
                except InputError as exc:
                    failed.append({"name": name, "error": str(exc)})
                    progress.console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            progress.advance(task)
    return {
        "written": written,
        "skipped": skipped,
        "failed": failed,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _summarise(report: dict, output: Path, method: str, json_output: bool) -> None:
    line = (
        f"{len(report['written'])} foregrounds written, {len(report['skipped'])} already there, "
        f"{len(report['failed'])} failed ({method}, {report['seconds']:.1f} s) in {output}"
    )
    err_console.print(line, markup=False, highlight=False)
    if json_output:
        print_json({"method": method, "output": str(output), **report})
