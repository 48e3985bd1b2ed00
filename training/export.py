"""Torch → ONNX export: one self-describing file, checked against torch before it is written.

What the exported file guarantees, and why:

- opset 21, so GroupNorm exports as the native ``GroupNormalization`` (opset 18 had per-group
  affine parameters and exporters decompose it into InstanceNormalization, whose fused pattern
  drifts in TensorRT on large reductions);
- dynamic batch, height and width (height and width as multiples of the contract's size
  multiple: the networks' strided encoders and skip concatenations only line up at multiples);
- one file, weights inside (no ``.onnx.data`` sidecar for a tool to lose);
- weight standardisation folded into constant Conv weights *before* tracing. The dynamo exporter's
  constant folder skips inputs above 8192 values, so on a real network (a 64→64 3×3 conv has
  36,864) it leaves the ReduceMean/Sqrt/Div of every WS conv in the graph, recomputed per frame;
- the registry contract (:data:`mattecli.models.METADATA_KEY`) and the producer facts in the
  metadata, so ``mattecli run model.onnx`` needs nothing else;
- parity: ONNX Runtime (CPU) against eager torch on seeded random inputs of the contract's kinds
  at two non-square sizes (batch 1 and 2); above :data:`PARITY_TOLERANCE` the export fails with
  the figure, and nothing is written.

The optional fp16 file (:mod:`training.fp16`) is converted from the checked fp32 graph and its
error against that graph is measured on the same inputs.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from mattecli import __version__
from mattecli.band_inputs import COARSE_STRIDE
from mattecli.errors import EXIT_FAILED, MatteError
from mattecli.media.imageio import atomic_path
from mattecli.models import METADATA_KEY, ModelContract
from training.networks.layers import WSConv2d
from training.registry import InferenceModel, inference_model, sample_inputs

PRODUCER_KEY = "mattecli.producer"
DEFAULT_OPSET = 21
SUPPORTED_OPSETS = (21, 22, 23)  # 21 is the first with per-channel GroupNormalization
PARITY_TOLERANCE = 1e-4
# Pixels downstream of a hard decision (GFM's glance argmax, AlphaGAN's max-unpooling) whose
# margin is below this are left out of the parity check, and counted: two float32 engines differ
# by about 1e-6 on those scores, so a near tie may go either way and the output jumps there.
DECISION_MARGIN = 1e-5
# The same for the fp16 comparison: fp16 moved GFM's glance log-probabilities by up to 3.3e-3
# (random weights, both parity sizes) and flipped classes with margins up to 1.9e-3.
FP16_DECISION_MARGIN = 0.02
# If fewer pixels than this share are clear of near ties (AlphaGAN in fp16: some channel of almost
# every pooling window is within fp16 rounding of a tie), the comparison keeps every pixel.
MIN_RELIABLE_SHARE = 0.9
# (batch, height, width): different heights and widths, not squares, multiples of every
# contract's size multiple (8 and 32), batch 1 and 2 so the dynamic batch is exercised too.
PARITY_SIZES: tuple[tuple[int, int, int], ...] = ((1, 96, 128), (2, 160, 224))
# The traced example. Batch 2, not 1: torch.export specialises dimensions of size 1.
EXAMPLE_SIZE = (2, 64, 96)
MAX_SIDE = 8192
MAX_BATCH = 256
MAX_CELLS = 1 << 20  # band models: cells per call (a 8192² frame has 262,144)


class ExportError(MatteError):
    """The network could not be exported, or the exported graph disagrees with torch."""

    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class Deviation:
    """Max absolute difference per output between two runs of the model on one input size."""

    size: tuple[int, int, int]  # batch, height, width
    per_output: dict[str, float]
    # 99.9th percentile of the absolute difference per output: the typical worst case when a few
    # isolated pixels flip (fp16 moves near-tie decisions that float32 engines agree on).
    p999: dict[str, float] = field(default_factory=dict)
    ambiguous: int = 0  # pixels left out: a hard decision inside the network was a near tie

    @property
    def max_abs(self) -> float:
        return max(self.per_output.values())


@dataclass(frozen=True)
class GraphFacts:
    """What the exported graph holds; checked by :func:`verify_graph`, reported by ``export``."""

    opset: int
    nodes: int
    op_counts: dict[str, int]
    initializers: int
    parameters: int
    initializer_dtypes: dict[str, int]  # ONNX dtype name -> count

    @classmethod
    def of(cls, model: onnx.ModelProto) -> GraphFacts:
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        dtypes = Counter(onnx.TensorProto.DataType.Name(t.data_type) for t in model.graph.initializer)
        return cls(
            opset=opset,
            nodes=len(model.graph.node),
            op_counts=dict(Counter(n.op_type for n in model.graph.node).most_common()),
            initializers=len(model.graph.initializer),
            parameters=int(sum(int(np.prod(t.dims)) for t in model.graph.initializer)),
            initializer_dtypes=dict(dtypes),
        )


@dataclass
class ExportReport:
    """What one export did: the file, the graph, and the measured parity and fp16 error."""

    model: str
    path: Path
    opset: int
    precision: str  # "fp32" or "fp16"
    file_bytes: int
    seconds: float
    graph: GraphFacts
    parity: list[Deviation] = field(default_factory=list)  # fp32 ONNX vs torch (empty: not checked)
    fp16_error: list[Deviation] = field(default_factory=list)  # fp16 ONNX vs fp32 ONNX
    weights: dict[str, object] = field(default_factory=dict)

    @property
    def parity_max_abs(self) -> float | None:
        return max((d.max_abs for d in self.parity), default=None)

    @property
    def fp16_max_abs(self) -> float | None:
        return max((d.max_abs for d in self.fp16_error), default=None)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["parity_max_abs"] = self.parity_max_abs
        data["fp16_max_abs"] = self.fp16_max_abs
        data["parity_tolerance"] = PARITY_TOLERANCE
        return data


def fold_weight_standardisation(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every :class:`WSConv2d` replaced by a plain Conv2d of its effective weight.

    Weight standardisation depends on parameters only, so at inference it is a constant; folding it
    here (in float32, with the conv's own :meth:`WSConv2d.effective_weight`, which knows whether
    the stored weight is already standardised) gives the exporter constant Conv weights whatever
    their size. The original module is left untouched.
    """
    folded = copy.deepcopy(module)
    for parent in list(folded.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, WSConv2d):
                continue
            conv = nn.Conv2d(
                child.in_channels,
                child.out_channels,
                child.kernel_size,  # type: ignore[arg-type]
                stride=child.stride,  # type: ignore[arg-type]
                padding=child.padding,  # type: ignore[arg-type]
                dilation=child.dilation,  # type: ignore[arg-type]
                groups=child.groups,
                bias=child.bias is not None,
                padding_mode=child.padding_mode,
            )
            with torch.no_grad():
                conv.weight.copy_(child.effective_weight())
                if child.bias is not None:
                    conv.bias.copy_(child.bias)  # type: ignore[union-attr]
            setattr(parent, name, conv)
    return folded.eval()


# ---------------------------------------------------------------------------------------------
# Tracing and checking


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines, logging and warnings.

    ``mattecli export --json`` promises clean stdout, and the exporter's chatter (torchvision ops
    it skips, axis renaming) says nothing a user can act on; its errors still propagate.
    """
    captured = io.StringIO()
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(captured),
            contextlib.redirect_stderr(captured),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        onnx_logger.setLevel(level)


def _dynamic_shapes(contract: ModelContract) -> tuple[dict[int, object], ...]:
    m = contract.size_multiple
    if contract.architecture == "band":
        # One coarse view (batch 1) of any size; any number of cells, whose window size is fixed.
        cells = torch.export.Dim("cells", min=1, max=MAX_CELLS)
        rows = torch.export.Dim("height_blocks", min=1, max=MAX_SIDE // m)
        cols = torch.export.Dim("width_blocks", min=1, max=MAX_SIDE // m)
        stride = COARSE_STRIDE
        by_kind = {
            "band_coarse": {2: stride * rows, 3: stride * cols},
            "band_patches": {0: cells},
            "band_index": {0: cells},
        }
        return tuple(by_kind[kind] for _, kind in contract.inputs)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    rows = torch.export.Dim("height_blocks", min=1, max=MAX_SIDE // m)
    cols = torch.export.Dim("width_blocks", min=1, max=MAX_SIDE // m)
    return tuple({0: batch, 2: m * rows, 3: m * cols} for _ in contract.inputs)


def _rename_dims(model: onnx.ModelProto, contract: ModelContract) -> None:
    """Name the dynamic axes of the graph inputs and outputs ``batch``, ``height``, ``width``.

    The exporter names them after the symbolic expressions (``8*height_blocks``); plain names read
    better in Netron, ``onnxruntime`` and TensorRT profiles.
    """
    m = contract.size_multiple
    names = {"batch": "batch", f"{m}*height_blocks": "height", f"{m}*width_blocks": "width"}
    if contract.architecture == "band":
        s = COARSE_STRIDE
        names = {"cells": "cells", f"{s}*height_blocks": "coarse_height", f"{s}*width_blocks": "coarse_width"}
    for value in (*model.graph.input, *model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def trace_to_onnx(model: InferenceModel, *, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export ``model`` (WS already folded) with dynamic batch/height/width; no file is written."""
    contract = model.contract
    m = contract.size_multiple
    # At least 2 and 3 blocks of the size multiple: a side of one block is a size-1 feature map at
    # the encoder's deepest level, which torch.export would specialise.
    sides = (-(-max(s, k * m) // m) * m for s, k in zip(EXAMPLE_SIZE[1:], (2, 3), strict=True))
    batch, height, width = EXAMPLE_SIZE[0], *sides
    example = sample_inputs(contract, batch, height, width)
    args = tuple(torch.from_numpy(example[name]) for name in model.input_names)
    with _quiet_exporter():
        try:
            program = torch.onnx.export(
                model,
                args,
                None,
                dynamo=True,
                opset_version=opset,
                external_data=False,
                optimize=True,
                verbose=False,
                input_names=model.input_names,
                output_names=model.output_names,
                dynamic_shapes=_dynamic_shapes(contract),
            )
        except Exception as exc:  # the exporter raises many types; all mean "cannot export"
            first = str(exc).strip().splitlines()
            raise ExportError(
                f"torch.onnx could not export {contract.name}: {first[0] if first else type(exc).__name__}",
                hint="the network has code torch.export cannot trace (see the chained exception)",
            ) from exc
    if program is None:  # only the legacy exporter returns None
        raise ExportError(f"torch.onnx returned no program for {contract.name}")
    proto = program.model_proto
    _rename_dims(proto, contract)
    return proto


def verify_graph(proto: onnx.ModelProto, module: nn.Module, *, opset: int) -> GraphFacts:
    """Check the properties the export promises; raise :class:`ExportError` naming the first broken one."""
    facts = GraphFacts.of(proto)
    name = proto.graph.name or "model"
    if facts.opset != opset:
        raise ExportError(f"{name}: graph has opset {facts.opset}, asked for {opset}")
    external = [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ExportError(f"{name}: {len(external)} initializers are stored outside the file")
    constants = {t.name for t in proto.graph.initializer}
    constants |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    computed = [
        n.name
        for n in proto.graph.node
        if n.op_type in ("Conv", "ConvTranspose") and n.input[1] not in constants
    ]
    if computed:
        raise ExportError(
            f"{len(computed)} Conv weights are computed at run time (first: {computed[0]}), not constants",
            hint="weight standardisation or another weight transform was not folded before export",
        )
    group_norms = sum(isinstance(m, nn.GroupNorm) for m in module.modules())
    if facts.op_counts.get("GroupNormalization", 0) != group_norms:
        raise ExportError(
            f"expected {group_norms} native GroupNormalization nodes, found "
            f"{facts.op_counts.get('GroupNormalization', 0)} (op counts: {facts.op_counts})"
        )
    return facts


def _set_metadata(proto: onnx.ModelProto, entries: Mapping[str, str]) -> None:
    kept = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)


def _producer(contract: ModelContract, *, opset: int, precision: str, **figures: object) -> str:
    import onnxscript

    return json.dumps(
        {
            "mattecli": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxscript": onnxscript.__version__,
            "model": contract.name,
            "opset": opset,
            "precision": precision,
            **figures,
        },
        sort_keys=True,
    )


def ort_session(proto: onnx.ModelProto):  # -> onnxruntime.InferenceSession
    """A CPU ONNX Runtime session on the in-memory graph (no file round trip)."""
    import onnxruntime as ort

    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def run_torch(
    model: InferenceModel, feeds: Mapping[str, np.ndarray]
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Eager outputs for ``feeds``, and the network's decision margin (N×1×H×W) where it has one."""
    with torch.no_grad():
        outputs, margin = model.forward_with_margin(
            *(torch.from_numpy(feeds[name]) for name in model.input_names)
        )
    return [o.numpy() for o in outputs], None if margin is None else margin.numpy()


def deviation(
    names: Sequence[str],
    size: tuple[int, int, int],
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    *,
    reliable: np.ndarray | None = None,
) -> Deviation:
    """Per-output max abs difference, over the pixels where ``reliable`` (N×1×H×W) is true."""
    per_output, p999 = {}, {}
    for name, x, y in zip(names, a, b, strict=True):
        if x.shape != y.shape:
            raise ExportError(f"output {name!r} has shape {x.shape} in one run and {y.shape} in the other")
        diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
        if reliable is not None:
            diff = np.where(reliable, diff, 0.0)
        per_output[name] = float(diff.max())
        p999[name] = float(np.quantile(diff, 0.999))
    ambiguous = 0 if reliable is None else int(reliable.size - np.count_nonzero(reliable))
    return Deviation(size, per_output, p999, ambiguous)


def check_parity(
    model: InferenceModel,
    proto: onnx.ModelProto,
    *,
    sizes: Sequence[tuple[int, int, int]] = PARITY_SIZES,
    seed: int = 0,
) -> list[Deviation]:
    """ONNX Runtime vs eager torch on seeded inputs at each size; the per-output max abs difference."""
    session = ort_session(proto)
    results = []
    for i, size in enumerate(sizes):
        feeds = sample_inputs(model.contract, *size, seed=seed + i)
        onnx_out = session.run(model.output_names, feeds)
        torch_out, margin = run_torch(model, feeds)
        reliable = None if margin is None else margin >= DECISION_MARGIN
        results.append(deviation(model.output_names, size, onnx_out, torch_out, reliable=reliable))
    return results


def export_onnx(
    model_name: str,
    module: nn.Module,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    check: bool = True,
    weights: Mapping[str, object] | None = None,
    sizes: Sequence[tuple[int, int, int]] = PARITY_SIZES,
) -> ExportReport:
    """Export registry model ``model_name`` to ``path``; raise :class:`ExportError` if parity fails.

    ``module`` is the network (wrapped here with :func:`training.registry.inference_model`) or an
    :class:`InferenceModel` already. ``weights`` are facts about the weights (source file, sha256,
    ``random``) stored with the contract in the metadata. With ``fp16`` the file holds fp16
    weights with normalisation, activations that saturate and reductions kept in fp32, and float32
    inputs and outputs; its error against the fp32 graph is measured (with ``check``) and stored.
    """
    from training.fp16 import convert_to_fp16

    start = time.perf_counter()
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(
            f"opset {opset} is not supported", hint=f"use one of {', '.join(map(str, SUPPORTED_OPSETS))}"
        )
    model = module if isinstance(module, InferenceModel) else inference_model(model_name, module)
    if model.contract.name != model_name:
        raise ExportError(f"the module wraps {model.contract.name!r}, not {model_name!r}")
    model.eval()
    contract = model.contract.with_weights(**dict(weights or {}))

    proto = trace_to_onnx(fold_weight_standardisation(model), opset=opset)  # type: ignore[arg-type]
    proto.graph.name = contract.name
    verify_graph(proto, model, opset=opset)
    parity = check_parity(model, proto, sizes=sizes) if check else []
    worst = max((d.max_abs for d in parity), default=0.0)
    if worst > PARITY_TOLERANCE:
        detail = "; ".join(f"{b}x{h}x{w}: {d.max_abs:.3g}" for d in parity for b, h, w in [d.size])
        raise ExportError(
            f"ONNX Runtime and torch disagree on {contract.name}: max abs diff {worst:.3g} "
            f"> {PARITY_TOLERANCE:g} ({detail})",
            path=path,
            hint="nothing was written: the graph computes something else, or the network is "
            "numerically sensitive in float32 (--no-check exports it anyway)",
        )

    final, fp16_error, precision = proto, [], "fp32"
    if fp16:
        final, precision = convert_to_fp16(proto), "fp16"
        if check:
            fp16_error = compare_graphs(model, final, proto, sizes=sizes)
    _set_metadata(
        final,
        {
            METADATA_KEY: contract.to_json(),
            PRODUCER_KEY: _producer(
                contract,
                opset=opset,
                precision=precision,
                parity_max_abs=worst if parity else None,
                fp16_max_abs=max((d.max_abs for d in fp16_error), default=None),
            ),
        },
    )
    final.doc_string = f"{contract.name}: {contract.paper} (exported by mattecli {__version__})"
    try:
        onnx.checker.check_model(final, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported graph is not valid ONNX: {exc}", path=path) from exc
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(final.SerializeToString())  # serialised whole: never external data
    return ExportReport(
        model=contract.name,
        path=path,
        opset=opset,
        precision=precision,
        file_bytes=path.stat().st_size,
        seconds=time.perf_counter() - start,
        graph=GraphFacts.of(final),
        parity=parity,
        fp16_error=fp16_error,
        weights=dict(contract.weights),
    )


def compare_graphs(
    model: InferenceModel,
    candidate: onnx.ModelProto,
    reference: onnx.ModelProto,
    *,
    sizes: Sequence[tuple[int, int, int]] = PARITY_SIZES,
    seed: int = 0,
    decision_margin: float = FP16_DECISION_MARGIN,
) -> list[Deviation]:
    """Per-output max abs difference between two graphs of ``model`` (fp16 vs fp32) on ORT CPU.

    Pixels downstream of a hard decision with a margin below ``decision_margin`` (in torch) are
    left out and counted (fp16 flips such near ties), unless that would leave out more than
    1 − :data:`MIN_RELIABLE_SHARE` of them; 0 compares every pixel.
    """
    ours, theirs = ort_session(candidate), ort_session(reference)
    results = []
    for i, size in enumerate(sizes):
        feeds = sample_inputs(model.contract, *size, seed=seed + i)
        a = ours.run(model.output_names, feeds)
        b = theirs.run(model.output_names, feeds)
        _, margin = run_torch(model, feeds) if decision_margin and model.has_decisions else ([], None)
        reliable = None if margin is None else margin >= decision_margin
        if reliable is not None and reliable.mean() < MIN_RELIABLE_SHARE:
            reliable = None  # near ties almost everywhere: leaving them out would hide the error
        results.append(deviation(model.output_names, size, a, b, reliable=reliable))
    return results
