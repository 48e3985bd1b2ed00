"""Eager PyTorch engine: a checkpoint's network run through the same contract wrapper export traces.

Inference runs :class:`training.registry.InferenceModel`, the module ONNX export traces, so the
normalisation, trimap channel order and output split cannot drift between this engine and an
exported file. It is the engine backpropagating refinement (``--refine br``) needs: the loaded
wrapper is exposed as :attr:`TorchEngine.model` so :mod:`mattecli.refine` can reach the network's
decoder and its refinement modules.

The device is used as asked or refused with what is there; never a silent CPU fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engines.base import Device
from mattecli.errors import UnavailableError
from mattecli.models import input_dtype

try:
    import torch
except ImportError:  # the base install has no torch; asking for this engine then says what to add
    torch = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from mattecli.models import ModelContract
    from training.registry import InferenceModel


def torch_device(device: Device) -> torch.device:
    """The torch device for ``device``, or :class:`UnavailableError` naming what this machine has."""
    if device.kind == "cpu":
        return torch.device("cpu")
    if not torch.backends.cuda.is_built():
        raise UnavailableError(
            f"this torch build has no CUDA (device {device} was asked for)",
            hint="install a CUDA build of torch (see pytorch.org), or use --device cpu",
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UnavailableError(
            f"torch sees no CUDA device (device {device} was asked for)",
            hint="check the driver with nvidia-smi and CUDA_VISIBLE_DEVICES, or use --device cpu",
        )
    if device.index >= count:
        plural = "device" if count == 1 else "devices"
        raise UnavailableError(
            f"only {count} CUDA {plural} here (device {device} was asked for)",
            hint=f"use one of {', '.join(f'cuda:{i}' for i in range(count))}",
        )
    return torch.device("cuda", device.index)


class ModelEngine:
    """An :class:`InferenceModel` already in memory, behind the engine interface ``FrameMatter`` drives.

    :class:`TorchEngine` loads one from a checkpoint; the trainer validates the network it is
    training through one. Eval mode and gradients stay the owner's business.
    """

    name = "torch"

    def __init__(self, model: InferenceModel, device: Device) -> None:
        self.device = device
        self._device = torch_device(device)
        self.model = model
        self.contract: ModelContract = model.contract
        self._kinds = [kind for _, kind in self.contract.inputs]
        self._output_kinds = [kind for _, kind in self.contract.outputs]

    def tensors(self, inputs: Mapping[str, np.ndarray]) -> list[torch.Tensor]:
        """The contract's inputs, in order, as tensors (float32, int64 indices) on the engine's device.

        On the CPU a contiguous float32 array is shared, not copied.
        """
        tensors = []
        for kind in self._kinds:
            array = np.ascontiguousarray(inputs[kind], dtype=input_dtype(kind))
            if not array.flags.writeable:  # torch.from_numpy warns on read-only memory
                array = array.copy()
            tensors.append(torch.from_numpy(array).to(self._device))
        return tensors

    def accepts(self, shapes: Mapping[str, tuple[int, ...]]) -> bool:
        """Eager torch runs any size: every input of the contract must only be there (see Engine)."""
        return all(kind in shapes for kind in self._kinds)

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outputs = self.model(*self.tensors(inputs))
        return {
            kind: value.float().cpu().numpy() for kind, value in zip(self._output_kinds, outputs, strict=True)
        }

    def close(self) -> None:
        """Nothing to release: the owner keeps the network."""


class TorchEngine(ModelEngine):
    """A checkpoint's :class:`InferenceModel` in eval mode with frozen weights, on one device."""

    def __init__(
        self,
        checkpoint: Path,
        device: Device,
        *,
        model_name: str | None = None,
        threads: int | None = None,
    ) -> None:
        if torch is None:
            raise UnavailableError(
                "the torch engine needs PyTorch, which is not installed",
                hint="install torch for your platform, then `pip install 'mattecli[torch]'`",
            )
        from training.registry import load_model

        target = torch_device(device)  # before loading: a bad device fails fast
        if threads:
            torch.set_num_threads(threads)  # process-wide in torch; one engine per process
        loaded = load_model(checkpoint, model_name)
        self.path = Path(checkpoint)
        self.weights = loaded.weights
        model = loaded.model.to(target).eval()
        # An inference engine never trains: no parameter tracks gradients unless refinement
        # turns some on (and off again) explicitly.
        model.requires_grad_(False)
        super().__init__(model, device)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
