"""``mattecli plan``: split a ``run`` job into chunks and write them for a render farm.

The job is given exactly as it would be given to ``run`` (after ``--``), and parsed by ``run``'s
own option parser, so every ``run`` option (today's and tomorrow's) reaches the chunks unchanged
and a typo is caught here, not on 500 farm nodes. The files are described in
:mod:`mattecli.farm.plan_files`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mattecli.console import err_console, print_json, user_errors
from mattecli.errors import InputError

if TYPE_CHECKING:
    from mattecli.farm.chunks import Chunk, JobFrames


def plan(
    job: list[str] = typer.Argument(
        ...,
        help="The job: what you would write after `mattecli run` (put -- before it).",
        metavar="-- RUN_ARGS...",
        show_default=False,
    ),
    chunk_frames: int | None = typer.Option(
        None, "--chunk-frames", "-n", min=1, help="Frames per chunk (default 100, unless --chunks is given)."
    ),
    chunks: int | None = typer.Option(None, "--chunks", min=1, help="Number of chunks instead."),
    plan_dir: Path = typer.Option(Path("plan"), "--plan-dir", "-p", help="Folder for the plan files."),
    program: str = typer.Option(
        "mattecli", "--program", help="The mattecli command the farm nodes run (e.g. /opt/venv/bin/mattecli)."
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print the plan (chunks.json's content) on stdout."
    ),
) -> None:
    """Split a `run` job into chunks of frames: a job list, shell lines and a Slurm array script.

    The chunks are even ranges of frame numbers (`--start A --end B`, inclusive), written into
    PLAN_DIR as `chunks.json`, `chunks.csv`, `chunks.sh` (one `mattecli run` line per chunk) and
    `slurm.sh` (a job array). The chunks may run at the same time on any machines that see the
    same paths: frame-range runs of one job share the output folder, and their files add up to
    the single-machine run's, byte for byte. `run --chunk K/N` runs the K-th of N such chunks.

    Examples:

    ```
    mattecli plan -n 50 -- shot/shot.%04d.exr -t trimaps/ -o out/ -m fba.onnx

    mattecli plan --chunks 20 -p plans/sh010 -- sh010.mov -t sh010_trimaps/ -o /mnt/renders/sh010

    sbatch plan/slurm.sh                       # Slurm: one array task per chunk

    sh plan/chunks.sh                          # or run the lines one after another here
    ```
    """
    from mattecli.farm.chunks import chunks_of_size, job_frames, split
    from mattecli.farm.plan_files import PlannedChunk, chunk_args, write_plan

    with user_errors():
        if chunks is not None and chunk_frames is not None:
            raise InputError("--chunks and --chunk-frames exclude each other", hint="give one of them")
        params, options = _parse_run(job)
        frames = job_frames(params["inputs"], params["start"], params["end"], params["every"])
        if not frames.numbers:
            raise InputError("the job selects no frames", hint="check the inputs, --start, --end and --every")
        parts = split(frames, chunks) if chunks is not None else chunks_of_size(frames, chunk_frames or 100)
        parts = [part for part in parts if part.frames]
        if params.get("keyframes") and params.get("trimap_dir") is not None:
            _check_keyframe_starts(frames, parts, Path(str(params["trimap_dir"])))
        planned = [PlannedChunk(part, chunk_args(part, options)) for part in parts]
        summary = {
            "args": list(job),
            "inputs": [spec for spec, _ in frames.per_input],
            "frames": len(frames.numbers),
            "chunks": len(planned),
        }
        paths = write_plan(plan_dir, planned, job=summary, program=program, workdir=Path(os.getcwd()))
        low, high = min(p.chunk.frames for p in planned), max(p.chunk.frames for p in planned)
        err_console.print(
            f"{len(planned)} chunks of {low if low == high else f'{low}-{high}'} frames "
            f"({summary['frames']} frames) written to {plan_dir}: {', '.join(p.name for p in paths)}",
            markup=False,
            highlight=False,
        )
        if json_output:
            print_json({"job": summary, "chunks": [
                {"chunk": p.chunk.number, "first": p.chunk.first, "last": p.chunk.last,
                 "frames": p.chunk.frames, "args": p.args, "command": p.command(program)}
                for p in planned
            ]})  # fmt: skip


def _check_keyframe_starts(frames: JobFrames, parts: list[Chunk], trimap_dir: Path) -> None:
    """With ``--keyframes`` every chunk carries trimaps from its own first frame, which must be a keyframe."""
    from mattecli.media.sources import open_source
    from mattecli.media.trimaps import TrimapIndex

    index = TrimapIndex.open(trimap_dir)
    for spec, numbers in frames.per_input:
        source = open_source(spec)
        try:
            names = {number: name for name, number in source.frame_ids()}
        finally:
            source.close()
        for part in parts:
            first = next((n for n in numbers if part.first <= n <= part.last), None)
            if first is not None and index.find(names[first], first) is None:
                raise InputError(
                    f"chunk {part.label} would start {spec} at frame {first}, which has no keyframe trimap",
                    path=trimap_dir,
                    hint="--keyframes carries trimaps from each chunk's first frame; chunks are even "
                    "splits, so pick --chunks (or -n) that puts every chunk's start on a keyframe",
                )


def _parse_run(args: list[str]) -> tuple[dict[str, object], list[str]]:
    """Parse ``args`` with ``run``'s own parser; return its values and the options without the
    inputs and the frame range (each chunk gets its own)."""
    from mattecli.cli import app

    run = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    with run.make_context("mattecli run", list(args)) as ctx:
        params = dict(ctx.params)
    if params.get("chunk") is not None:
        raise InputError("the job has --chunk: a plan makes the chunks", hint="drop --chunk from the job")
    if params.get("executor") != "local":
        raise InputError(
            "the job has --executor ray: a plan's chunks run on a farm, each on one machine",
            hint="drop --executor (or run the job with --executor ray instead of planning it)",
        )
    takes_value = {
        name for param in run.params if param.param_type_name == "option" and not param.is_flag
        for name in param.opts
    }  # fmt: skip
    ranged = {"--start", "--end"}
    options: list[str] = []
    rest = iter(args)
    for arg in rest:
        name = arg.split("=", 1)[0]
        if arg == "--":
            break  # everything after it is an input
        if not arg.startswith("-") or arg == "-":
            continue  # an input: each chunk names its own
        value = [] if "=" in arg or name not in takes_value else [next(rest, "")]
        if name not in ranged:
            options += [arg, *value]
    return params, options
