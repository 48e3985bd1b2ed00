"""``benchmarks/gpu_check.sh`` without a GPU, and the Python steps it runs, on real files.

The script's GPU path needs an NVIDIA GPU and TensorRT; here it must refuse at once with exit 3,
before it creates a virtual environment. Its helper's steps (the fp16 model, the 4K frame, the
alpha comparison, the report) run on the packaged model, the demo clip and real mattes.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from mattecli.default_model import DEFAULT_MODEL_FILE
from mattecli.errors import EXIT_UNAVAILABLE
from mattecli.models import read_onnx_contract

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "gpu_check.sh"
sys.path.insert(0, str(BENCHMARKS))
gpu_check = importlib.import_module("gpu_check")


def _run_script(tmp_path: Path, path: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        [bash, str(SCRIPT), str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=60
    )


def _tools_without_nvidia_smi(tmp_path: Path) -> Path:
    """A PATH folder with the tools the script's first lines use, and no nvidia-smi."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("dirname", "grep", "head", "mkdir"):
        found = shutil.which(tool)
        assert found is not None
        (folder / tool).symlink_to(found)
    return folder


def test_without_nvidia_smi_it_says_so_and_exits_3_before_installing(tmp_path: Path) -> None:
    result = _run_script(tmp_path, str(_tools_without_nvidia_smi(tmp_path)))
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert "no NVIDIA GPU here: nvidia-smi is not installed" in result.stderr
    assert not (tmp_path / "out").exists()  # no venv, no report


def test_a_failing_nvidia_smi_is_no_gpu_either(tmp_path: Path) -> None:
    folder = _tools_without_nvidia_smi(tmp_path)
    # What nvidia-smi prints where the driver is installed but no GPU is reachable.
    fake = folder / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n"
        "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\n"
        "exit 9\n"
    )
    fake.chmod(0o755)
    result = _run_script(tmp_path, str(folder))
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert "nvidia-smi -L failed or listed no GPU (NVIDIA-SMI has failed" in result.stderr
    assert not (tmp_path / "out").exists()


def _input_types(model: onnx.ModelProto) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in model.graph.input}


def test_fp16_variant_of_the_default_model_keeps_its_contract(tmp_path: Path) -> None:
    """The file build-fp16 hands TensorRT: a valid graph, fed exactly as the fp32 one (a band
    model's int64 indices included)."""
    pytest.importorskip("onnxconverter_common")
    target = tmp_path / "default-fp16.onnx"
    gpu_check.fp16(DEFAULT_MODEL_FILE, target)
    assert read_onnx_contract(target) == read_onnx_contract(DEFAULT_MODEL_FILE)
    converted = onnx.load(str(target))
    onnx.checker.check_model(converted, full_check=True)
    assert _input_types(converted) == _input_types(onnx.load(str(DEFAULT_MODEL_FILE)))
    types = {t.data_type for t in converted.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types


def test_4k_frame_from_the_demo_clip(tmp_path: Path) -> None:
    from mattecli.sample import write_sample

    demo = tmp_path / "demo"
    write_sample(demo)
    gpu_check.frame4k(demo, tmp_path / "4k")
    frame = cv2.imread(str(tmp_path / "4k" / "frame.png"))
    trimap = cv2.imread(str(tmp_path / "4k" / "trimaps" / "frame.png"), cv2.IMREAD_GRAYSCALE)
    assert frame.shape == (2160, 3840, 3) and trimap.shape == (2160, 3840)
    assert set(np.unique(trimap)) <= {0, 128, 255} and len(np.unique(trimap)) == 3


def test_compare_and_report(shared_data: Path, tmp_path: Path) -> None:
    reference = shared_data / "alphamatting" / "alpha"
    names = sorted(p.name for p in reference.glob("*.png"))[:2]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    pixels = 0
    for name in names:
        alpha = cv2.imread(str(reference / name), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 257
        cv2.imwrite(str(a / name), alpha)
        moved = alpha.copy()
        moved[0, 0] = 65535 - moved[0, 0]  # one pixel flipped completely
        cv2.imwrite(str(b / name), moved)
        pixels += alpha.size
    diff = gpu_check.compare(a, b)
    assert diff["mattes"] == 2 and diff["max_abs"] == 1.0
    assert diff["mean_abs"] == pytest.approx(2 / pixels)

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "diff.out").write_text(json.dumps(diff))
    (logs / "bench.err").write_text("Error: TensorRT is not installed\n")
    (logs / "steps.tsv").write_text(
        "diff\t0\t0.5\tpython gpu_check.py compare a b\nbench\t3\t1.25\tmattecli bench\n"
    )
    report = tmp_path / "gpu_check.json"
    assert gpu_check.report(logs, report, started=0.0, deadline_s=480) is False
    data = json.loads(report.read_text())
    assert data["failed_steps"] == ["bench"] and not data["ok"]
    assert data["steps"]["diff"]["result"]["max_abs"] == 1.0
    assert data["steps"]["bench"]["stderr_tail"].startswith("Error: TensorRT")
