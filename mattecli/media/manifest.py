"""The run manifest: what made the outputs of a folder, so ``--resume`` never mixes two kinds of matte.

``OUT/.mattecli-run.json`` records the model file's sha256 and every option that changes the
pixels written (engine and device kind, TTA, refinement, fusion, tiling, trimaps, output
formats). ``--resume`` keeps an existing frame only when this run's settings are the recorded
ones; otherwise it stops before the model loads and says which setting differs.

A fresh run (without ``--resume``) over the outputs of other settings rewrites them frame by
frame; killed half-way, the folder holds both kinds. The manifest says so (``mixed``) until a
fresh run finishes every frame of every input, and ``--resume`` refuses a mixed folder. Outputs found without
a manifest (another tool, an older version) are treated the same way: nothing says what made them.
Frame ranges (``--start``/``--end``/``--every``) and names are not settings: the chunks of one
shot, written one after another or at the same time into one folder, share a manifest. Chunks
running at the same time update it one at a time (:func:`mattecli.media.outfolder.folder_gate`),
so a chunk starting beside another sees the other's record, not its outputs without a record;
and a chunk that stops before its first frame leaves the record alone while others are writing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mattecli.errors import OutputError
from mattecli.media.atomic import AtomicFile
from mattecli.media.outfolder import MANIFEST_NAME, folder_gate, others_writing, output_subfolders
from mattecli.media.sinks import OutputSpec

VERSION = 1
_SHOWN_DIGITS = 12  # of a sha256 in a message


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def pixel_settings(
    spec: OutputSpec,
    *,
    model: Path,
    engine: str,
    device: str,
    tta: str,
    refine: tuple[int, float] | None,
    fusion: bool | None,
    tiles: tuple[int | None, int, int, int],
    trimap_dir: Path | None,
    resize_trimaps: bool,
    mask_dir: Path | None = None,
    mask_trimaps: dict[str, Any] | None = None,
    keyframes: bool = False,
    temporal: bool = False,
) -> dict[str, Any]:
    """Everything that changes the bytes of an output, keyed by the option that sets it.

    ``tiles``: (size or None for --no-tile, context, blend, batch); ``refine``: (steps, lr).
    The device counts by kind only (cuda:0 and cuda:1 compute the same). ``mask_trimaps``: how
    ``--mask-dir`` masks become trimaps (band, thresholds), which changes every trimap.
    """
    size, context, blend, batch = tiles
    return {
        "model sha256": file_sha256(model) if model.is_file() else None,  # a missing one: reported later
        "--engine": engine,
        "--device": device.split(":")[0],
        "--tta": tta,
        "--refine": None if refine is None else {"steps": refine[0], "lr": refine[1]},
        "--fusion": fusion,
        "--tile": size,
        "--context": context,
        "--blend": blend,
        "--batch": batch,
        "--trimap-dir": None if trimap_dir is None else str(Path(trimap_dir).resolve()),
        "--resize-trimaps": resize_trimaps,
        "--mask-dir": None if mask_dir is None else str(Path(mask_dir).resolve()),
        "mask trimaps": None if mask_dir is None else mask_trimaps,
        # Only when set, so the records of runs without them match those of earlier versions.
        **({"--keyframes": True} if keyframes else {}),
        **({"--temporal": True} if temporal else {}),
        "--alpha": spec.alpha,
        "--fg": spec.foreground,
        "--premultiplied": spec.premultiplied,
        "--composite": None if spec.composite is None else str(spec.composite),
        "--composite-format": spec.composite_format,
        "--video": spec.video,
        "--video-content": spec.video_content,
    }


@dataclass(frozen=True)
class RunRecord:
    settings: dict[str, Any]
    mixed: bool  # outputs of other settings may remain beside these


def read_manifest(folder: Path) -> RunRecord | None:
    """The recorded run, or None when there is none (or it cannot be read, which trusts nothing)."""
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text())
        return RunRecord(dict(data["settings"]), bool(data["mixed"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_manifest(folder: Path, record: RunRecord) -> None:
    text = json.dumps({"version": VERSION, "settings": record.settings, "mixed": record.mixed}, indent=2)
    with AtomicFile(folder / MANIFEST_NAME) as out:
        out.write(text.encode() + b"\n")


def _has_outputs(spec: OutputSpec) -> bool:
    """Whether the output folder already holds output files (hidden files are not outputs)."""
    for _, folder in output_subfolders(spec):
        if folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir()):
            return True
    return False


def _shown(key: str, value: Any) -> str:
    if key == "model sha256" and isinstance(value, str):
        return value[:_SHOWN_DIGITS] + "…"
    return "none" if value is None else json.dumps(value) if isinstance(value, dict) else str(value)


def differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``"--tta none before, flip now"`` for each setting that differs."""
    keys = list(now) + [k for k in before if k not in now]
    return [
        f"{key} {_shown(key, before.get(key))} before, {_shown(key, now.get(key))} now"
        for key in keys
        if before.get(key) != now.get(key)
    ]


def check_resume(spec: OutputSpec, settings: dict[str, Any]) -> None:
    """Refuse ``--resume`` unless the outputs here were made with ``settings`` (see the module docstring)."""
    folder = spec.directory
    old = read_manifest(folder)
    rerun = "run without --resume to compute every frame again"
    if old is None:
        if _has_outputs(spec):
            raise OutputError(
                f"--resume: nothing records what made the outputs here (no {MANIFEST_NAME})",
                path=folder,
                hint=rerun,
            )
        return
    changed = differences(old.settings, settings)
    if changed:
        raise OutputError(
            "--resume: the outputs here were made with other settings: " + "; ".join(changed),
            path=folder,
            hint=f"resume with the same model and options, or {rerun}",
        )
    if old.mixed:
        raise OutputError(
            "--resume: a run with other settings was rewriting the outputs here and did not finish, "
            "so they are of two kinds",
            path=folder,
            hint=rerun,
        )


def begin_run(spec: OutputSpec, settings: dict[str, Any], *, resume: bool) -> RunRecord | None:
    """Record this run before its first frame (a resume was checked by :func:`check_resume`).

    Returns the record it replaced, for :func:`restore_record` when the run stops before a frame.
    """
    with folder_gate(spec.directory):
        old = read_manifest(spec.directory)
        others = _has_outputs(spec) if old is None else old.mixed or old.settings != settings
        write_manifest(spec.directory, RunRecord(settings, mixed=not resume and others))
    return old


def restore_record(spec: OutputSpec, previous: RunRecord | None) -> None:
    """The run stopped before its first frame: the outputs are as they were, so is their record
    (unless other chunks of the job are writing under the record this run shares with them)."""
    with folder_gate(spec.directory):
        if others_writing(spec.directory):
            return
        if previous is not None:
            write_manifest(spec.directory, previous)
        else:
            (spec.directory / MANIFEST_NAME).unlink(missing_ok=True)


def finish_run(spec: OutputSpec, settings: dict[str, Any], *, every_frame: bool) -> None:
    """Every input finished. When the run covered every frame (no --start, --end or --every),
    the outputs are all of this run's settings now; a frame range leaves the others as they were."""
    if every_frame:
        write_manifest(spec.directory, RunRecord(settings, mixed=False))
