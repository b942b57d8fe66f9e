"""Keras 3 adapter (torch backend): values vs the closed form, inside an optimizer, serialization round trip."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from budgetsched import Schedule  # noqa: E402
from budgetsched.keras import BudgetSchedule  # noqa: E402

T = 120
STEPS = [0, 1, 2, 11, 59, 60, 61, 89, 90, 91, 119, 120, 121, 5000, 2**31 - 1]
CASES = [("rex", {}), ("linear", {}), ("cosine", {}), ("exp", {"gamma": -2.0}), ("step", {}),
         ("onecycle", {}), ("delayed-linear", {"delay": 0.4}), ("wsd", {"fraction": 0.25}),
         ("rex", {"sampling": "10-10", "min_lr": 0.01}), ("cosine", {"warmup_steps": 12})]


def _np(x):
    if isinstance(x, keras.Variable):
        x = x.value
    if hasattr(x, "detach"):  # a torch tensor (the torch backend)
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


@pytest.mark.parametrize("profile,params", CASES)
def test_values_equal_schedule(profile, params):
    sched = BudgetSchedule(profile, T, 0.25, **params)
    ref = Schedule(profile, T, 0.25, **params)
    got = [float(_np(sched(t))) for t in STEPS]
    np.testing.assert_allclose(got, [ref(t) for t in STEPS], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(_np(sched(keras.ops.arange(T))), ref.values(), rtol=1e-6, atol=1e-9)


def test_sgd_reports_and_applies_the_scheduled_lr():
    sched = BudgetSchedule("rex", 40, 0.1, warmup_steps=4)
    ref = Schedule("rex", 40, 0.1, warmup_steps=4)
    opt = keras.optimizers.SGD(learning_rate=sched)
    var = keras.Variable(np.zeros(3, dtype="float32"))
    grad = np.array([1.0, -2.0, 0.5], dtype="float32")
    for t in range(45):
        assert float(_np(opt.learning_rate)) == pytest.approx(ref(t), rel=1e-6)
        before = _np(var)
        opt.apply_gradients([(keras.ops.convert_to_tensor(grad), var)])
        np.testing.assert_allclose(_np(var) - before, -ref(t) * grad, rtol=1e-5, atol=1e-8)
    assert int(_np(opt.iterations)) == 45
    assert float(_np(opt.learning_rate)) == ref(45) == 0.0


@pytest.mark.parametrize("profile,params", [("rex", {}), ("step", {"milestones": (0.3, 0.6, 0.9), "factor": 0.5}),
                                            ("linear", {"sampling": [0.25, 0.5], "warmup_steps": 5, "min_lr": 0.001}),
                                            ("refined", {"grad_norms": np.array([1.0, 3.0, 2.0])})])
def test_config_round_trip(profile, params):
    sched = BudgetSchedule(profile, T, 0.3, **params)
    again = BudgetSchedule.from_config(sched.get_config())
    via_keras = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(sched))
    assert isinstance(via_keras, BudgetSchedule)
    for other in (again, via_keras):
        assert other.get_config() == sched.get_config()
        np.testing.assert_array_equal(_np(other(keras.ops.arange(T + 2))), _np(sched(keras.ops.arange(T + 2))))
    config = keras.optimizers.SGD(learning_rate=sched).get_config()
    assert config["learning_rate"]["class_name"] == "BudgetSchedule"
    restored = keras.optimizers.SGD.from_config(config)  # an optimizer restored from its config still schedules
    var = keras.Variable(np.zeros(2, dtype="float32"))
    for t in range(3):
        assert float(_np(restored.learning_rate)) == pytest.approx(sched.schedule(t), rel=1e-6)
        restored.apply_gradients([(keras.ops.ones(2), var)])


def test_errors():
    with pytest.raises(ValueError, match="unknown schedule 'rexx'; valid names"):
        BudgetSchedule("rexx", T, 0.1)
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        BudgetSchedule("plateau", T, 0.1)
    with pytest.raises(ValueError, match="total_steps must be >= 1, got -3"):
        BudgetSchedule("rex", -3, 0.1)
    with pytest.raises(ValueError, match="min_lr \\(0.5\\) must be <= peak_lr \\(0.1\\)"):
        BudgetSchedule("rex", T, 0.1, min_lr=0.5)
    with pytest.raises(ValueError, match="callable profile .* cannot be serialized"):
        BudgetSchedule(lambda z: 1 - z, T, 0.1).get_config()


# -- budget changes tracked in the config (issue 10) -----------------------------------------------------------------

def test_set_total_steps_follows_the_schedule_rule_and_is_saved_in_the_config():
    kw = dict(warmup_fraction=0.1, min_lr_ratio=0.04)
    sched = BudgetSchedule("rex", T, 0.25, **kw)
    sched.set_total_steps(300, at_step=60, strategy="continue")
    sched.set_total_steps(330, at_step=300, rewarm_steps=10)  # continuing the finished run: re-warm
    ref = (Schedule("rex", T, 0.25, **kw).with_budget(300, at_step=60, strategy="continue")
           .with_budget(330, at_step=300, rewarm_steps=10))
    np.testing.assert_allclose(_np(sched(keras.ops.arange(340))), [ref(t) for t in range(340)], rtol=1e-5, atol=1e-8)
    config = sched.get_config()
    assert config["total_steps"] == T and config["budget_changes"] == [[60, 300], [300, 330, 10, None]]
    via_keras = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(sched))
    np.testing.assert_array_equal(_np(via_keras(keras.ops.arange(340))), _np(sched(keras.ops.arange(340))))
    restored = keras.optimizers.SGD.from_config(keras.optimizers.SGD(learning_rate=sched).get_config())
    assert restored.learning_rate is not None and restored._learning_rate.budget_changes == sched.budget_changes


def test_a_saved_model_resumes_with_its_budget(tmp_path):
    sched = BudgetSchedule("linear", 10, 0.1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=sched), loss="mse")
    x, y = np.ones((8, 3), dtype="float32"), np.zeros((8, 1), dtype="float32")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 2 optimizer steps
    sched.set_total_steps(20, at_step=int(_np(model.optimizer.iterations)), strategy="continue")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    schedule = loaded.optimizer._learning_rate
    assert isinstance(schedule, BudgetSchedule) and schedule.budget_changes == [(2, 20)]
    assert int(_np(loaded.optimizer.iterations)) == 2
    ref = Schedule("linear", 10, 0.1).with_budget(20, at_step=2, strategy="continue")
    assert float(_np(loaded.optimizer.learning_rate)) == pytest.approx(ref(2), rel=1e-6)
    np.testing.assert_allclose(_np(schedule(keras.ops.arange(22))), [ref(t) for t in range(22)], rtol=1e-5, atol=1e-8)


def test_vocabulary_errors():
    with pytest.raises(ValueError, match=r"give min_lr \(0.0\) or min_lr_ratio \(0.1\), not both"):
        BudgetSchedule("rex", T, 0.1, min_lr=0.0, min_lr_ratio=0.1)
    with pytest.raises(ValueError, match=r"new_total_steps \(5\) must be > at_step \(10\)"):
        BudgetSchedule("rex", T, 0.1).set_total_steps(5, at_step=10)


def test_doctests_of_the_adapter_run():
    import doctest

    import budgetsched.keras as module
    res = doctest.testmod(module)
    assert res.failed == 0 and res.attempted > 0


def test_set_total_steps_takes_a_strategy_and_keeps_it_in_the_config():
    from budgetsched import Schedule
    from budgetsched.keras import BudgetSchedule

    s = BudgetSchedule("linear", total_steps=100, peak_lr=1.0)
    s.set_total_steps(200, at_step=40, strategy="extend")
    want = Schedule("linear", 100, 1.0).with_budget(200, at_step=40, strategy="extend")
    assert [float(s(t)) for t in (40, 41, 150)] == pytest.approx([want(t) for t in (40, 41, 150)], rel=1e-6)
    again = BudgetSchedule.from_config(s.get_config())
    assert again.budget_changes == [(40, 200, "extend")]
    assert float(again(41)) == pytest.approx(0.5 ** 0.5 * (1 - 41 / 200), rel=1e-6)
