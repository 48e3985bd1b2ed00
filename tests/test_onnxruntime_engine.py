"""The ONNX Runtime engine: its session options for tiles on a few cores, and batches of tile views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from engines.base import Device, open_engine
from engines.onnxruntime import require_session_device, session_options
from mattecli.cli import app
from mattecli.errors import EXIT_UNAVAILABLE, InputError, UnavailableError
from mattecli.models import METADATA_KEY
from mattecli.preprocess import Scratch


def test_session_options_run_one_chain_with_every_optimisation_and_reused_memory() -> None:
    options = session_options(2)
    assert options.intra_op_num_threads == 2
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.enable_cpu_mem_arena and options.enable_mem_pattern
    assert session_options(None).intra_op_num_threads == 0  # one thread per physical core


def test_batches_of_reused_tile_buffers_give_the_same_outputs_as_fresh_arrays(local_onnx: Path) -> None:
    engine = open_engine("ort", local_onnx, "cpu", threads=1)
    tiles = np.random.default_rng(0).random((3, 3, 40, 48), dtype=np.float32)
    fresh = engine.infer({"image": tiles.copy()})["alpha"]
    assert fresh.shape == (3, 1, 40, 48)
    scratch = Scratch()
    for count in (3, 1, 2):  # full and partial batches: prefixes of one buffer
        feed = scratch.get("feed", (count, 3, 40, 48))
        feed[...] = tiles[:count]
        np.testing.assert_array_equal(engine.infer({"image": feed})["alpha"], fresh[:count])
    engine.close()


def test_a_graph_without_a_contract_is_refused_with_the_file_named(local_onnx: Path, tmp_path: Path) -> None:
    model = onnx.load(local_onnx)
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, bare)
    assert METADATA_KEY not in {p.key for p in model.metadata_props}
    with pytest.raises(InputError, match="no mattecli contract") as caught:
        open_engine("ort", bare, "cpu")
    assert caught.value.path == bare


def test_a_session_that_fell_back_to_the_cpu_is_refused_for_cuda(local_onnx: Path) -> None:
    # Asking a CPU build of ONNX Runtime for the CUDA provider is the real fall-back: it warns and
    # builds a CPU session, as it does when onnxruntime-gpu's CUDA libraries fail to load.
    session = ort.InferenceSession(str(local_onnx), providers=[("CUDAExecutionProvider", {"device_id": 0})])
    assert session.get_providers() == ["CPUExecutionProvider"]
    expected = "could not start its CUDA execution provider on cuda:0"
    with pytest.raises(UnavailableError, match=expected) as caught:
        require_session_device(session, Device("cuda", 0), local_onnx)
    assert caught.value.exit_code == EXIT_UNAVAILABLE and caught.value.path == local_onnx
    require_session_device(session, Device("cpu"), local_onnx)  # a CPU session is what --device cpu asks for


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime-gpu here")
def test_run_with_device_cuda_on_a_cpu_build_exits_3_naming_what_to_install(
    cli: CliRunner, local_onnx: Path, shared_data: Path, tmp_path: Path
) -> None:
    photo = next((shared_data / "examples").rglob("*.png"))
    args = ["run", str(photo), "-m", str(local_onnx), "-o", str(tmp_path / "out"), "--engine", "ort"]
    result = cli.invoke(app, [*args, "--device", "cuda"])
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert "no CUDA execution provider" in result.stderr and "onnxruntime-gpu" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "alpha").exists() or not any((tmp_path / "out" / "alpha").iterdir())


def test_accepts_any_size_of_a_dynamic_graph_and_only_the_static_size_of_a_fixed_one(
    local_onnx: Path, tmp_path: Path
) -> None:
    engine = open_engine("ort", local_onnx, "cpu")
    assert engine.accepts({"image": (1, 3, 600, 800)}) and engine.accepts({"image": (4, 3, 512, 512)})
    assert not engine.accepts({"trimap_2ch": (1, 2, 600, 800)})  # the image is missing
    model = onnx.load(local_onnx)
    for dim, size in zip(model.graph.input[0].type.tensor_type.shape.dim[2:], (64, 64), strict=True):
        dim.dim_value = size
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, fixed)
    engine = open_engine("ort", fixed, "cpu")
    assert engine.accepts({"image": (2, 3, 64, 64)})
    assert not engine.accepts({"image": (1, 3, 600, 800)})
