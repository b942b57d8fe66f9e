"""A null study and a planted effect, on synthetic rows (seconds): the fairness machinery has known answers.

The model of a run (schedule x LR x seed) follows what real splits do: every run has a quality ``u`` (how well that
trained model generalises) that both its validation and its test metric share, plus a seed effect ``a`` shared by
every run of the seed (the paired design) and independent measurement noise on each split::

    val[c, s] = a[s] + u[c, s] + e_val[c, s],     test[c, s] = a[s] + u[c, s] + e_test[c, s]

Under the null every schedule and LR has the same distribution. Seven schedules as in the suite; plateau has two
patiences (twice the candidates of any other row, as with ``--plateau-patience 5,10``) and, at the low budgets,
its patience can never trigger, so its trials are constant's runs under a second name (stand-ins).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from budgetsched.bench.analysis import aggregate, fair

ROWS = ["constant", "step", "plateau", "cosine", "linear", "exp", "rex"]
SUBJECT = ROWS.index("rex")
BUDGETS = (1, 5, 10, 25, 50, 100)
SA, SU, SE = 0.5, 1.0, 0.5
SEED_SD = float(np.sqrt(SA ** 2 + SU ** 2 + SE ** 2))  # sd over seeds of one configuration's test metric


def simulate(n_settings: int, *, shift: float = 0.0, seeds: int = 3, lrs: int = 5, rng_seed: int = 0,
             same_runs: bool = False, merge: bool = False):
    """Per setting: the seven rows' mean scores, the subject-vs-best-other verdict and per-seed scores.

    ``shift``: the subject's runs are better by ``shift`` seed standard deviations (the planted effect).
    ``same_runs``: the paper's scoring (choice and score from the same runs), for contrast. ``merge``: the paper's
    step+plateau row (plateau's candidates counted as step's).
    """
    rng = np.random.default_rng(rng_seed)
    means, verdicts, scores = [], [], []
    tasks, budgets = [], []
    for i in range(n_settings):
        budget = BUDGETS[i % len(BUDGETS)]
        low = budget < 25
        a = rng.normal(0, SA, seeds)
        rows, val, test, ids, own = [], [], [], [], []
        for r, name in enumerate(ROWS):
            for pat in range(2 if name == "plateau" else 1):
                for lr in range(lrs):
                    if name == "plateau" and low:  # the constant trial of the same LR and seed, reused
                        c = ROWS.index("constant") * lrs + lr
                        val.append(val[c]), test.append(test[c]), ids.append(("constant", 0, lr)), own.append(False)
                    else:
                        u = rng.normal(0, SU, seeds) - (shift * SEED_SD if r == SUBJECT else 0.0)
                        val.append(a + u + rng.normal(0, SE, seeds))
                        test.append(a + u + rng.normal(0, SE, seeds))
                        ids.append((name, pat, lr)), own.append(True)
                    rows.append(ROWS.index("step") if merge and name == "plateau" else r)
        val_a, test_a, rows_a = np.array(val), np.array(test), np.array(rows)
        keep = fair.drop_borrowed(rows_a, ids, own)
        ev = fair.evaluate(val_a, test_a, rows_a, len(ROWS), keep=keep, same_runs=same_runs)
        means.append(fair.row_means(ev.scores))
        scores.append(ev.scores)
        two = np.where(rows_a == SUBJECT, 0, 1)  # the subject against the best other row, chosen by validation
        pair = fair.evaluate(val_a, test_a, two, 2, keep=keep, same_runs=same_runs, scheme="next-seed")
        verdicts.append(fair.paired_verdict(pair.scores[0], pair.scores[1])[3])
        tasks.append(i // (2 * len(BUDGETS)))
        budgets.append(budget)
    return np.array(means), verdicts, np.array(scores), tasks, budgets


def _expected_share(means: np.ndarray, k: int) -> np.ndarray:
    """Under the null each present row takes a Top-k place with probability min(k, rows present) / rows present."""
    present = ~np.isnan(means)
    n = present.sum(axis=1, keepdims=True)
    return (present * np.minimum(k, n) / n).mean(axis=0)


def _within_sampling_error(share: np.ndarray, expected: np.ndarray, n: int, z: float = 4.0) -> bool:
    sd = np.sqrt(expected * (1 - expected) / n)
    return bool((np.abs(share - expected) <= z * sd + 1e-12).all())


N_NULL = 1200  # 100 tasks x 2 optimizers x 6 budgets: tight enough to see a 1.5x rate, still under a second


@pytest.fixture(scope="module")
def null_study():
    return simulate(N_NULL)


def test_null_top_k_shares_are_k_over_rows(null_study):
    means, *_ = null_study
    for k in (1, 3):
        share = fair.shares(fair.topk_credit(means, k))
        assert _within_sampling_error(share, _expected_share(means, k), len(means)), (k, share)
    assert fair.shares(fair.topk_credit(means, 1)).sum() == pytest.approx(1.0)
    assert fair.shares(fair.topk_credit(means, 3)).sum() == pytest.approx(
        np.minimum(3, (~np.isnan(means)).sum(axis=1)).mean())


def test_null_stand_ins_never_finish(null_study):
    means, *_ = null_study
    low = np.array([BUDGETS[i % 6] < 25 for i in range(len(means))])
    assert np.isnan(means[low, ROWS.index("plateau")]).all()  # plateau is constant there: no finish of its own
    assert not np.isnan(means[~low]).any()


def test_null_clearly_better_and_worse_at_nominal_rate(null_study):
    _, verdicts, *_ = null_study
    n = len(verdicts)
    lo, hi = st.binom.ppf([0.0005, 0.9995], n, 0.025) / n
    for side in ("better", "worse"):
        rate = verdicts.count(side) / n
        assert lo <= rate <= hi, (side, rate, (lo, hi))


def test_null_probability_of_improvement_is_one_half(null_study):
    _, _, scores, tasks, budgets = null_study
    res = aggregate.improvement_by_regime(scores, ROWS, "rex", tasks, budgets, resamples=400,
                                          rng=np.random.default_rng(1))
    for other in ("linear", "cosine", "step"):
        cell = res[other]["all"]
        assert cell["lo"] <= 0.5 <= cell["hi"] or abs(cell["p"] - 0.5) < 0.02, (other, cell)


def test_the_papers_scoring_is_biased_in_the_same_simulation():
    """The contrast that makes the null test meaningful: choosing among twice the candidates on validation and
    reporting the same runs' test lets plateau win beyond its share; cross-fitting removes it."""
    means, *_ = simulate(N_NULL, same_runs=True)
    share = fair.shares(fair.topk_credit(means, 1))
    expected = _expected_share(means, 1)
    p = ROWS.index("plateau")
    assert share[p] > expected[p] + 4 * np.sqrt(expected[p] * (1 - expected[p]) / len(means))


def test_the_papers_merge_is_fair_once_cross_fitted():
    means, verdicts, *_ = simulate(600, merge=True, rng_seed=3)
    assert np.isnan(means[:, ROWS.index("plateau")]).all()  # merged into step
    share = fair.shares(fair.topk_credit(means, 1))
    assert share.sum() == pytest.approx(1.0)
    assert _within_sampling_error(share, _expected_share(means, 1), len(means))


@pytest.fixture(scope="module")
def planted():
    return simulate(300, shift=1.0, rng_seed=2)


def test_planted_effect_is_top1_in_most_settings(planted):
    means, verdicts, *_ = planted
    credit = fair.topk_credit(means, 1)
    assert credit[:, SUBJECT].mean() > 0.5
    assert verdicts.count("better") > verdicts.count("worse")


def test_planted_effect_probability_of_improvement_excludes_one_half(planted):
    _, _, scores, tasks, budgets = planted
    res = aggregate.improvement_by_regime(scores, ROWS, "rex", tasks, budgets, resamples=400,
                                          rng=np.random.default_rng(4))
    for other in ROWS:
        if other == "rex":
            continue
        for regime in ("low", "high", "all"):
            cell = res[other][regime]
            if other == "plateau" and regime == "low":
                assert cell["n_settings"] == 0 and cell["p"] is None
                continue
            assert cell["p"] > 0.5 and cell["lo"] > 0.5, (other, regime, cell)
            assert cell["lo"] <= cell["p"] <= cell["hi"] <= 1.0


def test_cli_report_is_fair_on_a_small_null_study(tmp_path, capsys):
    """Through ``budgetsched run`` + ``report --format json`` (the full-CLI study is benchmarks/null_study.py):
    Top-1 shares sum to 1, plateau's stand-ins earn nothing, the evaluation is cross-fitted and said so, and
    ``--plateau-into-step`` gives the paper's view, labelled."""
    import json
    from pathlib import Path

    from budgetsched.cli import main

    ref = f"{Path(__file__).resolve().parents[1] / 'benchmarks' / 'null_study.py'}:null00"
    db = tmp_path / "null.db"
    assert main(["run", "--task", ref, "--schedules", "constant,step,plateau,linear,rex", "--optimizers", "sgdm",
                 "--budgets", "5,50,100", "--lrs", "0.01,0.1", "--seeds", "3", "--store", str(db), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["report", str(db), "--format", "json", "--resamples", "200"]) == 0
    rep = json.loads(capsys.readouterr().out)
    t1 = rep["table1"]
    assert set(t1) == {"constant", "step", "plateau", "linear", "rex"}
    assert sum(c["overall"]["top1"] for c in t1.values()) == pytest.approx(1.0)
    assert sum(c["overall"]["top3"] for c in t1.values()) == pytest.approx(3.0)
    low = [s for s in rep["settings"] if s["budget"] == 5.0][0]["table1_ranking"]
    assert low["stand_in_only"] == ["plateau"] and low["rows"]["plateau"]["top1"] == 0.0  # constant's run
    assert {s["table1_ranking"]["evaluation"] for s in rep["settings"]} == {"cross-fit"}
    assert "cross-fitted over seeds" in rep["protocol"]["evaluation"]
    assert rep["statistics"]["fairness_claim"] and "rex" in rep["statistics"]["normalised"]
    assert main(["report", str(db), "--format", "md", "--resamples", "200", "--plateau-into-step"]) == 0
    md = capsys.readouterr().out
    assert "| step (incl. plateau, the paper's view) |" in md and "| plateau |" not in md
