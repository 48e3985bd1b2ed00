"""Model registry, torch half: registry name → network constructor, and the wrapper that gives
each network its contract's inputs and outputs.

:mod:`mattecli.models` says *what* a model takes and returns (torch-free, read by ``run``); this
module builds the network and adapts it to that contract with :class:`InferenceModel`. Export
traces the wrapper and the torch engine runs the same wrapper, so an ONNX file and eager
inference cannot drift apart: the ImageNet normalisation, the trimap channel order and the
output split live here once.

Every wrapper takes the contract's inputs in order (image RGB in [0, 1], then the trimap
encodings, all N×C×H×W float32) and returns the contract's outputs as a tuple in order.
Post-processing that is not part of the network (FBA's F/B/alpha fusion, known-region override)
runs after the engine in NumPy (:mod:`mattecli.fusion`), the same for every engine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mattecli import band_inputs
from mattecli.errors import InputError
from mattecli.inputs import build_inputs
from mattecli.models import CONTRACTS, ModelContract, contract_for
from mattecli.preprocess import IMAGENET_MEAN, IMAGENET_STD
from training.networks.checkpoints import check_state_dict, read_checkpoint, unwrap_state_dict

# Keys of a mattecli checkpoint that are not facts about the weights.
_CHECKPOINT_PAYLOAD = ("model", "state_dict", "optimizer", "scheduler", "scaler")
# A BatchNorm calibrated on fewer values per channel than this keeps its default statistics.
MIN_CALIBRATION_VALUES = 64
# ... and no channel's calibrated variance below this fraction of its layer's median.
VARIANCE_FLOOR = 0.1
RANDOM_WEIGHTS_NOTE = "random weights: for tests and benchmarks only, not for mattes"


def _fba(encoder: str, width: float = 1.0) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from training.networks.fba import fba

        return fba(encoder, width=width)

    return build


def _gfm(rosta: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from training.networks.gfm import gfm

        return gfm(rosta)  # type: ignore[arg-type]

    return build


def _alphagan() -> nn.Module:
    from training.networks.alphagan import alphagan_generator

    return alphagan_generator()


def _adamatting() -> nn.Module:
    from training.networks.adamatting import adamatting

    return adamatting()


def _lsa() -> nn.Module:
    from training.networks.lsa import lsa_net

    return lsa_net()


# Constructors import their module lazily: building one network does not import the others.
def _bandmatte() -> nn.Module:
    from training.networks.bandmatte import bandmatte

    return bandmatte("lite0")


REGISTRY: dict[str, Callable[[], nn.Module]] = {
    "bandmatte-lite0": _bandmatte,
    "fba-resnet50": _fba("resnet50"),
    "fba-resnet34": _fba("resnet34"),
    "fba-resnet18": _fba("resnet18"),
    "fba-resnet18-slim": _fba("resnet18", width=0.5),
    "gfm-tt": _gfm("TT"),
    "gfm-ft": _gfm("FT"),
    "gfm-bt": _gfm("BT"),
    "alphagan": _alphagan,
    "adamatting": _adamatting,
    "lsa": _lsa,
}
assert set(REGISTRY) == set(CONTRACTS), "every contract needs a constructor and vice versa"


def build(name: str) -> nn.Module:
    """A freshly initialised network (training mode) for the registry ``name``."""
    contract_for(name)  # unknown names get the error that lists the known ones
    return REGISTRY[name]()


class ImageNetNormalise(nn.Module):
    """(rgb − mean) / std with ImageNet statistics, inside the graph so no engine can forget it."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return (rgb - self.mean) / self.std


class InferenceModel(nn.Module):
    """A network behind its contract: contract inputs in, contract outputs (a tuple) out.

    ``network`` is the training module, kept as a submodule so its state dict is reachable as
    ``model.network``; subclasses only translate between the contract and its ``forward``.
    """

    # Whether forward_with_margin returns a margin (the network takes a hard decision inside).
    has_decisions = False

    def __init__(self, contract: ModelContract, network: nn.Module) -> None:
        super().__init__()
        self.contract = contract
        self.network = network

    @property
    def input_names(self) -> list[str]:
        return [name for name, _ in self.contract.inputs]

    @property
    def output_names(self) -> list[str]:
        return [name for name, _ in self.contract.outputs]

    def forward_with_margin(
        self, *inputs: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
        """The outputs, plus the margin of any hard decision inside the network (N×1×H×W), or None.

        A network that takes an argmax (GFM's collaborative matting, AlphaGAN's max-unpooling)
        changes its decision when two scores are within float rounding of each other, and the
        output jumps there. Parity checks leave out pixels whose margin is below their tolerance
        instead of failing on a tie.
        """
        return self(*inputs), None


class FBAInference(InferenceModel):
    """FBA: (image, 2-channel trimap, 6 Gaussian maps) → alpha, foreground, background, unfused.

    The network normalises the image itself; fusion (FBA Eq. 4-6) runs after the engine.
    """

    def forward(
        self, image: torch.Tensor, trimap: torch.Tensor, trimap_gauss: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.network(image, trimap, trimap_gauss)
        return out[:, 0:1], out[:, 1:4], out[:, 4:7]


class BandInference(InferenceModel):
    """Band models: (coarse view, band patches, their coarse windows) → each cell's alpha, F, B.

    The network's ``forward`` is already the contract; :meth:`forward_frame` is the whole-frame
    computation that training and eager benchmarks use.
    """

    def forward(
        self, band_coarse: torch.Tensor, band_patches: torch.Tensor, band_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.network(band_coarse, band_patches, band_index)

    def forward_frame(self, coarse: torch.Tensor, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network.forward_frame(coarse, pixels)


class GFMInference(InferenceModel):
    """GFM: image → the collaborative-matting alpha (glance and focus stay internal)."""

    has_decisions = True

    def __init__(self, contract: ModelContract, network: nn.Module) -> None:
        super().__init__(contract, network)
        self.normalise = ImageNetNormalise()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.network(self.normalise(image)).alpha,)

    def forward_with_margin(self, image: torch.Tensor) -> tuple[tuple[torch.Tensor], torch.Tensor]:
        out = self.network(self.normalise(image))
        top2 = out.glance.topk(2, dim=1).values
        return (out.alpha,), top2[:, :1] - top2[:, 1:2]


class RGBTrimapInference(InferenceModel):
    """AlphaGAN, AdaMatting, LSA: (image, 1-channel trimap) → the network's 4-channel input.

    The networks take ImageNet-normalised RGB concatenated with the trimap (0 / 0.5 / 1). AdaMatting
    also returns its adapted-trimap logits; its pre-propagation alpha is a training output only.
    """

    def __init__(self, contract: ModelContract, network: nn.Module) -> None:
        super().__init__(contract, network)
        self.normalise = ImageNetNormalise()

    def forward(self, image: torch.Tensor, trimap: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.network(torch.cat([self.normalise(image), trimap], dim=1))
        if self.contract.architecture == "adamatting":
            return out.alpha, out.trimap_logits
        return (out,)


class AlphaGANInference(RGBTrimapInference):
    """AlphaGAN: as :class:`RGBTrimapInference`; its decoder unpools with the stem max-pool's argmax.

    Which of a 3×3 window's values is the maximum is a hard decision: where two are within
    rounding of each other, another engine (or float64) may pick the other one, and the unpooled
    feature lands one pixel away. The margin of a pixel is the smallest top-1 minus top-2 gap of
    any pooling window (over all channels) whose unpooled value reaches it through the decoder.
    Windows whose maximum is 0 (all ReLU zeros) are ties every engine breaks the same way.
    """

    has_decisions = True
    # Full-resolution pixels an unpooled value reaches on each side: the pooled cell's window
    # (4 px), then deconv2's 3×3 at 1/2 (2), its transposed conv (1), a 3×3 (1), deconv4's two
    # 3×3 (2) and the head's 3×3 (1).
    REACH = 8

    def forward_with_margin(
        self, image: torch.Tensor, trimap: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        x = torch.cat([self.normalise(image), trimap], dim=1)
        stem = self.network.encoder.stem(x)
        n, c, h, w = stem.shape
        # The windows of the encoder's max-pool (3×3, stride 2, padding 1), as columns.
        windows = F.unfold(F.pad(stem, (1, 1, 1, 1), value=float("-inf")), 3, stride=2)
        top2 = windows.view(n, c, 9, -1).topk(2, dim=2).values
        gap = torch.where(top2[:, :, 0] > 0, top2[:, :, 0] - top2[:, :, 1], torch.inf)
        cells = gap.amin(dim=1).view(n, 1, (h + 1) // 2, (w + 1) // 2)
        # Spread each cell's margin to the pixels it reaches (a min-filter is -max_pool2d(-x)).
        cells = -F.max_pool2d(-cells, 3, stride=1, padding=1)
        pixels = F.interpolate(cells, scale_factor=4, mode="nearest")[..., : image.shape[2], : image.shape[3]]
        margin = -F.max_pool2d(-pixels, 2 * self.REACH + 1, stride=1, padding=self.REACH)
        return (self.network(x),), margin


_WRAPPERS: dict[str, type[InferenceModel]] = {
    "fba": FBAInference,
    "band": BandInference,
    "gfm": GFMInference,
    "alphagan": AlphaGANInference,
    "adamatting": RGBTrimapInference,
    "lsa": RGBTrimapInference,
}


def inference_model(name: str, network: nn.Module | None = None) -> InferenceModel:
    """The contract wrapper for ``name`` around ``network`` (a fresh one if None), in eval mode."""
    contract = contract_for(name)
    wrapper = _WRAPPERS[contract.architecture](contract, network if network is not None else build(name))
    return wrapper.eval()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class LoadedModel:
    """A contract wrapper with its weights, and the facts about those weights for the ONNX metadata."""

    model: InferenceModel
    weights: dict[str, object]  # source file name and sha256, or the random seed; checkpoint facts

    @property
    def name(self) -> str:
        return self.model.contract.name


def checkpoint_dict(name: str, network: nn.Module, **facts: object) -> dict[str, object]:
    """The mattecli checkpoint layout: ``{"model": name, "state_dict": ..., **facts}``.

    Naming the registry model inside the file is what lets ``mattecli export ckpt.pth`` work
    without ``--model``; ``facts`` (epoch, validation scores) travel into the ONNX metadata.
    """
    contract_for(name)
    return {"model": name, "state_dict": network.state_dict(), **facts}


def _scalar_facts(checkpoint: object) -> dict[str, object]:
    """The JSON-safe top-level facts of a mattecli checkpoint (epoch, scores), for the metadata."""
    if not isinstance(checkpoint, Mapping):
        return {}
    return {
        str(k): v
        for k, v in checkpoint.items()
        if k not in _CHECKPOINT_PAYLOAD and isinstance(v, str | int | float | bool)
    }


def load_model(path: str | Path, name: str | None = None) -> LoadedModel:
    """The contract wrapper of a checkpoint's network with the checkpoint's weights, in eval mode.

    A mattecli checkpoint names its model; a bare state dict (the public ``FBA.pth``, possibly
    with a ``module.`` prefix) needs ``name``. Keys and shapes must match exactly.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    stored = checkpoint.get("model") if isinstance(checkpoint, Mapping) else None
    stored = stored if isinstance(stored, str) else None
    if stored is not None and name is not None and stored != name:
        raise InputError(
            f"the checkpoint is for {stored!r}, not {name!r}", path=path, hint="drop --model or fix it"
        )
    name = name or stored
    if name is None:
        known = ", ".join(sorted(CONTRACTS))
        raise InputError(
            "the checkpoint does not say which model it holds",
            path=path,
            hint=f"name it with --model (the public FBA.pth is fba-resnet50); known models: {known}",
        )
    network = build(name)
    state = unwrap_state_dict(checkpoint, path=path)
    check_state_dict(network, state, path=path, expected=f"a checkpoint for {name}")
    network.load_state_dict(state, strict=True)
    facts = {**_scalar_facts(checkpoint), "source": path.name, "sha256": sha256_file(path)}
    return LoadedModel(inference_model(name, network), facts)


def random_trimap(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A uint8 trimap of smooth random blobs: 0 background, 128 unknown, 255 foreground.

    Thresholding an upsampled coarse noise field gives connected regions with unknown bands
    between them, like a real trimap, rather than per-pixel salt and pepper.
    """
    coarse = rng.random((max(2, height // 16), max(2, width // 16))).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    trimap = np.full((height, width), 128, dtype=np.uint8)
    trimap[field < 0.4] = 0
    trimap[field > 0.6] = 255
    return trimap


def _band_sample_inputs(
    contract: ModelContract, rng: np.random.Generator, batch: int, height: int, width: int
) -> dict[str, np.ndarray]:
    """A band model's inputs for one random frame (sides rounded up to the size multiple).

    ``batch`` has no meaning for one frame's coarse view; the frame's band cells give P (at least 2,
    as torch.export specialises dimensions of size 1), ``batch`` times over so P varies with it.
    """
    height, width = (-(-s // contract.size_multiple) * contract.size_multiple for s in (height, width))
    rgb = rng.random((height, width, 3), dtype=np.float32)
    trimap = random_trimap(rng, height, width)
    cells = np.tile(band_inputs.band_cells(trimap, height, width), (batch, 1))
    if len(cells) < 2:
        cells = band_inputs.all_cells(height, width)
    coarse = band_inputs.coarse_input(rgb, trimap)
    arrays = {
        "band_coarse": coarse,
        "band_patches": band_inputs.patch_input(rgb, trimap, cells),
        "band_index": band_inputs.patch_index(cells, *coarse.shape[2:]),
    }
    return {name: arrays[kind] for name, kind in contract.inputs}


def sample_inputs(
    contract: ModelContract, batch: int, height: int, width: int, *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded random inputs of the contract's kinds, keyed by graph input name (N×C×H×W float32).

    Export traces and checks parity on these. Each sample goes through
    :func:`mattecli.inputs.build_inputs`, the encoding ``run`` uses, so the trimap channels are
    exactly what the pipeline would feed (``height`` and ``width`` must be multiples of the
    contract's size multiple, or the arrays come back padded).
    """
    rng = np.random.default_rng(seed)
    if contract.architecture == "band":
        return _band_sample_inputs(contract, rng, batch, height, width)
    samples = [
        build_inputs(
            contract, rng.random((height, width, 3), dtype=np.float32), random_trimap(rng, height, width)
        )
        for _ in range(batch)
    ]
    return {name: np.stack([s.arrays[kind] for s in samples]) for name, kind in contract.inputs}


def _golden_weights(network: nn.Module, seed: int) -> None:
    """The FBA golden test's weight rule, applied in state-dict order (index ``i`` from 0).

    ``rng = default_rng(1000 + i)`` for seed 0 (the golden test's weights exactly; other seeds
    shift to unused streams); tensors of 2+ dimensions get He-normal values
    (std sqrt(2 / fan-in)), 1-D weights 1 + 0.1·N(0, 1), other 1-D tensors 0.1·N(0, 1). On the
    GN+WS networks this keeps activations in range through any depth, where PyTorch's default
    initialisation leaves FBA's clipped alpha saturated at 0 or 1 everywhere.
    """
    state = network.state_dict()
    with torch.no_grad():
        for i, (key, tensor) in enumerate(state.items()):
            if not tensor.is_floating_point():
                continue
            rng = np.random.default_rng(1000 + i + seed * len(state))
            shape = tuple(tensor.shape)
            if len(shape) >= 2:
                values = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
            elif key.endswith("weight"):
                values = 1.0 + 0.1 * rng.standard_normal(shape)
            else:
                values = 0.1 * rng.standard_normal(shape)
            tensor.copy_(torch.from_numpy(values.astype(np.float32)))


def _randomise_refiner(network: nn.Module) -> None:
    """Random weights in a band model's refiner and coarse head, so the outputs vary over their range.

    The refiner corrects alpha per cell; F and B come from the coarse head, whose default
    initialisation leaves them near a constant 0.5.
    """
    with torch.no_grad():
        for parameter in network.refiner.parameters():
            parameter.normal_(0.0, 0.15)
        for parameter in network.coarse.head.parameters():
            parameter.normal_(0.0, 0.03)  # alpha and hidden planes: larger weights saturate the clamp
            parameter[1:7].normal_(0.0, 0.12)  # F and B go through a sigmoid: these may be larger


def _calibrate_batch_norm(model: InferenceModel, seed: int) -> None:
    """Set every BatchNorm's running statistics from one training-mode pass on sample inputs.

    With random weights and the default statistics (mean 0, variance 1) a deep BN network's
    activations grow layer after layer and its sigmoid/clip outputs saturate, which would make
    parity and fp16 checks compare constants. Statistics measured on inputs, as training leaves
    them, keep the outputs in their working range.

    A norm that saw few values per channel (ASPP's image-pooling branch sees one per image)
    keeps the default statistics: a variance from a handful of values can be near zero and
    would blow that branch up on any other input.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    seen: dict[nn.Module, int] = {}

    def count(norm: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen[norm] = args[0].numel() // args[0].shape[1]

    hooks = [norm.register_forward_pre_hook(count) for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one pass sets the statistics exactly
        norm.train()  # only the norms: other modules keep their inference behaviour
    feeds = sample_inputs(model.contract, 2, 64, 96, seed=seed)
    with torch.no_grad():
        model(*(torch.from_numpy(feeds[name]) for name in model.input_names))
    model.eval()
    for hook in hooks:
        hook.remove()
    for norm in norms:
        norm.momentum = 0.1
        if seen.get(norm, 0) < MIN_CALIBRATION_VALUES:
            norm.reset_running_stats()
        else:  # a channel that barely varied would amplify rounding noise by up to 1/sqrt(eps)
            floor = VARIANCE_FLOOR * norm.running_var.median()
            norm.running_var.clamp_(min=float(floor))


def random_model(name: str, *, seed: int = 0) -> LoadedModel:
    """``name`` with seeded random weights, labelled as such in its facts (tests, benchmarks).

    The weights are chosen so that the outputs vary over their range, so that export parity and
    fp16 error are measured on activations like a trained network's, not on saturated constants:
    GroupNorm networks (FBA) get the FBA golden test's weight rule (:func:`_golden_weights`),
    BatchNorm networks their own initialisation with statistics measured on sample inputs
    (:func:`_calibrate_batch_norm`).
    """
    with torch.random.fork_rng(devices=[]):  # initialisation draws from torch's global RNG
        torch.manual_seed(seed)
        model = inference_model(name)
        if model.contract.architecture == "band":
            # The encoder already holds ImageNet weights and statistics; the refiner's last layer
            # starts at zero (it would copy the coarse pass), so give it weights that matter.
            _randomise_refiner(model.network)
            return LoadedModel(model, {"random": True, "seed": seed, "note": RANDOM_WEIGHTS_NOTE})
    if any(isinstance(m, nn.GroupNorm) for m in model.modules()):
        _golden_weights(model.network, seed)
    _calibrate_batch_norm(model, seed)
    return LoadedModel(model, {"random": True, "seed": seed, "note": RANDOM_WEIGHTS_NOTE})
