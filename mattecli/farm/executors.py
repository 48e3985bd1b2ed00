"""Where ``run``'s frames are computed: in this process (``--executor local``) or on a Ray cluster.

Both take the arguments of :func:`mattecli.pipeline.run_pipeline` after the engine, so ``run``
calls one or the other the same way and the pipeline's options reach every worker unchanged. The
Ray executor lives in :mod:`mattecli.farm.ray_executor` and is imported only when asked for, so
plain runs and ``--help`` never import Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from mattecli.errors import InputError
from mattecli.media.sinks import OutputSpec
from mattecli.summary import RunSummary

ExecutorName = Literal["local", "ray"]


@dataclass(frozen=True)
class EngineArgs:
    """What :func:`engines.base.open_engine` takes: every worker opens its own engine from these."""

    engine: str
    model: Path
    device: str
    threads: int | None = None
    model_name: str | None = None

    def open(self) -> Any:
        from engines.base import open_engine

        return open_engine(
            self.engine, self.model, self.device, threads=self.threads, model_name=self.model_name
        )


class Executor(Protocol):
    def run(self, inputs: Sequence[str], output: OutputSpec, **pipeline: Any) -> RunSummary:
        """Matte ``inputs`` into ``output``; ``pipeline``: run_pipeline's keyword arguments."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    """One engine in this process: the single-machine run."""

    def __init__(self, engine: EngineArgs) -> None:
        self._engine = engine.open()

    def run(self, inputs: Sequence[str], output: OutputSpec, **pipeline: Any) -> RunSummary:
        from mattecli.pipeline import run_pipeline

        return run_pipeline(inputs, self._engine, output, **pipeline)

    def close(self) -> None:
        self._engine.close()


def open_executor(
    name: ExecutorName,
    engine: EngineArgs,
    *,
    address: str | None = None,
    workers: int | None = None,
    task_frames: int | None = None,
) -> Executor:
    """The executor ``run --executor`` asks for (the Ray options are ignored by ``local``)."""
    if name == "local":
        given = [
            flag
            for flag, value in (
                ("--address", address),
                ("--workers", workers),
                ("--task-frames", task_frames),
            )
            if value is not None
        ]
        if given:
            raise InputError(
                f"{', '.join(given)}: only for --executor ray",
                hint="add --executor ray, or drop them",
            )
    if name == "ray":
        from mattecli.farm.ray_executor import RayExecutor

        return RayExecutor(engine, address=address, workers=workers, task_frames=task_frames)
    return LocalExecutor(engine)
