"""Demo clips for the video tests, and the fingerprints that say two runs wrote the same files.

Clips come from ``mattecli sample`` (through the real command line), so every video test starts
from the same H.264 file and trimaps a user gets.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from mattecli.cli import app


def sample_clip(folder: Path, frames: int | None = None, size: tuple[int, int] | None = None) -> Path:
    """Render a ``mattecli sample`` clip into ``folder`` (default length and 640x360 when not given)."""
    args = ["sample", str(folder)]
    if frames is not None:
        args += ["--frames", str(frames)]
    if size is not None:
        args += ["--width", str(size[0]), "--height", str(size[1])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    return folder


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file in ``folder``, by name."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def local_run_hashes(clip: Path, out: Path) -> dict[str, str]:
    """Matte a sample clip here with its per-frame trimaps; the sha256 of every alpha file written.

    The reference that chunked, resumed and distributed runs of the same clip must reproduce.
    """
    args = ["run", str(clip / "clip.mp4"), "-t", str(clip / "trimaps"), "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    return file_hashes(out / "alpha")
