"""The local-smoothness (LSA) baseline network, with backpropagating refinement modules (BRMs).

Follows "Improving Deep Image Matting via Local Smoothness Assumption" (Wang et al.; seed text
reference/seeds/lsa-local-smoothness-matting.txt, digest §1.1 and §1.4):

    * §3 "Network architecture": ResNet-50-D encoder (deep 3×3 stem, average-pool shortcuts) on the
      4-channel concatenation of image and trimap, downsampled 5 times (output stride 32).
    * Decoder stages each containing VoVNet's effective-SE block: global average pool, ONE 1×1
      conv (not SE's two FC layers), hard-sigmoid gate, channel-wise multiply.
    * §4.3 "Backpropagating refinement": after decoder stage ℓ, 2 ≤ ℓ ≤ 5, a BRM with tensors A, B
      of spatial size 2^(8−ℓ) × 2^(8−ℓ) and C channels computes exp(I(A))·x + I(B). A and B are
      zero and frozen during training, so every BRM is then exactly the identity.

The paper's Fig. 1 (the architecture drawing) is not in the seed text, so these are choices:

    * Stage numbering and skips. Stage ℓ outputs stride 2^(ℓ−1): ℓ = 5 at 1/16 runs first and
      ℓ = 1 at full resolution runs last. With this numbering the A/B grid is a constant quarter of
      the feature grid at a 512×512 input (8×8 on 32×32, …, 64×64 on 256×256), whereas numbering
      from the coarse end would give ratios from 1:1 to 1:64. Each stage upsamples the path ×2
      (bilinear, align_corners=False), concatenates a U-Net skip (layer3, layer2, layer1, the stem,
      then the 4-channel input itself), and applies two 3×3 conv-norm-ReLU units and an eSE block.
    * Widths of stages ℓ = 1…5: 32, 32, 64, 128, 256.
    * Interp in the BRM is bilinear (align_corners=False); A and B are stored as 1×C×s×s
      (NCHW) instead of the paper's s×s×C and broadcast over the batch.
    * Output: a 3×3 conv to one channel, clamped to [0, 1] (as FBA's alpha). Unlike a sigmoid the
      clamp reaches exact 0 and 1, which is what the refinement's boundary cost C1 asks for.
    * Normalisation: BatchNorm by default (the paper trains with batch 16); ``norm="gn_ws"`` is
      offered because the encoder and the shared layers support it at no cost.

Backpropagating refinement re-runs only the decoder (§4.3: "the BRMs are all in the decoder").
:meth:`LSANet.encode` computes, once, everything upstream of the first BRM (the encoder and
stage 5, which cannot depend on A or B); :meth:`LSANet.decode` runs the rest from that cache.
Computing the cache under ``torch.no_grad()`` keeps the backward pass inside the decoder.
:meth:`LSANet.brm_parameters` and :meth:`LSANet.reset_brm` give the refinement its tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn

from training.networks.layers import conv_norm_act, upsample_like
from training.networks.resnet import ResNetEncoder, resnet

# Output widths of decoder stages ℓ = 1 … 5 (index ℓ − 1).
DECODER_WIDTHS: tuple[int, ...] = (32, 32, 64, 128, 256)
BRM_STAGES: tuple[int, ...] = (2, 3, 4, 5)


def brm_size(stage: int) -> int:
    """Side of the A and B grids of the BRM after decoder stage ``stage`` (2^(8−ℓ), §4.3)."""
    return 2 ** (8 - stage)


class EffectiveSE(nn.Module):
    """VoVNet's effective squeeze-excitation: x · hardsigmoid(conv1×1(mean over H, W of x)).

    One convolution keeps all channel information (SE's bottleneck of two FC layers loses some),
    and the hard-sigmoid, relu6(z + 3) / 6, is a cheap piecewise-linear stand-in for the sigmoid.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc(x.mean(dim=(2, 3), keepdim=True)))


class BackpropRefinement(nn.Module):
    """BRM (§4.3): ``exp(I(A)) · x + I(B)``, with A, B of shape 1 × C × size × size.

    A and B are parameters, so an optimiser and ``state_dict`` see them, but they are created with
    ``requires_grad=False`` and at zero: during training the module is exactly the identity
    (exp(0)·x + 0 == x bit for bit). The refinement at inference turns their gradients on.
    """

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(1, channels, size, size), requires_grad=False)
        self.b = nn.Parameter(torch.zeros(1, channels, size, size), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(upsample_like(self.a, x)) * x + upsample_like(self.b, x)

    def reset(self) -> None:
        """Set A and B back to zero (the identity), keeping their ``requires_grad`` flags."""
        with torch.no_grad():
            self.a.zero_()
            self.b.zero_()


class DecoderStage(nn.Module):
    """Upsample the path ×2 to the skip's size, concatenate the skip, two 3×3 units, eSE."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, norm: str) -> None:
        super().__init__()
        self.fuse = nn.Sequential(
            conv_norm_act(norm, in_channels + skip_channels, out_channels, 3),
            conv_norm_act(norm, out_channels, out_channels, 3),
            EffectiveSE(out_channels),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([upsample_like(x, skip), skip], dim=1))


class LSAFeatures(NamedTuple):
    """What :meth:`LSANet.encode` caches: every input of the decoder past the first BRM."""

    image: torch.Tensor  # the network input (skip of stage 1)
    stem: torch.Tensor  # encoder stem, 1/2 (skip of stage 2)
    layer1: torch.Tensor  # 1/4 (skip of stage 3)
    layer2: torch.Tensor  # 1/8 (skip of stage 4)
    stage5: torch.Tensor  # decoder stage 5's output at 1/16, before its BRM


class LSANet(nn.Module):
    """ResNet-50-D encoder, five eSE decoder stages, BRMs after stages 2–5, clamped alpha.

    ``forward(x)`` takes N × in_channels × H × W (normalised RGB, then the trimap; H and W
    multiples of 32) and returns alpha, N × 1 × H × W in [0, 1].
    """

    def __init__(self, encoder: ResNetEncoder, *, norm: str = "bn") -> None:
        super().__init__()
        if encoder.output_stride != 32:
            raise ValueError(
                f"the LSA decoder expects an output-stride-32 encoder, got {encoder.output_stride}"
            )
        self.encoder = encoder
        stem, l1, l2, l3, l4 = encoder.channels
        w1, w2, w3, w4, w5 = DECODER_WIDTHS
        self.stage5 = DecoderStage(l4, l3, w5, norm)
        self.stage4 = DecoderStage(w5, l2, w4, norm)
        self.stage3 = DecoderStage(w4, l1, w3, norm)
        self.stage2 = DecoderStage(w3, stem, w2, norm)
        self.stage1 = DecoderStage(w2, encoder.in_channels, w1, norm)
        self.brm = nn.ModuleDict(
            {str(s): BackpropRefinement(DECODER_WIDTHS[s - 1], brm_size(s)) for s in BRM_STAGES}
        )
        self.head = nn.Conv2d(w1, 1, 3, padding=1)

    def encode(self, x: torch.Tensor) -> LSAFeatures:
        """Run the encoder and decoder stage 5 once; the result does not depend on any BRM."""
        stem, layer1, layer2, layer3, layer4 = self.encoder(x)
        return LSAFeatures(x, stem, layer1, layer2, self.stage5(layer4, layer3))

    def decode(self, features: LSAFeatures) -> torch.Tensor:
        """Decoder stages 4…1 with their BRMs, from :meth:`encode`'s cache; returns alpha."""
        y = self.brm["5"](features.stage5)
        y = self.brm["4"](self.stage4(y, features.layer2))
        y = self.brm["3"](self.stage3(y, features.layer1))
        y = self.brm["2"](self.stage2(y, features.stem))
        y = self.stage1(y, features.image)
        return torch.clamp(self.head(y), 0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def brm_parameters(self) -> Iterator[nn.Parameter]:
        """The A and B tensors of every BRM: the only parameters backpropagating refinement updates."""
        for module in self.brm.values():
            yield module.a
            yield module.b

    def reset_brm(self) -> None:
        """Zero every A and B, making each BRM the identity again (before refining the next image)."""
        for module in self.brm.values():
            module.reset()


def lsa_net(*, in_channels: int = 4, norm: str = "bn") -> LSANet:
    """The LSA baseline: ResNet-50-D (deep stem, avg-down), output stride 32, 4-channel input."""
    encoder = resnet(50, norm=norm, in_channels=in_channels, deep_stem=True, avg_down=True)
    return LSANet(encoder, norm=norm)
