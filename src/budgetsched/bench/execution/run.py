"""Orchestration: turn a list of trial configs into rows of a results store.

How a study runs (``run_study``):

1. **Plan.** Each task's data is loaded once (a missing file fails here, before anything trains). Every config's
   run length is resolved in steps; budgets of one task that come out as the same run are trained once and the
   duplicate budget is dropped with a :class:`BudgetCollapseWarning`. A plateau trial whose patience cannot trigger
   within its budget (:func:`budgetsched.bench.engines.train.plateau_is_constant`) is not trained: it reuses the
   constant trial of the same LR and seed, and its row says ``stand_in = "constant"`` (:mod:`.chunks`).
2. **Resume.** Configs already finished in the store (``done`` or ``diverged``) are skipped (``failed`` ones
   are retried).
3. **Claim, group and chunk.** The rest are grouped by :func:`budgetsched.bench.protocol.grid.group_key`; a group of a
   batchable task is cut into chunks of at most ``chunk_size`` trials ordered by seed, which the batched engine
   trains as one stacked model; other groups (and ``engine="sequential"``) run one trial per chunk. Each chunk's
   trials are *claimed* in the store right before it runs, so several runs on one store split the work; trials
   claimed by another live run are waited for, and a crashed run's claims expire and are taken over.
4. **Execute.** Chunks run in this process (``workers=1``), in ``workers`` spawned processes (:mod:`.local`), or as
   Ray tasks (``engine="ray"``, :mod:`.ray`). Each process loads a task's data once and keeps it (:mod:`.context`).
5. **Write.** This process is the only store writer: every result is put the moment it reaches the parent, in its
   own durable transaction, so a crash, Ctrl-C or SIGTERM loses only the chunks in flight and a rerun resumes.

Ctrl-C or SIGTERM: already-written trials are kept, worker processes (or Ray tasks) are stopped, and
:class:`StudyInterrupted` (a ``KeyboardInterrupt`` carrying the partial :class:`StudySummary`) is raised; the CLI
turns it into one line and exit code 130 (143 for SIGTERM).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from budgetsched.bench.execution.chunks import Chunk, make_chunks
from budgetsched.bench.execution.context import ExecutionContext, process_state
from budgetsched.bench.execution.local import Inline, Processes
from budgetsched.bench.execution.options import RunOptions, usable_cpus
from budgetsched.bench.execution.progress import Progress
from budgetsched.bench.execution.signals import Signals
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.protocol.plan import plan_study
from budgetsched.bench.protocol.status import Status
from budgetsched.bench.storage.claims import Claims, claim_owner

__all__ = ["StudySummary", "StudyInterrupted", "run_study", "engine_label", "LEASE_S"]

#: Seconds after its last heartbeat that a run's claim on a trial expires (another run may then take it).
LEASE_S = 120.0
#: While a pass runs, a claim refused (another run holds or finished some of a chunk) looks for trials other runs
#: finished at most this often (seconds), so progress counts them as they come, not when the pass ends.
ADOPT_EVERY_S = 2.0


@dataclass
class StudySummary:
    """What a call of :func:`run_study` did.

    ``store_time`` (seconds spent writing results) and ``plan_time`` (resume check, grouping, chunking) are the
    orchestration overhead; ``train_time`` is the engines' own per-trial wall time summed over trials.

    ``engines`` names what trained the rows this call wrote, first used first (``batched``, ``sequential``,
    ``anytime``, ``schedule-free``; ``@trainable`` for a user's own loop), as the runner ran them; ``engine`` is
    their label (:func:`engine_label`: ``"batched + schedule-free"``), or the engine asked for when nothing ran.
    """

    total: int  # configs given (after dropping duplicate budgets)
    skipped: int  # already finished in the store before this call
    ran: int = 0  # results written by this call (stand-ins included)
    counts: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in Status})
    engine: str = "batched"
    engines: tuple[str, ...] = ()  # what trained the rows this call wrote, first used first
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
    nodes: int = 0  # Ray: nodes that ran at least one chunk (0 when not on Ray)
    retried: int = 0  # Ray: chunks run again after their worker or node was lost

    @property
    def overhead_share(self) -> float:
        """(store writes + grouping) / wall time of the call; 0 when nothing ran."""
        return (self.store_time + self.plan_time) / self.wall_time if self.wall_time > 0 else 0.0

    def then(self, later: "StudySummary") -> "StudySummary":
        """One summary of a command's phases (grid, refinement rounds, evaluation seeds), each a :func:`run_study`
        over the grown grid, ``later`` after this one: trials run add up, the grid is the later one, the engines
        are both phases' (first used first), and "already in the store" counts what was finished before the first
        phase began (the later phase also skips what this one just wrote)."""
        counts = {k: self.counts.get(k, 0) + v for k, v in later.counts.items()}
        written = self.ran - self.counts.get("failed", 0)  # failed trials are retried, not skipped
        engines = self.engines + later.engines
        return dataclasses.replace(self, ran=self.ran + later.ran, total=later.total, counts=counts,
                                   engines=tuple(dict.fromkeys(engines)), engine=engine_label(engines, self.engine),
                                   skipped=max(0, later.skipped - written),
                                   wall_time=self.wall_time + later.wall_time)

    def line(self) -> str:
        """One human line: what ran and how long it took."""
        c = self.counts
        extra = "".join([f", {self.stand_ins} plateau trials reused the constant run" if self.stand_ins else "",
                         f", {self.dropped} trials of duplicate budgets dropped" if self.dropped else ""])
        others = f"{self.by_others} trained meanwhile by another run, " if self.by_others else ""
        where = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        if self.nodes:
            where += f" on {self.nodes} node{'s' if self.nodes != 1 else ''}"
        if self.retried:
            where += f", {self.retried} chunk{'s' if self.retried != 1 else ''} retried"
        return (f"{self.ran} trials run ({c['done']} done, {c['diverged']} diverged, {c['failed']} failed{extra}), "
                f"{self.skipped} already in the store, {others}{self.total} in the grid; {self.wall_time:.1f} s "
                f"({self.engine}, {where}, {self.device}"
                + (f"; store writes + grouping {self.overhead_share:.1%} of it)" if self.ran else ")"))


def engine_label(engines: Sequence[str], asked: str) -> str:
    """The summary's engine: the engines that trained, joined (``"@trainable + batched"``), else ``asked``."""
    return " + ".join(dict.fromkeys(engines)) or asked


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during :func:`run_study`; ``summary`` tells what was written before the interrupt."""

    def __init__(self, summary: StudySummary) -> None:
        super().__init__("study interrupted")
        self.summary = summary


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


class _Heartbeat:
    """Renews this run's claims every ``lease_s / 4`` seconds from a background thread."""

    def __init__(self, claims: Claims, owner: str, lease_s: float) -> None:
        self.claims, self.owner, self.period = claims, owner, max(0.05, lease_s / 4)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "_Heartbeat":
        self._thread = threading.Thread(target=self._beat, daemon=True, name="budgetsched-heartbeat")
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.period):
            with contextlib.suppress(Exception):  # a missed beat only shortens the lease
                self.claims.heartbeat(self.owner)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# ------------------------------------------------------------------------------------------------ the study
#: ``run_study``'s execution keywords at their defaults (those of :class:`RunOptions`).
_LOOSE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunOptions)}


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
    progress: bool | str = True,
    ray_address: str | None = None,
    lease_s: float = LEASE_S,
    anytime: bool = False,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    gpus_per_chunk: float | None = None,
    claims: Claims | None = None,
    options: RunOptions | None = None,
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
            docs/benchmarks.md); for a local Ray instance that this call starts, its CPUs. A Ray chunk trains
            with one torch thread and asks Ray for one CPU.
        device: ``"cpu"`` or ``"cuda"`` / ``"cuda:N"`` (only if ``torch.cuda.is_available()``; on a Ray cluster,
            a GPU chunk asks Ray for a GPU and the driver needs none).
        data_dir, cache_dir: passed to each task's loader.
        chunk_size: trials per batched-engine call (bounds memory; also the unit lost on an interrupt).
        progress: how progress shows on stderr (:mod:`.progress`): ``True`` / ``"bar"`` a rich bar, ``"lines"``
            plain lines (a log, CI, a background job), ``"auto"`` the bar on a terminal and lines otherwise,
            ``False`` / ``"off"`` nothing. Fed by this call's own writes, never by reading the store.
        ray_address: an existing Ray cluster (``engine="ray"``); default: the running instance or a local one.
        lease_s: seconds after which another run may take over trials this run claimed but stopped renewing.
        anytime: train trials that differ only in budget as one trunk and a branch per budget
            (:mod:`budgetsched.bench.engines.anytime`; results equal separate runs, at less compute for ``wsd``).
        checkpoint_dir: where anytime trunks keep their snapshots (a killed study resumes from them).
        gpus_per_chunk: Ray and ``device="cuda"``: the share of a GPU each chunk asks for (0.5: two chunks per
            GPU); default 1.
        claims: how this run shares the store with other runs (default ``store.claims``; ``NullClaims()`` when
            nothing is shared).
        options: the execution options already checked (:class:`~budgetsched.bench.execution.options.RunOptions`,
            made by ``check_options``), instead of ``engine``, ``workers``, ``chunk_size``, ``ray_address``,
            ``device`` and ``gpus_per_chunk``, which are then left at their defaults; they are not checked again.

    Returns:
        A :class:`StudySummary`.

    Raises:
        UsageError: bad engine, workers, chunk_size or device; unknown task (listing the valid ones).
        FileNotFoundError: a task's data files are missing.
        EnvironmentFailure: the store cannot be written; the Ray cluster cannot be reached.
        StudyInterrupted: on Ctrl-C or SIGTERM, after stopping the workers (written trials are kept).
    """
    loose = dict(engine=engine, workers=workers, chunk_size=chunk_size, ray_address=ray_address, device=device,
                 gpus_per_chunk=gpus_per_chunk)
    if options is None:
        options = RunOptions(**loose)  # checked when made
    else:
        given = [k for k, v in loose.items() if v != _LOOSE_DEFAULTS[k]]
        if given:
            raise TypeError(f"run_study: pass the execution options either as options= or as keywords, not both "
                            f"({', '.join(given)} given with options=)")
    engine, workers, chunk_size = options.engine, options.workers, options.chunk_size
    ray_address, device, gpus_per_chunk = options.ray_address, options.device, options.gpus_per_chunk
    cores = usable_cpus()
    if workers == "auto":
        workers = cores
    if engine != "ray" and workers > cores:
        warnings.warn(f"workers capped at {cores}, the CPU cores this process may use (asked for {workers})",
                      UserWarning, stacklevel=2)
        workers = cores
    t_start = time.perf_counter()
    cache = process_state().cache
    threads = max(1, cores // workers) if engine != "ray" else 1
    ctx = ExecutionContext.of(device, data_dir, cache_dir, chunk_size, checkpoint_dir, threads)

    # Plan: load every task's data here first (a missing data file fails at once, before any worker starts).
    unique = list(dict.fromkeys(configs))
    sizes = {}
    trainables = set()  # tasks that are a user's own loop (no data: the @trainable engine runs them, work.py)
    for task_name in dict.fromkeys(c.task for c in unique):
        task, data = cache.load(task_name, ctx.data_dir, ctx.cache_dir)
        sizes[task_name] = (task, 0 if data is None else len(data.train_y))
        if data is None:
            trainables.add(task_name)
    finished = store.finished_keys()
    plan = plan_study(unique, sizes, finished)
    todo = [c for c in plan.configs if c.key not in finished]
    summary = StudySummary(total=len(plan.configs), skipped=len(plan.configs) - len(todo), engine=engine,
                           workers=workers, device=device, dropped=len(plan.dropped))
    # what to train: each todo config's trained config, unless that one is already finished (a stand-in's
    # constant trial that another config of the grid trained)
    waiting: dict[TrialConfig, list[TrialConfig]] = {}
    for c in todo:
        waiting.setdefault(plan.trained(c), []).append(c)
    owner = claim_owner()
    claims = store.claims if claims is None else claims
    bar = Progress(progress, summary.total, summary.skipped)
    if engine == "ray":
        from budgetsched.bench.execution.ray import RayCluster

        runner: Any = RayCluster(ctx, bar, workers, ray_address, [c.task for c in unique], gpus_per_chunk)
    else:
        runner = Inline(ctx, bar) if workers == 1 else Processes(ctx, bar, workers)
    meta = _meta(runner.name, device, workers, threads)
    summary.plan_time = time.perf_counter() - t_start

    engines: dict[str, None] = {}  # what trained the rows written, in order of first use

    def write(config: TrialConfig, result: Any, engine_used: str) -> None:
        t0 = time.perf_counter()
        row_meta = {**meta, "engine": engine_used}
        with signals.held():  # the rows and their counts land together, or neither does
            for requested in waiting.pop(config, []):
                planned = plan.planned[requested]
                store.put(requested, result, row_meta, total_steps=planned.total_steps, stand_in=planned.stand_in)
                trained = planned.stand_in is None and requested.task in trainables
                engines.setdefault("@trainable" if trained else engine_used)
                summary.ran += 1
                summary.stand_ins += planned.stand_in is not None
                summary.counts[str(result.status)] = summary.counts.get(str(result.status), 0) + 1
                summary.train_time += 0.0 if requested != config else float(result.wall_time or 0.0)
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
            row = store.trial_row(target.key)
            if row is None:  # its row cannot be decoded (a warning named it): nothing to copy
                n = len(waiting.pop(target))
                summary.by_others += n
                bar.trial(n)
                continue
            write(target, row.result(), row.provenance.engine or "batched")

    looked = [-float("inf")]

    def claim(chunk: Chunk) -> Chunk:
        keys = set(claims.claim([p.config.key for p in chunk], owner, lease_s))
        if len(keys) < len(chunk) and time.monotonic() - looked[0] >= ADOPT_EVERY_S:
            looked[0] = time.monotonic()  # another run is at work on this store: count what it finished
            adopt(store.finished_keys())
        return [p for p in chunk if p.config.key in keys]

    signals = Signals()
    heart = _Heartbeat(claims, owner, lease_s)
    try:
        with signals, heart:
            adopt(finished)
            work = {t: plan.planned[t].total_steps for t in waiting}
            bar.set_work(float(sum(work.values())))
            said = False
            with runner:
                while waiting:
                    # one pass: every chunk is claimed right before it runs; what another live run holds is skipped
                    chunks = [(kind, [plan.planned[c] for c in configs]) for kind, configs in
                              make_chunks(list(waiting), "sequential" if engine == "sequential" else "batched",
                                          chunk_size, anytime)]
                    runner.run(chunks, claim, write, work)
                    adopt(store.finished_keys())
                    if not waiting:
                        break
                    held = claims.held_by_others([t.key for t in waiting], owner, lease_s)
                    note = f"waiting for {held or len(waiting)} trials claimed by another run on this store"
                    bar.note(note)
                    if not said and not bar.live:  # a bar shows the note; plain lines or none: warn once
                        warnings.warn(note, UserWarning, stacklevel=2)
                    said = True
                    time.sleep(min(1.0, lease_s / 4))
        if engine == "ray":  # who took part
            summary.nodes, summary.retried = len(runner.nodes), runner.retried
            summary.workers = len(runner.processes) or summary.workers
    except KeyboardInterrupt:
        summary.engines, summary.engine = tuple(engines), engine_label(list(engines), summary.engine)
        summary.interrupted = True
        summary.signal = signals.caught or signal.SIGINT
        summary.wall_time = time.perf_counter() - t_start
        raise StudyInterrupted(summary) from None
    finally:
        bar.close()
        with contextlib.suppress(Exception):
            claims.release(owner)
    summary.engines, summary.engine = tuple(engines), engine_label(list(engines), summary.engine)
    summary.wall_time = time.perf_counter() - t_start
    return summary
