"""The ``budgetsched`` command: run a budgeted-training study, report it, plot it, show the schedules.

::

    budgetsched run --preset demo --store study.db
    budgetsched run --task digits-mlp --schedules rex,linear --optimizers sgdm --budgets 2,4 \\
        --lrs 0.03,0.1 --seeds 1 --store study.db
    budgetsched report study.db --format md --output report.md
    budgetsched plot study.db --out figures/
    budgetsched schedules --out figures/

Errors by kind (``budgetsched.errors``; docs/cli.md has the table): a mistake in what the user typed or gave
(unknown name, bad number, a file that is not a store, missing data files) ends with one line
``budgetsched: error: ...`` and exit code 2; a failure of the environment (disk full, permissions, a locked
store, an unreachable Ray cluster) with one line and exit code 1; anything else is a bug and keeps its traceback.
Ctrl-C during ``run`` keeps the finished trials and exits with 130, SIGTERM with 143 (rerun the same command to
resume).
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator, NoReturn, Sequence

from budgetsched.bench.protocol.grid import BUDGET_UNITS, OPTIMIZERS, parse_list
from budgetsched.bench.protocol.study import MAX_SEEDS
from budgetsched.errors import BudgetschedError, EnvironmentFailure, UsageError

__all__ = ["main", "build_parser", "parse_schedules", "parse_lrs", "parse_seeds"]

PROG = "budgetsched"
REPORT_FORMATS = ("rich", "md", "csv", "json")
#: Progress points printed by ``budgetsched schedules``.
SHOW_Z = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
#: Largest seed count ``--seeds N`` accepts (each seed is a full copy of the grid); the same cap as study files.
MAX_SEED_COUNT = MAX_SEEDS
#: Largest ``--resamples`` of ``report`` / ``plot`` (memory grows with it; 10**4 already gives stable intervals).
MAX_RESAMPLES = 1_000_000
#: Largest ``--total-steps`` of ``budgetsched schedules`` (schedules count steps exactly up to 2**53).
MAX_TOTAL_STEPS = 2 ** 53


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error format used by every budgetsched error."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


# ------------------------------------------------------------------------------------------- argument parsing
def _number(text: str) -> Any:
    """'5' -> 5, '0.5' -> 0.5, anything else stays a string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_schedules(text: str) -> list[str | tuple[str, dict[str, Any]]]:
    """``rex,linear,delayed-linear:delay=0.5`` -> ``["rex", "linear", ("delayed-linear", {"delay": 0.5})]``.

    Parameters follow the name after ``:``, several separated by ``:`` (``step:factor=0.2``). Names and parameters
    are checked once, when the study is built (:class:`budgetsched.bench.protocol.study.StudySpec`).
    """
    out: list[str | tuple[str, dict[str, Any]]] = []
    for item in parse_list(text):
        name, *params = item.split(":")
        if not params:
            out.append(name)
            continue
        kw: dict[str, Any] = {}
        for p in params:
            k, eq, v = p.partition("=")
            if not eq or not k or not v:
                raise ValueError(f"bad schedule parameter {p!r} in {item!r}; write name:key=value, "
                                 f"e.g. delayed-linear:delay=0.5")
            kw[k] = _number(v)
        out.append((name, kw))
    return out


def _workers(text: str) -> int | str:
    """``--workers``: a count, or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes or 'auto'") from None


def _float_list(text: str, what: str) -> list[float]:
    try:
        vals = parse_list(text, float)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None
    return vals


def parse_lrs(text: str) -> list[float] | dict[str, list[float]]:
    """``0.01,0.03`` (every optimizer) or ``sgdm=0.01,0.03;adam=0.001,0.003`` (per optimizer)."""
    if "=" not in text:
        return _float_list(text, "--lrs")
    out: dict[str, list[float]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        opt, eq, vals = part.partition("=")
        opt = opt.strip()
        if opt not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {opt!r} in --lrs; choose from {', '.join(OPTIMIZERS)}")
        out[opt] = _float_list(vals, f"--lrs for {opt}")
    return out


def parse_seeds(text: str) -> list[int]:
    """``3`` -> seeds 0, 1, 2 (a count); ``0,1,2`` or ``7,`` -> exactly those seeds."""
    try:
        seeds = parse_list(text, int)
    except ValueError as e:
        raise ValueError(f"--seeds: {e} (give a count like 3 or a list like 0,1,2)") from None
    if "," in text:
        return seeds
    if len(seeds) != 1 or seeds[0] < 1:
        raise ValueError(f"--seeds count must be >= 1, got {text!r} (or give a list like 0,1,2)")
    if seeds[0] > MAX_SEED_COUNT:
        raise ValueError(f"--seeds count must be at most {MAX_SEED_COUNT}, got {text!r} "
                         f"(to name seeds, give a list such as 0,1,2 or 7,)")
    return list(range(seeds[0]))


def study_spec(args: argparse.Namespace) -> Any:
    """The study of ``budgetsched run``: a preset or a ``--config`` file (not both), with every flag applied over
    it, validated once (:class:`budgetsched.bench.protocol.study.StudySpec`)."""
    from budgetsched.bench.protocol.presets import get_preset
    from budgetsched.bench.protocol.study import StudySpec, load_config

    if args.preset is not None and args.config is not None:
        raise UsageError("give --preset or --config, not both")
    base: dict[str, Any] = {}
    source = "command line"
    if args.preset is not None:
        base, source = get_preset(args.preset), f"preset {args.preset!r}"
    elif args.config is not None:
        base, source = load_config(args.config), f"--config {args.config!r}"
    flags: dict[str, Any] = {}
    if args.task is not None:
        flags["tasks"] = parse_list(args.task)
    if args.schedules is not None:
        flags["schedules"] = parse_schedules(args.schedules)
    if args.optimizers is not None:
        flags["optimizers"] = parse_list(args.optimizers)
    if args.budgets is not None:
        flags["budgets"] = _float_list(args.budgets, "--budgets")
    if args.lrs is not None:
        flags["lrs"] = parse_lrs(args.lrs)
    if args.seeds is not None:
        flags["seeds"] = parse_seeds(args.seeds)
    if args.plateau_patience is not None:
        try:
            flags["plateau_patience"] = parse_list(args.plateau_patience, int)
        except ValueError as e:
            raise UsageError(f"--plateau-patience: {e}") from None
    if args.budget_unit is not None:
        flags["budget_unit"] = args.budget_unit
    if args.diverge_factor is not None:
        flags["diverge_factor"] = args.diverge_factor
    if args.refine:
        flags["refine"] = True
    merged = {**base, **flags}
    for field_, flag in (("tasks", "--task"), ("schedules", "--schedules"), ("lrs", "--lrs")):
        if field_ not in merged:
            raise UsageError(f"no {field_} given: pass {flag}, --preset or --config")
    return StudySpec.from_mapping(merged, source if not flags else f"{source} with flags")


# ----------------------------------------------------------------------------------------------- commands
#: errno values that mean the machine refused (exit 1); any other error on a path the user gave is theirs (exit 2).
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG,
                       errno.EBUSY, errno.ETXTBSY, errno.EMFILE, errno.ENFILE, errno.ENOMEM}


def _path_error(e: OSError, doing: str, flag: str, path: str | os.PathLike[str]) -> Exception:
    """One line for a failure on a path the user named: the environment's (exit 1) or the user's (exit 2)."""
    kind = EnvironmentFailure if e.errno in _ENVIRONMENT_ERRNOS else UsageError
    return kind(f"cannot {doing} {flag} {str(path)!r}: {e.strerror or e}")


def _output_dir(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` as a directory, created if needed."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _path_error(e, "create", flag, path) from None
    return p


@contextlib.contextmanager
def _output_file(path: str | os.PathLike[str], flag: str = "--output") -> Iterator[Any]:
    """A text file to write the command's output to."""
    try:
        f = open(path, "w", encoding="utf-8")
    except OSError as e:
        raise _path_error(e, "write", flag, path) from None
    try:
        with f:
            yield f
    except OSError as e:
        raise _path_error(e, "write", flag, path) from None


def _check_resamples(n: int) -> None:
    if n > MAX_RESAMPLES:
        raise UsageError(f"--resamples must be at most {MAX_RESAMPLES}, got {n}")


def _read_rows(path: str) -> list[dict[str, Any]]:
    """Every trial of an existing store (opened read-only); a store with none is a usage error."""
    store = _open_existing_store(path)
    try:
        rows = store.rows()
    finally:
        store.close()
    if not rows:
        raise UsageError(f"store {path!r} holds no trials yet; run a study first")
    return rows


def _open_existing_store(path: str) -> Any:
    """An existing store, opened read-only (``report`` and ``plot`` never write to it)."""
    from budgetsched.bench.storage.store import Store

    return Store(path, readonly=True)


def cmd_run(args: argparse.Namespace) -> int:
    from budgetsched.bench.execution.runners import StudyInterrupted, check_options, run_study
    from budgetsched.bench.storage.store import Store
    from budgetsched.bench.protocol.study import refinement

    try:  # everything the user typed is read and checked before the store is touched
        spec = study_spec(args)
        configs = spec.configs()
        check_options(args.engine, args.workers, args.chunk_size, args.ray_address, args.device)
        if args.data_dir is not None and not Path(args.data_dir).is_dir():
            raise UsageError(f"--data-dir {args.data_dir!r} is not a directory")
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    store = Store(args.store)
    store.record_study(spec.to_dict())
    kw = dict(engine=args.engine, workers=args.workers, device=args.device, data_dir=args.data_dir,
              cache_dir=args.cache_dir, chunk_size=args.chunk_size, progress=not args.quiet,
              ray_address=args.ray_address, anytime=args.anytime,
              checkpoint_dir=args.store + ".anytime" if args.anytime else None)
    try:
        summary = run_study(configs, store, **kw)
        rounds = 0
        while spec.refine:
            extra = refinement(spec, configs, store.rows())
            if not extra:
                break
            rounds += 1
            configs = configs + extra
            if not args.quiet:
                sys.stderr.write(f"{PROG}: refinement round {rounds}: {len(extra)} trials at new LRs\n")
            more = run_study(configs, store, **kw)
            summary.ran += more.ran
            summary.total, summary.wall_time = more.total, summary.wall_time + more.wall_time
            for k, v in more.counts.items():
                summary.counts[k] = summary.counts.get(k, 0) + v
    except StudyInterrupted as e:
        s = e.summary
        how = "terminated" if s.signal == signal.SIGTERM else "interrupted"
        sys.stderr.write(f"{PROG}: {how}: {s.ran} trials written by this run, {s.skipped + s.ran} of "
                         f"{s.total} in {args.store}; rerun the same command to resume\n")
        return 143 if s.signal == signal.SIGTERM else 130
    except BaseException:
        store.remove_if_empty()  # e.g. a missing data file: a store this run created and never wrote is removed
        raise
    finally:
        store.close()
    print(summary.line())
    return 0


def _report(rows: list[dict[str, Any]], **options: Any) -> Any:
    """``build_report`` with the user's options (a bad option raises UsageError: one line, exit 2)."""
    from budgetsched.bench.analysis.report import build_report

    return build_report(rows, **options)


def cmd_report(args: argparse.Namespace) -> int:
    from budgetsched.bench.analysis import report as rep

    _check_resamples(args.resamples)
    figures_dir = None if args.figures is None else _output_dir(args.figures, "--figures")
    store = _open_existing_store(args.store)
    try:
        rows = store.rows()
    finally:
        store.close()
    r = _report(rows, reference=args.reference, subject=args.subject, resamples=args.resamples,
                         seed=args.seed)
    figures = None
    if args.figures is not None:
        import os

        from budgetsched.bench.rendering import plots

        written = [*plots.figure2(r, figures_dir), *plots.figure2_paired(r, figures_dir),
                   *plots.figure3(rows, figures_dir)]
        base = Path(args.output).resolve().parent if args.output is not None else Path.cwd()
        captions = {"figure2": "Figure 2: test metric vs budget (95 % intervals)",
                    "figure2_paired": f"Figure 2 (paired): each schedule − {r.reference} vs budget (95 % intervals)",
                    "figure3": "Figure 3: test metric vs initial LR (95 % intervals)"}
        figures = {captions[p.stem]: Path(os.path.relpath(p.resolve(), base)).as_posix()
                   for p in written if p.suffix == ".png"}
    if args.format == "rich":
        from rich.console import Console

        if args.output is None:
            rep.render_rich(r, Console())
            return 0
        with _output_file(args.output) as f:
            rep.render_rich(r, Console(file=f, width=160, force_terminal=False))
        return 0
    from budgetsched.bench.analysis.experiments import markdown_sections

    text = {"md": lambda x: rep.to_markdown(x, figures=figures) + markdown_sections(rows), "csv": rep.to_csv,
            "json": lambda x: json.dumps(rep.to_json(x), indent=2) + "\n"}[args.format](r)
    if args.output is None:
        sys.stdout.write(text)
    else:
        with _output_file(args.output) as f:
            f.write(text)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from budgetsched.bench.rendering import plots

    _check_resamples(args.resamples)
    out = _output_dir(args.out, "--out")
    rows = _read_rows(args.store)
    from budgetsched.bench.analysis.report import build_report

    report = _report(rows, resamples=args.resamples, seed=args.seed)
    written = [*plots.figure2(report, out), *plots.figure2_paired(report, out), *plots.figure3(rows, out)]
    if any("delay" in (r.get("schedule_params") or {}) for r in rows):
        written += plots.delay_figure(report, out)
    if any("sampling" in (r.get("schedule_params") or {}) for r in rows):
        written += plots.sampling_heatmap(rows, out)
    settings = {(s.task, s.optimizer) for s in report.settings}
    for task, opt in sorted(settings):
        # LR / loss curves of each task x optimizer at its largest budget (the longest runs show the most).
        budget = max(s.budget for s in report.settings if (s.task, s.optimizer) == (task, opt))
        written += plots.curves(rows, out, task=task, optimizer=opt, budget=budget, report=report)
    for path in written:
        print(path)
    return 0


def _advice_budget(args: argparse.Namespace, rows: list[dict[str, Any]]) -> float:
    """The budget of ``advise`` in percent, from --budget, --epochs or --steps."""
    if args.budget is not None:
        text = str(args.budget).strip().rstrip("%")
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"--budget {args.budget!r} is not a percent (e.g. 30 or 30%)") from None
    tasks = {r["task"] for r in rows if args.task is None or r["task"] == args.task}
    if len(tasks) != 1:
        raise UsageError("--epochs and --steps need one task: pass --task (the study has "
                         f"{', '.join(sorted(tasks)) or 'none'})")
    task = tasks.pop()
    if args.epochs is not None:
        from budgetsched.bench.tasks import get_task

        return 100.0 * args.epochs / get_task(task).max_epochs
    per_percent = [r["total_steps"] / r["budget"] for r in rows if r["task"] == task and r.get("total_steps")]
    if not per_percent:
        raise UsageError(f"the study does not record the run length of {task!r}; give --budget in percent")
    return 100.0 * args.steps / (max(per_percent) * 100.0)


def cmd_advise(args: argparse.Namespace) -> int:
    from budgetsched.bench.analysis.advise import advise, leave_one_budget_out

    rows = _read_rows(args.store)
    budget = _advice_budget(args, rows)
    for a in advise(rows, budget, args.task, args.optimizer):
        print(a.line())
    if args.evaluate:
        r = leave_one_budget_out(rows)
        pct = lambda v: "n/a" if v is None else f"{v:.0%}"  # noqa: E731
        print(f"leave-one-budget-out over {r['n']} held-out settings: advisor Top-1 {pct(r['advisor']['top1'])}, "
              f"Top-3 {pct(r['advisor']['top3'])}; always rex Top-1 {pct(r['rex']['top1'])}, Top-3 "
              f"{pct(r['rex']['top3'])}; always linear Top-1 {pct(r['linear']['top1'])}, Top-3 "
              f"{pct(r['linear']['top3'])}")
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from budgetsched.bench.analysis.refine import refined_trials
    from budgetsched.bench.execution.runners import StudyInterrupted, check_options, run_study
    from budgetsched.bench.storage.store import Store

    check_options("batched", args.workers)
    with Store(args.store, readonly=True) as s:
        rows = s.rows()
    configs = refined_trials(rows, args.source)
    store = Store(args.store)
    try:
        summary = run_study(configs, store, workers=args.workers, data_dir=args.data_dir, progress=not args.quiet)
    except StudyInterrupted as e:
        sys.stderr.write(f"{PROG}: interrupted: {e.summary.ran} refined trials written; rerun to resume\n")
        return 143 if e.summary.signal == signal.SIGTERM else 130
    finally:
        store.close()
    print(summary.line())
    return 0


def cmd_schedules(args: argparse.Namespace) -> int:
    from budgetsched import Schedule, available

    n = args.total_steps
    if not 1 <= n <= MAX_TOTAL_STEPS:
        raise UsageError(f"--total-steps must be in [1, 2**53], got {n}")
    out = None if args.out is None else _output_dir(args.out, "--out")
    print(f"multiplier m at progress z (total_steps={n}, peak_lr=1):")
    print(f"{'schedule':<16}" + "".join(f"{'z=' + format(z, 'g'):>9}" for z in SHOW_Z))
    for name in available():
        try:
            s = Schedule(name, total_steps=n, peak_lr=1.0)
        except ValueError as e:  # needs extra input (plateau: a metric; refined: gradient norms)
            print(f"{name:<16}  (no closed form here: {str(e).split(':')[0]})")
            continue
        print(f"{name:<16}" + "".join(f"{s(min(round(z * n), n)):>9.4f}" for z in SHOW_Z))
    if out is not None:
        from budgetsched.bench.rendering import plots

        for path in plots.figure1(out, total_steps=n):
            print(path)
    return 0


# --------------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    import budgetsched

    p = _Parser(prog=PROG, description="Budget-aware learning-rate schedules and the REX paper's benchmark.")
    p.add_argument("--version", action="version", version=f"{PROG} {budgetsched.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,report,plot,schedules,advise,refine}")

    r = sub.add_parser("run", help="run (or resume) a study into a results store",
                       description="Run every trial of the grid not yet finished in STORE. Flags override the "
                                   "preset's or the config file's fields.")
    from budgetsched.bench.protocol.presets import available_presets

    r.add_argument("--preset", help=f"start from a preset: {', '.join(available_presets())} "
                                    "(see budgetsched.bench.protocol.presets)")
    r.add_argument("--config", help="start from a TOML study file (keys as in docs/studies.md)")
    r.add_argument("--task", help="task name(s), comma-separated, e.g. mnist1d-mlp,digits-mlp")
    r.add_argument("--schedules", help="schedule names, comma-separated; parameters as name:key=value")
    r.add_argument("--optimizers", help="sgdm and/or adam (default: both)")
    r.add_argument("--budgets", help="percents of the task's 100%% run, in (0,100] (default 1,5,10,25,50,100)")
    r.add_argument("--budget-unit", choices=BUDGET_UNITS,
                   help="steps (default: a budget is that fraction of the 100%% run's optimizer steps) or epochs "
                        "(rounded up to whole epochs, as the REX paper does)")
    r.add_argument("--lrs", help="initial LRs: 0.01,0.03 or per optimizer sgdm=0.01,0.03;adam=0.001,0.003")
    r.add_argument("--seeds", help="a count (3 -> seeds 0,1,2) or a list (0,1,2 or 7,) (default 3)")
    r.add_argument("--plateau-patience", help="plateau patience grid in evaluations (default 5,10)")
    r.add_argument("--diverge-factor", type=float,
                   help="a trial diverges when its training loss exceeds this multiple of its first loss "
                        "(default 10), or is not finite")
    r.add_argument("--refine", action="store_true",
                   help="after the grid, add LRs around each schedule's best (x/÷ sqrt 3) and extend the grid "
                        "where the best sits at its edge")
    r.add_argument("--store", required=True, help="results store file (SQLite); rerunning resumes")
    r.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    r.add_argument("--workers", type=_workers, default=1,
                   help="parallel processes (default 1); 'auto': one 1-thread process per CPU core")
    r.add_argument("--engine", default="batched", choices=("batched", "sequential", "ray"))
    r.add_argument("--ray-address", help="address of a running Ray cluster (engine ray)")
    r.add_argument("--chunk-size", type=int, default=64, help="trials per batched-engine call (default 64)")
    r.add_argument("--data-dir", help="directory holding the tasks' data files")
    r.add_argument("--cache-dir", help="directory for prepared data")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--anytime", action="store_true",
                   help="train the budgets of one (schedule, LR, seed) as one trunk and a branch per budget: the same "
                        "results, less compute for schedules that share a prefix (wsd, step, delay=); the others train as "
                        "usual; snapshots in STORE.anytime/")
    r.set_defaults(func=cmd_run)

    from budgetsched.bench.analysis.stats import DEFAULT_RESAMPLES

    rp = sub.add_parser("report", help="Table 1 and per-task tables of a study, with their uncertainty")
    rp.add_argument("store", metavar="STORE")
    rp.add_argument("--format", default="rich", choices=REPORT_FORMATS)
    rp.add_argument("--output", help="write to this file instead of stdout")
    rp.add_argument("--reference", help="schedule every other one is compared with, paired over seeds "
                                        "(default: linear when the study has it)")
    rp.add_argument("--subject", help="schedule compared with the reference and with the best other schedule "
                                      "per budget (default: rex when the study has it)")
    rp.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                    help=f"resampling draws per setting for intervals and probabilities (default {DEFAULT_RESAMPLES})")
    rp.add_argument("--seed", type=int, default=0, help="seed of the resampling draws (default 0)")
    rp.add_argument("--figures", metavar="DIR", help="also write Figures 2, 2 (paired) and 3 (with 95 %% "
                                                     "intervals) to DIR; the md report links them")
    rp.set_defaults(func=cmd_report)

    pl = sub.add_parser("plot", help="Figures 2-3 (with 95 %% intervals, and schedule − reference paired) and "
                                     "LR/loss curves of a study")
    pl.add_argument("store", metavar="STORE")
    pl.add_argument("--out", required=True, help="output directory for the PNG files")
    pl.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                    help=f"resampling draws per setting for Figure 2's intervals (default {DEFAULT_RESAMPLES})")
    pl.add_argument("--seed", type=int, default=0, help="seed of the resampling draws (default 0)")
    pl.set_defaults(func=cmd_plot)

    ad = sub.add_parser("advise", help="which schedule and initial LR for a budget, from a study, with its "
                                       "uncertainty")
    ad.add_argument("store", metavar="STORE")
    how = ad.add_mutually_exclusive_group(required=True)
    how.add_argument("--budget", help="percent of the task's 100%% run, e.g. 30 or 30%%")
    how.add_argument("--epochs", type=float, help="a budget in epochs of the task")
    how.add_argument("--steps", type=int, help="a budget in optimizer steps")
    ad.add_argument("--task", help="only this task of the study")
    ad.add_argument("--optimizer", help="only this optimizer (sgdm or adam)")
    ad.add_argument("--evaluate", action="store_true",
                    help="also score the advisor by leave-one-budget-out on this study (slower)")
    ad.set_defaults(func=cmd_advise)

    rf = sub.add_parser("refine", help="add refined schedules built from a schedule's gradient norms, and run them")
    rf.add_argument("store", metavar="STORE")
    rf.add_argument("--from", dest="source", default="linear", help="the schedule whose runs give the norms "
                                                                    "(default linear)")
    rf.add_argument("--workers", type=_workers, default=1,
                    help="parallel processes (default 1); 'auto': one per CPU core")
    rf.add_argument("--data-dir", help="directory holding the tasks' data files")
    rf.add_argument("--quiet", action="store_true", help="no progress bar")
    rf.set_defaults(func=cmd_refine)

    sc = sub.add_parser("schedules", help="print every profile at a few progress points; --out writes Figure 1")
    sc.add_argument("--out", help="directory for Figure 1 (PNG and PDF)")
    sc.add_argument("--total-steps", type=int, default=1000, help="steps of the printed schedules (default 1000)")
    sc.set_defaults(func=cmd_schedules)
    return p


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside a study's own handling: stopped like Ctrl-C, reported as terminated (exit 143)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``budgetsched`` command; returns the exit code: 0; 2 for a usage error; 1 for an
    environment failure; 130 on Ctrl-C; 143 on SIGTERM (docs/cli.md has the table)."""
    args = build_parser().parse_args(argv)
    from budgetsched.bench.tasks.data import DatasetNotFoundError

    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)  # a clean stop, as for Ctrl-C
    try:
        with warnings.catch_warnings():
            # Library warnings (a duplicate budget, a figure panel skipped for lack of data) as one line each.
            warnings.showwarning = lambda message, *a, **k: sys.stderr.write(
                f"{PROG}: note: {' '.join(str(message).split())}\n")
            return int(args.func(args))
    except BudgetschedError as e:
        sys.stderr.write(f"{PROG}: error: {' '.join(str(e).split()) or type(e).__name__}\n")
        return e.exit_code
    except DatasetNotFoundError as e:  # data files the user has to provide
        sys.stderr.write(f"{PROG}: error: {' '.join(str(e).split())}\n")
        return 2
    except OSError as e:  # the machine refused something not covered above (e.g. a file the library writes)
        sys.stderr.write(f"{PROG}: error: {' '.join(str(e).split()) or type(e).__name__}\n")
        return 1
    except _Terminated:
        sys.stderr.write(f"{PROG}: terminated\n")
        return 143
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
