"""Study report: the REX paper's Table 1 and its per-task tables (Tables 4-9), with their uncertainty, from the rows
of a results store.

Protocol (REX paper, section 5 and Table 1; ``docs/architecture.md``):

* A *setting* is one task x optimizer x budget. Within it, each schedule label has *candidates*: its initial LRs
  (and, for ``plateau``, its patience values).
* **Selection by validation.** A candidate's score is the mean final *validation* metric over its seeds (lower is
  better). A ``diverged`` trial scores +inf (so does a candidate with any diverged seed); a ``failed`` trial is
  *missing* (left out of the mean, listed in ``Report.missing``), never a loss. The candidate with the lowest score
  is chosen; equal scores go to the smaller LR, then the smaller patience (never to the better test metric).
* **Reported value.** The *test* metric of the chosen candidate over its seeds: mean and *sample* standard
  deviation (``ddof=1``) when it has n > 1 seeds (n = 1: no spread, shown as ``n=1``). If the chosen candidate
  diverged (every candidate did), the schedule's result is +inf ("diverged"): it ranks last and counts.
* **Plateau** is a Table-1 row of its own by default (every schedule on its own candidates). The paper's view,
  ``plateau_into_step=True``: the ``step`` row stands for whichever of step's and plateau's chosen results has the
  lower *validation* mean (step on a tie, :func:`budgetsched.bench.protocol.selection.merge_plateau`) and plateau is
  not ranked on its own. The per-task tables always show plateau as its own row, as the paper's Tables 4-9 do. A
  plateau trial whose patience can never trigger within its budget reuses the constant trial of the same LR and seed
  (row field ``stand_in == "constant"``); it is labelled so, and in Table 1 it is constant's run: never a finish of
  plateau's (or of step's).
* **Ranking per setting** (``Setting.ranking``, the per-task tables): the Table-1 schedules ranked by that mean test
  metric with *competition ranking*: tied schedules share a rank and the next is skipped (1, 1, 3). Two means tie
  when they differ by at most 1e-9 relative.
* **Table 1** (fair by construction, :mod:`budgetsched.bench.analysis.fair`, ``Setting.fair``): each schedule is
  scored apart from the runs that chose its configuration - cross-fitted over seeds (the LR for seed s chosen on
  the other seeds' validation, scored on seed s's test); with one seed, the same run, and the report makes no
  fairness claim - and each finish is credited once: a place tied between k schedules counts 1/k for each, a
  stand-in earns none. Per schedule, the share of settings where it is Top-1 and Top-3, split into low budgets
  (``budget < low_limit``, 25 % by default), high budgets and overall; the denominator is the split's settings
  (the same for every schedule, so the Top-1 shares sum to 1), with the settings where a schedule has a result of
  its own and the candidates it chose among; 95 % intervals from a bootstrap stratified by task
  (:func:`budgetsched.bench.analysis.aggregate.table1`). Two budgets of one task and optimizer whose runs have the same ``total_steps`` are one run: Table 1 counts that
  setting once, under the largest of those budgets (rounding is upward, so it is the closest to the real length),
  and the report says so.
* **The headline rule** (docs/tasks.md; :mod:`budgetsched.bench.analysis.headline`, ``Setting.headline``): Table 1,
  the per-budget comparison and the study-level statistics count a setting only if its best schedule (rank 1 of
  its fair ranking) beats the task's trivial baseline by more than its own noise: the 95 % Student-t interval of
  ``baseline - score`` over its evaluation seeds (without them: its next-seed cross-fitted tuning-seed scores)
  lies above 0. A setting with one score cannot pass (no noise measured); a task with no baseline known here is
  counted and named. The others are listed apart (``Report.set_apart_settings()``); ``all_settings=True`` counts
  every setting, the view before the rule.
* **Off-plan trials** (``Report.off_plan``): finished trials whose scheduler reached another position than planned
  (a ``@trainable`` loop that stepped it too few or too many times; ``TrialRow.scheduler_steps``). They stay in the
  tables and are listed, so that their results are read with that in mind. (One that never stepped is failed.)
* **Missing trials** (``Report.missing``): per setting, every (schedule, LR, patience, seed) without a finished
  trial, over the grid the rows imply (each schedule's own LRs x the setting's seeds) and, when the store recorded
  the study's design (``Store.planned_configs()``, passed as ``planned``), every trial the design planned - a seed,
  LR or schedule that never got a row is reported missing.

Uncertainty (:mod:`budgetsched.bench.analysis.stats` explains the method and why): every setting is redrawn
``resamples`` times with paired seed weights (the same for every candidate of the setting); inside every draw the LR
(and patience) selection, the plateau-into-step merge and the ranking are redone. From the draws:

* each schedule's 95 % interval of its reported mean, and its probability of being Top-1 and Top-3;
* ``gap``: runner-up minus best of the setting (paired); the setting is *tied within noise* when its 95 % interval
  contains 0;
* ``vs_reference``: each schedule minus the reference schedule (``reference``, default ``linear``), paired;
* ``vs_best_other``: the subject schedule (``subject``, default ``rex``) minus the best other Table-1 schedule,
  the other one chosen *by validation* inside every draw (choosing it by test would pick the luckiest rival);
* Table 1 shares and the per-budget summaries across settings get 95 % intervals from nested draws: the seed draws
  of each setting, then Bayesian-bootstrap weights over the settings.

With one seed there is nothing to resample: probabilities and intervals are ``None`` and shown as ``n=1``.

Where each part lives: the selection rule in :mod:`budgetsched.bench.protocol.selection`; reading trials in
:mod:`.rows`; one setting in :mod:`.setting`; Table 1, the per-budget comparison, same runs and missing trials in
:mod:`.summary`; the report's records in :mod:`.report_model`. ``build_report`` (here) computes everything into a
:class:`Report`; the renderers of :mod:`budgetsched.bench.rendering` (``to_json``, ``to_markdown``, ``to_csv``,
``render_rich``, importable together with this module's names from ``budgetsched.bench.report``) only format it.
"""
from __future__ import annotations

import math
from typing import Any, Collection, Iterable, Mapping

from budgetsched.bench.analysis import stats
from budgetsched.bench.analysis.report_model import (SPLITS, BudgetRow, Choice, Comparison, Difference, LrPoint,
                                                     MissingTrial, OffPlan, Ranked, Report, SameRun, Setting,
                                                     Table1Cell)
from budgetsched.bench.analysis.rows import (lr_points, metric_name, metric_value, patience_of, schedule_order,
                                             setting_key, trial_rows)
from budgetsched.bench.analysis.evaluation import tuning_rows
from budgetsched.bench.analysis.setting import Draws, analyse_setting
from budgetsched.bench.analysis.summary import (by_budget, mark_same_runs, missing_trials, statistics, table1,
                                               task_baselines)
from budgetsched.bench.protocol.grid import LOW_BUDGET_LIMIT, OPTIMIZERS, TrialConfig
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.protocol.status import Status
from budgetsched.errors import UsageError

__all__ = ["Choice", "Ranked", "Difference", "Setting", "Report", "LrPoint", "Table1Cell", "Comparison", "BudgetRow",
           "MissingTrial", "SameRun", "OffPlan", "build_report", "schedule_order", "metric_name", "metric_value", "patience_of",
           "lr_points", "trial_rows", "planned_trials", "DEFAULT_REFERENCE", "DEFAULT_SUBJECT", "SPLITS"]

#: Reference schedule of the paired differences when the study has it (``--reference``).
DEFAULT_REFERENCE = "linear"
#: Schedule compared with the reference and with the best other schedule per budget (``--subject``).
DEFAULT_SUBJECT = "rex"


def _resolve(name: str | None, default: str, pool: list[str], what: str, hint: str = "") -> str | None:
    if name is None:
        return default if default in pool else None
    if name not in pool:
        raise UsageError(f"{what} {name!r} is not {hint or 'in the study'}; choose from "
                         f"{', '.join(pool) if pool else 'none (the study has no schedules)'}")
    return name


def planned_trials(configs: Iterable[TrialConfig]) -> dict[tuple[str, str, float], list[tuple]]:
    """The study's design per setting: (label, LR, patience, seed) of every planned trial, for
    :func:`build_report`'s ``planned``."""
    out: dict[tuple[str, str, float], list[tuple]] = {}
    for c in configs:
        pat = c.params.get("patience") if c.schedule == "plateau" else None
        out.setdefault((c.task, c.optimizer, float(c.budget)), []).append(
            (c.label, float(c.lr), None if pat is None else int(pat), int(c.seed)))
    return out


def build_report(rows: Iterable[TrialRow | Mapping[str, Any]], low_limit: float = LOW_BUDGET_LIMIT, *,
                 rank_labels: Collection[str] | None = None,
                 metric_names: Mapping[str, str] | None = None,
                 reference: str | None = None, subject: str | None = None,
                 resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0, method: str = "t",
                 planned: Iterable[TrialConfig] | None = None, plateau_into_step: bool = False,
                 evaluations: Iterable[Mapping[str, Any]] | None = None, all_settings: bool = False,
                 baselines: Mapping[str, float | None] | None = None) -> Report:
    """Select, aggregate, rank and resample the trials of a study (see the module docstring for the protocol).

    ``rows`` are the store's trials (``Store.trial_rows()``; mappings as ``Store.rows()`` gives them are decoded,
    :func:`trial_rows`). ``rank_labels`` restricts Table 1 to these schedule labels (default: all; with
    ``plateau_into_step`` - the paper's view - plateau merged into step). ``metric_names`` maps task -> metric name
    for the tables (default: from the task registry when the task is known). ``reference`` is the schedule every other one is
    compared with (default ``linear`` when the study has it); ``subject`` the schedule compared with the reference
    and with the best other schedule per budget (default ``rex`` when Table 1 has it). ``resamples`` draws per
    setting, ``seed`` their seed, ``method`` the seed-level resampling (:data:`stats.METHODS`). ``planned``: the
    trials of the study's design (``Store.planned_configs()``); in every setting with rows, a planned trial with no
    finished row is listed as missing, also when no row of its LR, seed or schedule exists. A planned budget with
    no row at all is not listed: it is the same run as a larger budget (trained and counted once, as the larger:
    :mod:`budgetsched.bench.protocol.plan`) or a study not run yet, and the rows cannot tell which.
    ``plateau_into_step``: Table 1 in the paper's view (plateau merged into step) or, the default, with plateau as
    its own row; either way each finish is credited once and scored apart from its choice.

    ``evaluations``: the store's evaluation records (``Store.evaluations()``): those trials are taken out of the
    selection and Table 1 scores each choice on them where they are complete and current
    (:mod:`budgetsched.bench.analysis.evaluation`); stale or missing ones are named and the setting cross-fitted.

    The headline rule (docs/tasks.md; :mod:`budgetsched.bench.analysis.headline`): a setting counts in Table 1, the
    per-budget comparison and the study-level statistics only if its best schedule beats the task's trivial
    baseline by more than its own noise (each ``Setting.headline`` says; ``Report.set_apart_settings()`` lists the
    others). ``baselines`` maps task -> baseline (default: ``Task.baseline`` from the registry; a task with none
    counts and is named). ``all_settings``: count every setting, the view before the rule (labelled so).

    Table-1 cells (``report.table1[label][split]``) are :class:`Table1Cell` s.
    """
    if not (isinstance(low_limit, (int, float)) and 0 < low_limit <= 100):
        raise UsageError(f"low_limit must be a budget percent in (0, 100], got {low_limit!r}")
    stats.check_options(method, resamples, seed)
    if not isinstance(plateau_into_step, bool):
        raise UsageError(f"plateau_into_step must be True or False, got {plateau_into_step!r}")
    if not isinstance(all_settings, bool):
        raise UsageError(f"all_settings must be True or False, got {all_settings!r}")
    for task, b in (baselines or {}).items():
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b)):
            raise UsageError(f"baselines[{task!r}] must be a finite number or None, got {b!r}")
    rows = trial_rows(rows)
    records = list(evaluations or ())
    erows: list[TrialRow] = []
    if records:  # evaluation trials never enter a choice (nor the tables of the tuning runs)
        planned = list(planned or ())
        rows, erows = tuning_rows(rows, records, {c.key for c in planned})
    labels = schedule_order({r.label for r in rows})
    merged = "plateau" if plateau_into_step else None  # the label that Table 1 folds into step
    if rank_labels is None:
        ranked = [x for x in labels if x != merged]
        if merged in labels and "step" not in ranked:
            ranked = schedule_order(ranked + ["step"])
    else:
        unknown = sorted(set(rank_labels) - set(labels) - {"step"})
        if unknown:
            raise UsageError(f"rank_labels {unknown} are not in the study; labels present: {', '.join(labels)}")
        ranked = schedule_order(x for x in rank_labels if x != merged)
    reference = _resolve(reference, DEFAULT_REFERENCE, labels, "reference schedule")
    subject = _resolve(subject, DEFAULT_SUBJECT, ranked, "subject schedule", "ranked in Table 1")
    opts = {"resamples": int(resamples), "seed": int(seed), "method": method, "confidence": stats.CONFIDENCE,
            "low_limit": float(low_limit), "plateau_into_step": plateau_into_step}
    design = planned_trials(planned or ())

    groups: dict[tuple[str, str, float], list[TrialRow]] = {}
    for r in rows:
        groups.setdefault(setting_key(r), []).append(r)
    opt_pos = {o: i for i, o in enumerate(OPTIMIZERS)}
    order = lambda k: (k[0], opt_pos.get(k[1], len(opt_pos)), k[1], k[2])  # noqa: E731
    keys = sorted(groups, key=order)
    base = task_baselines({k[0] for k in keys}, baselines)  # the headline rule's trivial baselines

    settings: list[Setting] = []
    draws: list[Draws] = []
    missing: list[MissingTrial] = []
    for task, opt, budget in keys:
        grows = groups[(task, opt, budget)]
        ev = None
        if records:
            mine = [r for r in erows if setting_key(r) == (task, opt, budget)]
            ev = (mine, [x for x in records
                         if (x["task"], x["optimizer"], float(x["budget"])) == (task, opt, budget)])
        s, d = analyse_setting(task, opt, budget, grows, labels, ranked, reference, subject, opts, ev, base[task])
        settings.append(s)
        draws.append(d)
        missing.extend(missing_trials(task, opt, budget, grows, labels, design.get((task, opt, budget))))
    settings, duplicates = mark_same_runs(settings)
    # the headline: Table 1, the per-budget comparison and the statistics count what the rule keeps (or everything)
    pool = [i for i, s in enumerate(settings) if all_settings or not s.set_apart]
    head, head_draws = [settings[i] for i in pool], [draws[i] for i in pool]

    names = dict(metric_names or {})
    for task in {s.task for s in settings}:
        names.setdefault(task, metric_name(task))
    counts = {s: sum(r.status is s for r in rows) for s in Status}
    uncertainty = {"method": method, "resamples": int(resamples), "seed": int(seed), "confidence": stats.CONFIDENCE,
                   "seeds_per_setting": sorted({s.n_seeds for s in settings})}
    return Report(settings, table1(head, head_draws, ranked, opts), labels, ranked, missing, len(rows),
                  counts[Status.DONE], counts[Status.DIVERGED], counts[Status.FAILED], float(low_limit), names,
                  reference, subject, uncertainty, by_budget(head, head_draws, reference, subject, opts), duplicates,
                  plateau_into_step, statistics(head, subject, opts, base),
                  [OffPlan(r.task, r.optimizer, float(r.budget), r.label, float(r.lr), r.seed, r.scheduler_steps,
                           r.total_steps) for r in rows if r.scheduler_steps is not None and r.finished],
                  all_settings)
