"""The ``mattecli`` command line: builds the Typer app and registers one module per command.

Each command lives in ``mattecli/commands/<name>.py`` and only turns arguments into a call of the
library; heavy imports (torch, onnxruntime, PyAV) happen inside the command so ``--help`` stays fast.
"""

from __future__ import annotations

import typer

from mattecli import __version__
from mattecli.commands import bench as bench_cmd
from mattecli.commands import build_engine as build_engine_cmd
from mattecli.commands import eval as eval_cmd
from mattecli.commands import export as export_cmd
from mattecli.commands import info as info_cmd
from mattecli.commands import plan as plan_cmd
from mattecli.commands import refine_foregrounds as refine_fg_cmd
from mattecli.commands import run as run_cmd
from mattecli.commands import sample as sample_cmd
from mattecli.commands import train as train_cmd
from mattecli.commands import trimap as trimap_cmd

app = typer.Typer(
    name="mattecli",
    help="Pull mattes (alpha and clean foreground) from video and photos.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mattecli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Pull mattes (alpha and clean foreground) from video and photos."""


# Registered commands (one line each, in the order --help lists them).
app.command("run")(run_cmd.run)
app.command("plan")(plan_cmd.plan)
app.command("sample")(sample_cmd.sample)
app.command("trimap")(trimap_cmd.trimap)
app.command("eval")(eval_cmd.evaluate)
app.command("build-engine")(build_engine_cmd.build_engine)
app.command("bench")(bench_cmd.bench)
app.command("export")(export_cmd.export)
app.command("train")(train_cmd.train)
app.command("refine-foregrounds")(refine_fg_cmd.refine_foregrounds)
app.command("info")(info_cmd.info)
