"""fp16 ONNX graphs for TensorRT 11, which takes precision from the graph (it has no fp16 builder flag).

The conversion (onnxconverter-common) stores weights and most activations in fp16 but keeps in
fp32 what fp16 gets wrong:

- normalisation (GroupNormalization, BatchNormalization, InstanceNormalization,
  LayerNormalization): mean and variance over thousands of values lose digits in fp16, and a
  variance below fp16's normal range turns the scale into inf;
- the input normalisation ``(image − mean) / std``: the first ops on the user's pixels;
- saturating outputs and probabilities (Sigmoid, Clip, Softmax, HardSigmoid, Tanh, Exp) and
  reductions (ReduceMean, ReduceSum, ...), whose results feed the mattes directly;
- onnxconverter-common's own default list (Resize, Range, Min, Max, ...), which must stay.

Graph inputs and outputs stay float32, so an engine feeds and reads the same arrays as for the
fp32 file. FBA's F/B/alpha fusion is not in the graph at all: it runs after the engine in NumPy
float32 (:mod:`mattecli.fusion`), so fp16 never touches its division by Σ(F−B)² + 0.1.
"""

from __future__ import annotations

import onnx
from onnxconverter_common import float16

FP32_OPS: tuple[str, ...] = (
    "GroupNormalization",
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "Sigmoid",
    "HardSigmoid",
    "Tanh",
    "Exp",
    "Clip",
    "Softmax",
    "LogSoftmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL2",
    "ReduceMax",
    "ReduceMin",
)
# Elementwise ops that make up an input normalisation chain straight after a graph input.
_INPUT_CHAIN_OPS = frozenset({"Sub", "Div", "Mul", "Add"})


def input_normalisation_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the elementwise nodes fed (directly or through each other) by a graph input.

    That chain is the in-graph ``(image − mean) / std``; following it stops at the first op of
    another kind (a Concat or the first Conv), so no network layer is caught.
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    frontier = [i.name for i in model.graph.input]
    kept: list[str] = []
    while frontier:
        value = frontier.pop()
        for node in consumers.get(value, []):
            if node.op_type in _INPUT_CHAIN_OPS and node.name not in kept:
                kept.append(node.name)
                frontier.extend(node.output)
    return kept


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """An fp16 copy of the fp32 ``model`` (see the module doc for what stays fp32); I/O stays float32."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # the converter edits its argument; the fp32 graph stays the reference
    return float16.convert_float_to_float16(
        copy,
        keep_io_types=True,
        op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, *FP32_OPS],
        node_block_list=input_normalisation_nodes(model),
    )
