"""Per-stage seconds of the real ``mattecli run`` pipeline on a realistic workload (a profiling aid).

The workload is made from real data, nothing synthetic: one alphamatting.com image and its
ground-truth alpha, scaled to the frame's height and composited over a real background photo at
1920x1080 and/or 3840x2160. The trimap is the GT alpha thresholded at 0.5, then dilated and eroded
by ``--band`` pixels, so the unknown band is about 2 x band pixels wide around a real alpha edge.
Each frame shifts the object a few pixels, so no two frames are the same.

The pipeline runs in a fresh child process (so its peak RSS is its own, not the set-up's) over an
image sequence written to a temporary folder, with the default tiling, fusion and PNG output. Its
engine is wrapped to time the network calls alone, which gives the share of wall time spent
*outside* the engine (everything the pipeline adds: decoding, encodings, tiling, fusion, writing,
waiting). Run it under ``nice`` on a shared machine::

    nice -n 15 .venv/bin/python benchmarks/profile_pipeline.py --model /tmp/slim.onnx --frames 3

``--cprofile N`` prints the N costliest functions of the main (inference) thread.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import os
import pstats
import resource
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SIZES = {"1080p": (1080, 1920), "4k": (2160, 3840)}
FRAME_SHIFT = 3  # pixels the object moves right per frame


def _data_root() -> Path:
    here = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("MATTECLI_DATA", here.parent / "shared" / "data"))


def make_frame(
    data: Path, name: str, background: str, height: int, width: int, band: int, shift: int
) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit RGB frame (object composited over a background photo) and its 0/128/255 trimap."""
    from mattecli.media.imageio import read_gray, read_image

    image = read_image(data / "alphamatting" / "image" / f"{name}.png").astype(np.float32) / 255
    alpha = read_gray(data / "alphamatting" / "alpha" / f"{name}.png").astype(np.float32) / 255
    scale = height / image.shape[0]
    obj_w = min(width, round(image.shape[1] * scale))
    image = cv2.resize(image, (obj_w, height), interpolation=cv2.INTER_CUBIC)
    alpha = np.clip(cv2.resize(alpha, (obj_w, height), interpolation=cv2.INTER_CUBIC), 0, 1)
    back = read_image(data / "backgrounds" / background).astype(np.float32) / 255
    cover = max(height / back.shape[0], width / back.shape[1])
    back = cv2.resize(back, (round(back.shape[1] * cover) + 1, round(back.shape[0] * cover) + 1))
    back = back[:height, :width]
    x0 = min(width - obj_w, max(0, (width - obj_w) // 2 + shift))
    full_alpha = np.zeros((height, width), np.float32)
    full_alpha[:, x0 : x0 + obj_w] = alpha
    fg = back.copy()
    fg[:, x0 : x0 + obj_w] = image  # the photo approximates the object's own colour (F ~ I)
    frame = full_alpha[..., None] * fg + (1 - full_alpha[..., None]) * back
    mask = (full_alpha >= 0.5).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    trimap = np.full((height, width), 128, np.uint8)
    trimap[cv2.dilate(mask, kernel) == 0] = 0
    trimap[cv2.erode(mask, kernel) == 1] = 255
    return np.round(frame * 255).astype(np.uint8), trimap


def write_workload(folder: Path, frames: int, size: str, args: argparse.Namespace) -> dict[str, Any]:
    """Write ``shot/shot.NNNN.png`` and ``trimaps/shot.NNNN.png``; return facts about the band."""
    from mattecli.media.imageio import write_image

    height, width = SIZES[size]
    unknown = 0.0
    for n in range(1, frames + 1):
        frame, trimap = make_frame(
            _data_root(), args.image, args.background, height, width, args.band, n * FRAME_SHIFT
        )
        write_image(folder / "shot" / f"shot.{n:04d}.png", frame)
        write_image(folder / "trimaps" / f"shot.{n:04d}.png", trimap)
        unknown += float((trimap == 128).mean()) / frames
    return {"size": f"{width}x{height}", "unknown_fraction": round(unknown, 4)}


class TimedEngine:
    """The real engine, with the seconds spent inside its ``infer`` calls counted."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name, self.device, self.contract = engine.name, engine.device, engine.contract
        self.seconds = 0.0
        self.calls = 0
        self.tiles = 0

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        began = time.perf_counter()
        outputs = self.engine.infer(inputs)
        self.seconds += time.perf_counter() - began
        self.calls += 1
        self.tiles += next(iter(inputs.values())).shape[0]
        return outputs

    def accepts(self, shapes: Mapping[str, tuple[int, ...]]) -> bool:
        return self.engine.accepts(shapes)

    def close(self) -> None:
        self.engine.close()


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_child(folder: str, model: str, threads: int | None, top: int) -> dict[str, Any]:
    """Run the pipeline once over the workload in ``folder`` (in a fresh process)."""
    from engines.base import open_engine
    from mattecli.media.sinks import OutputSpec
    from mattecli.pipeline import run_pipeline
    from mattecli.summary import Reporter

    rss: list[float] = []

    class RssReporter(Reporter):
        def advance(self) -> None:
            rss.append(_rss_mb())

    engine = TimedEngine(open_engine("ort", Path(model), "cpu", threads=threads))
    root = Path(folder)
    profiler = cProfile.Profile() if top else None
    began = time.perf_counter()
    cpu_began = time.process_time()
    if profiler:
        profiler.enable()
    summary = run_pipeline(
        [str(root / "shot")],
        engine,  # type: ignore[arg-type]
        OutputSpec(root / "out"),
        trimap_spec=root / "trimaps",
        reporter=RssReporter(),
    )
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    if summary.failed:
        raise RuntimeError(summary.failed[0].error)
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(top)
    item = summary.inputs[0]
    return {
        "frames": item.frames_written,
        "wall": wall,
        "cpu": cpu,
        "stages": item.clock.snapshot(),
        "infer": engine.seconds,
        "infer_calls": engine.calls,
        "tiles": engine.tiles,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_per_frame_mb": [round(r) for r in rss],
    }


def report(size: str, facts: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    frames = result["frames"]
    per_frame = {stage: round(s / frames, 3) for stage, s in result["stages"].items()}
    outside = result["wall"] - result["infer"]
    return {
        **facts,
        "frames": frames,
        "tiles_per_frame": result["tiles"] / frames,
        "engine_calls_per_frame": result["infer_calls"] / frames,
        "stage_seconds_per_frame": per_frame,
        "infer_seconds_per_frame": round(result["infer"] / frames, 3),
        "wall_seconds_per_frame": round(result["wall"] / frames, 3),
        "cpu_seconds_per_frame": round(result["cpu"] / frames, 3),  # all threads of the process
        "outside_engine_share": round(outside / result["wall"], 3),
        "peak_rss_mb": round(result["peak_rss_mb"]),
        "rss_per_frame_mb": result["rss_per_frame_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the packaged one)")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["1080p", "4k"])
    parser.add_argument("--image", default="GT01", help="alphamatting image name")
    parser.add_argument("--background", default="vitmatte_snow_trees.jpg")
    parser.add_argument("--band", type=int, default=15, help="dilation/erosion radius of the trimap")
    parser.add_argument("--threads", type=int, default=None, help="engine threads (default: engine's)")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N", help="print the N costliest calls")
    args = parser.parse_args()
    if args.model is None:
        from mattecli.default_model import default_model_path

        args.model = default_model_path()

    context = multiprocessing.get_context("spawn")
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="mattecli-profile-") as tmp:
            facts = write_workload(Path(tmp), args.frames, size, args)
            with context.Pool(1) as pool:
                result = pool.apply(run_child, (tmp, str(args.model), args.threads, args.cprofile))
        print(json.dumps({size: report(size, facts, result)}, indent=1))


if __name__ == "__main__":
    main()
