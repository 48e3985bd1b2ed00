"""Backpropagating refinement (``--refine br``): LSA's test-time optimisation of its BRM tensors.

LSA (Wang et al., 2022, §4.3; digest §1.4) assumes alpha is locally constant across the trimap's
boundaries: just outside definite background it should still be 0, just inside definite
foreground still 1. At inference the network's backpropagating refinement modules, each
``exp(I(A))·x + I(B)`` after decoder stages 2-5 with A = B = 0 (the identity), are tuned per
image by plain gradient descent on

    C1 = [Σ_{∂{T=0}} α² + Σ_{∂{T=1}} (1−α)²] / (|∂{T=0}| + |∂{T=1}|)   (boundary violations)
    C2 = (mean_{i∈U} |α_i − α_init,i|)²                               (stay near the first answer)

minimising C1 + 0.1·C2 for 100 iterations at learning rate 20. Only A and B move; the encoder's
features are computed once and only the decoder re-runs. The output is alpha after the last step.

How this implementation feeds the network, and where it deviates from the paper's description:

* The network input is built from the engine's contract inputs (RGB in [0, 1], 1-channel trimap
  0 / 0.5 / 1) with the engine's own :class:`~training.registry.ImageNetNormalise` module and the
  same concatenation the contract wrapper uses, so the refinement starts from exactly what
  ``engine.infer`` returns (a test checks this).
* The trimap that defines ∂{T=0}, ∂{T=1} and U is the H×W trimap at the network's input size
  (padded like the image when the frame was padded to the size multiple); mirrored pad pixels
  then count like the border pixels they mirror.
* One image at a time: the BRM tensors have no batch dimension, so a batch would share them.
* With no boundary pixels at all (a trimap with no definite region) C1 is undefined: the network's
  plain output is returned and no step is taken.
* The BRMs are zeroed (and their gradients turned off) afterwards, also when a step fails, so
  the same engine can refine the next frame from the identity.
* A descent that diverges (a learning rate far above the paper's makes ``exp(A)`` overflow into
  NaN) is an error naming the learning rate, not a NaN matte written to disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engines.torch import TorchEngine
from mattecli.errors import InputError
from mattecli.preprocess import two_channel_trimap

if TYPE_CHECKING:
    import torch

# LSA §4.3 (digest §1.4): plain gradient descent, 100 iterations, learning rate 20, C1 + 0.1·C2.
STEPS = 100
LEARNING_RATE = 20.0
C2_WEIGHT = 0.1
_REFINABLE = ("encode", "decode", "brm_parameters", "reset_brm")


@dataclass(frozen=True)
class RefineResult:
    """The refined alpha (1×1×H×W float32, like the engine's ``alpha``) and the costs around it."""

    alpha: np.ndarray
    c1_before: float  # boundary cost of the network's plain output
    c1_after: float  # boundary cost of the refined output
    c2_after: float  # squared mean change over the unknown region
    steps: int  # gradient steps taken


def region_boundary(region: np.ndarray) -> np.ndarray:
    """∂R of a boolean H×W region: pixels whose {i} ∪ 4-neighbourhood meets both R and its complement.

    The band is two pixels wide, one on each side of the region's edge. Neighbours outside the
    image do not exist, so the image border is not a boundary by itself.
    """
    region = np.asarray(region, dtype=bool)
    meets_inside = region.copy()
    meets_outside = ~region
    for near in (meets_inside, meets_outside):
        source = near.copy()
        near[1:, :] |= source[:-1, :]
        near[:-1, :] |= source[1:, :]
        near[:, 1:] |= source[:, :-1]
        near[:, :-1] |= source[:, 1:]
    return meets_inside & meets_outside


@dataclass(frozen=True)
class _Costs:
    """The trimap's masks as tensors on the network's device, and the two costs over them."""

    background_edge: torch.Tensor  # ∂{T=0}
    foreground_edge: torch.Tensor  # ∂{T=1}
    unknown: torch.Tensor  # U
    edge_pixels: int

    def c1(self, alpha: torch.Tensor) -> torch.Tensor:
        if not self.edge_pixels:
            return alpha.new_zeros(())
        violation = (
            alpha[self.background_edge].square().sum() + (1 - alpha[self.foreground_edge]).square().sum()
        )
        return violation / self.edge_pixels

    def c2(self, alpha: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
        if not self.unknown.any():
            return alpha.new_zeros(())
        return (alpha - initial)[self.unknown].abs().mean().square()


def refinable_network(engine: object) -> torch.nn.Module:
    if not isinstance(engine, TorchEngine):
        raise InputError(
            f"--refine br needs the torch engine, not {getattr(engine, 'name', type(engine).__name__)!r}",
            hint="BR differentiates through the decoder: run with --engine torch and an lsa checkpoint",
        )
    network = engine.model.network
    if not all(callable(getattr(network, method, None)) for method in _REFINABLE):
        raise InputError(
            "--refine br needs a network with backpropagating refinement modules (the lsa model); "
            f"{engine.contract.name} has none",
            path=engine.path,
            hint="use an lsa checkpoint, or --refine none",
        )
    return network


def backprop_refine(
    engine: TorchEngine,
    inputs: Mapping[str, np.ndarray],
    trimap: np.ndarray,
    *,
    steps: int = STEPS,
    lr: float = LEARNING_RATE,
    c2_weight: float = C2_WEIGHT,
) -> RefineResult:
    """Refine one image's alpha by gradient descent on the network's BRM tensors (LSA §4.3).

    ``inputs`` are the engine's contract inputs for one image (1×C×H×W, keyed by kind) and
    ``trimap`` the H×W trimap they were made from (0 background, full value foreground).
    """
    import torch

    network = refinable_network(engine)
    if steps < 0 or not lr > 0:
        raise InputError(f"refinement needs steps >= 0 and a positive learning rate, got {steps} and {lr}")
    tensors = dict(zip((kind for _, kind in engine.contract.inputs), engine.tensors(inputs), strict=True))
    image, trimap_1ch = tensors["image"], tensors["trimap_1ch"]
    if image.shape[0] != 1:
        raise ValueError(
            f"backpropagating refinement takes one image at a time, got a batch of {image.shape[0]}"
        )
    if trimap.shape != tuple(image.shape[2:]):
        raise ValueError(f"trimap is {trimap.shape}, the network input {tuple(image.shape[2:])}")

    planes = two_channel_trimap(trimap) > 0
    background_edge = region_boundary(planes[..., 0])
    foreground_edge = region_boundary(planes[..., 1])
    device = image.device
    costs = _Costs(
        torch.from_numpy(background_edge).to(device),
        torch.from_numpy(foreground_edge).to(device),
        torch.from_numpy(~(planes[..., 0] | planes[..., 1])).to(device),
        int(background_edge.sum() + foreground_edge.sum()),
    )
    parameters = list(network.brm_parameters())
    try:
        network.reset_brm()  # start from the identity whatever a caller left behind
        with torch.no_grad():
            features = network.encode(torch.cat([engine.model.normalise(image), trimap_1ch], dim=1))
            initial = network.decode(features)[0, 0]
        c1_before = costs.c1(initial).item()
        steps = steps if costs.edge_pixels else 0
        for p in parameters:
            p.requires_grad_(True)
        optimiser = torch.optim.SGD(parameters, lr=lr, momentum=0.0)  # plain gradient descent
        with torch.enable_grad():
            for _ in range(steps):
                alpha = network.decode(features)[0, 0]
                loss = costs.c1(alpha) + c2_weight * costs.c2(alpha, initial)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
        with torch.no_grad():
            refined = network.decode(features)
            c1_after = costs.c1(refined[0, 0]).item()
            c2_after = costs.c2(refined[0, 0], initial).item()
        if not torch.isfinite(refined).all():
            raise InputError(
                f"backpropagating refinement diverged (non-finite alpha after {steps} steps at lr {lr:g})",
                hint="lower --refine-lr (the paper's value is 20)",
            )
    finally:
        for p in parameters:
            p.requires_grad_(False)
            p.grad = None
        network.reset_brm()
    return RefineResult(
        alpha=refined.float().cpu().numpy(),
        c1_before=c1_before,
        c1_after=c1_after,
        c2_after=c2_after,
        steps=steps,
    )
