"""The headline rule (docs/tasks.md): a setting counts in Table 1 and the study-level sections only if its best
schedule beats the task's trivial baseline by more than its own noise. Hand-made studies whose answers are worked
out below (lower is better; each schedule has one LR unless said, so every choice is that LR).

Task T, baseline 50 (passed to ``build_report(baselines=...)``); task U has no baseline (the rule cannot be applied).

    GOOD   T/sgdm/10 %   rex [10, 11, 12], linear [20, 21, 22]   best rex, d = 50 - s = [40, 39, 38]: mean 39,
                         sd 1, half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051 = 2.484138
                         -> [36.52, 41.48]: counted
    NEXT   T/adam/10 %   rex at two LRs (below), linear [30, 30, 30]   best rex; its next-seed scores [20, 10, 10]:
                         d = [30, 40, 40], mean 36.667, sd 5.7735, half-width 4.302653 * 3.3333 = 14.342 ->
                         [22.32, 51.01]: counted (the leave-one-out scores Table 1 ranks on are [10, 10, 10])
    FLAT   T/sgdm/1 %    linear [48, 50, 53], rex [49, 51, 54]   best linear, d = [2, 0, -3]: mean -1/3,
                         sd sqrt(19/3) = 2.5166, half-width 4.302653 * 1.45297 = 6.2516
                         -> [-6.585, 5.918] contains 0: set apart
    WORSE  T/adam/1 %    linear [60, 61, 62], rex [70, 71, 72]   d = [-10, -11, -12] -> [-13.48, -8.52]: set apart
    ONE    T/sgdm/100 %  one seed: linear [45], rex [46]   n = 1, no noise measured: not applied, counted
    NOBASE U/sgdm/50 %   rex [8, 9, 10], linear [5, 6, 7]   best linear; no baseline: counted, U named

NEXT's rex: LR 0.1 has validation [1, 5, 1] and test 10 on every seed, LR 0.3 validation [3, 3, 3] and test 20.
Next-seed (the LR for seed s chosen on seed s + 1's validation): seed 0 on seed 1 (5 vs 3: LR 0.3 -> 20), seed 1 on
seed 2 (1 vs 3: 0.1 -> 10), seed 2 on seed 0 (1 vs 3: 0.1 -> 10). Leave-one-out: seed 0 on mean(5, 1) = 3 vs 3, a
tie to the smaller LR 0.1 -> 10; seeds 1 and 2 -> 0.1 -> 10. Chosen on all three seeds (mean 7/3 < 3): LR 0.1.

Table 1 (budget < 25 % is low): counted GOOD (rex), NEXT (rex) low, ONE (linear), NOBASE (linear) high: rex low
2/2, linear high 2/2, overall rex 2/4 and linear 2/4. Every setting (--all-settings): low GOOD rex, NEXT rex, FLAT linear, WORSE
linear (2/4 each); high ONE linear, NOBASE linear (2/2); overall rex 2/6, linear 4/6.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats as st

from budgetsched.bench.analysis import fair, headline, summary
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.report import build_report, to_csv, to_json, to_markdown
from budgetsched.bench.storage.store import Store
from budgetsched.cli import main

from _rows import typed

# the Student-t 97.5 % quantile at 2 degrees of freedom in closed form: its cdf is 1/2 + t / (2 sqrt(2 + t^2)), so
# t / sqrt(2 + t^2) = 0.95 and t^2 = 2 * 0.95^2 / (1 - 0.95^2) (= 4.302653, the tables' value)
T975_2 = math.sqrt(2 * 0.95 ** 2 / (1 - 0.95 ** 2))
BASE = {"T": 50.0, "U": None}


def _row(task, opt, budget, label, lr, seed, val, test):
    return {"task": task, "schedule": label, "optimizer": opt, "budget": budget, "lr": lr, "seed": seed,
            "status": "done", "val_metric": val, "test_metric": test, "val_loss": 1.0, "test_loss": 1.0,
            "steps": 1, "wall_time": 0.0}


def _plain(task, opt, budget, tests: dict[str, list[float]]):
    """One LR (0.1) per schedule; validation equal to test."""
    return [_row(task, opt, budget, label, 0.1, s, t, t) for label, ts in tests.items() for s, t in enumerate(ts)]


ROWS = typed(
    _plain("T", "sgdm", 10.0, {"rex": [10, 11, 12], "linear": [20, 21, 22]})  # GOOD
    + [_row("T", "adam", 10.0, "rex", 0.1, s, v, 10.0) for s, v in enumerate([1.0, 5.0, 1.0])]  # NEXT
    + [_row("T", "adam", 10.0, "rex", 0.3, s, 3.0, 20.0) for s in range(3)]
    + _plain("T", "adam", 10.0, {"linear": [30, 30, 30]})
    + _plain("T", "sgdm", 1.0, {"linear": [48, 50, 53], "rex": [49, 51, 54]})  # FLAT
    + _plain("T", "adam", 1.0, {"linear": [60, 61, 62], "rex": [70, 71, 72]})  # WORSE
    + _plain("T", "sgdm", 100.0, {"linear": [45], "rex": [46]})  # ONE
    + _plain("U", "sgdm", 50.0, {"rex": [8, 9, 10], "linear": [5, 6, 7]}))  # NOBASE


@pytest.fixture(scope="module")
def report():
    return build_report(ROWS, baselines=BASE, resamples=200)


@pytest.fixture(scope="module")
def old_view():
    return build_report(ROWS, baselines=BASE, resamples=200, all_settings=True)


def _h(rep, task, opt, budget):
    (s,) = [s for s in rep.settings if (s.task, s.optimizer, s.budget) == (task, opt, budget)]
    return s.headline


def test_the_quantile_is_scipys():
    assert st.t.ppf(0.975, 2) == pytest.approx(T975_2, rel=1e-12)


def test_best_clearly_better_than_the_baseline_counts(report):
    h = _h(report, "T", "sgdm", 10.0)
    half = T975_2 * 1.0 / math.sqrt(3)
    assert (h.best, h.lr, h.n, h.mean, h.baseline) == ("rex", 0.1, 3, 11.0, 50.0)
    assert (h.lo, h.hi) == pytest.approx((39 - half, 39 + half), rel=1e-12)
    assert (h.lo, h.hi) == pytest.approx((36.515862, 41.484138), abs=1e-6)  # worked out above
    assert h.counted and h.applied and h.scores == "cross-fit"


def test_the_interval_is_scipys_t_interval():
    d = np.array([2.0, 0.0, -3.0])
    lo, hi = headline.interval(d)
    ref = st.t.interval(0.95, 2, loc=d.mean(), scale=st.sem(d))
    assert (lo, hi) == pytest.approx(ref, rel=1e-12)
    assert (lo, hi) == pytest.approx((-1 / 3 - T975_2 * math.sqrt(19 / 3) / math.sqrt(3),
                                      -1 / 3 + T975_2 * math.sqrt(19 / 3) / math.sqrt(3)), rel=1e-12)
    assert headline.interval([4.0, 4.0]) == (4.0, 4.0)  # no spread: the point
    with pytest.raises(ValueError, match="two finite values"):
        headline.interval([1.0])


def test_a_best_at_the_baseline_is_set_apart_with_its_interval(report):
    h = _h(report, "T", "sgdm", 1.0)
    assert h.best == "linear" and h.mean == pytest.approx(151 / 3) and h.n == 3
    assert h.lo < 0 < h.hi and (h.lo, h.hi) == pytest.approx((-6.584943, 5.918276), abs=1e-6)
    assert not h.counted and h.applied and "contains 0" in h.reason
    w = _h(report, "T", "adam", 1.0)
    assert (w.lo, w.hi) == pytest.approx((-11 - T975_2 / math.sqrt(3), -11 + T975_2 / math.sqrt(3)))
    assert not w.counted and "worse than the baseline" in w.reason


def test_the_rule_uses_next_seed_scores_not_the_rankings_leave_one_out(report):
    s = [s for s in report.settings if (s.task, s.optimizer, s.budget) == ("T", "adam", 10.0)][0]
    rex = s.fair.labels.index("rex")
    assert s.fair.scores[rex].tolist() == [10.0, 10.0, 10.0]  # Table 1's (leave-one-out) scores
    h = s.headline
    assert (h.best, h.lr, h.mean, h.n) == ("rex", 0.1, pytest.approx(40 / 3), 3)
    sd = float(np.std([30.0, 40.0, 40.0], ddof=1))
    assert (h.lo, h.hi) == pytest.approx((110 / 3 - T975_2 * sd / math.sqrt(3), 110 / 3 + T975_2 * sd / math.sqrt(3)))
    assert h.counted


def test_one_score_is_not_decided_it_counts_and_is_named(report):
    h = _h(report, "T", "sgdm", 100.0)
    assert (h.n, h.lo, h.hi, h.mean, h.counted, h.applied) == (1, None, None, 45.0, True, False)
    assert h.scores == "same-run" and "one score" in h.reason and "not applied" in h.reason
    # one seed measures no noise, whatever the score: the rule neither passes nor fails it (docs/protocol.md F5)
    for score in (1.0, 99.0):
        one = headline.decide("T", "sgdm", 1.0, headline.NoiseScores("rex", 0.1, None, np.array([score]), "same-run"),
                              50.0)
        assert one.counted and not one.applied and one.lo is None
    assert [(s.task, s.optimizer, s.budget) for s in report.one_score()] == [("T", "sgdm", 100.0)]
    assert report.no_baseline() == ["U"]  # a one-score setting is not a task without a baseline


def test_unknown_baseline_counts_and_is_named(report):
    h = _h(report, "U", "sgdm", 50.0)
    assert h.counted and not h.applied and h.baseline is None and h.lo is None and h.best == "linear"
    assert report.no_baseline() == ["U"]
    md = to_markdown(report)
    assert "The rule could not be applied to U (no trivial baseline known here): their settings count." in md


def test_diverged_or_empty_best_is_set_apart():
    div = headline.decide("T", "sgdm", 1.0, headline.NoiseScores("rex", 0.1, None, np.array([1.0, math.inf]),
                                                                  "cross-fit"), 50.0)
    assert not div.counted and div.lo is None and "diverged" in div.reason and div.mean is None
    none = headline.decide("T", "sgdm", 1.0, headline.NoiseScores(None, None, None, np.empty(0), "cross-fit"), 50.0)
    assert not none.counted and none.n == 0 and "no schedule" in none.reason
    missing = headline.decide("T", "sgdm", 1.0, headline.NoiseScores("rex", 0.1, None, np.array([10.0, np.nan, 12.0]),
                                                                      "cross-fit"), 50.0)
    assert missing.n == 2 and missing.mean == 11.0  # a seed without a score is not a score


def test_evaluation_seed_scores_are_the_rankings():
    keys = [("a", 0.1, None), ("a", 0.3, None), ("b", 0.1, None)]
    val = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    te = np.array([[40.0, 41.0, 42.0], [np.nan] * 3, [45.0, 46.0, 47.0]])
    r = fair.rank_setting(keys, val, val, [None] * 3, ["a", "b"], test_eval=te)
    n = headline.noise_scores(r, keys, val, val, [None] * 3)
    assert r.mode == "evaluation-seeds" and (n.label, n.lr, n.mode) == ("a", 0.1, "evaluation-seeds")
    assert n.scores.tolist() == [40.0, 41.0, 42.0]
    h = headline.decide("T", "sgdm", 1.0, n, 50.0)
    assert (h.lo, h.hi) == pytest.approx((9 - T975_2 / math.sqrt(3), 9 + T975_2 / math.sqrt(3))) and h.counted


def test_table1_counts_only_the_counted_settings(report):
    t = report.table1
    assert t["rex"]["low"].n == 2 and t["rex"]["low"].n_top1 == 2 and t["rex"]["low"].top1 == 1.0
    assert t["linear"]["high"].n == 2 and t["linear"]["high"].top1 == 1.0
    assert t["rex"]["overall"].top1 == pytest.approx(2 / 4) and t["linear"]["overall"].top1 == pytest.approx(2 / 4)
    assert sum(c["overall"].top1 for c in t.values()) == pytest.approx(1.0)  # Top-1 shares sum to 1 over them
    assert [(s.task, s.optimizer, s.budget) for s in report.table1_settings()] == [
        ("T", "sgdm", 10.0), ("T", "sgdm", 100.0), ("T", "adam", 10.0), ("U", "sgdm", 50.0)]
    assert [(s.task, s.optimizer, s.budget) for s in report.set_apart_settings()] == [
        ("T", "sgdm", 1.0), ("T", "adam", 1.0)]
    assert {b.budget: b.n_settings for b in report.by_budget} == {10.0: 2, 50.0: 1, 100.0: 1}


def test_all_settings_restores_the_old_numbers(report, old_view):
    t = old_view.table1
    assert t["rex"]["overall"].top1 == pytest.approx(2 / 6) and t["linear"]["overall"].top1 == pytest.approx(4 / 6)
    assert t["rex"]["low"].top1 == t["linear"]["low"].top1 == 0.5 and t["linear"]["high"].top1 == 1.0
    # the old view is the report of the same rows where no baseline is known: the rule decides nothing
    none = build_report(ROWS, baselines={"T": None, "U": None}, resamples=200)
    assert none.table1 == old_view.table1 and none.by_budget == old_view.by_budget
    # and its statistics are those of every setting (what build_report computed before the rule), with T's baseline
    opts = dict(low_limit=25.0, resamples=200, seed=0, confidence=0.95)
    assert json.dumps(old_view.statistics, sort_keys=True) == json.dumps(
        summary.statistics(old_view.settings, old_view.subject, opts, BASE), sort_keys=True)
    # the rule's view: the statistics of the counted settings only (here the same numbers, since FLAT's and
    # WORSE's normalised scores have no scale - their best does not beat the baseline - and drop out either way)
    assert json.dumps(report.statistics, sort_keys=True) == json.dumps(
        summary.statistics(report.table1_settings(), report.subject, opts, BASE), sort_keys=True)
    assert len(old_view.table1_settings()) == 6 and len(old_view.set_apart_settings()) == 2  # still listed
    md = to_markdown(old_view)
    assert ("All 6 settings counted (--all-settings: the headline rule of docs/tasks.md not applied; it sets apart "
            "2)") in md
    assert "They are counted anyway in this report (--all-settings)." in md


def test_the_report_says_n_of_m_and_lists_the_set_apart(report):
    md = to_markdown(report)
    table1 = md.split("## Table 1", 1)[1].split("\n|", 1)[0]
    assert "4 of 6 settings counted (docs/tasks.md, headline rule)." in table1
    assert "2 set apart: listed under \"Set apart by the headline rule\"" in table1
    assert ("The rule was not applied to 1 setting with one score (no noise measured): they count, with no fairness "
            "claim.") in table1
    apart = md.split("## Set apart by the headline rule", 1)[1].split("\n## ", 1)[0]
    lines = [x for x in apart.splitlines() if x.startswith("| T ")]
    assert lines == [
        "| T | sgdm | 1% | linear (lr 0.1) | 50.33 | 50.00 | [−6.58, +5.92] | 3 (tuning seeds, next-seed "
        "cross-fitted) | not clear of the baseline: the interval contains 0 |",
        "| T | adam | 1% | linear (lr 0.1) | 61.00 | 50.00 | [−13.48, −8.52] | 3 (tuning seeds, next-seed "
        "cross-fitted) | worse than the baseline: the interval lies below 0 |"]
    # the per-task ranking marks them too
    assert "| sgdm | 1% (set apart: headline rule) | 3 |" in md and "| sgdm | 10% | 3 |" in md
    # the statistics and per-budget sections say what they count
    assert md.count("4 of 6 settings counted (docs/tasks.md, headline rule).") >= 2


def test_json_and_csv_carry_the_decision(report, old_view):
    js = to_json(report)
    assert js["headline_rule"] == {"all_settings": False, "counted": 4, "of": 6, "set_apart": 2,
                                   "not_applied_to": ["U"],
                                   "text": "4 of 6 settings counted (docs/tasks.md, headline rule)."}
    by = {(s["task"], s["optimizer"], s["budget"]): s for s in js["settings"]}
    flat = by[("T", "sgdm", 1.0)]
    assert flat["headline"]["counted"] is False and flat["counted_in_table1"] is False
    assert (flat["headline"]["lo"], flat["headline"]["hi"]) == pytest.approx((-6.584943, 5.918276), abs=1e-6)
    assert by[("T", "sgdm", 10.0)]["headline"]["counted"] is True and by[("U", "sgdm", 50.0)]["headline"][
        "rule_applied"] is False
    assert js["n_settings_counted"] == 4
    one = by[("T", "sgdm", 100.0)]["headline"]
    assert one["counted"] is True and one["rule_applied"] is False and one["n"] == 1
    old = to_json(old_view)
    assert old["headline_rule"]["all_settings"] is True and old["n_settings_counted"] == 6
    assert {s["counted_in_table1"] for s in old["settings"]} == {True}
    csv_rows = [dict(zip(to_csv(report).splitlines()[0].split(","), line.split(",")))
                for line in to_csv(report).splitlines()[1:]]
    flat_rows = [r for r in csv_rows if (r["task"], r["optimizer"], r["budget"]) == ("T", "sgdm", "1.0")]
    assert {(r["counted_in_table1"], r["headline_counted"], r["baseline"], r["headline_n"]) for r in flat_rows} == {
        ("False", "False", "50.0", "3")}


def test_bad_options_are_usage_errors():
    from budgetsched.errors import UsageError

    with pytest.raises(UsageError, match="all_settings"):
        build_report(ROWS, all_settings="yes")
    with pytest.raises(UsageError, match=r"baselines\['T'\].*nan"):
        build_report(ROWS, baselines={"T": math.nan})


def test_cli_all_settings(tmp_path, capsys, monkeypatch):
    """``budgetsched report`` applies the rule with the registry's baselines and ``--all-settings`` lifts it."""
    monkeypatch.setitem(summary._BASELINES, "T", 50.0)  # task T's trivial baseline, as the registry would give it
    monkeypatch.setitem(summary._BASELINES, "U", None)
    db = tmp_path / "s.db"
    with Store(db) as store:
        for r in ROWS:
            store.put(TrialConfig(r.task, r.schedule, r.optimizer, r.budget, r.lr, r.seed, r.params),
                      dict(status="done", val_loss=1.0, val_metric=r.val_metric, test_loss=1.0,
                           test_metric=r.test_metric, curves={}, steps=1, wall_time=0.0))
    assert main(["report", str(db), "--format", "json", "--resamples", "200"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert (js["headline_rule"]["counted"], js["headline_rule"]["of"]) == (4, 6)
    assert js["table1"]["rex"]["overall"]["top1"] == pytest.approx(2 / 4)
    assert main(["report", str(db), "--format", "json", "--resamples", "200", "--all-settings"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["headline_rule"]["all_settings"] is True
    assert js["table1"]["rex"]["overall"]["top1"] == pytest.approx(2 / 6)


def test_stand_ins_and_the_papers_merge_score_the_rankings_row():
    """The rule scores the very row Table 1 ranks first, on the same candidates: a plateau stand-in (constant's
    run) is not step's candidate in the paper's merge. Validation is the same on every seed, so next-seed and
    leave-one-out choose alike and the rule's scores are the ranking's."""
    keys = [("constant", .1, None), ("constant", .3, None), ("plateau", .1, 5), ("plateau", .3, 5),
            ("rex", .1, None), ("rex", .3, None), ("step", .1, None), ("step", .3, None)]
    stand = [None, None, "constant", "constant", None, None, None, None]
    base = np.array([3.0, 4.0, 0.5, 0.6, 2.0, 2.5, 3.5, 1.0])  # the stand-ins would win if they were step's
    val = np.repeat(base[:, None], 3, axis=1)
    test = val + np.array([0.0, 0.1, 0.2])
    r = fair.rank_setting(keys, val, test, stand, ["constant", "step", "rex"], merge=True)
    n = headline.noise_scores(r, keys, val, test, stand, merge=True)
    assert (n.label, n.lr, n.patience) == ("step", 0.3, None)  # step's own LR 0.3, not plateau's stand-in
    assert n.scores.tolist() == r.scores[r.best].tolist() == [1.0, 1.1, 1.2]
