"""``mattecli eval``: score predicted alpha mattes against ground truth with the DIM metrics.

The table is this command's product, so it goes to stdout (``--json`` replaces it with one JSON
document); progress and errors go to stderr. Every pairing problem (a missing prediction, ground
truth, trimap or foreground) is reported in one error before any image is scored, so a long
benchmark never dies on its last image because of a typo in a file name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from mattecli.console import err_console, print_json, user_errors
from mattecli.errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from mattecli.metrics import MatteScores

# How many names a "missing pairs" error lists.
MISSING_SHOWN = 5

_EXACT_TRIMAP_HINT = (
    "evaluation counts only pixels equal to 128 as unknown (the DIM convention); quantise "
    "anti-aliased trimaps to exact 0/128/255 first (below 85 -> 0, above 170 -> 255, else 128)"
)


@dataclass(frozen=True, slots=True)
class _Item:
    """The files of one evaluated image."""

    name: str
    pred: Path
    gt: Path
    trimap: Path | None
    pred_fg: Path | None
    gt_fg: Path | None


# A frame name: the clip's name, an optional separator, the frame number (clip.000012, shot_0042, 0007).
_FRAME_NAME = re.compile(r"(.*?)[._-]?(\d+)")


@dataclass(frozen=True, slots=True)
class _Clip:
    """The consecutive frames of one clip, in frame order, for the temporal metrics."""

    name: str
    numbers: list[int]
    items: list[_Item]


def _clips(items: list[_Item]) -> list[_Clip]:
    """Group the paired images into clips by the name before their frame number; refuse gaps.

    dtSSD and MESSDdt compare frame t with frame t-1, so a clip must be consecutive frames:
    a missing frame would silently compare frames two steps apart.
    """
    groups: dict[str, list[tuple[int, _Item]]] = {}
    for item in items:
        match = _FRAME_NAME.fullmatch(item.name)
        if match is None:
            raise InputError(
                "--temporal needs a frame number at the end of every name",
                path=item.gt,
                hint="name frames like clip.000012.png (what mattecli run and mattecli sample write)",
            )
        groups.setdefault(match.group(1) or item.gt.parent.name, []).append((int(match.group(2)), item))
    clips = []
    for name, frames in sorted(groups.items()):
        frames.sort(key=lambda frame: frame[0])
        numbers = [number for number, _ in frames]
        if len(frames) < 2:
            raise InputError(
                f"clip '{name}' has a single frame, but temporal metrics compare consecutive frames",
                path=frames[0][1].gt,
                hint="give at least two consecutive frames per clip, or leave out --temporal",
            )
        if breaks := [(a, b) for a, b in zip(numbers, numbers[1:], strict=False) if b != a + 1]:
            shown = ", ".join(f"{a} -> {b}" for a, b in breaks[:MISSING_SHOWN])
            raise InputError(
                f"clip '{name}' is not consecutive (frame numbers jump {shown})",
                path=frames[0][1].gt.parent,
                hint="temporal metrics compare frame t with t-1; give every frame of the range once",
            )
        clips.append(_Clip(name, numbers, [item for _, item in frames]))
    return clips


def _flow_frames(flow_from: Path, clips: list[_Clip]) -> dict[str, Path] | None:
    """Check ``--flow-from`` before scoring: a folder named like the ground truth, or one clip's video.

    Returns the folder's images by name, or None for a video (decoded while scoring).
    """
    from mattecli.media.imageio import images_by_stem

    if flow_from.is_dir():
        images = images_by_stem(flow_from, "flow image")
        names = [item.name for clip in clips for item in clip.items]
        if absent := [name for name in names if name not in images]:
            raise InputError(
                "cannot pair the inputs: "
                + _missing(absent, len(names), f"frames have no flow image in {flow_from}"),
                hint="flow images are matched by name like trimaps (frames/clip.000012.png)",
            )
        return images
    if not flow_from.is_file():
        raise InputError("flow source not found", path=flow_from, hint="give a folder of images or a video")
    if len(clips) != 1:
        raise InputError(
            f"a video gives the flow of one clip, but the predictions hold {len(clips)} clips",
            path=flow_from,
            hint="give a folder of images named like the ground truth instead",
        )
    return None


def _missing(names: list[str], total: int, what: str) -> str:
    shown = ", ".join(names[:MISSING_SHOWN])
    more = f" and {len(names) - MISSING_SHOWN} more" if len(names) > MISSING_SHOWN else ""
    return f"{len(names)} of {total} {what}: {shown}{more}"


def _pair(
    pred: Path,
    gt: Path,
    trimap_dir: Path | None,
    pred_fg: Path | None,
    gt_fg: Path | None,
) -> list[_Item]:
    """Match predictions, ground truth, trimaps and foregrounds by stem, or fail listing what is missing."""
    from mattecli.media.imageio import images_by_stem

    preds, gts = images_by_stem(pred, "prediction"), images_by_stem(gt, "ground-truth")
    if pred.is_file() and gt.is_file():
        preds = {gt.stem: pred}  # two files are compared whatever their names
    elif pred.is_file():
        gts = {stem: path for stem, path in gts.items() if stem in preds}
    elif gt.is_file():
        preds = {stem: path for stem, path in preds.items() if stem in gts}
    problems = []
    if no_pred := sorted(set(gts) - set(preds)):
        problems.append(_missing(no_pred, len(gts), f"ground-truth mattes have no prediction in {pred}"))
    if no_gt := sorted(set(preds) - set(gts)):
        problems.append(_missing(no_gt, len(preds), f"predictions have no ground truth in {gt}"))
    names = sorted(set(gts) & set(preds))
    if not names and not problems:
        problems.append(f"no prediction in {pred} has the name of a ground-truth matte in {gt}")
    extras: dict[str, dict[str, Path]] = {}
    for role, folder in (
        ("trimap", trimap_dir),
        ("predicted foreground", pred_fg),
        ("ground-truth foreground", gt_fg),
    ):
        if folder is None:
            continue
        if not folder.is_dir():
            raise InputError(
                f"{role} folder not found", path=folder, hint=f"give the folder of {role} images"
            )
        extras[role] = images_by_stem(folder, role)
        if absent := [name for name in names if name not in extras[role]]:
            problems.append(_missing(absent, len(names), f"images have no {role} in {folder}"))
    if problems:
        raise InputError(
            "cannot pair the inputs: " + "; ".join(problems),
            hint="files are matched by name without suffix (pred/GT01.png, gt/GT01.png, trimaps/GT01.png)",
        )
    return [
        _Item(
            name=name,
            pred=preds[name],
            gt=gts[name],
            trimap=extras.get("trimap", {}).get(name),
            pred_fg=extras.get("predicted foreground", {}).get(name),
            gt_fg=extras.get("ground-truth foreground", {}).get(name),
        )
        for name in names
    ]


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"


def _same_size(array: np.ndarray, path: Path, reference: np.ndarray, reference_path: Path, what: str) -> None:
    if array.shape[:2] != reference.shape[:2]:
        raise InputError(
            f"{what} is {_size(array)} but the ground truth {reference_path} is {_size(reference)} (WxH)",
            path=path,
            hint="every prediction, trimap and foreground must have its ground truth's size",
        )


def _read_matte(path: Path) -> np.ndarray:
    import numpy as np

    from mattecli.media.imageio import read_gray

    matte = read_gray(path)
    if matte.dtype not in (np.uint8, np.uint16) and not np.issubdtype(matte.dtype, np.floating):
        raise InputError(f"unsupported matte type {matte.dtype}", path=path, hint="use 8/16-bit PNG or EXR")
    if np.issubdtype(matte.dtype, np.floating) and not np.isfinite(matte).all():
        raise InputError(
            "matte has NaN or infinite values", path=path, hint="check the renderer or model output"
        )
    return matte


def _read_trimap(path: Path) -> np.ndarray:
    """An exact 0/128/255 uint8 trimap, or an error saying which values are off."""
    import numpy as np

    from mattecli.media.imageio import read_gray

    trimap = read_gray(path)
    if trimap.dtype != np.uint8:
        raise InputError(f"trimap is {trimap.dtype}, not 8-bit", path=path, hint=_EXACT_TRIMAP_HINT)
    counts = np.bincount(trimap.ravel(), minlength=256)
    counts[[0, 128, 255]] = 0
    if off := int(counts.sum()):
        values = ", ".join(str(v) for v in np.flatnonzero(counts)[:5])
        raise InputError(
            f"trimap has {off} pixels that are not 0, 128 or 255 (values {values}...)",
            path=path,
            hint=_EXACT_TRIMAP_HINT,
        )
    return trimap


def _score(item: _Item, region: str, precision: str) -> tuple[MatteScores, int]:
    """Read one image's files, check them, and compute its metrics (and the evaluated pixel count)."""
    import numpy as np

    from mattecli.media.imageio import read_image
    from mattecli.metrics import evaluate_matte, region_mask

    gt = _read_matte(item.gt)
    pred = _read_matte(item.pred)
    _same_size(pred, item.pred, gt, item.gt, "prediction")
    trimap = None
    if region == "unknown":
        assert item.trimap is not None  # _pair was given the trimap folder
        trimap = _read_trimap(item.trimap)
        _same_size(trimap, item.trimap, gt, item.gt, "trimap")
    pixels = int(np.count_nonzero(region_mask(trimap, region, gt.shape)))
    if pixels == 0:
        raise InputError(
            "trimap has no unknown (128) pixels, so there is nothing to evaluate",
            path=item.trimap,
            hint="use --region all to score the whole image",
        )
    pred_fg = gt_fg = None
    if item.pred_fg is not None and item.gt_fg is not None:
        pred_fg, gt_fg = read_image(item.pred_fg), read_image(item.gt_fg)
        _same_size(pred_fg, item.pred_fg, gt, item.gt, "predicted foreground")
        _same_size(gt_fg, item.gt_fg, gt, item.gt, "ground-truth foreground")
    scores = evaluate_matte(
        pred, gt, trimap, region=region, precision=precision, pred_fg=pred_fg, gt_fg=gt_fg
    )
    return scores, pixels


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _print_table(
    rows: list[tuple[str, dict[str, float]]], mean: dict[str, float], region: str, precision: str
) -> None:
    from rich.console import Console
    from rich.table import Table

    from mattecli.metrics import METRICS

    keys = [spec.key for spec in METRICS if spec.key in mean]
    where = "the trimap's unknown region (== 128)" if region == "unknown" else "the whole image"
    how = "8-bit, as the official DIM code" if precision == "dim" else "full precision (float64)"
    table = Table(
        title=f"Matting errors over {where}; {how}",
        caption=(
            "Paper scaling: SAD, Grad and Conn are sums over the region / 1000; MSE is x 1000 (FBA); "
            "MAD is the plain mean. --json also gives the raw values."
        ),
    )
    table.add_column("image")
    specs = {spec.key: spec for spec in METRICS}
    for key in keys:
        table.add_column(specs[key].label, justify="right")
    for name, paper in rows:
        table.add_row(name, *(_fmt(paper[key]) for key in keys))
    table.add_section()
    table.add_row(f"mean ({len(rows)})", *(_fmt(mean[key]) for key in keys), style="bold")
    Console(highlight=False).print(table)


def _print_temporal(temporal: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="Temporal coherence (whole frame, consecutive frame pairs)",
        caption=(
            "dtSSD: 100 x RMS of the error in the frame-to-frame alpha change (RVM). MESSDdt: sum of the "
            "change of the squared error along the motion (Erofeev et al.); flow from the "
            f"{temporal['flow']['source']}."
        ),
    )
    for column in ("clip", "frames", "dtSSD", "MESSDdt"):
        table.add_column(column, justify="left" if column == "clip" else "right")
    for name, scores in temporal["clips"].items():
        table.add_row(
            name, f"{scores['first']}-{scores['last']}", _fmt(scores["dtssd"]), _fmt(scores["messddt"])
        )
    table.add_section()
    mean = temporal["mean"]
    table.add_row(f"mean ({temporal['count']})", "", _fmt(mean["dtssd"]), _fmt(mean["messddt"]), style="bold")
    Console(highlight=False).print(table)


def evaluate(
    pred: Path = typer.Argument(..., help="Predicted alpha mattes: a folder, or one image file."),
    gt: Path = typer.Argument(..., help="Ground-truth alpha mattes: a folder, or one image file."),
    trimap_dir: Path | None = typer.Option(
        None,
        "--trimap-dir",
        "-t",
        help="Folder of trimaps named like the ground truth (exact 0/128/255). Needed for --region unknown.",
    ),
    region: Literal["unknown", "all"] = typer.Option(
        "unknown", "--region", help="Score the trimap's unknown pixels (== 128) or the whole image."
    ),
    precision: Literal["dim", "float"] = typer.Option(
        "dim",
        "--precision",
        help="dim: quantise to 8 bits and compute exactly like the official DIM MATLAB code "
        "(comparable with papers); float: keep 16-bit/EXR precision, compute in float64.",
    ),
    pred_fg: Path | None = typer.Option(
        None, "--pred-fg", help="Folder of predicted foreground colours; adds the alpha x F errors."
    ),
    gt_fg: Path | None = typer.Option(None, "--gt-fg", help="Folder of ground-truth foreground colours."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON document instead of the table."),
    temporal: bool = typer.Option(
        False,
        "--temporal",
        help="Also score flicker per clip: dtSSD and MESSDdt. Names end in frame numbers "
        "(clip.000012.png); each clip's frames must be consecutive.",
    ),
    flow_from: Path | None = typer.Option(
        None,
        "--flow-from",
        help="Images to estimate MESSDdt's optical flow on: a folder named like the ground truth "
        "(source frames, ground-truth foreground) or one clip's video. Default: the ground-truth alpha.",
    ),
) -> None:
    """Score predicted alpha mattes against ground truth with the DIM metrics.

    Files are paired by name without suffix: pred/GT01.png, gt/GT01.png and
    trimaps/GT01.png (mattes: 8- or 16-bit PNG or TIFF, or EXR). All pairs are
    checked before anything is scored.

    The table lists each image and the mean in the scaling of the DIM and FBA
    papers: SAD, Grad and Conn are sums / 1000, MSE is x 1000. --json prints
    raw and paper-scaled values instead.

    Examples:

    ```
    mattecli eval out/alpha gt/alpha --trimap-dir gt/trimap

    mattecli eval out/alpha gt/alpha -t gt/trimap --json | jq .mean.paper

    mattecli eval out/alpha gt/alpha -t gt/trimap --pred-fg out/fg --gt-fg gt/fg

    mattecli eval demo/out/alpha demo/alpha -t demo/trimaps --temporal
    ```

    --temporal adds, per clip and as the mean over clips: dtSSD (100 x RMS over the
    whole frame of the difference between the predicted and true frame-to-frame
    alpha change; RVM's definition) and MESSDdt (sum over the frame of the change of
    the squared error along the motion; Erofeev et al., as TCVOM computes it). Both are
    means over the frame pairs of a clip. MESSDdt's flow is estimated with OpenCV's DIS
    optical flow on the ground-truth alpha, or on --flow-from's images.
    """
    with user_errors():
        if region == "unknown" and trimap_dir is None:
            raise InputError(
                "--region unknown needs trimaps",
                hint="pass --trimap-dir, or use --region all for whole images",
            )
        if (pred_fg is None) != (gt_fg is None):
            raise InputError(
                "--pred-fg and --gt-fg go together", hint="give both foreground folders or neither"
            )
        if flow_from is not None and not temporal:
            raise InputError("--flow-from is for --temporal", hint="add --temporal or leave out --flow-from")
        items = _pair(pred, gt, trimap_dir if region == "unknown" else None, pred_fg, gt_fg)
        plan = None
        if temporal:
            clips = _clips(items)
            plan = _TemporalPlan(clips, flow_from, _flow_frames(flow_from, clips) if flow_from else None)
        _run(items, region, precision, json_output, plan)


@dataclass(frozen=True, slots=True)
class _TemporalPlan:
    """What --temporal scores: the clips, and where MESSDdt's flow comes from."""

    clips: list[_Clip]
    flow_from: Path | None  # None: the ground-truth alpha
    flow_images: dict[str, Path] | None  # a folder's images by name; None with a video

    def source(self) -> str:
        if self.flow_from is None:
            return "ground-truth alpha"
        kind = (
            "images named like the ground truth in" if self.flow_images is not None else "frames of the video"
        )
        return f"{kind} {self.flow_from}"


def _flow_image_stream(plan: _TemporalPlan, clip: _Clip) -> Iterator[np.ndarray | None]:
    """The image each frame's flow is estimated on, in frame order; None means its ground-truth alpha."""
    from mattecli.media.imageio import read_image
    from mattecli.media.sources import open_source

    if plan.flow_from is None:
        yield from (None for _ in clip.items)
    elif plan.flow_images is not None:
        yield from (read_image(plan.flow_images[item.name]) for item in clip.items)
    else:
        with open_source(plan.flow_from) as source:
            frames = source.frames(start=clip.numbers[0], end=clip.numbers[-1], prefetch=0)
            for number, frame in zip(clip.numbers, frames, strict=False):
                if frame.index != number:
                    raise InputError(
                        f"the video has no frame {number} (next is {frame.index})",
                        path=plan.flow_from,
                        hint="the video's frame numbers (0-based) must cover the clip's",
                    )
                yield frame.image
            if frame.index != clip.numbers[-1]:
                raise InputError(
                    f"the video ends at frame {frame.index}, before the clip's last frame {clip.numbers[-1]}",
                    path=plan.flow_from,
                    hint="give the video the predictions were made from",
                )


def _score_clip(plan: _TemporalPlan, clip: _Clip, advance: Callable[[], None]) -> dict[str, object]:
    """dtSSD and MESSDdt of one clip, reading two frames at a time (a long clip never sits in memory)."""
    import numpy as np

    from mattecli.temporal_metrics import dtssd_pair, estimate_flow, messddt_pair, unit_alpha

    dtssd, messddt = [], []
    previous = None
    for item, image in zip(clip.items, _flow_image_stream(plan, clip), strict=True):
        gt_raw = _read_matte(item.gt)
        g, a = unit_alpha(gt_raw), unit_alpha(_read_matte(item.pred))
        if image is None:
            image = gt_raw
        else:
            where = plan.flow_from if plan.flow_images is None else plan.flow_images[item.name]
            _same_size(image, where, gt_raw, item.gt, "flow image")
        if previous is not None:
            a_prev, g_prev, image_prev = previous
            dtssd.append(dtssd_pair(a, a_prev, g, g_prev))
            messddt.append(messddt_pair(a, a_prev, g, g_prev, estimate_flow(image, image_prev)))
        previous = (a, g, image)
        advance()
    return {
        "first": clip.numbers[0],
        "last": clip.numbers[-1],
        "frames": len(clip.items),
        "dtssd": float(np.mean(dtssd)),
        "messddt": float(np.mean(messddt)),
    }


def _temporal(plan: _TemporalPlan) -> dict[str, object]:
    """The ``temporal`` part of the report: per-clip scores, their mean, and how they were computed."""
    import numpy as np
    from rich.progress import Progress

    from mattecli.temporal_metrics import FLOW_METHOD

    frames = sum(len(clip.items) for clip in plan.clips)
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task("temporal", total=frames)
        clips = {clip.name: _score_clip(plan, clip, lambda: progress.advance(task)) for clip in plan.clips}
    return {
        "clips": clips,
        "mean": {
            key: float(np.mean([scores[key] for scores in clips.values()])) for key in ("dtssd", "messddt")
        },
        "count": len(clips),
        "flow": {"source": plan.source(), "method": FLOW_METHOD},
        "definition": {
            "dtssd": "mean over t=1..T-1 of 100*sqrt(mean over the frame of ((a_t-a_{t-1})-(g_t-g_{t-1}))^2)",
            "messddt": "mean over t=1..T-1 of the sum over the frame of |(a_t-g_t)^2-(a'_{t-1}-g'_{t-1})^2|, "
            "' = warped into frame t by the flow (pixels whose flow leaves the frame are skipped)",
            "alpha": "in [0, 1] as stored (8-bit / 255, 16-bit / 65535, float as is)",
        },
    }


def _run(
    items: list[_Item], region: str, precision: str, json_output: bool, plan: _TemporalPlan | None = None
) -> None:
    from rich.progress import Progress

    from mattecli.metrics import METRICS, mean_scores, to_paper

    results = []
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task("scoring", total=len(items))
        for item in items:
            scores, pixels = _score(item, region, precision)
            results.append((item, scores, pixels))
            progress.advance(task)
    mean_raw = mean_scores([scores for _, scores, _ in results])
    mean_paper = to_paper(mean_raw)
    temporal = _temporal(plan) if plan is not None else None
    if not json_output:
        _print_table(
            [(item.name, scores.paper()) for item, scores, _ in results], mean_paper, region, precision
        )
        if temporal is not None:
            _print_temporal(temporal)
        return
    print_json(
        {
            "region": region,
            "precision": precision,
            "count": len(results),
            "scaling": {
                spec.key: {"label": spec.label, "paper_factor": spec.factor, "raw": spec.raw}
                for spec in METRICS
                if spec.key in mean_raw
            },
            "images": [
                {
                    "name": item.name,
                    "pred": str(item.pred),
                    "gt": str(item.gt),
                    "trimap": str(item.trimap) if item.trimap else None,
                    "pixels": pixels,
                    "raw": scores.raw(),
                    "paper": scores.paper(),
                }
                for item, scores, pixels in results
            ],
            "mean": {"raw": mean_raw, "paper": mean_paper},
            **({"temporal": temporal} if temporal is not None else {}),
        }
    )
