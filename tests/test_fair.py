"""analysis/fair.py against hand-computed answers: credit once, equal tuning, cross-fitting, evaluation seeds."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from budgetsched.bench.analysis import fair

inf, nan = math.inf, math.nan


# ------------------------------------------------------------------------------------------------ credit once
def test_topk_credit_ties_share_the_positions_they_occupy():
    v = np.array([[1.0, 1.0, 2.0, 3.0],  # two tie for first: 1/2 each
                  [1.0, 2.0, 2.0, 2.0],  # three tie for second
                  [nan, 1.0, 1.0, inf],  # a missing row takes no position
                  [2.0, 2.0, 2.0, 2.0]])
    assert fair.topk_credit(v, 1).tolist() == [[.5, .5, 0, 0], [1, 0, 0, 0], [0, .5, .5, 0], [.25] * 4]
    c3 = fair.topk_credit(v, 3)
    np.testing.assert_allclose(c3, [[1, 1, 1, 0], [1, 2 / 3, 2 / 3, 2 / 3], [0, 1, 1, 1], [.75] * 4])
    np.testing.assert_allclose(fair.topk_credit(v, 1).sum(axis=1), 1.0)
    np.testing.assert_allclose(c3.sum(axis=1), [3, 3, 3, 3])


def test_topk_credit_tolerance_and_divergence():
    # within 1e-9 relative is a tie; two diverged rows tie with each other and come last
    assert fair.topk_credit(np.array([5.0, 5.0 + 1e-12, 6.0]), 1).tolist() == [.5, .5, 0]
    assert fair.topk_credit(np.array([inf, inf, 1.0]), 2).tolist() == [.5, .5, 1]
    assert fair.topk_credit(np.array([nan, nan]), 1).tolist() == [0, 0]
    with pytest.raises(ValueError, match="k must be"):
        fair.topk_credit(np.array([1.0]), 0)


def test_top1_shares_sum_to_one_in_every_view():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 3, size=(50, 6)).astype(float)  # many exact ties
    v[rng.random(v.shape) < 0.1] = inf
    for rows in (slice(None), slice(0, 20), slice(20, 50)):
        assert fair.shares(fair.topk_credit(v[rows], 1)).sum() == pytest.approx(1.0)


def test_a_stand_in_is_dropped_from_the_row_that_borrows_it():
    # rows: 0 constant, 1 plateau; plateau's LR 0.1 trial is constant's run (stand-in), its LR 0.3 trial its own
    rows = [0, 0, 1, 1]
    ids = [("constant", .1), ("constant", .3), ("constant", .1), ("plateau", .3)]
    own = [True, True, False, True]
    assert fair.drop_borrowed(rows, ids, own).tolist() == [True, True, False, True]
    # without ``own`` the first row owns a shared run
    assert fair.drop_borrowed(rows, ids).tolist() == [True, True, False, True]
    # a stand-in whose owner is not in the study is the only copy: kept
    assert fair.drop_borrowed([1, 1], ids[2:], own[2:]).tolist() == [True, True]


def test_stand_in_credited_once_end_to_end():
    # constant and plateau (all stand-ins) would tie for first on the same run; plateau has no finish of its own
    val = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])
    test = val.copy()
    rows = [0, 1, 2]
    keep = fair.drop_borrowed(rows, ["c", "c", "l"], [True, False, True])
    ev = fair.evaluate(val, test, rows, 3, keep=keep)
    means = fair.row_means(ev.scores)
    assert np.isnan(means[1])
    assert fair.topk_credit(means, 1).tolist() == [1.0, 0.0, 0.0]


# ------------------------------------------------------------------------------------------------ equal tuning
def test_equal_tuning_one_patience_and_the_common_grid():
    # row 0: LRs .1 .3 1 (1 refined beyond the grid); row 1 (plateau): LRs .1 .3 at patiences 5 and 10
    rows = [0, 0, 0, 1, 1, 1, 1]
    lrs = [.1, .3, 1, .1, .1, .3, .3]
    pat = [None, None, None, 5, 10, 5, 10]
    chk = fair.equal_tuning(rows, lrs, 2, extra=pat, fixed_extra=5)
    assert chk.keep.tolist() == [True, True, False, True, False, True, False]
    assert chk.counts_before.tolist() == [3, 4] and chk.counts.tolist() == [2, 2]
    assert chk.grid == (.1, .3) and chk.equal


def test_equal_tuning_flags_a_row_with_more_candidates():
    rows, lrs, pat = [0, 0, 1, 1, 1, 1], [.1, .3, .1, .1, .3, .3], [None, None, 5, 10, 5, 10]
    chk = fair.equal_tuning(rows, lrs, 2, extra=pat)  # no patience fixed before the run
    assert chk.counts.tolist() == [2, 4] and chk.more.tolist() == [False, True] and not chk.equal
    assert fair.candidate_counts(rows, 3).tolist() == [2, 4, 0]


# ----------------------------------------------------------------------------------- selection apart from scores
def test_leave_one_out_means_by_hand():
    v = np.array([[1.0, 2.0, 3.0], [2.0, inf, 1.0], [nan, 4.0, 6.0]])
    np.testing.assert_allclose(fair.loo_means(v), [[2.5, 2.0, 1.5], [inf, 1.5, inf], [5.0, 6.0, 4.0]])
    assert np.isnan(fair.loo_means(np.array([[1.0]]))).all()


def test_cross_fit_by_hand():
    val = np.array([[1.0, 2.0, 3.0],   # row 0, LR a
                    [2.0, 1.0, 1.0],   # row 0, LR b
                    [5.0, 5.0, 0.0]])  # row 1
    test = val + 10.0
    scores, chosen = fair.cross_fit(val, test, [0, 0, 1], 2)
    # seed 0: LOO a=2.5, b=1.0 -> b; seed 1: a=2, b=1.5 -> b; seed 2: a=1.5, b=1.5, tie -> the first (smaller LR)
    assert chosen.tolist() == [[1, 1, 0], [2, 2, 2]]
    assert scores.tolist() == [[12.0, 11.0, 13.0], [15.0, 15.0, 10.0]]
    # next seed: seed 0 chooses on seed 1 (b), seed 1 on seed 2 (b), seed 2 on seed 0 (a)
    scores, chosen = fair.cross_fit(val, test, [0, 0, 1], 2, scheme="next-seed")
    assert chosen[0].tolist() == [1, 1, 0]
    with pytest.raises(ValueError, match="scheme"):
        fair.cross_fit(val, test, [0, 0, 1], 2, scheme="nope")


def test_cross_fit_never_scores_a_choice_on_its_own_runs():
    """A candidate that is lucky on one seed only (val and test share that seed's model) does not carry its luck
    into its score: same-run scoring picks it and reports the lucky test, cross-fitting does not."""
    val = np.array([[0.0, 4.0, 4.0], [3.0, 3.0, 3.0]])  # LR a: lucky on seed 0 only (mean 2.67); LR b steady
    test = val.copy()
    same, _ = fair.same_run(val, test, [0, 0], 1)
    assert same.tolist() == [[0.0, 4.0, 4.0]]  # chose a, and reports a's luck: mean 2.67
    cf, chosen = fair.cross_fit(val, test, [0, 0], 1)
    # seed 0: without seed 0, a = 4 > b = 3 -> b; seeds 1 and 2: a = 2 < 3 -> a
    assert chosen.tolist() == [[1, 0, 0]]
    assert cf.tolist() == [[3.0, 4.0, 4.0]]  # mean 3.67: no run scores the choice it made


def test_diverged_and_missing_candidates():
    val = np.array([[inf, 1.0, 1.0], [2.0, 2.0, 2.0], [nan, nan, nan]])
    test = np.array([[inf, 1.0, 1.0], [2.0, 2.0, 2.0], [nan, nan, nan]])
    scores, chosen = fair.cross_fit(val, test, [0, 0, 1], 2)
    assert chosen[0].tolist() == [0, 1, 1] and scores[0].tolist() == [inf, 2.0, 2.0]
    assert (chosen[1] == -1).all() and np.isnan(scores[1]).all()
    assert math.isinf(fair.row_means(scores)[0]) and np.isnan(fair.row_means(scores)[1])


def test_evaluation_seeds_and_stale_runs():
    val = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 1.0]])
    te = np.array([[7.0, 8.0, 9.0], [nan, nan, nan], [nan, 4.0, nan]])  # row 1's choice has one run missing
    scores, chosen, missing = fair.evaluation_seeds(val, te, [0, 0, 1], 2)
    assert chosen.tolist() == [0, 2] and missing.tolist() == [False, True]
    assert scores[0].tolist() == [7.0, 8.0, 9.0]
    ev = fair.evaluate(val, val, [0, 0, 1], 2, test_eval=te)
    assert ev.mode == "evaluation-seeds" and ev.fair and ev.stale.tolist() == [False, True]
    with pytest.raises(ValueError, match="candidates x evaluation seeds"):
        fair.evaluation_seeds(val, te[:2], [0, 0, 1], 2)


def test_one_seed_makes_no_fairness_claim():
    val = np.array([[1.0], [2.0]])
    ev = fair.evaluate(val, val + 1, [0, 1], 2)
    assert ev.mode == "same-run" and not ev.fair and "no fairness claim" in ev.note
    assert ev.scores.tolist() == [[2.0], [3.0]]
    ev2 = fair.evaluate(np.ones((2, 3)), np.ones((2, 3)), [0, 1], 2)
    assert ev2.mode == "cross-fit" and ev2.fair


def test_paired_verdict_is_the_paired_t_interval():
    a, b = np.array([1.0, 2.0, 4.0]), np.array([2.0, 3.5, 5.0])
    mean, lo, hi, verdict = fair.paired_verdict(a, b)
    ci = st.ttest_rel(a, b).confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((ci.low, ci.high)) and mean == pytest.approx(-7 / 6)
    assert verdict == ("better" if hi < 0 else None)
    assert fair.paired_verdict(np.array([1.0, 1.1, 1.2]), np.array([3.0, 3.0, 3.05]))[3] == "better"
    assert fair.paired_verdict(np.array([1.0]), np.array([2.0]))[1:] == (None, None, None)
    assert fair.paired_verdict(np.array([inf, 1.0]), np.array([1.0, 1.0]))[3] is None


# ------------------------------------------------------------------------------------------- one report setting
KEYS = [("constant", .1, None), ("constant", .3, None), ("plateau", .1, 5), ("plateau", .3, 5), ("rex", .1, None),
        ("rex", .3, None), ("step", .1, None), ("step", .3, None)]
STAND = [None, None, "constant", "constant", None, None, None, None]


def _vals(seeds: int) -> np.ndarray:
    base = np.array([1.0, 2.0, 1.0, 2.0, 1.5, 3.0, 1.0, 4.0])  # step's LR .1 ties constant's run exactly
    return np.repeat(base[:, None], seeds, axis=1)


def test_rank_setting_plateau_own_row_stand_ins_and_ties():
    v = _vals(3)
    r = fair.rank_setting(KEYS, v, v, STAND, ["constant", "step", "plateau", "rex"], subject="rex")
    assert r.mode == "cross-fit" and r.fair
    assert r.stand_in_only == ("plateau",) and np.isnan(r.means[2]) and r.n_candidates.tolist() == [2, 2, 0, 2]
    # constant and step tie for first on different runs: half a finish each; plateau (constant's run) none
    assert r.top1.tolist() == [.5, .5, 0, 0] and r.top1.sum() == 1.0
    assert r.ranks.tolist() == [1, 1, 0, 3] and r.top3.tolist() == [1, 1, 0, 1]
    assert r.vs_best_other[0] == pytest.approx(0.5) and r.vs_best_other[3] == "worse"


def test_rank_setting_papers_merge_and_one_seed():
    v = _vals(1)
    r = fair.rank_setting(KEYS, v, v, STAND, ["constant", "step", "rex"], merge=True, subject="rex")
    assert r.mode == "same-run" and not r.fair and "no fairness claim" in r.note
    assert r.n_candidates.tolist() == [2, 2, 2]  # plateau's stand-ins are not step's candidates
    assert r.top1.tolist() == [.5, .5, 0]
    assert r.vs_best_other[1:] == (None, None, None)  # no interval with one seed


def test_rank_setting_gap_and_tied_within_noise():
    rng = np.random.default_rng(0)
    keys = [("a", .1, None), ("b", .1, None)]
    v = np.vstack([rng.normal(0, 1, 3), rng.normal(0, 1, 3) + 100.0])
    r = fair.rank_setting(keys, v, v, [None, None], ["a", "b"])
    assert (r.best, r.runner_up) == (0, 1) and r.gap[0] == pytest.approx(100.0, abs=3) and r.tied is False
    same = fair.rank_setting(keys, v[[0, 0]], v[[0, 0]], [None, None], ["a", "b"])
    assert same.tied is True and same.top1.tolist() == [.5, .5]
    one = fair.rank_setting(keys, v[:, :1], v[:, :1], [None, None], ["a", "b"])
    assert one.tied is None and one.gap[1] is None
