"""The ONNX Runtime engine: its session options for tiles on a few cores, and batches of tile views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engines.base import open_engine
from engines.onnxruntime import session_options
from mattecli.errors import InputError
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
