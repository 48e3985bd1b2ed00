"""GFM, the Glance and Focus Matting network (Li et al., "Bridge Composite and Real", IJCV 2022).

Trimap-free matting: one shared encoder, a Glance Decoder (GD) that segments the image into 2 or 3
classes, a Focus Decoder (FD) that predicts alpha in the transition area, and Collaborative Matting
(CM) that merges the two according to the chosen RoSTa (representation of semantic and transition
areas). Sources: paper §3.1-3.5 and Table 4 (reference/seeds/gfm-bridge-composite-real.txt),
digest §3.1 and §9.

Follows the paper
    * Encoder E0-E4: ResNet-34 (§3.1), BatchNorm, stride 32. E0 is the stem at 1/2 (before the
      max-pool), E1-E4 are layer1-layer4 (1/4 … 1/32).
    * GD (§3.2): five blocks D4-D0, each three 3×3 convs and one ×2 upsampling, with a pyramid
      pooling module (PPM) after E4 whose global context reaches *every* block by element-wise sum
      (``ppm_fusion="sum"``, the default).
    * FD (§3.3): the same five-block structure; a bridge block of three dilated 3×3 convs after E4,
      E4 and the bridge output concatenated into D4, and U-Net shortcuts E_i → D_i.
    * RoSTa and CM (§3.4-3.5): TT replaces GD's transition area with FD; FT adds FD to GD's
      foreground; BT subtracts FD from GD's "not background".

Taken from the public reference code where the paper is silent [EXT, digest §3.1]
    * Block widths: D4 512→512→256, D3 256→256→128, D2 128→128→64, D1 64→64→64, D0 64→64→C;
      every conv but the last of D0 is followed by BN + ReLU; the upsampling is bilinear.
    * PPM bins (1, 3, 5) with 512 channels. Each branch here is pool → 1×1 conv → BN → ReLU
      (``layers.PyramidPooling``) and the merge is a 1×1 conv → BN → ReLU back to 512 channels; the
      reference has no BN in either place. The context reaches D3-D0 through a 3×3 conv → BN → ReLU
      at 1/32 per block, then a bilinear resize to the block's input. With BatchNorm after the
      1×1 pooled bin, GFM cannot train at batch size 1 (the paper trains ResNet-34 at batch 32).
    * Bridge block: dilation 2, 512 channels, BN + ReLU.
    * FD output: sigmoid.

Deviations, and why
    * ``ppm_fusion="concat"`` reproduces the reference code's concatenation of the PPM context with
      each GD block's input (the layout whose parameters Table 4 counts: 55.29 M, of which 0.51 M is
      the reference's unused ImageNet classifier). The paper's sum is the default.
    * GD output: logits, with class probabilities by softmax. The paper calls the output a class
      probability map trained with cross-entropy, which is a softmax; the reference code applies a
      per-channel sigmoid instead. Both give the same argmax, so CM's forward is unchanged.
    * CM's class masks are straight-through one-hots: the forward value is the hard argmax mask the
      paper and the reference code use, the backward pass is that of the softmax probabilities. The
      reference code's argmax passes no gradient to GD, yet the paper (§3.5) relies on CM to carry
      the whole-image loss into *both* decoders; this construction does exactly that.
    * Every upsampling targets the size of the encoder feature it meets (the input image for D0)
      instead of a fixed ×2, so sizes that are not multiples of 32 still run; at multiples of 32
      (what the paper uses, and what inference should round to) it is exactly ×2.
    * Only the ResNet-34 encoder "(r)" is built; DenseNet-121 "(d)" and r2b are not.

Glance classes (the order the data pipeline must label with), see :data:`GLANCE_CLASSES`:
    * TT: 0 background, 1 transition, 2 foreground (trimap from GT alpha, kernel 25).
    * FT: 0 rest, 1 foreground (GT alpha eroded, kernel 50).
    * BT: 0 background, 1 rest (the complement of GT alpha dilated with kernel 50).

Focus target per RoSTa (for the losses): TT and FT learn alpha in the transition area (TT: the
trimap's unknown band; FT: ``1(α>0) − eroded``). For BT the paper says the transition area is
"B − 1(α>0)" with FD supervised by alpha, which cannot hold with ``α = GD − FD`` (digest §9): inside
the dilated region GD's label is 1, so FD must predict the *transparency* ``1 − α``, and the BT
transition area is the dilated region where ``α < 1``. This module's BT focus output is therefore
``1 − α`` there.

The forward returns :class:`GFMOutput` (glance logits, focus, fused alpha); training supervises all
three, inference uses the fused alpha. Input: ImageNet-normalised RGB, N×3×H×W. There is no
data-dependent Python control flow (argmax is an op), so the network exports to ONNX with dynamic
N, H and W.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import nn

from training.networks.layers import PyramidPooling, conv_norm_act, upsample_like
from training.networks.resnet import resnet

NORM = "bn"
ROSTAS = ("TT", "FT", "BT")
GLANCE_CLASSES: dict[str, tuple[str, ...]] = {
    "TT": ("background", "transition", "foreground"),
    "FT": ("rest", "foreground"),
    "BT": ("background", "rest"),
}
ENCODERS = ("resnet34",)
PPM_FUSIONS = ("sum", "concat")
PPM_BINS = (1, 3, 5)
BRIDGE_DILATION = 2
# Per decoder block D4 … D0: the width of its first two convs and of its output (D0's is the head).
BLOCK_WIDTHS = (512, 256, 128, 64, 64)
BLOCK_OUTPUTS = (256, 128, 64, 64)

RoSTa = Literal["TT", "FT", "BT"]
PPMFusion = Literal["sum", "concat"]


class GFMOutput(NamedTuple):
    """What GFM returns: everything the three losses need; ``alpha`` is the matte to use."""

    glance: torch.Tensor
    """GD logits, N×C×H×W (C = 3 for TT, 2 for FT/BT), classes in :data:`GLANCE_CLASSES` order."""
    focus: torch.Tensor
    """FD output in [0, 1], N×1×H×W: alpha in the transition area (``1 − alpha`` for BT)."""
    alpha: torch.Tensor
    """Collaborative-matting alpha in [0, 1], N×1×H×W."""

    @property
    def glance_probs(self) -> torch.Tensor:
        """GD class probabilities (softmax of :attr:`glance`)."""
        return self.glance.softmax(dim=1)


class DecoderBlock(nn.Module):
    """Three 3×3 convs then a bilinear resize to a reference map (paper §3.2: one GFM decoder block).

    The last conv of the final block (``head=True``) has no norm or activation: it emits logits.
    """

    def __init__(self, in_channels: int, width: int, out_channels: int, *, head: bool = False) -> None:
        super().__init__()
        last: nn.Module = (
            nn.Conv2d(width, out_channels, 3, padding=1)
            if head
            else conv_norm_act(NORM, width, out_channels, 3)
        )
        self.convs = nn.Sequential(
            conv_norm_act(NORM, in_channels, width, 3), conv_norm_act(NORM, width, width, 3), last
        )

    def forward(self, x: torch.Tensor, size_of: torch.Tensor) -> torch.Tensor:
        return upsample_like(self.convs(x), size_of)


def _block_outputs(head_channels: int) -> tuple[int, ...]:
    return (*BLOCK_OUTPUTS, head_channels)


class GlanceDecoder(nn.Module):
    """GD: PPM on E4, then five blocks, each fed the PPM context (sum or concatenation)."""

    def __init__(self, encoder_channels: Sequence[int], classes: int, fusion: PPMFusion) -> None:
        super().__init__()
        top = encoder_channels[-1]
        self.fusion = fusion
        self.ppm = PyramidPooling(top, top, PPM_BINS, norm=NORM)
        self.ppm_merge = conv_norm_act(NORM, self.ppm.out_channels, top, 1)
        # D4 reads the PPM output directly; D3 … D0 read it projected to their input width.
        inputs = (top, *BLOCK_OUTPUTS)
        self.context = nn.ModuleList(conv_norm_act(NORM, top, c, 3) for c in inputs[1:])
        factor = 2 if fusion == "concat" else 1
        outputs = _block_outputs(classes)
        self.blocks = nn.ModuleList(
            DecoderBlock(factor * c_in, width, c_out, head=i == len(outputs) - 1)
            for i, (c_in, width, c_out) in enumerate(zip(inputs, BLOCK_WIDTHS, outputs, strict=True))
        )

    def _fuse(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, context], dim=1) if self.fusion == "concat" else x + context

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        e4 = features[-1]
        ppm = self.ppm_merge(self.ppm(e4))
        targets = (*features[-2::-1], image)
        x = self.blocks[0](self._fuse(e4, ppm), targets[0])
        for project, block, target in zip(self.context, self.blocks[1:], targets[1:], strict=True):
            x = block(self._fuse(x, upsample_like(project(ppm), x)), target)
        return x


class FocusDecoder(nn.Module):
    """FD: bridge block on E4, then five blocks with U-Net shortcuts from E3 … E0; sigmoid output."""

    def __init__(self, encoder_channels: Sequence[int]) -> None:
        super().__init__()
        top = encoder_channels[-1]
        self.bridge = nn.Sequential(
            *(conv_norm_act(NORM, top, top, 3, dilation=BRIDGE_DILATION) for _ in range(3))
        )
        # D4 sees [E4, bridge]; D_i (i < 4) sees [D_{i+1} output, E_i].
        inputs = (2 * top, *(c + e for c, e in zip(BLOCK_OUTPUTS, encoder_channels[-2::-1], strict=True)))
        outputs = _block_outputs(1)
        self.blocks = nn.ModuleList(
            DecoderBlock(c_in, width, c_out, head=i == len(outputs) - 1)
            for i, (c_in, width, c_out) in enumerate(zip(inputs, BLOCK_WIDTHS, outputs, strict=True))
        )

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        e4 = features[-1]
        skips = features[-2::-1]
        targets = (*skips, image)
        x = self.blocks[0](torch.cat([e4, self.bridge(e4)], dim=1), targets[0])
        for block, skip, target in zip(self.blocks[1:], skips, targets[1:], strict=True):
            x = block(torch.cat([x, skip], dim=1), target)
        return torch.sigmoid(x)


def straight_through_masks(logits: torch.Tensor) -> torch.Tensor:
    """One-hot argmax masks (N×C×H×W) whose gradient is that of ``softmax(logits)``.

    ``hard + (p − p.detach())`` is exactly ``hard`` in the forward pass (``p − p`` is 0 in floating
    point), so CM merges with the paper's hard class decision while the loss still reaches GD.
    """
    probs = logits.softmax(dim=1)
    classes = torch.arange(logits.shape[1], device=logits.device).view(1, -1, 1, 1)
    hard = (logits.argmax(dim=1, keepdim=True) == classes).to(probs.dtype)
    return hard + (probs - probs.detach())


def collaborative_matting(rosta: str, glance_logits: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
    """Merge GD and FD into the final alpha by the RoSTa's rule (paper §3.5).

    * TT: ``focus`` where GD says transition, 1 where foreground, 0 where background.
    * FT: ``min(1, [foreground] + focus)``.
    * BT: ``max(0, [rest] − focus)`` (``focus`` is the transparency ``1 − α``; see the module doc).

    ``glance_logits`` and ``focus`` must have the same height and width; the hybrid-resolution test
    (§3.5 "Hybrid-resolution Test") resizes them to a common size before calling this.
    """
    masks = straight_through_masks(glance_logits)
    if rosta == "TT":
        return masks[:, 2:3] + masks[:, 1:2] * focus
    if rosta == "FT":
        return (masks[:, 1:2] + focus).clamp(max=1.0)
    if rosta == "BT":
        return (masks[:, 1:2] - focus).clamp(min=0.0)
    raise ValueError(f"rosta must be one of {ROSTAS}, got {rosta!r}")


class GFM(nn.Module):
    """Shared ResNet-34 encoder, Glance and Focus decoders, Collaborative Matting (see module doc)."""

    def __init__(self, rosta: RoSTa = "TT", *, ppm_fusion: PPMFusion = "sum") -> None:
        super().__init__()
        if rosta not in ROSTAS:
            raise ValueError(f"rosta must be one of {ROSTAS}, got {rosta!r}")
        if ppm_fusion not in PPM_FUSIONS:
            raise ValueError(f"ppm_fusion must be one of {PPM_FUSIONS}, got {ppm_fusion!r}")
        self.rosta = rosta
        self.encoder = resnet(34, norm=NORM)
        self.glance = GlanceDecoder(self.encoder.channels, len(GLANCE_CLASSES[rosta]), ppm_fusion)
        self.focus = FocusDecoder(self.encoder.channels)

    def forward(self, image: torch.Tensor) -> GFMOutput:
        features = self.encoder(image)
        glance = self.glance(features, image)
        focus = self.focus(features, image)
        return GFMOutput(glance, focus, collaborative_matting(self.rosta, glance, focus))


def gfm(rosta: RoSTa = "TT", encoder: str = "resnet34", *, ppm_fusion: PPMFusion = "sum") -> GFM:
    """GFM-``rosta``(r): randomly initialised (load ImageNet weights into ``.encoder`` to train)."""
    if encoder not in ENCODERS:
        raise ValueError(
            f"encoder must be one of {ENCODERS}, got {encoder!r} (DenseNet-121 and r2b are not built)"
        )
    return GFM(rosta, ppm_fusion=ppm_fusion)
