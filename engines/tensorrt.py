"""TensorRT engine: runs a ``.engine`` built by ``mattecli build-engine`` through the 10.x/11.x API.

TensorRT and a CUDA build of torch are optional (the ``[gpu]`` extra) and imported only here,
when a TensorRT engine is actually asked for. torch CUDA tensors serve as the device buffers
(TensorRT's own samples moved off pycuda, which can hang next to torch in one process), and work
is queued on a non-default stream, since ``execute_async_v3`` on the default stream forces extra
device-wide synchronisation.

The engine's sidecar (:mod:`engines.sidecar`) is checked against the live TensorRT version and
GPU *before* the plan is deserialised, so a stale engine is refused with the command that
rebuilds it instead of a TensorRT error from deep inside deserialisation.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from engines.base import Device
from engines.profiles import select_profile
from engines.sidecar import check_sidecar, read_sidecar, verify_engine_file
from mattecli.errors import InputError, UnavailableError
from mattecli.models import input_dtype

INSTALL_HINT = (
    'install the GPU extra with `pip install -e ".[gpu]"` on a Linux machine with an NVIDIA GPU; '
    "TensorRT's libraries come from NVIDIA's package index (pypi.nvidia.com), which pip must be able to reach"
)
NO_GPU_HINT = (
    "check that `nvidia-smi` lists the GPU and that the driver is new enough for TensorRT's CUDA "
    "(tensorrt-cu13 needs driver r580 or later; tensorrt-cu12 works with older drivers)"
)


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or UnavailableError saying how to get it."""
    try:
        import tensorrt
    except ImportError as exc:
        missing = getattr(exc, "name", None) == "tensorrt"
        reason = "TensorRT is not installed" if missing else f"TensorRT is installed but cannot load ({exc})"
        raise UnavailableError(reason, hint=INSTALL_HINT) from None
    return tensorrt


@functools.cache
def trt_logger(trt: ModuleType) -> Any:
    """One logger per process (TensorRT keeps a pointer to it); warnings and errors go to stderr."""
    return trt.Logger(trt.Logger.WARNING)


def trt_major(trt: ModuleType) -> int:
    return int(trt.__version__.split(".")[0])


@dataclass(frozen=True)
class Gpu:
    """The CUDA device an engine is built or run on, as the sidecar records it."""

    index: int
    name: str
    compute_capability: tuple[int, int]


def require_cuda(device: Device) -> None:
    """Refuse a CPU device before anything loads: an option mistake, not a missing install."""
    if device.kind != "cuda":
        raise InputError(
            f"TensorRT runs on NVIDIA GPUs only, not on {device}",
            hint="pass --device cuda (or cuda:N), or choose the ONNX Runtime engine for the CPU",
        )


def cuda_gpu(device: Device) -> tuple[ModuleType, Gpu]:
    """A CUDA-enabled ``torch`` and the facts of ``device``, or UnavailableError saying what is missing."""
    require_cuda(device)
    try:
        import torch
    except ImportError:
        raise UnavailableError(
            "torch is not installed; the TensorRT engine uses torch CUDA tensors as its buffers",
            hint=INSTALL_HINT,
        ) from None
    if torch.version.cuda is None:
        raise UnavailableError(
            f"this torch ({torch.__version__}) is a CPU-only build; TensorRT needs a CUDA build of torch",
            hint="install torch with your platform's CUDA command (pytorch.org), then " + INSTALL_HINT,
        )
    if not torch.cuda.is_available():
        raise UnavailableError(
            f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no usable GPU", hint=NO_GPU_HINT
        )
    count = torch.cuda.device_count()
    if device.index >= count:
        raise UnavailableError(
            f"there is no CUDA device {device}: this machine has {count} (cuda:0 to cuda:{count - 1})",
            hint="pick an index that `nvidia-smi` lists, or check CUDA_VISIBLE_DEVICES",
        )
    major, minor = torch.cuda.get_device_capability(device.index)
    return torch, Gpu(device.index, torch.cuda.get_device_name(device.index), (int(major), int(minor)))


def torch_dtypes(trt: ModuleType, torch: ModuleType) -> dict[Any, Any]:
    """TensorRT data types -> torch dtypes, for the types both libraries know."""
    pairs = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "INT8": torch.int8,
        "UINT8": torch.uint8,
        "BOOL": torch.bool,
    }
    return {getattr(trt.DataType, k): v for k, v in pairs.items() if hasattr(trt.DataType, k)}


def no_gpu_error(trt: ModuleType, device: Device, what: str) -> UnavailableError:
    """The error for ``trt.Builder``/``trt.Runtime`` failing to start: CUDA could not initialise."""
    return UnavailableError(
        f"TensorRT {trt.__version__} could not create a {what} on {device}: CUDA failed to initialise "
        "(no usable GPU, or a driver too old for this TensorRT; its log above has the CUDA error)",
        hint=NO_GPU_HINT,
    )


class TrtEngine:
    """A deserialised TensorRT engine wrapped in the engine interface."""

    name = "trt"

    def __init__(self, engine_path: Path, device: Device) -> None:
        require_cuda(device)
        # A missing backend is the first thing to report: without it no engine file can help.
        trt = import_tensorrt()
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise InputError("engine file not found", path=engine_path)
        sidecar = read_sidecar(engine_path)
        torch, gpu = cuda_gpu(device)
        check_sidecar(
            sidecar,
            trt_version=trt.__version__,
            gpu_name=gpu.name,
            compute_capability=gpu.compute_capability,
            engine=engine_path,
        )
        verify_engine_file(engine_path, sidecar)

        self.device = device
        self.model = engine_path
        self.sidecar = sidecar
        self.contract = sidecar.contract
        self._torch = torch
        self._cuda = torch.device("cuda", device.index)
        with torch.cuda.device(device.index):
            try:
                self._runtime = trt.Runtime(trt_logger(trt))
            except TypeError:  # pybind's "factory function returned nullptr"
                raise no_gpu_error(trt, device, "runtime") from None
            if sidecar.version_compatible:
                # Version-compatible plans embed the lean runtime as host code, which must be allowed.
                self._runtime.engine_host_code_allowed = True
            self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self._engine is None:
                raise InputError(
                    "TensorRT could not deserialise this engine (its log above says why)",
                    path=engine_path,
                    hint=f"rebuild with `mattecli build-engine {sidecar.onnx_file}` on this machine",
                )
            self._context = self._engine.create_execution_context()
            self._stream = torch.cuda.Stream(device=self._cuda)
        self._profile = 0
        self._dtypes = torch_dtypes(trt, torch)

        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._inputs = {kind: name for name, kind in self.contract.inputs}
        self._outputs = [n for n in names if not is_input[n]]
        self._output_kinds = dict(self.contract.outputs)
        engine_inputs = {n for n in names if is_input[n]}
        if engine_inputs != set(self._inputs.values()):
            raise InputError(
                f"the engine's inputs {sorted(engine_inputs)} are not the ones its contract names "
                f"{sorted(self._inputs.values())}",
                path=engine_path,
                hint=f"rebuild with `mattecli build-engine {sidecar.onnx_file}`",
            )
        self._check_input_dtypes()

    def _check_input_dtypes(self) -> None:
        """Refuse an engine whose input types mattecli cannot feed: indices must stay integers.

        :meth:`infer` casts each array to the engine's own tensor type (get_tensor_dtype) on the
        GPU, so an engine may take fp16 images or int32 indices; but a float index (or an integer
        image) would silently be another computation.
        """
        for kind, name in self._inputs.items():
            dtype = self._dtypes.get(self._engine.get_tensor_dtype(name))
            integer = np.issubdtype(input_dtype(kind), np.integer)
            if dtype is None or dtype.is_floating_point == integer:
                raise InputError(
                    f"the engine's input {name!r} takes {self._engine.get_tensor_dtype(name)}, but mattecli "
                    f"feeds it {kind} as {np.dtype(input_dtype(kind)).name}",
                    path=self.model,
                    hint=f"rebuild with `mattecli build-engine {self.sidecar.onnx_file}`",
                )

    def accepts(self, shapes: Mapping[str, tuple[int, ...]]) -> bool:
        """Shapes inside one of the engine's optimisation profiles only (see Engine)."""
        if not all(kind in shapes for kind in self._inputs):
            return False
        return self.sidecar.accepts({name: shapes[kind] for kind, name in self._inputs.items()})

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        shapes = {name: np.shape(inputs[kind]) for kind, name in self._inputs.items()}
        profile = select_profile(self.sidecar.profiles, self.sidecar.layouts(), shapes)
        buffers = []  # every tensor TensorRT reads or writes stays referenced until the stream is done
        outputs: dict[str, Any] = {}
        with torch.cuda.device(self.device.index), torch.cuda.stream(self._stream):
            if profile != self._profile:
                self._context.set_optimization_profile_async(profile, self._stream.cuda_stream)
                self._profile = profile
            for kind, name in self._inputs.items():
                host = np.ascontiguousarray(inputs[kind], dtype=input_dtype(kind))
                dtype = self._dtypes[self._engine.get_tensor_dtype(name)]
                value = torch.from_numpy(host).to(self._cuda).to(dtype).contiguous()
                self._context.set_input_shape(name, tuple(value.shape))
                self._context.set_tensor_address(name, value.data_ptr())
                buffers.append(value)
            for name in self._outputs:
                out_shape = tuple(self._context.get_tensor_shape(name))
                if any(d < 0 for d in out_shape):
                    raise InputError(f"TensorRT could not infer the shape of output {name!r} for {shapes}")
                out = torch.empty(
                    out_shape, dtype=self._dtypes[self._engine.get_tensor_dtype(name)], device=self._cuda
                )
                self._context.set_tensor_address(name, out.data_ptr())
                outputs[name] = out
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise InputError(
                    f"TensorRT failed to run a call with inputs {shapes} (its log above says why)",
                    path=self.model,
                )
            host_outputs = {
                self._output_kinds[name]: value.float().cpu()
                for name, value in outputs.items()
                if name in self._output_kinds
            }
        self._stream.synchronize()
        return {kind: value.numpy() for kind, value in host_outputs.items()}

    def close(self) -> None:
        # Drop in dependency order: the context uses the engine, the engine the runtime.
        self._context = None
        self._engine = None
        self._runtime = None
