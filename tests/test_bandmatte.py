"""BandMatte: pretrained encoder loading, band inputs, and band inference equal to whole-frame inference."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engines.base import Device, open_engine
from engines.torch import ModelEngine
from mattecli import band_inputs, band_predictor
from mattecli.frame_matter import FrameMatter
from mattecli.inputs import pad_reflect
from mattecli.media.frame import Frame
from mattecli.media.imageio import read_gray, read_image
from mattecli.run_options import TileOptions
from mattecli.summary import StageClock
from training.data.trimaps import BAND_WIDTHS, band_trimap
from training.networks.bandmatte import BandMatte
from training.networks.efficientnet_lite import EfficientNetLiteEncoder, load_imagenet_state
from training.registry import inference_model, random_model

INDRI = 384  # ImageNet class of the shared lemur photo (an indri)


def _randomised() -> BandMatte:
    """A BandMatte whose refiner has random (non-zero) weights, so every path matters."""
    return random_model("bandmatte-lite0").model.network.eval()


def _lemur(shared_data: Path, size: int = 224) -> torch.Tensor:
    rgb = read_image(shared_data / "examples" / "lemur" / "image.png")
    small = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0


def _imagenet_logits(encoder: EfficientNetLiteEncoder, state: dict, x: torch.Tensor) -> torch.Tensor:
    """The package's classifier head (1×1 conv, BN, ReLU6, mean pool, linear) on the encoder's output."""
    features = encoder(x)[-1]
    head = F.conv2d(features, state["_conv_head.weight"])
    head = F.batch_norm(
        head,
        state["_bn1.running_mean"],
        state["_bn1.running_var"],
        state["_bn1.weight"],
        state["_bn1.bias"],
        eps=1e-3,
    )
    return F.linear(F.relu6(head).mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])


def test_imagenet_weights_classify_a_real_photo(shared_data: Path) -> None:
    """Loaded right, the encoder plus the package's own head ranks the photo's true class first."""
    state = load_imagenet_state("lite0")
    encoder = EfficientNetLiteEncoder(state).eval()
    with torch.no_grad():
        probs = _imagenet_logits(encoder, state, _lemur(shared_data)).softmax(dim=1)[0]
    assert int(probs.argmax()) == INDRI
    assert float(probs[INDRI]) > 0.5  # 0.90 measured: a wrong padding or normalisation drops it far


def test_extra_input_planes_start_without_effect(shared_data: Path) -> None:
    """Trimap planes start at zero weight: the pretrained response to the image is kept exactly."""
    state = load_imagenet_state("lite0")
    encoder = EfficientNetLiteEncoder(state, in_channels=11).eval()
    image = _lemur(shared_data)
    extra = torch.rand(1, 8, 224, 224)
    with torch.no_grad():
        with_planes = encoder(torch.cat([image, extra], dim=1))[-1]
        plain = EfficientNetLiteEncoder(state).eval()(image)[-1]
    assert torch.equal(with_planes, plain)


def test_frozen_batch_norm_statistics_in_training() -> None:
    encoder = EfficientNetLiteEncoder(load_imagenet_state("lite0")).train()
    before = encoder._bn0.running_mean.clone()
    encoder(torch.rand(2, 3, 64, 64))
    assert torch.equal(encoder._bn0.running_mean, before)


def test_interpolation_matrix_matches_bilinear_upsampling() -> None:
    """The constant window matrix reproduces F.interpolate (bilinear, half-pixel) everywhere, edges too."""
    g = band_inputs.DEFAULT_GEOMETRY
    rng = np.random.default_rng(0)
    coarse = rng.random((1, 2, 12, 20)).astype(np.float32)
    up = F.interpolate(torch.from_numpy(coarse), scale_factor=g.scale, mode="bilinear", align_corners=False)
    m = g.margin
    whole = F.pad(up, (m, m, m, m), mode="replicate")[0].numpy()  # window pixels beyond the edge repeat it
    height, width = 12 * g.scale, 20 * g.scale
    cells = band_inputs.all_cells(height, width, g.cell)
    index = band_inputs.patch_index(cells, 12, 20, g)
    matrix = band_inputs.interpolation_matrix(g)
    span = g.coarse_span
    for k, (r, c) in enumerate(cells):
        window = coarse[0].reshape(2, -1)[:, index[k]].reshape(2, span, span)
        ours = matrix @ window @ matrix.T
        y, x = r * g.cell, c * g.cell
        np.testing.assert_allclose(ours, whole[:, y : y + g.window, x : x + g.window], atol=1e-6)


def _padded_real_frame(shared_data: Path, name: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    rgb = read_image(shared_data / "alphamatting" / "image" / f"{name}.png")
    trimap = read_gray(shared_data / "alphamatting" / "trimap" / f"{name}.png")
    height, width = trimap.shape
    size = band_inputs.padded_size(height, width)
    return pad_reflect(rgb, *size), pad_reflect(trimap, *size), height, width


def test_band_cells_equal_whole_frame_computation(shared_data: Path) -> None:
    """Per-cell outputs of the exported forward equal the whole-frame forward at those cells."""
    net = _randomised()
    rgb, trimap, height, width = _padded_real_frame(shared_data, "GT07")
    coarse = band_inputs.coarse_input(rgb, trimap)
    pixels = band_inputs.frame_pixels(rgb.astype(np.float32) / 255.0, trimap)[None]
    cells = band_inputs.band_cells(trimap, height, width)
    assert 0 < len(cells) < len(band_inputs.all_cells(height, width)) / 2  # the band is a minority
    with torch.no_grad():
        whole, _ = net.forward_frame(torch.from_numpy(coarse), torch.from_numpy(pixels))
        alpha, fg, bg = net(
            torch.from_numpy(coarse),
            torch.from_numpy(band_inputs.patch_input(rgb, trimap, cells)),
            torch.from_numpy(band_inputs.patch_index(cells, *coarse.shape[2:])),
        )
    per_cell = torch.cat([alpha, fg, bg], dim=1).numpy()
    c = band_inputs.CELL
    expected = np.stack([whole[0, :, r * c : r * c + c, k * c : k * c + c].numpy() for r, k in cells])
    assert np.abs(per_cell - expected).max() < 1e-5
    assert per_cell[:, 0].std() > 1e-3  # not a constant output


def test_band_trimap_widths_vary_widely() -> None:
    alpha = np.zeros((400, 400), dtype=np.float32)
    alpha[150:250, 150:250] = 1.0
    widths = []
    for seed in range(40):
        trimap = band_trimap(alpha, np.random.default_rng(seed))
        row = trimap[200]
        widths.append(int(np.count_nonzero(row[:200] == 128)))  # the band's width across the left edge
    assert min(widths) <= 2 * BAND_WIDTHS[0] + 4
    assert max(widths) >= 60
    assert set(np.unique(trimap)) <= {0, 128, 255}


@pytest.fixture(scope="module")
def band_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.export import export_onnx

    path = tmp_path_factory.mktemp("band") / "band.onnx"
    report = export_onnx("bandmatte-lite0", _randomised(), path, weights={"random": 0})
    assert report.parity and max(d.max_abs for d in report.parity) < 1e-4
    return path


def test_exported_graph_is_buildable_by_tensorrt(band_onnx: Path) -> None:
    """Only static-shape operators: no unpooling, no data-dependent shapes, no adaptive pooling."""
    import onnx

    ops = {node.op_type for node in onnx.load(str(band_onnx)).graph.node}
    assert not ops & {"MaxUnpool", "NonZero", "Unique", "Loop", "If", "Scan", "GlobalAveragePool", "TopK"}
    assert {"Gather", "MatMul", "Conv"} <= ops


def _real_frame(shared_data: Path, name: str) -> tuple[Frame, np.ndarray]:
    path = shared_data / "alphamatting" / "image" / f"{name}.png"
    trimap = read_gray(shared_data / "alphamatting" / "trimap" / f"{name}.png")
    return Frame(0, name, read_image(path), path), trimap


def _matte(engine, frame: Frame, trimap: np.ndarray, cells: str = "band"):  # noqa: ANN001, ANN202
    """``mattecli run``'s per-frame work (fusion, foreground) with a band model on ``engine``."""
    matter = FrameMatter(
        engine,
        tiles=TileOptions(size=None),
        tta="none",
        fusion=True,
        want_foreground=True,
        clock=StageClock(),
        band_cells=cells,  # type: ignore[arg-type]
    )
    return matter(frame, trimap)


@pytest.mark.parametrize("engine", ["ort", "torch"])
def test_run_band_equals_whole_frame_on_a_real_photo(shared_data: Path, band_onnx: Path, engine: str) -> None:
    """Through the frame pipeline: band cells only vs every cell, final alpha and foreground."""
    frame, trimap = _real_frame(shared_data, "GT12")
    if engine == "ort":
        opened = open_engine("ort", band_onnx)
    else:
        opened = ModelEngine(inference_model("bandmatte-lite0", _randomised()), Device("cpu"))
    band_alpha, band_fg = _matte(opened, frame, trimap, "band")
    whole_alpha, whole_fg = _matte(opened, frame, trimap, "all")
    unknown = trimap == 128
    assert np.abs(band_alpha - whole_alpha)[unknown].max() < 1e-5
    assert band_fg is not None and whole_fg is not None
    assert np.abs(band_fg - whole_fg)[unknown].max() < 1e-5
    assert np.array_equal(band_alpha[trimap == 255], np.ones(np.count_nonzero(trimap == 255), np.float32))


class _CappedCells:
    """The real ONNX Runtime engine, accepting at most ``cap`` cells per call as a TensorRT profile does
    (``None``: what ONNX Runtime accepts); it counts the cells of each call."""

    def __init__(self, engine, cap: int | None) -> None:  # noqa: ANN001 - any Engine
        self.engine, self.cap, self.calls = engine, cap, []
        self.name, self.device, self.contract = engine.name, engine.device, engine.contract

    def accepts(self, shapes) -> bool:  # noqa: ANN001
        if self.cap is None:
            return self.engine.accepts(shapes)
        return shapes["band_patches"][0] <= self.cap

    def infer(self, inputs):  # noqa: ANN001
        self.calls.append(len(inputs["band_patches"]))
        return self.engine.infer(inputs)

    def close(self) -> None:
        self.engine.close()


def test_cells_beyond_an_engines_cap_go_in_several_calls(shared_data: Path, band_onnx: Path) -> None:
    frame, trimap = _real_frame(shared_data, "GT20")
    engine = open_engine("ort", band_onnx)
    capped = _CappedCells(engine, cap=100)
    whole, _ = _matte(engine, frame, trimap)
    split, _ = _matte(capped, frame, trimap)
    assert len(capped.calls) > 2 and max(capped.calls) <= 100
    assert np.abs(split - whole).max() < 1e-5


def test_a_frame_with_more_cells_than_a_call_holds_goes_in_even_calls(
    shared_data: Path, band_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory cap on cells per call splits a frame like an engine's cap does: same alphas."""
    frame, trimap = _real_frame(shared_data, "GT20")
    engine = open_engine("ort", band_onnx)
    counted = _CappedCells(engine, cap=None)
    whole, _ = _matte(counted, frame, trimap)
    (cells,) = counted.calls
    monkeypatch.setattr(band_predictor, "MAX_CELLS_PER_CALL", cells // 3)
    counted.calls = []
    split, _ = _matte(counted, frame, trimap)
    assert len(counted.calls) == math.ceil(cells / (cells // 3)) >= 3
    assert max(counted.calls) - min(counted.calls) <= len(counted.calls)  # even groups, not cap + rest
    assert max(counted.calls) <= cells // 3 and sum(counted.calls) == cells
    assert np.abs(split - whole).max() < 1e-5
    # An engine with a fixed maximum (TensorRT) reserved memory for it: only its own cap splits.
    capped = _CappedCells(engine, cap=cells)
    _matte(capped, frame, trimap)
    assert capped.calls == [cells]


def test_a_training_step_on_real_samples(shared_data: Path) -> None:
    """The band step trains the whole-frame computation: encoder at a fifth of the rate, new layers at 2x."""
    from training.config import OptimizerConfig
    from training.data.datasets import BackgroundSet, ImageAlphaDataset
    from training.data.recipes import TrainingSamples, band_recipe
    from training.steps import BAND_ENCODER_LR_SCALE, BAND_HEAD_LR_SCALE, collate, make_step, to_batch

    items = ImageAlphaDataset(
        shared_data / "alphamatting" / "image", shared_data / "alphamatting" / "alpha", names=["GT01", "GT02"]
    )
    recipe = band_recipe(crop_sizes=(128,), scale_alternation=False)
    samples = TrainingSamples(items, BackgroundSet(shared_data / "backgrounds"), recipe, seed=0)
    model = random_model("bandmatte-lite0").model
    step = make_step(model, OptimizerConfig(name="radam", lr=1e-3))
    step.set_lr_factor(1.0)
    rates = sorted(group["lr"] for group in step.optimizers["main"].param_groups)
    assert rates == pytest.approx([1e-3 * BAND_ENCODER_LR_SCALE, 1e-3 * BAND_HEAD_LR_SCALE])
    arrays = collate(model.contract, [samples.sample(0), samples.sample(1)])
    assert arrays["input:band_coarse"].shape == (2, 11, 32, 32)
    assert arrays["input:band_pixels"].shape == (2, 5, 128, 128)
    before = model.network.refiner.layers[0].weight.detach().clone()
    terms = step.train_step(to_batch(arrays, torch.device("cpu")))
    assert all(np.isfinite(v) for v in terms.values()) and terms["coarse_alpha"] > 0
    assert not torch.equal(model.network.refiner.layers[0].weight, before)
