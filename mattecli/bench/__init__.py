"""``mattecli bench``: how fast and how well four ways of matting run the same real clips, side by side.

For each resolution a workload is built (or reused) from real matting data
(:mod:`mattecli.bench.workload`); each chosen method runs it in a child process of its own
(:mod:`mattecli.bench.methods`); its written mattes are scored against the ground truth; and the
report (:mod:`mattecli.bench.report`) puts fps, seconds per stage, peak RSS and quality side by side
with the targets as ratios. :func:`run_bench` ties these together; the command only parses options.

This module imports the heavy parts (NumPy, OpenCV, PyAV) only when a run starts, so the command
line stays quick to start and ``--help`` does not wait for them.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata, util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mattecli.default_model import DEFAULT_MODEL_FILE
from mattecli.errors import InputError, UnavailableError

if TYPE_CHECKING:
    from mattecli.bench.methods import MethodResult
    from mattecli.bench.report import BenchReport
    from mattecli.bench.workload import Workload, WorkloadSpec

# The checkpoint the packaged default model (DEFAULT_MODEL_FILE) is exported from.
DEFAULT_CHECKPOINT = (
    Path(__file__).resolve().parents[2] / "training" / "results" / "bandmatte" / "weights.pth"
)
DEFAULT_THREADS = 2
DEFAULT_FRAMES = 10
DEFAULT_CF_FRAMES = 2


def default_work_dir() -> Path:
    """Where workloads are cached: ``$XDG_CACHE_HOME/mattecli/bench`` (``~/.cache`` by default)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mattecli" / "bench"


@dataclass(frozen=True)
class BenchOptions:
    """One benchmark run. ``whole_frames`` (None: ``frames``) bounds (a) and (b), ``cf_frames`` (d)."""

    resolutions: tuple[str, ...] = ("1080p", "4k")
    frames: int = DEFAULT_FRAMES
    whole_frames: int | None = None
    cf_frames: int = DEFAULT_CF_FRAMES
    methods: tuple[str, ...] = ("a", "b", "c", "d")
    engine: Literal["ort", "trt"] = "ort"
    model: Path = DEFAULT_MODEL_FILE
    checkpoint: Path = DEFAULT_CHECKPOINT
    trt_engine: Path | None = None
    work: Path | None = None  # None: default_work_dir()
    threads: int = DEFAULT_THREADS
    seed: int = 0
    keep_outputs: Path | None = None  # keep every method's outputs here (default: deleted once scored)

    @property
    def device(self) -> str:
        return "cuda" if self.engine == "trt" else "cpu"

    def frames_for(self, method: str) -> int:
        if method in ("a", "b"):
            return self.whole_frames or self.frames
        return self.cf_frames if method == "d" else self.frames

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["work"] = str(self.work or default_work_dir())
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


class BenchProgress:
    """Where :func:`run_bench` tells what it is doing; this base class shows nothing."""

    def workload_started(self, label: str, spec: WorkloadSpec) -> None:
        """A workload is being built (not called when a cached one is reused)."""

    def workload_frame(self) -> None:
        """One more workload frame is written."""

    def workload_ready(self, label: str, workload: Workload) -> None:
        """The workload of ``label`` is on disk."""

    def method_started(self, label: str, method: str, frames: int) -> None:
        """A method starts on ``frames`` frames of the workload of ``label``."""

    def method_finished(self, result: MethodResult) -> None:
        """A method has been measured and scored."""


def check_options(options: BenchOptions) -> str | None:
    """Refuse what cannot run before any work starts; return the GPU's name for ``engine="trt"``."""
    from mattecli.bench.methods import METHODS
    from mattecli.bench.workload import parse_resolution

    unknown = [m for m in options.methods if m not in METHODS]
    if unknown or not options.methods or len(set(options.methods)) != len(options.methods):
        raise InputError(
            f"--methods {','.join(options.methods)}: give each of a, b, c, d at most once",
            hint="e.g. --methods a,b,c,d or --methods c",
        )
    for name, value in (
        ("--frames", options.frames),
        ("--whole-frames", options.whole_frames or 1),
        ("--cf-frames", options.cf_frames),
    ):
        if value < 1:
            raise InputError(f"{name} must be at least 1, not {value}")
    if options.threads < 1:
        raise InputError(f"--threads must be at least 1, not {options.threads}")
    for text in options.resolutions:
        parse_resolution(text)
    gpu = None
    if options.engine == "trt":
        # As `run` does: a missing TensorRT or GPU first, then problems with the engine file.
        from engines.base import parse_device
        from engines.tensorrt import cuda_gpu, import_tensorrt

        import_tensorrt()
        _, found = cuda_gpu(parse_device(options.device))
        gpu = f"{found.name} (compute capability {found.compute_capability[0]}.{found.compute_capability[1]})"
        if "c" in options.methods:
            if options.trt_engine is None:
                raise InputError(
                    "--engine trt needs the engine file of (c): --trt-engine MODEL.engine",
                    hint="build one with `mattecli build-engine MODEL.onnx` on this machine",
                )
            _require_file(options.trt_engine, "TensorRT engine", "build one with `mattecli build-engine`")
    if "b" in options.methods or ("c" in options.methods and options.engine == "ort"):
        _require_file(options.model, "ONNX model", "give one with --model (write one with `mattecli export`)")
    if "a" in options.methods and util.find_spec("torch") is not None:  # without torch (a) is skipped
        _require_file(
            options.checkpoint,
            "checkpoint for (a)",
            "give the checkpoint the ONNX model was exported from with --checkpoint",
        )
    return gpu


def _require_file(path: Path, what: str, hint: str) -> None:
    if not Path(path).is_file():
        raise InputError(f"{what} not found", path=path, hint=hint)


def run_bench(options: BenchOptions, progress: BenchProgress | None = None) -> BenchReport:
    """Build the workloads, run and score every method on each, and return the report."""
    from mattecli.bench.methods import Job, run_method, score_outputs
    from mattecli.bench.report import BenchReport
    from mattecli.bench.workload import WorkloadSpec, parse_resolution

    progress = progress or BenchProgress()
    gpu = check_options(options)
    work = Path(options.work or default_work_dir())
    machine = machine_facts()
    if gpu is not None:
        machine["gpu"] = gpu
    report = BenchReport(machine, model_facts(options), options.to_json())
    work.mkdir(parents=True, exist_ok=True)
    outputs = options.keep_outputs or Path(tempfile.mkdtemp(prefix=".outputs-", dir=work))
    try:
        for text in options.resolutions:
            label, width, height = parse_resolution(text)
            frames = max(options.frames_for(m) for m in options.methods)
            workload = _workload(label, WorkloadSpec(width, height, frames, options.seed), work, progress)
            report.workloads[label] = workload.to_json()
            for method in options.methods:
                count = options.frames_for(method)
                progress.method_started(label, method, count)
                job = Job(
                    method=method,
                    workload=workload.root,
                    out=outputs / f"{label}-{method}",
                    frames=count,
                    model=options.model,
                    checkpoint=options.checkpoint,
                    engine=options.engine,
                    trt_engine=options.trt_engine,
                    threads=options.threads,
                    device=options.device,
                )
                result = run_method(job)
                result.resolution = label
                if result.status == "ok":
                    result = score_outputs(result, job.out, workload)
                if options.keep_outputs is None:
                    shutil.rmtree(job.out, ignore_errors=True)
                report.results.append(result)
                progress.method_finished(result)
    finally:
        if options.keep_outputs is None:
            shutil.rmtree(outputs, ignore_errors=True)
    return report


def _workload(label: str, spec: WorkloadSpec, work: Path, progress: BenchProgress) -> Workload:
    from mattecli.bench.workload import build_workload, is_built

    if not is_built(spec, work):
        progress.workload_started(label, spec)
    try:
        workload = build_workload(spec, work, on_frame=lambda _index: progress.workload_frame())
    except UnavailableError as exc:
        raise UnavailableError(
            f"building the {label} workload: {exc.message}",
            hint="the workload re-estimates foreground colours with pymatting: pip install pymatting",
        ) from None
    progress.workload_ready(label, workload)
    return workload


def machine_facts() -> dict[str, Any]:
    """CPU, cores, load and library versions: what the absolute numbers of a report depend on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cores": cores,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if hasattr(os, "getloadavg"):
        facts["load_average"] = round(os.getloadavg()[0], 2)
    versions = {}
    for label, dists in (
        ("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),
        ("torch", ("torch",)),
        ("pymatting", ("pymatting",)),
        ("tensorrt", ("tensorrt", "tensorrt-cu13", "tensorrt-cu12")),
    ):
        version = _version(dists)
        if version is not None:
            versions[label] = version
    facts["versions"] = versions
    return facts


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dists: tuple[str, ...]) -> str | None:
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def model_facts(options: BenchOptions) -> dict[str, Any]:
    """The ONNX model's contract name and weight facts, and whether (a)'s checkpoint is its source.

    ``mattecli export`` records the sha256 of the checkpoint it exported; comparing it with the
    checkpoint given for (a) shows whether (a) to (c) really run the same weights.
    """
    uses_onnx = "b" in options.methods or ("c" in options.methods and options.engine == "ort")
    facts: dict[str, Any] = {}
    recorded = None
    if uses_onnx:
        from mattecli.models import read_onnx_contract

        contract = read_onnx_contract(Path(options.model))
        facts.update(
            file=str(options.model),
            name=contract.name,
            facts=contract.weights,
            weights=_describe_weights(contract.weights),
        )
        recorded = contract.weights.get("sha256")
    if "a" in options.methods:
        facts["checkpoint"] = str(options.checkpoint)
        same = None
        if recorded and Path(options.checkpoint).is_file():
            with open(options.checkpoint, "rb") as file:
                same = hashlib.file_digest(file, "sha256").hexdigest() == recorded
        facts["same_weights"] = same
    return facts


def _describe_weights(weights: dict[str, object]) -> str:
    if weights.get("random"):
        return f"random (seed {weights.get('seed')}): the quality columns mean nothing"
    parts = [f"{key} {weights[key]}" for key in ("source", "epoch") if key in weights]
    return ", ".join(parts) or "not described"
