"""Orchestration: turn a list of trial configs into rows of a results store.

How a study runs (``run_study``):

1. **Resume.** Configs whose key is already finished in the store (``done`` or ``diverged``) are skipped, so
   rerunning an interrupted command only trains what is missing (``failed`` trials are retried).
2. **Group and chunk.** The rest are grouped by :func:`budgetsched.bench.grid.group_key` (task, optimizer, budget):
   trials of one group run the same number of steps on the same data. A group of a batchable task is cut into
   chunks of ``chunk_size`` trials that the batched engine trains as one stacked model; other groups (and
   ``engine="sequential"``) run one trial per chunk through the sequential engine.
3. **Execute.** Chunks run in this process (``workers=1``), in ``workers`` spawned processes, or as Ray tasks
   (``engine="ray"``). Each process loads a task's data once and keeps it.
4. **Write.** This process is the only store writer: every result is put the moment it reaches the parent, in its
   own durable transaction, so a crash or Ctrl-C loses only the chunks in flight and a rerun resumes.

Threads: ``workers`` processes each get ``max(1, cores // workers)`` torch threads so that workers x threads
never exceeds the cores (oversubscribing 2 cores was measured 10x slower).

Ctrl-C: already-written trials are kept, worker processes are stopped, and :class:`StudyInterrupted` (a
``KeyboardInterrupt`` carrying the partial :class:`StudySummary`) is raised; the CLI turns it into one line and
exit code 130.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import multiprocessing
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from budgetsched.bench.grid import TrialConfig, iter_groups

__all__ = ["ENGINES", "StudySummary", "StudyInterrupted", "run_study", "make_chunks", "check_device"]

#: Engine names accepted by :func:`run_study`.
ENGINES = ("batched", "sequential", "ray")

Chunk = list  # a list of TrialConfig of one group, trained by one engine call


@dataclass
class StudySummary:
    """What a call of :func:`run_study` did.

    ``store_time`` (seconds spent writing results) and ``plan_time`` (resume check, grouping, chunking) are the
    orchestration overhead; ``train_time`` is the engines' own per-trial wall time summed over trials.
    """

    total: int  # configs given
    skipped: int  # already finished in the store before this call
    ran: int = 0  # results written by this call
    counts: dict[str, int] = field(default_factory=lambda: {"done": 0, "diverged": 0, "failed": 0})
    engine: str = "batched"
    workers: int = 1
    device: str = "cpu"
    wall_time: float = 0.0
    train_time: float = 0.0
    store_time: float = 0.0
    plan_time: float = 0.0
    interrupted: bool = False

    @property
    def overhead_share(self) -> float:
        """(store writes + grouping) / wall time of the call; 0 when nothing ran."""
        return (self.store_time + self.plan_time) / self.wall_time if self.wall_time > 0 else 0.0

    def line(self) -> str:
        """One human line: what ran and how long it took."""
        c = self.counts
        return (f"{self.ran} trials run ({c['done']} done, {c['diverged']} diverged, {c['failed']} failed), "
                f"{self.skipped} already in the store, {self.total} in the grid; {self.wall_time:.1f} s "
                f"({self.engine}, {self.workers} worker{'s' if self.workers != 1 else ''}, {self.device}"
                + (f"; store writes + grouping {self.overhead_share:.1%} of it)" if self.ran else ")"))


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_study`; ``summary`` tells what was written before the interrupt."""

    def __init__(self, summary: StudySummary) -> None:
        super().__init__("study interrupted")
        self.summary = summary


# ----------------------------------------------------------------------------------------------- validation
def check_device(device: str) -> str:
    """``device`` if it is usable here: ``cpu``, or ``cuda``/``cuda:N`` when ``torch.cuda.is_available()``."""
    import torch

    dev = str(device)
    if dev == "cpu":
        return dev
    if dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(f"device {dev!r} requested but torch.cuda.is_available() is False on this machine "
                             f"(torch {torch.__version__}); use --device cpu")
        index = int(dev[5:]) if ":" in dev else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {dev!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
        return dev
    raise ValueError(f"unknown device {dev!r}; choose from cpu, cuda, cuda:N")


# --------------------------------------------------------------------------------------------------- chunks
def _batchable(task_name: str, engine: str) -> bool:
    if engine == "sequential":
        return False
    from budgetsched.bench import batched
    from budgetsched.bench.tasks import get_task

    return bool(batched.supports(get_task(task_name)))


def make_chunks(configs: Iterable[TrialConfig], engine: str, chunk_size: int) -> list[tuple[bool, Chunk]]:
    """Group configs by ``group_key`` (first-seen order) and cut each group into chunks.

    Returns ``(batched, chunk)`` pairs: a group of a batchable task (unless ``engine == "sequential"``) gives
    chunks of up to ``chunk_size`` trials for the batched engine; any other group gives one-trial chunks for the
    sequential engine (small chunks keep the processes evenly loaded and lose little on an interrupt).
    """
    from budgetsched.bench.batched import chunks_by_seed

    out: list[tuple[bool, Chunk]] = []
    batchable: dict[str, bool] = {}
    for members in iter_groups(configs).values():
        task = members[0].task
        if task not in batchable:
            batchable[task] = _batchable(task, engine)
        if batchable[task]:
            out.extend((True, chunk) for chunk in chunks_by_seed(members, chunk_size))
        else:
            out.extend((False, [c]) for c in members)
    return out


# ------------------------------------------------------------------------------------ per-process execution
_DATA: dict[tuple[str, str | None, str | None], Any] = {}  # this process's loaded task data


def _task_data(task_name: str, data_dir: str | None, cache_dir: str | None) -> tuple[Any, Any]:
    """The task and its data, loaded once per process."""
    from budgetsched.bench.tasks import get_task

    task = get_task(task_name)
    k = (task_name, data_dir, cache_dir)
    if k not in _DATA:
        _DATA[k] = task.load(None if data_dir is None else Path(data_dir),
                             None if cache_dir is None else Path(cache_dir))
    return task, _DATA[k]


def _iter_chunk(batched_chunk: bool, chunk: Chunk, device: str, data_dir: str | None, cache_dir: str | None,
                chunk_size: int) -> Iterator[tuple[TrialConfig, Any]]:
    """Train one chunk, yielding (config, result) as the engine produces them."""
    task, data = _task_data(chunk[0].task, data_dir, cache_dir)
    if batched_chunk:
        from budgetsched.bench import batched

        yield from batched.train_group(chunk, task, data, device, chunk_size)
    else:
        from budgetsched.bench.train import train_trial

        for c in chunk:
            yield c, train_trial(c, task, data, device)


def _run_chunk(batched_chunk: bool, chunk: Chunk, device: str, data_dir: str | None, cache_dir: str | None,
               chunk_size: int) -> list[tuple[TrialConfig, Any]]:
    """A whole chunk's results (what a worker process or Ray task sends back)."""
    return list(_iter_chunk(batched_chunk, chunk, device, data_dir, cache_dir, chunk_size))


def _init_worker(threads: int) -> None:
    """Worker process set-up: bounded torch threads; Ctrl-C is handled by the parent, which stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(threads)


def _ray_chunk(batched_chunk: bool, chunk: Chunk, device: str, data_dir: str | None, cache_dir: str | None,
               chunk_size: int, threads: int) -> list[tuple[TrialConfig, Any]]:
    import torch

    torch.set_num_threads(threads)
    return _run_chunk(batched_chunk, chunk, device, data_dir, cache_dir, chunk_size)


# ------------------------------------------------------------------------------------------------ provenance
@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the budgetsched source tree, if it is a git checkout (else None)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _meta(engine: str, device: str, workers: int) -> dict[str, Any]:
    import budgetsched

    return {"engine": engine, "device": device, "workers": workers,
            "budgetsched_version": budgetsched.__version__, "git_commit": git_commit()}


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so an interrupt never lands inside a store transaction."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if previous is signal.default_int_handler:
                raise KeyboardInterrupt
            if callable(previous):
                previous(signal.SIGINT, None)


# -------------------------------------------------------------------------------------------------- progress
class _Progress:
    """A rich progress bar counting trials (not chunks), with ETA and the current group; a no-op when off."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self._bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("trials"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                             console=Console(stderr=True), transient=False)
        self._id = self._bar.add_task("starting", total=total, completed=done)
        self._bar.start()

    def group(self, config: TrialConfig) -> None:
        if self._bar is not None:
            self._bar.update(self._id, description=f"{config.task} {config.optimizer} {config.budget:g}%")

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._id, n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


# ------------------------------------------------------------------------------------------------ the study
def run_study(
    configs: Sequence[TrialConfig],
    store: Any,
    *,
    engine: str = "batched",
    workers: int = 1,
    device: str = "cpu",
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    chunk_size: int = 64,
    progress: bool = True,
    ray_address: str | None = None,
) -> StudySummary:
    """Run every config not yet finished in ``store`` and write each result to it as it arrives.

    Args:
        configs: the study grid (``grid.expand``); duplicates are run once.
        store: a :class:`budgetsched.bench.store.Store` (this process is its only writer).
        engine: ``"batched"`` (stack trials of a group where the task allows it, else sequential),
            ``"sequential"`` (one model at a time) or ``"ray"`` (batched chunks as Ray tasks).
        workers: processes training chunks in parallel (``engine != "ray"``); for a local Ray instance, its CPUs.
        device: ``"cpu"`` or ``"cuda"`` / ``"cuda:N"`` (only if ``torch.cuda.is_available()``).
        data_dir, cache_dir: passed to each task's loader.
        chunk_size: trials per batched-engine call (bounds memory; also the unit lost on an interrupt).
        progress: show a rich progress bar on stderr.
        ray_address: an existing Ray cluster (``engine="ray"``); default: the running instance or a local one.

    Returns:
        A :class:`StudySummary`.

    Raises:
        ValueError: bad engine, workers, chunk_size or device; unknown task (listing the valid ones).
        FileNotFoundError: a task's data files are missing.
        StudyInterrupted: on Ctrl-C, after stopping the workers (written trials are kept).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if ray_address is not None and engine != "ray":
        raise ValueError(f"ray_address {ray_address!r} is only used with engine 'ray', not {engine!r}")
    device = check_device(device)
    t_start = time.perf_counter()
    data_dir_s = None if data_dir is None else str(data_dir)
    cache_dir_s = None if cache_dir is None else str(cache_dir)

    # Resume + grouping (timed as orchestration overhead).
    unique = list(dict.fromkeys(configs))
    finished = store.finished_keys()
    todo = [c for c in unique if c.key not in finished]
    summary = StudySummary(total=len(unique), skipped=len(unique) - len(todo), engine=engine, workers=workers,
                           device=device)
    chunks = make_chunks(todo, "sequential" if engine == "sequential" else "batched", chunk_size)
    summary.plan_time = time.perf_counter() - t_start
    if not chunks:
        summary.wall_time = time.perf_counter() - t_start
        return summary
    # Load every task's data here first: a missing data file fails at once, before any worker starts
    # (and the in-process engine reuses what is loaded).
    for task in dict.fromkeys(c.task for c in todo):
        _task_data(task, data_dir_s, cache_dir_s)

    meta = _meta(engine, device, workers)
    bar = _Progress(progress, summary.total, summary.skipped)

    def write(config: TrialConfig, result: Any) -> None:
        t0 = time.perf_counter()
        with _sigint_deferred():  # the row and its count land together, or neither does
            store.put(config, result, meta)
            summary.store_time += time.perf_counter() - t0
            summary.ran += 1
            summary.counts[result.status] = summary.counts.get(result.status, 0) + 1
            summary.train_time += float(result.wall_time or 0.0)
        bar.advance()

    args = (device, data_dir_s, cache_dir_s, chunk_size)
    try:
        if engine == "ray":
            _run_ray(chunks, args, write, bar, workers, ray_address)
        elif workers == 1:
            for is_batched, chunk in chunks:
                bar.group(chunk[0])
                for config, result in _iter_chunk(is_batched, chunk, *args):
                    write(config, result)
        else:
            _run_processes(chunks, args, write, bar, workers)
    except KeyboardInterrupt:
        summary.interrupted = True
        summary.wall_time = time.perf_counter() - t_start
        raise StudyInterrupted(summary) from None
    finally:
        bar.close()
    summary.wall_time = time.perf_counter() - t_start
    return summary


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _run_processes(chunks: list[tuple[bool, Chunk]], args: tuple, write: Callable[[TrialConfig, Any], None],
                   bar: _Progress, workers: int) -> None:
    """Chunks over ``workers`` spawned processes; results are written here as each chunk completes."""
    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                  initargs=(_threads_per_worker(workers),))
    clean = False
    try:
        futures = {pool.submit(_run_chunk, is_batched, chunk, *args): chunk for is_batched, chunk in chunks}
        for fut in cf.as_completed(futures):
            results = fut.result()  # a worker exception (e.g. missing data) propagates here
            bar.group(futures[fut][0])
            for config, result in results:
                write(config, result)
        clean = True
    finally:
        if clean:
            pool.shutdown(wait=True)
        else:
            # Interrupt or error: drop queued chunks and stop the running ones now (their results are lost,
            # everything already written stays).
            procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
            manager = getattr(pool, "_executor_manager_thread", None)
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
            for proc in procs:
                proc.join(timeout=10)
            if manager is not None:  # it reaps the stopped workers too; let it finish before returning
                manager.join(timeout=10)


def _run_ray(chunks: list[tuple[bool, Chunk]], args: tuple, write: Callable[[TrialConfig, Any], None],
             bar: _Progress, workers: int, address: str | None) -> None:
    """Chunks as Ray tasks; the driver writes each chunk's results as ``ray.wait`` returns it."""
    try:
        import ray
    except ImportError:
        raise ValueError("engine 'ray' needs Ray: pip install 'budgetsched[ray]'") from None
    started_here = False
    if not ray.is_initialized():
        if address is not None:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=workers if workers > 1 else None, include_dashboard=False, log_to_driver=False)
        started_here = True
    remote = ray.remote(num_cpus=1, max_retries=0)(_ray_chunk)
    # One torch thread per Ray task: Ray runs one task per CPU, so threads x tasks <= CPUs.
    pending = {remote.remote(is_batched, chunk, *args, 1): chunk for is_batched, chunk in chunks}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                chunk = pending.pop(ref)
                bar.group(chunk[0])
                for config, result in ray.get(ref):
                    write(config, result)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
