"""AlphaGAN (Lutz et al., "AlphaGAN: Generative adversarial networks for natural image matting", BMVC 2018).

A trimap-based generator that predicts alpha, and a PatchGAN discriminator that judges 4-channel
composites (RGB composited with an alpha, plus the trimap). Sources: paper §3.2.1-3.2.2 and
supplementary Table 4 (reference/seeds/alphagan.txt), digest §5.1-5.2 and §9.

Generator (:class:`AlphaGANGenerator`), following supplementary Table 4
    * Encoder: ResNet-50 with BatchNorm, 4 input channels (ImageNet-normalised RGB, then the trimap
      as 0 / 0.5 / 1), layer3 and layer4 dilated 2 and 4 for output stride 8; the stem max-pool's
      indices are kept for the decoder. ImageNet weights are loaded with
      ``resnet.widen_first_conv``, which zero-initialises the trimap input channel (§3.2.1).
    * ASPP on layer4: 1×1, 3×3 at rates 6 / 12 / 18 and image pooling, 256 channels each,
      concatenated and projected to 256 (``layers.ASPP``).
    * Decoder, sizes at a 320 input:

      ======================  =======  ===========================================================
      step                    size     layers
      ======================  =======  ===========================================================
      ASPP                    40       256 channels at output stride 8
      bilinear                80       ×2 to layer1's size (stride 4)
      deconv1_x               80       concat 1×1 conv → 48 of layer1 ("conv2_x"), 3×3 256, 128, 64
      unpooling               160      max-unpool with the stem max-pool's indices (stride 4 → 2)
      deconv2_x               320      concat 1×1 conv → 32 of the stem ("conv1"), 3×3 64,
                                       3×3 transposed conv 64 stride ½ (stride 2 → 1), 3×3 32
      deconv3_x               320      concat the RGB input (3 channels)
      deconv4_x               320      3×3 32, 3×3 32
      head                    320      3×3 conv → 1, sigmoid
      ======================  =======  ===========================================================

      Every conv but the head is followed by BatchNorm + ReLU (Table 4 caption).

Choices where the paper is silent
    * Table 4 calls the unpooling "2×2, stride 2", but the indices it reuses come from ResNet's
      3×3 stride-2 max-pool: unpooling places each value at its recorded argmax (so the window size
      does not matter) and restores the stem's size exactly.
    * The transposed conv uses padding 1 and output padding 1, so it doubles the size exactly: input
      height and width must be even, and multiples of 8 (output stride 8) are what inference should
      round to.
    * Where overlapping 3×3 pooling windows chose the same argmax, several values land on one
      position. ``F.max_unpool2d`` lets the last write win, an order that ONNX (ScatterND with
      duplicate indices) and CUDA leave undefined, so exported outputs changed between runs. The
      unpooling here keeps the largest of the colliding values (a scatter with a max reduction),
      which is the same in every order and on every backend.
    * ASPP follows DeepLab-v3: BatchNorm in every branch including image pooling, which therefore
      cannot train at batch size 1 (the paper gives no batch size).

Discriminator (:class:`PatchGANDiscriminator`): the 70×70 PatchGAN of Isola et al. (pix2pix), which
the paper uses unchanged ("N = 70", §3.2.2): 4×4 convs C64 (stride 2, no norm) - C128 (2) - C256 (2)
- C512 (1) - 1 (1), padding 1, LeakyReLU 0.2 after every conv but the last. Through its convs each
output logit sees a 70×70 window of the input (:func:`receptive_field`); instance norm, and BatchNorm
in training mode, add image- or batch-wide statistics on top of that window. Norm: BatchNorm as
pix2pix's default, or instance norm (``norm="in"``), which does not mix real and fake batches and
trains at batch size 1.
The forward returns the map of patch logits; the paper's D score averages the patch responses
(:meth:`PatchGANDiscriminator.score`).

Neither network has data-dependent Python control flow, so both export to ONNX with dynamic N, H, W.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from training.networks.layers import ASPP, conv_norm_act, upsample_like
from training.networks.resnet import resnet

NORM = "bn"
IN_CHANNELS = 4  # RGB + trimap
OUTPUT_STRIDE = 8
ASPP_CHANNELS = 256
ASPP_RATES = (6, 12, 18)
LAYER1_SKIP = 48
STEM_SKIP = 32
RGB_CHANNELS = 3

PATCH_WIDTHS = (64, 128, 256, 512)
PATCH_STRIDES = (2, 2, 2, 1)
PATCH_KERNEL = 4
LEAKY_SLOPE = 0.2
PATCH_NORMS = ("bn", "in")


class AlphaGANGenerator(nn.Module):
    """ResNet-50 (OS 8) + ASPP encoder and the unpooling/skip decoder of supplementary Table 4."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = resnet(50, norm=NORM, in_channels=IN_CHANNELS, output_stride=OUTPUT_STRIDE)
        stem_ch, layer1_ch, *_, top_ch = self.encoder.channels
        self.aspp = ASPP(top_ch, ASPP_CHANNELS, ASPP_RATES, norm=NORM)
        self.layer1_skip = conv_norm_act(NORM, layer1_ch, LAYER1_SKIP, 1)
        self.deconv1 = nn.Sequential(
            conv_norm_act(NORM, ASPP_CHANNELS + LAYER1_SKIP, 256, 3),
            conv_norm_act(NORM, 256, 128, 3),
            conv_norm_act(NORM, 128, stem_ch, 3),  # unpooling needs the pooled map's width (64)
        )
        self.stem_skip = conv_norm_act(NORM, stem_ch, STEM_SKIP, 1)
        self.deconv2 = nn.Sequential(
            conv_norm_act(NORM, stem_ch + STEM_SKIP, 64, 3),
            nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            conv_norm_act(NORM, 64, 32, 3),
        )
        self.deconv4 = nn.Sequential(
            conv_norm_act(NORM, 32 + RGB_CHANNELS, 32, 3), conv_norm_act(NORM, 32, 32, 3)
        )
        self.head = nn.Conv2d(32, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: N×4×H×W (normalised RGB, trimap), H and W even; returns alpha N×1×H×W in [0, 1]."""
        (stem, layer1, *_, layer4), indices = self.encoder.forward_with_indices(x)
        y = upsample_like(self.aspp(layer4), layer1)
        y = self.deconv1(torch.cat([y, self.layer1_skip(layer1)], dim=1))
        y = unpool_max(y, indices, stem.shape[-2:])
        y = self.deconv2(torch.cat([y, self.stem_skip(stem)], dim=1))
        y = self.deconv4(torch.cat([y, x[:, :RGB_CHANNELS]], dim=1))
        return torch.sigmoid(self.head(y))


def unpool_max(values: torch.Tensor, indices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Max-unpooling with an order-independent rule where pooled cells share an argmax.

    ``indices`` are flat positions in a ``size`` map, as ``max_pool2d(return_indices=True)``
    gives them; positions no value lands on stay 0.
    """
    n, c = values.shape[:2]
    out = values.new_zeros((n, c, size[0] * size[1]))
    out = out.scatter_reduce(2, indices.flatten(2), values.flatten(2), reduce="amax", include_self=False)
    return out.view(n, c, size[0], size[1])


def receptive_field(kernels: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Receptive field (pixels per side) of one output of a stack of convs, first layer first."""
    field = 1
    for kernel, stride in zip(reversed(kernels), reversed(strides), strict=True):
        field = (field - 1) * stride + kernel
    return field


class PatchGANDiscriminator(nn.Module):
    """pix2pix's 70×70 PatchGAN: a map of real/fake logits, one per overlapping 70×70 patch."""

    def __init__(self, in_channels: int = IN_CHANNELS, *, norm: Literal["bn", "in"] = "bn") -> None:
        super().__init__()
        if norm not in PATCH_NORMS:
            raise ValueError(f"norm must be one of {PATCH_NORMS}, got {norm!r}")
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, (c_out, stride) in enumerate(zip(PATCH_WIDTHS, PATCH_STRIDES, strict=True)):
            normed = i > 0
            # pix2pix: a conv followed by BatchNorm has no bias; instance norm (not affine) keeps it.
            layers.append(nn.Conv2d(c_in, c_out, PATCH_KERNEL, stride, 1, bias=not normed or norm == "in"))
            if normed:
                layers.append(nn.BatchNorm2d(c_out) if norm == "bn" else nn.InstanceNorm2d(c_out))
            layers.append(nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, PATCH_KERNEL, 1, 1))
        self.layers = nn.Sequential(*layers)
        self.receptive_field = receptive_field(
            (PATCH_KERNEL,) * (len(PATCH_STRIDES) + 1), (*PATCH_STRIDES, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: N×C×H×W composite + trimap; returns patch logits N×1×h×w (h ≈ H/8 − 2)."""
        return self.layers(x)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's D score: the mean of the patch responses (logits), one value per sample."""
        return self.forward(x).mean(dim=(1, 2, 3))


def alphagan_generator() -> AlphaGANGenerator:
    """The AlphaGAN generator, randomly initialised (see the module doc for ImageNet weights)."""
    return AlphaGANGenerator()


def patchgan_discriminator(
    in_channels: int = IN_CHANNELS, *, norm: Literal["bn", "in"] = "bn"
) -> PatchGANDiscriminator:
    """The 70×70 PatchGAN discriminator (4 input channels: composite RGB + trimap)."""
    return PatchGANDiscriminator(in_channels, norm=norm)
