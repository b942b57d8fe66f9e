"""Report uncertainty, selection and bookkeeping on hand-made rows whose answers are worked out in each test.

Rows are built by hand in the ``Store.rows()`` shape (with the new ``total_steps``, ``budget_unit`` and ``stand_in``
fields) and typed as the store types them (``tests/_rows.py``), so these tests do not depend on a store or a runner.
Lower is better throughout.
"""
from __future__ import annotations

import ast
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from scipy import stats as sps

import budgetsched.bench.rendering.plots as plots
from budgetsched.bench import report as _report
from budgetsched.bench.report import SameRun, Table1Cell, render_rich, to_csv, to_json, to_markdown
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.protocol.status import Status

from _rows import typed


def build_report(rows, *args, **kwargs):
    """The report of hand-made rows, typed first as the store types its rows (tests/_rows.py)."""
    return _report.build_report(typed(rows), *args, **kwargs)


def row(schedule="rex", lr=0.1, seed=0, val=1.0, test=None, *, task="T", opt="sgdm", budget=10.0,
        status=Status.DONE, patience=None, stand_in=None, total_steps=None, budget_unit="steps"):
    params = {"patience": patience} if patience is not None else {}
    test = val if test is None else test
    finished = status == Status.DONE
    return {
        "key": f"{task}/{opt}/{budget}/{schedule}/{lr}/{patience}/{seed}", "task": task, "schedule": schedule,
        "schedule_params": params, "label": schedule, "optimizer": opt, "budget": float(budget), "lr": float(lr),
        "seed": seed, "status": str(status), "val_loss": None, "test_loss": None,
        "val_metric": val if finished else None, "test_metric": test if finished else None,
        "curves": {}, "steps": 1, "wall_time": 0.0, "error": None if status != Status.FAILED else "boom",
        "config": {}, "budget_unit": budget_unit, "total_steps": total_steps, "stand_in": stand_in,
    }


def seeds(schedule, values, lr=0.1, **kw):
    """One row per seed; ``values`` are (val, test) pairs or single numbers (val == test)."""
    out = []
    for s, v in enumerate(values):
        val, test = v if isinstance(v, tuple) else (v, v)
        out.append(row(schedule, lr, s, val, test, **kw))
    return out


def setting_of(report, budget=10.0, task="T", opt="sgdm"):
    (s,) = [s for s in report.settings if (s.task, s.optimizer, s.budget) == (task, opt, budget)]
    return s


# ------------------------------------------------------------------------------------------------ paired design
# Seed effects of 0, 3 and 6 dominate: every schedule's spread over seeds is 3, far larger than the gaps.
# rex beats linear on every seed by d = (0.10, 0.12, 0.08): mean 0.1, sd 0.02, so the paired t statistic is
# 0.1 / (0.02 / sqrt 3) = 8.66 on 2 degrees of freedom. cosine is 2 worse on every seed.
OFFSETS = (0.0, 3.0, 6.0)
D = (0.10, 0.12, 0.08)


def paired_rows():
    rex = [10 + o for o in OFFSETS]
    linear = [10 + o + d for o, d in zip(OFFSETS, D)]
    cosine = [12 + o for o in OFFSETS]
    return (seeds("rex", rex) + seeds("linear", linear) + seeds("cosine", cosine)
            + seeds("rex", [v + 5 for v in rex], lr=0.3) + seeds("linear", [v + 5 for v in linear], lr=0.3))


def test_paired_win_on_every_seed_has_high_top1_probability_although_stds_overlap():
    rep = build_report(paired_rows())
    s = setting_of(rep)
    rex, linear = s.results["rex"], s.results["linear"]
    # unpaired, the two results are indistinguishable: the gap (0.1) is a thirtieth of either std (3)
    assert linear.mean - rex.mean == pytest.approx(0.1)
    assert rex.std == pytest.approx(3.0) and linear.std == pytest.approx(3.0, abs=0.03)
    assert linear.mean - rex.mean < min(rex.std, linear.std) / 10
    assert rex.lo < linear.mean and linear.lo < rex.mean  # the intervals of the two means overlap
    # paired: P(rex is Top-1) = P(t_2 < 8.66) (Student-t posterior of the paired mean; LR choice is clear-cut)
    t = 0.1 / (np.std(D, ddof=1) / math.sqrt(3))
    assert rex.p_top1 == pytest.approx(sps.t.cdf(t, 2), abs=0.005)  # 0.9935; Monte-Carlo error ~0.0013
    assert rex.p_top1 > 0.98 and linear.p_top1 == pytest.approx(1 - rex.p_top1)
    assert rex.p_top3 == linear.p_top3 == 1.0  # three schedules: everyone is Top-3
    assert (s.best, s.runner_up, s.tied) == ("rex", "linear", False)


def test_paired_difference_interval_is_the_paired_t_interval():
    rep = build_report(paired_rows())
    d = setting_of(rep).vs_reference["rex"]  # rex - linear, reference linear by default
    assert (d.label, d.against, d.n) == ("rex", "linear", 3)
    assert d.value == pytest.approx(-0.1)
    rex = [10 + o for o in OFFSETS]
    linear = [10 + o + x for o, x in zip(OFFSETS, D)]
    ci = sps.ttest_rel(rex, linear).confidence_interval(0.95)  # -0.1 -/+ 4.303 * 0.02 / sqrt 3 = [-0.150, -0.050]
    half = (ci.high - ci.low) / 2
    assert d.lo == pytest.approx(ci.low, abs=0.2 * half) and d.hi == pytest.approx(ci.high, abs=0.2 * half)
    assert d.clear == "better"
    assert d.relative == pytest.approx(-0.1 / linear_mean()) and setting_of(rep).vs_reference["cosine"].value == \
        pytest.approx(2 - 0.1)


def linear_mean():
    return float(np.mean([10 + o + x for o, x in zip(OFFSETS, D)]))


def test_identical_schedules_are_tied():
    # linear and cosine equal on every seed; rex 1 worse on every seed
    base = [5.0, 7.0, 6.0]
    rows = seeds("linear", base) + seeds("cosine", base) + seeds("rex", [b + 1 for b in base])
    rep = build_report(rows)
    s = setting_of(rep)
    assert {k: r.rank for k, r in s.ranking.items()} == {"cosine": 1, "linear": 1, "rex": 3}
    assert s.results["linear"].p_top1 == s.results["cosine"].p_top1 == 1.0 and s.results["rex"].p_top1 == 0.0
    assert (s.best, s.runner_up) == ("cosine", "linear")  # display order among ties
    assert (s.gap.value, s.gap.lo, s.gap.hi) == (0.0, 0.0, 0.0) and s.tied is True
    for label in ("linear", "cosine"):  # Table 1 credits the tied first place once: half to each
        assert rep.table1[label]["overall"].n_top1 == 0.5 and rep.table1[label]["overall"].n_clear_top1 == 0
    assert sum(rep.table1[x]["overall"].top1 for x in rep.table1) == 1.0
    md = to_markdown(rep)
    assert "| sgdm | 10% | 3 | cosine (1.00) | linear (1.00) | +0.00 [+0.00, +0.00] | tied |" in md
    assert "tied within noise (the 95 % interval of runner-up − best contains 0): 1 of 1." in md


def test_chosen_lr_at_grid_edge_is_flagged():
    rows = (seeds("rex", [3, 3], lr=0.01) + seeds("rex", [2, 2], lr=0.03) + seeds("rex", [1, 1], lr=0.1)
            + seeds("linear", [3, 3], lr=0.01) + seeds("linear", [1, 1], lr=0.03) + seeds("linear", [2, 2], lr=0.1)
            + seeds("cosine", [1, 1], lr=0.01) + seeds("cosine", [2, 2], lr=0.03) + seeds("cosine", [3, 3], lr=0.1)
            + seeds("exp", [1, 1], lr=0.03))
    rep = build_report(rows)
    res = setting_of(rep).results
    assert {k: (c.lr, c.lr_edge) for k, c in res.items()} == {
        "rex": (0.1, "high"), "linear": (0.03, None), "cosine": (0.01, "low"), "exp": (0.03, "only")}
    assert res["rex"].lr_grid == (0.01, 0.03, 0.1)
    md = to_markdown(rep)
    choice_table = md.split("### T: chosen LR")[1].split("###")[0]
    assert "| + rex | 0.1↑ · " in choice_table and "| + cosine | 0.01↓ · " in choice_table
    assert "| + linear | 0.03 · " in choice_table and "| + exp | 0.03 (only LR) · " in choice_table
    got = {r["schedule"]: r["lr_edge"] for r in csv.DictReader(io.StringIO(to_csv(rep)))}
    assert got == {"rex": "high", "linear": "", "cosine": "low", "exp": "only"}
    j = to_json(rep)["settings"][0]["schedules"]
    assert (j["rex"]["lr_edge"], j["rex"]["lr_grid"]) == ("high", [0.01, 0.03, 0.1])


def test_a_failed_lr_still_belongs_to_the_grid():
    # rex failed at 0.3: the grid tried was 0.1 and 0.3, so 0.1 is the low edge, not the only LR
    rows = seeds("rex", [1, 1]) + [row("rex", 0.3, s, status=Status.FAILED) for s in (0, 1)] + seeds("linear", [2, 2])
    c = setting_of(build_report(rows)).results["rex"]
    assert (c.lr, c.lr_grid, c.lr_edge) == (0.1, (0.1, 0.3), "low")


# ------------------------------------------------------------------------------------------------ plateau into step
def test_plateau_into_step_merge_uses_validation_not_test():
    # plateau: val 9 (better than step's 10) but test 12 (worse than step's 10). Validation picks plateau, so
    # step is ranked as 12 and linear (11) is Top-1. Picking by test would have ranked step as 10, Top-1.
    rows = (seeds("step", [10, 10]) + seeds("plateau", [(9, 12), (9, 12)], patience=5)
            + seeds("linear", [11, 11]))
    s = setting_of(build_report(rows, plateau_into_step=True))
    assert s.ranking["step"].source == "plateau" and s.ranking["step"].mean == 12.0
    assert s.results["step"].ranked_as == "plateau" and s.results["step"].mean == 10.0  # step's own result kept
    assert {k: r.rank for k, r in s.ranking.items()} == {"step": 2, "linear": 1}
    assert s.results["plateau"].rank is None and "plateau" not in s.ranking
    # reversed: plateau worse on validation (11), better on test (8): step keeps its own 10
    rows = (seeds("step", [10, 10]) + seeds("plateau", [(11, 8), (11, 8)], patience=5)
            + seeds("linear", [11, 11]))
    s = setting_of(build_report(rows, plateau_into_step=True))
    assert s.ranking["step"].source == "step" and s.ranking["step"].mean == 10.0 and s.results["step"].ranked_as is None
    assert {k: r.rank for k, r in s.ranking.items()} == {"step": 1, "linear": 2}


def test_plateau_as_its_own_row_when_not_merged():
    # the same study as above: merged (the paper's view) step is ranked as plateau's 12; unmerged, plateau (12) and
    # step (10) are two rows and step is Top-1
    rows = (seeds("step", [10, 10]) + seeds("plateau", [(9, 12), (9, 12)], patience=5)
            + seeds("linear", [11, 11]))
    rep = build_report(rows, plateau_into_step=False)
    s = setting_of(rep)
    assert {k: (r.source, r.rank) for k, r in s.ranking.items()} == {
        "step": ("step", 1), "plateau": ("plateau", 3), "linear": ("linear", 2)}
    assert s.results["step"].ranked_as is None and s.results["plateau"].rank == 3
    assert set(rep.table1) == {"step", "plateau", "linear"} and rep.table1["plateau"]["overall"].n == 1
    md = to_markdown(rep)
    assert "| step | 100% (1/1) |" in md and "step (incl. plateau)" not in md
    assert "plateau is a schedule of its own" in md and "· in step" not in md and "· not used" not in md
    assert to_json(rep)["protocol"]["ranking"].endswith("plateau its own schedule")
    with pytest.raises(ValueError, match="plateau_into_step must be True or False, got 'no'"):
        build_report(rows, plateau_into_step="no")


def test_plateau_stands_for_a_missing_step_without_a_fake_row():
    rows = seeds("plateau", [4, 4], patience=5) + seeds("linear", [5, 5])
    rep = build_report(rows, plateau_into_step=True)
    s = setting_of(rep)
    assert "step" not in s.results and s.ranking["step"].source == "plateau" and s.ranking["step"].rank == 1
    assert s.missing == [] and rep.table1["step"]["overall"].n_top1 == 1
    r = {x["schedule"]: x for x in csv.DictReader(io.StringIO(to_csv(rep)))}
    assert (r["step"]["status"], r["step"]["rank"], r["step"]["ranked_as"]) == ("missing", "1", "plateau")


def test_plateau_stand_in_for_constant_is_labelled_and_still_stands_for_step():
    # Patience 50 never triggers in this budget: its rows reuse constant's trials (stand_in="constant").
    rows = (seeds("constant", [6, 6]) + seeds("plateau", [6, 6], patience=50, stand_in="constant")
            + seeds("step", [7, 7]) + seeds("linear", [8, 8]))
    rep = build_report(rows, plateau_into_step=True)
    s = setting_of(rep)
    assert s.results["plateau"].stand_in == "constant" and s.results["constant"].stand_in is None
    assert s.ranking["step"].source == "plateau" and s.ranking["step"].mean == 6.0
    assert s.ranking["step"].rank == s.ranking["constant"].rank == 1
    # Table 1 credits constant's run once: the stand-in is no finish of step's (step's own 7 is second)
    assert rep.table1["constant"]["overall"].n_top1 == 1 and rep.table1["step"]["overall"].n_top1 == 0
    assert s.fair.stand_in_only == () and s.fair.n_candidates.tolist() == [1, 1, 1]  # constant, step, linear
    own = build_report(rows)  # plateau its own row: all its candidates are constant's runs, so it has no result
    assert own.table1["plateau"]["overall"].n_present == 0 and own.table1["constant"]["overall"].n_top1 == 1
    assert setting_of(own).fair.stand_in_only == ("plateau",)
    md = to_markdown(rep)
    assert "| + plateau | **6.00 ± 0.00 †** |" in md and "(= constant)" in md
    assert "† plateau's chosen patience" in md
    assert to_json(rep)["settings"][0]["schedules"]["plateau"]["stand_in"] == "constant"


# ------------------------------------------------------------------------------------------------ one seed
def test_one_seed_shows_n1_and_no_interval():
    rows = [row("rex", 0.1, 0, 1.0), row("linear", 0.1, 0, 2.0), row("cosine", 0.1, 0, 1.5)]
    rep = build_report(rows)
    s = setting_of(rep)
    assert s.n_seeds == 1 and s.tied is None and s.gap.lo is None
    for c in s.results.values():
        assert c.lo is c.hi is c.p_top1 is c.p_top3 is None and c.rank is not None
    md = to_markdown(rep)
    assert "± 0.00" not in md and "±" not in md.split("## T:")[1].split("###")[0]
    assert "| + rex | **1.00 (n=1)** |" in md and "−1.00 (n=1)" in md and "| n=1 |" in md
    assert "Seeds per setting: 1." in md
    j = to_json(rep)
    assert j["settings"][0]["schedules"]["rex"]["std"] is None and j["settings"][0]["tied_within_noise"] is None
    assert all(r["p_top1"] == "" and r["lo"] == "" and r["std"] == "" for r in csv.DictReader(io.StringIO(to_csv(rep))))
    console = Console(record=True, width=250, color_system=None)
    render_rich(rep, console)
    text = console.export_text()
    assert "± 0.00" not in text and "n=1" in text


# ------------------------------------------------------------------------------------------------ same run twice
def test_budgets_that_are_one_run_are_counted_once():
    # total_steps 20 at 1, 5 and 10 % (rounded up to one epoch); 100 at 50 %, 200 at 100 %. rex wins everywhere.
    rows = []
    for budget, steps in ((1.0, 20), (5.0, 20), (10.0, 20), (50.0, 100), (100.0, 200)):
        kw = dict(budget=budget, total_steps=steps, budget_unit="epochs")
        rows += seeds("rex", [1, 1.2], **kw) + seeds("linear", [2, 2.1], **kw)
    rep = build_report(rows)
    by = {s.budget: s for s in rep.settings}
    assert [b for b, s in by.items() if not s.counted] == [1.0, 5.0]
    assert by[1.0].same_run_as == by[5.0].same_run_as == 10.0 and by[10.0].counted
    assert rep.table1["rex"]["low"].n == 1 and rep.table1["rex"]["overall"].n == 3  # 10, 50, 100 %
    assert rep.duplicates == [SameRun(task="T", optimizer="sgdm", total_steps=20, budgets=(1.0, 5.0, 10.0),
                                      counted_as=10.0, real_percent=10.0, budget_unit="epochs")]
    assert [r.budget for r in rep.by_budget] == [10.0, 50.0, 100.0]
    md = to_markdown(rep)
    assert ("T / sgdm: budgets 1%, 5%, 10% are one run (20 steps, 10 % of the 100 % run); Table 1 counts it once, "
            "as 10%.") in md
    assert "| 1% (= 10% run) |" in md  # per-task column header
    assert "Budgets counted in epochs (whole epochs, rounded up)." in md
    assert sum(s["counted_in_table1"] for s in to_json(rep)["settings"]) == 3


def test_rows_without_total_steps_are_never_merged():
    rows = seeds("rex", [1, 1], budget=1.0) + seeds("rex", [1, 1], budget=5.0)
    for r in rows:  # a store that keeps the unit only in the config
        r["budget_unit"], r["config"] = None, {"budget_unit": "steps"}
    rep = build_report(rows)
    assert all(s.counted for s in rep.settings) and rep.duplicates == []
    assert [s.budget_unit for s in rep.settings] == ["steps", "steps"]


# ------------------------------------------------------------------------------------------------ study level
def deterministic_study(wins: int, n: int):
    """n settings (budgets 1..n, all low): rex beats linear by exactly 1 on every seed in the first ``wins``,
    loses by exactly 1 in the others. No seed noise in the gaps, so every draw ranks as the point estimate."""
    rows = []
    for i in range(n):
        sign = -1 if i < wins else 1
        rows += seeds("rex", [5 + sign, 8 + sign, 6 + sign], budget=float(i + 1))
        rows += seeds("linear", [5, 8, 6], budget=float(i + 1))
    return rows


def test_table1_interval_is_the_bootstrap_stratified_by_task():
    # Each setting's Top-1 finish is the same in every draw (the gap is exactly 1 on every seed), and the 10
    # settings are one task, so a draw's share is the fraction of 10 settings drawn with replacement that are among
    # the 7 rex wins: Binomial(10, 0.7) / 10 exactly; its 95 % interval is binom.ppf(0.025 / 0.975, 10, 0.7) / 10
    # = [0.4, 1.0] (P(X <= 9) = 0.972 lies close to 0.975: the upper end is 0.9 or 1.0 by Monte-Carlo chance).
    rep = build_report(deterministic_study(7, 10), low_limit=25.0)
    cell = rep.table1["rex"]["low"]
    assert (cell.n_top1, cell.n, cell.top1) == (7, 10, 0.7)
    lo, hi = sps.binom.ppf([0.025, 0.975], 10, 0.7) / 10
    assert cell.top1_ci[0] == pytest.approx(lo) and cell.top1_ci[1] in (pytest.approx(hi), pytest.approx(hi - 0.1))
    assert rep.table1["linear"]["low"].top1_ci == pytest.approx((1 - cell.top1_ci[1], 1 - cell.top1_ci[0]))
    assert rep.table1["rex"]["low"].top3_ci == (1.0, 1.0) and rep.table1["rex"]["high"].top1_ci is None
    assert cell.n_clear_top1 == 7  # each gap is exactly 1 on every seed: clear
    md = to_markdown(rep)
    assert "| rex | 70% (7/10) | 100% (10/10) | — | — | 70% (7/10) | 100% (10/10) |" in md
    got_lo, got_hi = cell.top1_ci
    assert f"| ↳ 95 % interval | {100 * got_lo:.0f}–{100 * got_hi:.0f}% | 100–100% | — | — |" in md


def test_per_budget_summary_of_subject_against_reference_and_best_other():
    # Budget 5 %: two tasks where rex - linear is -1.1 and -2.2 on every seed, i.e. -10 % and -20 % of linear's mean
    # (11); cosine is worse than linear, so the best other (by validation) is linear. Mean relative difference
    # -15 %; with fixed per-setting values and Dirichlet(1, 1) weights the mean is uniform on [-20 %, -10 %]:
    # interval [-19.75 %, -10.25 %].
    rows = []
    for task, rel in (("A", 0.1), ("B", 0.2)):
        lin = [10.0, 12.0, 11.0]
        rows += seeds("linear", lin, task=task, budget=5.0)
        rows += seeds("rex", [v - 11 * rel for v in lin], task=task, budget=5.0)
        rows += seeds("cosine", [v + 3 for v in lin], task=task, budget=5.0)
    rep = build_report(rows)
    (b,) = rep.by_budget
    for key in ("vs_reference", "vs_best_other"):
        c = getattr(b, key)
        assert (c.n, c.better, c.worse, c.clear_better, c.clear_worse) == (2, 2, 0, 2, 0)
        assert c.mean_relative == pytest.approx(-0.15)
        assert c.ci == pytest.approx((-0.1975, -0.1025), abs=0.003)
        assert c.against == ("linear",)
    assert setting_of(rep, 5.0, task="A").vs_best_other.against == "linear"
    md = to_markdown(rep)
    (line,) = [x for x in md.splitlines() if x.startswith("| 5% |")]
    cells = [x.strip() for x in line.strip("|").split("|")]
    assert cells[:2] == ["5%", "2"] and cells[3] == cells[5] == "2 / 0 (2 / 0)" and cells[6] == "linear"
    assert cells[2].startswith("−15.0% [−19.") and cells[4].startswith("−15.0% [−19.")


def test_best_other_is_chosen_by_validation_not_test():
    # cosine has the best test (7) but worse validation (9.5) than linear (val 9, test 9): the rival is linear.
    rows = seeds("rex", [8, 8.2, 8.1]) + seeds("linear", [(9, 9), (9, 9), (9, 9)]) \
        + seeds("cosine", [(9.5, 7), (9.5, 7), (9.5, 7)])
    d = setting_of(build_report(rows)).vs_best_other
    assert d.against == "linear" and d.value == pytest.approx(8.1 - 9)


# ------------------------------------------------------------------------------------------------ options, formats
def test_options_are_validated_and_named():
    rows = paired_rows()
    with pytest.raises(ValueError, match=r"reference schedule 'nope' is not in the study; choose from cosine, "
                                         r"linear, rex"):
        build_report(rows, reference="nope")
    with pytest.raises(ValueError, match=r"subject schedule 'plateau' is not ranked in Table 1; choose from cosine, "
                                         r"linear, rex"):
        build_report(rows, subject="plateau")
    with pytest.raises(ValueError, match=r"resamples must be an integer >= 200, got 10"):
        build_report(rows, resamples=10)
    with pytest.raises(ValueError, match=r"resampling seed must be an integer >= 0, got -1"):
        build_report(rows, seed=-1)
    with pytest.raises(ValueError, match=r"unknown resampling method 'boot'; choose from t, dirichlet"):
        build_report(rows, method="boot")
    rep = build_report(rows, reference="cosine", subject="linear")
    assert set(setting_of(rep).vs_reference) == {"rex", "linear"}
    assert rep.by_budget[0].vs_reference.against == ("cosine",)
    no_linear = [r for r in rows if r["label"] != "linear"]
    rep = build_report(no_linear)  # the default reference is optional: no comparison, no error
    assert rep.reference is None and setting_of(rep).vs_reference == {}


def test_reports_are_reproducible_and_seeded():
    rows = paired_rows()
    a, b = to_json(build_report(rows, seed=3)), to_json(build_report(rows, seed=3))
    assert a == b
    c = to_json(build_report(rows, seed=4))
    assert c["settings"][0]["schedules"]["rex"]["p_top1"] != a["settings"][0]["schedules"]["rex"]["p_top1"]
    assert c["settings"][0]["schedules"]["rex"]["p_top1"] == pytest.approx(
        a["settings"][0]["schedules"]["rex"]["p_top1"], abs=0.01)
    # one setting's draws do not depend on the other settings of the study
    more = rows + seeds("rex", [1, 2, 3], budget=50.0) + seeds("linear", [1.5, 2, 3], budget=50.0)
    p_top1 = a["settings"][0]["schedules"]["rex"]["p_top1"]
    assert setting_of(build_report(more, seed=3)).results["rex"].p_top1 == p_top1


def test_every_format_carries_the_uncertainty():
    rep = build_report(paired_rows(), resamples=1000)
    j = to_json(rep)
    json.dumps(j, allow_nan=False)
    assert j["uncertainty"] == {"method": "t", "resamples": 1000, "seed": 0, "confidence": 0.95,
                                "seeds_per_setting": [3]}
    s = j["settings"][0]
    assert s["n_seeds"] == 3 and s["tied_within_noise"] is False and s["best"] == "rex"
    assert s["vs_reference"]["rex"]["clear"] == "better" and s["vs_best_other"]["against"] == "linear"
    assert set(j["table1"]["rex"]["overall"]) >= {"top1_ci", "top3_ci", "n_clear_top1"}
    rows = {r["schedule"]: r for r in csv.DictReader(io.StringIO(to_csv(rep)))}
    assert float(rows["rex"]["p_top1"]) > 0.98 and float(rows["rex"]["diff_vs_reference"]) == pytest.approx(-0.1)
    assert float(rows["rex"]["diff_lo"]) < float(rows["rex"]["diff_hi"]) < 0
    assert rows["linear"]["diff_vs_reference"] == ""
    assert rows["rex"]["n_seeds"] == "3" and rows["rex"]["tied_within_noise"] == "False"
    md = to_markdown(rep, figures={"Figure 2: test metric vs budget": "figs/figure2.png"})
    for needle in ("## Table 1", "| ↳ 95 % interval |", "Top-1 finishes clear of noise",
                   "## rex against linear and the best other schedule, per budget", "### T: ranking per setting",
                   "### T: paired difference against linear", "1000 draws per setting (seed 0)",
                   "![Figure 2: test metric vs budget](figs/figure2.png)", "## Missing trials"):
        assert needle in md, needle
    console = Console(record=True, width=250, color_system=None)
    render_rich(rep, console)
    text = console.export_text()
    for needle in ("95 % interval", "ranking per setting", "paired difference against linear", "clear",
                   "1000 draws per setting"):
        assert needle in text, needle


def test_plots_use_only_public_report_helpers():
    tree = ast.parse(Path(plots.__file__).read_text())
    imported = [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "budgetsched.bench.analysis.report" for a in node.names]
    assert imported and not [n for n in imported if n.startswith("_")]


def test_a_setting_where_every_trial_failed_is_listed_not_ranked():
    rows = seeds("rex", [1, 2], budget=5.0) + seeds("linear", [2, 3], budget=5.0) \
        + [row(x, 0.1, s, budget=50.0, status=Status.FAILED) for x in ("rex", "linear") for s in (0, 1)]
    rep = build_report(rows)
    s = setting_of(rep, 50.0)
    assert s.results == {} and s.ranking == {} and s.n_seeds == 0 and s.best is None and s.tied is None
    assert s.missing == ["linear", "rex"] and rep.table1["rex"]["high"] == Table1Cell(
        top1=None, top3=None, n=0, n_top1=0, n_top3=0, n_clear_top1=0, top1_ci=None, top3_ci=None)
    assert "| sgdm | 50% | 0 | — | — | — | — |" in to_markdown(rep)


def test_planned_trials_without_a_row_are_missing():
    # the design: rex and linear at LRs 0.1 and 0.3, seeds 0-2, budgets 10 and 50 %; rows: rex and linear at LR 0.1,
    # seeds 0 and 1, at 10 % only. Missing: LR 0.3 of both (never run at all) and seed 2 everywhere at 10 %; the
    # 50 % budget has no row at all (it may be the same run as a larger budget), so it is not listed.
    design = [TrialConfig("T", name, "sgdm", b, lr, seed) for name in ("rex", "linear") for b in (10.0, 50.0)
              for lr in (0.1, 0.3) for seed in range(3)]
    rows = seeds("rex", [1.0, 1.1]) + seeds("linear", [2.0, 2.1])
    assert build_report(rows, resamples=200).missing == []  # the rows alone imply nothing missing
    got = {(m.budget, m.schedule, m.lr, m.seed, m.reason) for m in build_report(rows, resamples=200,
                                                                                 planned=design).missing}
    assert got == {(10.0, name, lr, seed, "not run") for name in ("rex", "linear")
                   for lr, seed in ((0.1, 2), (0.3, 0), (0.3, 1), (0.3, 2))}
