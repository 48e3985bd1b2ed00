"""ONNX -> TensorRT engine: check the ONNX file, then build through the TensorRT 10.x/11.x builder API.

The checks on the ONNX file (:func:`inspect_onnx`, :func:`check_profiles`) need only ``onnx``, so
``build-engine`` reports a wrong file (no mattecli contract, static sizes, an fp32 file passed
with ``--fp16``, a band model whose patches are not the size mattecli cuts) on any machine, before
it asks for TensorRT or a GPU.

Precision comes from the graph. TensorRT 11 removed the FP16 builder flag (weak typing): an fp16
engine is built from an ONNX file whose weights and activations already are fp16
(``mattecli export --fp16``). On TensorRT 10 the network is created strongly typed so that the
two majors build the same engine from the same file.

The timing cache (the measured speed of each kernel choice) is kept in a file that later builds
load, which turns a rebuild for a new profile or a re-exported model from minutes into seconds.
An engine whose sidecar already matches this build (same TensorRT, GPU, ONNX bytes, profiles,
flags) is kept rather than rebuilt, unless asked.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from engines.base import Device
from engines.profiles import Profile, format_shape, input_box, layout
from engines.sidecar import (
    AMPERE,
    EngineSidecar,
    HardwareCompatibility,
    file_sha256,
    read_sidecar,
    sidecar_path,
    sm,
    write_sidecar,
)
from engines.tensorrt import Gpu, cuda_gpu, import_tensorrt, no_gpu_error, trt_logger, trt_major
from mattecli import __version__
from mattecli.contract_validation import check_graph_names
from mattecli.errors import EXIT_FAILED, InputError, MatteError
from mattecli.media.imageio import atomic_path
from mattecli.models import ModelContract, contract_from_metadata, input_dtype, load_onnx

MIN_OPSET = 17
_REEXPORT = "re-export it with `mattecli export`, which writes one file with dynamic batch, height and width"
# How many parser errors a failed parse lists.
PARSER_ERRORS_SHOWN = 5


class BuildError(MatteError):
    """TensorRT could not build an engine from a file that passed the ONNX checks."""

    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class GraphInput:
    """One graph input as the builder sees it."""

    name: str
    kind: str  # what the contract feeds it (image, trimap_2ch, band_index, ...)
    shape: tuple[int | None, ...]  # its dimensions in the graph; None where they are dynamic
    dtype: str  # ONNX element type name: FLOAT, FLOAT16, INT64


@dataclass(frozen=True)
class OnnxFacts:
    """What ``build-engine`` learned from the ONNX file, all without TensorRT."""

    path: Path
    sha256: str
    contract: ModelContract
    opset: int
    inputs: tuple[GraphInput, ...]
    precision: Literal["fp32", "fp16"]
    fp16_initializers: int
    fp32_initializers: int


def _graph_input(value: onnx.ValueInfoProto, kind: str, path: Path) -> GraphInput:
    """The input ``value`` fed with ``kind``: its rank and element type checked, its shape recorded."""
    tensor = value.type.tensor_type
    dims = list(tensor.shape.dim)
    axes = layout(kind)
    if len(dims) != len(axes):
        names = ", ".join(axis for axis, _ in axes)
        raise InputError(
            f"graph input {value.name!r} has {len(dims)} dimensions, expected {len(axes)} ({names})",
            path=path,
            hint=_REEXPORT,
        )
    dtype = onnx.TensorProto.DataType.Name(tensor.elem_type)
    fed = onnx.TensorProto.DataType.Name(onnx.helper.np_dtype_to_tensor_dtype(np.dtype(input_dtype(kind))))
    wanted = (fed, "FLOAT16") if fed == "FLOAT" else (fed,)
    if dtype not in wanted:
        raise InputError(
            f"graph input {value.name!r} is {dtype}, expected {' or '.join(wanted)} "
            f"(mattecli feeds {kind} as {fed})",
            path=path,
            hint=_REEXPORT,
        )
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)
    return GraphInput(value.name, kind, shape, dtype)


def inspect_onnx(path: Path, *, fp16: bool = False) -> OnnxFacts:
    """Check that ``path`` is an ONNX file TensorRT can build a mattecli engine from; return its facts.

    Refused here: a missing or unreadable file, weights in an external data file (the sidecar's
    hash covers one file, and a ``.onnx.data`` left behind breaks the build later), no mattecli
    contract, an opset below :data:`MIN_OPSET`, graph inputs that differ from the contract's or
    lack a fixed channel count, and ``fp16`` for a file without fp16 weights. Static batch/height/
    width sizes are recorded; :func:`check_profiles` refuses only profiles that disagree with them.
    """
    path = Path(path)
    proto = load_onnx(path)
    graph = proto.graph

    external = [t.name for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        where = next(
            (e.value for t in graph.initializer for e in t.external_data if e.key == "location"),
            "another file",
        )
        raise InputError(
            f"{len(external)} weights are stored outside the ONNX file (in {where})",
            path=path,
            hint="re-export with `mattecli export`, which keeps the weights inside one file",
        )

    contract = contract_from_metadata({p.key: p.value for p in proto.metadata_props}, path)

    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise InputError(
            f"the graph uses ONNX opset {opset}; TensorRT engines need opset {MIN_OPSET} or later",
            path=path,
            hint="re-export it with `mattecli export` (opset 21)",
        )

    initializer_names = {t.name for t in graph.initializer}
    values = {v.name: v for v in graph.input if v.name not in initializer_names}
    check_graph_names(contract, values, [v.name for v in graph.output], path)
    wanted = dict(contract.inputs)
    inputs = tuple(_graph_input(values[name], wanted[name], path) for name, _ in contract.inputs)

    counts = {"FLOAT": 0, "FLOAT16": 0}
    for tensor in graph.initializer:
        name = onnx.TensorProto.DataType.Name(tensor.data_type)
        if name in counts:
            counts[name] += 1
    precision: Literal["fp32", "fp16"] = "fp16" if counts["FLOAT16"] else "fp32"
    if fp16 and precision != "fp16":
        raise InputError(
            f"--fp16 was given but this file holds only fp32 weights ({counts['FLOAT']} fp32, no fp16)",
            path=path,
            hint="TensorRT takes precision from the graph: export the fp16 variant with "
            "`mattecli export --fp16` and build from that file",
        )
    return OnnxFacts(
        path=path,
        sha256=file_sha256(path),
        contract=contract,
        opset=opset,
        inputs=inputs,
        precision=precision,
        fp16_initializers=counts["FLOAT16"],
        fp32_initializers=counts["FLOAT"],
    )


def check_profiles(facts: OnnxFacts, profiles: Sequence[Profile]) -> None:
    """Refuse a graph whose static sizes differ from what the profiles (or mattecli) send.

    A static height the profile spans, a channel count or a band patch side other than the one
    mattecli feeds: TensorRT would build the engine, and every call would then fail.
    """
    problems = []
    fixed = set()  # the graph's static sizes on axes a profile sets, for the hint
    for graph_input in facts.inputs:
        boxes = [input_box(profile, graph_input.kind) for profile in profiles]
        axes = zip(layout(graph_input.kind), graph_input.shape, strict=True)
        for index, ((axis, source), size) in enumerate(axes):
            if size is None:
                continue
            if isinstance(source, str):
                fixed.add(f"{axis}={size}")
            asked = {shape[index] for box in boxes for shape in box}
            if asked != {size}:
                span = f"{min(asked)}..{max(asked)}" if len(asked) > 1 else str(next(iter(asked)))
                who = "the profile asks" if isinstance(source, str) else "mattecli feeds"
                problems.append(f"input {graph_input.name!r} has a fixed {axis} of {size}, {who} {span}")
    if problems:
        sizes = f" ({', '.join(sorted(fixed))})" if fixed else ""
        raise InputError(
            "the graph has static sizes the optimisation profile does not match: "
            + "; ".join(dict.fromkeys(problems)),
            path=facts.path,
            hint=f"{_REEXPORT}; or give --min/--opt/--max equal to the fixed sizes{sizes}",
        )


@dataclass(frozen=True)
class BuildOptions:
    """Builder settings of ``mattecli build-engine``."""

    device: Device
    workspace_gib: float = 4.0
    timing_cache: Path | None = None  # default: <engine stem>.timing-cache beside the engine
    optimization_level: int = 3  # TensorRT's 0..5; higher searches longer for faster kernels
    version_compatible: bool = False
    hardware_compatibility: HardwareCompatibility = "none"
    force: bool = False  # rebuild even when the existing engine's sidecar matches


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote (or kept)."""

    engine: Path
    sidecar: EngineSidecar
    timing_cache: Path
    timing_cache_reused: bool  # a cache from an earlier build was loaded
    kept_existing: bool  # the engine on disk already matched; nothing was built
    seconds: float
    engine_bytes: int

    def to_json(self) -> dict[str, object]:
        return {
            "engine": str(self.engine),
            "sidecar": str(sidecar_path(self.engine)),
            "timing_cache": str(self.timing_cache),
            "timing_cache_reused": self.timing_cache_reused,
            "kept_existing": self.kept_existing,
            "seconds": round(self.seconds, 3),
            "engine_bytes": self.engine_bytes,
            **self.sidecar.to_json(),
        }


def default_timing_cache(engine: Path) -> Path:
    return Path(engine).with_suffix(".timing-cache")


def _existing_build(engine: Path, planned: EngineSidecar) -> EngineSidecar | None:
    """The sidecar of an engine already on disk that is exactly this build, else None."""
    if not engine.is_file() or not sidecar_path(engine).is_file():
        return None
    try:
        existing = read_sidecar(engine)
    except InputError:
        return None
    if existing.same_build(planned) and file_sha256(engine) == existing.engine_sha256:
        return existing
    return None


def _parse(trt: Any, builder: Any, facts: OnnxFacts) -> Any:
    # Explicit batch is the only mode since 10.0; STRONGLY_TYPED is always on in 11 and must be
    # asked for on 10 so that precision follows the graph there too.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if trt_major(trt) == 10 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger(trt))
    if not parser.parse_from_file(str(facts.path)):
        errors = [parser.get_error(i).desc() for i in range(parser.num_errors)]
        shown = "; ".join(errors[:PARSER_ERRORS_SHOWN]) or "no details"
        more = f" (and {len(errors) - PARSER_ERRORS_SHOWN} more)" if len(errors) > PARSER_ERRORS_SHOWN else ""
        raise BuildError(
            f"TensorRT {trt.__version__}'s ONNX parser rejected the graph: {shown}{more}",
            path=facts.path,
            hint="an operator TensorRT does not support; see its log above for the node",
        )
    return network, parser  # the parser must outlive the network's use of its weights


def _configure(
    trt: Any, builder: Any, network: Any, facts: OnnxFacts, profiles: Sequence[Profile], options: BuildOptions
) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * (1 << 30)))
    config.builder_optimization_level = options.optimization_level
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    expected = {i.name for i in facts.inputs}
    if names != expected:
        raise BuildError(f"TensorRT sees inputs {sorted(names)}, the ONNX file {sorted(expected)}")
    for profile in profiles:
        trt_profile = builder.create_optimization_profile()
        for graph_input in facts.inputs:
            trt_profile.set_shape(graph_input.name, *input_box(profile, graph_input.kind))
        if config.add_optimization_profile(trt_profile) < 0:
            raise BuildError(
                f"TensorRT refused the optimisation profile {profile.describe()}", path=facts.path
            )
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    level = {"ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}.get(
        options.hardware_compatibility
    )
    if level is not None:
        if not hasattr(trt.HardwareCompatibilityLevel, level):
            raise InputError(
                f"TensorRT {trt.__version__} has no {options.hardware_compatibility} hardware compatibility",
                hint="upgrade TensorRT, or choose --hardware-compatibility ampere+ or none",
            )
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, level)
    return config


def _load_timing_cache(config: Any, path: Path, say: Callable[[str], None]) -> bool:
    """Attach the timing cache at ``path`` (or a new one); True if an earlier cache was used."""
    blob = path.read_bytes() if path.is_file() else b""
    if blob:
        cache = config.create_timing_cache(blob)
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return True
        say(f"timing cache {path} was made by another TensorRT version or GPU; starting a new one")
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    return False


def build_engine(
    facts: OnnxFacts,
    profiles: Sequence[Profile],
    output: Path,
    options: BuildOptions,
    *,
    say: Callable[[str], None] = lambda _line: None,
) -> BuildResult:
    """Build ``facts.path`` into ``output`` (+ sidecar, + timing cache); ``say`` gets progress lines."""
    output = Path(output)
    if output.resolve() == facts.path.resolve():
        raise InputError(
            "the engine would overwrite its own ONNX file", path=output, hint="pick another -o path"
        )
    if options.workspace_gib <= 0:
        raise InputError(f"--workspace {options.workspace_gib} must be a positive number of GiB")
    if not 0 <= options.optimization_level <= 5:
        raise InputError(f"--builder-optimization-level {options.optimization_level} must be 0 to 5")
    check_profiles(facts, profiles)

    trt = import_tensorrt()
    torch, gpu = cuda_gpu(options.device)
    if options.hardware_compatibility == "ampere+" and gpu.compute_capability < AMPERE:
        raise InputError(
            f"--hardware-compatibility ampere+ needs an Ampere or newer GPU to build on; {gpu.name} is "
            f"{sm(gpu.compute_capability)}",
            hint="build on an sm_80+ GPU, or leave --hardware-compatibility at none",
        )
    planned = _sidecar(trt.__version__, gpu, facts, profiles, options, engine_sha256="")
    cache_path = options.timing_cache or default_timing_cache(output)
    if not options.force and (kept := _existing_build(output, planned)) is not None:
        say(f"{output} is up to date for this model, GPU and TensorRT; kept it (--force rebuilds)")
        return BuildResult(output, kept, cache_path, False, True, 0.0, output.stat().st_size)

    started = time.perf_counter()
    with torch.cuda.device(gpu.index):
        try:
            builder = trt.Builder(trt_logger(trt))
        except TypeError:  # pybind's "factory function returned nullptr": CUDA did not initialise
            raise no_gpu_error(trt, options.device, "builder") from None
        network, _parser = _parse(trt, builder, facts)
        config = _configure(trt, builder, network, facts, profiles, options)
        cache_reused = _load_timing_cache(config, cache_path, say)
        say(
            f"building {output.name} with TensorRT {trt.__version__} on {gpu.name} "
            f"({sm(gpu.compute_capability)}), {facts.precision}, profiles: "
            + " | ".join(p.describe() for p in profiles)
        )
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BuildError(
                "TensorRT could not build the engine (its log above says why)",
                path=facts.path,
                hint="a smaller --max shape or a larger --workspace often helps when memory ran out",
            )
        data = memoryview(plan)
        with atomic_path(output) as tmp:
            tmp.write_bytes(data)
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
    sidecar = _sidecar(
        trt.__version__, gpu, facts, profiles, options, engine_sha256=hashlib.sha256(data).hexdigest()
    )
    write_sidecar(output, sidecar)
    return BuildResult(
        output, sidecar, cache_path, cache_reused, False, time.perf_counter() - started, data.nbytes
    )


def _sidecar(
    trt_version: str,
    gpu: Gpu,
    facts: OnnxFacts,
    profiles: Sequence[Profile],
    options: BuildOptions,
    *,
    engine_sha256: str,
) -> EngineSidecar:
    return EngineSidecar(
        tensorrt_version=trt_version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        onnx_file=str(facts.path),
        onnx_sha256=facts.sha256,
        engine_sha256=engine_sha256,
        profiles=tuple(profiles),
        precision=facts.precision,
        contract=facts.contract,
        mattecli_version=__version__,
        version_compatible=options.version_compatible,
        hardware_compatibility=options.hardware_compatibility,
    )


def describe_profiles(profiles: Sequence[Profile], *, band: bool = False) -> str:
    """Profiles as one line per profile, for the command's summary (``band``: N counts band cells)."""
    n, frame = ("cells", "frame HxW") if band else ("N", "HxW")
    return "\n".join(
        f"  profile {i}: {n} {p.min[0]}..{p.max[0]} (opt {p.opt[0]}), "
        f"{frame} {format_shape(p.min[1:])}..{format_shape(p.max[1:])} (opt {format_shape(p.opt[1:])})"
        for i, p in enumerate(profiles)
    )
