"""optax adapter: exact table lookups against the closed form, under jax.jit, inside optax, vs optax's schedules."""
from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
import jax.numpy as jnp  # noqa: E402

from budgetsched import Schedule  # noqa: E402
from budgetsched.optax import from_schedule, momentum_schedule, schedule  # noqa: E402

T = 200
STEPS = np.array([0, 1, 2, 7, 49, 50, 99, 100, 101, 149, 150, 151, 198, 199, 200, 201, 1000, 2**31 - 1])

CASES = [
    ("rex", {}), ("linear", {}), ("cosine", {}), ("exp", {"gamma": -3.0}), ("step", {}),
    ("onecycle", {}), ("onecycle", {"variant": "torch"}), ("constant", {}), ("delayed-linear", {"delay": 0.3}),
    ("rex-beta", {"beta": 0.1}), ("uba", {"phi": 3.0}), ("wsd", {"cooldown": "1-sqrt"}), ("polynomial", {}),
    ("refined", {"grad_norms": [1.0, 2.0, 1.5, 3.0, 2.0, 1.0]}),
    ("linear", {"sampling": "5-25"}), ("rex", {"warmup_steps": 10, "min_lr": 0.01}),
]


@pytest.mark.parametrize("profile,params", CASES)
def test_values_equal_schedule_eager_and_jit(profile, params):
    fn = schedule(profile, T, 0.3, **params)
    ref = Schedule(profile, T, 0.3, **params)
    expected = np.array([ref(int(t)) for t in STEPS])
    eager = np.array([float(fn(int(t))) for t in STEPS])
    jitted = jax.jit(fn)
    traced = np.array([float(jitted(jnp.int32(t))) for t in STEPS])
    vectorised = np.asarray(jitted(jnp.asarray(STEPS, dtype=jnp.int32)))
    for got in (eager, traced, vectorised):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.asarray(fn(jnp.arange(T))), ref.values(), rtol=1e-6, atol=1e-9)


def test_applied_sgd_update_is_minus_lr_times_grad_inside_jit():
    fn = schedule("rex", 50, 0.2, warmup_steps=5)
    ref = Schedule("rex", 50, 0.2, warmup_steps=5)
    opt = optax.sgd(learning_rate=fn)
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.array([1.0, -2.0, 0.5])}
    state = opt.init(params)
    update = jax.jit(opt.update)
    for t in range(60):
        updates, state = update(grads, state, params)
        np.testing.assert_allclose(np.asarray(updates["w"]), -ref(t) * np.asarray(grads["w"]), rtol=1e-6)


def test_onecycle_momentum_through_inject_hyperparams():
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule("onecycle", T, 0.1),
                                              momentum=momentum_schedule("onecycle", T))
    params = jnp.zeros(2)
    state = opt.init(params)
    ref = Schedule("onecycle", T, 0.1)
    step = jax.jit(lambda s: opt.update(jnp.ones(2), s, params)[1])
    for t in range(T + 3):
        state = step(state)  # the hyperparameters stored by update t are the ones it used
        assert float(state.hyperparams["learning_rate"]) == pytest.approx(ref(t), rel=1e-6)
        assert float(state.hyperparams["momentum"]) == pytest.approx(ref.momentum(t), rel=1e-6)


@pytest.mark.parametrize("profile,theirs,upto", [
    ("linear", lambda: optax.linear_schedule(0.3, 0.0, T), 2 * T),
    ("cosine", lambda: optax.cosine_decay_schedule(0.3, T), 2 * T),
    ("exp", lambda: optax.exponential_decay(0.3, transition_steps=T, decay_rate=math.exp(-3.0)), T + 1),
    ("step", lambda: optax.piecewise_constant_schedule(0.3, {T // 2: 0.1, 3 * T // 4: 0.1}), 2 * T),
])
def test_matches_optax_own_schedules(profile, theirs, upto):
    ours, other = jax.jit(schedule(profile, T, 0.3)), jax.jit(theirs())
    counts = jnp.arange(upto)
    np.testing.assert_allclose(np.asarray(ours(counts)), np.asarray(other(counts)), rtol=1e-5, atol=1e-7)


def test_errors():
    with pytest.raises(ValueError, match="unknown schedule 'rexx'; valid names"):
        schedule("rexx", T, 0.1)
    with pytest.raises(ValueError, match="reduce_on_plateau"):
        schedule("plateau", T, 0.1)
    with pytest.raises(ValueError, match="total_steps must be >= 1, got 0"):
        schedule("rex", 0, 0.1)
    with pytest.raises(ValueError, match="warmup_steps must be < total_steps \\(200\\), got 200"):
        schedule("rex", T, 0.1, warmup_steps=T)
    with pytest.raises(ValueError, match="min_lr must be a finite number >= 0, got -1"):
        schedule("rex", T, 0.1, min_lr=-1)
    with pytest.raises(ValueError, match="only 'onecycle' has a momentum curve, got profile 'rex'"):
        momentum_schedule("rex", T)


# -- budget history, the shared vocabulary, counts (issue 10) -------------------------------------------------------

def test_budget_history_gives_a_new_pure_function_with_the_schedule_rule():
    ref = (Schedule("rex", T, 0.3, warmup_steps=10).with_budget(350, at_step=120, strategy="continue")
           .with_budget(300, at_step=200, rewarm_steps=20, rewarm_peak=0.1))
    fn = schedule("rex", T, 0.3, warmup_steps=10, budget_changes=[(120, 350), (200, 300, 20, 0.1)])
    counts = jnp.arange(0, 320)
    want = [ref(t) for t in range(320)]
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(counts)), want, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.asarray(jax.jit(from_schedule(ref))(counts)), want, rtol=1e-5, atol=1e-8)
    assert fn.schedule.budget_changes == ref.budget_changes  # the history to keep in a checkpoint
    # the unchanged past: the function with the history equals the one without it before the change, and at the
    # change step within float32 rounding (float64 is bit-for-bit continuous there, see test_schedule)
    before = schedule("rex", T, 0.3, warmup_steps=10)
    np.testing.assert_array_equal(np.asarray(fn(jnp.arange(120))), np.asarray(before(jnp.arange(120))))
    assert float(fn(120)) == pytest.approx(float(before(120)), rel=2e-7)


def test_momentum_follows_the_budget_history():
    fn = momentum_schedule("onecycle", T, budget_changes=[(50, 400)])
    ref = Schedule("onecycle", T).with_budget(400, at_step=50, strategy="continue")  # a pair is continue
    np.testing.assert_allclose(np.asarray(fn(jnp.arange(410))), [ref.momentum(t) for t in range(410)], rtol=1e-6)


def test_warmup_fraction_start_lr_and_floor_ratio():
    kw = dict(warmup_fraction=0.05, warmup_start_lr=0.0, min_lr_ratio=0.1)
    fn, ref = schedule("cosine", T, 0.3, **kw), Schedule("cosine", T, 0.3, **kw)
    np.testing.assert_allclose(np.asarray(fn(jnp.arange(T + 5))), [ref(t) for t in range(T + 5)], rtol=1e-6,
                               atol=1e-9)


def test_counts_are_clamped_or_rejected():
    fn = schedule("linear", T, 0.3)
    assert float(fn(-5)) == float(fn(0)) == pytest.approx(0.3)
    assert float(fn(2**40)) == 0.0
    with pytest.raises(ValueError, match="count must be a step in \\[0, 2\\*\\*53\\], got an integer with 401 digits"):
        fn(10**400)
    with pytest.raises(ValueError, match="count must be a step in \\[0, 2\\*\\*53\\], got nan"):
        fn(float("nan"))


def test_doctests_of_the_adapter_run():
    import doctest

    import budgetsched.optax as module
    res = doctest.testmod(module)
    assert res.failed == 0 and res.attempted > 0


def test_budget_history_takes_every_strategy():
    from budgetsched.optax import schedule

    fn = schedule("linear", total_steps=100, peak_lr=1.0, budget_changes=[(40, 200, "extend")])
    peak = 0.5 ** 0.5  # the horizon-transfer peak, sqrt(100 / 200)
    assert [float(fn(t)) for t in (40, 41, 150)] == pytest.approx([0.6, peak * (1 - 41 / 200), peak * 0.25], rel=1e-6)
    fn2 = schedule("linear", total_steps=100, peak_lr=1.0, budget_changes=[(40, 200, 10)])  # rewarm over 10 steps
    assert [float(fn2(t)) for t in (40, 49, 125)] == pytest.approx([0.6, 1.0, 0.5], rel=1e-6)
