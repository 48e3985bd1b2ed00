"""``mattecli bench``: fps, seconds per stage, peak RSS and quality of four ways of matting, side by side.

Only argument handling and the terminal live here; the work is :func:`mattecli.bench.run_bench`.
The markdown table (or, with ``--json``, the JSON report) goes to stdout, progress to stderr.
Exit codes: 0 every method ran or was skipped for a missing library; 1 a method failed (its row
says why); 3 TensorRT or a GPU is missing for ``--engine trt``; 4 a bad option or file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from mattecli.bench import BenchProgress
from mattecli.console import err_console, print_json, progress_bar, user_errors
from mattecli.errors import EXIT_FAILED

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from mattecli.bench.methods import MethodResult
    from mattecli.bench.workload import Workload, WorkloadSpec


def bench(
    resolution: list[str] = typer.Option(
        ["1080p", "4k"],
        "--resolution",
        "-r",
        help="1080p, 4k or WIDTHxHEIGHT; repeat the option or give a comma list.",
    ),
    frames: int = typer.Option(10, "--frames", "-n", min=1, help="Frames per clip for (c) (and (a), (b))."),
    whole_frames: int | None = typer.Option(
        None,
        "--whole-frames",
        min=1,
        help="Frames for the whole-frame methods (a) and (b) (default: --frames).",
    ),
    cf_frames: int = typer.Option(
        2, "--cf-frames", min=1, help="Frames for (d), pymatting closed-form (slow)."
    ),
    methods: str = typer.Option(
        "a,b,c,d",
        "--methods",
        help="Which to run: a whole-frame PyTorch, b whole-frame ONNX Runtime, c mattecli run, d pymatting.",
    ),
    engine: Literal["ort", "trt"] = typer.Option(
        "ort", "--engine", help="Engine of (c); trt runs (a) and (b) on the GPU too."
    ),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="ONNX model of (b) and (c) (default: the packaged default model)."
    ),
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        help="PyTorch checkpoint of (a), the one --model was exported from "
        "(default: training/results/bandmatte/weights.pth).",
    ),
    trt_engine: Path | None = typer.Option(
        None, "--trt-engine", help="TensorRT engine of (c) with --engine trt (from `mattecli build-engine`)."
    ),
    work: Path | None = typer.Option(
        None, "--work", help="Folder that caches the workloads (default: ~/.cache/mattecli/bench)."
    ),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads of every engine."),
    seed: int = typer.Option(
        0, "--seed", min=0, help="Seed of the workload (foregrounds, background, motion)."
    ),
    keep_outputs: Path | None = typer.Option(
        None,
        "--keep-outputs",
        help="Keep every method's mattes in this folder (default: deleted once scored).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON instead of markdown."),
    save_json: Path | None = typer.Option(
        None, "--save-json", help="Also write the JSON report to this file (the table still prints)."
    ),
) -> None:
    """Measure fps, seconds per stage, peak RSS and quality of four ways of matting the same clips.

    For each resolution a clip is built from real data (alphamatting.com foregrounds the default
    model never trained on, moving over real background photos, ProRes 4444) with its ground-truth
    alpha and trimaps made from it, and cached in --work. Then, each in a process of its own:
    (a) whole-frame eager PyTorch as the FBA demo runs, (b) whole-frame ONNX Runtime, (c) `mattecli
    run`'s pipeline (tiled, overlapped I/O), (d) pymatting's closed-form matting. The report is a
    markdown table with the issue's targets as ratios (PASS/FAIL) from the same run.

    Run it on an otherwise idle machine: other work on the cores slows each method differently.

    Examples:

    ```
    mattecli bench                                         # 1080p and 4k, 10 frames, all four methods

    mattecli bench -r 1080p --frames 10 --methods b,c --json

    mattecli bench --engine trt --trt-engine default.engine -r 1080p,4k --methods a,c
    ```
    """
    from mattecli.bench import DEFAULT_CHECKPOINT, BenchOptions, run_bench
    from mattecli.default_model import DEFAULT_MODEL_FILE

    with user_errors():
        options = BenchOptions(
            resolutions=tuple(r.strip() for text in resolution for r in text.split(",") if r.strip()),
            frames=frames,
            whole_frames=whole_frames,
            cf_frames=cf_frames,
            methods=tuple(m.strip().lower() for m in methods.split(",") if m.strip()),
            engine=engine,
            model=model or DEFAULT_MODEL_FILE,
            checkpoint=checkpoint or DEFAULT_CHECKPOINT,
            trt_engine=trt_engine,
            work=work,
            threads=threads,
            seed=seed,
            keep_outputs=keep_outputs,
        )
        with _TerminalProgress() as progress:
            report = run_bench(options, progress)
        if save_json is not None:
            from mattecli.media.imageio import atomic_path

            with atomic_path(save_json) as tmp:
                tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        if json_output:
            print_json(report.to_json())
        else:
            typer.echo(report.markdown(), nl=False)
        if any(result.status == "failed" for result in report.results):
            raise typer.Exit(EXIT_FAILED)


class _TerminalProgress(BenchProgress):
    """Lines on stderr for each step, and a bar while a workload is rendered (on a terminal only)."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> _TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_bar()

    def workload_started(self, label: str, spec: WorkloadSpec) -> None:
        _say(f"{label}: rendering the workload ({spec.frames} frames of {spec.width}x{spec.height}), once")
        self._bar = progress_bar(f"{label} workload")
        self._bar.start()
        self._task = self._bar.add_task("workload", total=spec.frames)

    def workload_frame(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task)

    def workload_ready(self, label: str, workload: Workload) -> None:
        self._stop_bar()
        _say(f"{label}: workload {workload.root}")

    def method_started(self, label: str, method: str, frames: int) -> None:
        from mattecli.bench.methods import METHODS

        _say(f"{label} ({method}) {METHODS[method]}: {frames} frame{'' if frames == 1 else 's'}...")

    def method_finished(self, result: MethodResult) -> None:
        if result.status != "ok":
            _say(f"  {result.status}: {result.reason}")
            return
        fps = f"{result.fps:.3g} fps" if result.fps else "no frames"
        rss = f", peak RSS {result.peak_rss_mb:,.0f} MB" if result.peak_rss_mb else ""
        _say(f"  {fps}{rss}")

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _say(line: str) -> None:
    err_console.print(line, markup=False, highlight=False)
