"""FBA Matting (Forte & Pitié, "F, B, Alpha Matting"): one network predicting alpha, F and B.

Follows the paper's §3.1 (architecture, output layer) and §3.2 (Group Norm + Weight Standardisation
for batch size 1; Table 2 for clip vs. sigmoid alpha), with the details the paper
leaves to its supplement taken from the public reference network (MarcoForte/FBA_Matting, commit
8dd100d), whose parameter names and shapes this module reproduces key for key, so the public
``FBA.pth`` loads strictly (:func:`training.networks.checkpoints.load_checkpoint`):

- encoder: ResNet-50, GroupNorm(32 groups) + Weight Standardisation, layer3/layer4 dilated by 2/4
  (output stride 8); 11 input channels: ImageNet-normalised RGB, the 6 Gaussian trimap maps and the
  2-channel trimap. The paper says 9 (§3.1: no 2-channel trimap) and "32 channels per group"
  (§3.2); the reference, and so this module, use 11 channels and 32 groups.
- decoder: pyramid pooling (bins 1, 2, 3, 6; 1×1 conv to 256, GN, LeakyReLU), then seven convs
  interleaved with three bilinear ×2 upsamplings and skips from layer1, the stem and the inputs
  (normalised RGB, raw RGB, 2-channel trimap). Decoder convs are weight-standardised except the
  last three, which have no norm (as the reference). Like the reference's, checkpoints hold the
  standardised weights and inference convolves with them as stored (see
  :class:`training.networks.layers.WSConv2d`): the golden output is reproduced only that way.
- outputs (§3.1): alpha clipped to [0, 1], F and B through a sigmoid, as 7 channels.

Deviations from the reference, none of which changes the numbers (the golden test checks this):

- ``forward`` returns the raw 7 channels WITHOUT the F/B/alpha fusion of §3.4 (Eq. 4-6). Fusion runs
  after the inference engine, once, in NumPy (:func:`mattecli.fusion.fba_fusion`), so the ONNX and
  TensorRT engines and tiled inference share one implementation of it.
- ImageNet normalisation happens inside ``forward`` (the reference takes ``image_n`` as a separate
  input): the engine then needs only the [0, 1] image, and the two can never disagree.
- The PPM's adaptive pooling is :func:`training.networks.layers.adaptive_avg_pool2d` (same bins as
  ``nn.AdaptiveAvgPool2d``) so the network exports to ONNX at any input size.
- The reference's unused max-pool indices are not returned.

Input height and width must be multiples of :data:`SIZE_MULTIPLE` (8); padding or resizing to that
multiple is the caller's job (the model registry's preprocessing contract states it).

Lighter variants (``fba("resnet34")``, ``fba("resnet18")``) keep the head and adapt only the widths
that depend on the encoder (layer1 and layer4 channels); ``width=0.5`` also halves every channel
count of encoder and decoder (about a quarter of the compute: the package's default model). They are
this project's additions for CPU use, not part of the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from mattecli.preprocess import IMAGENET_MEAN, IMAGENET_STD
from training.networks.layers import PyramidPooling, conv2d, norm2d, upsample_like
from training.networks.resnet import ResNetEncoder, resnet

SIZE_MULTIPLE = 8
IN_CHANNELS = 3 + 6 + 2  # normalised RGB, Gaussian trimap encoding, 2-channel trimap
OUT_CHANNELS = 7  # alpha, F (3), B (3)
PPM_BINS = (1, 2, 3, 6)
PPM_CHANNELS = 256
ENCODER_DEPTHS = {"resnet18": 18, "resnet34": 34, "resnet50": 50}


class FBADecoder(nn.Module):
    """PPM + the seven-conv decoder with its skips; widths follow the encoder's channel list."""

    def __init__(self, encoder_channels: list[int], *, norm: str = "gn_ws", width: float = 1.0) -> None:
        super().__init__()
        stem_ch, layer1_ch, top_ch = encoder_channels[0], encoder_channels[1], encoder_channels[-1]
        c256, c64, c32, c16 = (round(c * width) for c in (PPM_CHANNELS, 64, 32, 16))
        self.ppm = PyramidPooling(top_ch, c256, PPM_BINS, norm=norm, activation=nn.LeakyReLU, conv_bias=True)

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [conv2d(norm, cin, cout, 3, padding=1, bias=True), norm2d(norm, cout), nn.LeakyReLU()]

        self.conv_up1 = nn.Sequential(*block(self.ppm.out_channels, c256), *block(c256, c256))
        self.conv_up2 = nn.Sequential(*block(c256 + layer1_ch, c256))
        self.conv_up3 = nn.Sequential(*block(c256 + stem_ch, c64))
        self.conv_up4 = nn.Sequential(
            nn.Conv2d(c64 + 3 + 3 + 2, c32, 3, padding=1),
            nn.LeakyReLU(),
            nn.Conv2d(c32, c16, 3, padding=1),
            nn.LeakyReLU(),
            nn.Conv2d(c16, OUT_CHANNELS, 1),
        )

    def forward(
        self,
        features: list[torch.Tensor],
        image_n: torch.Tensor,
        image: torch.Tensor,
        two_chan_trimap: torch.Tensor,
    ) -> torch.Tensor:
        stem, layer1, top = features[0], features[1], features[-1]
        x = self.conv_up1(self.ppm(top))
        x = self.conv_up2(torch.cat([upsample_like(x, layer1), layer1], dim=1))
        x = self.conv_up3(torch.cat([upsample_like(x, stem), stem], dim=1))
        x = torch.cat([upsample_like(x, image), image_n, image, two_chan_trimap], dim=1)
        out = self.conv_up4(x)
        alpha = out[:, :1].clamp(0.0, 1.0)
        fg_bg = torch.sigmoid(out[:, 1:])
        return torch.cat([alpha, fg_bg], dim=1)


class FBA(nn.Module):
    """FBA Matting network; ``forward`` maps (image, 2-channel trimap, trimap encoding) to 7 channels.

    Inputs (N×C×H×W float32, H and W multiples of 8): ``image`` RGB in [0, 1] (3), ``two_chan_trimap``
    (2: definite background, definite foreground) and ``trimap_transformed`` (the 6 Gaussian maps of
    :func:`mattecli.preprocess.fba_trimap_encoding`). Output: N×7×H×W = alpha (clipped to [0, 1]),
    F (3, sigmoid), B (3, sigmoid), before fusion.
    """

    def __init__(self, encoder: str = "resnet50", *, norm: str = "gn_ws", width: float = 1.0) -> None:
        super().__init__()
        if encoder not in ENCODER_DEPTHS:
            raise ValueError(f"encoder must be one of {sorted(ENCODER_DEPTHS)}, got {encoder!r}")
        self.variant = encoder if width == 1.0 else f"{encoder} at width {width:g}"
        self.encoder: ResNetEncoder = resnet(
            ENCODER_DEPTHS[encoder],
            norm=norm,
            in_channels=IN_CHANNELS,
            output_stride=SIZE_MULTIPLE,
            width=width,
        )
        self.decoder = FBADecoder(self.encoder.channels, norm=norm, width=width)
        self.register_buffer("mean", torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def checkpoint_description(self) -> str:
        """What a matching checkpoint is, for load errors' hints."""
        return f"an FBA checkpoint for the {self.variant} variant"

    def forward(
        self, image: torch.Tensor, two_chan_trimap: torch.Tensor, trimap_transformed: torch.Tensor
    ) -> torch.Tensor:
        if not torch.compiler.is_compiling() and (
            image.shape[-2] % SIZE_MULTIPLE or image.shape[-1] % SIZE_MULTIPLE
        ):
            raise ValueError(
                f"FBA needs height and width that are multiples of {SIZE_MULTIPLE}, "
                f"got {tuple(image.shape[-2:])}; pad the input first"
            )
        image_n = (image - self.mean) / self.std
        features = self.encoder(torch.cat([image_n, trimap_transformed, two_chan_trimap], dim=1))
        return self.decoder(features, image_n, image, two_chan_trimap)


def fba(encoder: str = "resnet50", *, norm: str = "gn_ws", width: float = 1.0) -> FBA:
    """FBA with a ResNet-50 (the paper's, and the public checkpoint's), ResNet-34 or ResNet-18 encoder.

    ``width`` multiplies every channel count of encoder and decoder (0.5 for the slim CPU model).
    """
    return FBA(encoder, norm=norm, width=width)
