"""Farm chunks: ``mattecli plan``, ``run --chunk K/N`` and frame-range runs sharing one output folder.

What must hold on a farm: the chunks cover every frame exactly once; chunk runs started as
separate processes at the same time, some of them killed and run again, leave the same files as
one single-machine run; a chunk never removes the temporary files of a chunk that is still
writing; and a run of another job (or a whole run) is refused while chunks are writing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clips import file_hashes, local_run_hashes, sample_clip
from typer.testing import CliRunner

from mattecli.cli import app
from mattecli.errors import InputError, OutputError
from mattecli.farm.chunks import JobFrames, chunks_of_size, job_frames, parse_chunk, split
from mattecli.media.manifest import read_manifest
from mattecli.media.outfolder import CHUNK_LOCK, ChunkClaim, job_key
from mattecli.media.sinks import OutputSpec

FRAMES = 20
PLANTED = ".mattecli-0123456789ab.part"  # a temporary file name as the atomic writer makes them


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_clip(tmp_path_factory.mktemp("plan") / "demo", FRAMES, (160, 96))


@pytest.fixture(scope="module")
def single(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """sha256 of every alpha file of one single-machine run of the whole clip."""
    return local_run_hashes(clip, tmp_path_factory.mktemp("single") / "out")


def _hashes(out: Path) -> dict[str, str]:
    return file_hashes(out / "alpha")


def _run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", *map(str, args)])
    return result.exit_code, result.stderr


# --- splitting ---------------------------------------------------------------------------------------


def test_chunks_cover_every_frame_once_in_even_ranges() -> None:
    job = JobFrames((("a.mp4", tuple(range(1001, 1101, 3))), ("b.mp4", tuple(range(1001, 1020, 3)))))
    numbers = job.numbers
    for count in (1, 2, 5, 7, len(numbers), len(numbers) + 3):
        chunks = split(job, count)
        assert len(chunks) == count
        covered = [n for c in chunks for n in numbers if c.first <= n <= c.last]
        assert covered == numbers  # in order, none twice, none missing
        sizes = [c.frames for c in chunks]
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(numbers)
        for c in chunks:  # b.mp4 only where its frames are
            assert ("b.mp4" in c.inputs) == (c.frames > 0 and c.first <= 1019)
    sized = chunks_of_size(job, 10)
    assert len(sized) == 4 and max(c.frames for c in sized) <= 10 and min(c.frames for c in sized) >= 1


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "-1/2"])
def test_a_chunk_that_is_not_k_of_n_is_refused(text: str) -> None:
    with pytest.raises(InputError, match="not K/N"):
        parse_chunk(text)
    assert parse_chunk(" 2 / 5") == (2, 5)


def test_every_keeps_its_stride_across_chunks(clip: Path) -> None:
    job = job_frames([str(clip / "clip.mp4")], 1, None, 3)
    assert job.numbers == list(range(1, FRAMES, 3))
    for chunk in split(job, 3):  # each chunk starts on the stride, so --start keeps it
        assert (chunk.first - 1) % 3 == 0


def test_run_chunk_k_of_n_writes_exactly_that_chunks_frames(clip: Path, tmp_path: Path, single: dict) -> None:
    out = tmp_path / "out"
    code, stderr = _run(clip / "clip.mp4", "-t", clip / "trimaps", "-o", out, "--chunk", "2/3")
    assert code == 0, stderr
    chunk = split(job_frames([str(clip / "clip.mp4")], None, None, 1), 3)[1]
    names = [f"clip.{n:06d}.png" for n in range(chunk.first, chunk.last + 1)]
    assert _hashes(out) == {name: single[name] for name in names}
    code, stderr = _run(clip / "clip.mp4", "-t", clip / "trimaps", "-o", out, "--chunk", "9/7")
    assert code == 4 and "not K/N" in stderr and "Traceback" not in stderr


# --- plan -----------------------------------------------------------------------------------------------


def test_plan_writes_a_job_list_shell_lines_and_a_slurm_array(clip: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan"
    args = [str(clip / "clip.mp4"), "-t", str(clip / "trimaps"), "-o", str(tmp_path / "out"), "--start=2"]
    result = CliRunner().invoke(app, ["plan", "--chunks", "4", "-p", str(plan), "--json", "--", *args])
    assert result.exit_code == 0, result.stderr
    listed = json.loads((plan / "chunks.json").read_text())
    assert listed["job"]["frames"] == FRAMES - 2 and len(listed["chunks"]) == 4
    assert json.loads(result.stdout)["chunks"][0]["args"] == listed["chunks"][0]["args"]
    ranges = [(c["first"], c["last"]) for c in listed["chunks"]]
    assert ranges == [(2, 5), (6, 10), (11, 14), (15, 19)]  # 18 frames: 4, 5, 4, 5
    for chunk in listed["chunks"]:  # the job's own --start is replaced by each chunk's range
        assert "--start=2" not in chunk["args"]
        assert chunk["args"][-4:] == ["--start", str(chunk["first"]), "--end", str(chunk["last"])]
    lines = (plan / "chunks.sh").read_text().splitlines()
    assert [line for line in lines if line.startswith("mattecli run")] == [
        c["command"] for c in listed["chunks"]
    ]
    rows = (plan / "chunks.csv").read_text().splitlines()
    assert rows[0] == "chunk,of,first,last,frames,command" and len(rows) == 5
    slurm = (plan / "slurm.sh").read_text()
    assert "#SBATCH --array=1-4" in slurm and (plan / "logs").is_dir()
    assert subprocess.run(["bash", "-n", str(plan / "slurm.sh")]).returncode == 0
    for k, chunk in enumerate(listed["chunks"], 1):
        assert f"  {k}) exec {chunk['command']} ;;" in slurm


@pytest.mark.parametrize(
    ("extra", "message"), [(["--chunk", "1/2"], "a plan makes the chunks"), (["--executor", "ray"], "farm")]
)
def test_plan_refuses_a_job_that_splits_itself(
    clip: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    args = [str(clip / "clip.mp4"), "-o", str(tmp_path / "out"), *extra]
    result = CliRunner().invoke(app, ["plan", "-p", str(tmp_path / "plan"), "--", *args])
    assert result.exit_code == 4 and message in result.stderr, result.stderr
    assert not (tmp_path / "plan").exists()


def test_five_chunk_processes_two_killed_and_rerun_give_the_single_run_files(
    clip: Path, tmp_path: Path, single: dict
) -> None:
    out, plan = tmp_path / "out", tmp_path / "plan"
    job = [str(clip / "clip.mp4"), "-t", str(clip / "trimaps"), "-o", str(out), "-q"]
    result = CliRunner().invoke(app, ["plan", "--chunks", "5", "-p", str(plan), "--", *job])
    assert result.exit_code == 0, result.stderr
    chunks = json.loads((plan / "chunks.json").read_text())["chunks"]
    command = [sys.executable, "-c", "from mattecli.cli import app; app()", "run"]
    procs = [subprocess.Popen([*command, *c["args"]], stderr=subprocess.PIPE, text=True) for c in chunks]
    killed = [1, 3]
    deadline = time.monotonic() + 60
    while not list(out.glob("alpha/*.png")) and time.monotonic() < deadline:  # the farm is writing
        time.sleep(0.01)
    for k in killed:
        procs[k].send_signal(signal.SIGKILL)
    for k, proc in enumerate(procs):
        _, stderr = proc.communicate(timeout=120)
        if k not in killed:
            assert proc.returncode == 0, stderr  # running beside each other, none was refused
    assert any(procs[k].returncode == -signal.SIGKILL for k in killed)  # not all had finished
    assert read_manifest(out) is not None and not read_manifest(out).mixed
    for k in killed:  # a node runs its chunk again, the same line
        rerun = subprocess.run([*command, *chunks[k]["args"]], capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
    assert _hashes(out) == single
    left = [p.name for p in out.rglob("*") if p.name.startswith(".mattecli-") and p.name.endswith(".part")]
    assert left == [] and not [p for p in out.iterdir() if CHUNK_LOCK.match(p.name)]
    code, stderr = _run(clip / "clip.mp4", "-t", clip / "trimaps", "-o", out, "--resume")
    assert code == 0 and "0 frames written" in stderr, stderr  # the folder is one job's, complete


# --- chunks sharing a folder -------------------------------------------------------------------------


def test_a_chunk_beside_a_live_chunk_keeps_its_temporaries_and_other_jobs_are_refused(
    clip: Path, tmp_path: Path, single: dict
) -> None:
    out = tmp_path / "out"
    base = [clip / "clip.mp4", "-t", clip / "trimaps", "-o", out]
    code, stderr = _run(*base, "--start", 0, "--end", 4)
    assert code == 0, stderr
    manifest = read_manifest(out)
    assert manifest is not None
    spec = OutputSpec(out)
    live = ChunkClaim(spec, job_key(manifest.settings))  # another node writing chunk 0-4 right now
    try:
        planted = out / "alpha" / PLANTED
        planted.write_bytes(b"half a frame being written")
        code, stderr = _run(*base, "--start", 5, "--end", 9)  # same job: joins
        assert code == 0, stderr
        assert planted.exists()  # the live chunk's file was left alone
        code, stderr = _run(*base)  # a whole run must wait for the chunks
        assert code == 4 and "another mattecli run" in stderr and "frame range" in stderr, stderr
        code, stderr = _run(*base, "--start", 10, "--end", 14, "--tile", 256)  # another job
        assert code == 4 and "other settings" in stderr and f"pid {os.getpid()}" in stderr, stderr
    finally:
        live.release()
    code, stderr = _run(*base, "--start", 15, "--end", 19)  # alone now: the litter goes
    assert code == 0 and not planted.exists(), stderr
    assert _hashes(out) == {name: single[name] for name in _hashes(out)}
    other = ChunkClaim(spec, "another-job-key")  # and the other way round
    try:
        with pytest.raises(OutputError, match="other settings"):
            ChunkClaim(spec, job_key(manifest.settings))
    finally:
        other.release()


def test_a_killed_chunks_lock_file_does_not_hold_the_folder(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code = (
        "import os, sys; from pathlib import Path; from mattecli.media.sinks import OutputSpec; "
        "from mattecli.media.outfolder import ChunkClaim; "
        "ChunkClaim(OutputSpec(Path(sys.argv[1])), 'a-dead-job'); os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", code, str(out)], check=False)
    assert [p for p in out.iterdir() if CHUNK_LOCK.match(p.name)]  # it died holding its chunk file
    (out / "alpha").mkdir()
    (out / "alpha" / PLANTED).write_bytes(b"left by the killed run")
    code_, stderr = _run(clip / "clip.mp4", "-t", clip / "trimaps", "-o", out, "--start", 0, "--end", 1)
    assert code_ == 0, stderr  # a dead job's chunk file is not a live job
    assert not (out / "alpha" / PLANTED).exists() and "removed 1 temporary file" in stderr
    assert not [p for p in out.iterdir() if CHUNK_LOCK.match(p.name)]
