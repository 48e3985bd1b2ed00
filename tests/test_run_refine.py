"""``mattecli run --refine br``: backpropagating refinement through the real command line.

The lsa checkpoint has seeded random weights (there are no trained lsa weights), so the test
checks wiring: the torch engine runs the refinement on a real photo and the outputs obey the
trimap; combinations that cannot work are refused before any frame is processed.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from mattecli.cli import app
from mattecli.media.imageio import read_gray, read_image, write_image


@pytest.fixture(scope="module")
def lsa_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from training.registry import checkpoint_dict, random_model

    path = tmp_path_factory.mktemp("lsa") / "lsa.pth"
    torch.save(checkpoint_dict("lsa", random_model("lsa").model.network), path)
    return path


@pytest.fixture(scope="module")
def still(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """GT04 and its Trimap1 at a quarter of their size, to keep 100-step-free tests quick."""
    folder = tmp_path_factory.mktemp("still")
    image = read_image(shared_data / "alphamatting/image/GT04.png")
    trimap = read_gray(shared_data / "alphamatting/trimap/GT04.png")
    size = (image.shape[1] // 4, image.shape[0] // 4)
    write_image(folder / "images" / "GT04.png", cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    write_image(folder / "trimaps" / "GT04.png", cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST))
    return folder / "images" / "GT04.png", folder / "trimaps"


def test_refine_br_writes_a_matte_that_obeys_the_trimap(
    lsa_checkpoint: Path, still: tuple[Path, Path], tmp_path: Path
) -> None:
    image, trimaps = still
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(image),
            "-t",
            str(trimaps),
            "-o",
            str(out),
            "-m",
            str(lsa_checkpoint),
            "--engine",
            "torch",
            "--refine",
            "br",
            "--refine-steps",
            "3",
            "--threads",
            "1",
            "--json",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["totals"]["frames_written"] == 1
    alpha = read_gray(out / "alpha" / "GT04.png")
    trimap = read_gray(trimaps / "GT04.png")
    assert alpha.shape == trimap.shape
    assert (alpha[trimap == 0] == 0).all() and (alpha[trimap == 255] == 65535).all()
    assert np.unique(alpha[trimap == 128]).size > 1


def test_refine_br_refuses_a_non_torch_engine(
    local_onnx: Path, still: tuple[Path, Path], tmp_path: Path
) -> None:
    image, trimaps = still
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["run", str(image), "-t", str(trimaps), "-o", str(out), "-m", str(local_onnx), "--refine", "br"]
    )
    assert result.exit_code == 4, result.stderr
    assert "needs the torch engine" in result.stderr
    assert not (out / "alpha").exists()


def test_refine_br_refuses_tta(lsa_checkpoint: Path, still: tuple[Path, Path], tmp_path: Path) -> None:
    image, trimaps = still
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(image),
            "-t",
            str(trimaps),
            "-o",
            str(out),
            "-m",
            str(lsa_checkpoint),
            "--engine",
            "torch",
            "--refine",
            "br",
            "--tta",
            "flip",
        ],
    )
    assert result.exit_code == 4, result.stderr
    assert "cannot be combined" in result.stderr
    assert not (out / "alpha").exists()
