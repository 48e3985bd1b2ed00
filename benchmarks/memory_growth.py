"""Peak RSS of ``mattecli run``'s pipeline (the benchmark's method (c)) over a short and a long clip.

The pipeline keeps nothing per frame once it is written (bounded decode and write queues), so its
peak memory must not grow with the length of a clip. This script builds one benchmark workload of
the longest length asked for (cached in the work folder like ``mattecli bench``'s), runs (c) on
its first N frames for each N in ``--frames``, each in a child process of its own, and compares
the peaks: the target is less than 10% growth from the shortest to the longest run.

    .venv/bin/python benchmarks/memory_growth.py                           # 1080p, 100 and 1,000 frames
    .venv/bin/python benchmarks/memory_growth.py -r 960x540 --frames 100,1000 --json

Disk: every run's outputs (16-bit PNG alpha and foreground) are deleted once it is measured, but
while it runs a 1,000-frame 1080p clip writes about 10 GB of them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from mattecli.bench import DEFAULT_CHECKPOINT, DEFAULT_THREADS, default_work_dir
from mattecli.bench.methods import Job, MethodResult, run_method
from mattecli.bench.report import Target, growth_target
from mattecli.bench.workload import WorkloadSpec, build_workload, parse_resolution
from mattecli.default_model import DEFAULT_MODEL_FILE
from mattecli.errors import MatteError


def measure(
    resolution: str, lengths: list[int], work: Path, model: Path, threads: int, seed: int = 0
) -> tuple[list[MethodResult], Target | None]:
    """(c) on the first N frames of one workload for each N; the growth target from shortest to longest."""
    label, width, height = parse_resolution(resolution)
    workload = build_workload(WorkloadSpec(width, height, max(lengths), seed), work)
    results = []
    outputs = Path(tempfile.mkdtemp(prefix=".memory-growth-", dir=work))
    try:
        for frames in sorted(lengths):
            print(f"{label}: (c) on {frames} frames...", file=sys.stderr, flush=True)
            job = Job(
                "c", workload.root, outputs / str(frames), frames, model, DEFAULT_CHECKPOINT, threads=threads
            )
            result = run_method(job)
            result.resolution = label
            shutil.rmtree(job.out, ignore_errors=True)
            results.append(result)
    finally:
        shutil.rmtree(outputs, ignore_errors=True)
    short, long = results[0], results[-1]
    if len(results) < 2 or any(r.status != "ok" or r.peak_rss_mb is None for r in (short, long)):
        return results, None
    return results, growth_target(short.peak_rss_mb, long.peak_rss_mb, short.frames, long.frames)  # type: ignore[arg-type]


def markdown(results: list[MethodResult], target: Target | None) -> str:
    lines = [
        "### Peak RSS of (c) against clip length",
        "",
        "| resolution | frames | fps | peak RSS MB |",
        "| --- | --- | --- | --- |",
    ]
    for r in results:
        if r.status != "ok":
            lines.append(f"| {r.resolution} | {r.status}: {r.reason} | — | — |")
            continue
        lines.append(f"| {r.resolution} | {r.frames} | {r.fps:.3g} | {r.peak_rss_mb:,.0f} |")
    if target is not None:
        result = "PASS" if target.passed else "FAIL"
        lines += ["", f"{target.name}: {target.shown} (goal {target.goal}): **{result}**"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--resolution", default="1080p", help="1080p, 4k or WIDTHxHEIGHT")
    parser.add_argument("--frames", default="100,1000", help="clip lengths to compare, comma list")
    parser.add_argument("--work", type=Path, default=None, help="workload cache (default: mattecli bench's)")
    parser.add_argument("-m", "--model", type=Path, default=DEFAULT_MODEL_FILE, help="ONNX model")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    try:
        lengths = [int(n) for n in args.frames.split(",") if n.strip()]
        if len(lengths) < 2 or min(lengths) < 1:
            parser.error("--frames needs at least two lengths of 1 frame or more, e.g. 100,1000")
        if not args.model.is_file():
            parser.error(f"model not found: {args.model} (give one with --model)")
        work = args.work or default_work_dir()
        results, target = measure(args.resolution, lengths, work, args.model, args.threads, args.seed)
    except MatteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        payload = {"results": [r.to_json() for r in results], "target": target.to_json() if target else None}
        print(json.dumps(payload, indent=2))
    else:
        print(markdown(results, target), end="")
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
