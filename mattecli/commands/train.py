"""``mattecli train``: train a matting network from a config, with checkpoints, exact resume and validation.

The config (``training/configs/*.toml``) says everything about the run; the command only picks the
output folder, resumes, or stops early. Progress is drawn on stderr when it is a terminal; one line
per epoch (losses, validation scores) goes to stderr either way, and ``--json`` prints a summary on
stdout. torch is imported only when the command runs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mattecli.console import err_console, print_json, user_errors
from mattecli.errors import UnavailableError

# The shell's code for a job stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def _require_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        raise UnavailableError(
            "training needs PyTorch, which is not installed",
            hint="install torch for your platform, then `pip install 'mattecli[torch]'`",
        )


def _scores(scores: Mapping[str, float]) -> str:
    return ", ".join(f"{key.upper()} {value:.4g}" for key, value in scores.items())


class _ConsoleReporter:
    """A progress bar on a terminal (steps, loss, lr) and one stderr line per epoch."""

    def __init__(self, show_bar: bool) -> None:
        self.show_bar = show_bar
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.loss = float("nan")

    def start(self, total_steps: int, done: int) -> None:
        if not self.show_bar:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4g}  lr {task.fields[lr]:.2g}"),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        )
        self.task = self.progress.add_task("train", total=total_steps, completed=done, loss=self.loss, lr=0.0)
        self.progress.start()

    def step(self, step: int, terms: Mapping[str, float], lr: float) -> None:
        self.loss = terms.get("total", self.loss)
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=step, loss=self.loss, lr=lr)

    def epoch(self, epoch: int, scores: Mapping[str, float] | None, best: bool) -> None:
        line = f"epoch {epoch}: loss {self.loss:.4g}"
        if scores is not None:
            line += f"; held-out {_scores(scores)}" + (" (best)" if best else "")
        err_console.print(line, markup=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def train(
    config: Path = typer.Argument(
        ..., metavar="CONFIG", help="A training config (TOML), e.g. training/configs/default-model.toml."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder (default: the config's out, else runs/CONFIG-NAME)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in the output folder from its last checkpoint."
    ),
    force: bool = typer.Option(
        False, "--force", help="Start over in a non-empty output folder (replaces its checkpoints and log)."
    ),
    max_steps: int | None = typer.Option(
        None,
        "--max-steps",
        min=1,
        help="Stop after this many optimiser steps in all (a checkpoint is written; --resume continues).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary of the session on stdout."),
) -> None:
    """Train a matting network from a config file, validating on held-out images after every epoch.

    The output folder gets config.toml, log.csv (losses per step, held-out
    SAD/MSE/Grad/Conn per epoch), last.pth (everything needed to resume), best.pth
    (lowest held-out SAD) and final.pth. best.pth and final.pth export directly:
    `mattecli export runs/x/best.pth -o model.onnx`. A resumed run continues exactly
    where the uninterrupted one would have been.

    Examples:

    ```
    mattecli train training/configs/default-model.toml

    mattecli train training/configs/default-model.toml --resume

    mattecli train training/configs/cpu-smoke-fba.toml --out /tmp/smoke --max-steps 2 --json
    ```
    """
    with user_errors():
        _require_torch()
        from training.config import load_config
        from training.trainer import Trainer, check_output_folder, describe

        loaded = load_config(config)
        check_output_folder(out or loaded.out, resume=resume, force=force)  # before minutes of setup
        reporter = _ConsoleReporter(show_bar=err_console.is_terminal)
        trainer = Trainer(loaded, out, reporter=reporter)
        try:
            summary = trainer.run(resume=resume, force=force, max_steps=max_steps)
        except KeyboardInterrupt:
            reporter.close()  # before the message, so the bar does not draw over it
            err_console.print(
                f"interrupted at step {trainer.state.step}; `--resume` continues from the last "
                "checkpoint (written every epoch and every train.checkpoint_every steps)",
                markup=False,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            reporter.close()
        err_console.print(describe(summary), markup=False)
        if json_output:
            print_json(summary.to_json())
