"""ONNX Runtime engine: the CPU default, with the CUDA execution provider when asked for.

The model's contract comes from the ONNX file's own metadata (written by ``mattecli export``),
so nothing else has to travel with the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engines.base import Device
from mattecli.errors import InputError, UnavailableError
from mattecli.models import METADATA_KEY, ModelContract


def _providers(device: Device) -> list[str | tuple[str, dict[str, object]]]:
    import onnxruntime as ort

    if device.kind == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UnavailableError(
            f"this onnxruntime build has no CUDA execution provider (device {device} was asked for)",
            hint="pip uninstall onnxruntime && pip install onnxruntime-gpu, or use --device cpu",
        )
    return [("CUDAExecutionProvider", {"device_id": device.index})]


def read_contract(session: object, model: Path) -> ModelContract:
    """The contract stored in a session's model metadata."""
    meta = session.get_modelmeta().custom_metadata_map  # type: ignore[attr-defined]
    if METADATA_KEY not in meta:
        raise InputError(
            "this ONNX file has no mattecli contract in its metadata",
            path=model,
            hint="export it with `mattecli export`, which records the inputs the model expects",
        )
    return ModelContract.from_json(meta[METADATA_KEY], source=str(model))


class OrtEngine:
    """An ``onnxruntime.InferenceSession`` wrapped in the engine interface."""

    name = "ort"

    def __init__(self, model: Path, device: Device, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        model = Path(model)
        if not model.is_file():
            raise InputError("model file not found", path=model)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: warnings about unused initializers are noise
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
        self.device = device
        self.model = model
        self.contract = read_contract(self._session, model)
        self._input_names = dict((kind, name) for name, kind in self.contract.inputs)
        self._output_kinds = dict(self.contract.outputs)
        graph_inputs = {i.name for i in self._session.get_inputs()}
        missing = set(self._input_names.values()) - graph_inputs
        if missing:
            raise InputError(f"the graph lacks inputs {sorted(missing)} that its contract names", path=model)

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {
            self._input_names[kind]: np.ascontiguousarray(inputs[kind], dtype=np.float32)
            for kind in self._input_names
        }
        names = list(self._output_kinds)
        values = self._session.run(names, feed)
        return {self._output_kinds[n]: v for n, v in zip(names, values, strict=True)}

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]
