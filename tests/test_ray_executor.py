"""``run --executor ray`` on real Ray clusters: one started in this process, and a ``ray start --head``.

The promise under test: the Ray run writes the single-machine run's files byte for byte, and a
worker killed mid-run (by its pid, as the kernel's OOM killer or a lost node would) costs a rerun
of its chunk, never a missing, doubled or half-written frame.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from clips import file_hashes, local_run_hashes, sample_clip
from typer.testing import CliRunner

from mattecli.cli import app
from mattecli.default_model import default_model_path
from mattecli.farm.executors import EngineArgs
from mattecli.media.sinks import OutputSpec
from mattecli.run_options import RunOptions
from mattecli.summary import RunSummary

ray = pytest.importorskip("ray", reason="the Ray executor needs the ray extra (pip install -e '.[ray]')")

FRAMES = 24
RAY_BIN = Path(sys.executable).parent / "ray"
SMALL_STORE = 200 * 1024 * 1024


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_clip(tmp_path_factory.mktemp("ray") / "demo", FRAMES, (320, 180))


@pytest.fixture(scope="module")
def single(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """sha256 of every alpha file of one single-machine run of the whole clip."""
    return local_run_hashes(clip, tmp_path_factory.mktemp("single") / "out")


@pytest.fixture(scope="module")
def local_ray() -> object:
    """A 2-CPU Ray instance in this process (the executor uses it rather than starting its own)."""
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=SMALL_STORE,
        logging_level="WARNING",
    )
    yield ray
    ray.shutdown()


def _hashes(out: Path) -> dict[str, str]:
    return file_hashes(out / "alpha")


def _temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob(".mattecli-*.part")]


def test_a_ray_run_writes_the_single_machine_files(
    clip: Path, tmp_path: Path, single: dict, local_ray: object
) -> None:
    out = tmp_path / "out"
    args = [str(clip / "clip.mp4"), "-t", str(clip / "trimaps"), "-o", str(out)]
    result = CliRunner().invoke(app, ["run", *args, "--executor", "ray", "--task-frames", "5", "--json"])
    assert result.exit_code == 0, result.stderr
    assert _hashes(out) == single
    summary = json.loads(result.stdout)
    executor = summary["executor"]
    assert executor["name"] == "ray" and executor["workers"] == 2 and executor["threads_per_worker"] == 1
    assert executor["tasks"] == 5 and executor["retried"] == 0  # 24 frames in tasks of at most 5
    assert summary["totals"]["frames_written"] == FRAMES and summary["inputs"][0]["frames_total"] == FRAMES
    assert summary["totals"]["seconds"]["engine"] > 0  # the workers' stage seconds reach the driver
    # --resume through the workers: every frame is found complete
    result = CliRunner().invoke(app, ["run", *args, "--executor", "ray", "--resume", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["frames_skipped"] == FRAMES


def test_ray_refuses_a_video_output_and_local_refuses_ray_options(
    clip: Path, tmp_path: Path, local_ray: object
) -> None:
    args = [str(clip / "clip.mp4"), "-t", str(clip / "trimaps"), "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(app, ["run", *args, "--executor", "ray", "--video", "ffv1"])
    assert result.exit_code == 4 and "one process" in result.stderr and "Traceback" not in result.stderr
    result = CliRunner().invoke(app, ["run", *args, "--workers", "2"])
    assert result.exit_code == 4 and "only for --executor ray" in result.stderr


def test_an_input_that_cannot_be_opened_is_reported_and_the_others_run(
    clip: Path, tmp_path: Path, single: dict, local_ray: object
) -> None:
    missing = tmp_path / "absent.mp4"
    out = tmp_path / "out"
    args = [str(missing), str(clip / "clip.mp4"), "-t", str(clip / "trimaps"), "-o", str(out)]
    result = CliRunner().invoke(app, ["run", *args, "--executor", "ray", "--json"])
    assert result.exit_code == 1, result.stderr  # as a local run: the others finish, then exit 1
    assert "absent.mp4" in result.stderr and "Traceback" not in result.stderr
    assert _hashes(out) == single
    summary = json.loads(result.stdout)
    failed = [item for item in summary["inputs"] if item["failed"]]
    assert [item["path"] for item in failed] == [str(missing)]


def test_a_missing_trimap_stops_the_job_before_any_worker_writes(
    clip: Path, tmp_path: Path, local_ray: object
) -> None:
    trimaps = tmp_path / "trimaps"
    shutil.copytree(clip / "trimaps", trimaps)
    (trimaps / f"clip.{FRAMES - 2:06d}.png").unlink()  # the last chunk's frame: found on the driver first
    out = tmp_path / "out"
    args = [
        str(clip / "clip.mp4"),
        "-t",
        str(trimaps),
        "-o",
        str(out),
        "--executor",
        "ray",
        "--task-frames",
        "5",
    ]
    result = CliRunner().invoke(app, ["run", *args])
    assert result.exit_code == 4 and "Traceback" not in result.stderr
    assert f"clip (frame {FRAMES - 2})" in result.stderr
    assert not (out / "alpha").exists() or not any((out / "alpha").iterdir())


def test_a_worker_killed_mid_run_has_its_chunk_run_again(
    clip: Path, tmp_path: Path, single: dict, local_ray: object
) -> None:
    from mattecli.farm.ray_executor import RayExecutor

    out = tmp_path / "out"
    engine = EngineArgs("ort", default_model_path(), "cpu")
    executor = RayExecutor(engine, workers=2, task_frames=3)
    pids = executor.worker_pids()
    assert len(set(pids)) == 2 and os.getpid() not in pids
    done: list[RunSummary] = []
    runner = threading.Thread(
        target=lambda: done.append(
            executor.run(
                [str(clip / "clip.mp4")], OutputSpec(out), trimap_spec=clip / "trimaps", options=RunOptions()
            )
        )
    )
    try:
        runner.start()
        deadline = time.monotonic() + 60
        while len(list(out.glob("alpha/*.png"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(list(out.glob("alpha/*.png"))) < FRAMES // 2  # the kill lands early, chunks remain
        os.kill(pids[0], signal.SIGKILL)
        runner.join(timeout=120)
        assert not runner.is_alive()
    finally:
        executor.close()
    summary = done[0]
    assert summary.run["executor"]["retried"] >= 1
    assert summary.totals()["frames_written"] == FRAMES and not summary.failed
    assert _hashes(out) == single  # every frame once, the same bytes
    assert _temporaries(out) == []  # what the dead worker began was removed, never published


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ray_head_node_runs_the_job_from_another_process(clip: Path, tmp_path: Path, single: dict) -> None:
    if ray.is_initialized():  # the in-process instance of the tests above must not be the one used
        ray.shutdown()
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay under 108 bytes
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [
        str(RAY_BIN), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
        "--num-cpus", "2", "--disable-usage-stats", "--include-dashboard", "false",
        "--object-store-memory", str(SMALL_STORE), "--temp-dir", str(temp),
    ]  # fmt: skip
    started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        out = tmp_path / "out"
        command = [sys.executable, "-c", "from mattecli.cli import app; app()", "run"]
        args = [str(clip / "clip.mp4"), "-t", str(clip / "trimaps"), "-o", str(out), "--json"]
        result = subprocess.run(
            [*command, *args, "--executor", "ray", "--address", f"127.0.0.1:{port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["executor"]["address"].endswith(f":{port}")  # that cluster
        assert _hashes(out) == single
    finally:
        subprocess.run([str(RAY_BIN), "stop", "--force"], env=env, capture_output=True, timeout=120)
        left = subprocess.run(["pgrep", "-f", str(temp)], capture_output=True, text=True)
        shutil.rmtree(temp, ignore_errors=True)
    assert left.stdout.strip() == "", "Ray processes survived ray stop"


def test_no_cluster_at_the_address_is_one_line_and_exit_3(clip: Path, tmp_path: Path) -> None:
    if ray.is_initialized():
        ray.shutdown()
    args = [str(clip / "clip.mp4"), "-t", str(clip / "trimaps"), "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(
        app, ["run", *args, "--executor", "ray", "--address", f"127.0.0.1:{_free_port()}"]
    )
    assert result.exit_code == 3, result.stderr
    assert "cannot reach the Ray cluster" in result.stderr and "Traceback" not in result.stderr
