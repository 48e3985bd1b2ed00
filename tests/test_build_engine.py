"""``mattecli build-engine``: the checks on the ONNX file it is fed, and the command's exit codes.

The ONNX files are small conv nets built here with ``onnx.helper`` (two inputs, the registry's
``alphagan`` contract in the metadata), so every check runs on real files. TensorRT cannot be
installed on CI, so the command's happy path ends at exit code 3 there; the ``gpu`` test builds a
real engine where TensorRT and a CUDA GPU exist and compares it with ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from engines.profiles import explicit_profile, tile_profiles
from engines.trt_build import check_profiles, inspect_onnx
from mattecli.cli import app
from mattecli.errors import EXIT_BAD_INPUT, EXIT_UNAVAILABLE, InputError
from mattecli.models import METADATA_KEY, contract_for

CONTRACT = contract_for("alphagan")  # image (3 ch) + trimap_1ch (1 ch) -> alpha, size multiple 8


def tiny_model(
    *,
    size: tuple[int | str, int | str] = ("height", "width"),
    opset: int = 21,
    contract: bool = True,
    trimap_name: str = "trimap",
) -> onnx.ModelProto:
    """image, trimap -> Concat -> Conv3x3 -> Relu -> Conv1x1 -> Sigmoid -> alpha, with seeded weights."""
    rng = np.random.default_rng(0)
    h, w = size
    weights = {
        "w1": rng.normal(0, 0.5, (8, 4, 3, 3)).astype(np.float32),
        "b1": rng.normal(0, 0.1, 8).astype(np.float32),
        "w2": rng.normal(0, 0.5, (1, 8, 1, 1)).astype(np.float32),
        "b2": np.zeros(1, np.float32),
    }
    nodes = [
        helper.make_node("Concat", ["image", trimap_name], ["x"], axis=1),
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2", "b2"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["alpha"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, h, w]),
            helper.make_tensor_value_info(trimap_name, TensorProto.FLOAT, ["batch", 1, h, w]),
        ],
        [helper.make_tensor_value_info("alpha", TensorProto.FLOAT, ["batch", 1, h, w])],
        [numpy_helper.from_array(v, name=k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    if contract:
        model.metadata_props.add(key=METADATA_KEY, value=CONTRACT.to_json())
    return model


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float16.convert_float_to_float16(model, keep_io_types=True)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def tiny_onnx(tmp_path: Path) -> Path:
    return save(tiny_model(), tmp_path / "tiny.onnx")


# ---------------------------------------------------------------------------------------------
# The ONNX file it is fed


def test_good_file_facts(tiny_onnx: Path) -> None:
    facts = inspect_onnx(tiny_onnx)
    assert facts.contract == CONTRACT
    assert facts.opset == 21
    assert facts.input_channels == {"image": 3, "trimap": 1}
    assert [i.kind for i in facts.inputs] == ["image", "trimap_1ch"]
    assert all(i.static == {} and i.dtype == "FLOAT" for i in facts.inputs)
    assert (facts.precision, facts.fp32_initializers, facts.fp16_initializers) == ("fp32", 4, 0)
    assert facts.sha256 == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()


def test_fp16_file_is_recognised_and_keeps_float32_io(tmp_path: Path) -> None:
    path = save(to_fp16(tiny_model()), tmp_path / "tiny-fp16.onnx")
    facts = inspect_onnx(path, fp16=True)
    assert facts.precision == "fp16"
    assert facts.fp16_initializers == 4 and facts.fp32_initializers == 0
    assert {i.dtype for i in facts.inputs} == {"FLOAT"}  # keep_io_types: the engine is fed float32


def test_fp16_requested_for_an_fp32_file_is_refused(tiny_onnx: Path) -> None:
    with pytest.raises(InputError) as info:
        inspect_onnx(tiny_onnx, fp16=True)
    assert "--fp16 was given but this file holds only fp32 weights (4 fp32, no fp16)" in info.value.message
    assert "mattecli export --fp16" in info.value.hint


def test_file_without_contract_is_refused(tmp_path: Path) -> None:
    path = save(tiny_model(contract=False), tmp_path / "plain.onnx")
    with pytest.raises(InputError) as info:
        inspect_onnx(path)
    assert "no mattecli contract" in info.value.message and info.value.path == path


def test_static_sizes_are_reported_and_only_matching_profiles_pass(tmp_path: Path) -> None:
    facts = inspect_onnx(save(tiny_model(size=(64, 96)), tmp_path / "static.onnx"))
    assert [i.static for i in facts.inputs] == [{"height": 64, "width": 96}] * 2
    with pytest.raises(InputError) as info:
        check_profiles(facts, tile_profiles(64, 4, 8))
    message = info.value.message
    assert "input 'image' has a fixed height of 64, the profile asks 8..64" in message
    assert "input 'trimap' has a fixed width of 96, the profile asks 8..64" in message
    assert "height=64, width=96" in info.value.hint
    check_profiles(facts, [explicit_profile((1, 64, 96), (4, 64, 96), (8, 64, 96), 8)])  # batch stays dynamic


def test_low_opset_is_refused(tmp_path: Path) -> None:
    path = save(tiny_model(opset=13), tmp_path / "old.onnx")
    with pytest.raises(InputError, match="opset 13; TensorRT engines need opset 17 or later"):
        inspect_onnx(path)


def test_external_weights_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "split.onnx"
    onnx.save(
        tiny_model(), str(path), save_as_external_data=True, location="split.onnx.data", size_threshold=0
    )
    assert (tmp_path / "split.onnx.data").is_file()
    with pytest.raises(
        InputError, match=r"4 weights are stored outside the ONNX file \(in split.onnx.data\)"
    ):
        inspect_onnx(path)


def test_inputs_that_differ_from_the_contract_are_refused(tmp_path: Path) -> None:
    path = save(tiny_model(trimap_name="mask"), tmp_path / "renamed.onnx")
    with pytest.raises(
        InputError,
        match=r"contract names inputs \['trimap'\] that the graph lacks; the graph has inputs \['mask'\]",
    ):
        inspect_onnx(path)


def test_missing_and_non_onnx_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ONNX file not found"):
        inspect_onnx(tmp_path / "nothing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xff this is not a protobuf \x12\x99")
    with pytest.raises(InputError, match="not a readable ONNX file"):
        inspect_onnx(junk)


def test_an_engine_on_disk_is_kept_only_when_it_is_exactly_this_build(
    tmp_path: Path, tiny_onnx: Path
) -> None:
    """The engine cache: same TensorRT, GPU, ONNX bytes, profiles and flags, and untouched engine bytes."""
    from dataclasses import replace

    from engines.sidecar import EngineSidecar, write_sidecar
    from engines.trt_build import _existing_build

    facts = inspect_onnx(tiny_onnx)
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(b"plan bytes")
    built = EngineSidecar(
        tensorrt_version="10.14.1.48",
        gpu_name="NVIDIA L4",
        compute_capability=(8, 9),
        onnx_file=str(tiny_onnx),
        onnx_sha256=facts.sha256,
        engine_sha256=hashlib.sha256(b"plan bytes").hexdigest(),
        profiles=tile_profiles(64, 2, 8),
        input_channels=facts.input_channels,
        precision=facts.precision,
        contract=facts.contract,
        mattecli_version="0.1.0",
    )
    write_sidecar(engine, built)
    planned = replace(built, engine_sha256="", created="later")
    assert _existing_build(engine, planned) == built
    assert _existing_build(engine, replace(planned, profiles=tile_profiles(128, 2, 8))) is None
    assert _existing_build(engine, replace(planned, tensorrt_version="10.16.1.11")) is None
    engine.write_bytes(b"other plan bytes")
    assert _existing_build(engine, planned) is None


def test_describe_profiles() -> None:
    from engines.trt_build import describe_profiles

    assert describe_profiles(tile_profiles(512, 4, 32, max_size=1000)) == (
        "  profile 0: N 1..4 (opt 4), HxW 32x32..512x512 (opt 512x512)\n"
        "  profile 1: N 1..1 (opt 1), HxW 32x32..1024x1024 (opt 1024x1024)"
    )


# ---------------------------------------------------------------------------------------------
# The command


def _run(cli: CliRunner, *args: str | Path):  # type: ignore[no-untyped-def]
    return cli.invoke(app, ["build-engine", *map(str, args)])


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_good_file_without_tensorrt_exits_3_naming_what_to_install(cli: CliRunner, tiny_onnx: Path) -> None:
    result = _run(cli, tiny_onnx, "--tile", "64", "--batch", "2")
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert "TensorRT is not installed" in result.stderr
    assert 'pip install -e ".[gpu]"' in result.stderr
    assert result.stdout == ""
    assert not (tiny_onnx.parent / "tiny.engine").exists()
    assert not (tiny_onnx.parent / "tiny.engine.json").exists()


def test_bad_file_exits_4_before_tensorrt_is_needed(cli: CliRunner, tmp_path: Path) -> None:
    path = save(tiny_model(contract=False), tmp_path / "plain.onnx")
    result = _run(cli, path)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "no mattecli contract" in result.stderr and "TensorRT" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tile", "500"], "--tile 500 is not a multiple of this model's size multiple 8"),
        (["--min", "1x8x8"], "--min, --opt and --max go together"),
        (["--min", "1x8x8", "--opt", "2x64x64", "--max", "2x64x64", "--tile", "64"], "replace --tile"),
        (["--min", "1x8x8", "--opt", "4x64x64", "--max", "2x64x60"], "batch must satisfy min <= opt <= max"),
        (["--min", "1x8x8", "--opt", "2x64x64", "--max", "2x64x60"], "width 60 not a multiple of 8"),
        (["--fp16"], "--fp16 was given but this file holds only fp32 weights"),
        (["--device", "cpu"], "TensorRT runs on NVIDIA GPUs only, not on cpu"),
        (["--device", "gpu0"], "unknown device 'gpu0'"),
    ],
)
def test_option_mistakes_exit_4(cli: CliRunner, tiny_onnx: Path, args: list[str], expected: str) -> None:
    result = _run(cli, tiny_onnx, *args)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert expected in result.stderr


def test_help_lists_examples(cli: CliRunner) -> None:
    result = cli.invoke(app, ["build-engine", "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    assert "mattecli build-engine fba.onnx --min 1x64x64 --opt 4x512x512 --max 4x512x512" in result.stdout
    assert 'pip install -e ".[gpu]"' in result.stdout


# ---------------------------------------------------------------------------------------------
# On a GPU machine: build a real engine and compare it with ONNX Runtime


def _cuda_torch() -> bool:
    if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_torch(), reason="needs TensorRT and a CUDA build of torch with a GPU")
@pytest.mark.parametrize("fp16", [False, True])
def test_engine_matches_onnxruntime(cli: CliRunner, tmp_path: Path, fp16: bool) -> None:
    import tensorrt

    from engines.base import open_engine
    from engines.sidecar import read_sidecar, sidecar_path

    model = to_fp16(tiny_model()) if fp16 else tiny_model()
    onnx_path = save(model, tmp_path / "tiny.onnx")
    engine_path = tmp_path / "tiny.engine"
    args = [onnx_path, "-o", engine_path, "--tile", "64", "--batch", "2", "--max-size", "100", "--json"]
    result = _run(cli, *args, *(["--fp16"] if fp16 else []))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["precision"] == ("fp16" if fp16 else "fp32")
    assert report["tensorrt_version"] == tensorrt.__version__
    assert report["kept_existing"] is False
    assert (tmp_path / "tiny.timing-cache").stat().st_size > 0
    sidecar = read_sidecar(engine_path)
    assert sidecar.onnx_sha256 == hashlib.sha256(onnx_path.read_bytes()).hexdigest()

    # fp16: both runtimes round to fp16 (each measured within 9e-4 of fp32 on ORT), so twice that.
    tolerance = 2e-3 if fp16 else 1e-3
    rng = np.random.default_rng(1)
    trt_engine = open_engine("trt", engine_path, "cuda:0")
    ort_engine = open_engine("ort", onnx_path, "cpu")
    try:
        # full tile batch, a short batch of small tiles, a whole padded frame (second profile)
        for n, h, w in ((2, 64, 64), (1, 24, 40), (1, 104, 96)):
            feed = {
                "image": rng.random((n, 3, h, w), dtype=np.float32),
                "trimap_1ch": rng.choice([0.0, 0.5, 1.0], (n, 1, h, w)).astype(np.float32),
            }
            got, want = trt_engine.infer(feed)["alpha"], ort_engine.infer(feed)["alpha"]
            assert got.dtype == np.float32 and got.shape == (n, 1, h, w)
            assert float(np.abs(got - want).max()) < tolerance
        with pytest.raises(InputError, match="outside every optimisation profile"):
            too_many = {kind: np.concatenate([v, v, v]) for kind, v in feed.items()}  # 3 > batch 1 and 2
            trt_engine.infer(too_many)
    finally:
        trt_engine.close()

    again = _run(cli, *args)
    assert again.exit_code == 0 and json.loads(again.stdout)["kept_existing"] is True

    data = json.loads(sidecar_path(engine_path).read_text())
    sidecar_path(engine_path).write_text(json.dumps({**data, "gpu_name": "Some Other GPU"}))
    with pytest.raises(InputError, match="GPU model differs"):
        open_engine("trt", engine_path, "cuda:0")
