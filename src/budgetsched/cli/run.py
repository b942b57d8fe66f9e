"""``budgetsched run`` and ``budgetsched refine``: train what a store is missing.

Everything the user typed is parsed (:mod:`._study`) and checked - the study by its spec, the execution options
by the runner's one option check - before a store is opened or a framework loaded for training. A new store is
made only in a directory that exists (a typo in a resume path is an error, not a fresh study), and is announced.
"""
from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any, Sequence

from budgetsched.cli._common import say
from budgetsched.cli._study import study_spec
from budgetsched.errors import UsageError


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


def _run(configs: Sequence[Any], store: Any, quiet: bool, **kw: Any) -> Any:
    """One call of the runner with its progress on stderr (a bar on a terminal, plain lines otherwise, nothing with
    ``--quiet``: :mod:`budgetsched.bench.execution.progress`); its summary names the engines that trained."""
    from budgetsched.bench.execution.runners import run_study

    return run_study(configs, store, progress=False if quiet else "auto", **kw)


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
            summary = summary.then(_run(configs, store, args.quiet, **kw))
        if spec.eval_seeds:
            extra = _evaluation_phase(spec, configs, store, args.quiet)
            if extra:
                summary = summary.then(_run(configs + extra, store, args.quiet, **kw))
    except StudyInterrupted as e:
        return _interrupted(e, args.store)
    except BaseException:
        store.remove_if_empty()  # e.g. a missing data file: a store this run created and never wrote is removed
        raise
    finally:
        store.close()
    print(summary.line())
    return 0


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
