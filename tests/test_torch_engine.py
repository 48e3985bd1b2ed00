"""The PyTorch engine: parity with ONNX Runtime, checkpoint layouts, and devices refused, not swapped."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import engines.torch as torch_engine  # noqa: E402
from engines.base import Device, open_engine  # noqa: E402
from engines.torch import TorchEngine  # noqa: E402
from mattecli.errors import EXIT_UNAVAILABLE, InputError, UnavailableError  # noqa: E402
from mattecli.inputs import build_inputs  # noqa: E402
from mattecli.media.imageio import read_gray, read_image  # noqa: E402
from mattecli.models import contract_for  # noqa: E402
from training.export import export_onnx  # noqa: E402
from training.registry import checkpoint_dict, random_model  # noqa: E402

MODEL = "fba-resnet18"
# 128 x 160 (non-square, multiples of FBA's 8) of GT01 with background, unknown band and foreground.
CROP = np.s_[80:208, 416:576]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One set of seeded random weights as a mattecli checkpoint, an ONNX file and a bare state dict."""
    loaded = random_model(MODEL, seed=0)
    folder = tmp_path_factory.mktemp("fba")
    paths = {"checkpoint": folder / "fba.pth", "onnx": folder / "fba.onnx", "bare": folder / "bare.pth"}
    torch.save(checkpoint_dict(MODEL, loaded.model.network), paths["checkpoint"])
    # As saved from DataParallel, the public FBA.pth's layout: no model name, "module." keys.
    state = loaded.model.network.state_dict()
    torch.save({f"module.{k}": v for k, v in state.items()}, paths["bare"])
    export_onnx(MODEL, loaded.model, paths["onnx"], check=False, weights=loaded.weights)
    return paths


@pytest.fixture(scope="module")
def crop(shared_data: Path) -> dict[str, np.ndarray]:
    """A real image crop and its Trimap1 in FBA's encodings as ``run`` builds them (1xCxHxW)."""
    root = shared_data / "alphamatting"
    rgb = read_image(root / "image" / "GT01.png")[CROP].astype(np.float32) / 255.0
    trimap = read_gray(root / "trimap" / "GT01.png")[CROP]
    assert {0, 128, 255} <= set(np.unique(trimap).tolist())
    return {kind: a[None] for kind, a in build_inputs(contract_for(MODEL), rgb, trimap).arrays.items()}


@pytest.fixture(scope="module")
def engine(files: dict[str, Path]) -> TorchEngine:
    return open_engine("torch", files["checkpoint"], "cpu")  # type: ignore[return-value]


def test_matches_onnxruntime_on_a_real_crop(
    files: dict[str, Path], crop: dict[str, np.ndarray], engine: TorchEngine
) -> None:
    ort_engine = open_engine("ort", files["onnx"], "cpu")
    batch = {kind: np.concatenate([a, a[..., ::-1]]) for kind, a in crop.items()}  # and its mirror
    ours, theirs = engine.infer(batch), ort_engine.infer(batch)
    assert set(ours) == set(theirs) == {"alpha", "foreground", "background"}
    for kind, value in ours.items():
        assert value.dtype == np.float32
        assert value.shape == theirs[kind].shape == (2, 1 if kind == "alpha" else 3, 128, 160)
        assert np.abs(value - theirs[kind]).max() < 1e-4, kind
    # Not a constant map: the comparison is over outputs that vary with the image.
    assert ours["alpha"].std() > 1e-3 and ours["foreground"].std() > 1e-3
    assert engine.contract.name == ort_engine.contract.name == MODEL
    assert engine.contract.inputs == ort_engine.contract.inputs


def test_contiguous_float32_inputs_are_shared_not_copied(
    engine: TorchEngine, crop: dict[str, np.ndarray]
) -> None:
    tensors = engine.tensors(crop)
    assert [tuple(t.shape[1:2]) for t in tensors] == [(3,), (2,), (6,)]  # contract order
    assert np.shares_memory(tensors[0].numpy(), crop["image"])
    strided = {**crop, "image": crop["image"][..., ::-1]}  # a view torch cannot share: copied once
    assert not np.shares_memory(engine.tensors(strided)[0].numpy(), crop["image"])


def test_weights_are_frozen_and_model_is_exposed(engine: TorchEngine) -> None:
    assert engine.name == "torch" and str(engine.device) == "cpu"
    assert engine.model.contract.name == MODEL
    assert not engine.model.training
    assert not any(p.requires_grad for p in engine.model.parameters())


def test_bare_state_dict_with_module_prefix(
    files: dict[str, Path], crop: dict[str, np.ndarray], engine: TorchEngine
) -> None:
    bare = open_engine("torch", files["bare"], "cpu", model_name=MODEL)
    expected = engine.infer(crop)
    for kind, value in bare.infer(crop).items():
        assert np.array_equal(value, expected[kind]), kind
    with pytest.raises(InputError, match="does not say which model it holds") as info:
        TorchEngine(files["bare"], Device("cpu"))
    assert info.value.path == files["bare"] and "fba-resnet50" in str(info.value)


def test_wrong_model_name_for_a_bare_state_dict(files: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="does not match the network") as info:
        TorchEngine(files["bare"], Device("cpu"), model_name="fba-resnet34")
    assert info.value.path == files["bare"]


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="checkpoint file not found"):
        open_engine("torch", tmp_path / "absent.pth", "cpu", model_name=MODEL)


def test_absent_cuda_device_is_refused_not_replaced(files: dict[str, Path]) -> None:
    """One past the last CUDA device is never there; the message says what is."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(UnavailableError) as info:
        open_engine("torch", files["checkpoint"], f"cuda:{count}")
    if not torch.backends.cuda.is_built():
        expected = f"this torch build has no CUDA (device cuda:{count} was asked for)"
    elif count == 0:
        expected = f"torch sees no CUDA device (device cuda:{count} was asked for)"
    else:
        expected = f"only {count} CUDA device{'' if count == 1 else 's'} here"
    assert str(info.value).startswith(expected)
    assert info.value.exit_code == EXIT_UNAVAILABLE
    assert ("--device cpu" if count == 0 else f"cuda:{count - 1}") in str(info.value)


def test_unknown_device_string(files: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="unknown device 'gpu0'"):
        open_engine("torch", files["checkpoint"], "gpu0")


def test_threads_are_applied(files: dict[str, Path]) -> None:
    before = torch.get_num_threads()
    try:
        open_engine("torch", files["checkpoint"], "cpu", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_without_torch_the_engine_says_what_to_install(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch_engine, "torch", None)  # as on the base install
    with pytest.raises(UnavailableError, match="needs PyTorch") as info:
        open_engine("torch", files["checkpoint"], "cpu")
    assert "mattecli[torch]" in str(info.value)


def test_an_onnx_file_is_not_a_checkpoint(files: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="cannot read this as a PyTorch checkpoint") as info:
        open_engine("torch", files["onnx"], "cpu")
    assert info.value.path == files["onnx"]
    assert "weights_only" not in str(info.value)  # torch's advice to unpickle unsafely is not passed on


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (argparse.Namespace(lr=1e-5), "argparse.Namespace"),  # training options saved beside the weights
        (torch.nn.Linear(2, 2), "torch.nn.modules.linear.Linear"),  # a whole module pickled
    ],
)
def test_a_checkpoint_with_python_objects_is_refused_without_torchs_unsafe_advice(
    files: dict[str, Path], tmp_path: Path, extra: object, named: str
) -> None:
    state = torch.load(files["checkpoint"], weights_only=True)
    path = tmp_path / "with-objects.pth"
    torch.save({**state, "extra": extra}, path)
    with pytest.raises(InputError) as info:
        open_engine("torch", path, "cpu")
    text = str(info.value)
    assert info.value.path == path
    assert "not a plain state dict or mattecli checkpoint" in text and named in text
    assert "model.state_dict()" in text
    assert "weights_only=False" not in text and "add_safe_globals" not in text and "\x1b" not in text


def test_a_text_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(InputError, match="cannot read this as a PyTorch checkpoint") as info:
        open_engine("torch", path, "cpu", model_name=MODEL)
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)


def test_accepts_any_size_once_every_input_is_there(engine: TorchEngine) -> None:
    shapes = {"image": (1, 3, 600, 800), "trimap_2ch": (1, 2, 600, 800), "trimap_gauss6": (1, 6, 600, 800)}
    assert engine.accepts(shapes)
    assert not engine.accepts({k: v for k, v in shapes.items() if k != "trimap_gauss6"})
