"""Terminal output shared by the commands: humans read stderr, scripts read stdout.

Keeping every human-facing line on stderr means ``mattecli ... --json | jq`` always gets clean JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mattecli.errors import MatteError

err_console = Console(stderr=True, highlight=False)


def progress_bar(label: str) -> Progress:
    """A transient "label [bar] done/total elapsed" bar on stderr, drawn only on a terminal."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )


def print_json(payload: Any) -> None:
    """Write one JSON document to stdout for scripts."""
    typer.echo(json.dumps(payload, indent=2, sort_keys=False))


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`MatteError` into one red line on stderr and the error's exit code."""
    try:
        yield
    except MatteError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
