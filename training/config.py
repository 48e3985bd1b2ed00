"""Training configuration: one TOML file per run, read with :mod:`tomllib` and checked before training.

A config says everything a run depends on, so that a run is reproducible from its file and its seed:
the registry model, where the data is and which held-out images it must never train on, the
per-paper data recipe (:mod:`training.data.recipes`), batch size and epochs, the optimiser and its
learning-rate schedule, AlphaGAN's discriminator settings, validation, seed, threads and device.
Every problem is reported as an :class:`~mattecli.errors.InputError` that names the config file and
the dotted key (``optimizer.lr``), before anything is trained; unknown keys are errors too, so a
typo never silently falls back to a default.

Paths: ``data.root`` is relative to the config file's folder; without it the data root is
``$MATTECLI_DATA``, else ``shared/data`` beside the checkout (where the project keeps the real
matting data). Data folders are relative to the data root. ``out`` and ``data.cache`` are relative
to the current directory, like any path a user types.

The layout (the dataclasses below give every key of a table, with its default)::

    model = "fba-resnet18"      # a registry name (mattecli/models.py)
    seed = 0
    [data]                      # kind, folders, held-out split, recipe (+ [data.recipe_options])
    [train]                     # epochs, batch_size, steps_per_epoch, checkpoint_every, log_every, workers
    [optimizer]                 # name (radam/adam/adamw/sgd), lr, betas, momentum, weight_decay
    [schedule]                  # kind (constant/step/every), milestones, every, gamma
    [gan]                       # AlphaGAN only: the discriminator's optimizer, d_steps, norm
    [validation]                # every, images, image/alpha/trimap folders, limit, max_side, tile, region
    [init]                      # weights (a checkpoint to fine-tune) or encoder (ImageNet weights)
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from mattecli.errors import InputError
from mattecli.models import CONTRACTS, contract_for

if TYPE_CHECKING:
    from training.data.recipes import Recipe

T = TypeVar("T")

OPTIMIZERS = ("radam", "adam", "adamw", "sgd")
SCHEDULES = ("constant", "step", "every")
DATA_KINDS = ("image-alpha", "foreground")
ESTIMATORS = ("ml", "cf", "lsa")
DISCRIMINATOR_NORMS = ("bn", "in")
REGIONS = ("unknown", "all")
# The Laplacian loss has five levels, which need 33 px (training/losses.py).
MIN_CROP = 33
# Recipe fields a config may not set: the name is the recipe's, the trimap maker and GFM's RoSTa
# follow from the recipe and the model.
_FIXED_RECIPE_FIELDS = frozenset({"name", "trimap", "rosta"})
# Architectures whose BatchNorm sees a 1×1 pooled map (AlphaGAN's ASPP, GFM's PPM): a batch of one
# leaves one value per channel, which BatchNorm cannot normalise in training mode.
_NEEDS_BATCH_OF_TWO = frozenset({"gfm", "alphagan"})
_REQUIRED = object()


def repository_data_root() -> Path:
    """``$MATTECLI_DATA``, else ``shared/data`` beside the checkout (the tests use the same rule)."""
    env = os.environ.get("MATTECLI_DATA")
    if env:
        return Path(env).resolve()
    return (Path(__file__).resolve().parents[2] / "shared" / "data").resolve()


@dataclass(frozen=True)
class OptimizerConfig:
    """One optimiser: RAdam, Adam, AdamW or SGD, with L2 weight decay (decoupled for AdamW)."""

    name: Literal["radam", "adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning rate per epoch: ``lr · gamma^k`` with k the milestones passed ("step") or ``epoch // every``.

    Epochs count from 0, so FBA's "1e-5 for 40 epochs then 1e-6" is ``milestones = [40]``,
    ``gamma = 0.1``, and LSA's "halved every 20 epochs" is ``every = 20``, ``gamma = 0.5``. The
    schedule is a pure function of the epoch: resuming needs no scheduler state.
    """

    kind: Literal["constant", "step", "every"] = "constant"
    milestones: tuple[int, ...] = ()
    every: int = 0
    gamma: float = 0.1

    def factor(self, epoch: int) -> float:
        if self.kind == "step":
            return self.gamma ** sum(1 for m in self.milestones if epoch >= m)
        if self.kind == "every":
            return self.gamma ** (epoch // self.every)
        return 1.0


@dataclass(frozen=True)
class GANConfig:
    """AlphaGAN's discriminator: its optimiser, D updates per G update, and its norm layer."""

    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    d_steps: int = 1
    norm: Literal["bn", "in"] = "bn"


@dataclass(frozen=True)
class InitConfig:
    """Weights to start from instead of random ones (paths relative to the current folder).

    ``weights``: a whole-network checkpoint (fine-tuning, e.g. the public ``FBA.pth``).
    ``encoder``: ImageNet weights for the encoder in torchvision's names (its classifier is dropped,
    extra input channels start at zero); FBA's GroupNorm + WS encoder needs GN+WS ImageNet weights.
    """

    weights: Path | None = None
    encoder: Path | None = None


@dataclass(frozen=True)
class PseudoLabelSource:
    """Photos with *predicted* alphas (another model's output, not ground truth) used as training data."""

    image: Path
    alpha: Path


@dataclass(frozen=True)
class DataConfig:
    """Where the training data is, which images are held out, and how samples are made."""

    kind: Literal["image-alpha", "foreground"]
    root: Path
    alpha: Path
    image: Path | None = None  # image-alpha: the photos (their foregrounds are re-estimated)
    foreground: Path | None = None  # foreground: foreground colours valid everywhere
    own_backgrounds: Path | None = None  # foreground: each foreground's own background, by name
    backgrounds: Path | None = None  # photos to composite over
    estimator: Literal["ml", "cf", "lsa"] = "ml"
    cache: Path | None = None  # re-estimated foregrounds; None: <out>/foreground-cache
    holdout: int | tuple[str, ...] = 0
    holdout_seed: int = 0
    recipe: str = "fba"
    recipe_options: dict[str, Any] = field(default_factory=dict)
    pseudo_labels: tuple[PseudoLabelSource, ...] = ()


@dataclass(frozen=True)
class TrainConfig:
    """Length of the run and how often it checkpoints and logs."""

    epochs: int
    batch_size: int = 1
    steps_per_epoch: int | None = None  # None: one pass over the training samples
    checkpoint_every: int = 0  # steps; 0: at the end of every epoch only
    log_every: int = 1  # steps per log row (the mean of the losses over them)
    workers: int = 0  # data-loading processes; 0 builds samples in the training process


@dataclass(frozen=True)
class ValidationConfig:
    """Metrics on held-out images after every ``every`` epochs (0: never)."""

    every: int = 1
    images: Literal["holdout", "all"] | tuple[str, ...] = "holdout"
    image: Path | None = None
    alpha: Path | None = None
    trimap: Path | None = None
    limit: int = 0  # at most this many images (0: all), in name order
    max_side: int = 0  # shrink images whose long side is larger (0: full size)
    tile: int = 0  # tiled inference with this tile size (0: the whole frame at once)
    region: Literal["unknown", "all"] = "unknown"


@dataclass(frozen=True)
class Config:
    """A checked training configuration (see the module docstring for the file layout)."""

    path: Path
    text: str
    model: str
    data: DataConfig
    train: TrainConfig
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    validation: ValidationConfig
    gan: GANConfig | None = None
    init: InitConfig = field(default_factory=InitConfig)
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0: torch's default
    device: str = "cpu"
    out: Path = Path("runs")
    notes: str = ""

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def architecture(self) -> str:
        return contract_for(self.model).architecture

    @property
    def sha256(self) -> str:
        """Hash of the file's text: a resumed run must continue with the config it started with."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def recipe(self) -> Recipe:
        """The data recipe with this config's options (a GFM model's RoSTa sets the recipe's)."""
        from training.data.recipes import RECIPES

        options = dict(self.data.recipe_options)
        if self.data.recipe == "gfm-rssn" and self.architecture == "gfm":
            options["rosta"] = self.model.split("-")[1].upper()  # gfm-tt -> TT
        return RECIPES[self.data.recipe](**options)

    def sample_sizes(self) -> set[int]:
        """The side lengths the recipe's samples can have (square crops)."""
        recipe = self.recipe()
        if recipe.output_size is not None:
            return {recipe.output_size}
        return set(recipe.crop_sizes)


class _Table:
    """One TOML table being read: typed getters that name the dotted key, and a check for unknown keys."""

    def __init__(self, data: dict[str, Any], where: str, path: Path, *, check_paths: bool = True) -> None:
        self.data = data
        self.where = where
        self.path = path
        self.check_paths = check_paths
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def error(self, name: str, message: str, hint: str | None = None) -> InputError:
        return InputError(f"{self.key(name)}: {message}", path=self.path, hint=hint)

    def has(self, name: str) -> bool:
        return name in self.data

    def get(
        self,
        name: str,
        kind: Callable[[Any], T],
        default: Any = _REQUIRED,
        *,
        check: Callable[[T], str | None] | None = None,
    ) -> T:
        """The value of ``name`` converted by ``kind`` (one of the ``_as_*`` readers), or ``default``."""
        self.used.add(name)
        if name not in self.data:
            if default is _REQUIRED:
                raise self.error(name, "missing", hint="add it to the config")
            return default
        try:
            value = kind(self.data[name])
        except (TypeError, ValueError) as exc:
            raise self.error(name, str(exc)) from None
        if check is not None and (problem := check(value)):
            raise self.error(name, problem)
        return value

    def table(self, name: str, *, required: bool = False) -> _Table | None:
        self.used.add(name)
        if name not in self.data:
            if required:
                raise self.error(name, "missing table", hint=f"add a [{self.key(name)}] table")
            return None
        value = self.data[name]
        if not isinstance(value, dict):
            raise self.error(name, f"must be a table, got {type(value).__name__}")
        return _Table(value, self.key(name), self.path, check_paths=self.check_paths)

    def finish(self) -> None:
        if unknown := sorted(set(self.data) - self.used):
            known = ", ".join(sorted(self.used))
            raise InputError(
                f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(self.key(k) for k in unknown)}",
                path=self.path,
                hint=f"known keys here: {known}",
            )


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"must be an integer, got {value!r}")
    return value


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"must be a number, got {value!r}")
    return float(value)


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, got {value!r}")
    return value


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"must be true or false, got {value!r}")
    return value


def _list_of(item: Callable[[Any], T]) -> Callable[[Any], tuple[T, ...]]:
    def read(value: Any) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise TypeError(f"must be a list, got {value!r}")
        return tuple(item(v) for v in value)

    return read


def _one_of(choices: Sequence[str]) -> Callable[[Any], str]:
    def read(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    return read


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _not_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _device(value: str) -> str | None:
    return None if re.fullmatch(r"cpu|cuda(:\d+)?", value) else f"must be cpu, cuda or cuda:N, got {value!r}"


def _unit(value: float) -> str | None:
    return None if 0 <= value < 1 else "must be in [0, 1)"


def _folder(table: _Table, name: str, root: Path, *, required: bool = False) -> Path | None:
    """A data folder below ``root`` that must exist."""
    relative = table.get(name, _as_str, _REQUIRED if required else None)
    if relative is None:
        return None
    folder = (root / relative).resolve()
    if table.check_paths and not folder.is_dir():
        raise table.error(
            name, f"folder not found: {folder}", hint=f"folders are relative to the data root {root}"
        )
    return folder


def _optimizer(table: _Table) -> OptimizerConfig:
    betas = table.get("betas", _list_of(_as_float), (0.9, 0.999))
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise table.error("betas", f"must be two numbers in [0, 1), got {list(betas)}")
    config = OptimizerConfig(
        name=table.get("name", _one_of(OPTIMIZERS)),  # type: ignore[arg-type]
        lr=table.get("lr", _as_float, check=_positive),
        betas=(betas[0], betas[1]),
        momentum=table.get("momentum", _as_float, 0.9, check=_unit),
        weight_decay=table.get("weight_decay", _as_float, 0.0, check=_not_negative),
    )
    table.finish()
    return config


def _schedule(table: _Table | None, epochs: int) -> ScheduleConfig:
    if table is None:
        return ScheduleConfig()
    kind = table.get("kind", _one_of(SCHEDULES), "constant")
    milestones = table.get("milestones", _list_of(_as_int), ())
    every = table.get("every", _as_int, 0)
    gamma = table.get("gamma", _as_float, 0.1, check=_positive)
    table.finish()
    if kind == "step":
        if not milestones or list(milestones) != sorted(set(milestones)) or milestones[0] <= 0:
            raise table.error("milestones", "a step schedule needs increasing epochs greater than 0")
        if milestones[-1] >= epochs:
            raise table.error("milestones", f"{milestones[-1]} is not before the last epoch ({epochs})")
    elif milestones:
        raise table.error("milestones", f"only a step schedule has milestones (kind is {kind!r})")
    if kind == "every" and every <= 0:
        raise table.error("every", "an 'every' schedule needs every = N epochs, N > 0")
    if kind != "every" and every:
        raise table.error("every", f"only kind = 'every' uses it (kind is {kind!r})")
    return ScheduleConfig(kind, milestones, every, gamma)  # type: ignore[arg-type]


def _holdout(table: _Table) -> int | tuple[str, ...]:
    if not table.has("holdout"):
        table.used.add("holdout")
        return 0
    raw = table.data["holdout"]
    if isinstance(raw, list):
        return table.get("holdout", _list_of(_as_str))
    return table.get("holdout", _as_int, check=_not_negative)


def _recipe_options(data: _Table, recipe: str) -> dict[str, Any]:
    from training.data.recipes import RECIPES, Recipe

    if recipe not in RECIPES:
        raise data.error("recipe", f"unknown recipe {recipe!r}", hint=f"known recipes: {', '.join(RECIPES)}")
    table = data.table("recipe_options")
    if table is None:
        return {}
    fields = {f.name: f for f in dataclasses.fields(Recipe) if f.name not in _FIXED_RECIPE_FIELDS}
    options: dict[str, Any] = {}
    for name in table.data:
        if name not in fields:
            raise table.error(name, "not a recipe option", hint=f"recipe options: {', '.join(fields)}")
        default = getattr(Recipe("x"), name)
        if isinstance(default, bool):
            options[name] = table.get(name, _as_bool)
        elif isinstance(default, tuple) or name == "crop_range":
            options[name] = table.get(name, _list_of(_as_int))
            if name == "crop_range" and len(options[name]) != 2:
                raise table.error(name, "must be [smallest, largest]")
        elif isinstance(default, int) or name == "output_size":
            options[name] = table.get(name, _as_int, check=_positive)
        else:
            options[name] = table.get(name, _as_float, check=_not_negative)
    return options


def _data(table: _Table, config_dir: Path) -> DataConfig:
    root_text = table.get("root", _as_str, None)
    root = (config_dir / root_text).resolve() if root_text else repository_data_root()
    if table.check_paths and not root.is_dir():
        raise table.error(
            "root",
            f"data root not found: {root}",
            hint="set data.root in the config or MATTECLI_DATA to the folder holding the data",
        )
    kind = table.get("kind", _one_of(DATA_KINDS))
    image = _folder(table, "image", root, required=kind == "image-alpha")
    foreground = _folder(table, "foreground", root, required=kind == "foreground")
    if kind == "image-alpha" and foreground is not None:
        raise table.error("foreground", "image-alpha data re-estimates foregrounds from data.image")
    if kind == "foreground" and image is not None:
        raise table.error("image", "foreground data takes data.foreground, not data.image")
    own_backgrounds = _folder(table, "own_backgrounds", root)
    backgrounds = _folder(table, "backgrounds", root)
    if backgrounds is None and own_backgrounds is None:
        raise table.error(
            "backgrounds", "missing", hint="name a folder of background photos to composite over"
        )
    pseudo: list[PseudoLabelSource] = []
    raw_pseudo = table.get("pseudo_labels", lambda v: v, [])
    if not isinstance(raw_pseudo, list):
        raise table.error("pseudo_labels", "must be an array of tables ([[data.pseudo_labels]])")
    for i, entry in enumerate(raw_pseudo):
        if not isinstance(entry, dict):
            raise table.error("pseudo_labels", f"entry {i} must be a table with image and alpha folders")
        sub = _Table(entry, f"{table.key('pseudo_labels')}[{i}]", table.path, check_paths=table.check_paths)
        source = PseudoLabelSource(
            _folder(sub, "image", root, required=True),  # type: ignore[arg-type]
            _folder(sub, "alpha", root, required=True),  # type: ignore[arg-type]
        )
        sub.finish()
        pseudo.append(source)
    recipe = table.get("recipe", _as_str)
    cache = table.get("cache", _as_str, None)
    data = DataConfig(
        kind=kind,  # type: ignore[arg-type]
        root=root,
        alpha=_folder(table, "alpha", root, required=True),  # type: ignore[arg-type]
        image=image,
        foreground=foreground,
        own_backgrounds=own_backgrounds,
        backgrounds=backgrounds,
        estimator=table.get("estimator", _one_of(ESTIMATORS), "ml"),  # type: ignore[arg-type]
        cache=Path(cache) if cache else None,
        holdout=_holdout(table),
        holdout_seed=table.get("holdout_seed", _as_int, 0),
        recipe=recipe,
        recipe_options=_recipe_options(table, recipe),
        pseudo_labels=tuple(pseudo),
    )
    table.finish()
    return data


def _train(table: _Table) -> TrainConfig:
    config = TrainConfig(
        epochs=table.get("epochs", _as_int, check=_positive),
        batch_size=table.get("batch_size", _as_int, 1, check=_positive),
        steps_per_epoch=table.get("steps_per_epoch", _as_int, None, check=_positive),
        checkpoint_every=table.get("checkpoint_every", _as_int, 0, check=_not_negative),
        log_every=table.get("log_every", _as_int, 1, check=_positive),
        workers=table.get("workers", _as_int, 0, check=_not_negative),
    )
    table.finish()
    return config


def _validation(table: _Table | None, data: DataConfig, model: str) -> ValidationConfig:
    if table is None:
        return ValidationConfig(every=0)
    images: Any = "holdout"
    if table.has("images"):
        raw = table.data["images"]
        images = (
            table.get("images", _list_of(_as_str))
            if isinstance(raw, list)
            else table.get("images", _one_of(("holdout", "all")))
        )
    else:
        table.used.add("images")
    config = ValidationConfig(
        every=table.get("every", _as_int, 1, check=_not_negative),
        images=images,
        image=_folder(table, "image", data.root) or data.image,
        alpha=_folder(table, "alpha", data.root) or (data.alpha if data.kind == "image-alpha" else None),
        trimap=_folder(table, "trimap", data.root),
        limit=table.get("limit", _as_int, 0, check=_not_negative),
        max_side=table.get("max_side", _as_int, 0, check=_not_negative),
        tile=table.get("tile", _as_int, 0, check=_not_negative),
        region=table.get("region", _one_of(REGIONS), "unknown"),  # type: ignore[arg-type]
    )
    table.finish()
    if config.every:
        if config.image is None or config.alpha is None:
            raise table.error(
                "image",
                "validation needs photos and their alphas",
                hint="set validation.image and validation.alpha",
            )
        if config.trimap is None and (config.region == "unknown" or contract_for(model).needs_trimap):
            raise table.error(
                "trimap", "missing", hint="name the folder of validation trimaps (alphamatting/trimap)"
            )
        if images == "holdout" and not data.holdout:
            raise table.error(
                "images",
                "'holdout' needs held-out images",
                hint="set data.holdout, or list validation.images",
            )
    return config


def _check_sizes(config: Config) -> None:
    """Every sample size must suit the network, and a batch must be able to stack its samples."""
    contract = contract_for(config.model)
    recipe = config.recipe()
    key = "data.recipe_options"
    if recipe.output_size is None and recipe.crop_range is not None:
        raise InputError(
            f"{key}.crop_range: crops of any size in a range need output_size to resize them to",
            path=config.path,
        )
    sizes = config.sample_sizes()
    multiple = contract.size_multiple
    for size in sorted(sizes):
        if size % multiple or size < MIN_CROP:
            raise InputError(
                f"{key}: sample size {size} does not suit {config.model}",
                path=config.path,
                hint=f"use multiples of {multiple} of at least {MIN_CROP} px (output_size or crop_sizes)",
            )
    if config.train.batch_size > 1 and len(sizes) > 1:
        raise InputError(
            f"train.batch_size: a batch of {config.train.batch_size} cannot stack crops of sizes "
            f"{sorted(sizes)}",
            path=config.path,
            hint=f"set {key}.output_size, or a single crop size, or batch_size = 1",
        )


def _check_model_fit(config: Config) -> None:
    """The recipe must make the targets the architecture's losses need."""
    arch = config.architecture
    recipe = config.recipe()
    if arch == "gfm":
        if recipe.rosta is None:
            raise InputError(
                f"data.recipe: {config.model} needs glance targets; use the 'gfm-rssn' recipe",
                path=config.path,
            )
    elif recipe.trimap is None:
        raise InputError(
            f"data.recipe: {config.model} is trained with trimaps; {recipe.name!r} makes none",
            path=config.path,
            hint="use the paper's recipe: fba, alphagan, lsa or adamatting",
        )
    if arch == "adamatting" and not recipe.trimap_target:
        raise InputError(
            "data.recipe: adamatting needs the adapted-trimap target; use the 'adamatting' recipe",
            path=config.path,
        )
    if arch in _NEEDS_BATCH_OF_TWO and config.train.batch_size < 2:
        raise InputError(
            f"train.batch_size: {config.model} needs at least 2 (BatchNorm after a 1×1 pooled map "
            "cannot normalise a single sample)",
            path=config.path,
        )
    if (config.gan is not None) != (arch == "alphagan"):
        what = "needs a [gan] table" if arch == "alphagan" else "takes no [gan] table (AlphaGAN only)"
        raise InputError(f"gan: {config.model} {what}", path=config.path)


def _init(table: _Table | None) -> InitConfig:
    if table is None:
        return InitConfig()
    paths = {}
    for name in ("weights", "encoder"):
        text = table.get(name, _as_str, None)
        if text is not None:
            path = Path(text)
            if table.check_paths and not path.is_file():
                raise table.error(
                    name, f"file not found: {path}", hint="paths are relative to the current folder"
                )
            paths[name] = path
    table.finish()
    return InitConfig(**paths)


def load_config(path: str | Path, *, check_paths: bool = True) -> Config:
    """Read and check a training config; every problem is an :class:`InputError` naming the key.

    ``check_paths=False`` checks everything but the existence of data folders and weight files
    (to check a paper-scale config on a machine without its dataset).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found", path=path, hint="give a TOML file (see training/configs/)")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", path=path) from None
    top = _Table(raw, "", path, check_paths=check_paths)
    model = top.get("model", _as_str)
    if model not in CONTRACTS:
        raise top.error("model", f"unknown model {model!r}", hint=f"known models: {', '.join(CONTRACTS)}")
    train = _train(top.table("train", required=True))  # type: ignore[arg-type]
    data = _data(top.table("data", required=True), path.parent.resolve())  # type: ignore[arg-type]
    gan_table = top.table("gan")
    gan = None
    if gan_table is not None:
        d_table = gan_table.table("optimizer", required=True)
        gan = GANConfig(
            optimizer=_optimizer(d_table),  # type: ignore[arg-type]
            d_steps=gan_table.get("d_steps", _as_int, 1, check=_positive),
            norm=gan_table.get("norm", _one_of(DISCRIMINATOR_NORMS), "bn"),  # type: ignore[arg-type]
        )
        gan_table.finish()
    config = Config(
        path=path.resolve(),
        text=text,
        model=model,
        data=data,
        train=train,
        optimizer=_optimizer(top.table("optimizer", required=True)),  # type: ignore[arg-type]
        schedule=_schedule(top.table("schedule"), train.epochs),
        validation=_validation(top.table("validation"), data, model),
        gan=gan,
        init=_init(top.table("init")),
        seed=top.get("seed", _as_int, 0, check=_not_negative),
        threads=top.get("threads", _as_int, 0, check=_not_negative),
        device=top.get("device", _as_str, "cpu", check=_device),
        out=Path(top.get("out", _as_str, f"runs/{path.stem}")),
        notes=top.get("notes", _as_str, ""),
    )
    top.finish()
    try:
        _check_model_fit(config)
        _check_sizes(config)
    except (TypeError, ValueError) as exc:  # a recipe option the recipe itself rejects
        raise InputError(f"data.recipe_options: {exc}", path=path) from None
    return config
