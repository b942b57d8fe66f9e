"""The advisor: a clear winner is picked at a budget between two of the study's, a tie is called a tie, a budget
outside the study is refused; at a run budget it is the report's choice; every answer carries its evidence (steps,
per-LR validation tables, edge-of-grid warnings, an LR said to be log-interpolated); P(best) is a probability;
leave-one-budget-out scoring on a hand-made study (the rules beside it: tests/test_advisor_rules.py)."""
from __future__ import annotations

import json
import math

import pytest

from budgetsched.bench.analysis.advise import advise, leave_one_budget_out
from budgetsched.bench.analysis.report import build_report
from budgetsched.bench.rendering.csv_json import to_json
from budgetsched.errors import UsageError

from _rows import typed
from test_report_uncertainty import row


def study(winner_margin: float, budgets=(5.0, 10.0, 50.0, 100.0), lrs=(0.1, 0.3), seeds=(0, 1, 2)):
    """rex beats linear and cosine on every seed by ``winner_margin`` (0: all three identical); rex's best LR is
    0.1 at budgets <= 10 and 0.3 above, linear's 0.3 everywhere. Budgets in steps: the 100 % run is 1920 steps."""
    out = []
    for b in budgets:
        for s in seeds:
            noise = 0.3 * math.sin(7 * s + b)  # seed effect shared by every schedule (a paired design)
            for lr in lrs:
                rex_best = 0.1 if b <= 10 else 0.3
                base = 10.0 + noise
                n = math.ceil(19.2 * b)
                out.append(row("rex", lr, s, base - winner_margin + (0 if lr == rex_best else 2), budget=b,
                               total_steps=n))
                out.append(row("linear", lr, s, base + (0 if lr == 0.3 else 2), budget=b, total_steps=n))
                out.append(row("cosine", lr, s, base + 0.5 * winner_margin + (0 if lr == 0.3 else 2), budget=b,
                               total_steps=n))
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
    # three identical schedules share first place in every draw: P(best) is a probability, a third each
    assert a.probabilities == pytest.approx({"rex": 1 / 3, "linear": 1 / 3, "cosine": 1 / 3})
    assert "ties share" in a.line()
    [b] = advise(study(0.5), 25.0)
    assert sum(b.probabilities.values()) == pytest.approx(1.0)


def test_out_of_range_and_bad_input():
    [a] = advise(study(0.5), 2.0)
    assert a.schedule is None and "outside the study's budgets (5 to 100 %)" in a.note
    with pytest.raises(UsageError, match="budget must be a percent in"):
        advise(study(0.5), 0)
    with pytest.raises(UsageError, match="no task 'nope'; choose from T"):
        advise(study(0.5), 25.0, task="nope")


def test_leave_one_budget_out_scores_against_fixed_choices():
    result = leave_one_budget_out(study(0.5), resamples=300)
    assert result.n == 2  # the interior budgets 10 and 50
    advisor = result.score("advisor")
    assert (advisor.top1, advisor.top3) == (1.0, 1.0)
    assert result.score("always rex").top1 == 1.0 and result.score("always linear").top1 == 0.0
    assert {c.budget for c in result.cases} == {10.0, 50.0}
    # the simple rules and the oracle (tests/test_advisor_rules.py) are scored on the same held-out cases
    assert result.rules == ["advisor", "study's best", "nearest budget", "neighbour budgets", "oracle (validation)",
                            "always rex", "always linear"]


def test_at_a_run_budget_the_advice_is_the_reports_choice():
    rows = study(0.5)
    report = to_json(build_report(rows, resamples=2000))
    for budget in (5.0, 10.0, 50.0, 100.0):
        [a] = advise(rows, budget)
        got = json.loads(json.dumps(a.to_json()))  # JSON-ready as it is
        [s] = [s for s in report["settings"] if s["budget"] == budget]
        assert got["mode"] == "run" and got["neighbours"] == [budget, budget]
        assert (got["schedule"], got["lr"]) == (s["table1_ranking"]["best"], s["schedules"][s["table1_ranking"]["best"]]["lr"])
        assert (got["schedule"], got["lr"]) == ("rex", 0.1 if budget <= 10 else 0.3) and got["lr_tried"]
        assert got["steps"] == s["total_steps"] == math.ceil(19.2 * budget) and got["steps_exact"]
        assert "interpolated between" not in a.line() and "run in the study: the report's choice" in a.line()
        assert sum(got["probabilities"].values()) == pytest.approx(1.0)


def test_the_evidence_behind_an_interpolated_pick():
    rows = study(0.5)
    [a] = advise(rows, 25.0)
    got = a.to_json()
    assert got["mode"] == "interpolated" and got["neighbours"] == [10.0, 50.0]
    assert got["steps"] == 480 and got["steps_exact"]  # ceil(25 % of 1920): budgets in steps, 100 % run
    assert a.line().startswith("T / sgdm at 25 % = 480 steps of T: recommended: rex at initial LR 0.187 "
                               "(log-interpolated, not tried), interpolated between 10 % and 50 %, both run")
    # an LR never tried is said to be log-interpolated, with the nearest LR that was tried
    assert not got["lr_tried"] and got["lr_note"] == ("log-interpolated between 0.1 (chosen at 10 %) and 0.3 "
                                                      "(chosen at 50 %); never tried itself: the nearest LR tried is 0.3")
    # edge-of-grid warnings, as the report marks 0.1↓ and 0.3↑
    assert got["warnings"] == [
        "rex's LR 0.1↓ at 10 % is the smallest LR tried: the best LR may be smaller (run rex with smaller LRs, or "
        "--refine, to know)",
        "rex's LR 0.3↑ at 50 % is the largest LR tried: the best LR may be larger (run rex with larger LRs, or "
        "--refine, to know)"]
    # the per-LR validation tables at both neighbours: the mean over seeds of every LR tried, the chosen LR marked
    ten, fifty = got["evidence"]
    assert (ten["budget"], ten["total_steps"], fifty["budget"], fifty["total_steps"]) == (10.0, 192, 50.0, 960)
    noise = [0.3 * math.sin(7 * s + 10.0) for s in range(3)]
    rex10 = {p["lr"]: (p["mean"], p["chosen"], p["n"]) for p in ten["validation"]["rex"]}
    assert rex10 == {0.1: (pytest.approx(9.5 + sum(noise) / 3), True, 3),
                     0.3: (pytest.approx(11.5 + sum(noise) / 3), False, 3)}
    assert ten["chosen_lr"] == {"rex": 0.1, "linear": 0.3, "cosine": 0.3}
    assert ten["lr_edge"] == {"rex": "low", "linear": "high", "cosine": "high"}
    text = a.text()
    assert "  LR: log-interpolated between 0.1" in text and "  warning: rex's LR 0.3↑ at 50 %" in text
    assert "at 10 % (192 steps): the report's choice rex" in text
    assert [ln.split()[:3] for ln in text.splitlines() if ln.strip().startswith(("schedule", "rex"))][:2] == [
        ["schedule", "0.1", "0.3"], ["rex", f"{9.5 + sum(noise) / 3:.3g}*↓", f"{11.5 + sum(noise) / 3:.3g}"]]


def test_one_lr_chosen_at_both_neighbours_is_a_tried_lr():
    [a] = advise(study(0.5), 75.0)  # rex chose 0.3 at 50 % and at 100 %
    assert a.lr == 0.3 and a.lr_tried and a.lr_note == "rex chose 0.3 at both 50 % and 100 %"
    assert "not tried" not in a.line()


def test_with_evaluation_seeds_the_advice_is_table_1s_choice_on_them():
    from budgetsched.bench.analysis.evaluation import evaluation_trials

    tuning = study(0.5)
    planned = evaluation_trials(tuning, 2)
    records = [rec for _, rec in planned]
    # the evaluation runs agree with the tuning runs except at 50 %, where linear beats rex by 1
    place = {"rex": 10.0, "linear": 9.0, "cosine": 9.5}
    evals = typed([{**row(c.label, c.lr, c.seed, 10.0, place[c.label] if c.budget == 50.0 else
                          {"rex": 9.0, "linear": 10.0, "cosine": 9.5}[c.label], budget=c.budget), "key": c.key}
                   for c, _ in planned])
    rows = tuning + evals
    full = build_report(rows, evaluations=records, resamples=2000)
    [s50] = [s for s in full.settings if s.budget == 50.0]
    assert s50.fair.mode == "evaluation-seeds" and s50.fair.labels[s50.fair.best] == "linear"
    [a] = advise(rows, 50.0, evaluations=records)
    assert a.schedule == "linear" and a.lr == 0.3 and a.evidence[0].evaluation == s50.fair.note
    [plain] = advise(tuning, 50.0)  # the tuning runs alone (cross-fitted): rex
    assert plain.schedule == "rex"
    # the evidence's validation tables are the tuning trials' (3 seeds), the evaluation trials never enter them
    assert {p.n for pts in a.evidence[0].validation.values() for p in pts} == {3}
    assert a.evidence[0].validation == plain.evidence[0].validation
