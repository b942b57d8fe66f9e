"""Orchestration: turn a list of trial configs into rows of a results store.

How a study runs (``run_study``):

1. **Plan.** Each task's data is loaded once (a missing file fails here, before anything trains). Every config's
   run length is resolved in steps; budgets of one task that come out as the same run are trained once and the
   duplicate budget is dropped with a :class:`BudgetCollapseWarning`. A plateau trial whose patience cannot trigger
   within its budget (:func:`budgetsched.bench.engines.train.plateau_is_constant`) is not trained: it reuses the constant
   trial of the same LR and seed, and its row says ``stand_in = "constant"``.
2. **Resume.** Configs already finished in the store (``done`` or ``diverged``) are skipped (``failed`` ones
   are retried).
3. **Claim, group and chunk.** The rest are grouped by :func:`budgetsched.bench.protocol.grid.group_key`; a group of a
   batchable task is cut into chunks of at most ``chunk_size`` trials ordered by seed, which the batched engine
   trains as one stacked model; other groups (and ``engine="sequential"``) run one trial per chunk. Each chunk's
   trials are *claimed* in the store right before it runs, so several runs on one store split the work; trials
   claimed by another live run are waited for, and a crashed run's claims expire and are taken over.
4. **Execute.** Chunks run in this process (``workers=1``), in ``workers`` spawned processes, or as Ray tasks
   (``engine="ray"``). Each process loads a task's data once and keeps it.
5. **Write.** This process is the only store writer: every result is put the moment it reaches the parent, in its
   own durable transaction, so a crash, Ctrl-C or SIGTERM loses only the chunks in flight and a rerun resumes.

Threads: ``workers`` processes each get ``max(1, cores // workers)`` torch threads so that workers x threads
never exceeds the cores (oversubscribing 2 cores was measured 10x slower); ``workers`` is capped at the cores
this process may use.

Ctrl-C or SIGTERM: already-written trials are kept, worker processes are stopped, and :class:`StudyInterrupted`
(a ``KeyboardInterrupt`` carrying the partial :class:`StudySummary`) is raised; the CLI turns it into one line and
exit code 130 (143 for SIGTERM). Workers also exit by themselves when the parent dies, even by SIGKILL.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import functools
import multiprocessing
import os
import signal
import socket
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from budgetsched.bench.protocol.grid import CHANGE_PARAMS, SCHEDULE_FREE, TrialConfig, iter_groups
from budgetsched.bench.protocol.status import Status
from budgetsched.bench.storage.store import claim_owner
from budgetsched.errors import EnvironmentFailure, UsageError

__all__ = ["ENGINES", "StudySummary", "StudyInterrupted", "BudgetCollapseWarning", "run_study", "make_chunks",
           "check_device", "check_options", "plan_study", "StudyPlan", "usable_cpus"]

#: Engine names accepted by :func:`run_study`.
ENGINES = ("batched", "sequential", "ray")
#: Seconds after its last heartbeat that a run's claim on a trial expires (another run may then take it).
LEASE_S = 120.0

Chunk = list  # a list of TrialConfig of one group, trained by one engine call


class BudgetCollapseWarning(UserWarning):
    """Two budgets of a task are the same run (same number of steps); the larger one is dropped."""


@dataclass
class StudySummary:
    """What a call of :func:`run_study` did.

    ``store_time`` (seconds spent writing results) and ``plan_time`` (resume check, grouping, chunking) are the
    orchestration overhead; ``train_time`` is the engines' own per-trial wall time summed over trials.
    """

    total: int  # configs given (after dropping duplicate budgets)
    skipped: int  # already finished in the store before this call
    ran: int = 0  # results written by this call (stand-ins included)
    counts: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in Status})
    engine: str = "batched"
    workers: int = 1
    device: str = "cpu"
    wall_time: float = 0.0
    train_time: float = 0.0
    store_time: float = 0.0
    plan_time: float = 0.0
    stand_ins: int = 0  # plateau rows written from the constant trial instead of training
    dropped: int = 0  # configs of budgets that were the same run as a smaller budget
    by_others: int = 0  # trials of the grid another run on the same store finished while this one ran
    interrupted: bool = False
    signal: int | None = None  # the signal that interrupted the run (SIGINT or SIGTERM)

    @property
    def overhead_share(self) -> float:
        """(store writes + grouping) / wall time of the call; 0 when nothing ran."""
        return (self.store_time + self.plan_time) / self.wall_time if self.wall_time > 0 else 0.0

    def line(self) -> str:
        """One human line: what ran and how long it took."""
        c = self.counts
        extra = "".join([f", {self.stand_ins} plateau trials reused the constant run" if self.stand_ins else "",
                         f", {self.dropped} trials of duplicate budgets dropped" if self.dropped else ""])
        others = f"{self.by_others} trained meanwhile by another run, " if self.by_others else ""
        return (f"{self.ran} trials run ({c['done']} done, {c['diverged']} diverged, {c['failed']} failed{extra}), "
                f"{self.skipped} already in the store, {others}{self.total} in the grid; {self.wall_time:.1f} s "
                f"({self.engine}, {self.workers} worker{'s' if self.workers != 1 else ''}, {self.device}"
                + (f"; store writes + grouping {self.overhead_share:.1%} of it)" if self.ran else ")"))


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during :func:`run_study`; ``summary`` tells what was written before the interrupt."""

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
            raise UsageError(f"device {dev!r} requested but torch.cuda.is_available() is False on this machine "
                             f"(torch {torch.__version__}); use --device cpu")
        index = int(dev[5:]) if ":" in dev else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"device {dev!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
        return dev
    raise UsageError(f"unknown device {dev!r}; choose from cpu, cuda, cuda:N")


def usable_cpus() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_options(engine: str = "batched", workers: Any = 1, chunk_size: Any = 64, ray_address: str | None = None,
                  device: str = "cpu") -> str:
    """Check :func:`run_study`'s execution options (UsageError naming the bad one); returns the device.

    For ``engine="ray"`` also checks that Ray is installed and that ``ray_address`` answers
    (:class:`EnvironmentFailure` within seconds, where ``ray.init`` would wait for minutes).
    """
    _check_args(engine, workers, chunk_size, ray_address)
    dev = check_device(device)
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("engine 'ray' needs Ray: pip install 'budgetsched[ray]'") from None
        if ray_address is not None:
            _check_reachable(ray_address)
    return dev


def _check_args(engine: str, workers: Any, chunk_size: Any, ray_address: str | None) -> None:
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UsageError(f"workers must be an integer >= 1 or 'auto', got {workers!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise UsageError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if ray_address is not None and engine != "ray":
        raise UsageError(f"ray_address {ray_address!r} is only used with engine 'ray', not {engine!r}")


# --------------------------------------------------------------------------------------------------- plan
@dataclass
class StudyPlan:
    """What a study trains and writes (see :func:`plan_study`)."""

    configs: list[TrialConfig]  # every config that gets a row, duplicates and dropped budgets removed
    steps: dict[TrialConfig, int]  # planned run length of each config (and of each stand-in target)
    stand_in: dict[TrialConfig, TrialConfig]  # plateau config -> the constant config whose result it reuses
    dropped: list[TrialConfig]  # configs of a budget that is the same run as a smaller budget of the task

    def trained(self, config: TrialConfig) -> TrialConfig:
        """The config actually trained for ``config``."""
        return self.stand_in.get(config, config)


def plan_study(configs: Iterable[TrialConfig], task_sizes: dict[str, tuple[Any, int]]) -> StudyPlan:
    """Resolve run lengths, drop budgets that collapse onto a smaller one, and find plateau stand-ins.

    ``task_sizes`` maps task name -> (task, number of training examples).
    """
    from budgetsched.bench.engines.train import plateau_is_constant, steps_per_epoch

    unique = list(dict.fromkeys(configs))

    def length(c: TrialConfig) -> int:
        task, n = task_sizes[c.task]
        return c.total_steps(task.max_epochs, steps_per_epoch(task, n))

    # budgets that are the same run: keep the smallest budget of each length, per task and budget unit
    first_budget: dict[tuple[str, str, int], float] = {}
    collapsed: dict[tuple[str, str, float], float] = {}
    for c in sorted(unique, key=lambda c: c.budget):
        k = (c.task, c.budget_unit, length(c))
        kept = first_budget.setdefault(k, c.budget)
        if kept != c.budget:
            collapsed[(c.task, c.budget_unit, c.budget)] = kept
    for (task, unit, budget), kept in sorted(collapsed.items()):
        steps = length(next(c for c in unique if (c.task, c.budget_unit, c.budget) == (task, unit, budget)))
        warnings.warn(f"{task}: budget {budget:g} % is {steps} steps, the same run as budget {kept:g} %; it is "
                      f"trained and counted once (as {kept:g} %)", BudgetCollapseWarning, stacklevel=3)
    dropped = [c for c in unique if (c.task, c.budget_unit, c.budget) in collapsed]
    kept_configs = [c for c in unique if (c.task, c.budget_unit, c.budget) not in collapsed]
    stand_in = {}
    for c in kept_configs:
        task, n = task_sizes[c.task]
        if plateau_is_constant(c, task, n):
            stand_in[c] = dataclasses.replace(c, schedule="constant", schedule_params=())
    steps = {c: length(c) for c in [*kept_configs, *stand_in.values()]}
    return StudyPlan(kept_configs, steps, stand_in, dropped)


# --------------------------------------------------------------------------------------------------- chunks
def _batchable(task_name: str, engine: str) -> bool:
    if engine == "sequential":
        return False
    from budgetsched.bench.engines import batched

    task, data = _loaded(task_name) or _task_data(task_name, None, None)
    return bool(batched.supports(task, data))


def _loaded(task_name: str) -> tuple[Any, Any] | None:
    """The task and the data this process already loaded for it (any data or cache directory), or None."""
    from budgetsched.bench.tasks import get_task

    for (name, _, _), data in _DATA.items():
        if name == task_name:
            return get_task(name), data
    return None


#: What trains a chunk: the batched or sequential engine, one schedule-free run serving several budgets
#: (:mod:`budgetsched.bench.engines.schedulefree`), or anytime trunks and branches (:mod:`budgetsched.bench.engines.anytime`).
KINDS = ("batched", "sequential", "schedule-free", "anytime")


def make_chunks(configs: Iterable[TrialConfig], engine: str, chunk_size: int, anytime: bool = False
                ) -> list[tuple[str, Chunk]]:
    """Group configs by ``group_key`` (first-seen order) and cut each group into chunks.

    Returns ``(kind, chunk)`` pairs (:data:`KINDS`): a group of a batchable task (unless ``engine ==
    "sequential"``) gives chunks of up to ``chunk_size`` trials ordered by seed for the batched engine; any other
    group one-trial chunks for the sequential engine (small chunks keep the processes evenly loaded and lose little
    on an interrupt). Schedule-free trials that differ only in budget are one chunk (one run serves them); with
    ``anytime``, the closed-form trials of one task, optimizer and schedule whose budgets share a prefix
    (:func:`budgetsched.bench.engines.anytime.shares_prefix`) are one chunk of trunks and branches; the others train as usual.
    """
    from budgetsched.bench.engines.anytime import shares_prefix
    from budgetsched.bench.engines.batched import chunks_by_seed
    from budgetsched.bench.engines.schedulefree import run_key

    configs = list(configs)
    special: dict[tuple, list[TrialConfig]] = {}
    rest = []
    for c in configs:
        if c.schedule == SCHEDULE_FREE:
            special.setdefault(("schedule-free", *run_key(c)), []).append(c)
        elif (anytime and c.schedule != "plateau" and not any(k in c.params for k in CHANGE_PARAMS)
              and shares_prefix(c.schedule, c.schedule_params)):
            special.setdefault(("anytime", c.task, c.optimizer, c.budget_unit, c.schedule, c.schedule_params),
                               []).append(c)
        else:
            rest.append(c)
    out: list[tuple[str, Chunk]] = [(key[0], members) for key, members in special.items()]
    batchable: dict[str, bool] = {}
    for members in iter_groups(rest).values():
        task = members[0].task
        if task not in batchable:
            batchable[task] = _batchable(task, engine)
        if batchable[task]:
            out.extend(("batched", chunk) for chunk in chunks_by_seed(members, chunk_size))
        else:
            out.extend(("sequential", [c]) for c in members)
    return out


# ------------------------------------------------------------------------------------ per-process execution
_DATA: dict[tuple[str, str | None, str | None], Any] = {}  # this process's loaded task data
_PROGRESS: Any = None  # a worker process's queue for progress (model-steps trained)


def _task_data(task_name: str, data_dir: str | None, cache_dir: str | None) -> tuple[Any, Any]:
    """The task and its data, loaded once per process."""
    from budgetsched.bench.tasks import get_task

    task = get_task(task_name)
    if not hasattr(task, "load"):  # a trainable: the user's function loads its own data
        return task, None
    k = (task_name, data_dir, cache_dir)
    if k not in _DATA:
        _DATA[k] = task.load(None if data_dir is None else Path(data_dir),
                             None if cache_dir is None else Path(cache_dir))
    return task, _DATA[k]


def _iter_chunk(kind: str, chunk: Chunk, device: str, data_dir: str | None, cache_dir: str | None,
                chunk_size: int, checkpoint_dir: str | None = None, on_epoch: Callable[[int], None] | None = None
                ) -> Iterator[tuple[TrialConfig, Any]]:
    """Train one chunk, yielding (config, result) as the engine produces them."""
    task, data = _task_data(chunk[0].task, data_dir, cache_dir)
    if data is None:  # a trainable
        from budgetsched.bench.engines.trainable import run_trainable

        for c in chunk:
            yield c, run_trainable(c, task)
        return
    if kind == "schedule-free":
        from budgetsched.bench.engines.schedulefree import train_schedule_free

        yield from train_schedule_free(chunk, task, data, device)
        return
    if kind == "anytime":
        from budgetsched.bench.engines.anytime import train_anytime

        yield from train_anytime(chunk, task, data, device, chunk_size, checkpoint_dir, on_epoch)
        return
    if kind == "batched":
        from budgetsched.bench.engines import batched

        yield from batched.train_group(chunk, task, data, device, chunk_size, on_epoch=on_epoch)
    else:
        from budgetsched.bench.engines.train import place, train_trial

        placed = None
        for c in chunk:
            if placed is None and device != "cpu":
                import torch

                placed = place(data, device, torch.get_default_dtype())
            yield c, train_trial(c, task, data, device, placed=placed, on_epoch=on_epoch)


def _run_chunk(kind: str, chunk: Chunk, device: str, data_dir: str | None, cache_dir: str | None,
               chunk_size: int, checkpoint_dir: str | None = None) -> list[tuple[TrialConfig, Any]]:
    """A whole chunk's results (what a worker process or Ray task sends back)."""
    queue = _PROGRESS
    report = None if queue is None else (lambda n: queue.put(n))
    return list(_iter_chunk(kind, chunk, device, data_dir, cache_dir, chunk_size, checkpoint_dir, report))


def _watch_parent(parent: int) -> None:
    """Exit this worker as soon as its parent is gone (whatever killed it)."""
    try:  # Linux: the kernel delivers SIGKILL to this process when the parent dies
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)
    threading.Thread(target=watch, daemon=True, name="budgetsched-parent-watch").start()


def _init_worker(threads: int, parent: int, queue: Any) -> None:
    """Worker process set-up: bounded torch threads; signals are the parent's business; die with the parent."""
    global _PROGRESS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _watch_parent(parent)
    _PROGRESS = queue
    import torch

    torch.set_num_threads(threads)


def _ray_chunk(kind: str, chunk: Chunk, device: str, data_dir: str | None, cache_dir: str | None,
               chunk_size: int, checkpoint_dir: str | None, threads: int) -> list[tuple[TrialConfig, Any]]:
    import torch

    torch.set_num_threads(threads)
    return _run_chunk(kind, chunk, device, data_dir, cache_dir, chunk_size, checkpoint_dir)


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


def _meta(executor: str, device: str, workers: int, threads: int) -> dict[str, Any]:
    import budgetsched

    return {"executor": executor, "device": device, "workers": workers, "threads": threads,
            "budgetsched_version": budgetsched.__version__, "git_commit": git_commit()}


# ------------------------------------------------------------------------------------------------- signals
class _Signals:
    """Turn SIGTERM into the same interrupt as Ctrl-C, and hold both while a store write is in progress, so an
    interrupt never lands inside a transaction and a written row is always counted."""

    def __init__(self) -> None:
        self.caught: int | None = None
        self._holding = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.getsignal(sig)
                if self._previous[sig] is signal.SIG_IGN:
                    continue  # e.g. SIGINT in a background job: the user chose to ignore it
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.caught is None:
            self.caught = signum
        if not self._holding:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self.caught is not None:
            raise KeyboardInterrupt


# -------------------------------------------------------------------------------------------------- progress
class _Progress:
    """A rich progress bar weighted by work (model-steps), with ETA and the current group; a no-op when off."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self._bar = None
        self._lock = threading.Lock()
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                             TextColumn("of the work, {task.fields[trials]} trials"), TimeElapsedColumn(),
                             TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=False)
        self._trials = done
        self._total_trials = total
        self._id = self._bar.add_task("starting", total=1, completed=0, trials=f"{done}/{total}")
        self._bar.start()

    def set_work(self, total: float) -> None:
        if self._bar is not None:
            self._bar.update(self._id, total=max(total, 1.0))

    def group(self, config: TrialConfig) -> None:
        if self._bar is not None:
            self._bar.update(self._id, description=f"{config.task} {config.optimizer} budget {config.budget:g}%")

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._id, description=text)

    def work(self, n: float) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.advance(self._id, n)

    def trial(self, n: int = 1) -> None:
        if self._bar is not None:
            self._trials += n
            self._bar.update(self._id, trials=f"{self._trials}/{self._total_trials}")

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
    workers: int | str = 1,
    device: str = "cpu",
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    chunk_size: int = 64,
    progress: bool = True,
    ray_address: str | None = None,
    lease_s: float = LEASE_S,
    anytime: bool = False,
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> StudySummary:
    """Run every config not yet finished in ``store`` and write each result to it as it arrives.

    Args:
        configs: the study grid (``grid.expand``); duplicates are run once.
        store: a :class:`budgetsched.bench.storage.store.Store` opened for writing (this process is its only writer).
        engine: ``"batched"`` (stack trials of a group where the task allows it, else sequential),
            ``"sequential"`` (one model at a time) or ``"ray"`` (batched chunks as Ray tasks).
        workers: processes training chunks in parallel (``engine != "ray"``), at most the usable cores (a larger
            value is capped with a warning); ``"auto"``: one 1-thread process per usable core (measured as fast as
            one engine with every thread on a quiet 2-core machine, and far steadier on a busy one;
            docs/benchmarks.md); for a local Ray instance, its CPUs.
        device: ``"cpu"`` or ``"cuda"`` / ``"cuda:N"`` (only if ``torch.cuda.is_available()``).
        data_dir, cache_dir: passed to each task's loader.
        chunk_size: trials per batched-engine call (bounds memory; also the unit lost on an interrupt).
        progress: show a rich progress bar on stderr.
        ray_address: an existing Ray cluster (``engine="ray"``); default: the running instance or a local one.
        lease_s: seconds after which another run may take over trials this run claimed but stopped renewing.
        anytime: train trials that differ only in budget as one trunk and a branch per budget
            (:mod:`budgetsched.bench.engines.anytime`; results equal separate runs, at less compute for ``wsd``).
        checkpoint_dir: where anytime trunks keep their snapshots (a killed study resumes from them).

    Returns:
        A :class:`StudySummary`.

    Raises:
        UsageError: bad engine, workers, chunk_size or device; unknown task (listing the valid ones).
        FileNotFoundError: a task's data files are missing.
        EnvironmentFailure: the store cannot be written; the Ray cluster cannot be reached.
        StudyInterrupted: on Ctrl-C or SIGTERM, after stopping the workers (written trials are kept).
    """
    device = check_options(engine, workers, chunk_size, ray_address, device)
    cores = usable_cpus()
    if workers == "auto":
        workers = cores
    if engine != "ray" and workers > cores:
        warnings.warn(f"workers capped at {cores}, the CPU cores this process may use (asked for {workers})",
                      UserWarning, stacklevel=2)
        workers = cores
    t_start = time.perf_counter()
    data_dir_s = None if data_dir is None else str(data_dir)
    cache_dir_s = None if cache_dir is None else str(cache_dir)

    # Plan: load every task's data here first (a missing data file fails at once, before any worker starts).
    unique = list(dict.fromkeys(configs))
    sizes = {}
    for task_name in dict.fromkeys(c.task for c in unique):
        task, data = _task_data(task_name, data_dir_s, cache_dir_s)
        sizes[task_name] = (task, 0 if data is None else len(data.train_y))
    plan = plan_study(unique, sizes)
    finished = store.finished_keys()
    todo = [c for c in plan.configs if c.key not in finished]
    summary = StudySummary(total=len(plan.configs), skipped=len(plan.configs) - len(todo), engine=engine,
                           workers=workers, device=device, dropped=len(plan.dropped))
    # what to train: each todo config's trained config, unless that one is already finished (a stand-in's
    # constant trial that another config of the grid trained)
    waiting: dict[TrialConfig, list[TrialConfig]] = {}
    for c in todo:
        waiting.setdefault(plan.trained(c), []).append(c)
    owner = claim_owner()
    threads = max(1, cores // workers) if engine != "ray" else 1
    executor = "ray" if engine == "ray" else ("inline" if workers == 1 else "processes")
    meta = _meta(executor, device, workers, threads)
    bar = _Progress(progress, summary.total, summary.skipped)
    summary.plan_time = time.perf_counter() - t_start

    def write(config: TrialConfig, result: Any, engine_used: str) -> None:
        t0 = time.perf_counter()
        row_meta = {**meta, "engine": engine_used}
        with signals.held():  # the rows and their counts land together, or neither does
            for requested in waiting.pop(config, []):
                is_stand_in = requested != config
                store.put(requested, result, row_meta, total_steps=plan.steps[config],
                          stand_in="constant" if is_stand_in else None)
                summary.ran += 1
                summary.stand_ins += is_stand_in
                summary.counts[str(result.status)] = summary.counts.get(str(result.status), 0) + 1
                summary.train_time += 0.0 if is_stand_in else float(result.wall_time or 0.0)
                bar.trial()
            summary.store_time += time.perf_counter() - t0

    def adopt(finished_now: set[str]) -> None:
        """Trials this run still waits for that are finished in the store (trained by another run, or by an
        earlier one for a stand-in): not trained again; plateau stand-ins of them are written from the row."""
        for target in [t for t in waiting if t.key in finished_now]:
            requested = waiting[target]
            if target in requested:
                requested.remove(target)
                summary.by_others += 1
                bar.trial()
            if not requested:
                del waiting[target]
                continue
            row = store.row(target.key)
            if row is None:  # its row cannot be decoded (a warning named it): nothing to copy
                summary.by_others += len(waiting.pop(target))
                continue
            write(target, _row_result(row), row.get("engine") or "batched")

    signals = _Signals()
    heart = _Heartbeat(store, owner, lease_s)
    try:
        with signals, heart:
            adopt(finished)
            work = {t: plan.steps[t] for t in waiting}
            bar.set_work(float(sum(work.values())))
            runner = _Executor(engine, workers, threads, ray_address,
                               (device, data_dir_s, cache_dir_s, chunk_size,
                                None if checkpoint_dir is None else str(checkpoint_dir)), bar, anytime)
            said = False
            while waiting:
                # one pass: every chunk is claimed right before it runs; what another live run holds is skipped
                runner.run(list(waiting), store, owner, lease_s, chunk_size, write, work)
                adopt(store.finished_keys())
                if not waiting:
                    break
                held = store.claimed_by_others([t.key for t in waiting], owner, lease_s) \
                    if hasattr(store, "claimed_by_others") else 0
                note = f"waiting for {held or len(waiting)} trials claimed by another run on this store"
                bar.note(note)
                if not said and not progress:
                    warnings.warn(note, UserWarning, stacklevel=2)
                said = True
                time.sleep(min(1.0, lease_s / 4))
    except KeyboardInterrupt:
        summary.interrupted = True
        summary.signal = signals.caught or signal.SIGINT
        summary.wall_time = time.perf_counter() - t_start
        raise StudyInterrupted(summary) from None
    finally:
        bar.close()
        with contextlib.suppress(Exception):
            store.release(owner)
    summary.wall_time = time.perf_counter() - t_start
    return summary


def _row_result(row: dict[str, Any]) -> Any:
    from budgetsched.bench.engines.train import TrialResult

    return TrialResult(Status.parse(row["status"]), row["val_loss"], row["val_metric"], row["test_loss"],
                       row["test_metric"], row["curves"], row["steps"] or 0, row["wall_time"] or 0.0, row["error"])


class _Heartbeat:
    """Renews this run's claims every ``lease_s / 4`` seconds from a background thread."""

    def __init__(self, store: Any, owner: str, lease_s: float) -> None:
        self.store, self.owner, self.period = store, owner, max(0.05, lease_s / 4)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "_Heartbeat":
        if hasattr(self.store, "heartbeat"):
            self._thread = threading.Thread(target=self._beat, daemon=True, name="budgetsched-heartbeat")
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.period):
            with contextlib.suppress(Exception):  # a missed beat only shortens the lease
                self.store.heartbeat(self.owner)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Executor:
    """Runs chunks inline, in worker processes or on Ray, claiming each chunk's trials right before it runs."""

    def __init__(self, engine: str, workers: int, threads: int, ray_address: str | None, args: tuple,
                 bar: _Progress, anytime: bool = False) -> None:
        self.engine, self.workers, self.threads, self.ray_address = engine, workers, threads, ray_address
        self.args, self.bar, self.anytime = args, bar, anytime

    def run(self, configs: list[TrialConfig], store: Any, owner: str, lease_s: float, chunk_size: int,
            write: Callable[[TrialConfig, Any, str], None], work: dict[TrialConfig, int]) -> None:
        """One pass over ``configs``: each chunk's trials are claimed right before it runs (those finished or
        held by another run are left out) and every result is handed to ``write``."""
        chunks = make_chunks(configs, "sequential" if self.engine == "sequential" else "batched", chunk_size,
                             self.anytime)

        def claimed(chunk: Chunk) -> Chunk:
            if not hasattr(store, "claim"):
                return chunk
            keys = set(store.claim([c.key for c in chunk], owner, lease_s))
            return [c for c in chunk if c.key in keys]

        if self.engine == "ray":
            self._ray(chunks, claimed, write, work)
        elif self.workers == 1:
            self._inline(chunks, claimed, write, work)
        else:
            self._processes(chunks, claimed, write, work)

    def _inline(self, chunks, claimed, write, work) -> None:
        for kind, chunk in chunks:
            chunk = claimed(chunk)
            if not chunk:
                continue
            self.bar.group(chunk[0])
            steps = sum(work[c] for c in chunk)
            seen = 0

            def on_epoch(n: int, steps: int = steps) -> None:
                nonlocal seen
                if n:
                    self.bar.work(n)
                    seen += n
            for config, result in _iter_chunk(kind, chunk, *self.args, on_epoch=on_epoch):
                write(config, result, kind)
            self.bar.work(max(0, steps - seen))  # what divergence, setup failures or shared work skipped

    def _processes(self, chunks, claimed, write, work) -> None:
        """Chunks over ``workers`` spawned processes, at most ``workers`` in flight (each claimed right before
        it is submitted); results are written here as each chunk completes."""
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
                                      initargs=(self.threads, os.getpid(), queue))
        seen = [0.0]
        stop = threading.Event()

        def drain() -> None:  # progress from the workers, as they finish epochs
            while not stop.is_set():
                try:
                    n = queue.get(timeout=0.2)
                except Exception:
                    continue
                if n:
                    self.bar.work(n)
                    seen[0] += n
        reader = threading.Thread(target=drain, daemon=True, name="budgetsched-progress")
        reader.start()
        clean = False
        pending = iter(chunks)
        futures: dict[cf.Future, tuple[str, Chunk]] = {}

        claimed_work = [0.0]

        def submit_next() -> bool:
            for kind, chunk in pending:
                chunk = claimed(chunk)
                if chunk:
                    futures[pool.submit(_run_chunk, kind, chunk, *self.args)] = (kind, chunk)
                    claimed_work[0] += sum(work[c] for c in chunk)
                    return True
            return False
        try:
            for _ in range(self.workers):
                if not submit_next():
                    break
            while futures:
                done, _ = cf.wait(list(futures), return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    kind, chunk = futures.pop(fut)
                    results = fut.result()  # a worker exception (e.g. missing data) propagates here
                    self.bar.group(chunk[0])
                    for config, result in results:
                        write(config, result, kind)
                    submit_next()
            clean = True
        finally:
            stop.set()
            reader.join(timeout=2)
            if clean:
                pool.shutdown(wait=True)
            else:
                _stop_pool(pool)
            queue.close()
        self.bar.work(max(0.0, claimed_work[0] - seen[0]))

    def _ray(self, chunks, claimed, write, work) -> None:
        """Chunks as Ray tasks; the driver writes each chunk's results as ``ray.wait`` returns it."""
        try:
            import ray
        except ImportError:
            raise UsageError("engine 'ray' needs Ray: pip install 'budgetsched[ray]'") from None
        started_here = False
        if not ray.is_initialized():
            if self.ray_address is not None:
                _check_reachable(self.ray_address)
                ray.init(address=self.ray_address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers if self.workers > 1 else None, include_dashboard=False,
                         log_to_driver=False)
            started_here = True
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_chunk)
        # One torch thread per Ray task: Ray runs one task per CPU, so threads x tasks <= CPUs.
        pending = {}
        for kind, chunk in chunks:
            chunk = claimed(chunk)
            if chunk:
                pending[remote.remote(kind, chunk, *self.args, 1)] = (kind, chunk)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    kind, chunk = pending.pop(ref)
                    self.bar.group(chunk[0])
                    for config, result in ray.get(ref):
                        write(config, result, kind)
                    self.bar.work(sum(work[c] for c in chunk))
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Interrupt or error: drop queued chunks and stop the running ones now (their results are lost, everything
    already written stays); wait until every worker has exited."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    if manager is not None:  # it reaps the stopped workers too; let it finish before returning
        manager.join(timeout=10)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast with one line if a Ray cluster address does not answer (ray.init would wait for minutes)."""
    if address in ("auto", "local"):
        return
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"Ray address {address!r} is not host:port with a port in 1..65535 (or 'auto')")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except socket.timeout:
        raise EnvironmentFailure(f"cannot reach the Ray cluster at {address!r}: no answer within {timeout:g} s; "
                                 f"is it running?") from None
    except (OSError, UnicodeError) as e:
        raise EnvironmentFailure(f"cannot reach the Ray cluster at {address!r} ({getattr(e, 'strerror', None) or e}); "
                                 f"is it running?") from None
