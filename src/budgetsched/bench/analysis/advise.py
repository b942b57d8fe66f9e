"""The advisor: "I have budget X, what do I run?", answered from a study, with the evidence behind it.

The answer rests on the report (:func:`budgetsched.bench.analysis.report.build_report`) and nothing else:

* **At a budget the study ran** the advice *is* the report's choice for that setting: the schedule Table 1 ranks
  first there (``Setting.fair``: each schedule scored apart from the runs that chose its LR, cross-fitted over
  seeds; :func:`budgetsched.bench.analysis.fair.rank_setting`) at the LR its validation chose over all seeds
  (``Setting.results[label].lr``, :mod:`budgetsched.bench.protocol.selection`). When the per-task table's lowest
  same-run mean is another schedule, the advice says so.
* **Between two budgets it ran** (``lo < X < hi``, same task and optimizer) it interpolates linearly in
  log-budget, ``w = (ln X - ln lo) / (ln hi - ln lo)``, each schedule's probability of being the best,
  ``P_X(k) = (1 - w) P_lo(k) + w P_hi(k)``, and recommends the highest. The initial LR is **log-interpolated**
  between that schedule's chosen LRs at the two budgets, ``lr = exp((1 - w) ln lr_lo + w ln lr_hi)``, and said to
  be so (with the nearest LR that was tried) unless both budgets chose the same LR, which was then tried.
* **Outside the budgets it ran** it gives no advice: it does not extrapolate.

``P(best)`` is a probability: per resampled draw of the seeds (the report's resampling, :class:`stats.SeedDraws`,
on the fair per-seed scores) the schedules tied for first share the draw's credit (``1/k`` each,
:func:`budgetsched.bench.analysis.fair.topk_credit`), so over the schedules it sums to 1. With one seed there is no
draw: the point ranking's credit (tied schedules share it) stands in and the advice says so.

The evidence of every answer (:class:`Evidence`, one per run budget it rests on): the budget in steps, each
schedule's mean validation metric at every LR tried (the table the choice was made on), its chosen LR and whether
that LR is at the edge of the tried grid (``↑`` largest / ``↓`` smallest, as the report marks it: the best LR may lie
outside), each schedule's ``P(best)`` and whether the first place is tied within noise. :meth:`Advice.text` shows
it; :meth:`Advice.to_json` gives it as data.

:func:`leave_one_budget_out` measures the advisor honestly: hide one interior budget of a study, advise for it from
the rest, and score the pick against the hidden budget's own ranking (Top-1 / Top-3), beside simple rules that see
the same rest (the study's best schedule, the winner at the nearest budget, the neighbouring budgets' best mean
place, always REX / linear) and the oracle that picks on the hidden budget's own validation, each with a
bootstrap interval and the paired difference advisor - rule (:mod:`budgetsched.bench.analysis.advisor_rules`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from budgetsched.bench.analysis import advisor_rules, aggregate, fair, stats
from budgetsched.bench.analysis.evaluation import tuning_rows
from budgetsched.bench.analysis.report import Report, Setting, build_report
from budgetsched.bench.analysis.report_model import LrPoint
from budgetsched.bench.analysis.rows import lr_points, setting_key, trial_rows
from budgetsched.bench.protocol import selection
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.errors import UsageError

__all__ = ["Advice", "Evidence", "advise", "advise_from_report", "leave_one_budget_out", "CLEAR"]

#: Below this probability of being the best, the advice is "no clear winner".
CLEAR = 0.5
_EDGE = {"high": "↑", "low": "↓", "only": " (only LR)"}


@dataclass(frozen=True)
class Evidence:
    """One budget of the study that an advice rests on."""

    budget: float
    total_steps: int | None
    first: str | None  # the report's choice: Table 1's first schedule in this setting
    lowest_mean: str | None  # the per-task table's lowest same-run mean (bold there)
    chosen_lr: dict[str, float]  # each schedule's LR chosen on validation
    lr_edge: dict[str, str | None]  # "high" / "low" / "only" / None, as Choice.lr_edge
    p_best: dict[str, float]  # P(best), ties sharing each draw's credit (sums to 1)
    tied: bool | None  # first place tied within noise (None: one seed)
    n_seeds: int
    evaluation: str  # how Table 1 scored the setting (cross-fit, same-run, ...)
    validation: dict[str, list[LrPoint]] = field(default_factory=dict)  # per schedule, the mean validation by LR


@dataclass
class Advice:
    """The answer for one task and optimizer at ``budget`` percent of the task's 100 % run."""

    task: str
    optimizer: str
    budget: float
    schedule: str | None  # None when the store cannot support an answer
    lr: float | None
    p_best: float | None  # ``schedule``'s probability of being the best at this budget
    neighbours: tuple[float, float] | None
    probabilities: dict[str, float] = field(default_factory=dict)  # every schedule's P(best), summing to 1
    clear: bool = False
    note: str = ""
    mode: str = "outside"  # "run" (a budget of the study), "interpolated" or "outside" (no advice)
    steps: int | None = None  # the optimizer steps the budget means
    steps_exact: bool = False  # False: estimated from the study's run lengths
    budget_unit: str | None = None
    lr_tried: bool = False  # the recommended LR was run at a neighbouring budget
    lr_note: str = ""
    warnings: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    metric: str = "metric"

    @property
    def where(self) -> str:
        length = ""
        if self.steps is not None:
            length = f" = {'' if self.steps_exact else '~'}{self.steps} steps of {self.task}"
        return f"{self.task} / {self.optimizer} at {self.budget:.4g} %{length}"

    def _probs(self) -> str:
        shown = sorted(self.probabilities.items(), key=lambda kv: -kv[1])
        one_seed = any(e.n_seeds < 2 for e in self.evidence)
        return (", ".join(f"{k} {v:.0%}" for k, v in shown) + "; ties share"
                + ("; one seed: the point ranking, not a probability" if one_seed else ""))

    def line(self) -> str:
        """The advice in one line (``text()`` adds the evidence)."""
        if self.schedule is None:
            return f"{self.where}: no advice: {self.note}"
        verdict = ("recommended" if self.clear else "no clear winner; the report's first" if self.mode == "run"
                   else "no clear winner; the likeliest")
        if self.mode == "run":
            how = (f"run in the study: the report's choice ({self.evidence[0].evaluation})" if self.evidence else
                   "run in the study: the report's choice")
        else:
            lo, hi = self.neighbours or (0.0, 0.0)
            how = f"interpolated between {lo:g} % and {hi:g} %, both run"
        lr = f"{self.lr:.3g}" + ("" if self.lr_tried else " (log-interpolated, not tried)")
        return (f"{self.where}: {verdict}: {self.schedule} at initial LR {lr}, {how}; P(best): {self._probs()}"
                + (f" - {self.note}" if self.note else ""))

    def text(self) -> str:
        """The advice with its evidence: the line, the LR's origin, warnings, and per run budget the mean validation
        metric of every schedule at every LR tried (``*`` the LR it chose)."""
        out = [self.line()]
        if self.schedule is None:
            return "\n".join(out)
        if self.lr_note:
            out.append(f"  LR: {self.lr_note}")
        out += [f"  warning: {w}" for w in self.warnings]
        for e in self.evidence:
            out += _evidence_table(e, self.metric)
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        """The advice and its evidence as JSON-ready data (no NaN or inf: a diverged mean is null)."""
        return {
            "task": self.task, "optimizer": self.optimizer, "budget": self.budget, "steps": self.steps,
            "steps_exact": self.steps_exact, "budget_unit": self.budget_unit, "mode": self.mode,
            "schedule": self.schedule, "lr": self.lr, "lr_tried": self.lr_tried, "lr_note": self.lr_note or None,
            "p_best": self.p_best, "probabilities": dict(self.probabilities), "clear": self.clear,
            "note": self.note or None, "neighbours": None if self.neighbours is None else list(self.neighbours),
            "warnings": list(self.warnings), "metric": self.metric,
            "evidence": [{
                "budget": e.budget, "total_steps": e.total_steps, "report_choice": e.first,
                "lowest_mean": e.lowest_mean, "chosen_lr": dict(e.chosen_lr), "lr_edge": dict(e.lr_edge),
                "p_best": dict(e.p_best), "tied_within_noise": e.tied, "n_seeds": e.n_seeds,
                "evaluation": e.evaluation,
                "validation": {k: [{"lr": p.lr, "patience": p.patience, "mean": _finite(p.mean), "n": p.n,
                                    "chosen": p.lr == e.chosen_lr.get(k)} for p in pts]
                               for k, pts in e.validation.items()},
            } for e in self.evidence],
        }


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _evidence_table(e: Evidence, metric: str) -> list[str]:
    steps = f" ({e.total_steps} steps)" if e.total_steps else ""
    head = (f"  at {e.budget:g} %{steps}: the report's choice {e.first}"
            + (f" (the lowest same-run mean, bold in the per-task table: {e.lowest_mean})"
               if e.lowest_mean not in (None, e.first) else "")
            + (", tied within noise" if e.tied else "") + "; P(best) "
            + ", ".join(f"{k} {v:.0%}" for k, v in sorted(e.p_best.items(), key=lambda kv: -kv[1]))
            + f"; validation {metric}, mean over seeds, by initial LR (* chosen; ↑ / ↓ the largest / smallest tried):")
    if not e.validation:
        return [head, "    (no per-LR table: the advice was given without the study's trials)"]
    lrs = sorted({p.lr for pts in e.validation.values() for p in pts})
    rows = [["schedule", *(f"{x:.2g}" for x in lrs)]]
    for label, pts in e.validation.items():
        by_lr = {p.lr: p for p in pts}
        cells = [label]
        for x in lrs:
            p = by_lr.get(x)
            if p is None:
                cells.append("—")
                continue
            cell = "diverged" if math.isinf(p.mean) else f"{p.mean:.3g}"
            if x == e.chosen_lr.get(label):
                cell += "*" + {"high": "↑", "low": "↓"}.get(e.lr_edge.get(label) or "", "")
            cells.append(cell)
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [head] + ["    " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows]


# ---------------------------------------------------------------------------------------------------------------
# the numbers


def p_best(s: Setting, report: Report) -> dict[str, float]:
    """Each Table-1 schedule's probability of being the best in setting ``s``, ties sharing a draw's credit.

    The fair per-seed scores of the setting (``s.fair.scores``, rows x seeds) are resampled with the report's seed
    draws (method and number of the report's; a stream of their own per setting); in each draw the rows with the
    lowest mean share 1 (:func:`fair.topk_credit`, k = 1); ``P(k)`` is the mean credit over the draws. With one
    seed the point ranking's credit stands in. Sums to 1 over the schedules with a result.
    """
    fr = s.fair
    if fr is None or not len(fr.labels):
        return {}
    present = ~np.isnan(fr.means)
    n_seeds = int((~np.isnan(fr.scores)).any(axis=0).sum())
    if n_seeds < 2:
        credit = fr.top1
    else:
        u = report.uncertainty
        draws = stats.SeedDraws(fr.scores.shape[1], u.get("resamples", stats.DEFAULT_RESAMPLES),
                                stats.rng_for(u.get("seed", 0), "advise", s.task, s.optimizer, s.budget),
                                u.get("method", "t"))
        means = draws.means(fr.scores)  # (draws, rows)
        credit = fair.topk_credit(np.where(present[None, :], means, np.nan), 1).mean(axis=0)
    return {label: float(credit[i]) for i, label in enumerate(fr.labels) if present[i]}


def _first(s: Setting) -> str | None:
    fr = s.fair
    if fr is not None and fr.best >= 0:
        return fr.labels[fr.best]
    return s.best


def _choice(s: Setting, label: str) -> Any:
    """The chosen candidate a Table-1 row stands for (in the paper's view step may stand for plateau's)."""
    src = s.ranking[label].source if label in s.ranking else label
    return s.results.get(src)


def _evidence(s: Setting, report: Report, points: Mapping[tuple[str, str, float], dict[str, list[LrPoint]]],
              probs: dict[str, float]) -> Evidence:
    chosen = {k: c.lr for k, c in s.results.items()}
    edges = {k: c.lr_edge for k, c in s.results.items()}
    fr = s.fair
    return Evidence(s.budget, s.total_steps, _first(s), s.best, chosen, edges, probs,
                    fr.tied if fr is not None else s.tied, s.n_seeds, fr.note if fr is not None else "",
                    dict(points.get((s.task, s.optimizer, s.budget), {})))


def _steps(settings: Mapping[float, Setting], budget: float) -> tuple[int | None, bool, str | None]:
    """(steps, exact, unit) of ``budget`` percent: a run budget's own length; otherwise from the 100 % run's length
    (``ceil(budget/100 x steps_100)``, as budgets in steps are counted), estimated from the longest run budget when
    100 % was not run or budgets are in epochs (rounded up to whole epochs)."""
    units = {s.budget_unit for s in settings.values() if s.budget_unit}
    unit = units.pop() if len(units) == 1 else None
    if budget in settings and settings[budget].total_steps:
        return settings[budget].total_steps, True, unit
    known = [(b, s.total_steps) for b, s in settings.items() if s.total_steps]
    if not known:
        return None, False, unit
    b_max, n_max = max(known)
    full = n_max * 100.0 / b_max
    steps = max(1, math.ceil(full * budget / 100.0 - 1e-9))
    return steps, b_max == 100.0 and unit == "steps", unit


def _edge_warnings(label: str, lr: float | None, evidence: Sequence[Evidence]) -> list[str]:
    out = []
    for e in evidence:
        edge = e.lr_edge.get(label)
        chosen = e.chosen_lr.get(label)
        if chosen is None or edge is None:
            continue
        if edge == "only":
            out.append(f"{label} was run at one LR ({chosen:.3g}) at {e.budget:g} %: no LR was chosen there")
        else:
            word, way = ("largest", "larger") if edge == "high" else ("smallest", "smaller")
            out.append(f"{label}'s LR {chosen:.3g}{_EDGE[edge]} at {e.budget:g} % is the {word} LR tried: the best LR "
                       f"may be {way} (run {label} with {way} LRs, or --refine, to know)")
    return out


def advise_from_report(report: Report, budget: float, task: str, optimizer: str,
                       rows: Iterable[TrialRow | Mapping[str, Any]] | None = None) -> Advice:
    """:func:`advise` on a report already built; ``rows`` (the same study's trials) add the per-LR validation
    tables to the evidence."""
    settings = {s.budget: s for s in report.settings if s.task == task and s.optimizer == optimizer}
    if not settings:
        raise UsageError(f"the study has no setting of task {task!r} with optimizer {optimizer!r}")
    points = lr_points(rows, "val") if rows is not None else {}
    metric = report.metric_names.get(task, "metric")
    steps, exact, unit = _steps(settings, budget)
    base = dict(steps=steps, steps_exact=exact, budget_unit=unit, metric=metric)
    budgets = sorted(settings)
    if budget in settings:
        s = settings[budget]
        probs = p_best(s, report)
        ev = _evidence(s, report, points, probs)
        best = ev.first
        c = None if best is None else _choice(s, best)
        if c is None:
            return Advice(task, optimizer, budget, None, None, None, None, mode="run",
                          note="no schedule has a finished trial at this budget", **base)
        clear = ev.tied is False and probs.get(best, 0.0) >= CLEAR
        note = "" if clear else ("first place is tied within noise" if ev.tied else "one seed: no interval"
                                 if ev.tied is None else f"P(best) below {CLEAR:.0%}")
        return Advice(task, optimizer, budget, best, c.lr, probs.get(best), (budget, budget), probs, clear, note,
                      "run", lr_tried=True, lr_note=f"chosen on validation at {budget:g} % (the report's choice)",
                      warnings=_edge_warnings(best, c.lr, [ev]), evidence=[ev], **base)
    below, above = [b for b in budgets if b < budget], [b for b in budgets if b > budget]
    if not below or not above:
        return Advice(task, optimizer, budget, None, None, None, None, mode="outside",
                      note=f"budget {budget:g} % is outside the study's budgets ({budgets[0]:g} to "
                           f"{budgets[-1]:g} %); run that budget rather than extrapolate", **base)
    lo, hi = below[-1], above[0]
    w = (math.log(budget) - math.log(lo)) / (math.log(hi) - math.log(lo))
    p_lo, p_hi = p_best(settings[lo], report), p_best(settings[hi], report)
    ev = [_evidence(settings[lo], report, points, p_lo), _evidence(settings[hi], report, points, p_hi)]
    labels = [k for k in p_lo if k in p_hi]
    if not labels:
        return Advice(task, optimizer, budget, None, None, None, (lo, hi), mode="interpolated",
                      note="no schedule ran at both neighbouring budgets", evidence=ev, **base)
    probs = {k: (1 - w) * p_lo[k] + w * p_hi[k] for k in labels}
    # the protocol's choice on the interpolated probabilities: the highest, ties to the first label
    best = labels[selection.choose_one([-probs[k] for k in labels])]
    c_lo, c_hi = _choice(settings[lo], best), _choice(settings[hi], best)
    lr = float(math.exp((1 - w) * math.log(c_lo.lr) + w * math.log(c_hi.lr)))
    tried = sorted(set(c_lo.lr_grid) | set(c_hi.lr_grid)) or [c_lo.lr, c_hi.lr]
    if c_lo.lr == c_hi.lr:
        lr, lr_tried = c_lo.lr, True
        lr_note = f"{best} chose {lr:.3g} at both {lo:g} % and {hi:g} %"
    else:
        nearest = min(tried, key=lambda x: abs(math.log(x / lr)))
        lr_tried = False
        lr_note = (f"log-interpolated between {c_lo.lr:.3g} (chosen at {lo:g} %) and {c_hi.lr:.3g} (chosen at "
                   f"{hi:g} %); never tried itself: the nearest LR tried is {nearest:.3g}")
    tied = bool(ev[0].tied) and bool(ev[1].tied)
    clear = probs[best] >= CLEAR and not tied
    note = "" if clear else ("both neighbouring budgets are tied within noise" if tied else
                             f"no schedule is the best with probability >= {CLEAR:.0%}")
    return Advice(task, optimizer, budget, best, lr, probs[best], (lo, hi), probs, clear, note, "interpolated",
                  lr_tried=lr_tried, lr_note=lr_note, warnings=_edge_warnings(best, lr, ev), evidence=ev, **base)


def advise(rows: Iterable[TrialRow | Mapping[str, Any]], budget: float, task: str | None = None,
           optimizer: str | None = None, *, resamples: int = 2000, seed: int = 0,
           evaluations: Iterable[Mapping[str, Any]] | None = None,
           planned: Iterable[TrialConfig] | None = None) -> list[Advice]:
    """Advice at ``budget`` percent for each (task, optimizer) of the study (or the one given), with its evidence.

    ``evaluations`` / ``planned``: the store's evaluation records and design (``Store.evaluations()``,
    ``Store.planned_configs()``) when ``rows`` hold its evaluation-seed trials too: the report then scores each choice
    on them as ``budgetsched report`` does (so the advice at a run budget is Table 1's first there), and the
    evidence's per-LR validation tables show the tuning trials alone.

    Raises:
        UsageError: a budget outside (0, 100], or a task / optimizer the study does not have.
    """
    if not (isinstance(budget, (int, float)) and 0 < budget <= 100):
        raise UsageError(f"budget must be a percent in (0, 100], got {budget!r}")
    rows = trial_rows(rows)
    records = list(evaluations or ())
    planned = None if planned is None else list(planned)
    report = build_report(rows, resamples=resamples, seed=seed, evaluations=records or None, planned=planned)
    if records:  # evaluation trials never enter a choice, nor the validation tables it was made on
        rows, _ = tuning_rows(rows, records, [c.key for c in planned or ()])
    pairs = sorted({(s.task, s.optimizer) for s in report.settings})
    if task is not None:
        pairs = [p for p in pairs if p[0] == task] or _none("task", task, sorted({p[0] for p in pairs}))
    if optimizer is not None:
        pairs = [p for p in pairs if p[1] == optimizer] or _none("optimizer", optimizer,
                                                                  sorted({s.optimizer for s in report.settings}))
    return [advise_from_report(report, float(budget), t, o, rows) for t, o in pairs]


def _none(what: str, value: str, valid: Sequence[str]) -> list:
    from budgetsched._checks import did_you_mean

    close = did_you_mean(value, valid)
    raise UsageError(f"the study has no {what} {value!r}" + (f" (did you mean {close!r}?)" if close else "")
                     + f"; choose from {', '.join(valid)}")


def without_setting(report: Report, key: tuple[str, str, float]) -> Report:
    """``report`` as if the study had never run setting ``key`` = (task, optimizer, budget).

    Every quantity the advisor and the rules read is made per setting from that setting's own trials, evaluation
    records and random stream (``stats.rng_for(seed, ..., task, optimizer, budget)``), so dropping the setting from
    the built report is the report rebuilt without its trials (tested against the rebuild), at no cost: the
    leave-one-budget-out scoring builds the study's report once instead of once per held-out case."""
    import dataclasses

    return dataclasses.replace(report, settings=[s for s in report.settings
                                                 if (s.task, s.optimizer, s.budget) != key])


def leave_one_budget_out(rows: Iterable[TrialRow | Mapping[str, Any]], *, resamples: int = 1000, seed: int = 0,
                         fixed: Sequence[str] = ("rex", "linear"),
                         evaluations: Iterable[Mapping[str, Any]] | None = None,
                         planned: Iterable[TrialConfig] | None = None,
                         bootstrap: int = aggregate.DEFAULT_RESAMPLES) -> advisor_rules.LeaveOneBudgetOut:
    """Score the advisor against simple rules on the study's interior budgets (:mod:`advisor_rules`).

    For each (task, optimizer, interior budget b), the setting is held out: the report of the study without its
    trials (tuning and evaluation; :func:`without_setting`), the advisor answers for b from that report, and so does
    every rule
    of :mod:`budgetsched.bench.analysis.advisor_rules` (the study's best schedule, the winner at the nearest budget,
    the best mean place at the neighbouring budgets, always each of ``fixed`` the study has; the oracle reads the
    held-out setting's validation). Each pick is scored by its Top-1 / Top-3 credit in the held-out setting's own
    Table-1 ranking (``Setting.fair`` of the full report). ``resamples`` / ``seed``: the reports' (the advisor's
    P(best)); ``evaluations`` / ``planned``: the store's evaluation records and design, so that Table 1 scores each
    choice on evaluation seeds as ``budgetsched report`` does; ``bootstrap``: the draws of the intervals
    (:func:`advisor_rules.summarise`, stratified by task, paired across rules).
    """
    rows = trial_rows(rows)
    records = list(evaluations or ())
    options: dict[str, Any] = dict(resamples=resamples, seed=seed, planned=None if planned is None else list(planned))
    full = build_report(rows, evaluations=records or None, **options)
    fixed = [k for k in fixed if k in full.ranked_labels]
    cases = []
    for t, o in sorted({(s.task, s.optimizer) for s in full.settings}):
        settings = {s.budget: s for s in full.settings if (s.task, s.optimizer) == (t, o)}
        for b in sorted(settings)[1:-1]:
            key = (t, o, b)
            rest = without_setting(full, key)
            a = advise_from_report(rest, b, t, o)
            cases.append(advisor_rules.score_case(settings[b], rest, a.schedule, fixed, advisor_clear=a.clear,
                                                  advisor_p_best=a.p_best))
    return advisor_rules.summarise(cases, resamples=bootstrap, seed=seed)
