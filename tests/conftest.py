"""Shared fixtures: where the real matting data lives, and a CLI runner.

The data in ../shared/data is never copied into the repository. Its location comes from
``MATTECLI_DATA`` (default: ``../shared/data`` beside the checkout). Tests that need it skip with a
clear reason on a fresh clone without it; CI sets ``MATTECLI_REQUIRE_DATA=1`` so that a missing data
folder fails the run instead of silently skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from onnx_nets import conv_onnx
from typer.testing import CliRunner

from mattecli.models import ModelContract

REPO_ROOT = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    return Path(os.environ.get("MATTECLI_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real matting data folder (alphamatting, examples, video, backgrounds)."""
    root = _data_root()
    if not (root / "MANIFEST.sha256").is_file():
        reason = f"real matting data not found at {root} (set MATTECLI_DATA to its folder)"
        if os.environ.get("MATTECLI_REQUIRE_DATA") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return root


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """The reference folder beside the data (FBA state-dict layout and golden arrays)."""
    root = Path(os.environ.get("MATTECLI_REFERENCE", _data_root().parent / "reference")).resolve()
    if not (root / "fba_golden.npz").is_file():
        reason = f"reference material not found at {root} (set MATTECLI_REFERENCE to its folder)"
        if os.environ.get("MATTECLI_REQUIRE_DATA") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return root


@pytest.fixture()
def cli() -> CliRunner:
    """A Typer runner; ``result.stdout`` and ``result.stderr`` are kept apart."""
    return CliRunner()


LOCAL_CONTRACT = ModelContract(
    name="local-test",
    architecture="fba",
    paper="test network: three 3x3 convolutions, receptive-field radius 3",
    inputs=(("image", "image"),),
    outputs=(("alpha", "alpha"),),
    size_multiple=8,
    needs_trimap=False,
)


@pytest.fixture()
def local_onnx(tmp_path: Path) -> Path:
    """A real ONNX graph whose output at a pixel depends only on a 7x7 neighbourhood."""
    return conv_onnx(tmp_path / "local.onnx", LOCAL_CONTRACT, seed=0)
