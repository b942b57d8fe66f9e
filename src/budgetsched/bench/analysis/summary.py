"""Study-level parts of the report: Table 1, the per-budget comparison, budgets that are one run, missing trials.

Shares and per-budget means get nested 95 % intervals: each setting's own seed draws
(:mod:`budgetsched.bench.analysis.setting`), then Bayesian-bootstrap weights over the settings
(:func:`budgetsched.bench.analysis.stats.setting_weights`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from budgetsched.bench.analysis import aggregate, stats
from budgetsched.bench.analysis.report_model import (SPLITS, BudgetRow, Comparison, MissingTrial, SameRun, Setting,
                                                     Table1Cell)
from budgetsched.bench.analysis.rows import patience_of
from budgetsched.bench.analysis.setting import Draws
from budgetsched.bench.protocol.plan import counted_budget, same_run_key
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.protocol.status import FINISHED

__all__ = ["mark_same_runs", "missing_trials", "table1", "by_budget", "statistics", "task_baselines"]


def mark_same_runs(settings: list[Setting]) -> tuple[list[Setting], list[SameRun]]:
    """Budgets that are one run (:func:`budgetsched.bench.protocol.plan.same_run_key`: one task, optimizer and budget
    unit, equal ``total_steps``) are counted once, under :func:`~budgetsched.bench.protocol.plan.counted_budget`
    (the largest); the others get ``same_run_as`` (returned as new settings, in the same order)."""
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(settings):
        if s.total_steps is not None:
            groups.setdefault(same_run_key(s.task, s.optimizer, s.budget_unit, s.total_steps), []).append(i)
    full = {(s.task, s.optimizer): s.total_steps for s in settings if s.budget == 100.0 and s.total_steps}
    out = list(settings)
    same = []
    for (task, opt, _, steps), idx in groups.items():
        if len(idx) < 2:
            continue
        idx = sorted(idx, key=lambda i: settings[i].budget)
        keep = counted_budget(settings[i].budget for i in idx)
        for i in idx:
            if settings[i].budget != keep:
                out[i] = replace(settings[i], same_run_as=keep)
        real = full.get((task, opt))
        same.append(SameRun(task, opt, steps, tuple(settings[i].budget for i in idx), keep,
                            100.0 * steps / real if real else None, settings[idx[-1]].budget_unit))
    return out, same


def missing_trials(task: str, opt: str, budget: float, grows: list[TrialRow], labels: list[str],
                   planned: Iterable[tuple[str, float, int | None, int]] | None = None) -> list[MissingTrial]:
    """Trials of the setting with no finished result, and schedules absent altogether.

    The grid checked is ``planned`` - (label, LR, patience, seed) of every trial the study's design asks for in this
    setting - when the store recorded the design, plus the grid the rows imply: every label of the study x every LR
    (and, for plateau, LR and patience) that label has in the setting x every seed seen in the setting. LRs are per
    label because refinement gives each schedule (and patience) its own: a schedule never run at an LR that others
    ran is not a missing trial, but an LR or a seed the design planned and no row has is.
    """
    planned = list(planned or ())
    seeds = sorted({r.seed for r in grows} | {p[3] for p in planned})
    status = {(r.label, float(r.lr), patience_of(r), r.seed): r for r in grows}
    out = []
    for label in schedule_labels(labels, planned):
        have = [r for r in grows if r.label == label and r.status in FINISHED]
        mine = [p for p in planned if p[0] == label]
        if not have:
            failed = [r for r in grows if r.label == label]
            why = f"all {len(failed)} trial(s) failed" if failed else "not run"
            out.append(MissingTrial(task, opt, budget, label, None, None, None,
                                    f"schedule missing in this setting: {why}"))
            continue
        cands = sorted({(float(r.lr), patience_of(r) if label == "plateau" else None) for r in grows
                        if r.label == label} | {(lr, pat if label == "plateau" else None) for _, lr, pat, _ in mine},
                       key=lambda c: (c[0], c[1] or 0))
        for lr, pat in cands:
            for seed in seeds:
                r = status.get((label, lr, pat, seed))
                if r is not None and r.status in FINISHED:
                    continue
                reason = "not run" if r is None else f"failed: {r.error or 'no error message'}"
                out.append(MissingTrial(task, opt, budget, label, lr, pat, seed, reason))
    return out


def schedule_labels(labels: list[str], planned: list[tuple[str, float, int | None, int]]) -> list[str]:
    """The study's labels, then any label only the design has (in the design's order)."""
    extra = [p[0] for p in planned if p[0] not in labels]
    return list(labels) + list(dict.fromkeys(extra))


def _in_split(s: Setting, split: str) -> bool:
    return s.counted and (split == "overall" or s.split == split)


def table1(settings: list[Setting], draws: list[Draws], ranked: list[str],
           opts: Mapping[str, Any]) -> dict[str, dict[str, Table1Cell]]:
    """Table 1 with each finish credited once: :func:`budgetsched.bench.analysis.aggregate.table1` on the counted
    settings' fair rankings (:func:`budgetsched.bench.analysis.fair.rank_setting`): shares over a split's settings
    (Top-1 shares sum to 1), 95 % intervals from the bootstrap stratified by task (for these tasks; none with one
    seed), each row's median number of candidates. ``n_clear_top1``: Top-1 credit in settings not tied within
    noise (the runner-up - best interval of the fair ranking excludes 0)."""
    # a setting where no schedule has a result (every trial failed) is listed as missing, not counted
    counted = [s for s in settings if s.counted and s.fair is not None and not np.isnan(s.fair.means).all()]
    if not counted:
        return {x: {sp: Table1Cell(None, None, 0, 0, 0, 0) for sp in SPLITS} for x in ranked}
    cells = aggregate.table1([s.fair for s in counted], [s.task for s in counted], [s.budget for s in counted],
                             low_limit=opts["low_limit"], resamples=opts["resamples"], seed=opts["seed"],
                             confidence=opts["confidence"])
    out: dict[str, dict[str, Table1Cell]] = {}
    for j, label in enumerate(counted[0].fair.labels):
        out[label] = {}
        for split in SPLITS:
            c = cells[label][split]
            clear = sum(float(s.fair.top1[j]) for s in counted if _in_split(s, split) and s.fair.tied is False)
            none = c["n"] == 0  # no setting in the split: nothing to say about presence or candidates
            out[label][split] = Table1Cell(c["top1"], c["top3"], c["n"], c["n_top1"], c["n_top3"], clear,
                                           c["top1_ci"], c["top3_ci"], None if none else c["n_present"],
                                           None if none else c["n_candidates"])
    return out


def by_budget(settings: list[Setting], draws: list[Draws], reference: str | None, subject: str | None,
              opts: Mapping[str, Any]) -> list[BudgetRow]:
    """Per budget: the subject against the reference and against the best other schedule, across settings.

    ``mean_relative``: the plain mean over the budget's settings of (subject - other) / |other| (the denominator
    is the other schedule's point estimate in that setting, a fixed scale), with a nested
    95 % interval (each setting's paired draws, then Dirichlet weights over the settings). ``better`` / ``worse``:
    settings where the point estimate is below / above 0; ``clear_better`` / ``clear_worse``: settings whose own
    95 % interval lies below / above 0. Settings where either side diverged are counted in ``not_comparable``.
    """
    if subject is None:
        return []
    out = []
    for budget in sorted({s.budget for s in settings if s.counted}):
        idx = [i for i, s in enumerate(settings) if s.counted and s.budget == budget]
        vs_ref = None if reference is None else _compare(
            settings, draws, idx, budget, "vs_reference", lambda s: s.vs_reference.get(subject),
            lambda d: d.rel_ref, opts)
        vs_best = _compare(settings, draws, idx, budget, "vs_best_other", lambda s: s.vs_best_other,
                           lambda d: d.rel_best, opts)
        out.append(BudgetRow(budget, len(idx), vs_ref, vs_best))
    return out


def _compare(settings: list[Setting], draws: list[Draws], idx: list[int], budget: float, key: str,
             get_diff: Callable, get_rel: Callable, opts: Mapping[str, Any]) -> Comparison:
    diffs = [(i, get_diff(settings[i])) for i in idx]
    diffs = [(i, d) for i, d in diffs if d is not None]
    ok = [(i, d) for i, d in diffs if get_rel(draws[i]) is not None and d.relative is not None]
    mean_relative = ci = None
    if ok:
        mean_relative = float(np.mean([d.relative for _, d in ok]))
        rel = np.stack([get_rel(draws[i]) for i, _ in ok], axis=1)  # (B, n)
        w = stats.setting_weights(stats.rng_for(opts["seed"], "by_budget", key, budget), opts["resamples"], len(ok))
        lo, hi = stats.interval((w * rel).sum(axis=1), opts["confidence"])
        if any(settings[i].n_seeds >= 2 for i, _ in ok) or len(ok) > 1:
            ci = (float(lo), float(hi))
    clear = [_verdict(settings[i], d) if key == "vs_best_other" else d.clear for i, d in ok]
    return Comparison(len(ok), len(diffs) - len(ok), sum(d.value < 0 for _, d in ok), sum(d.value > 0 for _, d in ok),
                      clear.count("better"), clear.count("worse"),
                      mean_relative, ci, tuple(sorted({d.against for _, d in ok})))


def _verdict(s: Setting, d: Any) -> str | None:
    """The subject against the best other schedule: the fair verdict (next-seed cross-fitted, paired Student-t
    interval: :func:`budgetsched.bench.analysis.fair.rank_setting`; at the nominal 2.5 % per side under the null)
    where the setting has one, else the draws' (:attr:`Difference.clear`)."""
    if s.fair is not None and s.fair.vs_best_other is not None:
        return s.fair.vs_best_other[3]
    return d.clear


def statistics(settings: list[Setting], subject: str | None, opts: Mapping[str, Any],
               baselines: Mapping[str, float | None] | None = None) -> dict[str, Any]:
    """Study-level statistics of Table 1's scores (:func:`budgetsched.bench.analysis.aggregate.study_statistics`):
    normalised mean and IQM per schedule and the subject's probability of improvement per budget regime, with
    intervals for these tasks. Each task's trivial baseline comes from ``baselines`` (default: the task registry,
    :func:`task_baselines`); a task without one, or whose data cannot be loaded here, is normalised to the best."""
    counted = [s for s in settings if s.counted and s.fair is not None and not np.isnan(s.fair.means).all()]
    if not counted:
        return {}
    tasks = [s.task for s in counted]
    base = task_baselines(set(tasks), baselines)
    return aggregate.study_statistics([s.fair for s in counted], tasks, [s.budget for s in counted],
                                      {t: base[t] for t in set(tasks)}, subject, low_limit=opts["low_limit"],
                                      resamples=opts["resamples"], seed=opts["seed"], confidence=opts["confidence"])


def task_baselines(tasks: Iterable[str], given: Mapping[str, float | None] | None = None) -> dict[str, float | None]:
    """Each task's trivial baseline: ``given[task]`` when given, else the task registry's (``Task.baseline``,
    computed from its data); None when neither knows one."""
    given = dict(given or {})
    return {t: given[t] if t in given else _baseline(t) for t in tasks}


_BASELINES: dict[str, float | None] = {}


def _baseline(task: str) -> float | None:
    """The task's trivial baseline (cached per process); None when the task is unknown here or its data is not."""
    if task not in _BASELINES:
        try:  # the registry is optional here, as for metric names: rows of unknown tasks still get a report
            from budgetsched.bench.tasks.registry import get_task, task_baseline

            _BASELINES[task] = task_baseline(get_task(task))
        except Exception:
            _BASELINES[task] = None
    return _BASELINES[task]
