"""How a job scales on Ray: frames per second locally and with 1 and 2 Ray workers, and the cost per task.

Everything in one run, on the demo clip (``mattecli sample``), so the rows compare like with like:

* ``local``: ``mattecli run``'s pipeline in this process, ONNX Runtime with its default threads.
* ``ray, N worker(s)``: ``run --executor ray`` on a Ray instance started here with as many CPUs as
  this machine has, N actors of one ONNX Runtime thread each, about 4 tasks per worker.
* the per-task overhead: one worker running the clip as ONE task, then as one task PER FRAME; the
  difference over the extra tasks is what a task costs beyond its frames (the round trip, opening
  the input again and seeking to the chunk's first frame). Worker start-up (Ray and one model load
  per actor) is shown apart, since it is paid once per job, not per task.

fps counts frames written over the wall time from the first task sent to the last result (a local
run's equivalent: from the first frame to the last), so start-up is not in it.

    python benchmarks/farm_scaling.py --frames 48
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from mattecli.default_model import default_model_path
from mattecli.farm.executors import EngineArgs, LocalExecutor
from mattecli.media.sinks import OutputSpec
from mattecli.run_options import RunOptions
from mattecli.sample import write_sample


def _run(executor: object, clip: Path, out: Path) -> tuple[float, dict]:
    summary = executor.run(  # type: ignore[attr-defined]
        [str(clip / "clip.mp4")], OutputSpec(out), trimap_spec=clip / "trimaps", options=RunOptions()
    )
    totals = summary.totals()
    assert totals["frames_written"] > 0 and not summary.failed
    return totals["frames_written"] / totals["wall_seconds"], summary.run.get("executor", {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48, help="frames of the demo clip")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    args = parser.parse_args()
    import ray

    from mattecli.farm.ray_executor import RayExecutor

    cpus = os.cpu_count() or 1
    engine = EngineArgs("ort", default_model_path(), "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = write_sample(root / "demo", frames=args.frames, width=args.width, height=args.height).directory
        rows: list[tuple[str, float, str]] = []
        local = LocalExecutor(engine)
        try:
            fps, _ = _run(local, clip, root / "local")
        finally:
            local.close()
        rows.append(("local (one process, ORT default threads)", fps, "-"))
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, object_store_memory=200 << 20)
        try:
            for workers in (1, 2):
                executor = RayExecutor(engine, workers=workers)
                try:
                    fps, stats = _run(executor, clip, root / f"ray{workers}")
                finally:
                    executor.close()
                rows.append(
                    (
                        f"ray, {workers} worker(s) x 1 thread, {stats['tasks']} tasks",
                        fps,
                        f"{stats['startup_seconds']:.1f}",
                    )
                )
            walls = {}
            for per_task in (args.frames, 1):
                executor = RayExecutor(engine, workers=1, task_frames=per_task)
                try:
                    fps, stats = _run(executor, clip, root / f"tasks{per_task}")
                    walls[stats["tasks"]] = args.frames / fps
                finally:
                    executor.close()
        finally:
            ray.shutdown()
    (one, wall_one), (many, wall_many) = sorted(walls.items())
    overhead = (wall_many - wall_one) / (many - one)
    print(f"Demo clip {args.frames} frames {args.width}x{args.height}, default model, {cpus} CPU cores, "
          f"Python {sys.version.split()[0]}, ray {ray.__version__}.\n")  # fmt: skip
    print("| run | frames / s | worker start-up (s) |")
    print("| --- | ---: | ---: |")
    for name, fps, startup in rows:
        print(f"| {name} | {fps:.2f} | {startup} |")
    print(
        f"\nPer-task overhead (1 worker): {overhead * 1000:.0f} ms per task "
        f"({one} task: {wall_one:.2f} s; {many} tasks: {wall_many:.2f} s)"
    )


if __name__ == "__main__":
    main()
