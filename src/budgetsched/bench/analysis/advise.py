"""The advisor: "I have budget X, what do I run?", answered from a study, with its uncertainty.

For a budget that was not in the grid, :func:`advise` takes the two neighbouring budgets of the study (same task
and optimizer), each schedule's probability of being the best there (the report's paired resampling,
:func:`budgetsched.bench.analysis.report.build_report`), and interpolates it linearly in log-budget; it recommends the
schedule with the highest interpolated probability and an initial LR interpolated on a log scale between that
schedule's chosen LRs at the two neighbours. It says when the store cannot support an answer: no budget on each
side (it does not extrapolate), or no clear winner (the best interpolated probability below one half, or both
neighbours tied within noise) - then it lists the contenders instead of pretending.

:func:`leave_one_budget_out` measures the advisor honestly: hide one interior budget of a study, advise for it from
the rest, and score the pick against the hidden budget's own result (Top-1 / Top-3), beside always picking REX and
always picking linear.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from budgetsched.bench.analysis.report import Setting, build_report
from budgetsched.bench.analysis.rows import setting_key, trial_rows
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.protocol import selection
from budgetsched.errors import UsageError

__all__ = ["Advice", "advise", "leave_one_budget_out", "CLEAR"]

#: Below this interpolated probability of being the best, the advice is "no clear winner".
CLEAR = 0.5


@dataclass
class Advice:
    """The answer for one task and optimizer at ``budget`` percent of the task's 100 % run."""

    task: str
    optimizer: str
    budget: float
    schedule: str | None  # None when the store cannot support an answer
    lr: float | None
    p_best: float | None  # interpolated probability that ``schedule`` is the best at this budget
    neighbours: tuple[float, float] | None
    probabilities: dict[str, float] = field(default_factory=dict)  # every schedule's interpolated P(Top-1)
    clear: bool = False
    note: str = ""

    def line(self) -> str:
        where = f"{self.task} / {self.optimizer} at {self.budget:g} %"
        if self.schedule is None:
            return f"{where}: no advice: {self.note}"
        others = ", ".join(f"{k} {v:.0%}" for k, v in sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:4])
        if sum(self.probabilities.values()) > 1.0 + 1e-9:  # e.g. plateau standing in for step ties with constant
            others += "; a tie for best counts for each tied schedule"
        verdict = "recommended" if self.clear else "no clear winner; the likeliest"
        return (f"{where}: {verdict}: {self.schedule} at initial LR {self.lr:.3g} "
                f"(P(best) {self.p_best:.0%}; interpolated between {self.neighbours[0]:g} % and "
                f"{self.neighbours[1]:g} %; P(best): {others}){' - ' + self.note if self.note else ''}")


def _settings(report: Any, task: str, optimizer: str) -> dict[float, Setting]:
    return {s.budget: s for s in report.settings if s.task == task and s.optimizer == optimizer}


def _p_top1(s: Setting) -> dict[str, float]:
    """P(Top-1) of every Table-1 competitor of a setting (step stands for the better of step and plateau)."""
    out = {}
    n_first = sum(r.rank == 1 for r in s.ranking.values())
    for label, r in s.ranking.items():
        c = s.results.get(label) or s.results.get(r.source)
        p = None if c is None else c.p_top1
        if p is None:  # one seed: the rank-1 schedule(s) share the probability
            p = 1.0 / n_first if r.rank == 1 else 0.0
        out[label] = float(p)
    return out


def _lr(s: Setting, label: str) -> float | None:
    src = s.ranking[label].source if label in s.ranking else label
    c = s.results.get(src)
    return None if c is None else c.lr


def advise_from_report(report: Any, budget: float, task: str, optimizer: str) -> Advice:
    """:func:`advise` on a report already built."""
    settings = _settings(report, task, optimizer)
    if not settings:
        raise UsageError(f"the study has no setting of task {task!r} with optimizer {optimizer!r}")
    budgets = sorted(settings)
    if budget in settings:
        lo = hi = budget
    else:
        below, above = [b for b in budgets if b < budget], [b for b in budgets if b > budget]
        if not below or not above:
            return Advice(task, optimizer, budget, None, None, None, None,
                          note=f"budget {budget:g} % is outside the study's budgets ({budgets[0]:g} to "
                               f"{budgets[-1]:g} %); run that budget rather than extrapolate")
        lo, hi = below[-1], above[0]
    w = 0.0 if lo == hi else (math.log(budget) - math.log(lo)) / (math.log(hi) - math.log(lo))
    p_lo, p_hi = _p_top1(settings[lo]), _p_top1(settings[hi])
    labels = sorted(set(p_lo) & set(p_hi))
    if not labels:
        return Advice(task, optimizer, budget, None, None, None, (lo, hi), note="no schedule ran at both neighbours")
    probs = {k: (1 - w) * p_lo[k] + w * p_hi[k] for k in labels}
    # the protocol's choice on the interpolated probabilities: the highest, ties to the first label
    best = labels[selection.choose_one([-probs[k] for k in labels])]
    lr_lo, lr_hi = _lr(settings[lo], best), _lr(settings[hi], best)
    lr = None if lr_lo is None or lr_hi is None else float(math.exp((1 - w) * math.log(lr_lo) + w * math.log(lr_hi)))
    tied = bool(settings[lo].tied) and bool(settings[hi].tied)
    clear = probs[best] >= CLEAR and not tied
    note = "" if clear else ("both neighbouring budgets are tied within noise" if tied else
                             f"no schedule is the best with probability >= {CLEAR:.0%}")
    return Advice(task, optimizer, budget, best, lr, probs[best], (lo, hi), probs, clear, note)


def advise(rows: Iterable[TrialRow | Mapping[str, Any]], budget: float, task: str | None = None,
           optimizer: str | None = None, *, resamples: int = 2000, seed: int = 0) -> list[Advice]:
    """Advice at ``budget`` percent for each (task, optimizer) of the study (or the one given).

    Raises:
        UsageError: a budget outside (0, 100], or a task / optimizer the study does not have.
    """
    if not (isinstance(budget, (int, float)) and 0 < budget <= 100):
        raise UsageError(f"budget must be a percent in (0, 100], got {budget!r}")
    report = build_report(rows, resamples=resamples, seed=seed)
    pairs = sorted({(s.task, s.optimizer) for s in report.settings})
    if task is not None:
        pairs = [p for p in pairs if p[0] == task] or _none("task", task, sorted({p[0] for p in pairs}))
    if optimizer is not None:
        pairs = [p for p in pairs if p[1] == optimizer] or _none("optimizer", optimizer,
                                                                  sorted({s.optimizer for s in report.settings}))
    return [advise_from_report(report, float(budget), t, o) for t, o in pairs]


def _none(what: str, value: str, valid: Sequence[str]) -> list:
    raise UsageError(f"the study has no {what} {value!r}; choose from {', '.join(valid)}")


def leave_one_budget_out(rows: Iterable[TrialRow | Mapping[str, Any]], *, resamples: int = 1000, seed: int = 0,
                         fixed: Sequence[str] = ("rex", "linear")) -> dict[str, Any]:
    """Score the advisor on the study's interior budgets: for each (task, optimizer, interior budget), advise from
    the study without that budget and check the pick's rank in that budget's own setting. Returns Top-1 / Top-3
    rates of the advisor and of always choosing each of ``fixed``, over the same held-out settings."""
    rows = trial_rows(rows)
    full = build_report(rows, resamples=resamples, seed=seed)
    cases = []
    for t, o in sorted({(s.task, s.optimizer) for s in full.settings}):
        settings = _settings(full, t, o)
        budgets = sorted(settings)
        for b in budgets[1:-1]:
            held = [r for r in rows if setting_key(r) != (t, o, b)]
            a = advise_from_report(build_report(held, resamples=resamples, seed=seed), b, t, o)
            ranking = settings[b].ranking
            rank = lambda k: ranking[k].rank if k in ranking else None  # noqa: E731
            cases.append({"task": t, "optimizer": o, "budget": b, "pick": a.schedule, "clear": a.clear,
                          "p_best": a.p_best, "rank": None if a.schedule is None else rank(a.schedule),
                          **{f"rank_{k}": rank(k) for k in fixed}})

    def rate(key: str, top: int) -> float | None:
        got = [c[key] for c in cases if c[key] is not None]
        return None if not cases else sum(r <= top for r in got) / len(cases)
    return {"cases": cases, "n": len(cases),
            "advisor": {"top1": rate("rank", 1), "top3": rate("rank", 3)},
            **{k: {"top1": rate(f"rank_{k}", 1), "top3": rate(f"rank_{k}", 3)} for k in fixed}}
