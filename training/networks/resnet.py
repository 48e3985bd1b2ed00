"""ResNet encoders shared by every matting network (FBA, GFM, AlphaGAN, AdaMatting, LSA).

One configurable encoder instead of five copies:

- blocks: :class:`BasicBlock` (ResNet-18/34) or :class:`Bottleneck` (ResNet-50/101, stride on the
  3×3 conv, "v1.5", as torchvision and the FBA reference);
- ``norm``: "bn" (BatchNorm) or "gn_ws" (GroupNorm(32) + weight-standardised convs everywhere in the
  encoder, FBA paper §3.2);
- ``in_channels`` for the first conv (matting inputs carry trimap channels);
- ``width``: a multiplier on every stage's channels (this project's slim CPU encoders; 1.0 is the
  paper network);
- ``output_stride`` 32, 16 or 8 by dilating layer4 (16) or layer3 and layer4 (8);
- ResNet-D ("bag of tricks", used by the LSA baseline): ``deep_stem`` (three 3×3 convs) and
  ``avg_down`` (average-pool before the 1×1 shortcut conv instead of a strided 1×1 conv).

Dilation follows the PSPNet/CSAIL "nostride dilate" convention the FBA reference uses, which differs
from torchvision's ``replace_stride_with_dilation``: in a stage dilated by ``d``, the conv that carried
the stride loses it and, if it is 3×3, gets dilation ``d // 2``; every other 3×3 conv in the stage gets
``d``; the shortcut's 1×1 conv (or avg-pool) loses its stride. Output stride 8 uses d = 2 for layer3
and d = 4 for layer4 (so layer3.0.conv2 has dilation 1, layer4.0.conv2 dilation 2).

Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``,
...), so torchvision checkpoints and the public FBA checkpoint load without renaming; with
``deep_stem``/``avg_down`` they are timm's ``resnet50d`` names (``conv1.0``, ``downsample.1``, ...).
The norm modules keep the ``bn`` names even when they are GroupNorm, as the FBA reference does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from training.networks.layers import check_norm, conv2d, norm2d

DEEP_STEM_WIDTH = 32


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual connection (ResNet-18/34). ``first_dilation`` is conv1's."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        first_dilation: int | None = None,
        downsample: nn.Module | None = None,
        norm: str = "bn",
    ) -> None:
        super().__init__()
        first = dilation if first_dilation is None else first_dilation
        self.conv1 = conv2d(norm, inplanes, planes, 3, stride=stride, padding=first, dilation=first)
        self.bn1 = norm2d(norm, planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv2d(norm, planes, planes, 3, padding=dilation, dilation=dilation)
        self.bn2 = norm2d(norm, planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (carries stride and ``first_dilation``) → 1×1 ×4, with a residual (ResNet-50/101)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        first_dilation: int | None = None,
        downsample: nn.Module | None = None,
        norm: str = "bn",
    ) -> None:
        super().__init__()
        mid = dilation if first_dilation is None else first_dilation
        self.conv1 = conv2d(norm, inplanes, planes, 1)
        self.bn1 = norm2d(norm, planes)
        self.conv2 = conv2d(norm, planes, planes, 3, stride=stride, padding=mid, dilation=mid)
        self.bn2 = norm2d(norm, planes)
        self.conv3 = conv2d(norm, planes, planes * self.expansion, 1)
        self.bn3 = norm2d(norm, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]

DEPTHS: dict[int, tuple[Block, tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}

# output stride -> (layer3 dilation, layer4 dilation)
STAGE_DILATIONS = {32: (1, 1), 16: (1, 2), 8: (2, 4)}


def make_stage(
    block: Block,
    inplanes: int,
    planes: int,
    blocks: int,
    *,
    stride: int = 1,
    dilation: int = 1,
    norm: str = "bn",
    avg_down: bool = False,
) -> nn.Sequential:
    """A ResNet stage of ``blocks`` blocks; ``dilation > 1`` applies the nostride-dilate convention.

    ``stride`` is the stage's nominal stride (2 for layer2..4); with ``dilation > 1`` it is removed
    and the first block's first 3×3 conv gets ``dilation // 2`` (``dilation`` when the nominal stride
    is 1). Public so that networks can add extra stages (e.g. GFM's r2b E5/E6).
    """
    if dilation > 1:
        first_dilation = dilation // 2 if stride > 1 else dilation
        stride = 1
    else:
        first_dilation = 1
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_channels:
        if avg_down:
            pool: nn.Module = (
                nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
                if stride > 1
                else nn.Identity()
            )
            downsample = nn.Sequential(
                pool, conv2d(norm, inplanes, out_channels, 1), norm2d(norm, out_channels)
            )
        else:
            downsample = nn.Sequential(
                conv2d(norm, inplanes, out_channels, 1, stride=stride), norm2d(norm, out_channels)
            )
    layers = [
        block(
            inplanes,
            planes,
            stride=stride,
            dilation=dilation,
            first_dilation=first_dilation,
            downsample=downsample,
            norm=norm,
        )
    ]
    layers += [block(out_channels, planes, dilation=dilation, norm=norm) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNetEncoder(nn.Module):
    """ResNet without its classifier, returning the features every matting decoder skips from.

    ``forward(x)`` returns ``[stem, layer1, layer2, layer3, layer4]``: the stem output after
    conv1 → norm → ReLU (stride 2, before the max-pool), then each stage's output.
    :attr:`channels` and :attr:`strides` describe those five features.
    ``forward_with_indices(x)`` also returns the stem max-pool's indices (AlphaGAN unpools with them).
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        *,
        norm: str = "bn",
        in_channels: int = 3,
        output_stride: int = 32,
        deep_stem: bool = False,
        avg_down: bool = False,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        check_norm(norm)
        if deep_stem and width != 1.0:
            raise ValueError("a deep stem is only built at width 1.0")
        if output_stride not in STAGE_DILATIONS:
            raise ValueError(f"output_stride must be one of {sorted(STAGE_DILATIONS)}, got {output_stride}")
        d3, d4 = STAGE_DILATIONS[output_stride]
        base = round(64 * width)  # stem and layer1 width; each later stage doubles it
        self.norm = norm
        self.in_channels = in_channels
        self.output_stride = output_stride
        if deep_stem:
            w = DEEP_STEM_WIDTH
            self.conv1: nn.Module = nn.Sequential(
                conv2d(norm, in_channels, w, 3, stride=2, padding=1),
                norm2d(norm, w),
                nn.ReLU(inplace=True),
                conv2d(norm, w, w, 3, padding=1),
                norm2d(norm, w),
                nn.ReLU(inplace=True),
                conv2d(norm, w, 64, 3, padding=1),
            )
        else:
            self.conv1 = conv2d(norm, in_channels, base, 7, stride=2, padding=3)
        self.bn1 = norm2d(norm, base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        e = block.expansion
        kw = {"norm": norm, "avg_down": avg_down}
        self.layer1 = make_stage(block, base, base, layers[0], **kw)
        self.layer2 = make_stage(block, base * e, 2 * base, layers[1], stride=2, **kw)
        self.layer3 = make_stage(block, 2 * base * e, 4 * base, layers[2], stride=2, dilation=d3, **kw)
        self.layer4 = make_stage(block, 4 * base * e, 8 * base, layers[3], stride=2, dilation=d4, **kw)
        self.channels = [base, base * e, 2 * base * e, 4 * base * e, 8 * base * e]
        self.strides = [2, 4, 8, min(16, output_stride), output_stride]
        self._init_weights()

    def _init_weights(self) -> None:
        """He init for convs, unit/zero affine for norms (torchvision's defaults)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stages(self, stem: torch.Tensor, pooled: torch.Tensor) -> list[torch.Tensor]:
        feats = [stem]
        x = pooled
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            feats.append(x)
        return feats

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 → norm → ReLU: the stride-2 feature, before the max-pool."""
        return self.relu(self.bn1(self.conv1(x)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.stem(x)
        return self._stages(stem, self.maxpool(stem))

    def forward_with_indices(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Like :meth:`forward`, plus the stem max-pool's indices for ``F.max_unpool2d``."""
        stem = self.stem(x)
        pooled, indices = F.max_pool2d(stem, 3, stride=2, padding=1, return_indices=True)
        return self._stages(stem, pooled), indices


def resnet(
    depth: int,
    *,
    norm: str = "bn",
    in_channels: int = 3,
    output_stride: int = 32,
    deep_stem: bool = False,
    avg_down: bool = False,
    width: float = 1.0,
) -> ResNetEncoder:
    """A ResNet-``depth`` encoder (18, 34, 50 or 101); see :class:`ResNetEncoder` for the options.

    ResNet-50-D (LSA baseline) is ``resnet(50, deep_stem=True, avg_down=True)``.
    """
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
    block, layers = DEPTHS[depth]
    return ResNetEncoder(
        block,
        layers,
        norm=norm,
        in_channels=in_channels,
        output_stride=output_stride,
        deep_stem=deep_stem,
        avg_down=avg_down,
        width=width,
    )


def widen_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Extend a pretrained first-conv weight (out, 3, k, k) to ``in_channels`` inputs.

    The pretrained RGB filters are kept and the extra input channels start at zero, as AlphaGAN
    (§3.2.1) and the FBA reference code initialise their trimap channels, so the network starts out
    computing what the ImageNet model computes.
    """
    if in_channels < weight.shape[1]:
        raise ValueError(f"cannot narrow a first conv from {weight.shape[1]} to {in_channels} inputs")
    extra = weight.new_zeros(weight.shape[0], in_channels - weight.shape[1], *weight.shape[2:])
    return torch.cat([weight, extra], dim=1)
