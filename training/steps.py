"""Per-paper training steps: how a batch of samples becomes losses and parameter updates.

One class per architecture turns the samples of :mod:`training.data.recipes` into the network's
inputs and a :class:`~training.losses.MattingTarget`, runs the network, takes that paper's loss from
:mod:`training.losses` and steps its optimiser(s). The trainer only sees :class:`TrainingStep`:
``train_step(batch)`` returns the loss terms as floats for the log, ``modules`` and ``optimizers``
are what a checkpoint must hold to resume exactly.

Inputs are built with :func:`mattecli.inputs.build_inputs`, the function inference uses, so a
network trains on exactly the encodings it will see in ``mattecli run`` (FBA's two-channel trimap and
Gaussian maps, the 0 / 0.5 / 1 trimap channel). Where the contract wrapper of
:mod:`training.registry` returns what the loss needs (FBA, LSA, AlphaGAN) the step calls the wrapper
itself; GFM and AdaMatting, whose losses need outputs the wrapper drops (glance and focus maps, the
raw network output), call the network behind the wrapper's own ImageNet normalisation. Either way
the normalisation cannot differ between training and inference.

Regions: the trimap-based losses are taken over the trimap's unknown band (value 128); GFM's over
its transition area. Class targets: GFM's glance labels, AdaMatting's adapted-trimap classes.

AlphaGAN (the paper gives no schedule, digest §5.4): per batch the generator runs once, then the
discriminator takes ``d_steps`` updates on real composites against the (detached) fake ones, then
the generator takes one update against the freshly updated discriminator (pix2pix's order). The
generator's GAN term also leaves gradients in D; they are cleared before D's next update.

AdaMatting: the learned task weights (:class:`~training.losses.MultiTaskUncertainty`) train with the
network's optimiser, without weight decay (decay would pull both σ towards 1 for no reason); σ1, σ2
are logged. Its "total" includes ``½(s1 + s2)`` and goes negative as the σ shrink, so use the
"trimap" and "alpha" terms to judge progress.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mattecli import band_inputs
from mattecli.inputs import UNKNOWN, build_inputs
from mattecli.models import ModelContract
from training.config import GANConfig, OptimizerConfig
from training.losses import (
    MattingTarget,
    MultiTaskUncertainty,
    adamatting_loss,
    alphagan_discriminator_loss,
    alphagan_generator_loss,
    fba_loss,
    gfm_loss,
    l1_loss,
    lsa_loss,
)
from training.networks.alphagan import patchgan_discriminator
from training.registry import InferenceModel

Arrays = dict[str, np.ndarray]
# Weight of the band models' coarse-pass terms against FBA's loss on the final output.
BAND_COARSE_WEIGHT = 0.5
# Band models' learning rates relative to the config's: a pretrained encoder needs small steps, the
# decoder and refiner start from nothing (a first run at one rate for all left the refiner idle).
BAND_ENCODER_LR_SCALE = 0.2
BAND_HEAD_LR_SCALE = 2.0


class Batch(NamedTuple):
    """One batch on the training device: the contract's inputs by kind, and the losses' target."""

    inputs: dict[str, torch.Tensor]
    target: MattingTarget


def _nchw(samples: Sequence[Mapping[str, np.ndarray]], key: str) -> np.ndarray:
    """Stack H×W(×C) arrays of every sample into N×C×H×W float32."""
    planes = [s[key] if s[key].ndim == 3 else s[key][:, :, None] for s in samples]
    return np.ascontiguousarray(np.stack(planes).transpose(0, 3, 1, 2), dtype=np.float32)


def collate(contract: ModelContract, samples: Sequence[Mapping[str, np.ndarray]]) -> Arrays:
    """The NumPy arrays of one batch (picklable, so a data-loading worker can build it).

    Keys: ``input:<kind>`` for each contract input, ``image``, ``fg``, ``bg``, ``alpha``, ``region``
    (N×1 float32) and, for GFM and AdaMatting, ``classes`` (N×H×W int64).
    """
    if not samples:
        raise ValueError("a batch needs at least one sample")
    sizes = {s["alpha"].shape for s in samples}
    if len(sizes) > 1:
        raise ValueError(f"samples of one batch must share their size, got {sorted(sizes)}")
    arrays: Arrays = {}
    if contract.architecture == "band":  # the whole-frame computation's inputs (see BandStep)
        per_sample = [
            {
                "band_coarse": band_inputs.coarse_input(s["image"], s["trimap"])[0],
                "band_pixels": band_inputs.frame_pixels(s["image"], s["trimap"]),
            }
            for s in samples
        ]
    else:
        per_sample = [build_inputs(contract, s["image"], s.get("trimap")).arrays for s in samples]
    for kind in per_sample[0]:
        arrays[f"input:{kind}"] = np.stack([p[kind] for p in per_sample])
    for key in ("image", "fg", "bg", "alpha"):
        arrays[key] = _nchw(samples, key)
    if contract.architecture == "gfm":
        region = [s["transition"].astype(np.float32) for s in samples]
        arrays["classes"] = np.stack([s["glance"] for s in samples]).astype(np.int64)
    else:
        region = [(s["trimap"] == UNKNOWN).astype(np.float32) for s in samples]
        if contract.architecture == "adamatting":
            arrays["classes"] = np.stack([s["trimap_target"] for s in samples]).astype(np.int64)
    arrays["region"] = np.ascontiguousarray(np.stack(region)[:, None])
    return arrays


def to_batch(arrays: Mapping[str, np.ndarray], device: torch.device) -> Batch:
    """Tensors on ``device`` from :func:`collate`'s arrays (on the CPU they share the arrays' memory)."""

    def tensor(key: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(arrays[key])).to(device)

    inputs = {key.removeprefix("input:"): tensor(key) for key in arrays if key.startswith("input:")}
    target = MattingTarget(
        image=tensor("image"),
        alpha=tensor("alpha"),
        fg=tensor("fg"),
        bg=tensor("bg"),
        region=tensor("region"),
        classes=tensor("classes") if "classes" in arrays else None,
    )
    return Batch(inputs, target)


def build_optimizer(config: OptimizerConfig, groups: Iterable[dict]) -> torch.optim.Optimizer:
    """The optimiser a config names, over parameter groups (a group may override weight_decay)."""
    groups = list(groups)
    common = {"lr": config.lr, "weight_decay": config.weight_decay}
    if config.name == "radam":
        return torch.optim.RAdam(groups, betas=config.betas, **common)
    if config.name == "adam":
        return torch.optim.Adam(groups, betas=config.betas, **common)
    if config.name == "adamw":
        return torch.optim.AdamW(groups, betas=config.betas, **common)
    if config.name == "sgd":
        return torch.optim.SGD(groups, momentum=config.momentum, **common)
    raise ValueError(f"unknown optimizer {config.name!r}")


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    """Parameters that learn (LSA's refinement tensors A and B are frozen at zero while training)."""
    return [p for p in module.parameters() if p.requires_grad]


class TrainingStep:
    """One architecture's training step; subclasses define :meth:`losses` (and AlphaGAN its own step).

    ``model`` is the registry's contract wrapper around the network being trained; it is put in
    training mode here. ``modules`` are the stateful modules a checkpoint must hold, ``optimizers``
    their optimisers; :meth:`set_lr_factor` applies the schedule to every optimiser's base rate.
    """

    def __init__(self, model: InferenceModel, optimizer: OptimizerConfig, device: torch.device) -> None:
        self.device = device
        self.model = model.to(device).train()
        self.network = model.network
        self.contract = model.contract
        self.modules: dict[str, nn.Module] = {"network": self.network}
        self.base_lr: dict[str, float] = {"main": optimizer.lr}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "main": build_optimizer(optimizer, self.parameter_groups())
        }

    def parameter_groups(self) -> list[dict]:
        return [{"params": _trainable(self.network)}]

    def set_lr_factor(self, factor: float) -> None:
        """Each group's rate: the optimiser's base rate x the schedule's factor x the group's ``lr_scale``."""
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self.base_lr[name] * factor * group.get("lr_scale", 1.0)

    @property
    def lr(self) -> float:
        return float(self.optimizers["main"].param_groups[0]["lr"])

    def train(self) -> None:
        """Training mode for every module (validation may have switched the network to eval)."""
        for module in self.modules.values():
            module.train()

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def train_step(self, batch: Batch) -> dict[str, float]:
        optimizer = self.optimizers["main"]
        optimizer.zero_grad(set_to_none=True)
        terms = self.losses(batch)
        terms["total"].backward()
        optimizer.step()
        return _floats(terms)

    def _rgb_trimap(self, batch: Batch) -> torch.Tensor:
        """The 4-channel input of the RGB + trimap networks (the registry wrapper's layout)."""
        return torch.cat([self.model.normalise(batch.inputs["image"]), batch.inputs["trimap_1ch"]], dim=1)


def _floats(terms: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(value.detach()) for name, value in terms.items()}


class FBAStep(TrainingStep):
    """FBA: the wrapper's (alpha, F, B) joined back into the 7 raw channels :func:`fba_loss` reads."""

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        inputs = [batch.inputs[kind] for _, kind in self.contract.inputs]
        return fba_loss(torch.cat(self.model(*inputs), dim=1), batch.target)


class BandStep(TrainingStep):
    """Band models: FBA's loss on the whole-frame output, plus L1 on the coarse pass's alpha, F and B.

    Training runs the whole-frame computation (:meth:`~training.networks.bandmatte.BandMatte.forward_frame`),
    which equals the exported per-cell graph by construction, so every pixel of a crop trains the
    refiner. The coarse outputs are supervised against the targets shrunk 4× by area averaging
    (alpha over the shrunk unknown band, F and B everywhere) so the coarse pass learns a matte of
    its own rather than only features for the refiner; weight :data:`BAND_COARSE_WEIGHT`.
    """

    def parameter_groups(self) -> list[dict]:
        """The ImageNet encoder learns at a fifth of the base rate; new layers (the trimap's stem
        convolution, decoder, refiner) at twice it."""
        stem = self.network.coarse.encoder.extra_stem  # new weights for the trimap planes
        new = {id(p) for p in stem.parameters()} if stem is not None else set()
        encoder = [p for p in _trainable(self.network.coarse.encoder) if id(p) not in new]
        owned = {id(p) for p in encoder}
        rest = [p for p in _trainable(self.network) if id(p) not in owned]
        return [
            {"params": encoder, "lr_scale": BAND_ENCODER_LR_SCALE},
            {"params": rest, "lr_scale": BAND_HEAD_LR_SCALE},
        ]

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        final, coarse = self.model.forward_frame(batch.inputs["band_coarse"], batch.inputs["band_pixels"])
        terms = fba_loss(final, batch.target)
        scale = final.shape[-1] // coarse.shape[-1]
        target = batch.target
        region = F.avg_pool2d(target.region, scale) > 0
        terms["coarse_alpha"] = l1_loss(coarse[:, :1], F.avg_pool2d(target.alpha, scale), region.float())
        terms["coarse_fb"] = l1_loss(coarse[:, 1:4], F.avg_pool2d(target.fg, scale)) + l1_loss(
            coarse[:, 4:7], F.avg_pool2d(target.bg, scale)
        )
        terms["total"] = terms["total"] + BAND_COARSE_WEIGHT * (terms["coarse_alpha"] + terms["coarse_fb"])
        return terms


class LSAStep(TrainingStep):
    """LSA: the multi-scale Charbonnier alpha loss."""

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        (alpha,) = self.model(batch.inputs["image"], batch.inputs["trimap_1ch"])
        return lsa_loss(alpha, batch.target)


class GFMStep(TrainingStep):
    """GFM: glance cross-entropy, focus and collaborative losses (the wrapper returns alpha only)."""

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        output = self.network(self.model.normalise(batch.inputs["image"]))
        return gfm_loss(output, batch.target, rosta=self.network.rosta)


class AdaMattingStep(TrainingStep):
    """AdaMatting: trimap cross-entropy and alpha L1 under learned uncertainty weights."""

    def __init__(self, model: InferenceModel, optimizer: OptimizerConfig, device: torch.device) -> None:
        self.uncertainty = MultiTaskUncertainty().to(device)
        super().__init__(model, optimizer, device)
        self.modules["uncertainty"] = self.uncertainty

    def parameter_groups(self) -> list[dict]:
        return [
            {"params": _trainable(self.network)},
            {"params": list(self.uncertainty.parameters()), "weight_decay": 0.0},
        ]

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        terms = adamatting_loss(self.network(self._rgb_trimap(batch)), batch.target, self.uncertainty)
        sigma_trimap, sigma_alpha = self.uncertainty.sigmas()
        return {**terms, "sigma_trimap": sigma_trimap, "sigma_alpha": sigma_alpha}


class AlphaGANStep(TrainingStep):
    """AlphaGAN: ``d_steps`` discriminator updates, then one generator update (see the module doc)."""

    def __init__(
        self, model: InferenceModel, optimizer: OptimizerConfig, device: torch.device, gan: GANConfig
    ) -> None:
        super().__init__(model, optimizer, device)
        self.discriminator = patchgan_discriminator(norm=gan.norm).to(device).train()
        self.d_steps = gan.d_steps
        self.modules["discriminator"] = self.discriminator
        self.base_lr["discriminator"] = gan.optimizer.lr
        self.optimizers["discriminator"] = build_optimizer(
            gan.optimizer, [{"params": _trainable(self.discriminator)}]
        )

    def train_step(self, batch: Batch) -> dict[str, float]:
        g_opt, d_opt = self.optimizers["main"], self.optimizers["discriminator"]
        trimap = batch.inputs["trimap_1ch"]
        (alpha,) = self.model(batch.inputs["image"], trimap)
        for _ in range(self.d_steps):
            d_opt.zero_grad(set_to_none=True)
            d_terms = alphagan_discriminator_loss(alpha, batch.target, trimap, self.discriminator)
            d_terms["total"].backward()
            d_opt.step()
        g_opt.zero_grad(set_to_none=True)
        g_terms = alphagan_generator_loss(alpha, batch.target, trimap, self.discriminator)
        g_terms["total"].backward()
        g_opt.step()
        d_opt.zero_grad(set_to_none=True)  # the GAN term's gradients in D are not D's to use
        return {**_floats(g_terms), **{f"d_{k}": v for k, v in _floats(d_terms).items()}}


_FBA_TERMS = ("l1_alpha", "comp_alpha", "grad_alpha", "lap_alpha", "l1_fb", "lap_fb", "comp_fb", "excl_fb")
# The loss terms each architecture logs, in log order ("total" is what the optimiser minimises).
TERMS: dict[str, tuple[str, ...]] = {
    "band": (*_FBA_TERMS, "coarse_alpha", "coarse_fb", "total"),
    "fba": (*_FBA_TERMS, "total"),
    "gfm": (
        "glance",
        "focus_alpha",
        "focus_lap",
        "collab_alpha",
        "collab_lap",
        "collab_comp",
        "focus",
        "collaborative",
        "total",
    ),
    "lsa": ("alpha", "total"),
    "adamatting": ("trimap", "alpha", "total", "sigma_trimap", "sigma_alpha"),
    "alphagan": ("alpha", "comp", "gan", "total", "d_real", "d_fake", "d_total"),
}


def make_step(
    model: InferenceModel,
    optimizer: OptimizerConfig,
    gan: GANConfig | None = None,
    device: torch.device | None = None,
) -> TrainingStep:
    """The training step for ``model``'s architecture, every module on ``device`` (default CPU).

    Modules the step creates (AlphaGAN's discriminator, AdaMatting's uncertainty weights) draw their
    initial weights from torch's global generator, after the network: seed once before building both.
    """
    device = device or torch.device("cpu")
    arch = model.contract.architecture
    if arch == "alphagan":
        return AlphaGANStep(model, optimizer, device, gan or GANConfig())
    steps: dict[str, type[TrainingStep]] = {
        "fba": FBAStep,
        "band": BandStep,
        "gfm": GFMStep,
        "lsa": LSAStep,
        "adamatting": AdaMattingStep,
    }
    if arch not in steps:
        raise ValueError(f"no training step for architecture {arch!r}")
    return steps[arch](model, optimizer, device)
