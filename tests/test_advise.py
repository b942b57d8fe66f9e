"""The advisor: a clear winner is picked at a budget between two of the study's, a tie is called a tie, a budget
outside the study is refused; leave-one-budget-out scoring on a hand-made study."""
from __future__ import annotations

import math

import pytest

from budgetsched.bench.analysis.advise import advise, leave_one_budget_out
from budgetsched.errors import UsageError

from _rows import typed
from test_report_uncertainty import row


def study(winner_margin: float, budgets=(5.0, 10.0, 50.0, 100.0), lrs=(0.1, 0.3), seeds=(0, 1, 2)):
    """rex beats linear and cosine on every seed by ``winner_margin`` (0: all three identical); rex's best LR is
    0.1 at budgets <= 10 and 0.3 above, linear's 0.3 everywhere."""
    out = []
    for b in budgets:
        for s in seeds:
            noise = 0.3 * math.sin(7 * s + b)  # seed effect shared by every schedule (a paired design)
            for lr in lrs:
                rex_best = 0.1 if b <= 10 else 0.3
                base = 10.0 + noise
                out.append(row("rex", lr, s, base - winner_margin + (0 if lr == rex_best else 2), budget=b))
                out.append(row("linear", lr, s, base + (0 if lr == 0.3 else 2), budget=b))
                out.append(row("cosine", lr, s, base + 0.5 * winner_margin + (0 if lr == 0.3 else 2), budget=b))
    return typed(out)  # as the store gives them


def test_clear_winner_between_two_budgets():
    [a] = advise(study(0.5), 25.0)
    assert a.schedule == "rex" and a.clear and a.p_best > 0.9 and a.neighbours == (10.0, 50.0)
    w = (math.log(25) - math.log(10)) / (math.log(50) - math.log(10))
    assert a.lr == pytest.approx(math.exp((1 - w) * math.log(0.1) + w * math.log(0.3)))  # log-scale interpolation
    assert "recommended: rex" in a.line()


def test_identical_schedules_are_no_clear_winner():
    [a] = advise(study(0.0), 25.0)
    assert not a.clear and "tied within noise" in a.note and "no clear winner" in a.line()
    # three identical schedules share first place in every draw: each has P(best) 1, and the line says why
    assert sum(a.probabilities.values()) == pytest.approx(3.0)
    assert "a tie for best counts for each tied schedule" in a.line()
    [b] = advise(study(0.5), 25.0)
    assert "a tie for best" not in b.line()


def test_out_of_range_and_bad_input():
    [a] = advise(study(0.5), 2.0)
    assert a.schedule is None and "outside the study's budgets (5 to 100 %)" in a.note
    with pytest.raises(UsageError, match="budget must be a percent in"):
        advise(study(0.5), 0)
    with pytest.raises(UsageError, match="no task 'nope'; choose from T"):
        advise(study(0.5), 25.0, task="nope")


def test_leave_one_budget_out_scores_against_fixed_choices():
    result = leave_one_budget_out(study(0.5), resamples=300)
    assert result["n"] == 2  # the interior budgets 10 and 50
    assert result["advisor"] == {"top1": 1.0, "top3": 1.0}
    assert result["rex"]["top1"] == 1.0 and result["linear"]["top1"] == 0.0
    assert {c["budget"] for c in result["cases"]} == {10.0, 50.0}
