"""AdaMatting ("Disentangled Image Matting", Cai et al., ICCV 2019), built from its supplement.

Only the supplementary material is available (reference/seeds/adamatting-supplementary.txt,
digest §4). This module follows its Fig. 1 table ("Architecture of the Multi-task AutoEncoder")
layer by layer where the table is explicit, and chooses where it is silent. Every choice is listed
here so that a reader can tell the paper from the reconstruction.

Follows the supplement (Fig. 1 table)
    * One encoder, two decoders of identical architecture (alpha estimation, trimap adaptation)
      that differ only in their output layers (supplement §1).
    * Encoder stages and widths: Res-2 [1×1,64; 3×3,64; 1×1,192]×3 at 1/4, Res-3
      [128,128,384]×4 at 1/8, Res-4 [256,256,1024]×6 at 1/16, Res-5 [512,512,1024]×3 at 1/32
      (a 320 input gives 80/40/20/10, as the table lists).
    * A global-convolution skip ("GC_Skip") at each of the five resolutions, each the sum of a
      (5×1 → 1×5) and a (1×5 → 5×1) branch, with widths 512, 512, 256, 128, 64.
    * Sub-pixel upsampling: a 1×1 conv to 4× the GC width, then pixel shuffle ×2, so each
      "Upsample" stage keeps the width of the GC stage before it (2048 → 512, …, 256 → 64).
    * Output layers: 3×3 conv → 1 + sigmoid (alpha), 3×3 conv → 3 (trimap; softmax at inference).

Choices where the supplement is silent or ambiguous
    * Input: 4 channels, normalised RGB then the 1-channel trimap (0 / 0.5 / 1). The supplement
      never gives the count; the first three channels must be the image because the propagation
      unit reads them.
    * Conv1 ("320×320, 2×2 max pooling", yet Res-2 is at 80×80): a 7×7 stride-2 conv to 64
      channels, then a 2×2 stride-2 max pool. This is the only reading in which GC5_Skip's
      160×160 × 64 input exists in the encoder: it is Conv1's output before the pool.
    * Skip merge: the decoder path and the encoder feature are *concatenated* and the GC_Skip
      block is what fuses them (add is impossible without extra projections: at 1/8 the decoder
      carries 512 channels and Res-3 384). GC1_Skip sees Res-5 alone. The GC widths then match
      the table exactly.
    * Non-linearities are not listed in the table; without them the decoder would be linear
      between GC blocks. Each GC_Skip sum and each pixel-shuffled map is followed by BN + ReLU.
    * Propagation unit (PU): the main paper's recurrent refinement is not in the seed. This module
      uses a small ConvLSTM cell (3×3 gates, 16 hidden channels) unrolled a fixed number of steps
      (default 3) at full resolution. Each step reads the image, the current alpha, the adapted
      trimap probabilities and a 16-channel projection of the alpha decoder's last feature map,
      and adds a correction to the alpha *logits*; the correction conv starts at zero so the PU
      begins as the identity on the decoder's alpha. ``propagation_steps=0`` is the paper's
      "w/o PU" ablation.
    * Normalisation is BatchNorm throughout (the paper's batch size is unknown).

The forward returns :class:`AdaMattingOutput`: the refined alpha, the trimap logits (softmax is
left to the consumer, since the cross-entropy loss wants logits) and the decoder's alpha before
the PU, which a trainer may supervise as well. :class:`MultiTaskUncertainty` holds the learned
task weights of the main paper's Eq. 4 (supplement §2).

There is no data-dependent Python control flow, so the network traces and exports to ONNX with
dynamic height and width (multiples of 32).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from training.networks.layers import conv2d, norm2d
from training.networks.resnet import Bottleneck, make_stage

NORM = "bn"
STEM_CHANNELS = 64
# (bottleneck width, output width, blocks, stride) of Res-2 … Res-5 (supplement Fig. 1).
ENCODER_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (64, 192, 3, 1),
    (128, 384, 4, 2),
    (256, 1024, 6, 2),
    (512, 1024, 3, 2),
)
# GC_Skip widths from the coarsest (GC1, 1/32) to the finest (GC5, 1/2).
DECODER_WIDTHS: tuple[int, ...] = (512, 512, 256, 128, 64)
GC_KERNEL = 5
PU_HIDDEN = 16
PU_FEATURES = 16


class Bottleneck3x(Bottleneck):
    """resnet.py's Bottleneck whose output is 3× its 1×1 width (Res-2: 64 → 192, Res-3: 128 → 384)."""

    expansion = 3


class Bottleneck2x(Bottleneck):
    """resnet.py's Bottleneck whose output is 2× its 1×1 width (Res-5: 512 → 1024)."""

    expansion = 2


# Output width / bottleneck width → block class (Res-4's 256 → 1024 is the standard ×4).
_BLOCKS: dict[int, type[Bottleneck]] = {2: Bottleneck2x, 3: Bottleneck3x, 4: Bottleneck}


class AdaMattingEncoder(nn.Module):
    """Supplement Fig. 1 encoder: Conv1 (7×7/2 + 2×2 max pool), then Res-2 … Res-5.

    ``forward`` returns ``[conv1, res2, res3, res4, res5]`` (strides 2, 4, 8, 16, 32), the
    layout of :class:`training.networks.resnet.ResNetEncoder`; :attr:`channels` gives their widths
    (64, 192, 384, 1024, 1024). The blocks are resnet.py's Bottleneck (stride on the 3×3 conv) with
    the table's non-standard output widths, which is why this is not a plain ``resnet(50)``.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv1 = conv2d(NORM, in_channels, STEM_CHANNELS, 7, stride=2, padding=3)
        self.bn1 = norm2d(NORM, STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        stages = []
        inplanes = STEM_CHANNELS
        for width, out_channels, blocks, stride in ENCODER_STAGES:
            block = _BLOCKS[out_channels // width]
            stages.append(make_stage(block, inplanes, width, blocks, stride=stride, norm=NORM))
            inplanes = out_channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.channels = [STEM_CHANNELS, *(out for _, out, _, _ in ENCODER_STAGES)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        feats = [stem]
        x = self.maxpool(stem)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            feats.append(x)
        return feats


class GlobalConv(nn.Module):
    """Large-kernel "global convolution" (Peng et al., 2017), as AdaMatting's GC_Skip.

    Two separable paths, (k×1 → 1×k) and (1×k → k×1), are summed: a k×k receptive field at the
    cost of 4k weights per channel pair, which is why the paper uses it to widen context at every
    skip. BN + ReLU follow the sum (a choice; see the module docstring).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = GC_KERNEL) -> None:
        super().__init__()
        pad = kernel // 2
        self.left = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, (kernel, 1), padding=(pad, 0), bias=False),
            nn.Conv2d(out_channels, out_channels, (1, kernel), padding=(0, pad), bias=False),
        )
        self.right = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, (1, kernel), padding=(0, pad), bias=False),
            nn.Conv2d(out_channels, out_channels, (kernel, 1), padding=(pad, 0), bias=False),
        )
        self.norm = norm2d(NORM, out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.left(x) + self.right(x)))


class SubPixelUp(nn.Module):
    """AdaMatting's "Upsample" stage: 1×1 conv to 4·C channels, pixel shuffle ×2, BN + ReLU.

    Pixel shuffle rearranges the 4·C channels into a 2×2 block of C channels per input pixel, so
    the spatial size doubles and the width returns to C (ablated as "SP" in supplement Table 1).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.expand = nn.Conv2d(channels, 4 * channels, 1, bias=False)
        self.shuffle = nn.PixelShuffle(2)
        self.norm = norm2d(NORM, channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.shuffle(self.expand(x))))


class Decoder(nn.Module):
    """One of the twin decoders: GC_Skip and Upsample stages from 1/32 to full resolution.

    ``skip_channels`` lists the encoder features from the coarsest (Res-5) to the finest (Conv1).
    Stage i concatenates the upsampled decoder path with skip i and fuses them in a GlobalConv;
    the first stage sees Res-5 alone. The returned map (full resolution, ``DECODER_WIDTHS[-1]``
    channels) is what the output layer, and for the alpha branch the propagation unit, read.
    """

    def __init__(self, skip_channels: tuple[int, ...]) -> None:
        super().__init__()
        if len(skip_channels) != len(DECODER_WIDTHS):
            raise ValueError(f"expected {len(DECODER_WIDTHS)} skip widths, got {skip_channels}")
        path = (0, *DECODER_WIDTHS[:-1])
        self.skips = nn.ModuleList(
            GlobalConv(prev + skip, width)
            for prev, skip, width in zip(path, skip_channels, DECODER_WIDTHS, strict=True)
        )
        self.ups = nn.ModuleList(SubPixelUp(width) for width in DECODER_WIDTHS)
        self.out_channels = DECODER_WIDTHS[-1]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.ups[0](self.skips[0](features[0]))
        for skip, up, feature in zip(self.skips[1:], self.ups[1:], features[1:], strict=True):
            x = up(skip(torch.cat([x, feature], dim=1)))
        return x


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell: the four gates come from one 3×3 conv over [input, hidden]."""

    def __init__(self, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, 3, padding=1)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i, f, g, o = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class PropagationUnit(nn.Module):
    """The recurrent alpha refinement ("PU"; a design choice, see the module docstring).

    Each of ``steps`` iterations feeds [image, alpha, trimap probabilities, projected features]
    to a ConvLSTM cell and adds ``head(h)`` to the alpha logits. ``head`` starts at zero, so an
    untrained PU returns the decoder's alpha unchanged and training starts from the "w/o PU"
    network. The loop count is a constructor constant, so the unrolled graph exports as is.
    """

    def __init__(self, feature_channels: int, steps: int = 3) -> None:
        super().__init__()
        if steps < 0:
            raise ValueError(f"propagation steps must be >= 0, got {steps}")
        self.steps = steps
        self.project = nn.Sequential(
            nn.Conv2d(feature_channels, PU_FEATURES, 1, bias=False),
            norm2d(NORM, PU_FEATURES),
            nn.ReLU(inplace=True),
        )
        self.cell = ConvLSTMCell(3 + 1 + 3 + PU_FEATURES, PU_HIDDEN)
        self.head = nn.Conv2d(PU_HIDDEN, 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        image: torch.Tensor,
        alpha_logits: torch.Tensor,
        trimap_probs: torch.Tensor,
        features: torch.Tensor,
    ) -> torch.Tensor:
        """Refined alpha logits (N × 1 × H × W)."""
        context = torch.cat([image, trimap_probs, self.project(features)], dim=1)
        n, _, height, width = features.shape
        h = features.new_zeros(n, PU_HIDDEN, height, width)
        c = features.new_zeros(n, PU_HIDDEN, height, width)
        for _ in range(self.steps):
            h, c = self.cell(torch.cat([context, torch.sigmoid(alpha_logits)], dim=1), h, c)
            alpha_logits = alpha_logits + self.head(h)
        return alpha_logits


class AdaMattingOutput(NamedTuple):
    """What :class:`AdaMatting` returns (a NamedTuple so that export flattens it in this order)."""

    alpha: torch.Tensor  # N×1×H×W in (0, 1): the propagation unit's output
    trimap_logits: torch.Tensor  # N×3×H×W, classes (background, unknown, foreground)
    coarse_alpha: torch.Tensor  # N×1×H×W in (0, 1): the alpha decoder's output before the PU


class AdaMatting(nn.Module):
    """Encoder, twin decoders (alpha, trimap adaptation), output layers and propagation unit.

    ``forward(x)`` takes N × in_channels × H × W (normalised RGB first, then the trimap; H and W
    multiples of 32) and returns :class:`AdaMattingOutput`.
    """

    def __init__(self, *, in_channels: int = 4, propagation_steps: int = 3) -> None:
        super().__init__()
        if in_channels < 4:
            raise ValueError(f"AdaMatting needs RGB plus at least one trimap channel, got {in_channels}")
        self.encoder = AdaMattingEncoder(in_channels)
        skips = tuple(reversed(self.encoder.channels))
        self.alpha_decoder = Decoder(skips)
        self.trimap_decoder = Decoder(skips)
        width = self.alpha_decoder.out_channels
        self.alpha_head = nn.Conv2d(width, 1, 3, padding=1)
        self.trimap_head = nn.Conv2d(width, 3, 3, padding=1)
        self.propagation = PropagationUnit(width, propagation_steps)

    def forward(self, x: torch.Tensor) -> AdaMattingOutput:
        features = self.encoder(x)[::-1]
        alpha_features = self.alpha_decoder(features)
        coarse_logits = self.alpha_head(alpha_features)
        trimap_logits = self.trimap_head(self.trimap_decoder(features))
        logits = self.propagation(
            x[:, :3], coarse_logits, torch.softmax(trimap_logits, dim=1), alpha_features
        )
        return AdaMattingOutput(torch.sigmoid(logits), trimap_logits, torch.sigmoid(coarse_logits))


def adamatting(*, in_channels: int = 4, propagation_steps: int = 3) -> AdaMatting:
    """AdaMatting as reconstructed from its supplement (see the module docstring for the choices)."""
    return AdaMatting(in_channels=in_channels, propagation_steps=propagation_steps)


class MultiTaskUncertainty(nn.Module):
    """Learned task weighting of AdaMatting's Eq. 4 (supplement §2, Table 2 "AdaMatting-D").

    ``L = L_t / (2σ1²) + L_α / (2σ2²) + log σ1 + log σ2`` with σ1 for the trimap task and σ2 for
    alpha. The parameters are s_i = log σ_i² (so σ_i² = exp(s_i) stays positive and the loss is
    smooth in s): ``L = ½·exp(−s1)·L_t + ½·exp(−s2)·L_α + ½·(s1 + s2)``. At s = 0 both weights
    are ½. The supplement reports convergence to σ1 ≈ 0.0995, σ2 ≈ 0.0878 and that fixing σ at
    those values from the start trains worse, hence learned weights and not constants.
    """

    def __init__(self) -> None:
        super().__init__()
        self.log_variance = nn.Parameter(torch.zeros(2))

    def forward(self, trimap_loss: torch.Tensor, alpha_loss: torch.Tensor) -> torch.Tensor:
        s = self.log_variance
        weighted = 0.5 * torch.exp(-s[0]) * trimap_loss + 0.5 * torch.exp(-s[1]) * alpha_loss
        return weighted + 0.5 * s.sum()

    def sigmas(self) -> torch.Tensor:
        """(σ1, σ2), for logging against the supplement's converged values."""
        return torch.exp(0.5 * self.log_variance.detach())
