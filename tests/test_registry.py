"""The torch half of the model registry: constructors, contract wrappers and checkpoint loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mattecli.errors import InputError
from mattecli.models import CONTRACTS
from mattecli.preprocess import imagenet_normalise
from training.registry import (
    RANDOM_WEIGHTS_NOTE,
    REGISTRY,
    build,
    checkpoint_dict,
    inference_model,
    load_model,
    random_model,
    sample_inputs,
)

OUTPUT_CHANNELS = {"alpha": 1, "foreground": 3, "background": 3, "trimap_logits": 3}


def _run(model, feeds):
    with torch.no_grad():
        return model(*(torch.from_numpy(feeds[name]) for name in model.input_names))


def test_every_contract_has_a_constructor():
    assert set(REGISTRY) == set(CONTRACTS)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(InputError) as err:
        build("fba-resnet99")
    assert "fba-resnet50" in str(err.value) and "gfm-tt" in str(err.value)


# One model per wrapper class and output layout (test_export.py checks every model's outputs).
@pytest.mark.parametrize("name", ["fba-resnet18", "gfm-ft", "alphagan", "adamatting", "lsa"])
def test_wrapper_follows_its_contract(name):
    """Contract inputs in, contract outputs out: count, order, shape and range."""
    model = inference_model(name)
    contract = model.contract
    feeds = sample_inputs(contract, 1, 64, 96)
    assert list(feeds) == [n for n, _ in contract.inputs]
    outputs = _run(model, feeds)
    assert isinstance(outputs, tuple) and len(outputs) == len(contract.outputs)
    for out, (_, kind) in zip(outputs, contract.outputs, strict=True):
        assert out.shape == (1, OUTPUT_CHANNELS[kind], 64, 96)
        assert torch.isfinite(out).all()
        if kind in ("alpha", "foreground", "background"):
            assert out.min() >= 0.0 and out.max() <= 1.0


def test_wrapper_normalises_the_image_inside():
    """GFM's wrapper feeds the network exactly ImageNet-normalised RGB (mattecli.preprocess's)."""
    model = inference_model("gfm-tt")
    image = sample_inputs(model.contract, 1, 64, 96)["image"]
    normalised = imagenet_normalise(image.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    with torch.no_grad():
        (alpha,) = model(torch.from_numpy(image))
        direct = model.network(torch.from_numpy(np.ascontiguousarray(normalised))).alpha
    assert torch.equal(alpha, direct)


def test_random_model_is_seeded_labelled_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = random_model("fba-resnet18", seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    b = random_model("fba-resnet18", seed=7)
    c = random_model("fba-resnet18", seed=8)
    key = "network.encoder.conv1.weight"
    assert torch.equal(a.model.state_dict()[key], b.model.state_dict()[key])
    assert not torch.equal(a.model.state_dict()[key], c.model.state_dict()[key])
    assert a.weights == {"random": True, "seed": 7, "note": RANDOM_WEIGHTS_NOTE}


@pytest.fixture(scope="module")
def fba18():
    return random_model("fba-resnet18", seed=3).model


def test_mattecli_checkpoint_names_its_model(tmp_path, fba18):
    path = tmp_path / "best.pth"
    torch.save(checkpoint_dict("fba-resnet18", fba18.network, epoch=12, val_sad=41.5), path)
    loaded = load_model(path)
    assert loaded.name == "fba-resnet18"
    assert loaded.weights["epoch"] == 12 and loaded.weights["val_sad"] == 41.5
    assert loaded.weights["source"] == "best.pth" and len(loaded.weights["sha256"]) == 64
    assert not loaded.model.training
    feeds = sample_inputs(fba18.contract, 1, 64, 96)
    for ours, theirs in zip(_run(loaded.model, feeds), _run(fba18, feeds), strict=True):
        assert torch.equal(ours, theirs)


def test_public_layout_checkpoint_needs_a_name(tmp_path, fba18):
    """A bare state dict saved from DataParallel (``module.`` keys), like the public FBA.pth."""
    path = tmp_path / "FBA.pth"
    torch.save({f"module.{k}": v for k, v in fba18.network.state_dict().items()}, path)
    with pytest.raises(InputError, match="does not say which model") as err:
        load_model(path)
    assert "--model" in str(err.value) and str(path) in str(err.value)
    loaded = load_model(path, "fba-resnet18")
    assert torch.equal(
        loaded.model.network.state_dict()["decoder.conv_up4.4.weight"],
        fba18.network.state_dict()["decoder.conv_up4.4.weight"],
    )


def test_checkpoint_for_another_model_is_refused(tmp_path, fba18):
    path = tmp_path / "r18.pth"
    torch.save(checkpoint_dict("fba-resnet18", fba18.network), path)
    with pytest.raises(InputError, match="is for 'fba-resnet18', not 'fba-resnet50'"):
        load_model(path, "fba-resnet50")
    bare = tmp_path / "bare.pth"
    torch.save(fba18.network.state_dict(), bare)
    with pytest.raises(InputError, match="does not match the network") as err:
        load_model(bare, "fba-resnet50")
    assert "mis-shaped" in str(err.value) and "fba-resnet50" in str(err.value)


def test_unreadable_checkpoint_is_an_input_error(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read this as a PyTorch checkpoint"):
        load_model(path, "fba-resnet18")
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "missing.pth", "fba-resnet18")


def test_inference_model_is_in_eval_mode():
    model = inference_model("fba-resnet18")
    assert not model.training and not model.network.training


def test_sample_inputs_are_seeded_trimap_encodings():
    """Parity inputs: the pipeline's encodings of a blob trimap with all three regions."""
    fba = CONTRACTS["fba-resnet18"]
    a = sample_inputs(fba, 2, 64, 96, seed=1)
    assert all(np.array_equal(a[k], v) for k, v in sample_inputs(fba, 2, 64, 96, seed=1).items())
    assert not np.array_equal(a["image"], sample_inputs(fba, 2, 64, 96, seed=2)["image"])
    two = a["trimap"]
    assert set(np.unique(two)) == {0.0, 1.0} and two.shape == (2, 2, 64, 96)
    unknown = 1.0 - two.sum(axis=1)
    assert 0.05 < unknown.mean() < 0.6 and two[:, 0].mean() > 0.05 and two[:, 1].mean() > 0.05
    gauss = a["trimap_gauss"]
    assert gauss.shape == (2, 6, 64, 96) and gauss.min() >= 0.0 and gauss.max() == 1.0
    one = sample_inputs(CONTRACTS["lsa"], 1, 64, 96)["trimap"]
    assert set(np.unique(one)) == {0.0, 0.5, 1.0}


def test_alphagan_margin_marks_pixels_near_pooling_ties():
    model = random_model("alphagan").model
    feeds = sample_inputs(model.contract, 1, 64, 96)
    with torch.no_grad():
        (alpha,), margin = model.forward_with_margin(*(torch.from_numpy(feeds[n]) for n in model.input_names))
        (direct,) = model(*(torch.from_numpy(feeds[n]) for n in model.input_names))
    assert torch.equal(alpha, direct) and margin.shape == (1, 1, 64, 96)
    assert margin.min() >= 0 and 0.0 < (margin < 1e-3).float().mean() < 1.0
