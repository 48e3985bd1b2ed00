"""``mattecli refine-foregrounds`` end to end on real alphamatting photos (downscaled copies)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from mattecli.cli import app
from mattecli.errors import EXIT_BAD_INPUT, EXIT_FAILED
from mattecli.foreground import estimate_foreground, read_colour_and_alpha
from mattecli.media.imageio import read_image, write_image

NAMES = ("GT04", "GT18")
WIDTH = 240


@pytest.fixture()
def inputs(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two real photos and their alpha mattes, 240 px wide, in tmp_path/{image,alpha}."""
    root = shared_data / "alphamatting"
    for name in NAMES:
        image = read_image(root / "image" / f"{name}.png")
        size = (WIDTH, round(image.shape[0] * WIDTH / image.shape[1]))
        write_image(tmp_path / "image" / f"{name}.png", cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        alpha = read_image(root / "alpha" / f"{name}.png")[:, :, 0]
        write_image(tmp_path / "alpha" / f"{name}.png", cv2.resize(alpha, size, interpolation=cv2.INTER_AREA))
    return tmp_path / "image", tmp_path / "alpha"


def _clean_failure(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.mark.parametrize("method", ["lsa", "ml"])
def test_writes_16_bit_foregrounds_and_resumes(cli: CliRunner, inputs, tmp_path: Path, method: str) -> None:
    images, alphas = inputs
    out = tmp_path / f"fg_{method}"
    result = cli.invoke(
        app, ["refine-foregrounds", str(images), str(alphas), "-o", str(out), "--method", method, "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["written"] == list(NAMES) and report["skipped"] == [] and report["failed"] == []
    assert report["method"] == method and "2 foregrounds written" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{name}.png" for name in NAMES]  # no temporaries left
    for name in NAMES:
        stored = read_image(out / f"{name}.png")
        image, alpha = read_colour_and_alpha(images / f"{name}.png", alphas / f"{name}.png")
        assert stored.dtype == np.uint16 and stored.shape == image.shape
        expected = estimate_foreground(image, alpha, method)
        assert np.abs(stored / 65535.0 - expected).max() <= 0.5 / 65535 + 1e-6
    # A second run finds everything done and writes nothing.
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = cli.invoke(
        app, ["refine-foregrounds", str(images), str(alphas), "-o", str(out), "--method", method, "--json"]
    )
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["written"] == [] and report["skipped"] == list(NAMES)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_resumes_after_an_interrupted_run(cli: CliRunner, inputs, tmp_path: Path) -> None:
    images, alphas = inputs
    out = tmp_path / "fg"
    first = cli.invoke(
        app, ["refine-foregrounds", str(images), str(alphas), "-o", str(out), "--method", "lsa"]
    )
    assert first.exit_code == 0, first.output
    (out / "GT18.png").unlink()  # as if the run had been killed before the second image
    (out / ".GT18.abc.part.png").write_bytes(b"half")  # and had left a temporary behind
    result = cli.invoke(
        app, ["refine-foregrounds", str(images), str(alphas), "-o", str(out), "--method", "lsa", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["written"] == ["GT18"] and report["skipped"] == ["GT04"]


def test_missing_alpha_is_a_clean_error_before_any_work(cli: CliRunner, inputs, tmp_path: Path) -> None:
    images, alphas = inputs
    (alphas / "GT18.png").unlink()
    out = tmp_path / "fg"
    result = cli.invoke(
        app, ["refine-foregrounds", str(images), str(alphas), "-o", str(out), "--method", "lsa"]
    )
    _clean_failure(result, EXIT_BAD_INPUT, "GT18", "no alpha", "matched by name")
    assert not out.exists()


def test_size_mismatch_fails_that_image_only(cli: CliRunner, inputs, tmp_path: Path) -> None:
    images, alphas = inputs
    write_image(alphas / "GT04.png", np.zeros((50, 60), np.uint8))
    out = tmp_path / "fg"
    result = cli.invoke(
        app, ["refine-foregrounds", str(images), str(alphas), "-o", str(out), "--method", "lsa", "--json"]
    )
    _clean_failure(result, EXIT_FAILED, "GT04.png", "50x60")
    report = json.loads(result.stdout)
    assert report["written"] == ["GT18"] and [f["name"] for f in report["failed"]] == ["GT04"]
    assert (out / "GT18.png").is_file() and not (out / "GT04.png").exists()


def test_refuses_to_write_into_an_input_folder(cli: CliRunner, inputs) -> None:
    images, alphas = inputs
    result = cli.invoke(
        app, ["refine-foregrounds", str(images), str(alphas), "-o", str(images), "--method", "lsa"]
    )
    _clean_failure(result, EXIT_BAD_INPUT, "input folder")
    assert sorted(p.name for p in images.iterdir()) == [f"{name}.png" for name in NAMES]


def test_missing_folder_is_a_clean_error(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(
        app, ["refine-foregrounds", str(tmp_path / "nope"), str(tmp_path), "-o", str(tmp_path / "o")]
    )
    _clean_failure(result, EXIT_BAD_INPUT, "image not found")
