"""The trainer: config checks, deterministic batches, exact resume, checkpoints that export, the CLI.

Runs use fba-resnet18 (the smallest network, and the one whose weight standardisation makes
resuming and exporting subtle) on 64 px crops of the real alphamatting.com images, a few steps each.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from mattecli.cli import app
from mattecli.errors import InputError
from mattecli.inputs import build_inputs
from mattecli.models import contract_for
from training.config import InitConfig, load_config
from training.networks.layers import WSConv2d
from training.networks.resnet import resnet
from training.registry import build, load_model
from training.trainer import (
    FINAL,
    LOG_FILE,
    BatchSource,
    Trainer,
    initialise,
    load_validation,
    open_training_data,
    validate,
)

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
PAPER_CONFIGS = ("fba", "lsa", "gfm", "alphagan", "adamatting")

# A run small enough for a test: 2 epochs of 2 steps, validation on one held-out image at 64 px.
RUN = """
model = "fba-resnet18"
seed = 3
[data]
root = "{root}"
kind = "image-alpha"
image = "alphamatting/image"
alpha = "alphamatting/alpha"
backgrounds = "backgrounds"
cache = "{cache}"
holdout = 5
recipe = "fba"
[data.recipe_options]
crop_sizes = [64]
[train]
epochs = 2
steps_per_epoch = 2
batch_size = 1
[optimizer]
name = "radam"
lr = 1e-3
weight_decay = 1e-4
[schedule]
kind = "step"
milestones = [1]
gamma = 0.5
[validation]
every = 1
trimap = "alphamatting/trimap"
limit = 1
max_side = 64
"""


@pytest.fixture(scope="session")
def fg_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Re-estimated foregrounds shared by every run of the session (they take seconds per image)."""
    return tmp_path_factory.mktemp("foreground-cache")


def _run_config(folder: Path, root: Path, cache: Path, text: str = RUN) -> Path:
    path = folder / "run.toml"
    path.write_text(text.format(root=root, cache=cache))
    return path


def _log_rows(out: Path) -> list[dict[str, str]]:
    with open(out / LOG_FILE, newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


# --- config checks --------------------------------------------------------------------------------

SMALL = """
model = "fba-resnet18"
[data]
root = "data"
kind = "image-alpha"
image = "image"
alpha = "alpha"
backgrounds = "backgrounds"
holdout = 1
recipe = "fba"
[data.recipe_options]
crop_sizes = [64]
[train]
epochs = 4
batch_size = 1
[optimizer]
name = "radam"
lr = 1e-4
[validation]
trimap = "trimap"
"""


@pytest.fixture()
def small_config(tmp_path: Path) -> Path:
    """A valid config over empty data folders (loading a config never reads the data)."""
    for name in ("image", "alpha", "backgrounds", "trimap"):
        (tmp_path / "data" / name).mkdir(parents=True)
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def test_a_valid_config_loads(small_config: Path) -> None:
    config = load_config(small_config)
    assert config.model == "fba-resnet18"
    assert config.data.image == (small_config.parent / "data" / "image").resolve()
    assert config.sample_sizes() == {64}
    assert config.schedule.factor(3) == 1.0
    assert config.out == Path("runs/small")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('model = "fba-resnet18"', 'model = "fba-resnet18"\nmodle = 1', "unknown key modle"),
        ('model = "fba-resnet18"', 'model = "fba-resnet99"', "model: unknown model"),
        ("lr = 1e-4", "lr = -1e-4", "optimizer.lr: must be greater than 0"),
        ("lr = 1e-4", 'lr = "fast"', "optimizer.lr: must be a number"),
        ('name = "radam"', 'name = "adagrad"', "optimizer.name: must be one of"),
        ('image = "image"', 'image = "photos"', "data.image: folder not found"),
        ("crop_sizes = [64]", "crop_size = [64]", "data.recipe_options.crop_size: not a recipe option"),
        ("crop_sizes = [64]", "crop_sizes = [60]", "data.recipe_options: sample size 60"),
        ('recipe = "fba"', 'recipe = "dim"', "data.recipe: unknown recipe"),
        ('recipe = "fba"', 'recipe = "gfm-rssn"', "data.recipe: fba-resnet18 is trained with trimaps"),
        ('recipe = "fba"', 'recipe = "lsa"\n[data.pseudo_labels]', "data.pseudo_labels: must be an array"),
        (
            "crop_sizes = [64]",
            "crop_sizes = [64]\nrepeats = 0",
            "data.recipe_options.repeats: must be greater",
        ),
        ('"fba-resnet18"', '"lsa"\ndevice = "gpu"', "device: must be cpu, cuda or cuda:N"),
        ("holdout = 1", "holdout = 0", "validation.images: 'holdout' needs held-out images"),
        ('trimap = "trimap"', "every = 1", "validation.trimap: missing"),
        (None, '[schedule]\nkind = "step"\nmilestones = [4]', "schedule.milestones: 4 is not before"),
        (None, '[schedule]\nkind = "every"', "schedule.every: an 'every' schedule needs"),
        (None, "[gan]\nd_steps = 1", "gan.optimizer: missing table"),
        (None, '[gan]\n[gan.optimizer]\nname = "adam"\nlr = 1e-4', "gan: fba-resnet18 takes no"),
        ("epochs = 4", "epochs = 0", "train.epochs: must be greater than 0"),
        ("[train]", "[train\n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_key(small_config: Path, old: str | None, new: str, message: str) -> None:
    small_config.write_text(SMALL + new if old is None else SMALL.replace(old, new, 1))
    with pytest.raises(InputError, match=message) as info:
        load_config(small_config)
    assert info.value.path == small_config


def test_stacking_crops_of_different_sizes_is_refused(small_config: Path) -> None:
    small_config.write_text(
        SMALL.replace("crop_sizes = [64]", "crop_sizes = [64, 96]").replace(
            "batch_size = 1", "batch_size = 2"
        )
    )
    with pytest.raises(
        InputError, match=r"train.batch_size: a batch of 2 cannot stack crops of sizes \[64, 96\]"
    ):
        load_config(small_config)


def test_batch_norm_networks_need_two_samples_per_batch(small_config: Path) -> None:
    text = SMALL.replace('model = "fba-resnet18"', 'model = "alphagan"').replace(
        'recipe = "fba"', 'recipe = "alphagan"'
    )
    text = text.replace("crop_sizes = [64]", "output_size = 64")
    text += '[gan.optimizer]\nname = "adam"\nlr = 2e-4\n'
    small_config.write_text(text)
    with pytest.raises(InputError, match="train.batch_size: alphagan needs at least 2"):
        load_config(small_config)
    small_config.write_text(text.replace("batch_size = 1", "batch_size = 2"))
    assert load_config(small_config).gan.optimizer.lr == 2e-4  # type: ignore[union-attr]


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configs_check_out_without_their_datasets(name: str) -> None:
    config = load_config(CONFIGS / f"{name}.toml", check_paths=False)
    assert config.validation.every > 0
    assert config.notes
    with pytest.raises(InputError, match="folder not found"):
        load_config(CONFIGS / f"{name}.toml")


def test_paper_configs_hold_the_papers_numbers() -> None:
    fba = load_config(CONFIGS / "fba.toml", check_paths=False)
    assert (fba.model, fba.optimizer.name, fba.optimizer.lr, fba.train.batch_size) == (
        "fba-resnet50",
        "radam",
        1e-5,
        1,
    )
    assert fba.optimizer.betas[0] == 0.9 and fba.optimizer.weight_decay == 1e-4
    assert [fba.schedule.factor(e) for e in (0, 39, 40, 44)] == [1.0, 1.0, 0.1, 0.1]
    assert fba.train.epochs == 45
    lsa = load_config(CONFIGS / "lsa.toml", check_paths=False)
    assert (lsa.optimizer.name, lsa.optimizer.lr, lsa.train.batch_size, lsa.train.epochs) == (
        "adam",
        5e-5,
        16,
        100,
    )
    assert [lsa.schedule.factor(e) for e in (19, 20, 40, 99)] == [1.0, 0.5, 0.25, 0.0625]
    gfm = load_config(CONFIGS / "gfm.toml", check_paths=False)
    assert (gfm.optimizer.lr, gfm.train.batch_size, gfm.schedule.factor(99)) == (1e-5, 32, 1.0)
    assert gfm.recipe().rosta == "TT" and gfm.recipe().repeats == 5
    gan = load_config(CONFIGS / "alphagan.toml", check_paths=False)
    assert gan.gan is not None and gan.gan.d_steps == 1
    assert gan.optimizer.betas == gan.gan.optimizer.betas == (0.5, 0.999)


CPU_CONFIGS = (
    "bandmatte",
    "default-model",
    *(f"cpu-smoke-{a}" for a in ("fba", "gfm", "lsa", "alphagan", "adamatting")),
)


@pytest.mark.parametrize("name", CPU_CONFIGS)
def test_cpu_configs_load_against_the_real_data(shared_data: Path, name: str) -> None:
    config = load_config(CONFIGS / f"{name}.toml")
    assert config.data.holdout == 5 and config.validation.images == "holdout"
    assert config.threads == 2 and config.device == "cpu"


def test_the_default_model_config(shared_data: Path) -> None:
    """The slim FBA on the alphamatting.com triplets (5 held out) plus named pseudo-labels, validated
    each epoch on Trimap1; no held-out image is among the pseudo-label photos."""
    config = load_config(CONFIGS / "default-model.toml")
    assert config.model == "fba-resnet18-slim" and config.data.recipe == "fba"
    assert config.data.holdout == 5
    pseudo = {source.image.relative_to(shared_data).parts[0] for source in config.data.pseudo_labels}
    assert pseudo == {"examples", "trimap_free"}
    assert config.data.image == shared_data / "alphamatting" / "image"
    assert config.validation.trimap == shared_data / "alphamatting" / "trimap"
    assert config.validation.every == 1 and config.validation.max_side == 0
    assert config.sample_sizes() == {320} and config.optimizer.name == "radam"


def test_the_band_default_model_config(shared_data: Path) -> None:
    """The shipped band model: same data and held-out split as the slim FBA it replaced, wide trimaps."""
    band = load_config(CONFIGS / "bandmatte.toml")
    slim = load_config(CONFIGS / "default-model.toml")
    assert band.model == "bandmatte-lite0" and band.data.recipe == "band"
    assert (band.data.holdout, band.data.holdout_seed) == (slim.data.holdout, slim.data.holdout_seed)
    assert band.data.pseudo_labels == slim.data.pseudo_labels
    assert band.sample_sizes() == {384} and band.recipe().max_side == 1024
    assert band.validation.trimap == shared_data / "alphamatting" / "trimap"


# --- data and batches -----------------------------------------------------------------------------


def test_held_out_images_never_reach_training(shared_data: Path, fg_cache: Path, tmp_path: Path) -> None:
    config = load_config(_run_config(tmp_path, shared_data, fg_cache))
    data = open_training_data(config, fg_cache)
    assert len(data.holdout_names) == 5 and len(data.train_names) == 16
    assert not set(data.holdout_names) & set(data.train_names)
    items = data.samples.items
    assert {items[i].name for i in range(len(items))} == set(data.train_names)
    validation = load_validation(config, data.holdout_names)
    assert [v.name for v in validation] == data.holdout_names[:1]
    assert max(validation[0].alpha.shape) == 64 and set(np.unique(validation[0].trimap)) <= {0, 128, 255}


def test_pseudo_labels_are_named_as_such(shared_data: Path, fg_cache: Path, tmp_path: Path) -> None:
    """Predicted alphas (GCA's, on the alphamatting.com test photos) join the training items under a
    ``pseudo-label:`` name and are listed in the checkpoint facts; the held-out split is unchanged."""
    text = RUN.replace(
        'recipe = "fba"',
        'recipe = "fba"\n[[data.pseudo_labels]]\nimage = "examples/alphamatting_test/image"\n'
        'alpha = "examples/alphamatting_test/pred_gca_trimap3"',
    )
    config = load_config(_run_config(tmp_path, shared_data, fg_cache, text))
    data = open_training_data(config, fg_cache)
    items = data.samples.items
    assert len(items) == 16 + 8 and len(data.holdout_names) == 5
    assert items[0].name == data.train_names[0]
    assert items[16].name == "pseudo-label:doll"
    assert data.facts()["pseudo_labels"] == "examples/alphamatting_test/pred_gca_trimap3 (8)"


def test_batches_are_a_function_of_the_step(shared_data: Path, fg_cache: Path, tmp_path: Path) -> None:
    """A batch depends on its step only: rebuilt from scratch, out of order, or in a data-loading
    worker that starts at another step (a resumed run), it is the same bit for bit."""
    config = load_config(_run_config(tmp_path, shared_data, fg_cache))
    source = BatchSource(open_training_data(config, fg_cache).samples, contract_for("fba-resnet18"), 1)
    later = source.arrays(3)
    again = BatchSource(open_training_data(config, fg_cache).samples, source.contract, 1).arrays(3)
    from_two = list(source.iterate(2, 4, workers=1))
    from_three = list(source.iterate(3, 4, workers=1))
    assert len(from_two) == 2 and len(from_three) == 1
    assert not np.array_equal(from_two[0]["alpha"], later["alpha"])
    for key in later:
        np.testing.assert_array_equal(again[key], later[key])
        np.testing.assert_array_equal(from_three[0][key], from_two[1][key])
        np.testing.assert_array_equal(from_two[1][key], later[key])


def test_encoder_initialisation_takes_torchvision_weights(tmp_path: Path) -> None:
    """ImageNet weights in torchvision's names load into the encoder; the trimap inputs start at 0."""
    torch.manual_seed(0)
    imagenet = resnet(18, norm="gn_ws").state_dict()
    imagenet["fc.weight"], imagenet["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(imagenet, tmp_path / "r18.pth")
    network = build("fba-resnet18")
    initialise(network, InitConfig(encoder=tmp_path / "r18.pth"))
    first = network.encoder.conv1.weight
    assert torch.equal(first[:, :3], imagenet["conv1.weight"])
    assert not first[:, 3:].any()
    assert torch.equal(network.encoder.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])


# --- runs -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def straight_run(
    shared_data: Path, fg_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Trainer, Path]:
    """Four steps (two epochs, validated after each) in one go."""
    folder = tmp_path_factory.mktemp("straight")
    config = load_config(_run_config(folder, shared_data, fg_cache))
    trainer = Trainer(config, folder / "out")
    summary = trainer.run()
    assert summary.finished and summary.step == 4
    return trainer, folder / "out"


@pytest.mark.slow
def test_a_resumed_run_reproduces_the_uninterrupted_one(
    straight_run: tuple[Trainer, Path], shared_data: Path, fg_cache: Path, tmp_path: Path
) -> None:
    """Stopped mid-epoch after step 3 (past an epoch end with validation and a learning-rate
    change), then resumed to the end: raw and standardised weights, optimiser state and log are the
    same bit for bit as the run that never stopped."""
    straight, straight_out = straight_run
    config = load_config(_run_config(tmp_path, shared_data, fg_cache))
    out = tmp_path / "out"
    assert not Trainer(config, out).run(max_steps=3).finished
    resumed = Trainer(config, out)
    summary = resumed.run(resume=True)
    assert summary.finished and summary.session_steps == 1

    _same_training_state(straight, resumed)
    rows = _log_rows(out)
    assert rows == _log_rows(straight_out)
    assert [r["kind"] for r in rows] == ["train", "train", "val", "train", "train", "val"]
    assert [float(r["lr"]) for r in rows if r["kind"] == "train"] == [1e-3, 1e-3, 5e-4, 5e-4]
    assert all(float(r["val_sad"]) > 0 for r in rows if r["kind"] == "val")
    final = torch.load(out / FINAL, weights_only=True)
    _tensors_equal(final["state_dict"], straight.step.network.state_dict(), "final.pth")


def _same_training_state(a: Trainer, b: Trainer) -> None:
    """Two trainers hold the same modules (raw parameters and buffers) and optimiser states."""
    assert a.step.modules.keys() == b.step.modules.keys()
    for name, module in a.step.modules.items():
        other = dict(b.step.modules[name].named_parameters())
        for key, value in module.named_parameters():
            assert torch.equal(value, other[key]), f"{name}.{key}"
        _tensors_equal(dict(module.named_buffers()), dict(b.step.modules[name].named_buffers()), name)
    for name, optimizer in a.step.optimizers.items():
        _tensors_equal(optimizer.state_dict(), b.step.optimizers[name].state_dict(), name)


@pytest.mark.slow
def test_checkpoints_carry_facts_and_export_like_the_trained_network(
    straight_run: tuple[Trainer, Path], tmp_path: Path
) -> None:
    """final.pth holds standardised weights: loaded, or exported to ONNX, it computes what the trained
    network computes in eval mode, and its facts (validation scores) reach the ONNX metadata."""
    from training.export import export_onnx

    trainer, out = straight_run
    loaded = load_model(out / FINAL)
    assert loaded.name == "fba-resnet18"
    assert loaded.weights["step"] == 4 and loaded.weights["epoch"] == 2
    assert loaded.weights["val_sad"] == trainer.state.validation["sad"]  # type: ignore[index]
    assert len(str(loaded.weights["holdout"]).split(",")) == 5
    assert any(isinstance(m, WSConv2d) and m.standardise_on_forward for m in trainer.step.network.modules())

    image = trainer.validation[0]
    inputs = build_inputs(loaded.model.contract, image.image, image.trimap).arrays
    feeds = {name: inputs[kind][None] for name, kind in loaded.model.contract.inputs}
    live = trainer.step.model.eval()
    with torch.no_grad():
        expected = [t.numpy() for t in live(*(torch.from_numpy(v) for v in feeds.values()))]
        reloaded = [t.numpy() for t in loaded.model(*(torch.from_numpy(v) for v in feeds.values()))]
    trainer.step.train()
    for a, b in zip(expected, reloaded, strict=True):
        np.testing.assert_array_equal(a, b)

    report = export_onnx(
        loaded.name, loaded.model, tmp_path / "trained.onnx", check=False, weights=loaded.weights
    )
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, feeds)
    for a, b in zip(expected, onnx_out, strict=True):
        assert np.abs(a - b).max() < 1e-4
    contract = json.loads(session.get_modelmeta().custom_metadata_map["mattecli.contract"])
    assert contract["weights"]["val_sad"] == loaded.weights["val_sad"]


@pytest.mark.slow
def test_train_command_end_to_end(shared_data: Path, cli, tmp_path: Path) -> None:
    """The shipped smoke config through the CLI: log, checkpoints, JSON; a second start is refused
    without --resume, and --resume on a finished run has nothing left to do."""
    out = tmp_path / "smoke"
    config = CONFIGS / "cpu-smoke-fba.toml"
    result = cli.invoke(app, ["train", str(config), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["finished"] and summary["step"] == summary["total_steps"] == 2
    assert set(summary["validation"]) == {"sad", "mse", "grad", "conn", "mad"}
    assert {"last.pth", "best.pth", "final.pth"} <= set(summary["checkpoints"])
    rows = _log_rows(out)
    assert [r["kind"] for r in rows] == ["train", "train", "val"]
    assert float(rows[-1]["val_sad"]) == summary["validation"]["sad"]
    assert (out / "config.toml").read_text() == config.read_text()

    again = cli.invoke(app, ["train", str(config), "--out", str(out)])
    assert again.exit_code == 4 and "not empty" in again.stderr
    resumed = cli.invoke(app, ["train", str(config), "--out", str(out), "--resume", "--json"])
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["session_steps"] == 0


def test_resume_refuses_a_changed_config(straight_run: tuple[Trainer, Path], tmp_path: Path) -> None:
    trainer, out = straight_run
    changed = tmp_path / "changed.toml"
    changed.write_text(trainer.config.text.replace("lr = 1e-3", "lr = 2e-3"))
    with pytest.raises(InputError, match="different config"):
        Trainer(load_config(changed), out).run(resume=True)


def _tensors_equal(a: object, b: object, where: str = "") -> None:
    """Assert two nested checkpoint structures hold the same values, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _tensors_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where  # type: ignore[arg-type]
        for i, (x, y) in enumerate(zip(a, b, strict=True)):  # type: ignore[call-overload]
            _tensors_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.slow
def test_alphagan_resumes_its_discriminator_exactly(
    shared_data: Path, fg_cache: Path, tmp_path: Path
) -> None:
    """AlphaGAN's smoke config (two networks, two optimisers) trains, validates and resumes
    exactly: one step, resume, one step equals two steps in one go."""
    config = load_config(CONFIGS / "cpu-smoke-alphagan.toml")
    config = replace(config, data=replace(config.data, cache=fg_cache))
    straight = Trainer(config, tmp_path / "straight")
    summary = straight.run()
    assert summary.finished and summary.validation is not None
    assert all(np.isfinite(v) for v in summary.validation.values())
    rows = _log_rows(tmp_path / "straight")
    assert [r["kind"] for r in rows] == ["train", "train", "val"]
    assert load_model(tmp_path / "straight" / FINAL).name == "alphagan"

    Trainer(config, tmp_path / "split").run(max_steps=1)
    resumed = Trainer(config, tmp_path / "split")
    assert resumed.run(resume=True).finished
    assert set(resumed.step.optimizers) == {"main", "discriminator"}
    _same_training_state(straight, resumed)
    assert _log_rows(tmp_path / "split") == rows


def test_trimap_free_validation_scores_the_whole_image(shared_data: Path, fg_cache: Path) -> None:
    """GFM's smoke config validates without trimaps: the network sees the photo alone, and the
    metrics cover every pixel (the trimap-free protocol), so no trimap is read."""
    config = load_config(CONFIGS / "cpu-smoke-gfm.toml")
    trainer = Trainer(replace(config, data=replace(config.data, cache=fg_cache)), Path("unused"))
    assert [v.trimap for v in trainer.validation] == [None]
    scores = validate(trainer.step, trainer.validation, trainer.config)
    assert set(scores) == {"sad", "mse", "grad", "conn", "mad"} and all(np.isfinite(list(scores.values())))
    assert trainer.step.network.training  # validation hands the network back in training mode
