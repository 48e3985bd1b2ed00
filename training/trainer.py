"""The training loop: data, steps, validation on held-out images, checkpoints, exact resume and the log.

One run is one config (:mod:`training.config`) and one output folder, which ends up holding:

* ``config.toml``: the config the run started with (a resumed run must use the same text);
* ``log.csv``: one row per ``log_every`` steps (epoch, step, lr, every loss term, seconds) and one
  per validation (the held-out metrics, in the scaling papers print: SAD and Grad and Conn ÷ 1000,
  MSE × 1000, see :data:`mattecli.metrics.METRICS`);
* ``last.pth``: everything needed to continue, written at every epoch end (and every
  ``checkpoint_every`` steps) by writing a temporary file and renaming it, so a killed run always
  finds a complete checkpoint;
* ``best.pth``: the weights with the lowest validation SAD, and ``final.pth``: the weights at the end,
  both in :func:`training.registry.checkpoint_dict`'s layout with the run's facts (epoch, step,
  validation scores, held-out names), which ``mattecli export`` copies into the ONNX metadata;
* ``foreground-cache/``: re-estimated foregrounds (unless ``data.cache`` puts them elsewhere).

Exact resume. Sample k of the run (k = step · batch + i) is sample ``k mod n`` of data epoch
``k div n`` of :class:`training.data.recipes.TrainingSamples`, a pure function of (seed, data epoch,
position), and the learning rate is a pure function of the epoch; so the data and schedule need no
state. ``last.pth`` holds the network, the other stateful modules (AlphaGAN's discriminator,
AdaMatting's uncertainty weights), every optimiser, the RNG states (torch, Python, NumPy's global
one), the log position and the log's running sums. Weight-standardised convolutions need care: a
state dict holds their *standardised* weights (what inference and export use, see
:class:`training.networks.layers.WSConv2d`), but training continues from the raw parameters, so the
checkpoint keeps those too. Batches are built with OpenCV single-threaded and without its IPP
paths (see :func:`_reproducible_opencv`), so a batch is the same bit for bit in any run, resumed or
not, in the training process or a data-loading worker. On a CPU a resumed run then reproduces the
uninterrupted one bit for bit (the tests check weights, optimiser states and logged losses) with the
same thread count; GPU kernels need not be deterministic.

Validation runs the network in eval mode through its registry contract wrapper and the same
per-frame code as ``mattecli run`` (:class:`mattecli.pipeline.FrameMatter`: padding to the size
multiple, optional tiles, FBA fusion, the trimap's known regions imposed for trimap-based models),
then :func:`mattecli.metrics.evaluate_matte` (DIM conventions) on the trimap's unknown region, or on
the whole image for a trimap-free protocol (``validation.region = "all"``, where trimap-free models
see no trimap at all).
"""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from engines.base import parse_device
from engines.torch import ModelEngine, torch_device
from mattecli.errors import InputError
from mattecli.foreground import pair_folders
from mattecli.frame_matter import FrameMatter
from mattecli.media.frame import Frame, to_float
from mattecli.media.imageio import atomic_path, read_gray, read_image
from mattecli.media.trimaps import quantize_trimap
from mattecli.metrics import MatteScores, evaluate_matte, mean_scores, to_paper
from mattecli.models import ModelContract
from mattecli.run_options import TileOptions
from mattecli.summary import StageClock
from training.config import Config, InitConfig
from training.data.datasets import (
    BackgroundSet,
    ForegroundDataset,
    ImageAlphaDataset,
    MattingItem,
    split_names,
)
from training.data.recipes import TrainingSamples
from training.networks.checkpoints import check_state_dict, load_checkpoint, read_state_dict
from training.networks.layers import WSConv2d
from training.networks.resnet import widen_first_conv
from training.registry import build, checkpoint_dict, inference_model
from training.steps import TERMS, TrainingStep, collate, make_step, to_batch

CONFIG_FILE = "config.toml"
LOG_FILE = "log.csv"
LAST = "last.pth"
BEST = "best.pth"
FINAL = "final.pth"
RUN_FILES = (CONFIG_FILE, LOG_FILE, LAST, BEST, FINAL)
PSEUDO_LABEL = "pseudo-label:"
VALIDATION_METRICS = ("sad", "mse", "grad", "conn", "mad")


# --- training data --------------------------------------------------------------------------------


class ItemList(Sequence[MattingItem]):
    """Several datasets read as one list of items; pseudo-labelled items get a ``pseudo-label:`` name.

    Pseudo-labels are another model's predicted alphas, not ground truth, so they are named as such
    wherever an item's name shows up.

    Items are kept in memory once read: decoding a photo and its cached foreground took about 1 s per
    sample on two cores, more than a training step, and the datasets here are a few dozen images.
    """

    def __init__(self, parts: Sequence[tuple[Sequence[MattingItem], bool]]) -> None:
        self.parts = [part for part in parts if len(part[0])]
        self._read: dict[int, MattingItem] = {}

    def __len__(self) -> int:
        return sum(len(items) for items, _ in self.parts)

    def __getitem__(self, index: int) -> MattingItem:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        if index not in self._read:
            self._read[index] = self._item(index)
        return self._read[index]

    def _item(self, index: int) -> MattingItem:
        for items, pseudo in self.parts:
            if index < len(items):
                item = items[index]
                return replace(item, name=PSEUDO_LABEL + item.name) if pseudo else item
            index -= len(items)
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class TrainingData:
    """The run's sample source and what it was made from (for the log and the checkpoint facts)."""

    samples: TrainingSamples
    train_names: list[str]
    holdout_names: list[str]
    pseudo_labels: dict[str, int]  # source folder (relative to the data root) -> item count

    def facts(self) -> dict[str, object]:
        facts: dict[str, object] = {
            "train_images": len(self.train_names),
            "holdout": ",".join(self.holdout_names),
        }
        if self.pseudo_labels:
            facts["pseudo_labels"] = ", ".join(f"{k} ({n})" for k, n in self.pseudo_labels.items())
        return facts


def open_training_data(config: Config, cache: Path) -> TrainingData:
    """The training samples of ``config``, with its held-out images removed before anything is read."""
    data = config.data
    if data.kind == "image-alpha":
        assert data.image is not None
        every = ImageAlphaDataset(data.image, data.alpha).names
    else:
        assert data.foreground is not None
        every = ForegroundDataset(data.foreground, data.alpha, data.own_backgrounds).names
    train_names, held = split_names(every, data.holdout, data.holdout_seed)
    if not train_names:
        raise InputError("no training images left after the held-out split", path=config.path)
    main: Sequence[MattingItem]
    if data.kind == "image-alpha":
        main = ImageAlphaDataset(data.image, data.alpha, data.estimator, cache, names=train_names)  # type: ignore[arg-type]
    else:
        main = ForegroundDataset(data.foreground, data.alpha, data.own_backgrounds, names=train_names)  # type: ignore[arg-type]
    parts: list[tuple[Sequence[MattingItem], bool]] = [(main, False)]
    pseudo: dict[str, int] = {}
    for source in data.pseudo_labels:
        dataset = ImageAlphaDataset(source.image, source.alpha, data.estimator, cache)
        parts.append((dataset, True))
        name = source.alpha.relative_to(data.root) if source.alpha.is_relative_to(data.root) else source.alpha
        pseudo[str(name)] = len(dataset)
    backgrounds = BackgroundSet(data.backgrounds) if data.backgrounds is not None else None
    samples = TrainingSamples(ItemList(parts), backgrounds, config.recipe(), seed=config.seed)
    return TrainingData(samples, train_names, held, pseudo)


class BatchSource:
    """The batch of every global step: sample ``k = step · batch + i`` is a pure function of k.

    With ``workers`` > 0 the batches are built by a torch DataLoader (in order, no shuffling: the
    sample order is already the recipe's), starting at ``start``.
    """

    def __init__(self, samples: TrainingSamples, contract: ModelContract, batch_size: int) -> None:
        self.samples = samples
        self.contract = contract
        self.batch_size = batch_size

    def arrays(self, step: int) -> dict[str, np.ndarray]:
        count = len(self.samples)
        chosen = []
        with _reproducible_opencv():
            for k in range(step * self.batch_size, (step + 1) * self.batch_size):
                data_epoch, position = divmod(k, count)
                chosen.append(self.samples.sample(position, data_epoch))
            return collate(self.contract, chosen)

    def iterate(self, start: int, stop: int, workers: int) -> Iterator[dict[str, np.ndarray]]:
        if workers == 0:
            return (self.arrays(step) for step in range(start, stop))
        return iter(
            torch.utils.data.DataLoader(
                _Steps(self, start, stop),
                batch_size=None,
                num_workers=workers,
                prefetch_factor=2,
                collate_fn=_as_is,
            )
        )


@contextmanager
def _reproducible_opencv() -> Iterator[None]:
    """Run OpenCV on one thread without its IPP-optimised paths while a batch is built.

    Measured with OpenCV 5.0: the precise distance transform behind FBA's Gaussian trimap maps
    returns values that differ by ~1e-6 px depending on the memory alignment of its output (its IPP
    path), and on the number of OpenCV threads. NumPy's allocations are not aligned alike from one
    run to the next, nor in the training process and a forked worker, so a batch would not be the
    same bit for bit, and neither would a resumed run. Unoptimised and single-threaded, it is.
    """
    threads, optimised = cv2.getNumThreads(), cv2.useOptimized()
    cv2.setNumThreads(1)
    cv2.setUseOptimized(False)
    try:
        yield
    finally:
        cv2.setUseOptimized(optimised)
        cv2.setNumThreads(threads)


def _as_is(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keep a worker's NumPy batch as it is (the default would turn it into tensors on the CPU)."""
    return batch


class _Steps(torch.utils.data.Dataset):
    """Global steps ``start .. stop - 1`` as a map-style dataset of ready batches."""

    def __init__(self, source: BatchSource, start: int, stop: int) -> None:
        self.source, self.start, self.stop = source, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.source.arrays(self.start + index)


# --- initial weights ------------------------------------------------------------------------------

FIRST_CONVS = ("conv1.weight", "conv1.0.weight")  # torchvision's stem, timm's deep stem


def initialise(network: torch.nn.Module, init: InitConfig) -> None:
    """Load ``init``'s weights: a whole checkpoint, or ImageNet weights into ``network.encoder``."""
    if init.weights is not None:
        load_checkpoint(network, init.weights)
    if init.encoder is not None:
        encoder = network.encoder
        state = {k: v for k, v in read_state_dict(init.encoder).items() if not k.startswith("fc.")}
        own = encoder.state_dict()
        for key in FIRST_CONVS:
            if key in state and key in own and state[key].shape[1] < own[key].shape[1]:
                state[key] = widen_first_conv(state[key], own[key].shape[1])
        check_state_dict(
            encoder,
            state,
            path=init.encoder,
            expected="ImageNet weights of this encoder, in torchvision's names",
        )
        encoder.load_state_dict(state)


# --- validation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationImage:
    """One held-out photo with its GT alpha and trimap (uint8 0/128/255, or None), possibly shrunk."""

    name: str
    path: Path
    image: np.ndarray
    alpha: np.ndarray
    trimap: np.ndarray | None


def _shrink(image: np.ndarray, alpha: np.ndarray, trimap: np.ndarray | None, max_side: int):
    """Shrink to a long side of ``max_side`` (area averaging; the trimap by nearest neighbour)."""
    height, width = alpha.shape
    if not max_side or max(height, width) <= max_side:
        return image, alpha, trimap
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return (
        cv2.resize(image, size, interpolation=cv2.INTER_AREA),
        cv2.resize(alpha, size, interpolation=cv2.INTER_AREA),
        None if trimap is None else cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST),
    )


def load_validation(config: Config, holdout: Sequence[str]) -> list[ValidationImage]:
    """The validation images of ``config`` (held-out names by default), read once."""
    spec = config.validation
    if not spec.every:
        return []
    assert spec.image is not None and spec.alpha is not None
    folders = {"image": spec.image, "alpha": spec.alpha}
    if spec.trimap is not None:
        folders["trimap"] = spec.trimap
    pairs = dict(pair_folders(folders))
    if spec.images == "holdout":
        names = list(holdout)
    elif spec.images == "all":
        names = sorted(pairs)
    else:
        names = list(spec.images)
    if missing := [name for name in names if name not in pairs]:
        raise InputError(
            f"validation images not found: {', '.join(missing)}",
            path=spec.image,
            hint="validation images need a photo, an alpha and a trimap of the same name",
        )
    if spec.limit:
        names = names[: spec.limit]
    images = []
    for name in names:
        files = pairs[name]
        image = to_float(read_image(files["image"]))
        alpha = to_float(read_gray(files["alpha"]))
        trimap = quantize_trimap(read_gray(files["trimap"])) if "trimap" in files else None
        if image.shape[:2] != alpha.shape or (trimap is not None and trimap.shape != alpha.shape):
            sizes = f"image {image.shape[:2]}, alpha {alpha.shape}" + (
                f", trimap {trimap.shape}" if trimap is not None else ""
            )
            raise InputError(f"{sizes} differ in size", path=files["image"])
        images.append(ValidationImage(name, files["image"], *_shrink(image, alpha, trimap, spec.max_side)))
    return images


def validate(step: TrainingStep, images: Sequence[ValidationImage], config: Config) -> dict[str, float]:
    """Mean metrics over ``images`` (paper scaling, keys of :data:`VALIDATION_METRICS`)."""
    contract = step.contract
    step.model.eval()
    try:
        matter = FrameMatter(
            ModelEngine(step.model, parse_device(str(step.device))),
            tiles=TileOptions(size=config.validation.tile or None),
            tta="none",
            fusion=contract.fusion == "fba",
            want_foreground=False,
            clock=StageClock(),
        )
        scores: list[MatteScores] = []
        for index, item in enumerate(images):
            frame = Frame(index, item.name, item.image, item.path)
            alpha, _ = matter(frame, item.trimap if contract.needs_trimap else None)
            scores.append(evaluate_matte(alpha, item.alpha, item.trimap, region=config.validation.region))
    finally:
        step.train()
    paper = to_paper(mean_scores(scores))
    return {key: paper[key] for key in VALIDATION_METRICS}


# --- the log --------------------------------------------------------------------------------------


class TrainingLog:
    """``log.csv``: train rows (loss means) and validation rows, one schema for the whole run."""

    def __init__(self, path: Path, terms: Sequence[str]) -> None:
        self.path = path
        self.columns = [
            "kind",
            "epoch",
            "step",
            "lr",
            *terms,
            *(f"val_{m}" for m in VALIDATION_METRICS),
            "seconds",
        ]
        self.rows = 0

    def create(self) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerow(self.columns)
        self.rows = 0

    def keep(self, rows: int) -> None:
        """Keep the header and the first ``rows`` rows (what the checkpoint being resumed had logged)."""
        if not self.path.is_file():
            raise InputError(
                "the run's log is missing", path=self.path, hint="resume needs the folder intact"
            )
        with open(self.path, newline="") as f:
            lines = list(csv.reader(f))
        if not lines or lines[0] != self.columns or len(lines) - 1 < rows:
            raise InputError(
                f"the log does not match the checkpoint (expected {rows} rows with this header)",
                path=self.path,
                hint="resume needs the run's folder as the run left it",
            )
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(lines[: rows + 1])
        self.rows = rows

    def append(self, values: Mapping[str, object]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_cell(values.get(column)) for column in self.columns])
        self.rows += 1


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


# --- checkpoints ----------------------------------------------------------------------------------


def raw_ws_weights(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Raw (unstandardised) weights of every WS conv trained here (the state dict has standardised ones)."""
    return {
        f"{name}.weight": module.weight.detach().clone()
        for name, module in network.named_modules()
        if isinstance(module, WSConv2d) and module.standardise_on_forward
    }


def restore_raw_ws_weights(network: torch.nn.Module, raw: Mapping[str, torch.Tensor]) -> None:
    """Undo ``load_state_dict``'s standardised weights for training: raw weights back, standardising on."""
    modules = dict(network.named_modules())
    with torch.no_grad():
        for key, weight in raw.items():
            module = modules[key.removesuffix(".weight")]
            assert isinstance(module, WSConv2d)
            module.weight.copy_(weight)
            module.standardise_on_forward = True


def _rng_state() -> dict[str, object]:
    legacy = np.random.get_state()
    state: dict[str, object] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [legacy[0], legacy[1].tolist(), *legacy[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(path: Path, payload: Mapping[str, object]) -> None:
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)


def seed_everything(seed: int) -> None:
    """Seed torch, Python and NumPy's global generators (network initialisation draws from torch's)."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


# --- progress -------------------------------------------------------------------------------------


class Reporter(Protocol):
    """What the trainer tells a user interface (the CLI draws a progress bar on a terminal)."""

    def start(self, total_steps: int, done: int) -> None: ...

    def step(self, step: int, terms: Mapping[str, float], lr: float) -> None: ...

    def epoch(self, epoch: int, scores: Mapping[str, float] | None, best: bool) -> None: ...


class SilentReporter:
    def start(self, total_steps: int, done: int) -> None:
        pass

    def step(self, step: int, terms: Mapping[str, float], lr: float) -> None:
        pass

    def epoch(self, epoch: int, scores: Mapping[str, float] | None, best: bool) -> None:
        pass


@dataclass
class TrainSummary:
    """What a run (or one session of it) did; ``to_json`` is ``mattecli train --json``'s output."""

    out: Path
    model: str
    config: str
    epochs: int
    steps_per_epoch: int
    total_steps: int
    step: int
    finished: bool
    losses: dict[str, float] = field(default_factory=dict)
    validation: dict[str, float] | None = None
    best: dict[str, float] | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)
    session_steps: int = 0
    session_seconds: float = 0.0

    @property
    def seconds_per_step(self) -> float | None:
        return self.session_seconds / self.session_steps if self.session_steps else None

    def to_json(self) -> dict[str, object]:
        return {
            "out": str(self.out),
            "model": self.model,
            "config": self.config,
            "epochs": self.epochs,
            "epochs_done": self.step // self.steps_per_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "step": self.step,
            "total_steps": self.total_steps,
            "finished": self.finished,
            "losses": self.losses,
            "validation": self.validation,
            "best": self.best,
            "checkpoints": self.checkpoints,
            "log": str(self.out / LOG_FILE),
            "session_steps": self.session_steps,
            "session_seconds": round(self.session_seconds, 3),
            "seconds_per_step": self.seconds_per_step,
        }


# --- the run --------------------------------------------------------------------------------------


def check_output_folder(out: Path, *, resume: bool, force: bool) -> None:
    """Refuse a start that would overwrite a run, or a resume with nothing to resume (no side effects)."""
    if resume and force:
        raise InputError(
            "--resume and --force exclude each other", hint="--resume continues, --force starts over"
        )
    if resume and not (out / LAST).is_file():
        raise InputError(
            "nothing to resume here (no last.pth)", path=out, hint="start the run without --resume"
        )
    if not resume and not force and out.is_dir() and any(out.iterdir()):
        raise InputError(
            "the output folder is not empty",
            path=out,
            hint="--resume continues the run in it; --force starts over, replacing its checkpoints and log",
        )


def _prepare_out(out: Path, *, resume: bool, force: bool) -> None:
    check_output_folder(out, resume=resume, force=force)
    if force:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


@dataclass
class _State:
    """The trainer's counters, saved in ``last.pth``."""

    step: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    best: dict[str, float] | None = None  # {"epoch": ..., "sad": ..., ...} of best.pth
    validation: dict[str, float] | None = None  # the latest scores
    validation_epoch: int | None = None
    elapsed: float = 0.0


class Trainer:
    """One run of one config in one output folder; :meth:`run` trains until the end or ``max_steps``."""

    def __init__(self, config: Config, out: Path | None = None, *, reporter: Reporter | None = None) -> None:
        self.config = config
        self.out = Path(out) if out is not None else config.out
        self.reporter = reporter or SilentReporter()
        self.device = torch_device(parse_device(config.device))
        if config.threads:
            torch.set_num_threads(config.threads)
        self.data = open_training_data(config, config.data.cache or self.out / "foreground-cache")
        self.validation = load_validation(config, self.data.holdout_names)
        seed_everything(config.seed)
        network = build(config.model)
        initialise(network, config.init)
        self.step = make_step(
            inference_model(config.model, network), config.optimizer, config.gan, self.device
        )
        self.terms = TERMS[self.step.contract.architecture]
        self.source = BatchSource(self.data.samples, self.step.contract, config.train.batch_size)
        self.steps_per_epoch = config.train.steps_per_epoch or max(
            1, len(self.data.samples) // config.train.batch_size
        )
        self.total_steps = config.train.epochs * self.steps_per_epoch
        self.log = TrainingLog(self.out / LOG_FILE, self.terms)
        self.state = _State()

    # -- facts and checkpoints

    def facts(self) -> dict[str, object]:
        """Scalars about the weights, for the checkpoint and the ONNX metadata."""
        state = self.state
        facts: dict[str, object] = {
            "epoch": state.step // self.steps_per_epoch,
            "step": state.step,
            "seed": self.config.seed,
            "config": self.config.name,
            **self.data.facts(),
        }
        if state.validation is not None:
            facts["val_epoch"] = state.validation_epoch
            facts["val_images"] = len(self.validation)
            facts["val_region"] = self.config.validation.region
            facts.update({f"val_{k}": v for k, v in state.validation.items()})
        return facts

    def _weights(self, **extra: object) -> dict[str, object]:
        return checkpoint_dict(self.config.model, self.step.network, **self.facts(), **extra)

    def save_last(self) -> None:
        step, state = self.step, self.state
        payload = self._weights()
        payload["train"] = {
            "config_sha256": self.config.sha256,
            "step": state.step,
            "ws_raw": raw_ws_weights(step.network),
            "modules": {name: m.state_dict() for name, m in step.modules.items() if name != "network"},
            "optimizers": {name: opt.state_dict() for name, opt in step.optimizers.items()},
            "rng": _rng_state(),
            "log_rows": self.log.rows,
            "sums": dict(state.sums),
            "count": state.count,
            "best": state.best,
            "validation": state.validation,
            "validation_epoch": state.validation_epoch,
            "elapsed": state.elapsed,
        }
        _save(self.out / LAST, payload)

    def restore(self) -> None:
        """Continue from ``last.pth``: weights, modules, optimisers, RNG, counters and the log."""
        path = self.out / LAST
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            train = checkpoint["train"]
        except Exception as exc:  # a truncated or foreign file
            raise InputError(
                f"cannot resume from this checkpoint ({type(exc).__name__})",
                path=path,
                hint="it must be the last.pth a `mattecli train` run wrote",
            ) from exc
        if checkpoint.get("model") != self.config.model or train["config_sha256"] != self.config.sha256:
            raise InputError(
                "this run was started with a different config",
                path=self.out / CONFIG_FILE,
                hint="resume with the run's own config.toml, or start a new run in another --out",
            )
        step = self.step
        step.network.load_state_dict(checkpoint["state_dict"])
        restore_raw_ws_weights(step.network, train["ws_raw"])
        for name, state in train["modules"].items():
            step.modules[name].load_state_dict(state)
        for name, state in train["optimizers"].items():
            step.optimizers[name].load_state_dict(state)
        _set_rng_state(train["rng"])
        self.state = _State(
            step=train["step"],
            sums=dict(train["sums"]),
            count=train["count"],
            best=train["best"],
            validation=train["validation"],
            validation_epoch=train["validation_epoch"],
            elapsed=train["elapsed"],
        )
        self.log.keep(train["log_rows"])

    # -- the loop

    def _log_train(self, epoch: int) -> dict[str, float]:
        state = self.state
        means = {name: state.sums[name] / state.count for name in self.terms}
        self.log.append(
            {
                "kind": "train",
                "epoch": epoch,
                "step": state.step,
                "lr": self.step.lr,
                **means,
                "seconds": round(state.elapsed, 3),
            }
        )
        state.sums, state.count = {}, 0
        return means

    def _end_epoch(self, epoch: int) -> None:
        spec = self.config.validation
        last_epoch = epoch + 1 == self.config.train.epochs
        scores, best = None, False
        if spec.every and ((epoch + 1) % spec.every == 0 or last_epoch):
            scores = validate(self.step, self.validation, self.config)
            state = self.state
            state.validation, state.validation_epoch = scores, epoch
            self.log.append(
                {
                    "kind": "val",
                    "epoch": epoch,
                    "step": state.step,
                    **{f"val_{k}": v for k, v in scores.items()},
                    "seconds": round(state.elapsed, 3),
                }
            )
            best = state.best is None or scores["sad"] < state.best["sad"]
            if best:
                state.best = {"epoch": epoch, **scores}
                _save(self.out / BEST, self._weights())
        self.save_last()
        self.reporter.epoch(epoch, scores, best)

    def run(self, *, resume: bool = False, force: bool = False, max_steps: int | None = None) -> TrainSummary:
        """Train from the start (or from ``last.pth`` with ``resume``) up to the end or step ``max_steps``."""
        _prepare_out(self.out, resume=resume, force=force)
        if resume:
            self.restore()
        else:
            with atomic_path(self.out / CONFIG_FILE) as tmp:
                tmp.write_text(self.config.text, encoding="utf-8")
            self.log.create()
        state, step = self.state, self.step
        stop = self.total_steps if max_steps is None else min(max_steps, self.total_steps)
        first = state.step
        losses: dict[str, float] = {}
        self.reporter.start(self.total_steps, state.step)
        started = time.perf_counter()
        clock = started
        for arrays in self.source.iterate(state.step, stop, self.config.train.workers):
            epoch = state.step // self.steps_per_epoch
            step.set_lr_factor(self.config.schedule.factor(epoch))
            terms = step.train_step(to_batch(arrays, self.device))
            now = time.perf_counter()
            state.elapsed += now - clock
            clock = now
            state.step += 1
            for name in self.terms:
                state.sums[name] = state.sums.get(name, 0.0) + terms[name]
            state.count += 1
            epoch_end = state.step % self.steps_per_epoch == 0
            if epoch_end or state.step % self.config.train.log_every == 0:
                losses = self._log_train(epoch)
            self.reporter.step(state.step, terms, step.lr)
            if epoch_end:
                self._end_epoch(epoch)
                clock = time.perf_counter()  # validation time is not training time
            elif state.step == stop or self._checkpoint_due():
                self.save_last()
        finished = state.step == self.total_steps
        if finished:
            _save(self.out / FINAL, self._weights(**self._best_facts()))
        return TrainSummary(
            out=self.out,
            model=self.config.model,
            config=self.config.name,
            epochs=self.config.train.epochs,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            step=state.step,
            finished=finished,
            losses=losses,
            validation=state.validation,
            best=state.best,
            checkpoints={
                name: str(self.out / name) for name in (LAST, BEST, FINAL) if (self.out / name).is_file()
            },
            session_steps=state.step - first,
            session_seconds=time.perf_counter() - started,
        )

    def _checkpoint_due(self) -> bool:
        every = self.config.train.checkpoint_every
        return bool(every) and self.state.step % every == 0

    def _best_facts(self) -> dict[str, object]:
        best = self.state.best
        if best is None:
            return {}
        return {"best_epoch": int(best["epoch"]), "best_val_sad": best["sad"]}


def train(
    config: Config,
    out: Path | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    max_steps: int | None = None,
    reporter: Reporter | None = None,
) -> TrainSummary:
    """Train ``config`` into ``out`` (default: the config's ``out``); see :class:`Trainer`."""
    return Trainer(config, out, reporter=reporter).run(resume=resume, force=force, max_steps=max_steps)


def describe(summary: TrainSummary) -> str:
    """One human line about a finished (or paused) session."""
    where = f"step {summary.step}/{summary.total_steps}"
    status = "finished" if summary.finished else "paused (continue with --resume)"
    per_step = f", {summary.seconds_per_step:.2f} s/step" if summary.seconds_per_step else ""
    best = ""
    if summary.best:
        best = f"; best SAD {summary.best['sad']:.3f} at epoch {int(summary.best['epoch'])}"
    return f"{summary.model}: {status} at {where}{per_step}{best}; log {summary.out / LOG_FILE}"


__all__ = [
    "BatchSource",
    "ItemList",
    "Reporter",
    "SilentReporter",
    "TrainSummary",
    "Trainer",
    "TrainingData",
    "TrainingLog",
    "ValidationImage",
    "check_output_folder",
    "describe",
    "load_validation",
    "open_training_data",
    "raw_ws_weights",
    "restore_raw_ws_weights",
    "seed_everything",
    "train",
    "validate",
]
