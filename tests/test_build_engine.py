"""``mattecli build-engine``: the checks on the ONNX file it is fed, and the command's exit codes.

The ONNX files are small conv nets built here with ``onnx.helper`` (two inputs, the registry's
``alphagan`` contract in the metadata), so every check runs on real files, and a band model
(``bandmatte-lite0``, random weights) exported by the real exporter. TensorRT cannot be installed
on CI, so the command's happy path ends at exit code 3 there; the ``gpu`` tests build real engines
where TensorRT and a CUDA GPU exist and compare them with ONNX Runtime.
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
from engines.trt_build import check_profiles, describe_profiles, inspect_onnx
from mattecli.cli import app
from mattecli.errors import EXIT_BAD_INPUT, EXIT_UNAVAILABLE, InputError
from mattecli.models import BAND_MODEL, METADATA_KEY, contract_for

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
    assert [(i.name, i.kind, i.shape) for i in facts.inputs] == [
        ("image", "image", (None, 3, None, None)),
        ("trimap", "trimap_1ch", (None, 1, None, None)),
    ]
    assert all(i.dtype == "FLOAT" for i in facts.inputs)
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
    assert [i.shape for i in facts.inputs] == [(None, 3, 64, 96), (None, 1, 64, 96)]
    with pytest.raises(InputError) as info:
        check_profiles(facts, tile_profiles(64, 4, 8))
    message = info.value.message
    assert "input 'image' has a fixed height of 64, the profile asks 8..64" in message
    assert "input 'trimap' has a fixed width of 96, the profile asks 8..64" in message
    assert "--min/--opt/--max equal to the fixed sizes (height=64, width=96)" in info.value.hint
    check_profiles(facts, [explicit_profile((1, 64, 96), (4, 64, 96), (8, 64, 96), 8)])  # batch stays dynamic


def test_a_channel_count_mattecli_does_not_feed_is_refused(tmp_path: Path) -> None:
    model = tiny_model()
    model.graph.input[1].type.tensor_type.shape.dim[1].dim_value = 2  # trimap_1ch is fed with 1 channel
    facts = inspect_onnx(save(model, tmp_path / "two.onnx"))
    with pytest.raises(InputError, match="input 'trimap' has a fixed channels of 2, mattecli feeds 1"):
        check_profiles(facts, tile_profiles(64, 4, 8))


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
    assert describe_profiles(tile_profiles(512, 4, 32, max_size=1000)) == (
        "  profile 0: N 1..4 (opt 4), HxW 32x32..512x512 (opt 512x512)\n"
        "  profile 1: N 1..1 (opt 1), HxW 32x32..1024x1024 (opt 1024x1024)"
    )


# ---------------------------------------------------------------------------------------------
# A band model (the default model's architecture)


@pytest.fixture(scope="module")
def band_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bandmatte-lite0 with random weights, through the real exporter (one file, contract inside)."""
    pytest.importorskip("torch")
    from training.export import export_onnx
    from training.registry import random_model

    path = tmp_path_factory.mktemp("band") / "band.onnx"
    loaded = random_model("bandmatte-lite0")
    export_onnx("bandmatte-lite0", loaded.model, path, weights=loaded.weights, check=False)
    return path


def _band_feed(shared_data: Path, width: int = 800, height: int = 600) -> dict[str, np.ndarray]:
    """The band predictor's one call for a real photo and its trimap scaled to width x height."""
    import cv2

    from mattecli.band_predictor import BandPlan
    from mattecli.inputs import FrameInputs
    from mattecli.media.imageio import read_image

    folder = shared_data / "alphamatting"
    rgb = cv2.resize(read_image(folder / "image" / "GT04.png"), (width, height), interpolation=cv2.INTER_AREA)
    trimap = cv2.imread(str(folder / "trimap" / "GT04.png"), cv2.IMREAD_GRAYSCALE)
    trimap = cv2.resize(trimap, (width, height), interpolation=cv2.INTER_NEAREST)
    return BandPlan(FrameInputs(BAND_MODEL, rgb, trimap)).feed()


def _input_types(model: onnx.ModelProto) -> dict[str, str]:
    return {v.name: TensorProto.DataType.Name(v.type.tensor_type.elem_type) for v in model.graph.input}


def test_band_model_facts_and_default_profile(band_onnx: Path) -> None:
    from mattecli.commands.build_engine import choose_profiles

    facts = inspect_onnx(band_onnx)
    assert facts.contract.architecture == "band" and facts.precision == "fp32"
    assert [(i.name, i.kind, i.shape, i.dtype) for i in facts.inputs] == [
        ("band_coarse", "band_coarse", (1, 11, None, None), "FLOAT"),
        ("band_patches", "band_patches", (None, 5, 22, 22), "FLOAT"),
        ("band_index", "band_index", (None, 64), "INT64"),
    ]
    profiles = choose_profiles(facts.contract)
    check_profiles(facts, profiles)  # the graph's fixed sizes are the ones mattecli feeds
    assert describe_profiles(profiles, band=True) == (
        "  profile 0: cells 1..34816 (opt 864), frame HxW 128x128..2176x4096 (opt 1152x1920)"
    )


def test_the_fp16_band_model_keeps_int64_indices_and_passes_the_checker(
    band_onnx: Path, shared_data: Path, tmp_path: Path
) -> None:
    """What TensorRT parses for an fp16 engine: training.fp16's conversion of the band model."""
    import onnxruntime

    from mattecli.commands.build_engine import choose_profiles
    from training.fp16 import convert_to_fp16

    fp32 = onnx.load(str(band_onnx))
    onnx.checker.check_model(fp32, full_check=True)
    half = convert_to_fp16(fp32)
    onnx.checker.check_model(half, full_check=True)
    assert (
        _input_types(half)
        == _input_types(fp32)
        == {
            "band_coarse": "FLOAT",
            "band_patches": "FLOAT",
            "band_index": "INT64",
        }
    )
    path = save(half, tmp_path / "band-fp16.onnx")
    facts = inspect_onnx(path, fp16=True)
    assert facts.precision == "fp16" and facts.inputs[2].dtype == "INT64"
    check_profiles(facts, choose_profiles(facts.contract))

    # Both graphs run the pipeline's real feed, int64 indices included, and agree as fp16 allows
    # (random weights; measured 9e-3 here).
    feed = _band_feed(shared_data)
    assert feed["band_index"].dtype == np.int64
    want, got = (
        onnxruntime.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feed)
        for p in (band_onnx, path)
    )
    for a, b in zip(want, got, strict=True):
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
        assert float(np.abs(a - b).max()) < 3e-2


def test_band_graphs_that_mattecli_cannot_feed_are_refused(band_onnx: Path, tmp_path: Path) -> None:
    from mattecli.commands.build_engine import choose_profiles

    wide = onnx.load(str(band_onnx))
    for axis in (2, 3):
        wide.graph.input[1].type.tensor_type.shape.dim[axis].dim_value = 30  # another patch side
    facts = inspect_onnx(save(wide, tmp_path / "wide.onnx"))
    with pytest.raises(InputError, match="input 'band_patches' has a fixed height of 30, mattecli feeds 22"):
        check_profiles(facts, choose_profiles(facts.contract))

    floats = onnx.load(str(band_onnx))
    floats.graph.input[2].type.tensor_type.elem_type = TensorProto.FLOAT
    with pytest.raises(InputError) as info:
        inspect_onnx(save(floats, tmp_path / "float-index.onnx"))
    assert "graph input 'band_index' is FLOAT, expected INT64 (mattecli feeds band_index as INT64)" in str(
        info.value
    )


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_band_model_without_tensorrt_exits_3_naming_the_gpu_extra(cli: CliRunner, band_onnx: Path) -> None:
    for args in ([], ["--max-size", "1920", "--max-cells", "5000"]):
        result = _run(cli, band_onnx, *args)
        assert result.exit_code == EXIT_UNAVAILABLE, result.output
        assert "TensorRT is not installed" in result.stderr and 'pip install -e ".[gpu]"' in result.stderr
        assert result.stdout == ""
    assert not (band_onnx.parent / "band.engine").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tile", "512"], "--tile and --batch are for tiled models; bandmatte-lite0 is a band model"),
        (["--max-size", "0"], "--max-size 0 must be a positive frame side"),
        (["--max-cells", "0"], "--max-cells 0 must be at least 1"),
        (
            ["--min", "1x128x128", "--opt", "9x128x128", "--max", "9x100x128"],
            "height 100 not a multiple of 128",
        ),
    ],
)
def test_band_option_mistakes_exit_4(cli: CliRunner, band_onnx: Path, args: list[str], expected: str) -> None:
    result = _run(cli, band_onnx, *args)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert expected in " ".join(result.stderr.split())


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
        (["--max-cells", "100"], "--max-cells is for band models; alphagan runs tiles and whole frames"),
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


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_torch(), reason="needs TensorRT and a CUDA build of torch with a GPU")
def test_band_engine_matches_onnxruntime(
    cli: CliRunner, band_onnx: Path, shared_data: Path, tmp_path: Path
) -> None:
    """One band call of a real photo (int64 indices fed as the engine's type) against ONNX Runtime."""
    from engines.base import open_engine

    engine_path = tmp_path / "band.engine"
    result = _run(cli, band_onnx, "-o", engine_path, "--max-size", "1024", "--max-cells", "4000", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["profiles"] == [
        {"min": [1, 128, 128], "opt": [409, 1024, 1024], "max": [4000, 1024, 1024]}
    ]
    feed = _band_feed(shared_data)
    trt_engine = open_engine("trt", engine_path, "cuda:0")
    ort_engine = open_engine("ort", band_onnx, "cpu")
    try:
        assert trt_engine.accepts({kind: array.shape for kind, array in feed.items()})
        got, want = trt_engine.infer(feed), ort_engine.infer(feed)
        for kind in ("alpha", "foreground", "background"):
            assert got[kind].dtype == np.float32 and got[kind].shape == want[kind].shape
            assert float(np.abs(got[kind] - want[kind]).max()) < 1e-3
        cells = 4001
        too_many = {
            **feed,
            "band_patches": np.zeros((cells, 5, 22, 22), np.float32),
            "band_index": np.zeros((cells, 64), np.int64),
        }
        assert not trt_engine.accepts({kind: array.shape for kind, array in too_many.items()})
        with pytest.raises(InputError, match="outside every optimisation profile"):
            trt_engine.infer(too_many)
    finally:
        trt_engine.close()
        ort_engine.close()
