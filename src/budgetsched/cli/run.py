"""``budgetsched run`` and ``budgetsched refine``: train what a store is missing.

Everything the user typed is parsed (:mod:`._study`) and checked - the study by its spec, the execution options
by the runner's one option check - before a store is opened or a framework loaded for training. A new store is
made only in a directory that exists (a typo in a resume path is an error, not a fresh study), and is announced.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from budgetsched.cli._common import PROG, say
from budgetsched.cli._study import study_spec
from budgetsched.errors import UsageError

#: Without a terminal, progress is one line each time another tenth of the trials is written.
PLAIN_STEPS = 10
#: ... and at least one line this often (seconds) while trials keep arriving.
PLAIN_EVERY_S = 300.0


def open_store_for_run(path: str, quiet: bool) -> Any:
    """The store of ``run``: an existing one (resumed), or a new one in a directory that exists, announced on
    stderr unless ``quiet``. A missing directory is refused: it usually means a mistyped resume path."""
    from budgetsched.bench.storage.store import Store

    p = Path(path)
    if not p.exists() and not p.parent.is_dir():
        missing = next((d for d in reversed([p.parent, *p.parent.parents]) if not d.is_dir()), p.parent)
        why = "is not a directory" if missing.exists() else "no such directory"
        raise UsageError(f"--store {path!r}: {why} {str(missing)!r} (create it first to start a new store there)")
    store = Store(path)
    if store.created and not quiet:
        say(f"new store at {path}")
    return store


class PlainProgress:
    """Progress as plain lines on stderr, for when stderr is not a terminal (a log file, CI, a pipe): a line each
    time another tenth of the trials is in the store, counted by reading the store every few seconds."""

    def __init__(self, store: Any, keys: Sequence[str], period_s: float = 2.0) -> None:
        self.store, self.keys, self.period_s = store, set(keys), period_s
        self.before = len(self.keys & store.finished_keys())
        self.total = len(self.keys) - self.before
        self.t0 = self.last_t = time.monotonic()
        self.step = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="budgetsched-progress")

    def __enter__(self) -> "PlainProgress":
        if self.total > 0:
            say(f"{self.total} trials to run" + (f" ({self.before} already in the store)" if self.before else ""))
            self._thread.start()
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
            if exc_type is None:  # the last tenth, however quickly it came
                self.show(len(self.keys & self.store.finished_keys()) - self.before, time.monotonic())

    def _watch(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                done = len(self.keys & self.store.finished_keys()) - self.before
            except Exception:  # a busy store: the next look will do
                continue
            self.show(done, time.monotonic())

    def show(self, done: int, now: float) -> None:
        """Print a line when ``done`` passes the next tenth, or when :data:`PLAIN_EVERY_S` passed and more is done."""
        step = min(PLAIN_STEPS, done * PLAIN_STEPS // max(self.total, 1))
        if step > self.step or (now - self.last_t >= PLAIN_EVERY_S and done > 0 and step < PLAIN_STEPS):
            self.step, self.last_t = max(step, self.step), now
            elapsed = now - self.t0
            left = f", about {_duration(elapsed * (self.total - done) / done)} left" if 0 < done < self.total else ""
            say(f"{done} of {self.total} trials ({100 * done // max(self.total, 1)} %), {_duration(elapsed)}{left}")


def _duration(seconds: float) -> str:
    """``42 s``, ``7 min``, ``2.5 h``: a duration as a person reads it in a log."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _progress(store: Any, configs: Sequence[Any], quiet: bool) -> tuple[bool, Any]:
    """(the runner's progress bar on, a plain-line watcher or a null context): the bar on a terminal, plain lines
    elsewhere, nothing with ``--quiet``."""
    if quiet:
        return False, contextlib.nullcontext()
    if sys.stderr.isatty():
        return True, contextlib.nullcontext()
    return False, PlainProgress(store, [c.key for c in configs])


def engine_label(store: Any, keys: set[str], asked: str) -> str:
    """The engines that trained the trials this run wrote (``@trainable`` runs are the user's own loop), or the
    engine asked for when nothing was trained."""
    from budgetsched.bench.tasks.names import BUILTIN_TASKS

    engines: list[str] = []
    for row in store.trial_rows():
        if row.key not in keys:
            continue
        name = row.provenance.engine or asked
        if row.stand_in is None and row.task not in BUILTIN_TASKS and _is_trainable(row.task):
            name = "@trainable"
        if name not in engines:
            engines.append(name)
    return " + ".join(engines) or asked


def _is_trainable(task: str) -> bool:
    from budgetsched.bench.tasks import get_task
    from budgetsched.bench.tasks.custom import Trainable

    try:
        return isinstance(get_task(task), Trainable)
    except ValueError:
        return False


def _run(configs: Sequence[Any], store: Any, quiet: bool, **kw: Any) -> Any:
    """One call of the runner, with the progress that suits stderr; the summary names the engines that trained."""
    from budgetsched.bench.execution.runners import run_study

    before = store.finished_keys()
    bar, watcher = _progress(store, configs, quiet)
    with watcher:
        summary = run_study(configs, store, progress=bar, **kw)
    new = {c.key for c in configs} - before
    if summary.ran:
        summary = dataclasses.replace(summary, engine=engine_label(store, new, summary.engine))
    return summary


def _check_data_dir(data_dir: str | None) -> None:
    """``--data-dir`` names a directory (a missing file inside it is the task's to report, when it loads)."""
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UsageError(f"--data-dir {data_dir!r} is not a directory")


def _interrupted(e: Any, store_path: str, what: str = "trials") -> int:
    s = e.summary
    how = "terminated" if s.signal == signal.SIGTERM else "interrupted"
    say(f"{how}: {s.ran} {what} written by this run, {s.skipped + s.ran} of {s.total} in {store_path}; "
        f"rerun the same command to resume")
    return 143 if s.signal == signal.SIGTERM else 130


def cmd_run(args: argparse.Namespace) -> int:
    spec = study_spec(args)  # the study, validated and expanded once, without torch
    configs = spec.configs()
    from budgetsched.bench.execution.runners import StudyInterrupted, check_options

    # the runner's one check of its options, here before the store is touched (it also asks the machine about
    # --device and Ray); run_study takes the checked options as they are
    options = check_options(args.engine, args.workers, args.chunk_size, args.ray_address, args.device,
                            args.gpus_per_chunk)
    _check_data_dir(args.data_dir)
    store = open_store_for_run(args.store, args.quiet)
    kw = dict(options=options, data_dir=args.data_dir, cache_dir=args.cache_dir, anytime=args.anytime,
              checkpoint_dir=args.store + ".anytime" if args.anytime else None)
    try:
        store.record_study(spec.to_dict())
        summary = _run(configs, store, args.quiet, **kw)
        rounds = 0
        while spec.refine:
            from budgetsched.bench.protocol.study import refinement

            extra = refinement(spec, configs, store.trial_rows())
            if not extra:
                break
            rounds += 1
            configs = configs + extra
            if not args.quiet:
                say(f"refinement round {rounds}: {len(extra)} trials at new LRs")
            summary = _merge(summary, _run(configs, store, args.quiet, **kw))
        if spec.eval_seeds:
            extra = _evaluation_phase(spec, configs, store, args.quiet)
            if extra:
                summary = _merge(summary, _run(configs + extra, store, args.quiet, **kw))
    except StudyInterrupted as e:
        return _interrupted(e, args.store)
    except BaseException:
        store.remove_if_empty()  # e.g. a missing data file: a store this run created and never wrote is removed
        raise
    finally:
        store.close()
    print(summary.line())
    return 0


def _merge(summary: Any, more: Any) -> Any:
    """One summary of a command's phases (grid, refinement rounds, evaluation seeds), each a :func:`run_study` over
    the grown grid: trials run add up, the grid is the last one, and "already in the store" counts what was
    finished before the command began (the later phase also skips what the earlier ones just wrote)."""
    counts = {k: summary.counts.get(k, 0) + v for k, v in more.counts.items()}
    written_before = summary.ran - summary.counts.get("failed", 0)  # failed trials are retried, not skipped
    return dataclasses.replace(summary, ran=summary.ran + more.ran, total=more.total, counts=counts,
                               skipped=max(0, more.skipped - written_before),
                               wall_time=summary.wall_time + more.wall_time)


def _evaluation_phase(spec: Any, configs: Sequence[Any], store: Any, quiet: bool) -> list[Any]:
    """The evaluation-seed trials of ``spec`` (``--eval-seeds N``), recorded in the store before they train: each
    setting's choice on validation, made on the tuning trials only (evaluation trials of earlier runs never enter
    it), retrained on N fresh seeds (:func:`budgetsched.bench.analysis.evaluation.evaluation_trials`)."""
    from budgetsched.bench.analysis.evaluation import evaluation_trials, tuning_rows

    settings = {(c.task, c.optimizer, float(c.budget)) for c in configs}
    rows, _ = tuning_rows(store.trial_rows(), store.evaluations(), store.planned_keys())
    planned = evaluation_trials([r for r in rows if (r.task, r.optimizer, float(r.budget)) in settings],
                                spec.eval_seeds, settings)
    store.record_evaluations([rec for _, rec in planned])
    extra = [c for c, _ in planned]
    new = len({c.key for c in extra} - store.finished_keys())
    if not quiet and new:
        say(f"evaluation: {len(extra)} trials ({spec.eval_seeds} fresh seeds per chosen configuration), "
            f"{new} to train")
    return extra


def cmd_refine(args: argparse.Namespace) -> int:
    from budgetsched.bench.analysis.refine import refined_trials
    from budgetsched.bench.execution.runners import StudyInterrupted, check_options
    from budgetsched.bench.storage.store import Store

    options = check_options("batched", args.workers)
    _check_data_dir(args.data_dir)
    with Store(args.store, readonly=True) as s:
        rows = s.trial_rows()
    configs = refined_trials(rows, args.source)
    store = Store(args.store)
    try:
        summary = _run(configs, store, args.quiet, options=options, data_dir=args.data_dir)
    except StudyInterrupted as e:
        return _interrupted(e, args.store, "refined trials")
    finally:
        store.close()
    print(summary.line())
    return 0
