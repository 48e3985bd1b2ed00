"""``run --executor ray``: a job's chunks on a pool of Ray actors, each with its own engine.

Why an actor pool and not one task per frame: loading a model costs seconds and hundreds of MB,
so each actor loads it once and then runs chunk after chunk (:mod:`mattecli.farm.chunks`), each
chunk being :func:`mattecli.pipeline.run_pipeline` over a frame range, exactly the work of
``run --start A --end B`` on one machine. The frames never travel through Ray's object store:
inputs, trimaps and outputs are paths on storage every worker sees (an NFS or Lustre mount on a
cluster), made absolute on the driver, and each worker writes its outputs there with the same
atomic publish as a local run. Only small summaries come back.

A worker that dies mid-chunk (killed, out of memory, its node lost) raises
:class:`ray.exceptions.RayActorError` for its chunk: a fresh actor takes its place and the chunk
runs again from its first frame. Nothing the dead worker began is trusted: its files under
temporary names never become outputs, and are removed when the job ends
(:func:`mattecli.media.outfolder.tidy_temporaries`); the frames it had published are written
again, with the same bytes. A failure with a message for the user (a missing trimap, a bad
option) stops the job and is printed as the one line a local run prints.

Sizing: on CPUs, each actor reserves ``threads`` CPUs and runs ONNX Runtime with that many
threads (default: one actor per CPU of the cluster, one thread each; ``--workers N`` spreads the
cluster's CPUs over N actors). On a GPU (``--device cuda``) each actor reserves one GPU. Progress
and the summary are gathered on the driver; stage seconds are summed over the workers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mattecli.errors import InputError, InternalError, MatteError, UnavailableError
from mattecli.farm.chunks import Chunk, chunks_of_size, frames_of
from mattecli.farm.executors import EngineArgs
from mattecli.media.outfolder import tidy_temporaries
from mattecli.media.sinks import OutputSpec
from mattecli.pipeline import check_job
from mattecli.run_inputs import expand_inputs, require_one_opened
from mattecli.run_options import RunOptions
from mattecli.summary import STAGES, InputSummary, Reporter, RunSummary

# Tries of one chunk before the job stops (a chunk that kills every worker is not the workers' fault).
MAX_ATTEMPTS = 3
# Chunks per worker by default: enough to balance uneven chunks, few enough that the per-task
# cost (a round trip and opening the input again at the chunk's first frame) stays small.
TASKS_PER_WORKER = 4
# Object store of a Ray instance this executor starts itself: only summaries go through it.
LOCAL_OBJECT_STORE = 256 * 1024 * 1024
NO_CLUSTER_HINT = "start one with `ray start --head`, or check --address (HOST:PORT or auto) and RAY_ADDRESS"
CONNECT_TIMEOUT = 10.0  # seconds to wait for a head node's port to answer


class MatteWorker:
    """The body of one Ray actor: an engine opened once, then chunk after chunk."""

    def __init__(self, engine: EngineArgs) -> None:
        self._error: MatteError | None = None
        try:
            self._engine = engine.open()
        except MatteError as exc:  # reported by ready(), as the user's one line on the driver
            self._error = exc

    def ready(self) -> int:
        """This worker's pid, once its engine is open (raises what stopped it from opening)."""
        if self._error is not None:
            raise self._error
        return os.getpid()

    def run_chunk(
        self, inputs: Sequence[str], output: OutputSpec, pipeline: dict[str, Any]
    ) -> dict[str, Any]:
        from mattecli.pipeline import run_pipeline

        self.ready()

        summary = run_pipeline(inputs, self._engine, output, **pipeline)
        return {"inputs": [item.to_json() for item in summary.inputs], "run": summary.run}


@dataclass
class RayStats:
    """What the executor did, for the summary (``run --json``: ``run.executor``) and for sizing."""

    address: str
    workers: int
    threads_per_worker: int | None
    gpus_per_worker: int
    tasks: int = 0
    frames_per_task: int = 0
    retried: int = 0  # chunks run again after their worker died
    startup_seconds: float = 0.0  # connecting and loading the model on every worker
    temporaries_removed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"name": "ray", **asdict(self)}


def _absolute(value: Any) -> Any:
    return value.absolute() if isinstance(value, Path) else value


class RayExecutor:
    """Run a job's chunks on Ray actors; see the module docstring."""

    def __init__(
        self,
        engine: EngineArgs,
        *,
        address: str | None = None,
        workers: int | None = None,
        task_frames: int | None = None,
    ) -> None:
        began = time.perf_counter()
        try:
            import ray
        except ImportError:
            raise UnavailableError(
                "--executor ray needs Ray, which is not installed here",
                hint='install it with: pip install "mattecli[ray]"',
            ) from None
        self._ray = ray
        self._task_frames = task_frames
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            _init_ray(ray, address)
        self._engine, resources, self.stats = _plan_workers(ray, engine, workers)
        self._actor_class = ray.remote(MatteWorker).options(**resources, max_restarts=0)
        self._actors = [self._actor_class.remote(self._engine) for _ in range(self.stats.workers)]
        self._pids: dict[int, int] = {}
        try:
            for k, pid in enumerate(self._get([actor.ready.remote() for actor in self._actors])):
                self._pids[k] = pid
        except ray.exceptions.RayActorError as exc:
            self.close()
            raise UnavailableError(
                f"a Ray worker could not start: {str(exc).splitlines()[0]}",
                hint="check that mattecli and its dependencies are installed on every node",
            ) from None
        except BaseException:
            self.close()
            raise
        self.stats.startup_seconds = round(time.perf_counter() - began, 4)

    def worker_pids(self) -> list[int]:
        """The process ids of the workers that were started ready (for tests and for the operator)."""
        return list(self._pids.values())

    def _get(self, refs: Any) -> Any:
        """``ray.get``, with a worker's user-facing error raised as itself."""
        from ray.exceptions import RayTaskError

        try:
            return self._ray.get(refs)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, MatteError):
                raise cause from None
            raise InternalError(
                f"a Ray worker failed: {cause!r}", hint="this is a bug; please report it"
            ) from exc

    def run(
        self,
        inputs: Sequence[str],
        output: OutputSpec,
        *,
        options: RunOptions | None = None,
        reporter: Reporter | None = None,
        **pipeline: Any,
    ) -> RunSummary:
        """Matte ``inputs`` into ``output`` on the workers; the arguments are run_pipeline's."""
        from ray.exceptions import RayActorError

        options = options or RunOptions()
        reporter = reporter or Reporter()
        if output.video:
            raise InputError(
                "--video cannot be split across Ray workers: a video file is written by one process",
                hint="write image outputs with --executor ray, or split the job with `mattecli plan`, "
                "whose chunks write one video each",
            )
        shown = {os.path.abspath(spec): spec for spec in expand_inputs(inputs)}
        checked = check_job(list(shown), output, trimap_spec=pipeline.get("trimap_spec"), options=options)
        require_one_opened(checked)
        # As in a local run, an input that cannot be opened is reported and the others run.
        failed = [item.summary for item in checked if item.source is None]
        openable = [item for item in checked if item.source is not None]
        job = frames_of(openable, options.every)
        if not job.numbers:
            raise InputError("the frame range selects no frames", hint="check --start, --end and --every")
        shared = {key: _absolute(value) for key, value in pipeline.items()}
        spec = replace(output, directory=output.directory.absolute(), composite=_absolute(output.composite))
        self.stats.frames_per_task = self._task_frames or max(
            1, math.ceil(len(job.numbers) / (self.stats.workers * TASKS_PER_WORKER))
        )
        chunks = chunks_of_size(job, self.stats.frames_per_task)
        self.stats.tasks = len(chunks)

        items = {
            path: InputSummary(shown.get(path, path), frames_total=len(frames))
            for path, frames in job.per_input
        }
        progress = InputSummary(f"{len(items)} input(s) on {self.stats.workers} Ray workers")
        reporter.input_started(progress, sum(len(frames) for _, frames in job.per_input), 0)
        run_info: dict[str, Any] = {}
        pending: deque[tuple[Chunk, int]] = deque((chunk, 1) for chunk in chunks)
        idle = list(range(len(self._actors)))
        running: dict[Any, tuple[int, Chunk, int]] = {}
        began = time.perf_counter()
        while pending or running:
            while pending and idle:
                k = idle.pop()
                chunk, attempt = pending.popleft()
                chunk_options = replace(options, start=chunk.first, end=chunk.last)
                ref = self._actors[k].run_chunk.remote(
                    chunk.inputs, spec, {**shared, "options": chunk_options}
                )
                running[ref] = (k, chunk, attempt)
            (ref,), _ = self._ray.wait(list(running), num_returns=1)
            k, chunk, attempt = running.pop(ref)
            try:
                result = self._get(ref)
            except RayActorError:
                if attempt >= MAX_ATTEMPTS:
                    raise UnavailableError(
                        f"chunk {chunk.label} (frames {chunk.first}-{chunk.last}) lost its worker "
                        f"{attempt} times; the job stops",
                        hint="check the workers' logs and memory, then run again with --resume",
                    ) from None
                self.stats.retried += 1
                self._replace_actor(k)
                pending.appendleft((chunk, attempt + 1))
                idle.append(k)
                continue
            idle.append(k)
            run_info = run_info or result["run"]
            for done in result["inputs"]:
                _add(items[done["path"]], done)
                for _ in range(done["frames_written"] + done["frames_skipped"]):
                    reporter.advance()
        wall = time.perf_counter() - began
        self.stats.temporaries_removed = len(tidy_temporaries(spec))
        if self.stats.retried:
            reporter.warn(
                f"{self.stats.retried} chunk(s) ran again after their worker died; the files those "
                f"workers had begun ({self.stats.temporaries_removed}) were removed, never used"
            )
        _share_wall(list(items.values()), wall)
        for item in failed:
            item.path = shown.get(item.path, item.path)
            reporter.input_finished(item)
        summaries = list(items.values()) + failed
        return RunSummary(summaries, run={**run_info, "executor": self.stats.to_json()})

    def _replace_actor(self, k: int) -> None:
        """A fresh actor (its own model load) in place of one that died."""
        with contextlib.suppress(Exception):
            self._ray.kill(self._actors[k])
        self._actors[k] = self._actor_class.remote(self._engine)
        self._pids.pop(k, None)

    def close(self) -> None:
        for actor in self._actors:
            with contextlib.suppress(Exception):
                self._ray.kill(actor)
        self._actors = []
        if self._owns_ray:
            self._ray.shutdown()


def _init_ray(ray: Any, address: str | None) -> None:
    """Connect to the cluster at ``address`` (``auto``: the one on this machine, or ``RAY_ADDRESS``),
    or, without one, start a Ray instance in this process."""
    quiet = {"logging_level": logging.WARNING, "configure_logging": True}
    where = address or os.environ.get("RAY_ADDRESS", "")
    if ":" in where and not where.startswith("ray://"):
        # Ray retries an address that does not answer for minutes; a head node answers at once.
        host, _, port = where.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
        except (OSError, ValueError) as exc:
            raise UnavailableError(
                f"cannot reach the Ray cluster at {where}: {exc}",
                hint=NO_CLUSTER_HINT,
            ) from None
    try:
        if address is None and not os.environ.get("RAY_ADDRESS"):
            ray.init(
                address="local", include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE, **quiet
            )
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UnavailableError(
            f"cannot reach the Ray cluster at {where}: {str(exc).splitlines()[0] if str(exc) else exc}",
            hint=NO_CLUSTER_HINT,
        ) from None


def _plan_workers(
    ray: Any, engine: EngineArgs, workers: int | None
) -> tuple[EngineArgs, dict[str, Any], RayStats]:
    """How many actors, and what each reserves: CPUs (and engine threads) or a GPU."""
    resources = ray.cluster_resources()
    address = ray.get_runtime_context().gcs_address
    if engine.device.startswith("cuda"):
        gpus = int(resources.get("GPU", 0))
        count = workers or gpus
        if gpus < 1 or count > gpus:
            raise UnavailableError(
                f"{count or 1} worker(s) on --device cuda need a GPU each; the Ray cluster has {gpus}",
                hint="add GPU nodes to the cluster, lower --workers, or run on --device cpu",
            )
        stats = RayStats(address, count, engine.threads, 1)
        return engine, {"num_gpus": 1, "num_cpus": 1}, stats
    cpus = int(resources.get("CPU", 0))
    threads = engine.threads or (max(1, cpus // workers) if workers else 1)
    count = workers or max(1, cpus // threads)
    if count * threads > cpus:
        raise InputError(
            f"{count} worker(s) of {threads} thread(s) need {count * threads} CPUs; the cluster has {cpus}",
            hint="lower --workers or --threads",
        )
    return replace(engine, threads=threads), {"num_cpus": threads}, RayStats(address, count, threads, 0)


def _add(item: InputSummary, done: dict[str, Any]) -> None:
    """Add one chunk's outcome for an input to the job's summary of that input."""
    item.kind = item.kind or done["kind"]
    item.frames_written += done["frames_written"]
    item.frames_skipped += done["frames_skipped"]
    if done["failed"] and not item.failed:
        item.fail(done["error"])
    for stage in STAGES:
        item.clock.seconds[stage] += done["seconds"].get(stage, 0.0)


def _share_wall(items: list[InputSummary], wall: float) -> None:
    """The inputs ran side by side: give each a share of the job's wall time by its frames, so
    the totals' fps is the job's frames over the job's wall time."""
    frames = sum(item.frames_written + item.frames_skipped for item in items)
    for item in items:
        share = (item.frames_written + item.frames_skipped) / frames if frames else 1 / len(items)
        item.wall_seconds = wall * share
