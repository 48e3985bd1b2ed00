"""The files ``mattecli plan`` writes: a job's chunks in the forms farm managers take.

* ``chunks.json``: the job and every chunk (number, frame range, inputs, argument list, shell line),
  for scripts and for Python farm submitters (Deadline, OpenCue, Ray Jobs).
* ``chunks.csv``: the same one row per chunk, for spreadsheets and managers that import tables.
* ``chunks.sh``: one ready ``mattecli run ... --start A --end B`` line per chunk, for GNU parallel,
  xargs or any manager that runs a command per task.
* ``slurm.sh``: a Slurm job array (``sbatch slurm.sh``), task K running chunk K's line; a failed
  task reruns alone with ``sbatch --array=K slurm.sh``.

Each chunk is named by explicit ``--start/--end`` numbers rather than ``--chunk K/N``, so what a
node runs is what the plan says, even if a node counts the input's frames differently. Every file
is written whole (temporary name, then rename), so a manager never reads half a plan.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mattecli.farm.chunks import Chunk
from mattecli.media.atomic import AtomicFile

PLAN_FILES = ("chunks.json", "chunks.csv", "chunks.sh", "slurm.sh")


@dataclass(frozen=True)
class PlannedChunk:
    chunk: Chunk
    args: list[str]  # the arguments of `mattecli run` (after the program name)

    def command(self, program: str) -> str:
        return shlex.join([program, "run", *self.args])


def chunk_args(chunk: Chunk, options: Sequence[str]) -> list[str]:
    """``run``'s arguments for one chunk: its inputs, the job's options, its frame range."""
    return [*chunk.inputs, *options, "--start", str(chunk.first), "--end", str(chunk.last)]


def write_plan(
    folder: Path,
    planned: Sequence[PlannedChunk],
    *,
    job: dict[str, Any],
    program: str,
    workdir: Path,
) -> list[Path]:
    """Write the four plan files into ``folder``; return their paths."""
    (folder / "logs").mkdir(parents=True, exist_ok=True)  # Slurm opens its log files before the script runs
    rows = [
        {
            "chunk": p.chunk.number,
            "of": p.chunk.count,
            "first": p.chunk.first,
            "last": p.chunk.last,
            "frames": p.chunk.frames,
            "inputs": list(p.chunk.inputs),
            "args": p.args,
            "command": p.command(program),
        }
        for p in planned
    ]
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["chunk", "of", "first", "last", "frames", "command"])
    for row in rows:
        writer.writerow([row[k] for k in ("chunk", "of", "first", "last", "frames", "command")])
    texts = {
        "chunks.json": json.dumps({"job": job, "workdir": str(workdir), "chunks": rows}, indent=2) + "\n",
        "chunks.csv": table.getvalue(),
        "chunks.sh": _shell_lines(rows, workdir),
        "slurm.sh": _slurm_script(rows, workdir, folder),
    }
    paths = []
    for name in PLAN_FILES:
        with AtomicFile(folder / name) as out:
            out.write(texts[name].encode())
        paths.append(folder / name)
    (folder / "slurm.sh").chmod(0o755)
    (folder / "chunks.sh").chmod(0o755)
    return paths


def _shell_lines(rows: list[dict[str, Any]], workdir: Path) -> str:
    head = [
        "#!/bin/sh",
        "# One mattecli run per chunk, from the folder below. Each line may run on any machine that",
        "# sees the same paths, in any order, at the same time as the others (sh chunks.sh runs them",
        "# one after another; give the lines after the cd to a farm manager to spread them).",
        f"cd {shlex.quote(str(workdir))} || exit 4",
    ]
    return "\n".join(head + [row["command"] for row in rows]) + "\n"


def _slurm_script(rows: list[dict[str, Any]], workdir: Path, folder: Path) -> str:
    count = len(rows)
    lines = [
        "#!/bin/bash",
        "#SBATCH --job-name=mattecli",
        f"#SBATCH --array=1-{count}",
        f"#SBATCH --output={folder.absolute() / 'logs'}/chunk-%a.log",
        "# Submit: sbatch slurm.sh (add --cpus-per-task, --mem, --gres=gpu:1 as your nodes need).",
        "# Rerun one failed chunk K: sbatch --array=K slurm.sh",
        "set -u",
        f"cd {shlex.quote(str(workdir))} || exit 4",
        'case "${SLURM_ARRAY_TASK_ID:?run this script with sbatch}" in',
    ]
    lines += [f"  {row['chunk']}) exec {row['command']} ;;" for row in rows]
    lines += [
        f'  *) echo "no chunk $SLURM_ARRAY_TASK_ID in this plan (1-{count})" >&2; exit 2 ;;',
        "esac",
    ]
    return "\n".join(lines) + "\n"
