"""``mattecli export``: a checkpoint (or a registry model with weights) → one self-describing ONNX file.

The file carries the model's contract in its metadata, so ``mattecli run model.onnx`` needs
nothing else. Before anything is written, ONNX Runtime is checked against torch on random inputs
at two sizes; a disagreement above 1e-4 fails the command with the figure. Human lines go to
stderr; ``--json`` prints the report on stdout. torch is imported only when the command runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mattecli.console import err_console, print_json, user_errors
from mattecli.errors import InputError, UnavailableError
from mattecli.models import CONTRACTS, contract_for

if TYPE_CHECKING:
    from training.export import Deviation, ExportReport
    from training.registry import LoadedModel

_NEEDS = ("torch", "onnxscript", "onnxconverter_common")


def _require_torch() -> None:
    missing = [name for name in _NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        raise UnavailableError(
            f"exporting needs {', '.join(missing)}, which is not installed",
            hint="install the torch extra: pip install 'mattecli[torch]' (install torch itself first)",
        )


def _resolve(source: str, model: str | None, weights: Path | None, random_weights: bool) -> LoadedModel:
    """Turn SOURCE and the weight options into a loaded model, refusing ambiguous combinations."""
    from training.registry import load_model, random_model

    path = Path(source)
    if path.is_file():
        if weights is not None or random_weights:
            raise InputError(
                "SOURCE is already a checkpoint file; --weights and --random-weights go with a model name",
                path=path,
                hint=f"mattecli export {source} -o model.onnx [--model NAME]",
            )
        return load_model(path, model)
    if source not in CONTRACTS:
        if path.suffix or len(path.parts) > 1:
            raise InputError("checkpoint file not found", path=path, hint="check the path to the weights")
        contract_for(source)  # raises, listing the known names
    if model is not None and model != source:
        raise InputError(f"SOURCE names {source!r} but --model names {model!r}", hint="give the name once")
    if weights is not None and random_weights:
        raise InputError("--weights and --random-weights exclude each other", hint="pick one")
    if weights is not None:
        return load_model(weights, source)
    if random_weights:
        return random_model(source)
    raise InputError(
        f"{source!r} is a model name; say which weights to export",
        hint=f"mattecli export {source} --weights FILE -o model.onnx (or --random-weights for tests)",
    )


def _figures(deviations: list[Deviation]) -> str:
    text = ", ".join(f"{b}x{h}x{w}: {d.max_abs:.2g}" for d in deviations for b, h, w in [d.size])
    if ties := sum(d.ambiguous for d in deviations):
        text += f"; {ties} near-tie pixels of a hard decision left out"
    return text


def _describe(report: ExportReport) -> None:
    what = "random weights" if report.weights.get("random") else f"weights {report.weights.get('source')}"
    size_mb = report.file_bytes / 1e6
    err_console.print(
        f"exported {report.model} ({what}) to {report.path}: {size_mb:.1f} MB, "
        f"opset {report.opset}, {report.precision}, {report.seconds:.0f} s"
    )
    if report.parity:
        err_console.print(
            f"parity ONNX Runtime vs torch: max abs diff {report.parity_max_abs:.2g} "
            f"(tolerance 1e-4; {_figures(report.parity)})"
        )
    else:
        err_console.print("parity not checked (--no-check)")
    if report.fp16_error:
        err_console.print(
            f"fp16 vs fp32 ONNX: max abs error {report.fp16_max_abs:.2g} ({_figures(report.fp16_error)})"
        )


def export(
    source: str = typer.Argument(
        ...,
        metavar="SOURCE",
        help="A checkpoint file, or a registry model name (then give --weights or --random-weights). "
        f"Models: {', '.join(CONTRACTS)}.",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="The ONNX file to write (replaced atomically)."),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Registry model of a checkpoint that does not name it (the public FBA.pth: fba-resnet50).",
    ),
    weights: Path | None = typer.Option(
        None, "--weights", "-w", help="Weights for a model name given as SOURCE."
    ),
    random_weights: bool = typer.Option(
        False,
        "--random-weights",
        help="Export seeded random weights (for tests and benchmarks only; labelled in the metadata).",
    ),
    fp16: bool = typer.Option(
        False,
        "--fp16",
        help="Write fp16 weights and activations (normalisation, sigmoid/clip, reductions stay fp32; "
        "inputs and outputs stay float32) and print the error against fp32.",
    ),
    opset: int = typer.Option(
        21, "--opset", min=21, max=23, help="ONNX opset (21+: native GroupNormalization)."
    ),
    check: bool = typer.Option(
        True,
        "--check/--no-check",
        help="Compare ONNX Runtime with torch at two input sizes (fails above 1e-4).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the export report as JSON on stdout."),
) -> None:
    """Export a matting network to one ONNX file that `mattecli run` can use on its own.

    The file has opset 21 (native GroupNormalization), dynamic batch, height and
    width (multiples of the model's size multiple), weights inside, weight
    standardisation folded into the Conv weights, and the model's preprocessing
    contract in its metadata. ONNX Runtime is checked against torch on random
    inputs at two sizes; the command fails above 1e-4 and writes nothing.

    Examples:

    ```
    mattecli export runs/fba/best.pth -o fba.onnx

    mattecli export FBA.pth --model fba-resnet50 -o fba.onnx

    mattecli export fba-resnet50 --weights FBA.pth --fp16 -o fba-fp16.onnx

    mattecli export gfm-tt --random-weights -o bench.onnx --json | jq .parity_max_abs
    ```
    """
    with user_errors():
        _require_torch()
        loaded = _resolve(source, model, weights, random_weights)
        from training.export import export_onnx

        if not json_output:
            err_console.print(f"exporting {loaded.name} (checking parity takes a while on a CPU)...")
        report = export_onnx(
            loaded.name, loaded.model, output, opset=opset, fp16=fp16, check=check, weights=loaded.weights
        )
        if json_output:
            print_json(report.to_dict())
        else:
            _describe(report)
