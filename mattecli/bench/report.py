"""The benchmark's report: one markdown table of every (resolution, method), the targets, and JSON.

The targets are ratios between methods measured in the same run on the same machine, so they say
something on any machine; absolute fps only describe the machine they were taken on, which the
report names. Nothing here invents a figure: a method that was skipped or failed has no numbers,
and a target that depends on it reads "not measured" with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mattecli.bench.methods import METHODS, MethodResult
from mattecli.metrics import METRIC_SPECS
from mattecli.summary import STAGES

STAGE_LABELS = {
    "decode": "decode",
    "preprocess": "trimap+prep",
    "engine": "engine",
    "fusion": "fusion",
    "write": "encode+write",
}
# The issues' targets for the CPU (issue 7's, with issue 11's stricter memory bound and fps goals).
FPS_RATIO_MIN = 5.0  # (c) / (a) at 1080p
CLOSED_FORM_RATIO_MIN = 10.0  # (c) / (d) at 1080p
FPS_MIN = {"1080p": 2.0, "4k": 0.5}  # (c) frames per second on the benchmark machine
SAD_EXCESS_MAX = 2.0  # % by which (c)'s SAD may exceed (a)'s, at 1080p
NON_ENGINE_MAX = 0.15  # share of (c)'s wall time outside the engine
RSS_4K_MAX_MB = 1500.0  # peak RSS of (c) at 4K, 10^6 bytes
RSS_GROWTH_MAX = 10.0  # % growth of (c)'s peak RSS from a short to a ten times longer clip
TARGET_RESOLUTION = "1080p"
RSS_RESOLUTION = "4k"


@dataclass(frozen=True)
class Target:
    """One target: the measured value (None when not measured), how it reads, and whether it passed."""

    name: str
    goal: str
    value: float | None
    shown: str
    passed: bool | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "goal": self.goal,
            "value": self.value,
            "shown": self.shown,
            "passed": self.passed,
        }


@dataclass
class BenchReport:
    """Everything one ``mattecli bench`` run measured, and where."""

    machine: dict[str, Any]
    model: dict[str, Any]
    options: dict[str, Any]
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)  # resolution label -> workload
    results: list[MethodResult] = field(default_factory=list)

    def result(self, resolution: str, method: str) -> MethodResult | None:
        return next((r for r in self.results if r.resolution == resolution and r.method == method), None)

    def targets(self) -> list[Target]:
        """The issue's CPU targets, from this run's results."""
        targets = [self._fps_ratio(), self._closed_form_ratio(), self._sad_change()]
        targets += [self._fps(label) for label in FPS_MIN if label in self.workloads]
        targets += [self._outside_engine(label) for label in self.workloads] or [
            self._outside_engine(TARGET_RESOLUTION)
        ]
        targets.append(self._rss_4k())
        return targets

    def _measured(self, resolution: str, method: str) -> MethodResult | str:
        """The result when it has numbers, else why not (for a "not measured" line)."""
        result = self.result(resolution, method)
        if result is None:
            return f"({method}) was not run at {resolution}"
        if result.status != "ok" or not result.frames:
            return (
                f"({method}) {result.status}: {result.reason}"
                if result.reason
                else f"({method}) {result.status}"
            )
        return result

    def _fps_ratio(self) -> Target:
        return self._speedup_over("a", FPS_RATIO_MIN)

    def _closed_form_ratio(self) -> Target:
        return self._speedup_over("d", CLOSED_FORM_RATIO_MIN)

    def _speedup_over(self, method: str, minimum: float) -> Target:
        """fps of (c) over ``method``'s at the target resolution, against ``minimum``."""
        name, goal = f"fps (c) / ({method}), {TARGET_RESOLUTION}", f">= {minimum:g}x"
        other, c = self._measured(TARGET_RESOLUTION, method), self._measured(TARGET_RESOLUTION, "c")
        if isinstance(other, str) or isinstance(c, str):
            return _not_measured(name, goal, other if isinstance(other, str) else c)
        ratio = c.fps / other.fps  # type: ignore[operator]
        return Target(name, goal, ratio, f"{ratio:.2f}x", ratio >= minimum)

    def _fps(self, resolution: str) -> Target:
        """An absolute figure: it holds for this machine only (the report names the machine)."""
        goal = FPS_MIN[resolution]
        name = f"fps (c), {resolution}, this machine"
        c = self._measured(resolution, "c")
        if isinstance(c, str):
            return _not_measured(name, f">= {goal:g}", c)
        return Target(name, f">= {goal:g}", c.fps, f"{c.fps:.2f}", c.fps >= goal)  # type: ignore[operator]

    def _sad_change(self) -> Target:
        name, goal = f"SAD (c) vs (a), {TARGET_RESOLUTION}", f"<= +{SAD_EXCESS_MAX:g}%"
        a, c = self._measured(TARGET_RESOLUTION, "a"), self._measured(TARGET_RESOLUTION, "c")
        if isinstance(a, str) or isinstance(c, str):
            return _not_measured(name, goal, a if isinstance(a, str) else c)
        common = min(len(a.sad), len(c.sad))  # the same frames for both
        if not common:
            return _not_measured(name, goal, "no frame was scored")
        base = math.fsum(a.sad[:common])
        if base == 0:
            return _not_measured(name, goal, "(a) has SAD 0, so a relative change is undefined")
        change = (math.fsum(c.sad[:common]) / base - 1.0) * 100.0
        shown = f"{change:+.2f}% ({common} frames)"
        return Target(name, goal, change, shown, change <= SAD_EXCESS_MAX)

    def _outside_engine(self, resolution: str) -> Target:
        name, goal = f"time outside the engine, (c) {resolution}", f"<= {NON_ENGINE_MAX:.0%} of wall"
        c = self._measured(resolution, "c")
        if isinstance(c, str):
            return _not_measured(name, goal, c)
        share = 1.0 - c.engine_share  # type: ignore[operator]
        return Target(name, goal, share, f"{share:.1%}", share <= NON_ENGINE_MAX)

    def _rss_4k(self) -> Target:
        name, goal = f"peak RSS (c), {RSS_RESOLUTION}", f"< {RSS_4K_MAX_MB:,.0f} MB"
        c = self._measured(RSS_RESOLUTION, "c")
        if isinstance(c, str):
            return _not_measured(name, goal, c)
        rss = c.peak_rss_mb
        if rss is None:
            return _not_measured(name, goal, "the child did not report its peak RSS")
        return Target(name, goal, rss, f"{rss:,.0f} MB", rss < RSS_4K_MAX_MB)

    # --- output ---------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "model": self.model,
            "options": self.options,
            "workloads": self.workloads,
            "results": [
                {**r.to_json(), "sad_mean": _mean(r.sad), "grad_mean": _mean(r.grad)} for r in self.results
            ],
            "targets": [t.to_json() for t in self.targets()],
        }

    def markdown(self) -> str:
        lines = ["## mattecli bench", ""]
        lines += [f"- {line}" for line in _machine_lines(self.machine, self.model, self.options)]
        for label, workload in self.workloads.items():
            lines.append(f"- {label}: {_describe_workload(workload)}")
        lines += ["", *_table(self.results), ""]
        lines += [
            "Stage columns are seconds per frame. (c) decodes and writes in threads of their own, beside "
            "the engine, so its stages can add up to more than its wall time; (a), (b) and (d) do one "
            "thing after another. Engine share = engine seconds / wall seconds. CPU cores = CPU seconds "
            "of all the method's threads / wall seconds (far below the thread count: something else "
            "had the cores). (d): engine = the closed-form alpha solve, fusion = pymatting's foreground "
            "estimate. SAD and Grad: mean per frame on the trimap's unknown band against the ground "
            "truth (DIM-parity metrics), Σ/10³.",
            "",
            "### Targets (ratios from this run)",
            "",
            "| target | measured | goal | result |",
            "| --- | --- | --- | --- |",
        ]
        for t in self.targets():
            result = "—" if t.passed is None else ("PASS" if t.passed else "FAIL")
            lines.append(f"| {t.name} | {t.shown} | {t.goal} | {result} |")
        notes = [
            f"{r.resolution} ({r.method}) {r.status}: {r.reason}" for r in self.results if r.status != "ok"
        ]
        if notes:
            lines += ["", "Not measured:", "", *[f"- {note}" for note in notes]]
        return "\n".join(lines) + "\n"


def growth_target(rss_short_mb: float, rss_long_mb: float, short: int, long: int) -> Target:
    """Peak RSS of (c) over a long clip against a short one: the pipeline keeps nothing per frame."""
    growth = (rss_long_mb / rss_short_mb - 1.0) * 100.0
    name = f"peak RSS growth (c), {short} -> {long} frames"
    shown = f"{growth:+.1f}% ({rss_short_mb:,.0f} -> {rss_long_mb:,.0f} MB)"
    return Target(name, f"< +{RSS_GROWTH_MAX:g}%", growth, shown, growth < RSS_GROWTH_MAX)


def _not_measured(name: str, goal: str, why: str) -> Target:
    return Target(name, goal, None, f"not measured: {why}", None)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _number(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _table(results: Sequence[MethodResult]) -> list[str]:
    sad, grad = METRIC_SPECS["sad"], METRIC_SPECS["grad"]
    header = [
        "resolution",
        "method",
        "frames",
        "fps",
        *(STAGE_LABELS[s] for s in STAGES),
        "engine share",
        "CPU cores",
        "peak RSS MB",
        sad.label,
        grad.label,
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in results:
        name = f"({r.method}) {METHODS[r.method]}"
        if r.status != "ok":
            cells = [r.resolution, name, r.status, *["—"] * (len(header) - 3)]
        else:
            sad_mean, grad_mean = _mean(r.sad), _mean(r.grad)
            cells = [
                r.resolution,
                name,
                str(r.frames),
                _number(r.fps, ".3g"),
                *(_number(r.per_frame(s), ".3g") for s in STAGES),
                _number(r.engine_share, ".0%"),
                _number(r.cpu_seconds / r.wall_seconds if r.wall_seconds > 0 else None, ".2f"),
                _number(r.peak_rss_mb, ",.0f"),
                _number(None if sad_mean is None else sad_mean * sad.factor, ".2f"),
                _number(None if grad_mean is None else grad_mean * grad.factor, ".2f"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _machine_lines(machine: dict[str, Any], model: dict[str, Any], options: dict[str, Any]) -> list[str]:
    cpu = f"{machine.get('cpu', 'unknown CPU')}, {machine.get('cores', '?')} cores"
    load = machine.get("load_average")
    busy = ""
    if load is not None:
        busy = f"; load average {load:.2f} when the run began"
        if load >= 0.5 * float(machine.get("cores") or 1):
            busy += " (other work was running: the timings are not representative)"
    lines = [f"Machine: {cpu}{busy}; {options.get('threads')} engine threads."]
    if machine.get("gpu"):
        lines.append(f"GPU: {machine['gpu']}.")
    versions = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items())
    if versions:
        lines.append(f"Software: {versions}.")
    lines.append(f"Engine of (c): {options.get('engine')}.")
    if model.get("file"):
        lines.append(f"ONNX model: {model['file']} ({model['name']}); weights: {model['weights']}.")
    if model.get("checkpoint"):
        same = {
            True: " (the ONNX model was exported from it)",
            False: " (NOT the weights of the ONNX model)",
            None: " (the ONNX model does not record its source)" if model.get("file") else "",
        }[model.get("same_weights")]
        lines.append(f"Checkpoint of (a): {model['checkpoint']}{same}.")
    return lines


def _describe_workload(workload: dict[str, Any]) -> str:
    spec = workload["spec"]
    return (
        f"{spec['width']}x{spec['height']}, {spec['frames']} frames of ProRes 4444 (10-bit); "
        f"foregrounds {' + '.join(workload['foregrounds'])} (held out from the default model's "
        f"training) over {workload['background']}; trimap band {workload['unknown_width']} px each "
        f"side (Trimap1-like), unknown band {workload['unknown_fraction']:.1%} of the pixels"
    )
