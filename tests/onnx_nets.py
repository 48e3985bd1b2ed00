"""Small real ONNX networks with a mattecli contract, built in tests (no export, no torch).

Three 3x3 convolutions (ReLU, ReLU, sigmoid): a receptive-field radius of 3 pixels, which makes
them the "purely local network" of the tiling tests and, with symmetric kernels, a network that
commutes with the square's symmetries for the TTA tests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mattecli.models import METADATA_KEY, ModelContract


def conv_onnx(
    path: Path,
    contract: ModelContract,
    *,
    seed: int,
    widths: tuple[int, ...] = (3, 8, 8, 1),
    scale: float = 0.4,
    kernel: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Path:
    """Write the network to ``path``; ``kernel`` may rewrite each weight tensor (O x I x 3 x 3)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev = "image"
    for i in range(len(widths) - 1):
        w = rng.standard_normal((widths[i + 1], widths[i], 3, 3)).astype(np.float32) * scale
        if kernel is not None:
            w = kernel(w).astype(np.float32)
        b = rng.standard_normal(widths[i + 1]).astype(np.float32) * 0.1
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        last = i == len(widths) - 2
        out = "alpha" if last else f"r{i}"
        nodes.append(helper.make_node("Sigmoid" if last else "Relu", [f"c{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("alpha", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        inits,
    )
    return save_with_contract(graph, contract, path)


def save_with_contract(graph: onnx.GraphProto, contract: ModelContract, path: Path) -> Path:
    """Write ``graph`` as an opset-21 model carrying ``contract`` in its metadata, as export does."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    helper.set_model_props(model, {METADATA_KEY: contract.to_json()})
    onnx.save(model, path)
    return path
