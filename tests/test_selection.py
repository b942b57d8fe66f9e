"""The selection protocol (budgetsched.bench.protocol.selection) on hand-worked cases."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from budgetsched.bench.protocol import selection as S
from budgetsched.bench.protocol.status import Status

INF, NAN = math.inf, math.nan


def test_score_of_a_trial():
    assert S.score(Status.DONE, 0.25) == 0.25
    assert S.score("done", None) == INF and S.score("done", NAN) == INF and S.score("done", -INF) == INF
    assert S.score(Status.DIVERGED, 0.1) == INF  # a diverged trial never wins on a stale metric
    assert math.isnan(S.score(Status.FAILED, 0.1))  # missing, not a loss
    assert S.trial_values("diverged", 1, 2) == (INF, INF) and S.trial_values("done", 1, None) == (1.0, INF)
    with pytest.raises(ValueError, match="'lost'"):
        S.score("lost", 1.0)


def test_candidates_x_seeds_arrays_and_means():
    c = S.candidates([(0.3, 1, 5.0, 6.0), (0.1, 0, 1.0, 2.0), (0.1, 1, 3.0, 4.0), (0.3, 0, INF, INF),
                      (1.0, 2, 7.0, 8.0)])
    assert c.keys == (0.1, 0.3, 1.0) and c.seeds == (0, 1, 2)
    assert np.array_equal(c.val, [[1, 3, NAN], [INF, 5, NAN], [NAN, NAN, 7]], equal_nan=True)
    assert np.array_equal(S.seed_means(c.val), [2.0, INF, 7.0])  # mean over the present seeds; any +inf -> +inf
    assert list(S.complete(c.val)) == [False, False, False]
    assert np.isnan(S.seed_means(np.full((1, 2), NAN))[0])


def test_choice_ties_to_the_first_candidate_and_never_to_a_missing_one():
    assert S.choose_one([2.0, 1.0, 1.0]) == 1  # ordered by LR: the smaller LR wins the tie
    assert S.choose_one([INF, INF]) == 0  # every LR diverged: the smallest, which reports "diverged"
    assert S.choose_one([NAN, 3.0]) == 1 and S.choose_one([NAN, NAN]) == 0
    draws = np.array([[3.0, 1.0], [1.0, 1.0], [NAN, INF]])
    assert list(S.choose(draws)) == [1, 0, 1]
    assert S.choose_lr({0.3: [1.0, 1.0], 0.1: [2.0, 0.0], 1.0: [INF, 0.0]}) == (0.1, 1.0)


def test_plateau_merge_and_competition_ranks():
    val, test, used = S.merge_plateau(np.array([1.0, 1.0, 2.0]), np.array([10.0, 10.0, 10.0]),
                                      np.array([0.5, 1.0 + 1e-12, 1.0]), np.array([20.0, 20.0, 20.0]))
    assert list(used) == [True, False, True]  # a tie within 1e-9 relative stays with step
    assert list(test) == [20.0, 10.0, 20.0] and list(val) == [0.5, 1.0, 1.0]
    assert list(S.competition_ranks(np.array([2.0, 1.0, 1.0 + 1e-12, INF, INF]))) == [3, 1, 1, 4, 4]


def test_selection_loads_without_torch():
    code = "import sys, budgetsched.bench.protocol.selection; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
