"""analysis/aggregate.py against hand-computed values and rliable's published formulas (Agarwal et al. 2021):
IQM = scipy.stats.trim_mean(x, 0.25); P(X > Y) = Mann-Whitney U / (n m) averaged over tasks; the run-score
distribution = fraction of runs above tau; a bootstrap stratified by task keeps the tasks fixed."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from budgetsched.bench.analysis import aggregate as ag

inf, nan = math.inf, math.nan


def test_normalise_by_hand():
    # one setting, two rows, two seeds; error %: baseline 90 (chance), best row mean 10
    s = np.array([[[10.0, 10.0], [50.0, inf]]])
    ns = ag.normalise(s, [90.0])
    np.testing.assert_allclose(ns, [[[1.0, 1.0], [0.5, 0.0]]])  # (90-50)/(90-10) = 0.5; diverged -> 0
    # without a baseline: a fraction of the best
    np.testing.assert_allclose(ag.normalise(np.array([[[2.0, 2.0], [4.0, 8.0]]])), [[[1.0, 1.0], [0.5, 0.25]]])
    np.testing.assert_allclose(ag.normalise(np.array([[[2.0, 4.0], [3.0, 3.0]]]), [None], best=[2.0]),
                               [[[1.0, 0.5], [2 / 3, 2 / 3]]])
    # a best that does not beat the baseline has no scale
    assert np.isnan(ag.normalise(np.array([[[95.0], [99.0]]]), [90.0])).all()
    with pytest.raises(ValueError, match="settings x rows x seeds"):
        ag.normalise(np.ones((2, 2)))


def test_iqm_is_scipys_trimmed_mean():
    x = np.arange(1.0, 9.0)  # 1..8: drop 1, 2 and 7, 8 -> mean of 3..6 = 4.5
    assert ag.iqm(x) == pytest.approx(4.5) == st.trim_mean(x, 0.25)
    rng = np.random.default_rng(0)
    for n in (3, 4, 5, 7, 10, 33):
        y = rng.normal(size=(4, n))
        np.testing.assert_allclose(ag.iqm(y, axis=1), st.trim_mean(y, 0.25, axis=1))
    assert ag.iqm(np.array([1.0, nan, 3.0, 2.0, 4.0])) == pytest.approx(2.5)  # NaN left out
    assert ag.iqm(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, inf])) == pytest.approx(4.5)  # an outlier is trimmed


def test_aggregate_mean_and_iqm_by_hand():
    ns = np.array([[[1.0, 0.0], [0.5, 0.5]],
                   [[1.0, 1.0], [0.0, 1.0]]])  # 2 settings x 2 rows x 2 seeds
    np.testing.assert_allclose(ag.aggregate(ns, "mean"), [0.75, 0.5])
    np.testing.assert_allclose(ag.aggregate(ns, "iqm"), [1.0, 0.5])  # row 0: 0,1,1,1 -> mean of 1,1
    with pytest.raises(ValueError, match="statistic"):
        ag.aggregate(ns, "median")


def test_performance_profile_by_hand():
    ns = np.array([[[0.2, 0.6], [1.0, nan]],
                   [[0.9, 1.0], [0.4, 0.5]]])
    prof = ag.performance_profile(ns, [0.0, 0.5, 0.95])
    np.testing.assert_allclose(prof, [[1.0, 0.75, 0.25], [1.0, 1 / 3, 1 / 3]])


def test_probability_of_improvement_is_rliables_mann_whitney():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, size=(6, 5))  # settings x seeds (lower is better)
    y = rng.normal(0.5, 1, size=(6, 4))
    x[0, :2] = y[0, :2]  # some exact ties count 1/2
    # rliable: P(X > Y) for higher-is-better scores; ours is lower-is-better, so compare the negatives
    ref = np.mean([st.mannwhitneyu(-x[i], -y[i], alternative="greater").statistic / (5 * 4) for i in range(6)])
    assert ag.probability_of_improvement(x, y) == pytest.approx(ref)
    assert ag.probability_of_improvement(np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]])) == 1.0
    assert ag.probability_of_improvement(np.array([[inf]]), np.array([[inf]])) == 0.5
    assert ag.probability_of_improvement(np.array([[1.0, 2.0]]), np.array([[1.0, 2.0]])) == 0.5


def test_stratified_draws_keep_each_task_and_its_size():
    tasks = ["a"] * 3 + ["b"] * 5 + ["c"]
    si, ki = ag.stratified_draws(tasks, 3, 200, np.random.default_rng(0))
    assert si.shape == (200, 9) and ki.shape == (200, 9, 3)
    t = np.array(tasks)
    for b in range(200):
        assert (t[si[b]] == t).all()  # each slot draws from its own task: tasks fixed, sizes kept
    assert set(si[:, 3:8].ravel()) == {3, 4, 5, 6, 7} and (si[:, 8] == 8).all()
    assert ki.min() == 0 and ki.max() == 2


def test_bootstrap_shape_and_interval_contains_the_point_and_respects_range():
    rng = np.random.default_rng(0)
    s = rng.normal(10, 1, size=(12, 3, 3))
    ns = ag.normalise(s, [20.0] * 12)
    draws = ag.bootstrap(ns, [i // 4 for i in range(12)], lambda a: ag.aggregate(a, "iqm"), 300, rng)
    assert draws.shape == (300, 3)
    point = ag.aggregate(ns, "iqm")
    lo, hi = ag.interval(point, draws)
    assert (lo <= point).all() and (point <= hi).all()
    # a point outside the draws widens the interval; bounds clip it
    lo, hi = ag.interval(0.99, np.array([0.2, 0.3, 0.4]), bounds=(0.0, 1.0))
    assert lo == pytest.approx(0.2, abs=0.01) and hi == 0.99
    lo, hi = ag.interval(1.0, np.array([0.9, 1.2, 1.3]), bounds=(0.0, 1.0))
    assert hi == 1.0


def test_bootstrap_of_a_single_setting_task_never_moves_it():
    s = np.zeros((2, 1, 2))
    s[0, 0] = [1.0, 1.0]
    s[1, 0] = [5.0, 5.0]  # each task has one setting; seeds equal: every draw equals the point
    draws = ag.bootstrap(s, ["a", "b"], lambda a: a.mean(axis=(0, 2)), 50, np.random.default_rng(0))
    np.testing.assert_allclose(draws, 3.0)


def test_improvement_by_regime_and_summary():
    rng = np.random.default_rng(3)
    budgets = [1, 5, 10, 25, 50, 100] * 4
    tasks = [i // 6 for i in range(24)]
    s = rng.normal(0, 1, size=(24, 3, 3))
    s[:, 0] -= 3.0  # row "x" much better everywhere
    res = ag.improvement_by_regime(s, ["x", "y", "z"], "x", tasks, budgets, resamples=300,
                                   rng=np.random.default_rng(0))
    assert set(res) == {"y", "z"}
    for regime, n in (("low", 12), ("high", 12), ("all", 24)):
        cell = res["y"][regime]
        assert cell["n_settings"] == n and 0.5 < cell["lo"] <= cell["p"] <= cell["hi"] <= 1.0
    with pytest.raises(ValueError, match="subject"):
        ag.improvement_by_regime(s, ["x", "y", "z"], "w", tasks, budgets)
    out = ag.summary(s + 10.0, ["x", "y", "z"], tasks, [20.0] * 24, resamples=200)
    for label in "xyz":
        for stat in ("mean", "iqm"):
            c = out[label][stat]
            assert c["lo"] <= c["value"] <= c["hi"]
    assert out["x"]["iqm"]["value"] > out["y"]["iqm"]["value"]


def test_regimes():
    m = ag.regimes([1, 10, 25, 100], low_limit=25)
    assert m["low"].tolist() == [True, True, False, False] and m["all"].all()


def test_share_intervals_credit_once_and_contain_the_point():
    rng = np.random.default_rng(5)
    s = rng.normal(0, 1, size=(30, 4, 3))
    s[:, 1] = s[:, 0]  # rows 0 and 1 tie exactly in every setting and every draw: 1/2 each
    tasks = [i // 6 for i in range(30)]
    share, lo, hi = ag.share_intervals(s, tasks, 1, resamples=300, rng=rng)
    assert share.sum() == pytest.approx(1.0) and share[0] == share[1]
    assert ((0 <= lo) & (lo <= share) & (share <= hi) & (hi <= 1)).all()
    share3, lo3, hi3 = ag.share_intervals(s, tasks, 3, resamples=300, rng=rng)
    assert share3.sum() == pytest.approx(3.0) and (hi3 <= 1).all()


# ------------------------------------------------------------------------------- trivial baselines of the tasks
def _data(train_y, test_y):
    import torch

    from budgetsched.bench.tasks import TaskData

    z = torch.zeros(len(train_y), 1)
    return TaskData(z, train_y, z[:0], train_y[:0], torch.zeros(len(test_y), 1), test_y)


def test_trivial_baselines_by_hand():
    import torch

    from budgetsched.bench.tasks import registry as reg

    # chance error: the training split's most frequent class (2) is right on 1 of 4 test examples
    assert reg.majority_error(_data(torch.tensor([2, 2, 1]), torch.tensor([2, 0, 1, 1]))) == 75.0
    # mean image: two 1-pixel training images 0 and 1 -> p = (1 + 1/2) / 3 = 1/2; any test image costs log 2
    img = _data(torch.tensor([[0.0], [1.0]]), torch.tensor([[1.0], [0.0], [0.5]]))
    assert reg.mean_image_nll(img) == pytest.approx(math.log(2.0))
    # unigram: train "aab" (ids 0 0 1), vocabulary 2 -> p(a) = 3/5, p(b) = 2/5 (add-one); test "ab"
    uni = _data(torch.tensor([[0, 0, 1]]), torch.tensor([[0, 1]]))
    assert reg.unigram_bits(uni) == pytest.approx(-(math.log2(3 / 5) + math.log2(2 / 5)) / 2)


def test_task_baselines_declared_and_computed():
    from budgetsched.bench.tasks import registry as reg
    from budgetsched.bench.tasks.custom import trainable

    for name in reg.available_tasks():
        assert reg.get_task(name).baseline is not None, name
    assert reg.task_baseline(reg.get_task("digits-mlp")) == pytest.approx(90.0)  # 10 balanced classes
    t = trainable(max_steps=10, baseline=50.0)(lambda trial: {})
    assert reg.task_baseline(t) == 50.0 and trainable(max_steps=10)(lambda trial: {}).baseline is None
    with pytest.raises(ValueError, match="baseline must be"):
        trainable(max_steps=10, baseline=math.nan)(lambda trial: {})
    with pytest.raises(ValueError, match="baseline must be"):
        reg.Task("x", 1, 1, "m", lambda *a: None, lambda: None, lambda *a: None, lambda *a: None, baseline="chance")


def test_table1_credits_once_with_intervals_for_these_tasks():
    from budgetsched.bench.analysis import fair

    keys = [("constant", .1, None), ("plateau", .1, 5), ("rex", .1, None), ("linear", .1, None)]
    rng = np.random.default_rng(0)
    rankings, tasks, budgets = [], [], []
    for i in range(24):
        budget = [1, 5, 10, 25, 50, 100][i % 6]
        v = rng.normal(0, 1, size=(4, 3))
        stand = [None, "constant" if budget < 25 else None, None, None]
        if stand[1]:
            v[1] = v[0]
        rankings.append(fair.rank_setting(keys, v, v, stand, ["constant", "plateau", "rex", "linear"]))
        tasks.append(i // 6)
        budgets.append(budget)
    t = ag.table1(rankings, tasks, budgets, resamples=200)
    for split, n in (("low", 12), ("high", 12), ("overall", 24)):
        assert sum(t[x][split]["top1"] for x in t) == pytest.approx(1.0)
        assert sum(t[x][split]["top3"] for x in t) == pytest.approx(3.0)
        for x in t:
            c = t[x][split]
            assert c["n"] == n and c["top1_ci"][0] <= c["top1"] <= c["top1_ci"][1] <= 1.0
    assert t["plateau"]["low"]["n_present"] == 0 and t["plateau"]["low"]["top1"] == 0.0  # constant's run, not its own
    assert t["plateau"]["high"]["n_candidates"] == 1.0 and t["plateau"]["low"]["n_candidates"] == 0.0


def test_study_statistics_from_fair_rankings():
    from budgetsched.bench.analysis import fair

    keys = [("linear", .1, None), ("rex", .1, None)]
    rng = np.random.default_rng(2)
    rankings, tasks, budgets = [], [], []
    for i in range(24):
        v = rng.normal(10, 1, size=(2, 3))
        v[1] -= 3.0  # rex clearly better
        rankings.append(fair.rank_setting(keys, v, v, [None, None], ["linear", "rex"], subject="rex"))
        tasks.append("T" if i < 12 else "U")
        budgets.append([1, 5, 10, 25, 50, 100][i % 6])
    st_ = ag.study_statistics(rankings, tasks, budgets, {"T": 20.0, "U": None}, "rex", resamples=200)
    assert st_["fairness_claim"] and st_["baselines"] == {"T": 20.0, "U": None}
    rex, lin = st_["normalised"]["rex"], st_["normalised"]["linear"]
    assert rex["iqm"]["value"] > lin["iqm"]["value"] and rex["mean"]["lo"] <= rex["mean"]["value"] <= rex["mean"]["hi"]
    p = st_["p_improvement"]["by_row"]["linear"]["all"]
    assert p["p"] > 0.9 and p["lo"] > 0.5
    one = [fair.rank_setting(keys, r.scores[:, :1], r.scores[:, :1], [None, None], ["linear", "rex"]) for r in rankings]
    st1 = ag.study_statistics(one, tasks, budgets, {}, "rex", resamples=200)
    assert not st1["fairness_claim"] and "p_improvement" not in st1 and st1["normalised"]["rex"]["mean"]["lo"] is None
