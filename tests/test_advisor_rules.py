"""The advisor against simple rules, leave-one-budget-out: each rule's pick on a hand-made study (with its tie
rules), a study one schedule wins everywhere (every sensible rule Top-1 = 1), a null study (Top-1 near 1/k, the
intervals containing it), and no leakage: a rule's pick never moves when the held-out setting changes."""
from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest

from budgetsched.bench.analysis import advisor_rules as ar
from budgetsched.bench.analysis.advise import leave_one_budget_out
from budgetsched.bench.analysis.evaluation import evaluation_trials
from budgetsched.bench.analysis.report import build_report
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.cli import main

from _rows import typed
from test_report_uncertainty import row

# Hand-made study: task T, SGDM, one LR per schedule, 3 seeds whose noise every schedule shares (so a setting's
# fair ranking is the order of these offsets); lower is better. Budget 4 is the held-out budget of the first case.
ORDER = {
    1.0: {"linear": 1, "cosine": 2, "rex": 3, "exp": 4},
    4.0: {"rex": 1, "cosine": 2, "linear": 3, "exp": 4},
    16.0: {"rex": 1, "exp": 2, "cosine": 3, "linear": 4},
    64.0: {"cosine": 1, "rex": 2, "exp": 3, "linear": 4},
}
#: validation at budget 4 disagrees with its test: cosine looks best on validation, rex is first on test
VAL_AT_4 = {"cosine": 1, "rex": 2, "linear": 3, "exp": 4}


def hand_study(order=ORDER, val_at=None, task="T", opt="sgdm"):
    val_at = {4.0: VAL_AT_4} if val_at is None else val_at
    out = []
    for b, places in order.items():
        for label, place in places.items():
            for s in range(3):
                noise = 0.01 * s
                val = val_at.get(b, places)[label] + noise
                out.append(row(label, 0.1, s, float(val), float(place + noise), task=task, opt=opt, budget=b))
    return typed(out)


def without(rows, key):
    return [r for r in rows if (r.task, r.optimizer, float(r.budget)) != key]


def report(rows):
    return build_report(rows, resamples=200)


def test_each_rules_pick_on_a_hand_made_study():
    rows = hand_study()
    rest = report(without(rows, ("T", "sgdm", 4.0)))
    # study's best over 1, 16, 64: mean places linear 3, cosine 2, rex 2, exp 3 -> cosine and rex tie: alphabetical
    assert ar.study_best(rest) == "cosine"
    # 4 % is as far from 1 % as from 16 % in log budget (ln 4 each way): the smaller budget, where linear won
    assert ar.nearest_budget(rest, "T", "sgdm", 4.0) == "linear"
    # neighbours 1 and 16: mean places linear 2.5, cosine 2.5, rex 2, exp 3
    assert ar.neighbour_budgets(rest, "T", "sgdm", 4.0) == "rex"
    # the oracle reads budget 4's own validation: cosine (though rex is first on test)
    held = [s for s in report(rows).settings if s.budget == 4.0][0]
    assert ar.oracle(held) == "cosine"
    # at an edge the neighbours are one budget; the nearest budget is that one too
    edge = report(without(rows, ("T", "sgdm", 64.0)))
    assert ar.neighbour_budgets(edge, "T", "sgdm", 64.0) == ar.nearest_budget(edge, "T", "sgdm", 64.0) == "rex"
    assert ar.neighbour_budgets(edge, "T", "sgdm", 0.5) == "linear"  # below every budget: 1 % alone
    # 16 held out: nearest 4 (tied with 64 in log distance, the smaller) -> rex; neighbours 4 and 64 give rex and
    # cosine a mean place of 1.5 -> alphabetical: cosine; study's best over 1, 4, 64: cosine (5/3)
    rest16 = report(without(rows, ("T", "sgdm", 16.0)))
    assert ar.nearest_budget(rest16, "T", "sgdm", 16.0) == "rex"
    assert ar.neighbour_budgets(rest16, "T", "sgdm", 16.0) == "cosine"
    assert ar.study_best(rest16) == "cosine"


def test_scores_on_the_hand_made_study_by_hand():
    got = leave_one_budget_out(hand_study(), resamples=200, bootstrap=500)
    assert got.n == 2 and [(c.budget) for c in got.cases] == [4.0, 16.0]
    four, sixteen = got.cases
    assert {r: four.picks[r] for r in ar.RULES[1:]} == {
        ar.STUDY_BEST: "cosine", ar.NEAREST: "linear", ar.NEIGHBOURS: "rex", ar.ORACLE: "cosine"}
    assert {r: sixteen.picks[r] for r in ar.RULES[1:]} == {
        ar.STUDY_BEST: "cosine", ar.NEAREST: "rex", ar.NEIGHBOURS: "cosine", ar.ORACLE: "rex"}
    # truth at 4: rex, cosine, linear, exp; at 16: rex, exp, cosine, linear
    assert four.ranks == {**four.ranks, ar.NEAREST: 3, ar.NEIGHBOURS: 1, ar.ORACLE: 2, "always linear": 3}
    # the advisor: at 4 % (w = 1/2 between 1 %, linear's, and 16 %, rex's) P(best) ties at 1/2 and goes to the
    # first in display order, linear; at 16 % likewise between rex (4 %) and cosine (64 %): cosine; both third
    assert (four.picks[ar.ADVISOR], sixteen.picks[ar.ADVISOR]) == ("linear", "cosine")
    assert (four.ranks[ar.ADVISOR], sixteen.ranks[ar.ADVISOR]) == (3, 3)
    want = {  # rule: (Top-1, Top-3) over the two cases
        ar.ADVISOR: (0.0, 1.0),
        ar.STUDY_BEST: (0.0, 1.0), ar.NEAREST: (0.5, 1.0), ar.NEIGHBOURS: (0.5, 1.0), ar.ORACLE: (0.5, 1.0),
        "always rex": (1.0, 1.0), "always linear": (0.0, 0.5)}
    assert got.rules == [*ar.RULES, "always rex", "always linear"]
    for rule, (t1, t3) in want.items():
        s = got.score(rule)
        assert (s.top1, s.top3, s.n, s.n_picked) == (t1, t3, 2, 2), rule
        assert s.top1_ci[0] <= t1 <= s.top1_ci[1] and 0.0 <= s.top1_ci[0] and s.top1_ci[1] <= 1.0
    # a rule right (or wrong) in every case: every draw agrees, the interval is the point
    assert got.score("always rex").top1_ci == (1.0, 1.0) and got.score(ar.STUDY_BEST).top1_ci == (0.0, 0.0)
    # one right, one wrong: the bootstrap of two cases gives 0, 1/2 or 1
    assert got.score(ar.NEAREST).top1_ci == (0.0, 1.0)
    adv = got.score(ar.ADVISOR)
    assert adv.advisor_minus_top1 is None and adv.advisor_minus_top1_ci is None
    for rule in got.rules[1:]:
        s = got.score(rule)
        assert s.advisor_minus_top1 == pytest.approx(adv.top1 - s.top1)
    with pytest.raises(KeyError, match="no rule 'always cosine'"):
        got.score("always cosine")


def test_rules_never_see_the_held_out_setting():
    rows = hand_study()
    base = leave_one_budget_out(rows, resamples=200, bootstrap=500).cases[0]
    assert base.budget == 4.0
    # turn budget 4 upside down, validation and test alike: exp first, rex last
    flipped = {"exp": 1, "linear": 2, "cosine": 3, "rex": 4}
    moved = leave_one_budget_out(hand_study({**ORDER, 4.0: flipped}, val_at={}), resamples=200,
                                 bootstrap=500).cases[0]
    for rule in base.picks:
        if rule != ar.ORACLE:
            assert moved.picks[rule] == base.picks[rule], rule  # the advisor included
    assert moved.picks[ar.ORACLE] == "exp"  # it reads the setting's validation, and only that ...
    assert moved.top1[ar.NEIGHBOURS] == 0.0 and base.top1[ar.NEIGHBOURS] == 1.0  # ... while the truth moved
    # the test scores alone changed: not even the oracle moves
    test_only = leave_one_budget_out(hand_study({**ORDER, 4.0: flipped}, val_at={4.0: VAL_AT_4}), resamples=200,
                                     bootstrap=500).cases[0]
    assert test_only.picks == base.picks
    # a report that still holds the held-out setting is refused
    full = report(rows)
    held = [s for s in full.settings if s.budget == 4.0][0]
    with pytest.raises(ValueError, match="still holds the held-out setting"):
        ar.score_case(held, full, "rex")


def test_with_evaluation_seeds_the_truth_is_table_1s_ranking_on_them():
    tuning = hand_study()
    planned = evaluation_trials(tuning, 2)
    assert len(planned) == 4 * 4 * 2  # budgets x schedules x evaluation seeds
    # the evaluation seeds agree with the tuning runs except at 4 %, where they reverse its order: exp first, rex last
    at4 = {"exp": 1, "linear": 2, "cosine": 3, "rex": 4}
    evals = [typed([{**row(c.label, c.lr, c.seed, 0.0, float((at4 if c.budget == 4.0 else ORDER[c.budget])[c.label]),
                           task=c.task, opt=c.optimizer, budget=c.budget), "key": c.key}])[0] for c, _ in planned]
    records = [rec for _, rec in planned]
    plain = leave_one_budget_out(tuning, resamples=200, bootstrap=500)
    got = leave_one_budget_out(tuning + evals, evaluations=records, resamples=200, bootstrap=500)
    four, sixteen = got.cases
    assert four.ranks["always rex"] == 4 and plain.cases[0].ranks["always rex"] == 1
    assert (four.top1[ar.ORACLE], four.top3[ar.ORACLE]) == (0.0, 1.0)  # cosine, chosen on validation, is third
    # 4 % held out: every pick is made as before (the other budgets' evaluation runs agree with their tuning runs)
    assert four.picks == plain.cases[0].picks
    # 16 % held out: the rules read 4 % on its evaluation seeds, where exp is first: the nearest budget's winner
    assert sixteen.picks == {**plain.cases[1].picks, ar.NEAREST: "exp"} and plain.cases[1].picks[ar.NEAREST] == "rex"
    # ... and scored on the evaluation seeds' ranking at 4 %
    assert got.score("always rex").top1 == 0.5 and plain.score("always rex").top1 == 1.0


def clear_winner(margin, tasks=("T", "U"), opts=("sgdm", "adam"), budgets=(5.0, 10.0, 50.0, 100.0)):
    """rex beats linear and cosine by ``margin`` in every setting and on every seed, on validation and test."""
    out = []
    for t in tasks:
        for o in opts:
            for b in budgets:
                for s in range(3):
                    base = 10.0 + 0.3 * math.sin(7 * s + b) + (0.5 if t == "U" else 0.0)
                    for lr in (0.1, 0.3):
                        bump = 0.0 if lr == 0.3 else 2.0
                        out.append(row("rex", lr, s, base - margin + bump, task=t, opt=o, budget=b))
                        out.append(row("linear", lr, s, base + bump, task=t, opt=o, budget=b))
                        out.append(row("cosine", lr, s, base + 0.5 * margin + bump, task=t, opt=o, budget=b))
    return typed(out)


def test_one_schedule_winning_everywhere_is_found_by_every_sensible_rule():
    got = leave_one_budget_out(clear_winner(0.5), resamples=200, bootstrap=500)
    assert got.n == 2 * 2 * 2  # tasks x optimizers x interior budgets
    for rule in (*ar.RULES, "always rex"):
        s = got.score(rule)
        assert (s.top1, s.top3, s.top1_ci, s.n_picked) == (1.0, 1.0, (1.0, 1.0), 8), rule
        assert {c.picks[rule] for c in got.cases} == {"rex"}
    lin = got.score("always linear")
    assert lin.top1 == 0.0 and lin.advisor_minus_top1 == 1.0 and lin.advisor_minus_top1_ci == (1.0, 1.0)


def null_study(k=3, tasks=4, opts=("sgdm", "adam"), budgets=(1.0, 2.0, 4.0, 8.0, 16.0, 32.0), seed=0):
    """Every schedule alike: each (setting, schedule, seed) draws validation and test independently from N(0, 1)."""
    rng = np.random.default_rng(seed)
    labels = ["rex", "linear", "cosine", "exp", "step"][:k]
    out = []
    for t in range(tasks):
        for o in opts:
            for b in budgets:
                for label in labels:
                    for s in range(3):
                        v, te = rng.normal(size=2)
                        out.append(row(label, 0.1, s, 10 + float(v), 10 + float(te), task=f"T{t}", opt=o, budget=b))
    return typed(out)


def test_under_the_null_every_rule_is_right_one_time_in_k():
    got = leave_one_budget_out(null_study(), resamples=200, bootstrap=2000)
    assert got.n == 4 * 2 * 4
    for s in got.scores:
        lo, hi = s.top1_ci
        assert lo <= 1 / 3 <= hi, (s.rule, s.top1, s.top1_ci)
        assert abs(s.top1 - 1 / 3) < 0.2, s.rule
        assert hi - lo < 0.5  # an interval, not [0, 1]
        if s.rule != ar.ADVISOR:
            assert s.advisor_minus_top1_ci[0] <= 0.0 <= s.advisor_minus_top1_ci[1], s.rule
    # over every rule and case the Top-1 credits average 1/3 (each case's three schedules share one first place)
    assert np.mean([c.top1[r] for c in got.cases for r in c.picks]) == pytest.approx(1 / 3, abs=0.08)


def test_the_table_as_text_and_json():
    got = leave_one_budget_out(hand_study(), resamples=200, bootstrap=500)
    lines = got.text().splitlines()
    assert lines[0].startswith("leave-one-budget-out over 2 held-out settings")
    assert lines[1].startswith("Top-k: the pick's place in the held-out setting's Table-1 ranking")
    assert lines[2].split("  ")[0] == "rule" and "advisor − rule Top-1" in lines[2]
    rows = {ln.split("  ")[0].strip(): ln for ln in lines[3:]}
    assert list(rows) == got.rules
    assert "100% [100, 100]" in rows["always rex"] and rows["advisor"].split()[-2:] == ["—", "2"]
    assert "50% [0, 100]" in rows[ar.NEAREST]
    data = json.loads(json.dumps(got.to_json()))
    assert [r["rule"] for r in data["rules"]] == got.rules
    assert data["rules"][1] == {"rule": ar.STUDY_BEST, "top1": 0.0, "top1_ci": [0.0, 0.0], "top3": 1.0,
                                "top3_ci": [1.0, 1.0], "advisor_minus_rule_top1": 0.0,
                                "advisor_minus_rule_top1_ci": [0.0, 0.0], "n": 2, "n_picked": 2}
    assert data["cases"][0]["picks"][ar.NEAREST] == "linear"


def _rows_file(path, rows: list[TrialRow]):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"format": "budgetsched-rows", "version": 1, "meta": {}, "studies": []}) + "\n")
        for r in rows:
            f.write(json.dumps(r.as_dict()) + "\n")


def test_advise_evaluate_prints_the_table(tmp_path, capsys):
    path = tmp_path / "study.jsonl.gz"
    _rows_file(path, hand_study())
    assert main(["advise", str(path), "--budget", "8", "--evaluate"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("leave-one-budget-out over 2 held-out settings"):].splitlines()
    assert [ln.split("  ")[0].strip() for ln in table[3:]] == [*ar.RULES, "always rex", "always linear"]
    assert main(["advise", str(path), "--budget", "8", "--evaluate", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)["leave_one_budget_out"]
    assert data["n"] == 2 and [r["rule"] for r in data["rules"]] == [*ar.RULES, "always rex", "always linear"]
    assert {r["rule"]: r["top1"] for r in data["rules"]}[ar.NEAREST] == 0.5


def test_the_report_without_a_setting_is_the_report_rebuilt_without_its_trials():
    """leave_one_budget_out drops the held-out setting from the study's one report (advise.without_setting) instead
    of rebuilding it per case: the advice and every rule's pick must be those of the rebuild."""
    from budgetsched.bench.analysis.advise import advise_from_report, without_setting

    rows = null_study(tasks=2, budgets=(1.0, 4.0, 16.0, 64.0), seed=3)
    full = build_report(rows, resamples=300)
    for key in [("T0", "sgdm", 4.0), ("T1", "adam", 16.0)]:
        quick, rebuilt = without_setting(full, key), build_report(without(rows, key), resamples=300)
        assert [(s.task, s.optimizer, s.budget) for s in quick.settings] == \
            [(s.task, s.optimizer, s.budget) for s in rebuilt.settings]
        a, b = advise_from_report(quick, key[2], key[0], key[1]), advise_from_report(rebuilt, key[2], key[0], key[1])
        assert (a.schedule, a.lr, a.p_best, a.probabilities, a.clear, a.note) == \
            (b.schedule, b.lr, b.p_best, b.probabilities, b.clear, b.note)
        assert ar.study_best(quick) == ar.study_best(rebuilt)
        held = next(s for s in full.settings if (s.task, s.optimizer, s.budget) == key)
        assert ar.score_case(held, quick, a.schedule, ["rex"]) == ar.score_case(held, rebuilt, b.schedule, ["rex"])
