"""Layers shared by the matting networks: norm/conv choice, exportable pooling, PPM and ASPP.

Why these exist rather than plain ``torch.nn`` modules:

- FBA trains with batch size 1, so it replaces BatchNorm with Group Normalisation plus Weight
  Standardisation (FBA paper §3.2). :func:`conv2d` and :func:`norm2d` pick the pair from one
  ``norm`` string ("bn" or "gn_ws"), so every network can offer both without branching.
  :class:`WSConv2d` stores weights as the reference's checkpoints do (see its docstring).
- ``torch.onnx`` rejects ``adaptive_avg_pool2d`` when the output size does not divide the input
  size (FBA_Matting issue #54), which breaks any pyramid-pooling network at arbitrary resolutions.
  :func:`adaptive_avg_pool2d` computes exactly PyTorch's bins (start = floor(i·H/s),
  end = ceil((i+1)·H/s)) with two small bin matrices built from the runtime size, which exports
  with dynamic height and width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("bn", "gn_ws")
GN_GROUPS = 32
WS_EPS = 1e-5


def check_norm(norm: str) -> str:
    """Return ``norm`` if it is a known choice; raise ``ValueError`` naming the choices otherwise."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def standardise_weight(weight: torch.Tensor, eps: float = WS_EPS) -> torch.Tensor:
    """Weight Standardisation (Qiao et al.) as the FBA reference computes it.

    Each output filter is centred over (in, kh, kw) and divided by sqrt(biased variance + eps), the
    reference's ``F.batch_norm`` over the flattened weight. Applied to an already standardised
    filter it changes it only by the factor 1/sqrt(1 + eps).
    """
    flat = weight.flatten(1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    scale = torch.rsqrt(centred.pow(2).mean(dim=1, keepdim=True) + eps)
    return (centred * scale).view_as(weight)


class WSConv2d(nn.Conv2d):
    """A ``Conv2d`` with Weight Standardisation, storing weights the way the FBA reference does.

    The reference standardises ``weight.data`` in place while training, so its checkpoints (the
    public ``FBA.pth`` included) hold weights that are *already* standardised, and inference
    convolves with them as stored; the FBA golden output is only reproduced that way. So:

    - a forward pass in training mode convolves with ``standardise_weight(weight)``, differentiably
      as in Qiao et al. (the reference instead overwrites ``weight.data`` outside autograd, so its
      gradients skip the standardisation), and sets :attr:`standardise_on_forward`;
    - while :attr:`standardise_on_forward` is set (trained here since the last load), evaluation
      standardises too and :meth:`state_dict` saves the standardised weight, so every checkpoint
      holds effective weights;
    - after ``load_state_dict`` the flag is cleared and evaluation uses the loaded weights as they
      are (export then sees a plain convolution). To start training from raw, unstandardised weights
      (e.g. ImageNet GN+WS weights), nothing is needed: the first training step standardises.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.standardise_on_forward = False
        self.register_state_dict_post_hook(_save_standardised)

    def effective_weight(self) -> torch.Tensor:
        return standardise_weight(self.weight) if self.standardise_on_forward else self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.standardise_on_forward = True
        return self._conv_forward(x, self.effective_weight(), self.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "weight" in state_dict:
            self.standardise_on_forward = False


def _save_standardised(module: WSConv2d, state_dict: dict, prefix: str, _meta: object) -> None:
    """State-dict hook: a conv trained here saves its effective (standardised) weight."""
    if module.standardise_on_forward:
        state_dict[prefix + "weight"] = standardise_weight(module.weight).detach()


def conv2d(
    norm: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    bias: bool = False,
) -> nn.Conv2d:
    """A convolution that matches ``norm``: weight-standardised for "gn_ws", plain for "bn"."""
    cls = WSConv2d if check_norm(norm) == "gn_ws" else nn.Conv2d
    return cls(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=bias,
    )


def gn_groups(channels: int) -> int:
    """Groups for GroupNorm: 32 (the reference's ``GroupNorm(32, C)``), or gcd(32, C) for odd widths."""
    return math.gcd(GN_GROUPS, channels)


def norm2d(norm: str, channels: int) -> nn.Module:
    """BatchNorm2d for "bn"; GroupNorm with 32 groups for "gn_ws" (see :func:`gn_groups`)."""
    if check_norm(norm) == "gn_ws":
        return nn.GroupNorm(gn_groups(channels), channels)
    return nn.BatchNorm2d(channels)


def _bin_matrix(size: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins × size) matrix whose row i averages PyTorch's adaptive-pooling bin i."""
    i = torch.arange(bins, device=like.device)
    start = torch.div(i * size, bins, rounding_mode="floor")
    end = torch.div((i + 1) * size + bins - 1, bins, rounding_mode="floor")
    j = torch.arange(size, device=like.device)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def adaptive_avg_pool2d(x: torch.Tensor, output_size: int | tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` with identical bins, expressed as two matmuls that export to ONNX.

    Sums run in a different order from PyTorch's kernel, so results agree to float rounding
    (about 1e-7 relative), not bit for bit.
    """
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    rows = _bin_matrix(x.shape[-2], out_h, x)
    cols = _bin_matrix(x.shape[-1], out_w, x)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


class AdaptiveAvgPool2d(nn.Module):
    """Module form of :func:`adaptive_avg_pool2d` (a drop-in for ``nn.AdaptiveAvgPool2d``)."""

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


def upsample_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``ref``'s height and width (align_corners=False, as PSPNet)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class PyramidPooling(nn.ModuleList):
    """PSPNet's pyramid pooling: ``x`` concatenated with each bin's pooled, projected, upsampled map.

    Each branch is ``Sequential(pool, conv1x1, norm, activation)``, so a branch's conv is
    ``<name>.<i>.1`` and its norm ``<name>.<i>.2``: the FBA reference checkpoint's layout.
    The output has ``in_channels + len(bins) * out_channels`` channels. With "gn_ws" and bin 1,
    ``out_channels`` must give at least two channels per group (64 or more with 32 groups).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        *,
        norm: str = "bn",
        activation: Callable[[], nn.Module] = nn.ReLU,
        conv_bias: bool = False,
    ) -> None:
        if norm == "gn_ws" and 1 in bins and out_channels // gn_groups(out_channels) < 2:
            raise ValueError(
                f"GroupNorm over a 1×1 bin needs at least 2 channels per group; "
                f"out_channels={out_channels} gives {out_channels // gn_groups(out_channels)}"
            )
        super().__init__(
            nn.Sequential(
                AdaptiveAvgPool2d(b),
                conv2d(norm, in_channels, out_channels, 1, bias=conv_bias),
                norm2d(norm, out_channels),
                activation(),
            )
            for b in bins
        )
        self.out_channels = in_channels + len(bins) * out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, *(upsample_like(branch(x), x) for branch in self)], dim=1)


def conv_norm_act(
    norm: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    dilation: int = 1,
    activation: Callable[[], nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """conv (same padding) → norm → activation, the unit most decoders are made of."""
    return nn.Sequential(
        conv2d(
            norm,
            in_channels,
            out_channels,
            kernel_size,
            padding=dilation * (kernel_size - 1) // 2,
            dilation=dilation,
        ),
        norm2d(norm, out_channels),
        activation(),
    )


class ASPP(nn.Module):
    """DeepLab-v3 atrous spatial pyramid pooling (AlphaGAN §3.2.1: 1×1, three atrous 3×3, image pool).

    Five branches of ``out_channels`` each are concatenated and projected back to ``out_channels``
    with a 1×1 conv → norm → activation. The image-pooling branch uses a spatial mean, which is
    exportable at any size. With ``norm="bn"`` the pooled branch cannot train at batch size 1
    (BatchNorm over a single value per channel); use batch ≥ 2 or "gn_ws".
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        *,
        norm: str = "bn",
        activation: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_norm_act(norm, in_channels, out_channels, 1, activation=activation)]
            + [
                conv_norm_act(norm, in_channels, out_channels, 3, dilation=r, activation=activation)
                for r in rates
            ]
        )
        self.image_pool = conv_norm_act(norm, in_channels, out_channels, 1, activation=activation)
        self.project = conv_norm_act(
            norm, out_channels * (len(rates) + 2), out_channels, 1, activation=activation
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, x.shape[2], x.shape[3])
        return self.project(torch.cat([*(b(x) for b in self.branches), pooled], dim=1))
