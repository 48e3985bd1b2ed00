"""ONNX export: parity with torch at two sizes, the graph's promises, metadata, and the fp16 variant.

Each registered network is exported once per session (random weights chosen so the outputs vary,
see ``training.registry.random_model``) and every test of that network reads the same file.
Exports trace with dynamic shapes, which costs 10-30 s per network on a small CPU: those tests are
marked ``slow``. The parity gate inside ``export_onnx`` is exercised by the fast tests below and by
tests/test_export_command.py; here parity is measured per network so that its figures can be
related to the network's own float32 error.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from mattecli.band_inputs import CELL, MARGIN
from mattecli.models import METADATA_KEY, ModelContract, contract_for
from training.export import (
    PARITY_SIZES,
    PARITY_TOLERANCE,
    PRODUCER_KEY,
    Deviation,
    ExportError,
    ExportReport,
    check_parity,
    compare_graphs,
    export_onnx,
    fold_weight_standardisation,
    trace_to_onnx,
    verify_graph,
)
from training.fp16 import FP32_OPS, convert_to_fp16
from training.networks.layers import WSConv2d
from training.registry import REGISTRY, InferenceModel, random_model, sample_inputs

CHANNELS = {"alpha": 1, "foreground": 3, "background": 3, "trimap_logits": 3}
# fp16 vs fp32 max abs error, measured with these random weights at both parity sizes: FBA 3.7e-3
# (ResNet-18) to 1.0e-2 (ResNet-50, alpha), AdaMatting 3.0e-3 (alpha) and 1.3e-2 (trimap logits,
# unbounded, magnitude ~3), LSA and GFM below 1e-2 (GFM off near-tie glance pixels). fp16's unit
# roundoff (4.9e-4) is 8192 times float32's, and these networks' own float32 error against
# float64 is 1e-6 to 1e-5, so errors of a few 1e-3 after 50-100 layers are what fp16 costs.
FP16_BOUND = 2e-2
FP16_LOGITS_BOUND = 5e-2
# AlphaGAN with these weights is numerically sensitive: torch float32 itself is 1.5e-4 from
# float64 (every other network: at most 1e-5), so no float32 engine can match torch to 1e-4; its
# parity is checked against that noise instead. Its max-unpooling also makes fp16 unusable: in
# most 3x3 pooling windows some channel's top two values are within fp16 rounding, so unpooled
# features move and the fp16 alpha is off by up to ~0.4 (only the fp16 file's structure is
# checked for it).
FP32_NOISY = {"alphagan"}
# Share of pixels the fp32 parity check may leave out as downstream of a near-tie decision
# (margin < 1e-5). GFM: isolated pixels (measured 1). AlphaGAN: each near-tie pooling window
# covers a 20 x 20 px neighbourhood (measured 13% at 96x128, 2% at 2x160x224).
PARITY_AMBIGUOUS = {"gfm-tt": 0.001, "gfm-ft": 0.001, "gfm-bt": 0.001, "alphagan": 0.2}


@dataclass
class Exported:
    model: InferenceModel
    weights: dict[str, object]
    report: ExportReport
    proto: onnx.ModelProto
    fp16: onnx.ModelProto
    fp16_error: list[Deviation]
    parity: list[Deviation]


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(name)``: the network exported once per session, with its fp16 conversion."""
    folder = tmp_path_factory.mktemp("onnx")
    cache: dict[str, Exported] = {}

    def get(name: str) -> Exported:
        if name not in cache:
            loaded = random_model(name)
            path = folder / name / "model.onnx"
            report = export_onnx(name, loaded.model, path, weights=loaded.weights, check=False)
            proto = onnx.load(str(path))
            fp16 = convert_to_fp16(proto)
            cache[name] = Exported(
                loaded.model,
                loaded.weights,
                report,
                proto,
                fp16,
                compare_graphs(loaded.model, fp16, proto),
                check_parity(loaded.model, proto),
            )
        return cache[name]

    return get


ALL = sorted(REGISTRY)
# Band models' graph inputs (their outputs are cells × channels × CELL × CELL).
WINDOW = CELL + 2 * MARGIN
BAND_DIMS = {
    "band_coarse": [1, 11, "coarse_height", "coarse_width"],
    "band_patches": ["cells", 5, WINDOW, WINDOW],
    "band_index": ["cells", 64],
}


def _float32_error(model: InferenceModel, size: tuple[int, int, int], seed: int) -> float:
    """Max abs difference between the network in float32 and in float64 (its own rounding noise)."""
    feeds = sample_inputs(model.contract, *size, seed=seed)
    double = copy.deepcopy(model).double()
    with torch.no_grad():
        single = model(*(torch.from_numpy(feeds[n]) for n in model.input_names))
        exact = double(*(torch.from_numpy(feeds[n]).double() for n in model.input_names))
    return max(float((a.double() - b).abs().max()) for a, b in zip(single, exact, strict=True))


PARITY_CASES = ALL


@pytest.mark.slow
@pytest.mark.parametrize("name", PARITY_CASES)
def test_onnx_runtime_matches_torch_at_two_sizes(name, exported):
    ex = exported(name)
    sizes = [d.size for d in ex.parity]
    assert sizes == list(PARITY_SIZES)
    (b1, h1, w1), (b2, h2, w2) = sizes
    assert h1 != h2 and w1 != w2 and h1 != w1 and h2 != w2 and b1 != b2
    for i, dev in enumerate(ex.parity):
        assert set(dev.per_output) == set(ex.model.output_names)
        assert dev.ambiguous <= PARITY_AMBIGUOUS.get(name, 0.0) * np.prod(dev.size)
        if name in FP32_NOISY:
            noise = _float32_error(ex.model, dev.size, seed=i)
            assert noise > PARITY_TOLERANCE / 2  # still true, or this model no longer needs the exception
            assert dev.max_abs < 3 * noise, (dev, noise)
        else:
            assert dev.max_abs < PARITY_TOLERANCE, dev


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_outputs_have_contract_shapes_and_vary(name, exported):
    """Parity means something only if the outputs are not saturated constants."""
    ex = exported(name)
    session = ort.InferenceSession(ex.report.path.read_bytes(), providers=["CPUExecutionProvider"])
    feeds = sample_inputs(ex.model.contract, 1, 96, 160, seed=5)  # a third size, also dynamic
    outputs = session.run(None, feeds)
    band = ex.model.contract.architecture == "band"
    for out, (_, kind) in zip(outputs, ex.model.contract.outputs, strict=True):
        if band:  # one output per cell of the frame's band
            assert out.shape == (len(feeds["band_patches"]), CHANNELS[kind], CELL, CELL)
        else:
            assert out.shape == (1, CHANNELS[kind], 96, 160)
        assert np.isfinite(out).all()
        assert out.std() > 0.05
        if kind != "trimap_logits":
            assert out.min() >= 0.0 and out.max() <= 1.0
            assert np.mean((out > 0.01) & (out < 0.99)) > 0.02


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_graph_keeps_its_promises(name, exported):
    ex = exported(name)
    proto, path = ex.proto, ex.report.path
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # no external data file
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    assert {o.domain: o.version for o in proto.opset_import}[""] == 21
    ops = {n.op_type for n in proto.graph.node}
    group_norms = sum(isinstance(m, nn.GroupNorm) for m in ex.model.modules())
    assert sum(n.op_type == "GroupNormalization" for n in proto.graph.node) == group_norms
    assert (group_norms > 0) == name.startswith("fba")
    assert "InstanceNormalization" not in ops
    initializers = {t.name for t in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert convs and all(n.input[1] in initializers for n in convs)  # WS folded into constants
    if name.startswith("fba"):  # weight standardisation would show as reductions on weights
        assert not ops & {"ReduceMean", "Sqrt", "ReduceSumSquare"}
    contract = ex.model.contract
    assert [i.name for i in proto.graph.input] == [n for n, _ in contract.inputs]
    assert [o.name for o in proto.graph.output] == [n for n, _ in contract.outputs]
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        names = [d.dim_param or d.dim_value for d in dims]
        if contract.architecture == "band":  # one coarse view of any size, any number of cells
            expected = BAND_DIMS.get(value.name, ["cells", names[1], CELL, CELL])
            assert names == expected, (value.name, names)
        else:
            assert names[:1] + names[2:] == ["batch", "height", "width"]
    onnx.checker.check_model(proto, full_check=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_metadata_round_trips_to_the_contract(name, exported):
    ex = exported(name)
    meta = {p.key: p.value for p in ex.proto.metadata_props}
    contract = ModelContract.from_json(meta[METADATA_KEY])
    assert contract == contract_for(name).with_weights(**ex.weights)
    assert contract.weights["random"] is True
    producer = json.loads(meta[PRODUCER_KEY])
    assert producer["model"] == name and producer["precision"] == "fp32" and producer["opset"] == 21
    assert producer["torch"] == torch.__version__
    assert producer["parity_max_abs"] is None  # exported with check=False here
    # ONNX Runtime, which `run` uses, reads the same contract back.
    session = ort.InferenceSession(ex.report.path.read_bytes(), providers=["CPUExecutionProvider"])
    custom = session.get_modelmeta().custom_metadata_map
    assert ModelContract.from_json(custom[METADATA_KEY]) == contract


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_fp16_error_bound_and_precision(name, exported):
    ex = exported(name)
    for dev in ex.fp16_error if name not in FP32_NOISY else []:
        for output, error in dev.per_output.items():
            bound = FP16_LOGITS_BOUND if output == "trimap_logits" else FP16_BOUND
            assert error < bound, (output, dev)
        # GFM: pixels whose glance class is a near tie (margin < 0.02) may flip class in fp16 and
        # are left out; they must stay a small minority (measured 1.5% to 3.9%).
        assert dev.ambiguous <= (0.05 * np.prod(dev.size) if ex.model.has_decisions else 0)
    assert ex.fp16_error[0].per_output != ex.fp16_error[1].per_output  # really measured twice
    if name in FP32_NOISY:  # near ties everywhere: every pixel is compared, and fp16 shows
        assert all(d.ambiguous == 0 and d.max_abs > 0.01 for d in ex.fp16_error)
    fp16 = ex.fp16
    params = {t.data_type: 0 for t in fp16.graph.initializer}
    for t in fp16.graph.initializer:
        params[t.data_type] += int(np.prod(t.dims))
    assert onnx.TensorProto.FLOAT16 in params
    assert params.get(onnx.TensorProto.FLOAT, 0) < 0.001 * sum(params.values())  # weights are fp16
    for value in (*fp16.graph.input, *fp16.graph.output):
        expected = onnx.TensorProto.INT64 if value.name == "band_index" else onnx.TensorProto.FLOAT
        assert value.type.tensor_type.elem_type == expected  # I/O stays float32 (indices int64)
    types = _value_types(fp16)
    kept = [n for n in fp16.graph.node if n.op_type in FP32_OPS]
    assert kept and all(types[n.input[0]] == onnx.TensorProto.FLOAT for n in kept)
    assert any(n.op_type == "Conv" and types[n.input[0]] == onnx.TensorProto.FLOAT16 for n in fp16.graph.node)


# ---------------------------------------------------------------------------------------------
# Failure paths on tiny networks (fast)


class _Tiny(InferenceModel):
    """A one-conv network behind LSA's contract; ``offset`` is added in eager mode only."""

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__(contract_for("lsa"), nn.Conv2d(4, 1, 3, padding=1))
        self.offset = offset

    def forward(self, image: torch.Tensor, trimap: torch.Tensor) -> tuple[torch.Tensor]:
        out = torch.sigmoid(self.network(torch.cat([image, trimap], dim=1)))
        if not torch.compiler.is_exporting():
            out = out + self.offset
        return (out,)


def test_parity_failure_writes_nothing_and_names_the_figure(tmp_path):
    good = tmp_path / "good.onnx"
    report = export_onnx("lsa", _Tiny(0.0).eval(), good)
    assert report.parity_max_abs < 1e-6 and good.is_file()
    bad = tmp_path / "bad.onnx"
    with pytest.raises(ExportError) as err:
        export_onnx("lsa", _Tiny(3e-3).eval(), bad)
    assert "max abs diff 0.003 > 0.0001" in str(err.value)
    assert err.value.exit_code == 1
    assert list(tmp_path.iterdir()) == [good]  # no partial or temporary file left


def test_wrong_model_name_for_module_is_refused(tmp_path):
    with pytest.raises(ExportError, match="wraps 'lsa', not 'alphagan'"):
        export_onnx("alphagan", _Tiny(), tmp_path / "x.onnx")


class _WSNet(nn.Module):
    """One weight-standardised conv just above the exporter's constant-folding limit (8192 values)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = WSConv2d(4, 256, 3, padding=1)
        self.head = nn.Conv2d(256, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)))


class _TinyWS(_Tiny):
    def __init__(self) -> None:
        super().__init__()
        self.network = _WSNet()


def test_weight_standardisation_is_folded_before_tracing():
    model = _TinyWS().eval()
    model.network.conv.standardise_on_forward = True  # trained here: evaluation standardises
    feeds = sample_inputs(model.contract, 1, 64, 96)
    with torch.no_grad():
        ours = fold_weight_standardisation(model)(*(torch.from_numpy(feeds[n]) for n in model.input_names))
        theirs = model(*(torch.from_numpy(feeds[n]) for n in model.input_names))
    assert torch.allclose(ours[0], theirs[0], atol=1e-6)
    assert type(fold_weight_standardisation(model).network.conv) is nn.Conv2d
    assert type(model.network.conv) is WSConv2d  # the original is untouched
    # Traced as is, the standardisation stays in the graph and the check names it.
    with pytest.raises(ExportError, match="computed at run time"):
        verify_graph(trace_to_onnx(model), model, opset=21)
