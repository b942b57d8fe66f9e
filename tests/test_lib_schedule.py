"""Schedule: warmup as a fraction, warmup start LR, floor ratio, finished runs and re-warm (issues 10 and 12), and
bounded, validated inputs (issue 11 item 6): sampling levels, refined at extreme norms, NaN/None/huge numbers."""
from __future__ import annotations

import logging
import math
import time
import tracemalloc

import numpy as np
import pytest

from budgetsched import Plateau, Schedule, parse_sampling
from budgetsched.profiles import get_profile, refined_table

HUGE = 10**400


# -- warmup_fraction, warmup_start_lr, min_lr_ratio -------------------------------------------------------------

def test_warmup_fraction_is_ceil_of_the_budget_share_like_hf_warmup_ratio():
    # HF: warmup_steps = ceil(num_training_steps * warmup_ratio)
    assert Schedule("linear", 1000, warmup_fraction=0.1).warmup_steps == 100
    assert Schedule("linear", 1001, warmup_fraction=0.1).warmup_steps == 101  # ceil(100.1)
    assert Schedule("linear", 100, warmup_fraction=0.07).warmup_steps == 7  # 0.07 * 100 = 7.000000000000001 in floats
    assert Schedule("linear", 10, warmup_fraction=0.0).warmup_steps == 0
    np.testing.assert_array_equal(Schedule("rex", 1000, 0.3, warmup_fraction=0.1).values(),
                                  Schedule("rex", 1000, 0.3, warmup_steps=100).values())


def test_warmup_fraction_on_a_budget_change():
    s = Schedule("linear", 1000, 1.0, warmup_fraction=0.1)  # W = 100
    # at step 0 nothing has happened yet: the run is exactly a fresh one with the new budget (W = 200)
    np.testing.assert_array_equal(s.with_budget(2000, at_step=0).values(),
                                  Schedule("linear", 2000, 1.0, warmup_fraction=0.1).values())
    # during the warmup: the rest of the ramp is re-mapped to end at ceil(0.1 * 2000) = 200, from the LR at 50
    s2 = s.with_budget(2000, at_step=50)
    lr50 = 51 / 100  # peak (t + 1) / W
    assert s2(50) == s(50) == pytest.approx(lr50, rel=1e-15)
    for t in (51, 120, 198, 199):
        assert s2(t) == pytest.approx(lr50 + (1 - lr50) * (t - 50) / (199 - 50), rel=1e-12)
    assert s2(199) == 1.0 and s2(200) == 1.0
    for t in (200, 1100, 1999, 2000):
        assert s2(t) == pytest.approx(1 - (t - 200) / 1800, abs=1e-15)
    # after the warmup a change leaves it alone: the usual re-map of the decay
    s3 = s.with_budget(2000, at_step=400)
    np.testing.assert_array_equal(s3.values()[:401], s.values()[:401])
    # warmup_steps given in steps keeps its length on a change during the warmup
    w = Schedule("linear", 1000, 1.0, warmup_steps=100).with_budget(2000, at_step=50)
    np.testing.assert_array_equal(w.values(), Schedule("linear", 2000, 1.0, warmup_steps=100).values())


def test_warmup_start_lr_ramps_from_it_to_the_peak_at_w_minus_1():
    s = Schedule("linear", 100, 1.0, warmup_steps=10, warmup_start_lr=0.0)
    np.testing.assert_allclose(s.values()[:10], np.arange(10) / 9, rtol=1e-15, atol=0)
    assert s(0) == 0.0 and s(9) == 1.0 and s(10) == 1.0
    s = Schedule("rex", 100, 0.4, warmup_steps=5, warmup_start_lr=0.1)
    assert [s(t) for t in range(5)] == pytest.approx([0.1, 0.175, 0.25, 0.325, 0.4], rel=1e-15)
    assert s.warmup_start_lr == 0.1 and Schedule("rex", 100, 0.4, warmup_steps=8).warmup_start_lr == 0.05


def test_min_lr_ratio_is_a_floor_relative_to_the_peak():
    s = Schedule("cosine", 100, 0.5, min_lr_ratio=0.1)
    assert s.min_lr == 0.05 and s(100) == pytest.approx(0.05)
    t = np.arange(100)
    np.testing.assert_allclose(s.values(), 0.05 + 0.45 * (1 + np.cos(np.pi * t / 100)) / 2, rtol=1e-13)
    assert s.with_peak(2.0).min_lr == 0.2  # the ratio follows the peak


@pytest.mark.parametrize("kwargs,match", [
    (dict(warmup_steps=10, warmup_fraction=0.1), r"give warmup_steps \(10\) or warmup_fraction \(0.1\), not both"),
    (dict(warmup_fraction=1.0), r"warmup_fraction must be in \[0, 1\), got 1.0"),
    (dict(warmup_fraction=-0.1), r"warmup_fraction must be in \[0, 1\), got -0.1"),
    (dict(warmup_fraction="0.1"), r"warmup_fraction must be a number in \[0, 1\), got '0.1'"),
    (dict(warmup_fraction=0.995), r"warmup_fraction 0.995 gives ceil\(0.995 x 100\) = 100 warmup steps; they must "
                                  r"be < total_steps \(100\)"),
    (dict(min_lr=0.01, min_lr_ratio=0.1), r"give min_lr \(0.01\) or min_lr_ratio \(0.1\), not both"),
    (dict(min_lr_ratio=1.5), r"min_lr_ratio must be in \[0, 1\], got 1.5"),
    (dict(warmup_start_lr=0.01), r"warmup_start_lr \(0.01\) needs a warmup"),
    (dict(warmup_steps=5, warmup_start_lr=2.0), r"warmup_start_lr \(2.0\) must be <= peak_lr \(1.0\)"),
    (dict(warmup_steps=5, warmup_start_lr=-1.0), r"warmup_start_lr must be a finite number >= 0, got -1.0"),
])
def test_bad_warmup_and_floor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Schedule("rex", 100, 1.0, **kwargs)


# -- finished runs and re-warm (issue 12 item 4) ----------------------------------------------------------------

def test_continuing_a_finished_run_keeps_the_end_value_and_says_so_loudly(caplog):
    s = Schedule("linear", 10, 1.0)
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        s2 = s.with_budget(20, at_step=10, strategy="continue")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    msg = caplog.records[0].getMessage()
    assert "continuing a finished run" in msg and "step 10" in msg and "rewarm_steps" in msg
    assert all(s2(t) == 0.0 for t in range(10, 25))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        s.with_budget(20, at_step=9, strategy="continue")  # one step left: a normal change, no warning
    assert caplog.records == []


def test_rewarm_from_the_current_lr_to_a_peak_then_the_profile_to_the_floor():
    s = Schedule("linear", 10, 1.0, min_lr=0.01)
    s2 = s.with_budget(30, at_step=10, rewarm_steps=5, rewarm_peak=0.5)
    # ramp 0.01 -> 0.5 over steps 10..14 (the warmup's rule: the first keeps its LR, the last reaches the peak)
    assert [s2(t) for t in range(10, 15)] == pytest.approx([0.01 + 0.49 * k / 4 for k in range(5)], rel=1e-15)
    # then linear from 0.5 at step 15 down to the floor at 30
    assert [s2(t) for t in range(15, 31)] == pytest.approx([0.01 + 0.49 * (1 - (t - 15) / 15) for t in range(15, 31)],
                                                           rel=1e-13)
    np.testing.assert_array_equal(s2.values()[:11], np.append(s.values(), s(10)))  # the past is unchanged
    assert s2.budget_changes == [(10, 30, 5, 0.5)]
    # default peak: the schedule's own; a re-warm works mid-run too, from the LR it has there
    s3 = Schedule("rex", 100, 0.2).with_budget(150, at_step=60, rewarm_steps=3)
    lr60 = 0.2 * 2 * 0.4 / 1.4
    assert [s3(t) for t in (60, 61, 62, 63)] == pytest.approx([lr60, (lr60 + 0.2) / 2, 0.2, 0.2], rel=1e-12)
    assert s3(150) == 0.0
    # with_peak (another parameter group) replays the re-warm; an explicit re-warm peak scales with the peak
    g = s2.with_peak(2.0, min_lr=0.02)
    assert g(14) == pytest.approx(1.0) and g(30) == pytest.approx(0.02)


@pytest.mark.parametrize("kwargs,match", [
    (dict(rewarm_steps=0), "rewarm_steps must be >= 1, got 0"),
    (dict(rewarm_steps=20), r"new_total_steps \(30\) must be > at_step \+ rewarm_steps \(10 \+ 20 = 30\)"),
    (dict(rewarm_peak=0.5), r"rewarm_peak \(0.5\) needs rewarm_steps"),
    (dict(rewarm_steps=5, rewarm_peak=0.001), r"rewarm_peak \(0.001\) must be >= min_lr \(0.01\)"),
    (dict(rewarm_steps=5, rewarm_peak=float("nan")), "rewarm_peak must be a finite number >= 0, got nan"),
])
def test_bad_rewarm(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Schedule("linear", 10, 1.0, min_lr=0.01).with_budget(30, at_step=10, **kwargs)


def test_budget_history_as_plain_data_replays():
    s = Schedule("rex", 100, 1.0, warmup_steps=5)
    direct = (s.with_budget(300, at_step=40, strategy="continue")
              .with_budget(120, at_step=100, rewarm_steps=4, rewarm_peak=0.5))
    replayed = s.with_budget_history([[40, 300], [100, 120, 4, 0.5]])
    np.testing.assert_array_equal(direct.values(), replayed.values())
    with pytest.raises(ValueError, match=r"budget_changes\[0\] must be \(at_step, new_total_steps"):
        s.with_budget_history([7])


# -- sampling levels (issue 11 item 6) --------------------------------------------------------------------------

def test_a_tiny_percent_never_builds_its_levels():
    tracemalloc.start()
    t0 = time.perf_counter()
    s = Schedule("rex", 1000, 1.0, sampling="every-0.0000001%")
    v = s.values()
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert s.sampling.levels == 10**9
    assert peak < 1_000_000 and elapsed < 5.0  # a list of 1e9 levels would be 8 GB
    # 1e9 levels, a multiple of 1000: each step sits on its own level, at most one level per step is ever visited
    np.testing.assert_array_equal(v, Schedule("rex", 1000, 1.0).values())
    with pytest.raises(ValueError, match=r"'every-0.0000001%' has 1000000000 levels, too many to list"):
        parse_sampling("every-0.0000001%").points
    with pytest.raises(ValueError, match=r"1e-301% gives 1e\+303 levels, more than 2\*\*53"):
        parse_sampling("every-0." + "0" * 300 + "1%")


def test_uniform_hold_in_closed_form_equals_holding_at_the_listed_points():
    rng = np.random.default_rng(0)
    for spec in ("10-10", "5-25", "1-100", "every-2.5%", "every-0.5%"):
        s = parse_sampling(spec)
        pts = s.points
        z = np.concatenate([pts, rng.uniform(0, 1, 2000), [1.0, np.nextafter(pts[1], 0)]])
        want = pts[np.searchsorted(pts, z, side="right") - 1]
        np.testing.assert_array_equal(s.hold(z), want)
        assert all(s.hold_py(float(x), 1.0 - float(x))[0] == w for x, w in zip(z, want))


# -- refined (issue 11 item 6) ----------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1e-300, 1e-80, 1.0, 1e80, 1e300])
def test_refined_is_finite_and_scale_free_for_any_positive_norms(scale):
    g = np.linspace(1.0, 3.0, 50)
    w = 1 / g**2  # the paper's formula on well-scaled norms, by hand
    want = np.array([w[t] * w[t + 1:].sum() for t in range(50)])
    table = refined_table(scale * g, "sgd", smooth=0.0)
    assert np.all(np.isfinite(table)) and table.max() == 1.0 and table[-1] == 0.0
    np.testing.assert_allclose(table, want / want.max(), rtol=1e-12)  # m does not depend on the norms' scale
    v = Schedule("refined", 200, 0.1, grad_norms=scale * g).values()
    assert np.all(np.isfinite(v)) and v[0] == pytest.approx(0.1 * table[0])


def test_refined_mixed_extreme_norms_by_hand():
    # w = 1/g^2 = [1e-160, 1e160, 1, 1e-160]; m_t ~ w_t sum_{s>t} w_s = [~1, ~1e160, 1e-160, 0]
    table = refined_table([1e80, 1e-80, 1.0, 1e80], "sgd", smooth=0.0)
    assert np.all(np.isfinite(table))
    assert table[1] == 1.0 and table[0] == pytest.approx(1e-160, rel=1e-9) and table[3] == 0.0
    assert 0.0 <= table[2] < 1e-300


def test_refined_weighting_replaces_the_colliding_name_optimizer():
    g = [1.0, 2.0, 1.5, 3.0, 2.0, 1.0]
    new = Schedule("refined", 50, 1.0, grad_norms=g, weighting="adam")
    with pytest.warns(DeprecationWarning, match="renamed 'weighting'"):
        old = Schedule("refined", 50, 1.0, grad_norms=g, optimizer="adam")
    np.testing.assert_array_equal(new.values(), old.values())
    w = 1 / np.asarray(g)  # Adam: 1/g
    want = np.array([w[t] * w[t + 1:].sum() for t in range(6)])
    np.testing.assert_allclose(refined_table(g, "adam", smooth=0.0), want / want.max(), rtol=1e-12)
    with pytest.raises(ValueError, match="weighting must be one of 'sgd', 'adam', got 'rmsprop'"):
        Schedule("refined", 50, grad_norms=g, weighting="rmsprop")
    with pytest.raises(ValueError, match=r"give weighting='adam' only; optimizer='sgd' is its old name"):
        get_profile("refined", grad_norms=g, weighting="adam", optimizer="sgd")


# -- NaN, None and huge numbers (issue 11 item 6) ---------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda: Schedule("rex", HUGE), "total_steps must be <= 2\\*\\*53, got an integer with 401 digits"),
    (lambda: Schedule("rex", None), "total_steps must be an integer, got None"),
    (lambda: Schedule("rex", float("nan")), "total_steps must be an integer, got nan"),
    (lambda: Schedule("rex", 100, HUGE), "peak_lr must be a finite number >= 0, got an integer with 401 digits"),
    (lambda: Schedule("rex", 100, None), "peak_lr must be a number, got None"),
    (lambda: Schedule("rex", 100, "0.1"), "peak_lr must be a number, got '0.1'"),
    (lambda: Schedule("rex", 100, float("inf")), "peak_lr must be a finite number >= 0, got inf"),
    (lambda: Schedule("rex", 100, min_lr=float("nan")), "min_lr must be a finite number >= 0, got nan"),
    (lambda: Schedule("rex", 100, warmup_steps=HUGE), "warmup_steps must be <= 2\\*\\*53, got an integer with 401"),
    (lambda: Schedule("exp", 100, gamma=-HUGE), "gamma must be a finite number, got an integer with 401 digits"),
    (lambda: Schedule("rex", 100)(None), "step must be an integer, got None"),
    (lambda: Schedule("rex", 100)(float("nan")), "step must be an integer, got nan"),
    (lambda: Schedule("rex", 100)(HUGE), "step must be <= 2\\*\\*53, got an integer with 401 digits"),
    (lambda: Schedule("rex", 100)(2.5), "step must be an integer, got 2.5"),
    (lambda: Schedule("rex", 100)(-1), "step must be >= 0, got -1"),
    (lambda: Schedule("rex", 100).with_budget(HUGE, 5), "new_total_steps must be <= 2\\*\\*53, got an integer"),
    (lambda: Schedule("rex", 100).with_budget(200, None), "at_step must be an integer, got None"),
    (lambda: Schedule("rex", 100).with_budget(200, float("nan")), "at_step must be an integer, got nan"),
    (lambda: Plateau(5, factor=HUGE), "factor must be a number within float range, got an integer with 401 digits"),
    (lambda: Plateau(5).update(None), "metric must be a number, got None"),
    (lambda: Plateau(5).update(HUGE), "metric must be a number within float range, got an integer with 401"),
    (lambda: Plateau(None), "patience must be an integer >= 0, got None"),
])
def test_numeric_edge_cases_are_one_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_valid_extremes_still_work():
    s = Schedule("rex", 2**53, 1.0)
    assert s(2**53) == 0.0 and s(2**52) == pytest.approx(2 / 3, rel=1e-12)
    assert Schedule("rex", 100)(np.int64(50)) == Schedule("rex", 100)(50.0) == pytest.approx(2 / 3)
    p = Plateau(0)
    assert p.update(1.0) == 1.0 and p.update(float("nan")) == 0.1  # a NaN evaluation never improves (as torch)
    assert math.isfinite(Schedule("uba", 10**8, phi=5.0)(10**8 - 1))


def test_schedules_pickle_with_their_history():
    import pickle
    s = (Schedule("step", 100, 0.3, warmup_fraction=0.1, milestones=(0.3, 0.6))
         .with_budget(200, at_step=50, rewarm_steps=5))
    again = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(again.values(), s.values())
    assert again(120) == s(120) and again.budget_changes == s.budget_changes


@pytest.mark.parametrize("name,kw", [("rex", {}), ("linear", {}), ("step", {}), ("step", {"factor": 0.37}),
                                     ("onecycle", {}), ("constant", {}), ("delayed-linear", {"delay": 0.3}),
                                     ("wsd", {}), ("rex", {"sampling": "1-100", "warmup_steps": 7}),
                                     ("step", {"sampling": "10-10", "min_lr": 0.01})])
def test_per_step_path_equals_values_bit_for_bit(name, kw):
    # The torch adapter's per-step path (Python floats) and values() (numpy) agree exactly for the profiles built
    # from + - * / (step's levels factor**k are computed once, with numpy, so they agree too).
    s = Schedule(name, 997, 0.3, **kw).with_budget(1500, at_step=400)
    v = s.values()
    assert [s(t) for t in range(1500)] == v.tolist()


def test_warmup_steps_attribute_follows_a_budget_change_inside_a_ratio_warmup():
    s = Schedule("linear", 20, warmup_fraction=0.2).with_budget(40, at_step=2)
    assert s.warmup_steps == 8  # ceil(0.2 x 40): the re-mapped warmup, not the first one (4)
    assert s(7) == 1.0 and s(6) < 1.0
