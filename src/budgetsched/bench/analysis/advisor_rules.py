"""Does the advisor beat simple rules? Leave-one-budget-out scoring of the advisor and of the rules a user could
follow without it, on the same held-out cases, with intervals.

**The protocol** (:func:`budgetsched.bench.analysis.advise.leave_one_budget_out` drives it). A *case* is one
(task, optimizer, budget b) of the study with b an interior budget of that task and optimizer (a smaller and a larger
one were run). The case's setting is *held out*: its trials, tuning and evaluation, are removed and the report is
rebuilt from the rest (``rest``). Every rule picks one schedule from ``rest`` alone (:func:`score_case` refuses a
``rest`` that still holds the setting); the oracle alone reads the held-out setting, and only its validation. The
pick is scored in the held-out setting's own Table-1 ranking (``Setting.fair`` of the full report: each schedule's
fair per-seed scores, cross-fitted over the tuning seeds or on evaluation seeds).

**The rules** (:data:`RULES` names them, in the table's order):

* ``advisor``: :func:`budgetsched.bench.analysis.advise.advise_from_report` on ``rest`` at b (each schedule's
  P(best) interpolated in log-budget between the nearest run budgets below and above b; the highest).
* ``study's best`` (:func:`study_best`): the schedule with the lowest mean *position* over every counted setting
  of ``rest``, all tasks and optimizers (a budget that is the same run as a larger one counts once, as in Table 1).
* ``nearest budget`` (:func:`nearest_budget`): the first place at the budget b' of the same task and optimizer in
  ``rest`` nearest to b in log distance ``|ln b' - ln b|``; equally near budgets: the smaller.
* ``neighbour budgets`` (:func:`neighbour_budgets`): the lowest mean position over the nearest budget below b and
  the nearest above (one of them when b is outside ``rest``'s budgets).
* ``oracle (validation)`` (:func:`oracle`): what a user with the held-out setting's own tuning runs picks: the
  Table-1 row whose configuration chosen on validation has the lowest mean validation metric
  (``Choice.val_mean``: the report's choice, over all tuning seeds). It is not a rule for an unseen budget (it
  needs that budget's runs); it is the *noise ceiling*: it misses the first place exactly when the choice on
  validation disagrees with the ranking on test / evaluation seeds, so its Top-1 says how well any rule can do
  against a target this noisy.
* ``always X`` for each fixed schedule X of the study (REX and linear by default).

A schedule's *position* in one setting is its average rank among the rows with a result,
``scipy.stats.rankdata(means, method="average")`` of the fair means (tied rows share the places they occupy; a
diverged row is +inf, last); a row with no result in a setting takes the place after the last one there
(``present + 1``). Every rule breaks an exact tie of mean positions (or, for the oracle, of validation) by taking
the alphabetically first schedule label: a rule fixed before the data, not the display order.

**The score** of a pick in a case: its Top-k credit in the held-out ranking (:func:`budgetsched.bench.analysis.fair.
topk_credit`, ``Setting.fair.top1`` / ``top3``): 1 when it alone is within the first k places, ``1/g`` when it is
tied with g rows for the last of them, 0 when it is outside, has no result there or the rule gave no pick (the
advisor outside the run budgets). A rule's Top-k is the mean credit over the cases; under the null (every schedule
alike) every rule's Top-1 is ``1/k`` in expectation, k the schedules ranked.

**The intervals** (:func:`summarise`): a percentile bootstrap over the cases, stratified by task
(:func:`budgetsched.bench.analysis.aggregate.stratified_draws`, :func:`~budgetsched.bench.analysis.aggregate.
interval`, as Table 1's): each draw resamples, with replacement, as many cases of each task as it has, and the same
draw scores every rule, so ``advisor - rule`` is a *paired* difference over the same cases. Why this and not a
Wilson interval per proportion: the cases of one task share a model, its data and its noise (a held-out budget is
the neighbour the next case is advised from), so they are not independent Bernoulli trials of one rate, and two
separate Wilson intervals cannot say whether the advisor beats a rule on the *same* cases, which the paired
difference does (a rule that agrees with the advisor in most cases has a narrow difference however wide each
rate's own interval is). Stratifying fixes each task's share of the cases, so the interval is *for these tasks*: how
the answer would move with other budgets of these tasks, not with other tasks. Read it with n: within a task the
cases are resampled as if independent, so with a few cases per task the interval is optimistic, and a rate of 0 or
100 % in every draw (a rule right in every case) gets a zero-width interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import stats as st

from budgetsched.bench.analysis import aggregate, stats
from budgetsched.bench.analysis.report_model import Report, Setting

__all__ = ["ADVISOR", "STUDY_BEST", "NEAREST", "NEIGHBOURS", "ORACLE", "RULES", "always", "positions",
           "study_best", "nearest_budget", "neighbour_budgets", "oracle", "credit", "rank", "Case", "RuleScore",
           "LeaveOneBudgetOut", "score_case", "summarise"]

ADVISOR = "advisor"
STUDY_BEST = "study's best"
NEAREST = "nearest budget"
NEIGHBOURS = "neighbour budgets"
ORACLE = "oracle (validation)"
#: The rules of every case, in the table's order (then ``always X`` for each fixed schedule).
RULES = (ADVISOR, STUDY_BEST, NEAREST, NEIGHBOURS, ORACLE)


def always(label: str) -> str:
    """The name of the rule "always pick ``label``"."""
    return f"always {label}"


# ---------------------------------------------------------------------------------------------------------------
# the rules: each reads a report without the held-out setting (the oracle: the held-out setting's validation only)


def positions(s: Setting) -> dict[str, float]:
    """Each Table-1 row's position in setting ``s``: its average rank (1 = first) among the rows with a result,
    ``scipy.stats.rankdata(means, method="average")`` of the fair means (ties share their places; +inf, a diverged
    row, is last). Rows without a result are absent."""
    fr = s.fair
    if fr is not None:
        pairs = [(label, float(m)) for label, m in zip(fr.labels, fr.means) if not math.isnan(m)]
    else:  # a setting ranked without the fair scores: its Table-1 means
        pairs = [(label, r.mean) for label, r in s.ranking.items() if not math.isnan(r.mean)]
    if not pairs:
        return {}
    ranks = st.rankdata([m for _, m in pairs], method="average")
    return {label: float(r) for (label, _), r in zip(pairs, ranks)}


def _lowest(score: dict[str, float], digits: int | None = 9) -> str | None:
    """The label with the lowest score; exact ties to the alphabetically first (scores rounded to ``digits``
    decimals first, so that mean positions equal but for float sums tie)."""
    if not score:
        return None
    return min(score, key=lambda k: (score[k] if digits is None else round(score[k], digits), k))


def _best_mean_position(settings: Iterable[Setting]) -> str | None:
    """The lowest mean position over ``settings`` (a row absent from a setting takes place ``present + 1`` there)."""
    table = [p for p in (positions(s) for s in settings) if p]
    labels = sorted({k for p in table for k in p})
    return _lowest({k: sum(p.get(k, len(p) + 1.0) for p in table) / len(table) for k in labels})


def _others(rest: Report, task: str, optimizer: str) -> dict[float, Setting]:
    """The settings of ``task`` / ``optimizer`` in ``rest`` that rank at least one schedule, by budget."""
    return {s.budget: s for s in rest.settings if (s.task, s.optimizer) == (task, optimizer) and positions(s)}


def study_best(rest: Report) -> str | None:
    """The schedule with the lowest mean position over every counted setting of ``rest`` (all tasks and
    optimizers); ties to the alphabetically first."""
    return _best_mean_position(s for s in rest.settings if s.counted)


def nearest_budget(rest: Report, task: str, optimizer: str, budget: float) -> str | None:
    """The first place (lowest position; ties alphabetical) at the budget of ``task`` / ``optimizer`` in ``rest``
    nearest to ``budget`` in log distance ``|ln b' - ln budget|``; two equally near budgets: the smaller."""
    got = _others(rest, task, optimizer)
    if not got:
        return None
    near = min(got, key=lambda b: (round(abs(math.log(b) - math.log(budget)), 12), b))
    return _best_mean_position([got[near]])


def neighbour_budgets(rest: Report, task: str, optimizer: str, budget: float) -> str | None:
    """The lowest mean position over the nearest budget of ``task`` / ``optimizer`` in ``rest`` below ``budget``
    and the nearest above (only one when ``budget`` lies outside them); ties alphabetical."""
    got = _others(rest, task, optimizer)
    below, above = [b for b in got if b < budget], [b for b in got if b > budget]
    sides = ([max(below)] if below else []) + ([min(above)] if above else [])
    return _best_mean_position(got[b] for b in sides)


def _choice(s: Setting, label: str) -> Any:
    """The chosen candidate a Table-1 row stands for (in the paper's view step may stand for plateau's)."""
    src = s.ranking[label].source if label in s.ranking else label
    return s.results.get(src)


def oracle(held_out: Setting) -> str | None:
    """The pick of a user with the held-out setting's own tuning runs: among its Table-1 rows with a result, the
    one whose chosen configuration has the lowest mean validation metric (``Choice.val_mean``, +inf diverged);
    ties alphabetical. Reads the setting's validation only, never its test or evaluation scores."""
    rows = positions(held_out)
    vals = {k: c.val_mean for k in rows if (c := _choice(held_out, k)) is not None and not math.isnan(c.val_mean)}
    return _lowest(vals, None)


# ---------------------------------------------------------------------------------------------------------------
# the score of a pick in the held-out setting


def credit(s: Setting, pick: str | None, k: int) -> float:
    """Top-``k`` credit of ``pick`` in setting ``s``'s Table-1 ranking (ties share it; 0 for no pick or no result
    there). ``k`` is 1 or 3, the places Table 1 credits."""
    if k not in (1, 3):
        raise ValueError(f"k must be 1 or 3 (Table 1's Top-1 / Top-3), got {k!r}")
    if pick is None:
        return 0.0
    fr = s.fair
    if fr is not None:
        if pick not in fr.labels:
            return 0.0
        return float((fr.top1 if k == 1 else fr.top3)[fr.labels.index(pick)])
    r = s.ranking.get(pick)
    return float(r is not None and r.rank <= k)


def rank(s: Setting, pick: str | None) -> int | None:
    """``pick``'s competition rank in setting ``s``'s Table-1 ranking (None: no pick or no result there)."""
    if pick is None:
        return None
    fr = s.fair
    if fr is not None:
        if pick not in fr.labels:
            return None
        return int(fr.ranks[fr.labels.index(pick)]) or None  # rank 0: no result there
    return s.ranking[pick].rank if pick in s.ranking else None


@dataclass(frozen=True)
class Case:
    """One held-out setting: each rule's pick, its Top-1 / Top-3 credit and its rank in the held-out ranking."""

    task: str
    optimizer: str
    budget: float
    picks: dict[str, str | None]
    top1: dict[str, float]
    top3: dict[str, float]
    ranks: dict[str, int | None]
    advisor_clear: bool = False  # the advisor called its pick clear
    advisor_p_best: float | None = None


def score_case(held_out: Setting, rest: Report, advisor_pick: str | None, fixed: Sequence[str] = (),
               *, advisor_clear: bool = False, advisor_p_best: float | None = None) -> Case:
    """Every rule's pick for the held-out setting ``held_out`` (of the full report), each from ``rest`` (the
    report without it; the oracle from ``held_out``'s validation), scored in ``held_out``'s ranking.

    Raises:
        ValueError: ``rest`` still holds the held-out setting (its picks would see the answer).
    """
    key = (held_out.task, held_out.optimizer, held_out.budget)
    if any((s.task, s.optimizer, s.budget) == key for s in rest.settings):
        raise ValueError(f"the report the rules read still holds the held-out setting {key}")
    t, o, b = key
    picks: dict[str, str | None] = {
        ADVISOR: advisor_pick, STUDY_BEST: study_best(rest), NEAREST: nearest_budget(rest, t, o, b),
        NEIGHBOURS: neighbour_budgets(rest, t, o, b), ORACLE: oracle(held_out),
        **{always(x): x for x in fixed}}
    return Case(t, o, b, picks, {r: credit(held_out, p, 1) for r, p in picks.items()},
                {r: credit(held_out, p, 3) for r, p in picks.items()},
                {r: rank(held_out, p) for r, p in picks.items()}, advisor_clear, advisor_p_best)


# ---------------------------------------------------------------------------------------------------------------
# the table


Interval = tuple[float, float]


@dataclass(frozen=True)
class RuleScore:
    """One rule over the cases: Top-1 / Top-3 (mean credit) with their intervals, and the paired difference
    ``advisor - rule`` of Top-1 with its interval (None for the advisor itself and without cases)."""

    rule: str
    top1: float | None
    top1_ci: Interval | None
    top3: float | None
    top3_ci: Interval | None
    advisor_minus_top1: float | None
    advisor_minus_top1_ci: Interval | None
    n: int  # cases
    n_picked: int  # cases where the rule gave a pick (the advisor gives none outside the run budgets)

    def to_json(self) -> dict[str, Any]:
        ci = lambda c: None if c is None else [float(c[0]), float(c[1])]  # noqa: E731
        return {"rule": self.rule, "top1": self.top1, "top1_ci": ci(self.top1_ci), "top3": self.top3,
                "top3_ci": ci(self.top3_ci), "advisor_minus_rule_top1": self.advisor_minus_top1,
                "advisor_minus_rule_top1_ci": ci(self.advisor_minus_top1_ci), "n": self.n,
                "n_picked": self.n_picked}


@dataclass(frozen=True)
class LeaveOneBudgetOut:
    """The advisor and the simple rules scored on the same held-out cases (see the module docstring)."""

    cases: tuple[Case, ...]
    scores: tuple[RuleScore, ...]  # the table's rows, :data:`RULES` first
    confidence: float
    resamples: int
    seed: int

    @property
    def n(self) -> int:
        return len(self.cases)

    @property
    def rules(self) -> list[str]:
        return [s.rule for s in self.scores]

    def score(self, rule: str) -> RuleScore:
        """The row of ``rule`` (a name of :data:`RULES` or ``always X``)."""
        for s in self.scores:
            if s.rule == rule:
                return s
        raise KeyError(f"no rule {rule!r}; the table has {', '.join(self.rules)}")

    def table(self) -> list[list[str]]:
        """The table as text cells, header first: rule, Top-1 [lo, hi], Top-3 [lo, hi], advisor - rule Top-1
        [lo, hi] (percentage points), n cases."""
        pct = lambda v: "n/a" if v is None else f"{100 * v:.0f}%"  # noqa: E731
        pts = lambda v: f"{100 * v:+.0f}"  # noqa: E731

        def cell(v: float | None, ci: Interval | None, fmt: Any) -> str:
            if v is None:
                return "n/a"
            return fmt(v) + ("" if ci is None else f" [{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]" if fmt is pct
                             else f" [{pts(ci[0])}, {pts(ci[1])}]")
        conf = f"{100 * self.confidence:.0f} %"
        out = [["rule", f"Top-1 [{conf}]", f"Top-3 [{conf}]", f"advisor − rule Top-1, points [{conf}]", "n cases"]]
        for s in self.scores:
            out.append([s.rule, cell(s.top1, s.top1_ci, pct), cell(s.top3, s.top3_ci, pct),
                        "—" if s.rule == ADVISOR else cell(s.advisor_minus_top1, s.advisor_minus_top1_ci, pts),
                        f"{s.n}" + ("" if s.n_picked == s.n else f" ({s.n - s.n_picked} without a pick)")])
        return out

    def text(self) -> str:
        """The table with a line saying what it measures."""
        head = [f"leave-one-budget-out over {self.n} held-out settings (each interior budget of each task and "
                f"optimizer; every rule picks from the rest of the study, the oracle from the setting's own "
                f"validation)",
                f"Top-k: the pick's place in the held-out setting's Table-1 ranking (ties share it); "
                f"{100 * self.confidence:.0f} % intervals: bootstrap over the cases stratified by task "
                f"({self.resamples} draws, paired across rules), for these tasks"]
        rows = self.table()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join(head + ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows])

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "confidence": self.confidence,
                "interval": "percentile bootstrap over cases stratified by task, paired across rules",
                "resamples": self.resamples, "seed": self.seed,
                "rules": [s.to_json() for s in self.scores],
                "cases": [{"task": c.task, "optimizer": c.optimizer, "budget": c.budget, "picks": dict(c.picks),
                           "top1": dict(c.top1), "top3": dict(c.top3), "ranks": dict(c.ranks),
                           "advisor_clear": c.advisor_clear, "advisor_p_best": c.advisor_p_best}
                          for c in self.cases]}


def summarise(cases: Sequence[Case], *, resamples: int = aggregate.DEFAULT_RESAMPLES, seed: int = 0,
              confidence: float = aggregate.CONFIDENCE) -> LeaveOneBudgetOut:
    """Each rule's Top-1 / Top-3 over ``cases`` and ``advisor - rule`` (Top-1), with percentile intervals from one
    bootstrap over the cases stratified by task, shared by every rule (paired): ``resamples`` draws, seeded by
    ``seed``. Rules in :data:`RULES` order, then the ``always`` rules as the cases name them."""
    stats.check_resamples(resamples)
    cases = tuple(cases)
    names = [r for r in RULES if cases and r in cases[0].picks]
    names += [r for r in (cases[0].picks if cases else {}) if r not in names]
    idx = None
    if cases:
        idx, _ = aggregate.stratified_draws([c.task for c in cases], 1, resamples,
                                            stats.rng_for(seed, "leave-one-budget-out"))

    def est(v: np.ndarray, bounds: Interval) -> tuple[float, Interval]:
        point = float(v.mean())
        lo, hi = aggregate.interval(point, v[idx].mean(axis=1), confidence, bounds)
        return point, (float(lo), float(hi))

    scores = []
    for r in names:
        if not cases:
            scores.append(RuleScore(r, None, None, None, None, None, None, 0, 0))
            continue
        t1 = np.array([c.top1[r] for c in cases])
        t3 = np.array([c.top3[r] for c in cases])
        (p1, ci1), (p3, ci3) = est(t1, (0.0, 1.0)), est(t3, (0.0, 1.0))
        d = dci = None
        if r != ADVISOR and ADVISOR in names:
            d, dci = est(np.array([c.top1[ADVISOR] for c in cases]) - t1, (-1.0, 1.0))
        scores.append(RuleScore(r, p1, ci1, p3, ci3, d, dci, len(cases),
                                sum(c.picks[r] is not None for c in cases)))
    return LeaveOneBudgetOut(cases, tuple(scores), confidence, resamples, seed)
