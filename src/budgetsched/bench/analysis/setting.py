"""One setting of the report (task x optimizer x budget): choose, rank and resample.

The protocol is :mod:`budgetsched.bench.protocol.selection`'s, applied to the point estimate (row 0) and to every
resampled draw (rows 1..) of :class:`budgetsched.bench.analysis.stats.SeedDraws`: per schedule label the candidate
with the lowest mean validation metric (ties to the smaller LR, then patience), the plateau -> step merge for
Table 1, competition ranks of the test means, paired differences against the reference and against the best other
schedule (chosen by validation in every draw). See :mod:`budgetsched.bench.analysis.report` for the whole protocol.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from budgetsched.bench.analysis import evaluation, fair, headline, stats
from budgetsched.bench.analysis.report_model import Choice, Difference, Ranked, Setting
from budgetsched.bench.analysis.rows import patience_of, schedule_order, trial_values
from budgetsched.bench.protocol import selection
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.protocol.status import FINISHED

__all__ = ["Draws", "analyse_setting", "difference"]


@dataclass(frozen=True)
class Draws:
    """Per-setting draws (resamples only) that the study-level summaries reuse."""

    top1: dict[str, np.ndarray]  # Table-1 label -> bool per resample
    top3: dict[str, np.ndarray]
    rel_ref: np.ndarray | None  # subject vs reference, relative, per resample (None if not comparable)
    rel_best: np.ndarray | None


def _setting_stream(seed: int, task: str, opt: str, budget: float) -> np.random.Generator:
    return stats.rng_for(seed, "setting", task, opt, float(budget))


def analyse_setting(task: str, opt: str, budget: float, grows: list[TrialRow], labels: list[str],
                    ranked: list[str], reference: str | None, subject: str | None, opts: Mapping[str, Any],
                    evaluations: tuple[list[TrialRow], list[Mapping[str, Any]]] | None = None,
                    baseline: float | None = None) -> tuple[Setting, Draws]:
    """Choose, rank and resample one setting whose trials are ``grows``; ``evaluations``: the setting's
    evaluation-seed trials and their records (:mod:`budgetsched.bench.analysis.evaluation`), which Table 1 scores
    each choice on when they are complete for every row's current choice; ``baseline``: the task's trivial
    baseline, for the headline rule (:mod:`budgetsched.bench.analysis.headline`; None: not known here)."""
    by_label: dict[str, dict[tuple[float, int | None], dict[int, TrialRow]]] = {}
    grid: dict[str, set[float]] = {}
    for r in grows:
        grid.setdefault(r.label, set()).add(float(r.lr))
        if r.status in FINISHED:
            by_label.setdefault(r.label, {}).setdefault((float(r.lr), patience_of(r)), {})[r.seed] = r
    present = [x for x in labels if x in by_label]
    pos = {x: i for i, x in enumerate(present)}
    # one candidates x seeds array for the whole setting (every candidate shares the seed draws: paired), each
    # label's candidates contiguous and ordered by LR, then patience (the protocol's tie order)
    cands = selection.candidates(
        [((label, lr, pat), s, *trial_values(r))
         for label in present for (lr, pat), trials in by_label[label].items() for s, r in trials.items()],
        order=lambda k: (pos[k[0]], k[1], -1 if k[2] is None else k[2]))
    cand_keys, val, test = cands.keys, cands.val, cands.test

    n_seeds = len(cands.seeds)
    resampled = n_seeds >= 2
    draws = stats.SeedDraws(n_seeds, opts["resamples"], _setting_stream(opts["seed"], task, opt, budget),
                            opts["method"])
    mval = np.vstack([selection.seed_means(val)[None], draws.means(val, convex=True)])  # (1 + B, K); selection only
    mtest = np.vstack([selection.seed_means(test)[None], draws.means(test)])
    rows_idx = np.arange(mval.shape[0])

    # selection per label, in every draw (ties to the first: the smaller LR, then the smaller patience)
    sel_val: dict[str, np.ndarray] = {}
    sel_test: dict[str, np.ndarray] = {}
    results: dict[str, Choice] = {}
    start = 0
    for label in present:
        stop = start + len(by_label[label])
        pick = start + selection.choose(mval[:, start:stop])
        n_cands, start = stop - start, stop
        sel_val[label], sel_test[label] = mval[rows_idx, pick], mtest[rows_idx, pick]
        k0 = int(pick[0])
        _, lr, pat = cand_keys[k0]
        trials = by_label[label][(lr, pat)]
        tests = [v for v in test[k0] if not np.isnan(v)]
        mean = float(mtest[0, k0])
        std = math.nan if math.isinf(mean) else (statistics.stdev(tests) if len(tests) > 1 else 0.0)
        lo = hi = None
        if resampled and math.isfinite(mean):
            lo_, hi_ = stats.interval(sel_test[label][1:], opts["confidence"])
            lo, hi = float(lo_), float(hi_)
        stand = {r.stand_in for r in trials.values()}
        results[label] = Choice(label, lr, pat, float(mval[0, k0]), mean, std, len(tests), n_cands, lo=lo, hi=hi,
                                lr_grid=tuple(sorted(grid.get(label, ()))),
                                stand_in=next(iter(stand)) if len(stand) == 1 else None)

    # Table-1 competitors; in the paper's view step stands for the better of step and plateau *by validation*
    # (step on a tie), otherwise plateau is a competitor of its own
    comp_test: dict[str, np.ndarray] = {}
    comp_val: dict[str, np.ndarray] = {}
    comp_src: dict[str, str] = {}
    for label in ranked:
        if label == "step" and "plateau" in results and opts["plateau_into_step"]:
            if "step" in results:
                comp_val["step"], comp_test["step"], use_p = selection.merge_plateau(
                    sel_val["step"], sel_test["step"], sel_val["plateau"], sel_test["plateau"])
                comp_src["step"] = "plateau" if use_p[0] else "step"
            else:
                comp_test["step"], comp_val["step"] = sel_test["plateau"], sel_val["plateau"]
                comp_src["step"] = "plateau"
        elif label in results:
            comp_test[label], comp_val[label], comp_src[label] = sel_test[label], sel_val[label], label
    names = list(comp_test)
    top1: dict[str, np.ndarray] = {}
    top3: dict[str, np.ndarray] = {}
    ranking: dict[str, Ranked] = {}
    best = runner_up = None
    gap = None
    tied = None
    if names:
        C = np.stack([comp_test[x] for x in names], axis=1)  # (1 + B, R)
        ranks = selection.competition_ranks(C)
        for i, label in enumerate(names):
            top1[label], top3[label] = ranks[1:, i] == 1, ranks[1:, i] <= 3
            p1 = float(top1[label].mean()) if resampled else None
            p3 = float(top3[label].mean()) if resampled else None
            ranking[label] = Ranked(label, comp_src[label], float(C[0, i]), int(ranks[0, i]), p1, p3)
            src = comp_src[label]
            if label in results:
                results[label] = replace(results[label], rank=int(ranks[0, i]), p_top1=p1, p_top3=p3,
                                         ranked_as="plateau" if label == "step" and src == "plateau" else None)
        order = sorted(range(len(names)), key=lambda i: (ranks[0, i], C[0, i], i))
        best = names[order[0]]
        if len(names) > 1:
            runner_up = names[order[1]]
            gap = difference(runner_up, best, comp_test[runner_up], comp_test[best], n_seeds, opts)
            if resampled:  # both diverged: equal; only the runner-up diverged: clear
                tied = (True if math.isnan(gap.value) else False if math.isinf(gap.value)
                        else bool(gap.lo <= 0.0 <= gap.hi))

    vs_ref: dict[str, Difference] = {}
    if reference is not None and reference in results:
        for label in results:
            if label != reference:
                vs_ref[label] = difference(label, reference, sel_test[label], sel_test[reference], n_seeds, opts)
    vs_best = None
    rel_best = None
    if subject is not None and subject in comp_test and len(names) > 1:
        others = [x for x in names if x != subject]
        ov = np.stack([comp_val[x] for x in others], axis=1)
        ot = np.stack([comp_test[x] for x in others], axis=1)
        pick = selection.choose(ov)  # the best other schedule by validation, in every draw
        other_test = ot[rows_idx, pick]
        vs_best = difference(subject, others[int(pick[0])], comp_test[subject], other_test, n_seeds, opts)
        rel_best = _relative_draws(comp_test[subject], other_test)
    rel_ref = None
    if subject is not None and reference is not None and subject in results and reference in results \
            and subject != reference:
        rel_ref = _relative_draws(sel_test[subject], sel_test[reference])

    # Table 1 (analysis/fair.py): each finish credited once, a stand-in (constant's run) never a finish of its own,
    # each row scored apart from the runs that chose it (cross-fitted over seeds; one seed: same run, no claim)
    stand = [next((r.stand_in for r in by_label[k[0]][(k[1], k[2])].values() if r.stand_in), None) for k in cand_keys]
    test_eval, issues = None, ()
    if evaluations is not None:  # evaluation seeds, when every row's current choice has them all
        test_eval, issues = evaluation.evaluation_matrix(
            evaluation.Candidates(list(cand_keys), val, test, [int(x) for x in cands.seeds], stand, []),
            evaluations[0], evaluations[1], ranked, opts["plateau_into_step"])
    fair_ranking = fair.rank_setting(cand_keys, val, test, stand, ranked, merge=opts["plateau_into_step"],
                                     subject=subject if subject in ranked else None, test_eval=test_eval)
    if issues:
        fair_ranking = replace(fair_ranking, evaluation_issues=issues)
    # the headline rule: does the best row beat the task's trivial baseline by more than its own noise?
    noise = headline.noise_scores(fair_ranking, cand_keys, val, test, stand, merge=opts["plateau_into_step"])
    rule = headline.decide(task, opt, budget, noise, baseline, opts["confidence"])

    steps = {r.total_steps for r in grows}
    units = {r.budget_unit for r in grows}
    setting = Setting(task, opt, budget, "low" if budget < opts["low_limit"] else "high",
                      {k: results[k] for k in schedule_order(results)}, [x for x in labels if x not in results],
                      n_seeds, ranking, best, runner_up, gap, tied, vs_ref, vs_best,
                      total_steps=int(next(iter(steps))) if len(steps) == 1 and None not in steps else None,
                      budget_unit=next(iter(units)) if len(units) == 1 else None, fair=fair_ranking,
                      headline=rule)
    return setting, Draws(top1, top3, rel_ref, rel_best)


def difference(label: str, against: str, a: np.ndarray, b: np.ndarray, n_seeds: int,
               opts: Mapping[str, Any]) -> Difference:
    """Paired ``a - b`` (row 0 the point estimate, rows 1.. the draws) as a :class:`Difference`."""
    with np.errstate(invalid="ignore"):
        d = a - b
    value = float(d[0])
    lo = hi = None
    if n_seeds >= 2 and math.isfinite(value):
        lo_, hi_ = stats.interval(d[1:], opts["confidence"])
        lo, hi = float(lo_), float(hi_)
    rel = value / abs(float(b[0])) if math.isfinite(value) and math.isfinite(b[0]) and b[0] != 0 else None
    return Difference(label, against, value, lo, hi, rel, n_seeds)


def _relative_draws(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """(a - b) / |b at the point estimate| per resample (a fixed scale: dividing by b's own draw would make the
    ratio explode whenever a draw of b nears 0, as heavy-tailed draws at 2 seeds do); None when either side is not
    finite or b is 0 at the point estimate."""
    if not (np.isfinite(a[0]) and np.isfinite(b[0]) and b[0] != 0):
        return None
    with np.errstate(invalid="ignore"):
        return (a[1:] - b[1:]) / abs(float(b[0]))
