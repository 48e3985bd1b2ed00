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

import torch
from torch import nn

from mattecli.errors import InputError
from mattecli.models import CONTRACTS, ModelContract, contract_for
from mattecli.preprocess import IMAGENET_MEAN, IMAGENET_STD
from training.networks.checkpoints import check_state_dict, unwrap_state_dict

# Keys of a mattecli checkpoint that are not facts about the weights.
_CHECKPOINT_PAYLOAD = ("model", "state_dict", "optimizer", "scheduler", "scaler")
RANDOM_WEIGHTS_NOTE = "random weights: for tests and benchmarks only, not for mattes"


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

        A network that takes an argmax (GFM's collaborative matting) flips a pixel's class when
        two scores are within float rounding of each other, and the output jumps there. Parity
        checks leave out pixels whose margin is below their tolerance instead of failing on a tie.
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


def _read_checkpoint(path: Path) -> object:
    if not path.is_file():
        raise InputError("checkpoint file not found", path=path, hint="check the path to the weights")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt, truncated or unsafe files
        raise InputError(
            f"cannot read this as a PyTorch checkpoint ({type(exc).__name__})",
            path=path,
            hint="the file may be truncated, or a pickle with code in it, which is refused for safety",
        ) from exc


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
    checkpoint = _read_checkpoint(path)
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


def random_model(name: str, *, seed: int = 0) -> LoadedModel:
    """``name`` with seeded random weights, labelled as such in its facts (tests, benchmarks)."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        model = inference_model(name)
    return LoadedModel(model, {"random": True, "seed": seed, "note": RANDOM_WEIGHTS_NOTE})
