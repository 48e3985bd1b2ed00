"""ONNX Runtime engine: the CPU default, with the CUDA execution provider when asked for.

The model's contract comes from the ONNX file's own metadata (written by ``mattecli export``),
so nothing else has to travel with the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engines.base import Device
from mattecli.contract_validation import check_graph_names
from mattecli.errors import InputError, UnavailableError
from mattecli.models import ModelContract, contract_from_metadata, input_dtype

CUDA_PROVIDER = "CUDAExecutionProvider"
_CUDA_HINT = "pip uninstall onnxruntime && pip install onnxruntime-gpu, or use --device cpu"


def _providers(device: Device) -> list[str | tuple[str, dict[str, object]]]:
    import onnxruntime as ort

    if device.kind == "cpu":
        return ["CPUExecutionProvider"]
    if CUDA_PROVIDER not in ort.get_available_providers():
        raise UnavailableError(
            f"this onnxruntime build has no CUDA execution provider (device {device} was asked for)",
            hint=_CUDA_HINT,
        )
    return [(CUDA_PROVIDER, {"device_id": device.index})]


def require_session_device(session: object, device: Device, model: Path) -> None:
    """Refuse a session that does not run on ``device``.

    Listing the CUDA provider as available says only that the build has it: when its libraries
    (CUDA, cuDNN) fail to load, or the device index does not exist, ONNX Runtime logs a warning and
    quietly builds a CPU session. The session's own providers say what will really run.
    """
    if device.kind != "cuda":
        return
    active = list(session.get_providers())  # type: ignore[attr-defined]
    if CUDA_PROVIDER not in active:
        raise UnavailableError(
            f"ONNX Runtime could not start its CUDA execution provider on {device} and would run on "
            f"{', '.join(active) or 'no provider'} instead (its warning above names the library or device "
            "that failed)",
            path=model,
            hint="check that `nvidia-smi` lists the GPU and that the CUDA and cuDNN libraries "
            "onnxruntime-gpu needs are installed, or use --device cpu",
        )


def session_options(threads: int | None = None) -> object:
    """Session options for running tiles one batch after another on a few CPU cores.

    * ``intra_op_num_threads``: ``threads``, or 0 (one per physical core). One thread is
      consistently slower on 2 cores; more threads than cores only oversubscribe them, so a
      caller running several sessions at once passes its share.
    * Sequential execution: a matting network is mostly one chain of large convolutions, so
      running independent nodes in parallel (``ORT_PARALLEL``) has little to overlap and adds an
      inter-op pool that competes with the intra-op one for the same cores.
    * All graph optimisations (constant folding, Conv+activation fusion, layout transforms): the
      session is built once per run and serves every tile of every frame.
    * The memory arena and memory-pattern planning stay on, so each batch of equal-size tiles
      reuses the previous batch's buffers instead of allocating them again.

    Measured on the default network (batches of 512 px tiles, 2 cores) and left out: binding
    preallocated outputs (I/O binding) saves one copy of the outputs, about 2 ms of a 1.1 s
    call; treating denormal inputs as zero (the far tails of the Gaussian trimap maps) changed
    nothing beyond run-to-run noise.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = True
    options.log_severity_level = 3  # errors only: warnings about unused initializers are noise
    return options


def read_contract(session: object, model: Path) -> ModelContract:
    """The contract stored in a session's model metadata."""
    return contract_from_metadata(session.get_modelmeta().custom_metadata_map, model)  # type: ignore[attr-defined]


class OrtEngine:
    """An ``onnxruntime.InferenceSession`` wrapped in the engine interface."""

    name = "ort"

    def __init__(self, model: Path, device: Device, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        model = Path(model)
        if not model.is_file():
            raise InputError("model file not found", path=model)
        options = session_options(threads)
        try:
            self._session = ort.InferenceSession(str(model), options, providers=_providers(device))
        except UnavailableError:
            raise
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise InputError(
                f"ONNX Runtime cannot load this model: {exc}".splitlines()[0],
                path=model,
                hint="is it an ONNX file written by `mattecli export`?",
            ) from None
        require_session_device(self._session, device, model)
        self.device = device
        self.model = model
        self.contract = read_contract(self._session, model)
        check_graph_names(
            self.contract,
            [i.name for i in self._session.get_inputs()],
            [o.name for o in self._session.get_outputs()],
            model,
        )
        self._input_names = dict((kind, name) for name, kind in self.contract.inputs)
        self._output_kinds = dict(self.contract.outputs)
        self._output_names = list(self._output_kinds)

    def accepts(self, shapes: Mapping[str, tuple[int, ...]]) -> bool:
        """Any shape the graph's dynamic axes allow: only its static sizes must match (see Engine)."""
        static = {i.name: i.shape for i in self._session.get_inputs()}
        for kind, name in self._input_names.items():
            if kind not in shapes or len(shapes[kind]) != len(static[name]):
                return False
            if any(isinstance(s, int) and s != v for s, v in zip(static[name], shapes[kind], strict=True)):
                return False
        return True

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {
            self._input_names[kind]: np.ascontiguousarray(inputs[kind], dtype=input_dtype(kind))
            for kind in self._input_names
        }
        values = self._session.run(self._output_names, feed)
        return {self._output_kinds[n]: v for n, v in zip(self._output_names, values, strict=True)}

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]
