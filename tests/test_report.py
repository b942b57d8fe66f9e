"""Report: Table 1 and the per-setting choices on a hand-made store whose answers are worked out below.

The study (lower is better; two seeds; each "t" below is a test mean, each seed is t -/+ 0.5 with the same
validation value v on both seeds, so the sample std is 0.5 * sqrt(2) = 0.7071 and the population std would be 0.5):

S1 A/sgdm/5 % (low)
    rex 10, cosine 12, exp 13, step 15 (the 0.3 LR of each is 5 worse on val and test).
    linear: lr 0.1 has val 11 / test 11; lr 0.3 has val 11.5 / test 9. Validation picks 0.1 -> 11.
            (Picking by test would give 9 and make linear Top-1 and REX second.)
    plateau: patience 5 has val 14.5 / test 13, patience 10 val 14 / test 14 -> patience 10, test 14.
            plateau (14) beats step (15), so step is ranked as 14.
    ranks: rex 1, linear 2, cosine 3, exp 4, step 5.
S2 A/sgdm/50 % (high)
    rex: lr 0.1 -> 20; lr 0.3 diverged on both seeds (+inf) -> 20. linear 20 (tie with rex). exp 23, step 22,
    plateau 24 (worse than step: step stays 22).
    cosine: lr 0.1 diverged on seed 0 and has val 19 / test 19 on seed 1 -> its score is +inf (ignoring the
            diverged seed would pick it and make cosine Top-1 with 19); lr 0.3 -> 21.
    ranks (competition): rex 1, linear 1, cosine 3, step 4, exp 5.
S3 A/adam/10 % (low): exp and plateau were never run (missing, not losses).
    linear 30, cosine 30, step 33.
    rex: lr 0.1 val 31 / test 31; lr 0.3 has seed 0 val 29 / test 34 and seed 1 *failed*. A failed trial is
         missing, so lr 0.3 scores 29 and is chosen: rex = 34 with n = 1, std 0.
         (Counting the failure as a loss would pick lr 0.1 -> 31, rank 3.)
    ranks: linear 1, cosine 1, step 3, rex 4.
S4 B/sgdm/1 % (low): rex 40, cosine 41, linear 42, exp 44, step 45, plateau 41.5 (stands for step).
    ranks: rex 1, cosine 2, step 3, linear 4, exp 5.   (Without the merge step would be 5 and linear 3.)
S5 B/sgdm/25 % (high: 25 is not < 25): linear 50, rex 51, cosine 52, step 53, plateau 53 (a tie: step keeps its
    own result), exp diverged at every LR (+inf, ranks last but counts).
    ranks: linear 1, rex 2, cosine 3, step 4, exp 5.

The ranks above are the paper's per-setting view (``Setting.ranking``, the same runs choose and score).

Table 1 (the paper's view: plateau merged into step) credits each finish once and scores every schedule apart from
the runs that chose it: cross-fitting over the two seeds, the LR for seed s chosen on the other seed's validation.
Validation is equal on both seeds here, so the choices and means are the ones above, except where a seed is missing
or diverged:
    S2 cosine: seed 0 is scored with lr 0.1 (chosen on seed 1's val 19), which diverged on seed 0 -> +inf, last;
       step (22) becomes third.
    S3 rex: seed 0 is scored with lr 0.1 (lr 0.3 has no other seed to be chosen on) -> 30.5; seed 1 chooses lr 0.3
       on seed 0's val 29 but failed there (missing): rex = 30.5, third.
    Ties share the place: S2 rex and linear 1/2 each, S3 linear and cosine 1/2 each. Every split's denominator is
    its number of settings (exp counts S3, where it is missing, with 0), so Top-1 credits sum to the settings.
    rex     low top1 2/3   top3 3/3 | high top1 0.5/2 top3 2/2 | overall top1 2.5/5 top3 5/5
    linear  low top1 0.5/3 top3 2/3 | high top1 1.5/2 top3 2/2 | overall top1 2/5   top3 4/5
    cosine  low top1 0.5/3 top3 3/3 | high top1 0/2   top3 1/2 | overall top1 0.5/5 top3 4/5
    exp     low top1 0/3   top3 0/3 | high top1 0/2   top3 0/2 | overall top1 0/5   top3 0/5   (missing in S3)
    step    low top1 0/3   top3 1/3 | high top1 0/2   top3 1/2 | overall top1 0/5   top3 2/5
"""
from __future__ import annotations

import csv
import io
import json
import math

import pytest
from rich.console import Console

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.report import build_report, to_csv, to_json, to_markdown, render_rich
from budgetsched.bench.storage.store import Store

from _rows import typed

D = "diverged"
F = "failed"


def two(v, t):
    """Two seeds with validation v and test t -/+ 0.5."""
    return [(v, t - 0.5), (v, t + 0.5)]


def std_sched(t):
    return [(0.1, None, two(t, t)), (0.3, None, two(t + 5, t + 5))]


def std_plateau(t):
    return [(lr, p, two(t + dv, t + dv)) for lr, dv in ((0.1, 0), (0.3, 5)) for p in (5, 10)]


SPEC = {
    ("A", "sgdm", 5.0): {
        "rex": std_sched(10),
        "linear": [(0.1, None, two(11, 11)), (0.3, None, two(11.5, 9))],
        "cosine": std_sched(12), "exp": std_sched(13), "step": std_sched(15),
        "plateau": [(0.1, 5, two(14.5, 13)), (0.1, 10, two(14, 14)), (0.3, 5, two(19, 19)), (0.3, 10, two(19, 19))],
    },
    ("A", "sgdm", 50.0): {
        "rex": [(0.1, None, two(20, 20)), (0.3, None, [D, D])],
        "linear": std_sched(20),
        "cosine": [(0.1, None, [D, (19, 19)]), (0.3, None, two(21, 21))],
        "exp": std_sched(23), "step": std_sched(22), "plateau": std_plateau(24),
    },
    ("A", "adam", 10.0): {
        "rex": [(0.1, None, two(31, 31)), (0.3, None, [(29, 34), F])],
        "linear": std_sched(30), "cosine": std_sched(30), "step": std_sched(33),
    },
    ("B", "sgdm", 1.0): {
        "rex": std_sched(40), "cosine": std_sched(41), "linear": std_sched(42), "exp": std_sched(44),
        "step": std_sched(45), "plateau": std_plateau(41.5),
    },
    ("B", "sgdm", 25.0): {
        "linear": std_sched(50), "rex": std_sched(51), "cosine": std_sched(52), "step": std_sched(53),
        "plateau": std_plateau(53), "exp": [(0.1, None, [D, D]), (0.3, None, [D, D])],
    },
}


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "study.db"
    with Store(path) as s:
        for (task, opt, budget), scheds in SPEC.items():
            for name, cands in scheds.items():
                for lr, pat, seeds in cands:
                    params = (("patience", pat),) if pat is not None else ()
                    for seed, r in enumerate(seeds):
                        c = TrialConfig(task, name, opt, budget, lr, seed, params)
                        if r == D:
                            res = dict(status="diverged", val_loss=None, val_metric=None, test_loss=None,
                                       test_metric=None, curves={}, steps=3, wall_time=0.1)
                        elif r == F:
                            res = dict(status="failed", val_loss=None, val_metric=None, test_loss=None,
                                       test_metric=None, curves={}, steps=0, wall_time=0.0, error="CUDA OOM")
                        else:
                            res = dict(status="done", val_loss=1.0, val_metric=r[0], test_loss=1.0,
                                       test_metric=r[1], curves={}, steps=3, wall_time=0.1)
                        s.put(c, res)
        return s.trial_rows()


@pytest.fixture(scope="module")
def report(rows):
    return build_report(rows, metric_names={"A": "error %", "B": "nll"}, plateau_into_step=True)  # the paper's view


def setting(report, task, opt, budget):
    (s,) = [s for s in report.settings if (s.task, s.optimizer, s.budget) == (task, opt, budget)]
    return s


EXPECTED_RANKS = {
    ("A", "sgdm", 5.0): {"rex": 1, "linear": 2, "cosine": 3, "exp": 4, "step": 5},
    ("A", "sgdm", 50.0): {"rex": 1, "linear": 1, "cosine": 3, "step": 4, "exp": 5},
    ("A", "adam", 10.0): {"linear": 1, "cosine": 1, "step": 3, "rex": 4},
    ("B", "sgdm", 1.0): {"rex": 1, "cosine": 2, "step": 3, "linear": 4, "exp": 5},
    ("B", "sgdm", 25.0): {"linear": 1, "rex": 2, "cosine": 3, "step": 4, "exp": 5},
}

EXPECTED_TABLE1 = {  # label: {split: (top1 credit, top3 credit, n)}
    "rex": {"low": (2, 3, 3), "high": (0.5, 2, 2), "overall": (2.5, 5, 5)},
    "linear": {"low": (0.5, 2, 3), "high": (1.5, 2, 2), "overall": (2, 4, 5)},
    "cosine": {"low": (0.5, 3, 3), "high": (0, 1, 2), "overall": (0.5, 4, 5)},
    "exp": {"low": (0, 0, 3), "high": (0, 0, 2), "overall": (0, 0, 5)},
    "step": {"low": (0, 1, 3), "high": (0, 1, 2), "overall": (0, 2, 5)},
}


def test_ranks_per_setting(report):
    for key, expected in EXPECTED_RANKS.items():
        s = setting(report, *key)
        got = {k: c.rank for k, c in s.results.items() if c.rank is not None}
        assert got == expected, key
        assert s.split == ("low" if key[2] < 25 else "high")
        if "plateau" in s.results:
            assert s.results["plateau"].rank is None  # merged into step, not ranked itself


def test_table1_by_hand(report):
    assert set(report.table1) == set(EXPECTED_TABLE1)  # plateau is not a row
    for label, splits in EXPECTED_TABLE1.items():
        for split, (n1, n3, n) in splits.items():
            cell = report.table1[label][split]
            assert (cell.n_top1, cell.n_top3, cell.n) == (n1, n3, n), (label, split)
            assert cell.top1 == pytest.approx(n1 / n) and cell.top3 == pytest.approx(n3 / n)
    for split in ("low", "high", "overall"):  # each finish credited once: Top-1 shares sum to 1, Top-3 to 3
        assert sum(report.table1[x][split].top1 for x in report.table1) == pytest.approx(1.0)
        assert sum(report.table1[x][split].top3 for x in report.table1) == pytest.approx(3.0)


def test_selection_by_validation_not_test(report):
    s1 = setting(report, "A", "sgdm", 5.0)
    assert (s1.results["linear"].lr, s1.results["linear"].mean) == (0.1, 11.0)
    assert s1.results["plateau"].patience == 10 and s1.results["plateau"].mean == 14.0
    assert s1.results["step"].ranked_as == "plateau" and s1.results["step"].mean == 15.0  # own result kept
    s2 = setting(report, "A", "sgdm", 50.0)
    assert (s2.results["cosine"].lr, s2.results["cosine"].mean) == (0.3, 21.0)  # partly diverged LR is +inf
    assert (s2.results["rex"].lr, s2.results["rex"].mean) == (0.1, 20.0)
    assert s2.results["step"].ranked_as is None
    assert setting(report, "B", "sgdm", 25.0).results["step"].ranked_as is None  # tie: step keeps its own
    assert setting(report, "B", "sgdm", 1.0).results["step"].ranked_as == "plateau"


def test_std_is_sample_std_and_failed_is_missing(report):
    rex = setting(report, "A", "sgdm", 5.0).results["rex"]
    assert rex.n == 2 and rex.std == pytest.approx(0.5 * math.sqrt(2))  # ddof=1 of {9.5, 10.5}
    rex3 = setting(report, "A", "adam", 10.0).results["rex"]
    assert (rex3.lr, rex3.mean, rex3.std, rex3.n) == (0.3, 34.0, 0.0, 1)


def test_diverged_everywhere_ranks_last_and_counts(report):
    exp = setting(report, "B", "sgdm", 25.0).results["exp"]
    assert exp.diverged and math.isinf(exp.mean) and exp.rank == 5


def test_missing_listed_not_counted(report):
    assert setting(report, "A", "adam", 10.0).missing == ["plateau", "exp"]
    assert all(s.missing == [] for s in report.settings if (s.task, s.optimizer) != ("A", "adam"))
    got = sorted((m.schedule, m.lr, m.seed, m.reason) for m in report.missing)
    assert got == sorted([
        ("exp", None, None, "schedule missing in this setting: not run"),
        ("plateau", None, None, "schedule missing in this setting: not run"),
        ("rex", 0.3, 1, "failed: CUDA OOM"),
    ])
    # 128 trials: 28 in each of S1, S2, S4, S5 and 16 in S3; diverged: 2 (S2 rex) + 1 (S2 cosine) + 4 (S5 exp).
    assert (report.n_trials, report.n_trials_done, report.n_trials_diverged, report.n_trials_failed) == (
        128, 120, 7, 1)


def test_json_keys_and_ranges(report):
    j = to_json(report)
    json.dumps(j, allow_nan=False)  # strictly valid JSON
    assert j["n_trials_done"] == report.n_trials_done > 0
    assert set(j["table1"]) == {"rex", "linear", "cosine", "exp", "step"}
    for label, splits in j["table1"].items():
        for split in ("low", "high", "overall"):
            for k in ("top1", "top3"):
                assert 0.0 <= splits[split][k] <= 1.0
    assert len(j["settings"]) == 5
    for s in j["settings"]:
        assert {"task", "optimizer", "budget", "schedules", "missing"} <= set(s)
        for sch in s["schedules"].values():
            assert {"lr", "mean", "std", "n", "rank"} <= set(sch)
    s5 = [s for s in j["settings"] if s["budget"] == 25.0][0]
    assert s5["schedules"]["exp"]["mean"] is None and s5["schedules"]["exp"]["diverged"] is True
    assert len(j["missing"]) == 3


def test_markdown_bolds_best(report):
    md = to_markdown(report)
    assert "## Table 1" in md and "## A: test error %" in md and "## B: test nll" in md
    a_rows = md.split("## A:")[1].split("## B:")[0].splitlines()
    rex_sgdm = next(line for line in a_rows if line.startswith("| + rex"))
    assert rex_sgdm.split("|")[2].strip() == "**10.00 ± 0.71**"  # 5 % column: best
    assert rex_sgdm.split("|")[4].strip() == "**20.00 ± 0.71**"  # 50 % column: tie with linear, both bold
    lin_sgdm = next(line for line in a_rows if line.startswith("| + linear"))
    assert lin_sgdm.split("|")[4].strip() == "**20.00 ± 0.71**"
    assert lin_sgdm.split("|")[2].strip() == "11.00 ± 0.71"
    assert "| rex | 67% (2/3) | 100% (3/3) | 25% (0.5/2) | 100% (2/2) | 50% (2.5/5) | 100% (5/5) | 2 |" in md
    assert "rex / lr=0.3 / seed=1: failed: CUDA OOM" in md


def test_csv_parses_back(report):
    got = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert len(got) == 5 * 6  # settings x labels (rex, linear, cosine, exp, step, plateau)
    by = {(r["task"], r["optimizer"], float(r["budget"]), r["schedule"]): r for r in got}
    r = by[("A", "sgdm", 5.0, "linear")]
    assert (float(r["lr"]), float(r["mean"]), int(r["n"]), int(r["rank"]), r["status"]) == (0.1, 11.0, 2, 2, "ok")
    assert by[("A", "adam", 10.0, "exp")]["status"] == "missing"
    assert by[("B", "sgdm", 25.0, "exp")]["status"] == "diverged"
    assert by[("A", "sgdm", 5.0, "step")]["ranked_as"] == "plateau"


def test_rich_renders(report):
    console = Console(record=True, width=200, color_system=None)
    render_rich(report, console)
    text = console.export_text()
    assert "Table 1" in text and "sgdm + rex" in text and "Missing trials (3)" in text


def test_bad_inputs(rows):
    with pytest.raises(ValueError, match="low_limit must be a budget percent in \\(0, 100\\], got 0"):
        build_report(rows, low_limit=0)
    with pytest.raises(ValueError, match="rank_labels \\['nope'\\] are not in the study"):
        build_report(rows, rank_labels=["rex", "nope"])
    bad = dict(rows[0].as_dict(), status="ok")  # a stored row whose status this version does not know
    with pytest.raises(ValueError, match="unknown status 'ok'"):
        build_report([bad])
    empty = build_report([])
    assert empty.settings == [] and to_json(empty)["table1"] == {}


def test_refined_lrs_are_per_schedule_not_missing_trials():
    # refinement gives rex LR 0.173 and linear LR 0.52; neither is a missing trial of the other, but a seed
    # missing from one of rex's own LRs is
    def row(label, lr, seed):
        return {"key": f"{label}{lr}{seed}", "task": "T", "schedule": label, "schedule_params": {}, "label": label,
                "optimizer": "sgdm", "budget": 10.0, "lr": lr, "seed": seed, "status": "done", "val_metric": 1.0,
                "test_metric": 1.0, "val_loss": None, "test_loss": None, "curves": {}, "steps": 1, "wall_time": 0.0,
                "error": None, "config": {}}
    rows = [row(label, lr, seed) for label, lrs in (("rex", (0.1, 0.173, 0.3)), ("linear", (0.1, 0.3, 0.52)))
            for lr in lrs for seed in range(3) if (label, lr, seed) != ("rex", 0.173, 2)]
    rep = build_report(typed(rows), resamples=200)
    assert [(m.schedule, m.lr, m.seed, m.reason) for m in rep.missing] == [("rex", 0.173, 2, "not run")]
