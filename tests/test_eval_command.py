"""``mattecli eval`` end to end on the real alphamatting.com ground truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from mattecli import metrics
from mattecli.cli import app
from mattecli.errors import EXIT_BAD_INPUT
from mattecli.media.imageio import read_gray, write_image

NAMES = [f"GT{n:02d}" for n in (1, 2, 4, 5, 6, 7, 8, 9, 11, 12, 14, 16, 17, 18, 20, 21, 22, 23, 24, 26, 27)]


def _folders(shared_data: Path) -> tuple[Path, Path]:
    root = shared_data / "alphamatting"
    return root / "alpha", root / "trimap"


def _assert_clean_failure(result, *fragments: str) -> None:
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_ground_truth_against_itself_is_all_zeros(cli: CliRunner, shared_data: Path) -> None:
    alpha, trimaps = _folders(shared_data)
    result = cli.invoke(app, ["eval", str(alpha), str(alpha), "--trimap-dir", str(trimaps), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["count"] == 21 and report["region"] == "unknown" and report["precision"] == "dim"
    assert [image["name"] for image in report["images"]] == NAMES
    zeros = {"sad": 0.0, "mse": 0.0, "grad": 0.0, "conn": 0.0, "mad": 0.0}
    for image in report["images"]:
        assert image["raw"] == zeros and image["paper"] == zeros, image["name"]
    assert report["mean"] == {"raw": zeros, "paper": zeros}
    gt01 = next(image for image in report["images"] if image["name"] == "GT01")
    assert gt01["pixels"] == np.count_nonzero(read_gray(trimaps / "GT01.png") == 128)
    assert report["scaling"]["mse"]["paper_factor"] == 1000.0
    assert report["scaling"]["grad"]["paper_factor"] == 0.001


def test_table_states_the_scaling(cli: CliRunner, shared_data: Path) -> None:
    alpha, trimaps = _folders(shared_data)
    gt = alpha / "GT05.png"
    result = cli.invoke(app, ["eval", str(gt), str(gt), "-t", str(trimaps)])
    assert result.exit_code == 0, result.output
    table = result.stdout
    assert "GT05" in table and "mean (1)" in table
    for header in ("SAD (Σ/10³)", "MSE ×10³", "Grad (Σ/10³)", "Conn (Σ/10³)"):
        assert header in table
    assert "unknown region (== 128)" in table


def test_perturbed_prediction_scores_like_the_library(
    cli: CliRunner, shared_data: Path, tmp_path: Path
) -> None:
    alpha, trimaps = _folders(shared_data)
    preds = tmp_path / "pred"
    preds.mkdir()
    for name in NAMES[2:]:
        shutil.copy(alpha / f"{name}.png", preds / f"{name}.png")
    gt01 = read_gray(alpha / "GT01.png")
    perturbed = cv2.GaussianBlur(gt01, (0, 0), 1.5)
    write_image(preds / "GT01.png", perturbed)
    gt02 = read_gray(alpha / "GT02.png")
    write_image(
        preds / "GT02.exr", gt02.astype(np.float32) / 255
    )  # a float prediction, exact on the 8-bit grid

    result = cli.invoke(app, ["eval", str(preds), str(alpha), "-t", str(trimaps), "--json"])
    assert result.exit_code == 0, result.output
    report = {image["name"]: image for image in json.loads(result.stdout)["images"]}
    assert len(report) == 21
    trimap = read_gray(trimaps / "GT01.png")
    direct = metrics.evaluate_matte(perturbed, gt01, trimap)
    assert report["GT01"]["raw"] == pytest.approx(direct.raw(), rel=1e-12)
    unknown = trimap == 128
    assert report["GT01"]["raw"]["sad"] == pytest.approx(
        np.abs(perturbed.astype(np.float64) - gt01)[unknown].sum() / 255 / 1000, rel=1e-5
    )
    assert report["GT01"]["raw"]["sad"] > 0.1 and report["GT01"]["paper"]["grad"] > 0
    assert all(value == 0.0 for value in report["GT02"]["raw"].values())
    mean = json.loads(result.stdout)["mean"]["raw"]
    assert mean["sad"] == pytest.approx(direct.sad / 21, rel=1e-12)


def test_region_all_needs_no_trimap(cli: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    alpha, _ = _folders(shared_data)
    gt = read_gray(alpha / "GT09.png")
    pred = np.clip(gt.astype(np.int16) + 3, 0, 255).astype(np.uint8)
    write_image(tmp_path / "GT09.png", pred)
    result = cli.invoke(app, ["eval", str(tmp_path / "GT09.png"), str(alpha), "--region", "all", "--json"])
    assert result.exit_code == 0, result.output
    raw = json.loads(result.stdout)["images"][0]["raw"]
    assert raw["sad"] == pytest.approx(metrics.sad(pred, gt, region="all"), rel=1e-12)
    assert raw["mad"] == pytest.approx(np.mean(np.abs(pred.astype(np.float64) - gt)) / 255, rel=1e-5)


def test_foreground_errors_from_files(cli: CliRunner, tmp_path: Path) -> None:
    gt = np.array([[255, 0], [102, 204]], dtype=np.uint8)
    pred = np.array([[255, 51], [153, 204]], dtype=np.uint8)
    trimap = np.array([[128, 128], [128, 255]], dtype=np.uint8)
    gt_fg = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    pred_fg = gt_fg.copy()
    pred_fg[1, 0] = (0, 0, 204)
    for folder, image in (("pred", pred), ("gt", gt), ("trimap", trimap), ("pfg", pred_fg), ("gfg", gt_fg)):
        write_image(tmp_path / folder / "tiny.png", image)
    args = ["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "-t", str(tmp_path / "trimap")]
    result = cli.invoke(
        app, [*args, "--pred-fg", str(tmp_path / "pfg"), "--gt-fg", str(tmp_path / "gfg"), "--json"]
    )
    assert result.exit_code == 0, result.output
    image = json.loads(result.stdout)["images"][0]
    assert image["raw"]["fg_sad"] == pytest.approx(0.28 / 1000, rel=1e-9)  # worked out in test_metrics
    assert image["paper"]["fg_mse"] == pytest.approx(0.0464 / 3 * 1000, rel=1e-9)
    half = cli.invoke(app, [*args, "--pred-fg", str(tmp_path / "pfg")])
    _assert_clean_failure(half, "--pred-fg and --gt-fg go together")


def test_missing_pairs_are_listed_before_scoring(cli: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    alpha, trimaps = _folders(shared_data)
    for name in ("GT01", "GT02"):
        shutil.copy(alpha / f"{name}.png", tmp_path / f"{name}.png")
    write_image(tmp_path / "extra.png", np.zeros((4, 4), dtype=np.uint8))
    result = cli.invoke(app, ["eval", str(tmp_path), str(alpha), "-t", str(trimaps)])
    _assert_clean_failure(
        result,
        "19 of 21 ground-truth mattes have no prediction",
        "GT04, GT05, GT06, GT07, GT08 and 14 more",
        "1 of 3 predictions have no ground truth",
    )
    assert result.stdout == ""


def test_missing_trimap_is_an_input_error(cli: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    alpha, trimaps = _folders(shared_data)
    shutil.copy(trimaps / "GT01.png", tmp_path / "GT01.png")
    result = cli.invoke(app, ["eval", str(alpha), str(alpha), "-t", str(tmp_path)])
    _assert_clean_failure(result, "20 of 21 images have no trimap")
    no_trimap = cli.invoke(app, ["eval", str(alpha), str(alpha)])
    _assert_clean_failure(no_trimap, "--region unknown needs trimaps")


def test_size_mismatch_names_both_sizes(cli: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    alpha, trimaps = _folders(shared_data)
    gt = read_gray(alpha / "GT01.png")  # 800 x 497
    write_image(tmp_path / "GT01.png", cv2.resize(gt, (400, 248)))
    result = cli.invoke(
        app, ["eval", str(tmp_path / "GT01.png"), str(alpha / "GT01.png"), "-t", str(trimaps)]
    )
    _assert_clean_failure(result, "400x248", "800x497", str(tmp_path / "GT01.png"))


def test_trimap_must_be_exact(cli: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    alpha, trimaps = _folders(shared_data)
    trimap = read_gray(trimaps / "GT01.png").copy()
    trimap[0, :10] = 100  # anti-aliased values would silently change the evaluated region
    write_image(tmp_path / "GT01.png", trimap)
    gt = str(alpha / "GT01.png")
    result = cli.invoke(app, ["eval", gt, gt, "-t", str(tmp_path)])
    _assert_clean_failure(result, "10 pixels that are not 0, 128 or 255", "values 100")


def test_help_has_an_example(cli: CliRunner) -> None:
    result = cli.invoke(app, ["eval", "--help"])
    assert result.exit_code == 0
    assert "Example" in result.stdout and "--trimap-dir" in result.stdout


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-frame demo clip (mattecli sample) with its ground truth."""
    directory = tmp_path_factory.mktemp("clip") / "demo"
    args = ["sample", str(directory), "--frames", "5", "--width", "160", "--height", "96"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return directory


def _flickering_predictions(clip: Path, folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Ground truth 8 levels too high on odd frames (a flicker), saturating at 255."""
    gts, preds = [], []
    for index in range(5):
        name = f"clip.{index:06d}.png"
        gt = read_gray(clip / "alpha" / name)
        pred = np.clip(gt.astype(np.int16) + 8 * (index % 2), 0, 255).astype(np.uint8)
        write_image(folder / name, pred)
        gts.append(gt / 255.0)
        preds.append(pred / 255.0)
    return preds, gts


def test_temporal_scores_a_flickering_clip(cli: CliRunner, short_clip: Path, tmp_path: Path) -> None:
    preds, gts = _flickering_predictions(short_clip, tmp_path / "pred")
    args = ["eval", str(tmp_path / "pred"), str(short_clip / "alpha"), "-t", str(short_clip / "trimaps")]
    result = cli.invoke(app, [*args, "--temporal", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["count"] == 5 and len(report["images"]) == 5  # the per-image metrics are still there
    temporal = report["temporal"]
    assert temporal["count"] == 1 and temporal["flow"]["source"] == "ground-truth alpha"
    assert "DIS" in temporal["flow"]["method"]
    clip = temporal["clips"]["clip"]
    assert (clip["first"], clip["last"], clip["frames"]) == (0, 4, 5)
    # Independent of the module: the RMS of the error in the frame-to-frame change, x 100.
    expected = np.mean(
        [
            100 * np.sqrt(np.mean(((preds[t] - preds[t - 1]) - (gts[t] - gts[t - 1])) ** 2))
            for t in range(1, 5)
        ]
    )
    assert clip["dtssd"] == pytest.approx(expected, rel=1e-12)
    assert 2.5 < clip["dtssd"] < 8 / 255 * 100  # saturated (opaque) pixels cannot flicker upwards
    assert clip["messddt"] > 0
    assert temporal["mean"] == {"dtssd": clip["dtssd"], "messddt": clip["messddt"]}

    table = cli.invoke(app, [*args, "--temporal"])
    assert table.exit_code == 0, table.output
    assert "Temporal coherence" in table.stdout and "dtSSD" in table.stdout and "0-4" in table.stdout


def test_temporal_ground_truth_against_itself_with_flow_from_images_and_video(
    cli: CliRunner, short_clip: Path
) -> None:
    alpha = str(short_clip / "alpha")
    for source, named in (
        (short_clip / "foreground", "images named like"),
        (short_clip / "clip.mp4", "video"),
    ):
        result = cli.invoke(
            app, ["eval", alpha, alpha, "--region", "all", "--temporal", "--flow-from", str(source), "--json"]
        )
        assert result.exit_code == 0, result.output
        temporal = json.loads(result.stdout)["temporal"]
        assert named in temporal["flow"]["source"] and str(source) in temporal["flow"]["source"]
        assert temporal["mean"] == {"dtssd": 0.0, "messddt": 0.0}


def test_temporal_refuses_clips_with_gaps_or_without_numbers(
    cli: CliRunner, short_clip: Path, tmp_path: Path
) -> None:
    gaps = tmp_path / "gaps"
    gaps.mkdir()
    for index in (0, 1, 3):
        shutil.copy(short_clip / "alpha" / f"clip.{index:06d}.png", gaps / f"clip.{index:06d}.png")
    result = cli.invoke(app, ["eval", str(gaps), str(gaps), "--region", "all", "--temporal"])
    _assert_clean_failure(result, "clip 'clip' is not consecutive", "1 -> 3")
    single = cli.invoke(
        app, ["eval", str(gaps / "clip.000000.png"), str(gaps), "--region", "all", "--temporal"]
    )
    _assert_clean_failure(single, "single frame")
    named = tmp_path / "named"
    write_image(named / "left.png", np.zeros((4, 4), np.uint8))
    result = cli.invoke(app, ["eval", str(named), str(named), "--region", "all", "--temporal"])
    _assert_clean_failure(result, "--temporal needs a frame number", "left.png")
    lone = cli.invoke(app, ["eval", str(named), str(named), "--region", "all", "--flow-from", str(named)])
    _assert_clean_failure(lone, "--flow-from is for --temporal")
