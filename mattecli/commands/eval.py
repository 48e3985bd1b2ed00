"""``mattecli eval``: score predicted alpha mattes against ground truth with the DIM metrics.

The table is this command's product, so it goes to stdout (``--json`` replaces it with one JSON
document); progress and errors go to stderr. Every pairing problem (a missing prediction, ground
truth, trimap or foreground) is reported in one error before any image is scored, so a long
benchmark never dies on its last image because of a typo in a file name.
"""

from __future__ import annotations

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
    ```
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
        items = _pair(pred, gt, trimap_dir if region == "unknown" else None, pred_fg, gt_fg)
        _run(items, region, precision, json_output)


def _run(items: list[_Item], region: str, precision: str, json_output: bool) -> None:
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
    if not json_output:
        _print_table(
            [(item.name, scores.paper()) for item, scores, _ in results], mean_paper, region, precision
        )
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
        }
    )
