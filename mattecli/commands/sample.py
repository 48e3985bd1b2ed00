"""``mattecli sample``: write the procedural demo clip with its trimaps and ground truth."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import typer

from mattecli.console import err_console, print_json, progress_bar, user_errors


def sample(
    directory: Path = typer.Argument(..., help="Folder to write into (created if missing; must be empty)."),
    frames: int | None = typer.Option(
        None,
        "--frames",
        min=1,
        help="Number of frames. Default: the preset's, 48 (demo) or 96 (hard); the motion loops after that.",
    ),
    width: int = typer.Option(640, "--width", help="Frame width in pixels (even)."),
    height: int = typer.Option(360, "--height", help="Frame height in pixels (even)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed; the same seed writes identical files."),
    force: bool = typer.Option(False, "--force", help="Write into a folder that is not empty, overwriting."),
    json_output: bool = typer.Option(False, "--json", help="Print what was written as JSON on stdout."),
    preset: Literal["demo", "hard"] = typer.Option(
        "demo",
        "--preset",
        help="demo: the short clip. hard: 96 frames, hand-held camera, motion blur, more and thinner hair.",
    ),
) -> None:
    """Write a short demo clip with per-frame trimaps and ground truth, to try and score mattecli anywhere.

    A blob with soft, hair-like and semi-transparent edges moves and deforms over a textured,
    slowly panning background. --preset hard makes it longer and harder: a hand-held
    camera (pan and shake) moves subject and background, every frame is motion-blurred
    (7 sub-frame renders averaged, the ground truth averaged with them, so it stays exact),
    and there are three times as many strands, down to 1/8 pixel wide. Layout of DIRECTORY:

    ```
    clip.mp4                     H.264 (yuv420p), 24 fps, the composite alpha*F + (1-alpha)*B
    trimaps/clip.000000.png ...  8-bit trimaps, 0/128/255, named after the clip's frames
    alpha/clip.000000.png ...    ground-truth alpha, 8-bit
    foreground/clip.000000.png   ground-truth foreground colour, 8-bit RGB
    background/clip.000000.png   hard preset only: the (blurred) background, 8-bit RGB
    ```

    Examples:

    ```
    mattecli sample demo
    mattecli eval out/alpha demo/alpha --trimap-dir demo/trimaps
    mattecli sample demo --frames 240 --width 1280 --height 720 --seed 7 --force
    mattecli sample hard --preset hard
    ```
    """
    from mattecli.sample import PRESETS, write_sample

    with user_errors():
        with _progress(frames or PRESETS[preset].frames) as advance:
            out = write_sample(
                directory,
                frames=frames,
                width=width,
                height=height,
                seed=seed,
                force=force,
                on_frame=advance,
                preset=preset,
            )
        lines = [
            f"wrote {out.frames} frames ({out.width}x{out.height}, {out.fps} fps, H.264) to {out.directory}",
            f"  {out.video}",
            f"  {out.trimaps}/  {out.frames} trimaps",
            f"  {out.alpha}/  {out.frames} ground-truth alpha mattes",
            f"  {out.foreground}/  {out.frames} ground-truth foregrounds",
        ]
        if out.background is not None:
            lines.append(f"  {out.background}/  {out.frames} backgrounds")
        err_console.print("\n".join(lines), markup=False, highlight=False)
        if json_output:
            print_json(out.to_json())


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """A transient progress bar on stderr, drawn only when stderr is a terminal."""
    with progress_bar("rendering sample") as progress:
        task = progress.add_task("sample", total=total)
        yield lambda _index: progress.advance(task)
