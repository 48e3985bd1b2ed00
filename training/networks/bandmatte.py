"""BandMatte: a coarse pass over the whole frame, then full-resolution refinement of the unknown band only.

The CPU default model. FBA Matting's outputs (alpha, foreground F, background B, so FBA's fusion
applies) from a network whose cost follows the trimap's unknown band, after BackgroundMattingV2's
base + refiner split:

* **Coarse pass**, once per frame, on the frame shrunk 4× (``band_coarse``: RGB, the trimap's
  definite fractions and FBA's six Gaussian distance maps): an ImageNet-pretrained EfficientNet-Lite
  encoder (the trimap planes through a stem convolution of their own) and a U-Net decoder back to the
  coarse resolution that sees the trimap planes again, pooled, at every level: a first run whose
  decoder saw them only at its last layer learned wide unknown regions slowly. It returns a coarse alpha, F and B and
  16 hidden feature planes: 23 planes that carry the global context.
* **Refiner**, at full resolution, on 16×16 cells: three 3×3 convolutions without padding over the
  cell and a 3-pixel margin, fed with the image, the trimap's definite masks and the 23 coarse planes
  upsampled bilinearly. It predicts a correction to the upsampled coarse alpha; F and B are the
  coarse pass's, upsampled.

The refiner's receptive field fits in a cell's window and the upsampled coarse planes are the same
whether upsampled whole or per window (:mod:`mattecli.band_inputs`), so computing cells one by one
equals the whole-frame computation by construction. :meth:`BandMatte.forward_frame` is that
whole-frame computation (training, eager benchmarks); :meth:`BandMatte.forward` is the exported
graph (coarse input, the band's patches, their coarse windows → each cell's alpha, F, B).

The exported graph has no data-dependent shapes, no unpooling and no adaptive pooling: P (cells
per call) and the coarse size are its only dynamic dimensions, so TensorRT builds it with
profiles on those.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mattecli.band_inputs import (
    COARSE_CHANNELS,
    DEFAULT_GEOMETRY,
    PATCH_CHANNELS,
    BandGeometry,
    interpolation_matrix,
)
from training.networks.efficientnet_lite import EfficientNetLiteEncoder, load_imagenet_state

OUTPUTS = 7  # alpha, F (3), B (3)
HIDDEN = 16  # coarse feature planes handed to the refiner besides the coarse outputs
CARRIED = OUTPUTS + HIDDEN
DECODER_WIDTHS = (96, 96, 64, 48, 32, 32)  # at coarse strides 32, 16, 8, 4, 2, 1
REFINER_WIDTHS = (24, 16)


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))


def _outputs(raw: torch.Tensor) -> torch.Tensor:
    """Raw 7 planes → alpha clamped to [0, 1], F and B through a sigmoid (FBA's output heads)."""
    return torch.cat([raw[:, :1].clamp(0.0, 1.0), torch.sigmoid(raw[:, 1:7])], dim=1)


class CoarseNet(nn.Module):
    """Encoder + U-Net decoder at the coarse resolution: N×11×h×w → N×23×h×w (7 outputs, 16 features)."""

    def __init__(self, encoder: EfficientNetLiteEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        skips = [*reversed(encoder.channels[:-1]), COARSE_CHANNELS]  # strides 16, 8, 4, 2, then the input
        widths = DECODER_WIDTHS
        trimap = COARSE_CHANNELS - 3  # every level also sees the trimap planes, pooled to its size
        self.top = _conv(encoder.channels[-1] + trimap, widths[0])
        self.ups = nn.ModuleList(
            _conv(widths[i] + skips[i] + (trimap if i < len(skips) - 1 else 0), widths[i + 1])
            for i in range(len(skips))
        )
        self.head = nn.Conv2d(widths[-1], CARRIED, 3, padding=1)

    def forward(self, coarse: torch.Tensor) -> torch.Tensor:
        levels = self.encoder(coarse)
        trimap = coarse[:, 3:]

        def pooled(stride: int) -> torch.Tensor:  # a static window: TensorRT-friendly
            return F.avg_pool2d(trimap, stride, stride)

        x = self.top(torch.cat([levels[-1], pooled(32)], dim=1))
        strides = (16, 8, 4, 2)
        for i, (up, skip) in enumerate(zip(self.ups, [*reversed(levels[:-1]), coarse], strict=True)):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            parts = [x, skip] + ([pooled(strides[i])] if i < len(strides) else [])
            x = up(torch.cat(parts, dim=1))
        raw = self.head(x)
        return torch.cat([_outputs(raw[:, :OUTPUTS]), F.relu(raw[:, OUTPUTS:])], dim=1)


class Refiner(nn.Module):
    """Three unpadded 3×3 convolutions: a window of side c + 2·margin → an alpha correction on the c × c cell.

    Only alpha is refined; F and B stay the coarse pass's, upsampled (FBA's fusion then refines all
    three from the image). A first version that also corrected F and B learned no sharper alpha in
    600 steps: its 16 channels went to colour, while alone on alpha the same layers halve its error
    on a batch within 50 steps.
    """

    def __init__(self) -> None:
        super().__init__()
        cin = CARRIED + PATCH_CHANNELS
        a, b = REFINER_WIDTHS
        self.layers = nn.Sequential(
            nn.Conv2d(cin, a, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(a, b, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(b, 1, 3),
        )
        # Start close to "trust the coarse pass", but not at zero: a zero last layer passes no
        # gradient to the layers before it, and a first run left the refiner idle for 600 steps.
        with torch.no_grad():
            self.layers[-1].weight.mul_(0.1)
            nn.init.zeros_(self.layers[-1].bias)

    margin = 3

    def forward(self, carried: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """``carried``: upsampled coarse planes over the window; ``pixels``: RGB in [0, 1], fg, bg masks."""
        m = self.margin
        rgb = pixels[:, :3] * 2.0 - 1.0
        delta = self.layers(torch.cat([carried, rgb, pixels[:, 3:]], dim=1))
        base = carried[:, :OUTPUTS, m:-m, m:-m]
        return torch.cat([(base[:, :1] + delta).clamp(0.0, 1.0), base[:, 1:]], dim=1)


class BandMatte(nn.Module):
    """Coarse pass + band refiner; see the module docstring."""

    def __init__(self, variant: str = "lite0", geometry: BandGeometry = DEFAULT_GEOMETRY) -> None:
        super().__init__()
        if geometry.margin != Refiner.margin:
            raise ValueError(f"the refiner needs a margin of {Refiner.margin}, got {geometry.margin}")
        self.geometry = geometry
        self.coarse = CoarseNet(EfficientNetLiteEncoder(load_imagenet_state(variant), COARSE_CHANNELS))
        self.refiner = Refiner()
        self.register_buffer("interp", torch.from_numpy(interpolation_matrix(geometry)), persistent=False)

    def forward_frame(self, coarse: torch.Tensor, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole-frame computation: (N×7×H×W final alpha/F/B, N×7×h×w coarse alpha/F/B).

        ``pixels`` is N×5×H×W (RGB in [0, 1], definite fg, definite bg) of frames whose size is the
        coarse size times the scale; frame edges repeat outwards, as the cells' windows do.
        """
        carried = self.coarse(coarse)
        up = F.interpolate(
            carried, scale_factor=float(self.geometry.scale), mode="bilinear", align_corners=False
        )
        m = self.geometry.margin
        padded = F.pad(torch.cat([up, pixels], dim=1), (m, m, m, m), mode="replicate")
        return self.refiner(padded[:, :CARRIED], padded[:, CARRIED:]), carried[:, :OUTPUTS]

    def forward(
        self, band_coarse: torch.Tensor, band_patches: torch.Tensor, band_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The exported graph: 1×11×h×w, P×5×w'×w', P×A² → alpha P×1×c×c, F and B P×3×c×c."""
        carried = self.coarse(band_coarse)[0]  # 23×h×w
        span = self.interp.shape[1]
        windows = carried.flatten(1).index_select(1, band_index.flatten())  # 23×(P·A²)
        windows = windows.reshape(CARRIED, -1, span, span)
        up = torch.matmul(torch.matmul(self.interp, windows), self.interp.t())  # 23×P×w'×w'
        out = self.refiner(up.permute(1, 0, 2, 3), band_patches)
        return out[:, :1], out[:, 1:4], out[:, 4:7]


def bandmatte(variant: str = "lite0") -> BandMatte:
    """BandMatte with an ImageNet-pretrained EfficientNet-Lite ``variant`` encoder."""
    return BandMatte(variant)
