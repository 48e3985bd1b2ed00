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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mattecli.errors import InputError
from mattecli.models import CONTRACTS, ModelContract, contract_for
from mattecli.preprocess import IMAGENET_MEAN, IMAGENET_STD


def _fba(encoder: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from training.networks.fba import fba

        return fba(encoder)

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
REGISTRY: dict[str, Callable[[], nn.Module]] = {
    "fba-resnet50": _fba("resnet50"),
    "fba-resnet34": _fba("resnet34"),
    "fba-resnet18": _fba("resnet18"),
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


class FBAInference(InferenceModel):
    """FBA: (image, 2-channel trimap, 6 Gaussian maps) → alpha, foreground, background, unfused.

    The network normalises the image itself; fusion (FBA Eq. 4-6) runs after the engine.
    """

    def forward(
        self, image: torch.Tensor, trimap: torch.Tensor, trimap_gauss: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.network(image, trimap, trimap_gauss)
        return out[:, 0:1], out[:, 1:4], out[:, 4:7]


class GFMInference(InferenceModel):
    """GFM: image → the collaborative-matting alpha (glance and focus stay internal)."""

    def __init__(self, contract: ModelContract, network: nn.Module) -> None:
        super().__init__(contract, network)
        self.normalise = ImageNetNormalise()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.network(self.normalise(image)).alpha,)


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


_WRAPPERS: dict[str, type[InferenceModel]] = {
    "fba": FBAInference,
    "gfm": GFMInference,
    "alphagan": RGBTrimapInference,
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
    """A network with trained weights, and the facts about those weights for the ONNX metadata."""

    model: InferenceModel
    weights: dict[str, object]  # source file name, sha256, and the checkpoint's own facts

    @property
    def name(self) -> str:
        return self.model.contract.name
