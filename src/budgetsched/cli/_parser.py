"""The ``budgetsched`` command's arguments (argparse; nothing here imports torch or reads a store)."""
from __future__ import annotations

import argparse

from budgetsched.bench.protocol.grid import BUDGET_UNITS
from budgetsched.cli._common import PROG, Parser
from budgetsched.cli._study import parse_workers

REPORT_FORMATS = ("rich", "md", "csv", "json")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (each command's function is looked up by name in :mod:`budgetsched.cli`)."""
    import budgetsched

    p = Parser(prog=PROG, description="Budget-aware learning-rate schedules and the REX paper's benchmark.")
    p.add_argument("--version", action="version", version=f"{PROG} {budgetsched.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,report,plot,advise,refine,export,schedules}")

    r = sub.add_parser("run", help="run (or resume) a study into a results store",
                       description="Run every trial of the grid not yet finished in STORE. Flags override the "
                                   "preset's or the config file's fields.")
    from budgetsched.bench.protocol.presets import available_presets

    r.add_argument("--preset", help=f"start from a preset: {', '.join(available_presets())} "
                                    "(see budgetsched.bench.protocol.presets)")
    r.add_argument("--config", help="start from a TOML study file (keys as in docs/studies.md)")
    r.add_argument("--task", help="task name(s), comma-separated, e.g. mnist1d-mlp,digits-mlp")
    r.add_argument("--schedules", help="schedule names, comma-separated; parameters as name:key=value")
    r.add_argument("--optimizers", help="sgdm, adam (L2 decay) and/or adamw (decoupled decay) (default: sgdm,adam)")
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
    r.add_argument("--refine", nargs="?", const="all", choices=("all", "edge"),
                   help="after the grid, add LRs around each schedule's best (x/÷ sqrt 3) and extend the grid "
                        "where the best sits at its edge; --refine edge only extends the grid at its edge")
    r.add_argument("--eval-seeds", metavar="N",
                   help="after the tuning grid, retrain each schedule's configuration chosen on validation on N "
                        "fresh seeds and score the choice on them (default 0: cross-fit over the tuning seeds)")
    r.add_argument("--store", required=True,
                   help="results store file (SQLite); rerunning resumes. A new store is made only in an existing "
                        "directory")
    r.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    r.add_argument("--workers", type=parse_workers, default=1,
                   help="parallel processes (default 1); 'auto': one 1-thread process per CPU core")
    r.add_argument("--engine", default="batched",
                   help="batched (default: trials of a group stacked where the task allows it), sequential or ray")
    r.add_argument("--ray-address", help="address of a running Ray cluster (engine ray)")
    r.add_argument("--gpus-per-chunk", type=float, metavar="X",
                   help="engine ray with a cuda device: the share of a GPU each chunk asks for, in (0, 1] (0.5: two "
                        "chunks per GPU; default 1)")
    r.add_argument("--chunk-size", type=int, default=64, help="trials per batched-engine call (default 64)")
    r.add_argument("--data-dir", help="directory holding the tasks' data files")
    r.add_argument("--cache-dir", help="directory for prepared data")
    r.add_argument("--quiet", action="store_true", help="no progress and no notes on stderr")
    r.add_argument("--anytime", action="store_true",
                   help="train the budgets of one (schedule, LR, seed) as one trunk and a branch per budget: the same "
                        "results, less compute for schedules that share a prefix (wsd, step, delay=); the others train as "
                        "usual; snapshots in STORE.anytime/")

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
    rp.add_argument("--plateau-into-step", action="store_true",
                    help="Table 1 in the paper's view: plateau merged into step (default: plateau its own row)")
    rp.add_argument("--figures", metavar="DIR", help="also write Figures 2, 2 (paired) and 3 (with 95 %% "
                                                     "intervals) to DIR; the md report links them")
    rp.add_argument("--all-settings", action="store_true",
                    help="count every setting in Table 1 and the study-level sections, also those the headline rule "
                         "sets apart (docs/tasks.md); the report says so")
    rp.add_argument("--lr-grid", choices=("all", "x3"), default="all",
                    help="the LRs read: all (default: every LR tried, refinement included) or x3 (the paper's grid "
                         "alone: LRs 1 or 3 times a power of ten); the report says which")

    pl = sub.add_parser("plot", help="Figures 2-3 (with 95 %% intervals, and schedule − reference paired) and "
                                     "LR/loss curves of a study")
    pl.add_argument("store", metavar="STORE")
    pl.add_argument("--out", required=True, help="output directory for the PNG files")
    pl.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                    help=f"resampling draws per setting for Figure 2's intervals (default {DEFAULT_RESAMPLES})")
    pl.add_argument("--seed", type=int, default=0, help="seed of the resampling draws (default 0)")
    pl.add_argument("--budgets", help="only these budgets, comma-separated percents (e.g. 5,25,100); Figure 3's "
                                      "panels default to the paper's 5 and 25 %%, else every budget run")
    pl.add_argument("--schedules", help="only these schedules, comma-separated labels as the report shows them")
    pl.add_argument("--curves", choices=("largest", "all"), default="largest",
                    help="LR / loss curves at each task's largest budget (default) or at every budget")

    ad = sub.add_parser("advise", help="which schedule and initial LR for a budget, from a study, with its "
                                       "uncertainty")
    ad.add_argument("store", metavar="STORE")
    how = ad.add_mutually_exclusive_group(required=True)
    how.add_argument("--budget", help="percent of the task's 100%% run, e.g. 30 or 30%%")
    how.add_argument("--epochs", type=float, help="a budget in epochs of the task")
    how.add_argument("--steps", type=int, help="a budget in optimizer steps")
    ad.add_argument("--task", help="only this task of the study")
    ad.add_argument("--optimizer", help="only this optimizer (sgdm or adam)")
    ad.add_argument("--format", default="text", choices=("text", "json"),
                    help="text (default: each pick with its evidence) or json")
    ad.add_argument("--evaluate", action="store_true",
                    help="also score the advisor by leave-one-budget-out on this study (slower)")

    rf = sub.add_parser("refine", help="add refined schedules built from a schedule's gradient norms, and run them")
    rf.add_argument("store", metavar="STORE")
    rf.add_argument("--from", dest="source", default="linear", help="the schedule whose runs give the norms "
                                                                    "(default linear)")
    rf.add_argument("--workers", type=parse_workers, default=1,
                    help="parallel processes (default 1); 'auto': one per CPU core")
    rf.add_argument("--data-dir", help="directory holding the tasks' data files")
    rf.add_argument("--quiet", action="store_true", help="no progress and no notes on stderr")

    ex = sub.add_parser("export", help="every trial's curves in another tool's format (TensorBoard), or the trial "
                                       "rows in one compressed file",
                        description="Write every trial of STORE as a TensorBoard run (scalars per optimizer step, "
                                    "hyperparameters and final results attached; view with "
                                    "'tensorboard --logdir DIR'), or its trial rows without curves to one "
                                    ".jsonl.gz file that report, plot and advise read like a store.")
    ex.add_argument("store", metavar="STORE")
    what = ex.add_mutually_exclusive_group(required=True)
    what.add_argument("--tensorboard", metavar="DIR", help="a new (or empty) directory for the runs")
    what.add_argument("--rows", metavar="FILE", help="a .jsonl.gz file for the trial rows without curves (e.g. "
                                                     "results/suite.jsonl.gz, small enough to commit)")

    sc = sub.add_parser("schedules", help="print every profile at a few progress points; --out writes Figure 1")
    sc.add_argument("--out", help="directory for Figure 1 (PNG and PDF)")
    sc.add_argument("--total-steps", type=int, default=1000, help="steps of the printed schedules (default 1000)")
    return p

