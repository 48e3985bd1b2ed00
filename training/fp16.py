"""fp16 ONNX graphs for TensorRT 11, which takes precision from the graph (it has no fp16 builder flag).

The conversion (onnxconverter-common) stores weights and most activations in fp16 but keeps in
fp32 what fp16 gets wrong:

- normalisation (GroupNormalization, BatchNormalization, InstanceNormalization,
  LayerNormalization): mean and variance over thousands of values lose digits in fp16, and a
  variance below fp16's normal range turns the scale into inf;
- the input normalisation ``(image − mean) / std``: the first ops on the user's pixels;
- saturating outputs and probabilities (Sigmoid, Clip, Softmax, HardSigmoid, Tanh, Exp) and
  reductions (ReduceMean, ReduceSum, ...), whose results feed the mattes directly;
- onnxconverter-common's own default list (Resize, Range, Min, Max, ...), which must stay;
- the graph's own Cast nodes: the converter rewrites a converted Cast's target type to fp16
  without updating the graph's declared value types, which ONNX Runtime then refuses to load
  (seen on GFM's ``mask.to(float)`` and the pooling bins); a kept Cast gets fp32↔fp16 Casts
  around it instead. They are blocked by node name, not by op type: the converter appends its
  own Casts to the node list it is walking, so blocking the op type makes it wrap its own
  Casts in Casts without end;
- shape and index arithmetic: nodes that do not depend on the pixels at all (Shape and what is
  computed from it, such as the adaptive-pooling bins' floor divisions, which the exporter does
  in float). fp16 holds integers exactly only up to 2048, so ``floor(i·H / 6)`` at a 4K input
  would pick wrong bins; these nodes cost nothing, so they all stay fp32.

Graph inputs and outputs stay float32, so an engine feeds and reads the same arrays as for the
fp32 file. FBA's F/B/alpha fusion is not in the graph at all: it runs after the engine in NumPy
float32 (:mod:`mattecli.fusion`), so fp16 never touches its division by Σ(F−B)² + 0.1.
"""

from __future__ import annotations

import warnings

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
# Ops whose output describes a tensor's shape, not its values.
_SHAPE_OPS = frozenset({"Shape", "Size"})


def shape_arithmetic_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes whose inputs never carry pixel data (shape, index and constant arithmetic).

    A value carries data if it is a graph input or an output of a node (other than Shape/Size)
    that reads such a value; ONNX graphs list nodes in topological order, so one pass suffices.
    """
    data = {i.name for i in model.graph.input}
    meta: list[str] = []
    for node in model.graph.node:
        if node.op_type not in _SHAPE_OPS and any(name in data for name in node.input):
            data.update(node.output)
        else:
            meta.append(node.name)
    return meta


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
    with warnings.catch_warnings():
        # One warning per weight below fp16's range (clamped to ±1e-7): noise, not news.
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(
            copy,
            keep_io_types=True,
            op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, *FP32_OPS],
            node_block_list=[
                *input_normalisation_nodes(model),
                *shape_arithmetic_nodes(model),
                *(node.name for node in model.graph.node if node.op_type == "Cast"),
            ],
        )
    _restore_float32_outputs(converted, model)
    return converted


def _restore_float32_outputs(converted: onnx.ModelProto, original: onnx.ModelProto) -> None:
    """Give back float32 graph outputs where the converter declared them fp16.

    With ``keep_io_types`` the converter still turns an output fp16 when the node producing it is
    kept in fp32 (a final Sigmoid or Clip): it appends a Cast to fp16 and retypes the output.
    The fp32 value before that Cast becomes the output again, through an Identity, and any
    node that read the output keeps reading the fp16 copy.
    """
    graph = converted.graph
    float32 = onnx.TensorProto.FLOAT
    wanted = {o.name for o in original.graph.output if o.type.tensor_type.elem_type == float32}
    producers = {out: node for node in graph.node for out in node.output}
    for output in graph.output:
        tensor_type = output.type.tensor_type
        if output.name not in wanted or tensor_type.elem_type == float32:
            continue
        cast = producers[output.name]
        if cast.op_type != "Cast":
            raise ValueError(f"fp16 conversion left output {output.name!r} fp16 behind a {cast.op_type}")
        half = f"{output.name}__fp16"
        cast.output[0] = half
        for node in graph.node:
            node.input[:] = [half if name == output.name else name for name in node.input]
        graph.node.append(
            onnx.helper.make_node("Identity", [cast.input[0]], [output.name], name=f"{half}_as_fp32")
        )
        kept = [v for v in graph.value_info if v.name != output.name]
        del graph.value_info[:]
        graph.value_info.extend(kept)
        tensor_type.elem_type = float32
