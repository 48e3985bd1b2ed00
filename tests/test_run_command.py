"""``mattecli run`` end to end: an exported fba-resnet18 (random weights) on the alphamatting stills and
on a ``mattecli sample`` clip, through the real command line.

Random weights give meaningless mattes, so these tests check structure: which files exist, their
sizes and formats, that alpha equals the trimap in its known regions, frame counts, exit codes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from mattecli.cli import app
from mattecli.media.imageio import read_gray, read_image

STILLS = ("GT01", "GT02", "GT04")
FRAMES = 12
SIZE = (160, 96)  # width, height of the sample clip


def _invoke(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["run", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fba-resnet18 with seeded random weights, exported once for this module."""
    from training.export import export_onnx
    from training.registry import random_model

    path = tmp_path_factory.mktemp("model") / "fba-resnet18.onnx"
    loaded = random_model("fba-resnet18")
    export_onnx("fba-resnet18", loaded.model, path, weights=loaded.weights, check=False)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-frame ``mattecli sample`` clip (clip.mp4 and trimaps/)."""
    folder = tmp_path_factory.mktemp("sample") / "demo"
    width, height = SIZE
    result = CliRunner().invoke(
        app, ["sample", str(folder), "--frames", str(FRAMES), "--width", str(width), "--height", str(height)]
    )
    assert result.exit_code == 0, result.stderr
    return folder


def _assert_known_regions(alpha: np.ndarray, trimap: np.ndarray) -> None:
    assert alpha.dtype == np.uint16 and alpha.shape == trimap.shape
    assert (alpha[trimap == 0] == 0).all()
    assert (alpha[trimap == 255] == 65535).all()


def test_alphamatting_stills_end_to_end(model: Path, shared_data: Path, tmp_path: Path) -> None:
    images = [shared_data / "alphamatting" / "image" / f"{name}.png" for name in STILLS]
    trimaps = shared_data / "alphamatting" / "trimap"
    code, stdout, stderr = _invoke(
        *images, "--trimap-dir", trimaps, "-o", tmp_path, "-m", model, "--fg", "png16", "--json"
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert [(i["kind"], i["frames_total"], i["frames_written"], i["failed"]) for i in summary["inputs"]] == [
        ("stills", 1, 1, False)
    ] * 3
    assert summary["totals"]["frames_written"] == 3 and summary["model"] == "fba-resnet18"
    assert summary["fusion"] is True
    for name in STILLS:
        image = read_image(shared_data / "alphamatting" / "image" / f"{name}.png")
        alpha = read_gray(tmp_path / "alpha" / f"{name}.png")
        trimap = read_gray(trimaps / f"{name}.png")
        assert alpha.shape == image.shape[:2]
        _assert_known_regions(alpha, trimap)
        fg = read_image(tmp_path / "fg" / f"{name}.png")  # drops the alpha channel
        assert fg.dtype == np.uint16 and fg.shape == image.shape
        # Where the trimap says foreground, the foreground colour is the image's own.
        opaque = trimap == 255
        assert np.abs(fg[opaque].astype(np.int64) - image[opaque].astype(np.int64) * 257).max() <= 1
    assert "3 frames written from 3 inputs" in stderr


def test_sample_clip_to_prores_and_png_while_a_broken_input_fails(
    model: Path, clip: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x5a" * 4000)
    out = tmp_path / "out"
    code, stdout, stderr = _invoke(
        broken, clip / "clip.mp4", "-t", clip / "trimaps", "-o", out, "-m", model,
        "--video", "prores", "--no-tile", "--json",
    )  # fmt: skip
    assert code == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(broken) in errors[0]
    assert "━" not in stderr and "ETA" not in stderr  # no progress bar when stderr is not a terminal
    summary = json.loads(stdout)
    bad, good = summary["inputs"]
    assert bad["failed"] and bad["frames_written"] == 0 and str(broken) in bad["error"]
    assert (good["kind"], good["frames_total"], good["frames_written"], good["failed"]) == (
        "video",
        12,
        12,
        False,
    )
    assert (summary["totals"]["failed"], summary["totals"]["frames_written"]) == (1, FRAMES)
    assert summary["totals"]["seconds"]["engine"] > 0
    for index in range(FRAMES):
        alpha = read_gray(out / "alpha" / f"clip.{index:06d}.png")
        _assert_known_regions(alpha, read_gray(clip / "trimaps" / f"clip.{index:06d}.png"))
    with av.open(str(out / "clip.rgba.mov")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "prores" and (stream.width, stream.height) == SIZE
        decoded = [frame.to_ndarray(format="rgba64le") for frame in container.decode(stream)]
    assert len(decoded) == FRAMES
    # ProRes 4444 keeps alpha losslessly at 10 bits: it matches the 16-bit PNG to a 10-bit code.
    png = read_gray(out / "alpha" / "clip.000005.png").astype(np.float64) / 65535
    assert np.abs(decoded[5][:, :, 3] / 65535 - png).max() <= 1.5 / 1023


def test_frame_range_with_small_tiles_and_resume(model: Path, clip: Path, tmp_path: Path) -> None:
    args = (clip / "clip.mp4", "-t", clip / "trimaps", "-m", model, "--json")
    code, stdout, stderr = _invoke(
        *args, "-o", tmp_path / "range", "--start", "2", "--end", "9", "--every", "3",
        "--tile", "64", "--context", "8", "--blend", "8", "--batch", "2",
    )  # fmt: skip
    assert code == 0, stderr
    item = json.loads(stdout)["inputs"][0]
    assert (item["frames_total"], item["frames_written"]) == (3, 3)
    assert sorted(p.name for p in (tmp_path / "range" / "alpha").iterdir()) == [
        f"clip.{i:06d}.png" for i in (2, 5, 8)
    ]

    out = tmp_path / "resume"
    code, _, stderr = _invoke(*args, "-o", out, "--end", "5", "--alpha", "png8")
    assert code == 0, stderr
    first = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "alpha").iterdir()}
    assert len(first) == 6
    code, stdout, stderr = _invoke(*args, "-o", out, "--alpha", "png8", "--resume")
    assert code == 0, stderr
    item = json.loads(stdout)["inputs"][0]
    assert (item["frames_total"], item["frames_skipped"], item["frames_written"]) == (12, 6, 6)
    now = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "alpha").iterdir()}
    assert len(now) == FRAMES and {name: now[name] for name in first} == first
    assert read_gray(out / "alpha" / "clip.000011.png").dtype == np.uint8


def test_missing_trimaps_stop_the_run_before_any_output(model: Path, clip: Path, tmp_path: Path) -> None:
    trimaps = tmp_path / "trimaps"
    shutil.copytree(clip / "trimaps", trimaps)
    (trimaps / "clip.000007.png").unlink()
    out = tmp_path / "out"
    code, _, stderr = _invoke(clip / "clip.mp4", "-t", trimaps, "-o", out, "-m", model)
    assert code == 4
    assert "no trimap for 1 of 12 frames: clip (frame 7)" in stderr
    assert not out.exists()


def test_engine_and_model_errors(model: Path, clip: Path, tmp_path: Path) -> None:
    from engines.profiles import tile_profiles
    from engines.sidecar import EngineSidecar, write_sidecar
    from engines.tensorrt import import_tensorrt
    from mattecli.errors import UnavailableError
    from mattecli.models import contract_for

    try:
        import_tensorrt()
        pytest.skip("TensorRT is installed here")
    except UnavailableError:
        pass
    engine = tmp_path / "fba.engine"
    engine.write_bytes(b"plan")
    contract = contract_for("fba-resnet18")
    write_sidecar(
        engine,
        EngineSidecar(
            tensorrt_version="10.14.1.48",
            gpu_name="NVIDIA A10G",
            compute_capability=(8, 6),
            onnx_file=model.name,
            onnx_sha256="ab" * 32,
            engine_sha256="cd" * 32,
            profiles=tile_profiles(512, 4, 8, max_size=1920),
            precision="fp16",
            contract=contract,
            mattecli_version="0.1.0",
        ),
    )
    common = (clip / "clip.mp4", "-t", clip / "trimaps", "-o", tmp_path / "out")
    code, _, stderr = _invoke(*common, "-m", engine, "--engine", "trt")
    assert code == 3 and "TensorRT" in stderr
    code, _, stderr = _invoke(*common, "-m", model, "--device", "cuda")
    assert code == 3 and "CUDA" in stderr
    code, _, stderr = _invoke(*common, "--engine", "torch")
    assert code == 4 and "--engine torch needs --model" in stderr.replace("\n", " ")
    assert not (tmp_path / "out").exists()


def test_help_lists_run_first_with_examples() -> None:
    result = CliRunner().invoke(app, ["--help"])
    panel = result.stdout.split("Commands", 1)[1]
    commands = re.findall(r"^│ ([a-z][a-z-]*)\s", panel, flags=re.MULTILINE)
    assert commands[0] == "run" and "sample" in commands
    result = CliRunner().invoke(app, ["run", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for example in (
        "mattecli run in.mp4 --trimap-dir t/ -o out/",
        "--start 1001 --end 1050",
        "--resume",
        "--video prores",
    ):
        assert example in text
