"""Keyframe trimaps and ``--temporal`` against per-frame trimaps, on clips with ground truth (issue 13).

For each clip (the demo clip, and the hard preset: hand-held camera, motion blur, thinner hair),
``mattecli run`` is called four ways with the packaged model: per-frame trimaps, trimaps on every
``--every``-th frame only (``--keyframes``), per-frame trimaps with ``--temporal``, and both.
Each result is scored with ``mattecli eval --temporal``: SAD on the ground truth's unknown band
(DIM scaling), SAD over the whole frame (``--region all``: a carried trimap can call a pixel
outside the true band definite, and wrongly), dtSSD and MESSDdt over the clip. Time per frame is
the run's wall time over its frames; the runs of a clip alternate ``--repeats`` times and the
fastest of each is kept, so a busy machine slows all ways alike. Ratios are against the
per-frame run of the same clip.

    python benchmarks/video_temporal.py                       # both clips, keyframes every 12 frames
    python benchmarks/video_temporal.py --clip demo --json
    python benchmarks/video_temporal.py --spacing 6 --spacing 12 --spacing 24 --spacing 48

``--spacing`` adds a second table: how far keyframes hold. For each spacing, the carried trimaps
themselves are compared with the clip's true trimaps (the share of true soft pixels, 0 < alpha <
255, inside the carried band, and the share of a frame the carried trimap calls definite where
the truth is not), and the run with them is scored (SAD on the true band and over the frame).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import typer
from measure_common import markdown_table, mattecli

from mattecli.console import user_errors
from mattecli.errors import InputError
from mattecli.keyframes import KeyframeTrimaps
from mattecli.media.imageio import images_by_stem, read_gray
from mattecli.media.sources import open_source
from mattecli.media.trimaps import TrimapIndex

WAYS = {
    "per-frame trimaps": [],
    "keyframes": ["--keyframes"],
    "--temporal": ["--temporal"],
    "keyframes + --temporal": ["--keyframes", "--temporal"],
}
PRESETS = {"demo": [], "hard": ["--preset", "hard"]}


def _keyframe_folder(trimaps: Path, folder: Path, every: int) -> Path:
    """Copy every ``every``-th trimap (the first one included) into ``folder``."""
    folder.mkdir()
    for position, path in enumerate(sorted(trimaps.iterdir())):
        if position % every == 0:
            shutil.copy(path, folder / path.name)
    return folder


def carried_trimaps(clip: Path, keys: Path) -> dict[str, float]:
    """How well the trimaps ``--keyframes`` carries from ``keys`` match the clip's true ones."""
    truth = images_by_stem(clip / "alpha", "ground-truth alpha")
    source = open_source(str(clip / "clip.mp4"))
    carried = KeyframeTrimaps(TrimapIndex.open(keys))
    carried.begin_input(source.frame_ids(), lambda first, last: source.frames(first, last, 1, prefetch=0))
    soft = inside = 0
    wrong: list[float] = []
    try:
        for frame in source.frames(prefetch=0):
            trimap = carried.trimap(frame, resize=False)
            alpha = read_gray(truth[f"{frame.name}.{frame.index:06d}"])
            is_soft = (alpha > 0) & (alpha < 255)
            soft += int(is_soft.sum())
            inside += int((is_soft & (trimap == 128)).sum())
            wrong.append(float((((trimap == 255) & (alpha < 255)) | ((trimap == 0) & (alpha > 0))).mean()))
    finally:
        source.close()
    return {"soft_inside_band": inside / max(1, soft), "definite_and_wrong": float(np.mean(wrong))}


def measure_spacings(clip: Path, spacings: list[int], work: Path) -> dict[int, dict[str, float]]:
    """Keyframes every N frames for each N: carried-trimap quality and the SAD of the run."""
    results = {}
    for spacing in spacings:
        keys = _keyframe_folder(clip / "trimaps", work / f"keys{spacing}", spacing)
        out = work / f"spacing{spacing}"
        mattecli(["run", str(clip / "clip.mp4"), "-t", str(keys), "--keyframes", "-o", str(out), "-q"])
        band = json.loads(
            mattecli(["eval", str(out / "alpha"), str(clip / "alpha"), "-t", str(clip / "trimaps"), "--json"])
        )
        whole = json.loads(
            mattecli(["eval", str(out / "alpha"), str(clip / "alpha"), "--region", "all", "--json"])
        )
        results[spacing] = {
            **carried_trimaps(clip, keys),
            "sad": band["mean"]["paper"]["sad"],
            "sad_frame": whole["mean"]["paper"]["sad"],
        }
    return results


def measure_clip(clip: Path, every: int, repeats: int, work: Path) -> dict[str, dict[str, float]]:
    """Score and time the four ways on one clip written by ``mattecli sample``."""
    keys = _keyframe_folder(clip / "trimaps", work / "keys", every)
    seconds: dict[str, float] = {}
    for _ in range(repeats):
        for way, flags in WAYS.items():
            out = work / way.replace(" ", "_")
            shutil.rmtree(out, ignore_errors=True)
            trimaps = keys if "--keyframes" in flags else clip / "trimaps"
            run = json.loads(
                mattecli(
                    [
                        "run",
                        str(clip / "clip.mp4"),
                        "-t",
                        str(trimaps),
                        "-o",
                        str(out),
                        "-q",
                        "--json",
                        *flags,
                    ]
                )
            )
            frames = run["inputs"][0]["frames_written"]
            per_frame = run["inputs"][0]["wall_seconds"] / frames
            seconds[way] = min(seconds.get(way, per_frame), per_frame)
    results = {}
    for way in WAYS:
        out = work / way.replace(" ", "_")
        scores = json.loads(
            mattecli(
                [
                    "eval",
                    str(out / "alpha"),
                    str(clip / "alpha"),
                    "-t",
                    str(clip / "trimaps"),
                    "--temporal",
                    "--json",
                ]
            )
        )
        whole = json.loads(
            mattecli(["eval", str(out / "alpha"), str(clip / "alpha"), "--region", "all", "--json"])
        )
        results[way] = {
            "sad": scores["mean"]["paper"]["sad"],
            "sad_frame": whole["mean"]["paper"]["sad"],
            "dtssd": scores["temporal"]["mean"]["dtssd"],
            "messddt": scores["temporal"]["mean"]["messddt"],
            "seconds_per_frame": seconds[way],
        }
    base = results["per-frame trimaps"]
    for values in results.values():
        for key in ("sad", "sad_frame", "dtssd", "seconds_per_frame"):
            values[f"{key}_ratio"] = values[key] / base[key]
    return results


def main(
    clip: list[str] = typer.Option(list(PRESETS), "--clip", help="Which sample clips: demo, hard."),
    every: int = typer.Option(12, "--every", min=1, help="Keyframe spacing in frames."),
    repeats: int = typer.Option(2, "--repeats", min=1, help="Timed runs per way (the fastest is kept)."),
    spacing: list[int] = typer.Option(
        [], "--spacing", min=1, help="Also sweep keyframe spacings (repeat the option)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    with user_errors():
        report: dict[str, dict] = {}
        sweeps: dict[str, dict] = {}
        for name in clip:
            if name not in PRESETS:
                raise InputError(f"unknown clip {name!r}", hint=f"choose from {', '.join(PRESETS)}")
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                mattecli(["sample", str(work / "clip"), *PRESETS[name]])
                report[name] = measure_clip(work / "clip", every, repeats, work)
                if spacing:
                    sweeps[name] = measure_spacings(work / "clip", spacing, work)
        if json_output:
            typer.echo(json.dumps({"ways": report, "spacings": sweeps}, indent=2))
            return
        typer.echo(f"keyframes every {every} frames; ratios against per-frame trimaps of the same clip")
        header = ["clip", "way", "SAD band", "SAD frame", "dtSSD", "MESSDdt", "s/frame"]
        ratios = ["sad", "sad_frame", "dtssd", "seconds_per_frame"]
        header += ["SAD band ratio", "SAD frame ratio", "dtSSD ratio", "time ratio"]
        rows = [
            [name, way, f"{v['sad']:.2f}", f"{v['sad_frame']:.2f}", f"{v['dtssd']:.2f}"]
            + [f"{v['messddt']:.0f}", f"{v['seconds_per_frame']:.3f}"]
            + [f"{v[f'{key}_ratio']:.3f}" for key in ratios]
            for name, results in report.items()
            for way, v in results.items()
        ]
        typer.echo(markdown_table(header, rows, left=2))
        if sweeps:
            header = ["clip", "keyframe every", "true soft pixels in the band", "definite and wrong"]
            rows = [
                [name, str(n), f"{v['soft_inside_band']:.1%}", f"{v['definite_and_wrong']:.2%}"]
                + [f"{v['sad']:.2f}", f"{v['sad_frame']:.2f}"]
                for name, spacings in sweeps.items()
                for n, v in spacings.items()
            ]
            typer.echo("\n" + markdown_table([*header, "SAD band", "SAD frame"], rows))


if __name__ == "__main__":
    typer.run(main)
