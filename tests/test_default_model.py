"""The packaged default model: it ships, `run` uses it without --model, `info` names it, and it
is the committed trained weights (not a stand-in) and mattes a held-out photo far better than a
trimap's grey band.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mattecli.cli import app
from mattecli.default_model import DEFAULT_MODEL_FILE, default_model_contract
from mattecli.media.imageio import read_gray, read_image
from mattecli.metrics import sad

WEIGHTS = Path(__file__).parents[1] / "training" / "results" / "bandmatte" / "weights.pth"
MODEL_NAME = "bandmatte-lite0"
MAX_MB = 50


def test_the_default_model_ships_with_its_facts() -> None:
    assert DEFAULT_MODEL_FILE.is_file()
    assert DEFAULT_MODEL_FILE.stat().st_size <= MAX_MB * 1e6
    contract = default_model_contract()
    assert contract.name == MODEL_NAME and contract.fusion == "fba"
    assert "random" not in contract.weights
    holdout = str(contract.weights["holdout"]).split(",")
    assert len(holdout) >= 5 and all(name.startswith("GT") for name in holdout)
    assert float(contract.weights["val_sad"]) > 0  # type: ignore[arg-type]


def test_info_names_the_default_model() -> None:
    result = CliRunner().invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.stderr
    default = json.loads(result.stdout)["default_model"]
    assert default["installed"] and default["model"] == MODEL_NAME
    assert default["file"] == str(DEFAULT_MODEL_FILE)
    assert "val_sad" in default["weights"] and "holdout" in default["weights"]


def test_the_onnx_is_the_committed_weights(shared_data: Path) -> None:
    """ONNX Runtime on the packaged file and torch on the committed checkpoint agree on a real crop."""
    torch = pytest.importorskip("torch")
    from engines.base import parse_device
    from engines.onnxruntime import OrtEngine
    from engines.torch import TorchEngine
    from mattecli.band_predictor import BandPlan
    from mattecli.inputs import FrameInputs

    image = read_image(shared_data / "alphamatting" / "image" / "GT07.png")
    trimap = read_gray(shared_data / "alphamatting" / "trimap" / "GT07.png")
    ort_engine = OrtEngine(DEFAULT_MODEL_FILE, parse_device("cpu"))
    torch_engine = TorchEngine(WEIGHTS, parse_device("cpu"))
    feed = BandPlan(FrameInputs(ort_engine.contract, image.astype(np.float32) / 255.0, trimap)).feed()
    assert len(feed["band_patches"]) > 100  # the photo's real unknown band
    with torch.no_grad():
        expected = torch_engine.infer(feed)
    got = ort_engine.infer(feed)
    for kind in ("alpha", "foreground", "background"):
        np.testing.assert_allclose(got[kind], expected[kind], atol=1e-4)


def test_run_without_model_mattes_a_held_out_photo(shared_data: Path, tmp_path: Path) -> None:
    """GT07 is held out from training; the matte must beat the trimap's own 0.5 guess by far."""
    photo = shared_data / "alphamatting" / "image" / "GT07.png"
    trimap_path = shared_data / "alphamatting" / "trimap" / "GT07.png"
    assert "GT07" in str(default_model_contract().weights["holdout"])
    result = CliRunner().invoke(
        app, ["run", str(photo), "-t", str(trimap_path), "-o", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["model_file"] == str(DEFAULT_MODEL_FILE) and summary["model"] == MODEL_NAME
    alpha = read_gray(tmp_path / "alpha" / "GT07.png")
    trimap = read_gray(trimap_path)
    gt = read_gray(shared_data / "alphamatting" / "alpha" / "GT07.png")
    assert alpha.shape == gt.shape
    assert (alpha[trimap == 0] == 0).all() and (alpha[trimap == 255] == 65535).all()
    grey = np.where(trimap == 128, 0.5, trimap / 255.0)
    model_sad = sad(alpha / 65535.0, gt, trimap)
    assert model_sad < 0.5 * sad(grey, gt, trimap)  # 6.7 against 22.7 measured
