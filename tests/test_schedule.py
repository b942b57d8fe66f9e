"""Schedule: closed form, warmup, floor, end value, budget changes and input validation."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import budgetsched
from budgetsched import Plateau, Schedule
from budgetsched.profiles import get_profile

PROFILES = [n for n in budgetsched.available() if n not in ("plateau", "refined")]


def test_issue_example():
    s = Schedule("rex", total_steps=1000, peak_lr=0.1)
    assert s(500) == pytest.approx(0.1 * 2 / 3, rel=1e-15)
    v = s.values()
    assert v.shape == (1000,) and v.dtype == np.float64
    s2 = s.with_budget(2000, at_step=400, strategy="continue")
    assert s2(400) == s(400)
    u = 0.6 / 1600  # 1 - z one step before the new end: z = 0.4 + 0.6 * 1599 / 1600
    assert s2(1999) == pytest.approx(0.1 * 2 * u / (1 + u), rel=1e-9)
    assert s2(2000) == 0.0


@pytest.mark.parametrize("name", PROFILES)
def test_closed_form_is_profile_of_t_over_T(name):
    T, peak, floor = 777, 0.3, 0.01
    s = Schedule(name, total_steps=T, peak_lr=peak, min_lr=floor, sampling="every-step")
    t = np.arange(T)
    np.testing.assert_allclose(s.values(), floor + (peak - floor) * get_profile(name)(t / T), rtol=1e-13)
    for step in (0, 1, T // 3, T - 1):
        assert s(step) == pytest.approx(s.values()[step], rel=1e-15)


@pytest.mark.parametrize("name", PROFILES)
def test_steps_past_the_end_hold_the_end_value(name):
    s = Schedule(name, total_steps=100, peak_lr=1.0, min_lr=0.001)
    end = 0.001 + 0.999 * float(get_profile(name)(s.sampling.hold(1.0)))
    for t in (100, 101, 10_000, 10**12):
        assert s(t) == pytest.approx(end, rel=1e-12)


def test_end_value_of_decaying_profiles_is_the_floor():
    for name in ("rex", "linear", "cosine", "delayed-linear", "polynomial", "wsd", "uba"):
        assert Schedule(name, total_steps=50, peak_lr=1.0, min_lr=0.05)(50) == pytest.approx(0.05)


def test_warmup_ramps_from_peak_over_W_then_runs_profile_over_the_rest():
    T, W, peak = 1000, 100, 0.5
    s = Schedule("linear", total_steps=T, peak_lr=peak, warmup_steps=W)
    v = s.values()
    assert v[0] == pytest.approx(peak / W) and v[0] > 0
    np.testing.assert_allclose(v[:W], peak * np.arange(1, W + 1) / W)
    assert np.all(np.diff(v[:W]) > 0)
    np.testing.assert_allclose(v[W:], peak * (1 - (np.arange(W, T) - W) / (T - W)), rtol=1e-12)
    # warmup composes with any profile and sampling, and the floor
    s = Schedule("step", total_steps=T, peak_lr=peak, warmup_steps=W, min_lr=0.01)
    v = s.values()
    assert v[W] == peak and v[W + (T - W) // 2] == pytest.approx(0.01 + (peak - 0.01) * 0.1)


def test_single_step_and_custom_callable_profile():
    assert Schedule("rex", total_steps=1, peak_lr=0.2).values().tolist() == [0.2]
    s = Schedule(lambda z: 1 - z**3, total_steps=10, peak_lr=2.0)
    assert s(5) == pytest.approx(2 * (1 - 0.5**3))


def test_onecycle_momentum_values():
    s = Schedule("onecycle", total_steps=100, peak_lr=1.0)
    mom = s.momentum_values()
    assert mom[0] == 0.95 and mom[50] == pytest.approx(0.85) and s.momentum(99) == pytest.approx(0.85 + 0.1 * 0.98)
    assert s.values()[0] == pytest.approx(0.1) and s.values()[50] == 1.0
    assert Schedule("rex", total_steps=10).momentum(3) is None
    assert Schedule("rex", total_steps=10).momentum_values() is None


# -- budget change ----------------------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(PROFILES),
    sampling=st.sampled_from([None, "every-step", "50-75", "10-10", "1-100"]),
    T=st.integers(2, 3000),
    a_frac=st.floats(0.0, 1.2),
    new_frac=st.floats(0.05, 4.0),
    warm=st.floats(0.0, 0.3),
    floor=st.sampled_from([0.0, 0.01]),
)
def test_budget_change_is_continuous_and_reaches_the_floor_at_the_new_end(name, sampling, T, a_frac, new_frac, warm,
                                                                          floor):
    W = min(int(warm * T), T - 1)
    s = Schedule(name, total_steps=T, peak_lr=0.1, min_lr=floor, sampling=sampling, warmup_steps=W)
    a = int(a_frac * T)
    new_T = max(a + 1, W + 1, int(new_frac * T))
    s2 = s.with_budget(new_T, at_step=a, strategy="continue")
    # unchanged up to and including the change point: no jump
    t = np.arange(0, a + 1)
    np.testing.assert_array_equal(s2._lr(t), s._lr(t))
    # the end value (m_S(1)) is reached at the new end and held
    assert s2(new_T) == pytest.approx(s(T), rel=1e-12, abs=1e-15)
    assert s2(new_T + 10**9) == s2(new_T)
    assert s2.total_steps == new_T and s2.budget_changes == [(a, new_T)]


@pytest.mark.parametrize("name", ["rex", "linear", "cosine", "exp", "polynomial"])
def test_budget_change_keeps_monotone_decay_and_the_profile_shape(name):
    s = Schedule(name, total_steps=1000, peak_lr=1.0)
    for new_T in (600, 1000, 5000):
        s2 = s.with_budget(new_T, at_step=500, strategy="continue")
        v = s2.values()
        assert np.all(np.diff(v) <= 1e-15)
        # progress after the change follows the re-mapping rule exactly
        z = 0.5 + 0.5 * (np.arange(500, new_T) - 500) / (new_T - 500)
        np.testing.assert_allclose(v[500:], get_profile(name)(z), rtol=1e-12)


def test_budget_changes_chain_and_during_warmup():
    s = Schedule("rex", total_steps=1000, peak_lr=1.0, warmup_steps=100)
    # still warming up: warmup kept, profile over [100, 3000)
    s2 = s.with_budget(3000, at_step=50, strategy="continue")
    np.testing.assert_allclose(s2.values(), Schedule("rex", total_steps=3000, peak_lr=1.0, warmup_steps=100).values())
    s_600 = s.with_budget(2000, at_step=600, strategy="continue")
    s3 = s_600.with_budget(900, at_step=800)
    np.testing.assert_array_equal(s3._lr(np.arange(801)), s_600._lr(np.arange(801)))
    assert s3(900) == 0.0 and s3.budget_changes == [(600, 2000), (800, 900)]
    assert s3.initial_total_steps == 1000


def test_with_peak_keeps_budget_history():
    s = Schedule("rex", total_steps=100, peak_lr=1.0).with_budget(300, at_step=40)
    g = s.with_peak(0.5, min_lr=0.1)
    np.testing.assert_allclose(g.values(), 0.1 + 0.4 * s.values(), rtol=1e-12)


# -- validation -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(total_steps=0), "total_steps must be >= 1, got 0"),
    (dict(total_steps=-5), "total_steps must be >= 1, got -5"),
    (dict(total_steps=10.5), "total_steps must be an integer, got 10.5"),
    (dict(total_steps=True), "total_steps must be an integer, got True"),
    (dict(total_steps=100, peak_lr=-0.1), "peak_lr must be a finite number >= 0, got -0.1"),
    (dict(total_steps=100, peak_lr=float("nan")), "peak_lr must be a finite number >= 0, got nan"),
    (dict(total_steps=100, min_lr=-1e-3), "min_lr must be a finite number >= 0, got -0.001"),
    (dict(total_steps=100, peak_lr=0.1, min_lr=0.2), r"min_lr \(0.2\) must be <= peak_lr \(0.1\)"),
    (dict(total_steps=100, warmup_steps=100), r"warmup_steps must be < total_steps \(100\), got 100"),
    (dict(total_steps=100, warmup_steps=-1), "warmup_steps must be >= 0, got -1"),
    (dict(total_steps=100, sampling=[0.5, 1.5]), r"fractions in \[0, 1\), got 1.5"),
])
def test_bad_schedule_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Schedule("rex", **kwargs)


def test_bad_names_and_steps():
    with pytest.raises(ValueError, match="unknown schedule 'reks'; valid names: .*rex"):
        Schedule("reks", total_steps=10)
    with pytest.raises(ValueError, match="plateau.*validation metric"):
        Schedule("plateau", total_steps=10)
    s = Schedule("rex", total_steps=10)
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        s(-1)
    with pytest.raises(ValueError, match=r"new_total_steps \(5\) must be > at_step \(5\)"):
        s.with_budget(5, at_step=5)
    with pytest.raises(ValueError, match="at_step must be >= 0, got -2"):
        s.with_budget(20, at_step=-2)
    with pytest.raises(ValueError, match=r"must be > warmup_steps \(8\)"):
        Schedule("rex", total_steps=10, warmup_steps=8).with_budget(8, at_step=2)


def test_argument_vocabulary_is_shared():
    import inspect
    sig = inspect.signature(Schedule)
    for p in ("total_steps", "peak_lr", "min_lr", "warmup_steps", "sampling"):
        assert p in sig.parameters


# -- plateau ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("patience,factor,seed", [(0, 0.1, 0), (2, 0.1, 1), (5, 0.5, 2), (3, 0.1, 3)])
def test_plateau_matches_torch_reduce_on_plateau(patience, factor, seed):
    import torch
    rng = np.random.default_rng(seed)
    metrics = np.concatenate([np.linspace(2, 1, 10), 1 + 0.01 * rng.standard_normal(40), rng.uniform(0.5, 1.5, 30)])
    p = Plateau(patience=patience, factor=factor)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=patience, factor=factor)
    for m in metrics:
        ref.step(float(m))
        assert p.update(float(m)) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
    q = Plateau(patience=patience, factor=factor)
    q.load_state_dict(p.state_dict())
    assert q.update(9.0) == p.update(9.0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(patience=-1), "patience must be an integer >= 0, got -1"),
    (dict(patience=2.5), "patience must be an integer >= 0, got 2.5"),
    (dict(patience=5, factor=1.0), r"factor must be in \(0, 1\), got 1.0"),
    (dict(patience=5, mode="up"), "mode must be 'min' or 'max', got 'up'"),
])
def test_bad_plateau_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Plateau(**kwargs)


def test_doctests_of_the_core():
    import doctest

    import budgetsched.plateau
    import budgetsched.profiles
    import budgetsched.sampling
    import budgetsched.schedule
    for mod in (budgetsched, budgetsched.profiles, budgetsched.sampling, budgetsched.schedule, budgetsched.plateau):
        res = doctest.testmod(mod)
        assert res.failed == 0 and res.attempted > 0, mod.__name__
    assert math.isclose(Schedule("rex", total_steps=2, peak_lr=1.0)(1), 2 / 3)


def test_table_is_values_plus_the_held_end_value():
    for name, kw in (("rex", {}), ("onecycle", {}), ("step", {"sampling": "10-10"})):
        s = Schedule(name, total_steps=97, peak_lr=0.3, min_lr=0.01, warmup_steps=5, **kw).with_budget(150, at_step=40)
        t = s.table()
        assert t.shape == (151,)
        np.testing.assert_array_equal(t[:-1], s.values())
        assert t[-1] == s(150) == s(10**9)
    m = Schedule("onecycle", total_steps=50).momentum_table()
    np.testing.assert_array_equal(m[:-1], Schedule("onecycle", total_steps=50).momentum_values())
    assert m[-1] == Schedule("onecycle", total_steps=50).momentum(50)
    assert Schedule("rex", total_steps=5).momentum_table() is None
