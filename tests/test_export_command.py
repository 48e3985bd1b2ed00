"""``mattecli export`` end to end: random weights, a public-layout checkpoint, and clean failures."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from mattecli.cli import app
from mattecli.commands import export as export_cmd
from mattecli.models import METADATA_KEY, ModelContract
from training.registry import random_model, sha256_file


@pytest.fixture(scope="module")
def public_fba18(tmp_path_factory):
    """A bare FBA-ResNet-18 state dict saved from DataParallel (``module.`` keys), like FBA.pth."""
    path = tmp_path_factory.mktemp("ckpt") / "FBA18.pth"
    network = random_model("fba-resnet18", seed=4).model.network
    torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, path)
    return path


def _contract(path) -> ModelContract:
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return ModelContract.from_json(meta[METADATA_KEY])


def test_random_weights_fp16_json(cli, tmp_path):
    out = tmp_path / "r18.onnx"
    result = cli.invoke(
        app, ["export", "fba-resnet18", "--random-weights", "--fp16", "-o", str(out), "--json"]
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)  # stdout holds the JSON document and nothing else
    assert report["model"] == "fba-resnet18" and report["precision"] == "fp16"
    assert report["parity_max_abs"] < 1e-4
    assert 0 < report["fp16_max_abs"] < 2e-2  # FBA's fp16 bound, see tests/test_export.py
    assert [d["size"] for d in report["parity"]] == [[1, 96, 128], [2, 160, 224]]
    assert report["file_bytes"] == out.stat().st_size
    contract = _contract(out)
    assert contract.name == "fba-resnet18" and contract.weights["random"] is True
    proto = onnx.load(str(out))
    assert {t.data_type for t in proto.graph.initializer if t.data_type != onnx.TensorProto.INT64} == {
        onnx.TensorProto.FLOAT16
    }
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_public_checkpoint_with_model_name(cli, tmp_path, public_fba18):
    out = tmp_path / "fba.onnx"
    result = cli.invoke(app, ["export", str(public_fba18), "--model", "fba-resnet18", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "parity ONNX Runtime vs torch: max abs diff" in result.stderr
    assert "fba-resnet18" in result.stderr and "MB" in result.stderr
    assert "torchvision" not in result.stderr and "Warning" not in result.stderr  # exporter chatter
    weights = _contract(out).weights
    assert weights["source"] == "FBA18.pth" and weights["sha256"] == sha256_file(public_fba18)
    assert "random" not in weights


def _fails_cleanly(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.stderr.startswith("error:")
    for needle in needles:
        assert needle in result.stderr


def test_wrong_checkpoint_is_a_clean_error(cli, tmp_path, public_fba18):
    out = tmp_path / "x.onnx"
    result = cli.invoke(app, ["export", str(public_fba18), "--model", "fba-resnet50", "-o", str(out)])
    _fails_cleanly(result, 4, "does not match the network", "FBA18.pth")
    assert not out.exists()


def test_unnamed_checkpoint_asks_for_model(cli, tmp_path, public_fba18):
    result = cli.invoke(app, ["export", str(public_fba18), "-o", str(tmp_path / "x.onnx")])
    _fails_cleanly(result, 4, "does not say which model", "--model")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["fba-resnet18"], ["--weights FILE", "--random-weights"]),
        (["fba-resnet99"], ["unknown model name", "fba-resnet50"]),
        (["missing/FBA.pth"], ["checkpoint file not found"]),
        (["fba-resnet18", "--weights", "w.pth", "--random-weights"], ["exclude each other"]),
        (["gfm-tt", "--model", "lsa", "--random-weights"], ["SOURCE names 'gfm-tt'"]),
    ],
)
def test_bad_arguments_are_clean_errors(cli, tmp_path, args, needles):
    result = cli.invoke(app, ["export", *args, "-o", str(tmp_path / "x.onnx")])
    _fails_cleanly(result, 4, *needles)


def test_missing_torch_is_unavailable(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(export_cmd, "_NEEDS", ("torch", "a_module_that_is_not_installed"))
    result = cli.invoke(app, ["export", "lsa", "--random-weights", "-o", str(tmp_path / "x.onnx")])
    _fails_cleanly(result, 3, "a_module_that_is_not_installed", "torch extra")


def test_opset_below_21_is_a_usage_error(cli, tmp_path):
    args = ["export", "lsa", "--random-weights", "--opset", "17", "-o", str(tmp_path / "x")]
    result = cli.invoke(app, args)
    assert result.exit_code == 2


def test_help_has_examples(cli):
    result = cli.invoke(app, ["export", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "mattecli export FBA.pth --model fba-resnet50 -o fba.onnx" in result.stdout
    assert "--random-weights" in result.stdout and "gfm-tt" in result.stdout
