"""The four ways of matting the benchmark compares, each measured in a child process of its own.

* **(a)** whole-frame eager PyTorch, the way the FBA reference demo runs: each frame (and its
  trimap) stretched to the next multiple of 8, one forward pass of the checkpoint's network per
  frame, outputs stretched back; decoding, inference and writing one after another. A band model
  (:mod:`mattecli.band_inputs`) computes every cell of the frame here: its whole-frame inference,
  which its band inference in (c) equals inside the band by construction.
* **(b)** the same, with the exported ONNX model in ONNX Runtime.
* **(c)** ``mattecli run`` as a user runs it: :func:`mattecli.pipeline.run_pipeline` with its
  default tiling over the unknown band (a band model: only the band's cells) and its decoder
  and writer threads; the per-stage seconds
  are the pipeline's own :class:`~mattecli.summary.StageClock`.
* **(d)** pymatting's closed-form matting (Levin et al.) frame by frame, with pymatting's
  multi-level foreground estimate for the colour.

(a) to (c) run one network with one set of weights; (a), (b) and (d) are timed on the same stage
clock, around the same functions the pipeline uses (sources, trimap index, model inputs, fusion,
sinks), so their columns mean the same thing. Every method writes the same outputs (16-bit PNG
alpha and foreground) and nothing is scored while the clock runs: quality is computed afterwards
from the files written (:func:`score_outputs`).

Why a child process per method: peak RSS is a property of a process. In one process the first
method's peak (or the torch import) would hide the next one's, so each method runs in
``python -m mattecli.bench.methods JOB.json`` and reports its own peak at the end (see
:func:`_peak_rss_mb` for why that is ``VmHWM`` and not ``ru_maxrss`` on Linux).
Model loading and a warm-up call on a small input happen before the clock starts (``setup``), as a
long-running job pays them once. On the CPU the child's address space is capped at what the machine
has free, so a method that cannot fit a frame (closed-form matting at 4K) fails with a message
instead of waking the kernel's out-of-memory killer, which could pick another process.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mattecli.bench.workload import CLIP_NAME, Workload
from mattecli.errors import InputError, MatteError, UnavailableError
from mattecli.media.frame import Frame
from mattecli.media.imageio import atomic_path, read_gray
from mattecli.media.sinks import OutputSpec, Sinks
from mattecli.summary import STAGES, StageClock

if TYPE_CHECKING:
    from engines.base import Engine

METHODS: dict[str, str] = {
    "a": "whole-frame eager PyTorch (FBA demo; band models: every cell)",
    "b": "whole-frame ONNX Runtime",
    "c": "mattecli run (tiled or band cells, overlapped I/O)",
    "d": "pymatting closed-form",
}
Status = Literal["ok", "skipped", "failed"]

# What every method writes: run's default alpha and the foreground format of the README's example.
ALPHA_FORMAT, FOREGROUND_FORMAT = "png16", "png16"
# The FBA demo stretches frames to a multiple of 8 (its encoder's output stride).
DEMO_MULTIPLE = 8
# Side of the warm-up input (a multiple of every model's size multiple).
WARM_UP_SIZE = 64
# Share of the free memory a CPU child may map.
MEMORY_SHARE = 0.9
_RESULT, _JOB = "result.json", "job.json"
_NO_PIXELS = np.empty((0, 0, 3), dtype=np.uint8)


@dataclass(frozen=True)
class Job:
    """What one child runs: a method on the first ``frames`` frames of a workload."""

    method: str
    workload: Path  # the workload's folder
    out: Path  # outputs, job.json and result.json
    frames: int
    model: Path  # ONNX file: (b), and (c) with ONNX Runtime
    checkpoint: Path  # PyTorch checkpoint: (a)
    engine: Literal["ort", "trt"] = "ort"  # engine of (c)
    trt_engine: Path | None = None  # .engine file of (c) with TensorRT
    threads: int = 2
    device: str = "cpu"  # cuda with TensorRT: (a) and (b) then run on the GPU too

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        paths = {"workload", "out", "model", "checkpoint", "trt_engine"}
        return cls(**{k: Path(v) if k in paths and v is not None else v for k, v in data.items()})


@dataclass
class MethodResult:
    """One method's measurements on one workload (``sad``/``grad`` are filled in by scoring)."""

    method: str
    status: Status
    reason: str | None = None  # why it was skipped or failed
    resolution: str = ""  # the workload's label (1080p, 4k, WxH), set by the caller
    frames: int = 0  # frames written
    wall_seconds: float = 0.0  # first decode to last file written
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    setup_seconds: float = 0.0  # model loading and warm-up, before the clock starts
    # CPU seconds of all the child's threads while the clock ran: cpu / wall near the thread count
    # means the method had the cores; far below it, something else was using them.
    cpu_seconds: float = 0.0
    peak_rss_mb: float | None = None  # the child's peak resident set, 10^6 bytes
    engine: str = ""
    device: str = ""
    threads: int = 0
    sad: list[float] = field(default_factory=list)  # raw, per frame (the DIM code's /1000 included)
    grad: list[float] = field(default_factory=list)  # raw, per frame (papers print /1000)

    @property
    def label(self) -> str:
        return METHODS[self.method]

    @property
    def fps(self) -> float | None:
        return self.frames / self.wall_seconds if self.frames and self.wall_seconds > 0 else None

    def per_frame(self, stage: str) -> float | None:
        return self.seconds[stage] / self.frames if self.frames else None

    @property
    def engine_share(self) -> float | None:
        """Engine seconds over wall seconds (the rest is time the engine was not running)."""
        return self.seconds["engine"] / self.wall_seconds if self.frames and self.wall_seconds > 0 else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(label=self.label, fps=self.fps, engine_share=self.engine_share)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MethodResult:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def output_spec(directory: Path) -> OutputSpec:
    return OutputSpec(directory=directory, alpha=ALPHA_FORMAT, foreground=FOREGROUND_FORMAT)


def alpha_file(out: Path, name: str, index: int) -> Path:
    """Where a method wrote the alpha of frame ``index`` of the clip ``name`` (run's own naming)."""
    sinks = Sinks(output_spec(out), kind="video", fps=None)
    return sinks.outputs_for(Frame(index=index, name=name, image=_NO_PIXELS, source=out))[0]


# --- in the parent ----------------------------------------------------------------------------------


def run_method(job: Job) -> MethodResult:
    """Run ``job`` in a child process and return what it measured (not yet scored)."""
    job.out.mkdir(parents=True, exist_ok=True)
    job_file = job.out / _JOB
    job_file.write_text(json.dumps(job.to_json(), indent=2), encoding="utf-8")
    (job.out / _RESULT).unlink(missing_ok=True)
    threads = str(job.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "NUMBA_NUM_THREADS": threads}
    child = subprocess.run(
        [sys.executable, "-m", "mattecli.bench.methods", str(job_file)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    result_file = job.out / _RESULT
    if child.returncode == 0 and result_file.is_file():
        return MethodResult.from_json(json.loads(result_file.read_text(encoding="utf-8")))
    if child.returncode < 0:
        how = f"killed by {signal.Signals(-child.returncode).name}"
        if child.returncode == -signal.SIGKILL:
            how += " (out of memory?)"
    else:
        how = f"exit code {child.returncode}"
    last = [line for line in child.stderr.splitlines() if line.strip()][-1:]
    reason = f"the child process ended: {how}" + "".join(f"; {line}" for line in last)
    return MethodResult(job.method, "failed", reason)


def score_outputs(result: MethodResult, out: Path, workload: Workload) -> MethodResult:
    """``result`` with SAD and Grad of every written alpha against the ground truth, on the unknown band.

    Both are the DIM-parity metrics of :mod:`mattecli.metrics` ("dim" precision: the 16-bit
    outputs are read as the official code reads 8-bit files), over the trimap's unknown pixels.
    """
    from mattecli.metrics import gradient_error, sad

    sads, grads = [], []
    for index in range(result.frames):
        pred = read_gray(alpha_file(out, CLIP_NAME, index))
        gt, trimap = workload.gt_alpha(index), workload.trimap(index)
        sads.append(sad(pred, gt, trimap))
        grads.append(gradient_error(pred, gt, trimap))
    return replace(result, sad=sads, grad=grads)


# --- in the child -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Child entry point: run the job in ``argv[0]`` and write ``result.json`` beside it."""
    job_file = Path((argv if argv is not None else sys.argv[1:])[0])
    job = Job.from_json(json.loads(job_file.read_text(encoding="utf-8")))
    try:
        if job.device == "cpu" or job.method == "d":  # a CUDA context maps far more than it uses
            _cap_memory()
        result = _measure(job)
    except UnavailableError as exc:
        result = MethodResult(job.method, "skipped", str(exc))
    except MatteError as exc:
        result = MethodResult(job.method, "failed", str(exc))
    except MemoryError:
        result = MethodResult(
            job.method, "failed", "out of memory (frame needs more than the machine has free)"
        )
    except Exception as exc:  # noqa: BLE001 - any failure of a method is a row of the report, not a crash
        first = str(exc).strip().splitlines()[:1]
        result = MethodResult(job.method, "failed", f"{type(exc).__name__}: {''.join(first)}")
    result.peak_rss_mb = _peak_rss_mb()
    with atomic_path(job.out / _RESULT) as tmp:
        tmp.write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
    return 0


def _measure(job: Job) -> MethodResult:
    workload = Workload.load(job.workload)
    clock = StageClock()
    began = time.perf_counter()
    if job.method == "d":
        engine_name, device = "pymatting", "cpu"
        matte = _closed_form(clock)
    else:
        engine = _open(job)
        engine_name, device = engine.name, str(engine.device)
        _warm_up(engine)
    setup = time.perf_counter() - began
    cpu = _cpu_seconds()
    if job.method == "c":
        frames, wall = _pipeline(engine, workload, job, clock)
    else:
        if job.method in ("a", "b"):
            matte = _DemoMatter(engine, job.out, clock)
        frames, wall = _sequential(matte, workload, job, clock)
    cpu = _cpu_seconds() - cpu
    return MethodResult(
        job.method,
        "ok",
        frames=frames,
        wall_seconds=wall,
        seconds=clock.snapshot(),
        setup_seconds=setup,
        cpu_seconds=cpu,
        engine=engine_name,
        device=device,
        threads=job.threads,
    )


def _open(job: Job) -> Engine:
    from engines.base import open_engine

    if job.method == "a":
        return open_engine("torch", job.checkpoint, job.device, threads=job.threads)
    if job.method == "b":
        return open_engine("ort", job.model, job.device, threads=job.threads)
    if job.engine == "trt":
        assert job.trt_engine is not None
        return open_engine("trt", job.trt_engine, job.device)
    return open_engine("ort", job.model, job.device, threads=job.threads)


def _warm_up(engine: Engine) -> None:
    """One call on a small input, so first-call costs (allocation, kernel choice) stay off the clock."""
    from mattecli.band_predictor import BandPlan
    from mattecli.inputs import FrameInputs, build_inputs

    size = WARM_UP_SIZE
    image = np.full((size, size, 3), 0.5, np.float32)
    trimap = np.zeros((size, size), np.uint8)
    trimap[:, size // 3 :] = 128
    trimap[:, 2 * size // 3 :] = 255
    if engine.contract.architecture == "band":
        engine.infer(BandPlan(FrameInputs(engine.contract, image, trimap)).feed())
        return
    inputs = build_inputs(engine.contract, image, trimap)
    engine.infer({kind: array[None] for kind, array in inputs.arrays.items()})


Matte = Callable[[Frame, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _sequential(matte: Matte, workload: Workload, job: Job, clock: StageClock) -> tuple[int, float]:
    """Decode, trimap, matte, write, one frame after another in this thread (no overlap): (frames, wall)."""
    from contextlib import closing

    from mattecli.media.sources import open_source
    from mattecli.media.trimaps import TrimapIndex
    from mattecli.stage_timing import timed_frames

    source = open_source(workload.video)
    trimaps = TrimapIndex.open(workload.trimaps)
    written = 0
    began = time.perf_counter()
    with closing(source), Sinks(output_spec(job.out), kind=source.info.kind, fps=source.info.fps) as sinks:
        for frame in timed_frames(source.frames(end=job.frames - 1, prefetch=0), clock):
            with clock.measure("preprocess"):
                trimap = trimaps.load(frame.name, frame.index, (frame.height, frame.width))
            alpha, fg = matte(frame, trimap)
            with clock.measure("write"):
                sinks.write(frame, alpha, fg)
            written += 1
    return written, time.perf_counter() - began


class _DemoMatter:
    """Whole frames as the FBA reference demo runs them, through :class:`mattecli.pipeline.FrameMatter`.

    The demo stretches frame and trimap to the next multiple of 8 (Lanczos), runs one forward pass
    and stretches the outputs back. FrameMatter with tiling off runs the whole frame and pads to the
    model's multiple instead, which is the same thing when the frame is already a multiple of 8
    (1080p and 4K are); other sizes are stretched here first, the trimap with nearest-neighbour so
    that it keeps its clean levels, and stretched back bilinearly (what the demo's back-resize does,
    its interpolation flag being passed in the wrong argument).
    """

    def __init__(self, engine: Engine, out: Path, clock: StageClock) -> None:
        from mattecli.frame_matter import FrameMatter
        from mattecli.run_options import RunOptions, TileOptions, check_options

        options = RunOptions(tiles=TileOptions(size=None))
        fusion = check_options(engine.contract, output_spec(out), options, trimaps=True)
        self.clock = clock
        # A band model's whole-frame inference computes every cell of the frame, not only the band's.
        self.matter = FrameMatter(
            engine,
            tiles=options.tiles,
            tta="none",
            fusion=fusion,
            want_foreground=True,
            clock=clock,
            band_cells="all",
        )

    def __call__(self, frame: Frame, trimap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        from mattecli.fusion import impose_trimap
        from mattecli.tiling import padded_size

        height, width = frame.height, frame.width
        size_h, size_w = padded_size(height, width, DEMO_MULTIPLE)
        if (size_h, size_w) == (height, width):
            return self.matter(frame, trimap)  # type: ignore[return-value]
        with self.clock.measure("preprocess"):
            image = cv2.resize(frame.to_float(), (size_w, size_h), interpolation=cv2.INTER_LANCZOS4)
            stretched = cv2.resize(np.asarray(trimap), (size_w, size_h), interpolation=cv2.INTER_NEAREST)
        alpha, fg = self.matter(replace(frame, image=image), stretched)
        with self.clock.measure("fusion"):
            alpha = np.clip(cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
            fg = np.clip(cv2.resize(fg, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
            return impose_trimap(alpha, trimap), fg


def _closed_form(clock: StageClock) -> Matte:
    """pymatting's closed-form alpha and multi-level foreground, timed as engine and fusion."""
    from mattecli.foreground import check_method, estimate_foreground

    check_method("ml")  # UnavailableError without pymatting: the row is skipped
    from pymatting import estimate_alpha_cf

    levels = np.full(256, 0.5)  # pymatting's trimap: 0 background, 1 foreground, else unknown
    levels[0], levels[255] = 0.0, 1.0

    # Warm-up: numba compiles the Laplacian and the foreground solver on first use.
    ramp = np.linspace(0.0, 1.0, 32)
    small = np.dstack([np.tile(ramp, (32, 1))] * 3)
    small_trimap = np.repeat([[0.0] * 11 + [0.5] * 10 + [1.0] * 11], 32, axis=0)
    estimate_foreground(small, estimate_alpha_cf(small, small_trimap), "ml")

    def matte(frame: Frame, trimap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with clock.measure("preprocess"):
            image = frame.to_float().astype(np.float64)
            known = levels[trimap]
        with clock.measure("engine"):
            alpha = estimate_alpha_cf(image, known)
        with clock.measure("fusion"):
            alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
            return alpha, estimate_foreground(image, alpha, "ml")

    return matte


def _pipeline(engine: Engine, workload: Workload, job: Job, clock: StageClock) -> tuple[int, float]:
    """(c): ``mattecli run``'s pipeline with its defaults; its own clock's seconds go into ``clock``."""
    from mattecli.pipeline import run_pipeline
    from mattecli.run_options import RunOptions

    summary = run_pipeline(
        [str(workload.video)],
        engine,
        output_spec(job.out),
        trimap_spec=workload.trimaps,
        options=RunOptions(end=job.frames - 1),
    )
    item = summary.inputs[0]
    if item.failed:
        raise InputError(item.error or "the pipeline stopped without saying why")
    for stage, seconds in item.clock.snapshot().items():
        clock.seconds[stage] = seconds
    return item.frames_written, item.wall_seconds


def _cap_memory() -> None:
    """Limit this process's address space to the memory the machine has free (Linux; see the module doc)."""
    try:
        meminfo = Path("/proc/meminfo").read_text(encoding="ascii")
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return
    available = _kib(meminfo, "MemAvailable")
    mapped = _kib(status, "VmSize")
    if available is None or mapped is None:
        return
    limit = (mapped + int(MEMORY_SHARE * available)) * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _kib(text: str, key: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    """This process's own peak resident set in MB (10^6 bytes).

    Linux: ``VmHWM``, the high-water mark of this process image. Not ``ru_maxrss``: Linux carries
    it across ``execve``, so a child would report at least its parent's peak at the time it was
    started (a parent that had just rendered a 4K workload, or a test runner with torch loaded).
    Elsewhere ``ru_maxrss`` (bytes on macOS, KiB on the BSDs).
    """
    try:
        hwm = _kib(Path("/proc/self/status").read_text(encoding="ascii"), "VmHWM")
    except OSError:
        hwm = None
    if hwm is not None:
        return hwm * 1024 / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024) / 1e6


if __name__ == "__main__":
    sys.exit(main())
