"""What the measurement scripts of this folder share: the alphamatting data, the model run, README tables.

The scripts (``default_vs_closed_form.py``, ``tiling_sad.py``) write tables that go into the README
between marker comments, so a number there can always be traced to the command that printed it.
The model runs through :class:`mattecli.pipeline.FrameMatter`, the per-frame work of
``mattecli run`` (input encoding, engine over tiles, fusion, known regions), on frames already in
memory, so a measurement times and scores what a user's run computes, without decoding and writing.

Run the scripts from the repository root (``python benchmarks/NAME.py``); Python then finds this
module beside them.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.base import Engine
from engines.sidecar import file_sha256
from mattecli.band_predictor import CellChoice
from mattecli.errors import InputError
from mattecli.foreground import pair_folders
from mattecli.frame_matter import FrameMatter
from mattecli.media.frame import Frame
from mattecli.media.imageio import atomic_path, read_gray, read_image
from mattecli.media.sinks import OutputSpec
from mattecli.media.trimaps import off_level_pixels
from mattecli.models import ModelContract
from mattecli.run_options import RunOptions, TileOptions, check_options
from mattecli.summary import StageClock

REPO_ROOT = Path(__file__).resolve().parents[1]
ALPHAMATTING = "alphamatting"
SHA_SHOWN = 12  # hex digits of a model file's sha256 shown in captions


@dataclass(frozen=True)
class Triplet:
    """One alphamatting.com image with its ground truth, as stored (8-bit)."""

    name: str
    path: Path  # the photo
    image: np.ndarray  # H x W x 3 RGB
    alpha: np.ndarray  # H x W ground-truth alpha
    trimap: np.ndarray  # H x W uint8, exactly 0/128/255


def parse_list(text: str, option: str) -> list[str]:
    """A comma-separated option value (``GT07,GT08``) as its non-empty items."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise InputError(f"{option} is empty", hint=f"give comma-separated values, e.g. {option} a,b")
    return items


def parse_ints(text: str, option: str) -> list[int]:
    """A comma-separated list of positive or zero integers (``256,320``)."""
    values = []
    for item in parse_list(text, option):
        if not item.isdigit():
            raise InputError(f"{option}: {item!r} is not a whole number", hint=f"e.g. {option} 256,320")
        values.append(int(item))
    return values


def load_alphamatting(data: Path, names: Sequence[str] | None = None) -> list[Triplet]:
    """The alphamatting triplets under ``data/alphamatting`` (image, alpha, trimap = Trimap1), by name.

    ``names`` selects images (all of them when None); every name must exist. Trimaps must be clean
    0/128/255, since the DIM evaluation counts exactly 128 as unknown.
    """
    root = Path(data) / ALPHAMATTING
    if not root.is_dir():
        raise InputError(
            "no alphamatting folder here",
            path=root,
            hint="pass --data, or set MATTECLI_DATA to the data folder",
        )
    pairs = dict(pair_folders({role: root / role for role in ("image", "alpha", "trimap")}))
    chosen = sorted(pairs) if names is None else list(names)
    if missing := [name for name in chosen if name not in pairs]:
        raise InputError(
            f"no alphamatting image named {', '.join(missing)}",
            path=root / "image",
            hint=f"the names here are {', '.join(sorted(pairs))}",
        )
    return [_read_triplet(name, pairs[name]) for name in chosen]


def _read_triplet(name: str, files: dict[str, Path]) -> Triplet:
    image = read_image(files["image"])
    alpha = read_gray(files["alpha"])
    trimap = read_gray(files["trimap"])
    if trimap.dtype != np.uint8 or off_level_pixels(trimap):
        raise InputError(
            "trimap is not a clean 8-bit 0/128/255 image",
            path=files["trimap"],
            hint="the evaluation counts exactly 128 as unknown; use the dataset's own trimaps",
        )
    for what, array in (("alpha", alpha), ("trimap", trimap)):
        if array.shape != image.shape[:2]:
            raise InputError(
                f"{what} is {array.shape[1]}x{array.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]} (WxH)",
                path=files[what],
            )
    return Triplet(name, files["image"], image, alpha, trimap)


def holdout_names(contract: ModelContract) -> list[str]:
    """The images the model was never trained on, as the trainer recorded them in its facts (maybe none)."""
    value = contract.weights.get("holdout")
    return parse_list(str(value), "holdout") if value else []


def model_line(contract: ModelContract, model: Path) -> str:
    """``name`` from ``file`` (sha256 prefix): which weights produced a table."""
    return f"`{contract.name}` from `{display_path(model)}` (sha256 `{file_sha256(model)[:SHA_SHOWN]}`)"


def display_path(path: Path) -> str:
    """A path relative to the repository when it lies inside it (shorter, and the same on every clone)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran this script, as a user would type it from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    return shlex.join(["python", display_path(Path(argv[0])), *argv[1:]])


def machine_line(threads: int | None) -> str:
    import onnxruntime

    used = f"{threads} ONNX Runtime threads" if threads else "ONNX Runtime's default threads"
    return f"{os.cpu_count()} CPU cores, onnxruntime {onnxruntime.__version__}, {used}"


# --- running the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """One method's result on one image: alpha (H x W), foreground (H x W x 3) in [0, 1], wall seconds."""

    alpha: np.ndarray
    foreground: np.ndarray | None
    seconds: float


def frame_matter(
    engine: Engine,
    tiles: TileOptions,
    *,
    fusion: bool | None = None,
    foreground: bool = False,
    band_cells: CellChoice = "band",
) -> FrameMatter:
    """The per-frame work of ``mattecli run`` with these options (checked as ``run`` checks them).

    ``fusion`` None: on when the model supports it, as ``run`` decides; ``foreground``: also return
    the foreground colour, as ``run --fg`` does; ``band_cells="all"``: a band model computes every
    cell (its whole-frame inference) instead of the unknown band's.
    """
    output = OutputSpec(directory=Path("."), alpha=None, foreground="png16" if foreground else None)
    fused = check_options(engine.contract, output, RunOptions(tiles=tiles, fusion=fusion), trimaps=True)
    return FrameMatter(
        engine,
        tiles=tiles,
        tta="none",
        fusion=fused,
        want_foreground=foreground,
        clock=StageClock(),
        band_cells=band_cells,
    )


def predict(matter: FrameMatter, item: Triplet) -> Prediction:
    """Run one image through ``matter`` and time it (preprocessing, engine over tiles, fusion)."""
    frame = Frame(index=0, name=item.name, image=item.image, source=item.path)
    began = time.perf_counter()
    alpha, fg = matter(frame, item.trimap)
    return Prediction(alpha, fg, time.perf_counter() - began)


# --- tables -------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def mattecli(args: Sequence[str]) -> str:
    """Run one mattecli command in this process, as a user types it; its stdout.

    A failure is an :class:`InputError` naming the command and its output, so a script stops
    with one line rather than scoring a folder the command never filled.
    """
    from typer.testing import CliRunner

    from mattecli.cli import app

    result = CliRunner().invoke(app, list(args))
    if result.exit_code != 0:
        raise InputError(f"mattecli {' '.join(args)} failed ({result.exit_code}): {result.output.strip()}")
    return result.stdout


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> str:
    """A GitHub markdown table; the first ``left`` columns are text, the others numbers (right-aligned)."""
    align = ["---" if i < left else "---:" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _split(readme: Path, name: str) -> tuple[str, str]:
    """The README's text up to and including the start marker, and from the end marker on."""
    readme = Path(readme)
    if not readme.is_file():
        raise InputError("README not found", path=readme, hint="give the README.md to update with --readme")
    content = readme.read_text(encoding="utf-8")
    start, end = markers(name)
    counts = (content.count(start), content.count(end))
    if counts != (1, 1):
        raise InputError(
            f"expected one {start} and one {end} marker, found {counts[0]} and {counts[1]}",
            path=readme,
            hint=f"put a line {start} and, below it, a line {end} where the table goes",
        )
    head, rest = content.split(start)
    if end not in rest:
        raise InputError(f"{end} comes before {start}", path=readme, hint="swap the two marker lines")
    return head + start, end + rest.split(end)[1]


def check_section(readme: Path, name: str) -> None:
    """Refuse a README without the section's markers before a long measurement, not after it."""
    _split(readme, name)


def replace_section(readme: Path, name: str, text: str) -> None:
    """Put ``text`` between the README's ``<!-- name:start -->`` and ``<!-- name:end -->`` lines.

    The markers stay, so the next run replaces its own output again; everything outside them is
    kept byte for byte. The file is replaced atomically.
    """
    head, tail = _split(readme, name)
    with atomic_path(Path(readme)) as tmp:
        tmp.write_text(f"{head}\n{text.strip()}\n{tail}", encoding="utf-8")


def publish(text: str, payload: object, *, readme: Path | None, section: str, as_json: bool) -> None:
    """Write the table into the README's section (if asked), then print it, or ``payload`` as JSON."""
    from mattecli.console import err_console, print_json

    if readme is not None:
        replace_section(readme, section, text)
        err_console.print(f"updated {display_path(readme)} ({section})", markup=False)
    if as_json:
        print_json(payload)
    else:
        print(text)
