"""``mattecli info``: what this installation can run, so a user sees a missing backend up front.

It only probes (imports, version strings, device queries); it never loads a model or allocates
GPU memory, so it is safe on a busy render node.
"""

from __future__ import annotations

import importlib.util
import platform
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mattecli import __version__
from mattecli.console import print_json


def _onnxruntime() -> dict[str, Any]:
    import onnxruntime as ort

    return {"installed": True, "version": ort.__version__, "providers": ort.get_available_providers()}


def _torch() -> dict[str, Any]:
    if importlib.util.find_spec("torch") is None:
        return {"installed": False, "hint": 'pip install -e ".[torch]"'}
    import torch

    cuda = torch.cuda.is_available()
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    return {"installed": True, "version": torch.__version__, "cuda": cuda, "cuda_devices": devices}


def _tensorrt() -> dict[str, Any]:
    if importlib.util.find_spec("tensorrt") is None:
        return {"installed": False, "hint": 'pip install -e ".[gpu]" on Linux with an NVIDIA GPU'}
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # the bindings load but the libraries are missing
        return {"installed": False, "error": str(exc).splitlines()[0]}
    return {"installed": True, "version": trt.__version__}


def _default_model() -> dict[str, Any]:
    """The packaged model: its file, architecture and the facts its export recorded."""
    from mattecli.default_model import default_model_contract, default_model_path
    from mattecli.errors import MatteError

    try:
        path = default_model_path()
        contract = default_model_contract()
    except MatteError as exc:
        return {"installed": False, "error": exc.message}
    return {
        "installed": True,
        "file": str(path),
        "size_mb": round(path.stat().st_size / 1e6, 1),
        "model": contract.name,
        "paper": contract.paper,
        "weights": contract.weights,
    }


def collect() -> dict[str, Any]:
    """Everything ``info`` reports, as plain data."""
    from mattecli.models import CONTRACTS

    return {
        "mattecli": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "engines": {"ort": _onnxruntime(), "torch": _torch(), "trt": _tensorrt()},
        "default_model": _default_model(),
        "models": {
            name: {"architecture": c.architecture, "needs_trimap": c.needs_trimap, "paper": c.paper}
            for name, c in CONTRACTS.items()
        },
    }


def info(
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Show the installed backends, devices and the models this version knows.

    Example: mattecli info --json | jq .engines
    """
    report = collect()
    if json_output:
        print_json(report)
        return
    out = Console()  # the report is this command's product: stdout
    out.print(f"mattecli {report['mattecli']} on Python {report['python']} ({report['platform']})")
    table = Table("engine", "status", "details")
    for name, facts in report["engines"].items():
        status = "[green]available[/]" if facts.get("installed") else "[red]missing[/]"
        details = {k: v for k, v in facts.items() if k != "installed"}
        table.add_row(name, status, escape(", ".join(f"{k}={v}" for k, v in details.items())))
    out.print(table)
    models = Table("model", "architecture", "trimap", "paper")
    for name, facts in report["models"].items():
        models.add_row(name, facts["architecture"], "yes" if facts["needs_trimap"] else "no", facts["paper"])
    out.print(models)
    default = report["default_model"]
    if not default["installed"]:
        out.print(f"[red]default model missing[/]: {escape(default['error'])}")
        return
    out.print(
        f"default model: {default['model']} ({escape(default['file'])}, {default['size_mb']} MB), "
        "used by `mattecli run` without --model"
    )
    facts = Table("fact", "value", title="default model: training facts and validation scores")
    for key, value in default["weights"].items():
        facts.add_row(key, escape(str(value)))
    out.print(facts)
