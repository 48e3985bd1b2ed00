"""The measurement scripts of benchmarks/ on shrunk real alphamatting images, with small real ONNX networks.

The networks take FBA's inputs and give FBA's outputs, so the scripts run exactly as they do with
the default model: the ONNX Runtime engine, ``mattecli run``'s per-frame work (encodings, tiles,
fusion, known regions) and the DIM metrics. One network is purely local (tiling must not move its
SAD at all); the other adds the mean colour of its whole input, as global pooling does, so tiling
must move it, which shows the tiled runs really tile.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pymatting
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_nets import save_with_contract
from typer.testing import CliRunner

from engines.base import open_engine
from engines.sidecar import file_sha256
from mattecli.errors import InputError
from mattecli.foreground import estimate_foreground
from mattecli.frame_matter import FrameMatter
from mattecli.media.frame import to_float
from mattecli.media.imageio import read_gray, read_image, write_image
from mattecli.metrics import evaluate_matte, sad
from mattecli.models import ModelContract
from mattecli.run_options import TileOptions
from mattecli.summary import StageClock

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their shared module as run from there
common = importlib.import_module("measure_common")
closed = importlib.import_module("default_vs_closed_form")
tiling = importlib.import_module("tiling_sad")

NAMES = ("GT01", "GT02", "GT04")
HELD_OUT = ("GT01", "GT04")
SHRINK = 5  # 800 px long side -> 160 px


def _contract(name: str, holdout: str | None) -> ModelContract:
    return ModelContract(
        name=name,
        architecture="fba",
        paper="test network with FBA's inputs and outputs",
        inputs=(("image", "image"), ("trimap", "trimap_2ch"), ("trimap_gauss", "trimap_gauss6")),
        outputs=(("alpha", "alpha"), ("foreground", "foreground"), ("background", "background")),
        size_multiple=8,
        fusion="fba",
        weights={"holdout": holdout} if holdout else {},
    )


def _fba_like(path: Path, *, pooled: bool, holdout: str | None = ",".join(HELD_OUT)) -> Path:
    """alpha = sigmoid(conv(relu(conv(inputs))) [+ 4 x mean colour of the input]); F = image, B = 1 - image.

    Without pooling the receptive-field radius is 2 pixels, so tiles with 8 pixels of context
    stitch to exactly the whole frame's output.
    """
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("Concat", ["image", "trimap", "trimap_gauss"], ["x"], axis=1)]
    inits = []
    for src, dst, c_in, c_out in (("x", "c0", 11, 4), ("r0", "c1", 4, 1)):
        w = rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32) * 0.3
        b = rng.standard_normal(c_out).astype(np.float32) * 0.1
        inits += [numpy_helper.from_array(w, f"{dst}_w"), numpy_helper.from_array(b, f"{dst}_b")]
        nodes.append(helper.make_node("Conv", [src, f"{dst}_w", f"{dst}_b"], [dst], pads=[1, 1, 1, 1]))
        if dst == "c0":
            nodes.append(helper.make_node("Relu", ["c0"], ["r0"]))
    logits = "c1"
    if pooled:
        inits.append(numpy_helper.from_array(np.full((1, 3, 1, 1), 4.0 / 3.0, np.float32), "mix"))
        nodes += [
            helper.make_node("GlobalAveragePool", ["image"], ["mean"]),
            helper.make_node("Mul", ["mean", "mix"], ["scaled"]),
            helper.make_node("ReduceSum", ["scaled"], ["level"], keepdims=1),
            helper.make_node("Add", ["c1", "level"], ["pooled"]),
        ]
        logits = "pooled"
    nodes.append(helper.make_node("Sigmoid", [logits], ["alpha"]))
    nodes.append(helper.make_node("Identity", ["image"], ["foreground"]))
    inits.append(numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "one"))
    nodes.append(helper.make_node("Sub", ["one", "image"], ["background"]))
    channels = {"image": 3, "trimap": 2, "trimap_gauss": 6, "alpha": 1, "foreground": 3, "background": 3}
    contract = _contract("pooled-test" if pooled else "local-test", holdout)

    def value(name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", channels[name], "h", "w"])

    graph = helper.make_graph(
        nodes,
        contract.name,
        [value(name) for name, _ in contract.inputs],
        [value(name) for name, _ in contract.outputs],
        inits,
    )
    return save_with_contract(graph, contract, path)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "local": _fba_like(folder / "local.onnx", pooled=False),
        "pooled": _fba_like(folder / "pooled.onnx", pooled=True),
        "anonymous": _fba_like(folder / "anonymous.onnx", pooled=False, holdout=None),
    }


@pytest.fixture(scope="module")
def crops(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with three alphamatting triplets shrunk 5x (trimaps by nearest neighbour)."""
    root = tmp_path_factory.mktemp("data")
    source = shared_data / "alphamatting"
    for name in NAMES:
        image = read_image(source / "image" / f"{name}.png")
        size = (image.shape[1] // SHRINK, image.shape[0] // SHRINK)
        shrunk = {
            "image": cv2.resize(image, size, interpolation=cv2.INTER_AREA),
            "alpha": cv2.resize(
                read_gray(source / "alpha" / f"{name}.png"), size, interpolation=cv2.INTER_AREA
            ),
            "trimap": cv2.resize(
                read_gray(source / "trimap" / f"{name}.png"), size, interpolation=cv2.INTER_NEAREST
            ),
        }
        for role, array in shrunk.items():
            write_image(root / "alphamatting" / role / f"{name}.png", array)
    return root


def _readme(path: Path, *sections: str) -> Path:
    parts = ["# Title\n\nIntro.\n"]
    for name in sections:
        start, end = common.markers(name)
        parts.append(f"{start}\nold {name} table\n{end}\n\nText after {name}.\n")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _between(text: str, name: str) -> str:
    start, end = common.markers(name)
    return text.split(start)[1].split(end)[0]


def _table_rows(section: str) -> list[list[str]]:
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def _matter(model: Path, tiles: TileOptions, fusion: bool) -> FrameMatter:
    engine = open_engine("ort", model, "cpu", threads=1)
    return FrameMatter(
        engine, tiles=tiles, tta="none", fusion=fusion, want_foreground=True, clock=StageClock()
    )


def _run(app: object, argv: list[str], monkeypatch: pytest.MonkeyPatch, script: str) -> object:
    """Invoke a script's app as ``python benchmarks/<script> ...`` would (its caption quotes sys.argv)."""
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / script), *argv])
    return CliRunner().invoke(app, argv)  # type: ignore[arg-type]


# --- README sections --------------------------------------------------------------------------------


def test_readme_section_is_replaced_between_its_markers_and_nothing_else(tmp_path: Path) -> None:
    readme = _readme(tmp_path / "README.md", "one", "two")
    before = readme.read_text(encoding="utf-8")
    common.replace_section(readme, "one", "\n| a |\n| --- |\n| 1 |\n\n")
    after = readme.read_text(encoding="utf-8")
    assert after == before.replace("old one table", "| a |\n| --- |\n| 1 |")
    common.replace_section(readme, "one", "new")  # markers survive, so it can run again
    assert _between(readme.read_text(encoding="utf-8"), "one") == "\nnew\n"
    assert _between(readme.read_text(encoding="utf-8"), "two") == "\nold two table\n"
    assert not list(tmp_path.glob(".README*"))  # no temporary file left behind


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no markers at all\n", "found 0 and 0"),
        ("<!-- one:start -->\nonly a start\n", "found 1 and 0"),
        ("<!-- one:end -->\nx\n<!-- one:start -->\n", "comes before"),
        ("<!-- one:start -->\n<!-- one:end -->\n<!-- one:start -->\n<!-- one:end -->\n", "found 2 and 2"),
    ],
)
def test_readme_without_exactly_one_marker_pair_is_refused_untouched(
    tmp_path: Path, text: str, message: str
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        common.replace_section(readme, "one", "table")
    assert info.value.path == readme and "<!-- one:start -->" in str(info.value)
    assert readme.read_text(encoding="utf-8") == text


# --- default model against closed-form -------------------------------------------------------------


def test_default_vs_closed_form_scores_the_held_out_images_as_the_metrics_do(
    crops: Path, models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models["local"]
    readme = _readme(tmp_path / "README.md", closed.README_SECTION, tiling.README_SECTION)
    argv = ["--model", str(model), "--data", str(crops), "--readme", str(readme), "--threads", "1", "--json"]
    result = _run(closed.app, argv, monkeypatch, "default_vs_closed_form.py")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)

    # The images are the model's held-out ones, from its metadata; GT02 is not scored.
    assert [image["name"] for image in report["images"]] == list(HELD_OUT)
    items = common.load_alphamatting(crops, HELD_OUT)
    fused = _matter(model, TileOptions(), fusion=True)
    plain = _matter(model, TileOptions(), fusion=False)
    for item, image in zip(items, report["images"], strict=True):
        reference_fg = estimate_foreground(to_float(item.image), to_float(item.alpha), "ml")
        cf_alpha = pymatting.estimate_alpha_cf(
            to_float(item.image).astype(np.float64), item.trimap.astype(np.float64) / 255.0
        )
        cf_fg = estimate_foreground(to_float(item.image).astype(np.float64), cf_alpha, "ml")
        expected = {
            closed.MODEL_FUSED: common.predict(fused, item),
            closed.MODEL_PLAIN: common.predict(plain, item),
            closed.CLOSED_FORM: common.Prediction(cf_alpha, cf_fg, 0.0),
        }
        for method, prediction in expected.items():
            scores = evaluate_matte(
                prediction.alpha, item.alpha, item.trimap, pred_fg=prediction.foreground, gt_fg=reference_fg
            )
            raw = image["methods"][method]["raw"]
            assert raw["sad"] == pytest.approx(sad(prediction.alpha, item.alpha, item.trimap), abs=1e-12), (
                method
            )
            for key in ("sad", "mse", "grad", "conn", "fg_sad", "fg_mse"):
                assert raw[key] == pytest.approx(scores.raw()[key], rel=1e-9, abs=1e-12), (method, key)
            assert image["methods"][method]["seconds"] > 0
        # Fusion changes the alpha of this network (it is not an FBA fixed point).
        fused_sad = image["methods"][closed.MODEL_FUSED]["raw"]["sad"]
        assert fused_sad != image["methods"][closed.MODEL_PLAIN]["raw"]["sad"]

    for method in closed.METHODS:
        per_image = [image["methods"][method]["raw"]["sad"] for image in report["images"]]
        assert report["mean"][method]["raw"]["sad"] == pytest.approx(np.mean(per_image), rel=1e-12)
    mean = report["mean"]
    assert report["goal_met"] == all(
        mean[closed.MODEL_FUSED]["raw"][k] < mean[closed.CLOSED_FORM]["raw"][k] for k in ("sad", "grad")
    )

    # The README: the table replaced between its own markers, the other section untouched.
    text = readme.read_text(encoding="utf-8")
    assert _between(text, tiling.README_SECTION) == "\nold tiling-table table\n"
    section = _between(text, closed.README_SECTION)
    assert section.strip() == report["table"].strip()
    assert f"sha256 `{file_sha256(model)[:12]}`" in section
    assert f"Command: `python benchmarks/default_vs_closed_form.py --model {model}" in section
    rows = _table_rows(section)
    assert rows[0][:2] == ["image", "method"] and len(rows[0]) == 9
    assert all(len(row) == 9 for row in rows)
    body = rows[2:]
    assert [row[:2] for row in body[:3]] == [["GT01", m] for m in closed.METHODS]
    assert len(body) == len(HELD_OUT) * 3 + 3
    sad_shown = float(body[0][2])  # GT01, fused model, SAD in the paper scaling (Σ/10³ = raw)
    assert sad_shown == pytest.approx(
        report["images"][0]["methods"][closed.MODEL_FUSED]["raw"]["sad"], abs=0.005
    )


def test_scripts_refuse_missing_names_and_readmes_up_front(
    crops: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(
        closed.app, ["--model", str(models["anonymous"]), "--data", str(crops)], monkeypatch, "x.py"
    )
    assert result.exit_code == 4
    assert "names no held-out images" in result.stderr and "--images" in result.stderr
    result = _run(
        closed.app,
        ["--model", str(models["anonymous"]), "--data", str(crops), "--images", "GT01,GT99"],
        monkeypatch,
        "x.py",
    )
    assert result.exit_code == 4 and "GT99" in result.stderr and "GT01, GT02, GT04" in result.stderr
    result = _run(
        tiling.app,
        ["--model", str(models["anonymous"]), "--data", str(crops), "--readme", str(crops / "README.md")],
        monkeypatch,
        "x.py",
    )
    assert result.exit_code == 4 and "README not found" in result.stderr  # refused before measuring


# --- tiling --------------------------------------------------------------------------------------------


def test_tiling_sad_is_exact_for_a_local_network_and_reports_every_setting(
    crops: Path, models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models["local"]
    readme = _readme(tmp_path / "README.md", tiling.README_SECTION)
    argv = [
        *("--model", str(model), "--data", str(crops), "--images", "GT01,GT02"),
        *("--tiles", "64,96", "--contexts", "8,32", "--blends", "8", "--max-cost", "3"),
        *("--readme", str(readme), "--threads", "1", "--json"),
    ]
    result = _run(tiling.app, argv, monkeypatch, "tiling_sad.py")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == ["GT01", "GT02"] and report["holdout"] == ["GT01"]

    whole = _matter(model, TileOptions(size=None), fusion=True)
    for item in common.load_alphamatting(crops, ["GT01", "GT02"]):
        alpha = common.predict(whole, item).alpha
        assert report["whole"]["sad"][item.name] == pytest.approx(
            sad(alpha, item.alpha, item.trimap), abs=1e-12
        )

    settings = {(s["tile"], s["context"]): s for s in report["settings"]}
    assert sorted(settings) == [(64, 8), (64, 32), (96, 8), (96, 32)]
    assert settings[(64, 32)]["skipped"].startswith("impossible")  # 2 x 32 + 8 leaves no room in 64
    run = [s for s in report["settings"] if s["skipped"] is None]
    for s in report["settings"]:
        if s["pixel_cost"] is not None:
            assert (s["skipped"] is not None) == (s["pixel_cost"] > 3)
    assert run, "at least one setting must have run"
    for s in run:
        assert s["tiles_per_image"] > 1  # really tiled
        # Context 8 covers the network's 2-pixel receptive field: tiles stitch to the whole frame.
        assert s["sad"] == pytest.approx(report["whole"]["sad"], abs=1e-9)
        assert s["summary"]["mean_delta"] == pytest.approx(0.0, abs=1e-9)
    fastest = min(run, key=lambda s: s["summary"]["seconds"])
    assert (report["recommended"]["tile"], report["recommended"]["context"]) == (
        fastest["tile"],
        fastest["context"],
    )

    section = _between(readme.read_text(encoding="utf-8"), tiling.README_SECTION)
    assert section.strip() == report["table"].strip()
    rows = _table_rows(section)
    assert rows[0][0] == "tile" and len(rows) == 2 + 1 + 4  # header, alignment, whole frame, settings
    assert rows[2][0] == "whole frame"
    assert "held out from training per the model's metadata: GT01" in section
    assert f"Command: `python benchmarks/tiling_sad.py --model {model}" in section


def test_tiling_moves_sad_for_a_network_that_pools_its_whole_input(
    crops: Path, models: dict[str, Path]
) -> None:
    engine = open_engine("ort", models["pooled"], "cpu", threads=1)
    try:
        items = common.load_alphamatting(crops, ["GT04"])
        planned = tiling.plan(engine, items, tiling.grid([96], [8], [8]), max_cost=100)
        whole, fusion = tiling.measure(engine, items, planned)
    finally:
        engine.close()
    assert fusion is True
    (measured,) = planned
    assert measured.tiles > 1
    item = items[0]
    tiled = _matter(models["pooled"], TileOptions(size=96, context=8, blend=8, batch=1), fusion=True)
    alpha = common.predict(tiled, item).alpha
    assert measured.sad["GT04"] == pytest.approx(sad(alpha, item.alpha, item.trimap), abs=1e-12)
    delta = tiling.deltas(measured, whole)["GT04"]
    expected = abs(measured.sad["GT04"] - whole.sad["GT04"]) / whole.sad["GT04"] * 100
    assert delta == pytest.approx(expected) and delta > 0.1  # exactly 0 if the frame ran whole
    caption = tiling.caption(
        planned, whole, [], model="m", fusion=True, tolerance=0.01, machine="x", command="c"
    )
    assert "names none of them as held out" in caption
    assert "no setting keeps the mean Δ within 0.01 %" in caption  # this network moves SAD by more
