"""The engine interface and explicit engine selection.

An engine turns a batch of model inputs into model outputs. Inputs and outputs are keyed by
their *kind* from the model contract (``image``, ``trimap_2ch``, ``alpha``, ...), not by graph
tensor names, so the pipeline is the same whichever backend runs the network.

Selection never falls back: asking for the TensorRT engine on a machine without TensorRT, or for
``cuda:1`` where there is no such device, is an error that says what to install. A silent
fall-back to the CPU is the most reported problem of the tools this one learns from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from mattecli.errors import InputError
from mattecli.models import ModelContract

EngineName = Literal["ort", "torch", "trt"]
ENGINE_NAMES: tuple[EngineName, ...] = ("ort", "torch", "trt")


@dataclass(frozen=True)
class Device:
    """A parsed ``--device`` value."""

    kind: Literal["cpu", "cuda"]
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"


def parse_device(text: str) -> Device:
    """Parse ``cpu``, ``cuda`` or ``cuda:N``."""
    value = text.strip().lower()
    if value == "cpu":
        return Device("cpu")
    if value == "cuda":
        return Device("cuda", 0)
    if value.startswith("cuda:") and value[5:].isdigit():
        return Device("cuda", int(value[5:]))
    raise InputError(f"unknown device {text!r}", hint="use cpu, cuda or cuda:N")


class Engine(Protocol):
    """A loaded network ready to run batches."""

    name: EngineName
    device: Device
    contract: ModelContract

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: float32 NCHW arrays keyed by input kind -> arrays keyed by output kind."""
        ...

    def accepts(self, shapes: Mapping[str, tuple[int, ...]]) -> bool:
        """Whether one :meth:`infer` call with inputs of these shapes (keyed by input kind) can run.

        Callers ask before they choose a shape, so that a shape an engine cannot take is planned
        around instead of failing at frame 0. The pipeline asks whether a frame may run whole
        (``{"image": (1, 3, H, W), ...}`` padded to the size multiple) and tiles it otherwise.
        ONNX Runtime takes any size its graph's dynamic axes allow and refuses only a size that
        differs from a static one; eager torch takes any size; a TensorRT engine takes only shapes
        inside one of its optimisation profiles (recorded in its sidecar). ``shapes`` must name
        every input of the contract; a missing kind is not accepted.
        """
        ...

    def close(self) -> None:
        """Release the session and any device memory."""
        ...


def open_engine(
    name: str,
    model: Path,
    device: str = "cpu",
    *,
    threads: int | None = None,
    model_name: str | None = None,
) -> Engine:
    """Load ``model`` on the backend ``name`` and device ``device``, or explain what is missing.

    ``model_name`` names the registry model of a bare PyTorch state dict (the public ``FBA.pth``);
    files that describe themselves (ONNX, mattecli checkpoints) need none.
    """
    dev = parse_device(device)
    if name == "ort":
        from engines.onnxruntime import OrtEngine

        return OrtEngine(model, dev, threads=threads)
    if name == "trt":
        from engines.tensorrt import TrtEngine

        return TrtEngine(model, dev)
    if name == "torch":
        from engines.torch import TorchEngine

        return TorchEngine(model, dev, model_name=model_name, threads=threads)
    raise InputError(f"unknown engine {name!r}", hint=f"choose one of {', '.join(ENGINE_NAMES)}")
