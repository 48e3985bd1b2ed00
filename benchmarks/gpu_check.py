"""The Python steps of ``benchmarks/gpu_check.sh``: fp16 model, 4K frame, alpha comparison, the report.

Kept out of the shell script so each step is one plain command whose exit code and output the
script records. ``report`` needs only the standard library: it still writes the JSON when the
virtual environment never got built.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

UHD = (3840, 2160)  # width, height
STDERR_TAIL = 2000  # characters of each step's stderr kept in the report


def fp16(source: Path, target: Path) -> None:
    """The fp16 variant TensorRT needs for an fp16 engine, converted as `mattecli export --fp16` does.

    The default model ships as ONNX only, so the conversion starts from the fp32 graph, not a
    checkpoint; the contract in the metadata is kept (the copy carries every metadata entry).
    """
    import onnx

    from training.fp16 import convert_to_fp16

    onnx.save(convert_to_fp16(onnx.load(str(source))), str(target))


def frame4k(demo: Path, out: Path) -> None:
    """A 3840x2160 photo and its trimap: the demo clip's first frame and trimap scaled up 6x.

    The trimap is scaled with nearest-neighbour so it keeps its three values; the unknown band
    grows with it, which is what a 4K plate of the same shot would have.
    """
    import av
    import cv2

    with av.open(str(demo / "clip.mp4")) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    trimaps = sorted((demo / "trimaps").glob("*.png"))
    trimap = cv2.imread(str(trimaps[0]), cv2.IMREAD_GRAYSCALE)
    (out / "trimaps").mkdir(parents=True, exist_ok=True)
    big = cv2.resize(rgb, UHD, interpolation=cv2.INTER_CUBIC)
    if not cv2.imwrite(str(out / "frame.png"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR)):
        raise SystemExit(f"could not write {out / 'frame.png'}")
    big_trimap = cv2.resize(trimap, UHD, interpolation=cv2.INTER_NEAREST)
    if not cv2.imwrite(str(out / "trimaps" / "frame.png"), big_trimap):
        raise SystemExit(f"could not write {out / 'trimaps' / 'frame.png'}")


def compare(reference: Path, other: Path) -> dict[str, object]:
    """Max and mean absolute alpha difference (alpha in [0, 1]) over every matte both folders hold."""
    import cv2
    import numpy as np

    names = sorted(p.name for p in reference.glob("*.png"))
    missing = [n for n in names if not (other / n).is_file()]
    if not names or missing:
        raise SystemExit(f"{other} lacks {len(missing)} of the {len(names)} mattes in {reference}")
    worst, total, pixels = 0.0, 0.0, 0
    per_frame = []
    for name in names:
        a, b = (cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED) for folder in (reference, other))
        scale = 65535.0 if a.dtype == np.uint16 else 255.0
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64)) / scale
        worst = max(worst, float(diff.max()))
        total += float(diff.sum())
        pixels += diff.size
        per_frame.append(round(float(diff.max()), 6))
    return {
        "reference": str(reference),
        "other": str(other),
        "mattes": len(names),
        "max_abs": worst,
        "mean_abs": total / pixels,
        "max_abs_per_matte": per_frame,
    }


def _parsed(text: str) -> object:
    """A step's stdout: its JSON where it printed JSON (`--json`), else the text's tail."""
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()[-STDERR_TAIL:] or None


def report(logs: Path, out: Path, started: float, deadline_s: int) -> bool:
    """Write one JSON file from the steps' records; True when every step passed."""
    steps = []
    for line in (logs / "steps.tsv").read_text(encoding="utf-8").splitlines():
        name, rc, seconds, command = line.split("\t", 3)
        stdout = logs / f"{name}.out"
        stderr = logs / f"{name}.err"
        err = stderr.read_text(encoding="utf-8", errors="replace") if stderr.is_file() else ""
        out_text = stdout.read_text(encoding="utf-8", errors="replace") if stdout.is_file() else ""
        steps.append(
            {
                "step": name,
                "command": command,
                "exit_code": int(rc),
                "timed_out": int(rc) in (124, 137),
                "seconds": float(seconds),
                "result": _parsed(out_text),
                "stderr_tail": err[-STDERR_TAIL:],
            }
        )
    finished = datetime.now(UTC).timestamp()
    ok = bool(steps) and all(s["exit_code"] == 0 for s in steps)
    data = {
        "script": "benchmarks/gpu_check.sh",
        "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "seconds": round(finished - started, 1),
        "deadline_s": deadline_s,
        "ok": ok,
        "failed_steps": [s["step"] for s in steps if s["exit_code"] != 0],
        "steps": {s["step"]: s for s in steps},
    }
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return ok


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fp16")
    p.add_argument("source", type=Path)
    p.add_argument("target", type=Path)
    p = sub.add_parser("frame4k")
    p.add_argument("demo", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("compare")
    p.add_argument("reference", type=Path)
    p.add_argument("other", type=Path)
    p = sub.add_parser("report")
    p.add_argument("logs", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--started", type=float, required=True)
    p.add_argument("--deadline", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "fp16":
        fp16(args.source, args.target)
    elif args.command == "frame4k":
        frame4k(args.demo, args.out)
    elif args.command == "compare":
        print(json.dumps(compare(args.reference, args.other), indent=2))
    else:
        return 0 if report(args.logs, args.out, args.started, args.deadline) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
