"""Sequential engine: LR / momentum per step follow the schedule, divergence, determinism, failures."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from budgetsched import Schedule
from budgetsched.bench import train
from budgetsched.bench.grid import TrialConfig
from budgetsched.bench.tasks import get_task
from budgetsched.bench.train import TrialResult, effective_patience, train_trial

TASK = "digits-mlp"  # 20 steps per epoch, 50 epochs at 100 %


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def task():
    return get_task(TASK)


@pytest.fixture(scope="module")
def data(task):
    return task.load(None, None)


@pytest.fixture
def recorded(monkeypatch):
    """Records every optimizer's param_groups[0] right before each of its steps."""
    log: list[dict] = []
    orig = train.make_optimizer

    def make(*args, **kwargs):
        opt = orig(*args, **kwargs)
        step = opt.step

        def recording_step(*a, **k):
            log.append(dict(opt.param_groups[0]))
            return step(*a, **k)
        opt.step = recording_step
        return opt
    monkeypatch.setattr(train, "make_optimizer", make)
    return log


def cfg(schedule="rex", optimizer="sgdm", lr=0.1, seed=0, budget=4.0, **params):
    return TrialConfig(TASK, schedule, optimizer, budget, lr, seed, tuple(params.items()))


def test_lr_of_every_step_is_the_schedule(task, data, recorded):
    r = train_trial(cfg("rex", budget=6.0), task, data)  # 3 epochs x 20 steps
    assert r.status == "done" and r.steps == 60
    expected = Schedule("rex", 60, peak_lr=0.1).values()
    np.testing.assert_allclose([g["lr"] for g in recorded], expected, rtol=0, atol=0)
    assert all(g["momentum"] == 0.9 for g in recorded)
    assert r.curves["epoch"] == [1, 2, 3]
    assert r.curves["lr"] == pytest.approx([expected[19], expected[39], expected[59]])
    assert all(math.isfinite(v) for v in (r.val_loss, r.val_metric, r.test_loss, r.test_metric))
    assert r.val_loss == r.curves["val_loss"][-1] and r.wall_time > 0


@pytest.mark.parametrize("optimizer,key", [("sgdm", "momentum"), ("adam", "betas")])
def test_onecycle_moves_momentum(task, data, recorded, optimizer, key):
    lr = 0.1 if optimizer == "sgdm" else 0.003
    r = train_trial(cfg("onecycle", optimizer, lr=lr, budget=4.0), task, data)
    assert r.status == "done"
    mom = [g[key] if key == "momentum" else g[key][0] for g in recorded]
    expected = Schedule("onecycle", 40, peak_lr=lr).momentum_values()
    np.testing.assert_allclose(mom, expected)
    assert max(mom) == pytest.approx(0.95) and min(mom) < 0.86  # 0.95 -> 0.85 -> 0.95
    if key == "betas":
        assert all(g["betas"][1] == 0.999 for g in recorded)


def test_plateau_scales_lr_per_epoch(task, data, recorded):
    # 10 epochs: patience 10 -> effective max(1, 10 // 10) = 1 epoch
    r = train_trial(cfg("plateau", lr=0.1, budget=20.0, patience=10), task, data)
    assert r.status == "done"
    lrs = np.array([g["lr"] for g in recorded]).reshape(10, 20)
    assert (lrs == lrs[:, :1]).all()  # constant within an epoch
    scales = lrs[:, 0] / 0.1
    assert scales[0] == 1.0 and np.all(np.diff(scales) <= 0)
    assert set(np.round(np.log10(scales), 9)) <= {0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0}


def test_effective_patience_rule():
    assert effective_patience(5, 100) == 5
    assert effective_patience(10, 30) == 3
    assert effective_patience(10, 5) == 1  # never below one epoch
    assert effective_patience(5, 1) == 1


def test_same_seed_same_result_other_seed_differs(task, data):
    a, b = (train_trial(cfg("step", lr=0.3, seed=7), task, data) for _ in range(2))
    c = train_trial(cfg("step", lr=0.3, seed=8), task, data)
    assert a.curves == b.curves and (a.val_loss, a.test_loss) == (b.val_loss, b.test_loss)
    assert a.curves["train_loss"] != c.curves["train_loss"]


def test_common_random_numbers_across_schedules(task, data):
    """Same seed: the same first batch and the same initial loss whatever the schedule and LR."""
    seen: list[tuple[torch.Tensor, float]] = []

    def spy(out, y):
        loss = task.loss(out, y)
        seen.append((y.clone(), float(loss.detach())))
        return loss
    patched = dataclasses.replace(task, loss=spy)
    first = {}
    for sched, lr in (("rex", 0.1), ("cosine", 0.03)):
        seen.clear()
        assert train_trial(cfg(sched, lr=lr, seed=3, budget=2.0), patched, data).status == "done"
        first[sched] = seen[0]
    assert torch.equal(first["rex"][0], first["cosine"][0]) and first["rex"][1] == first["cosine"][1]


def test_divergence_stops_early(task, data):
    r = train_trial(cfg("rex", lr=1e30), task, data)  # overflows float32 on the first step
    assert r.status == "diverged"
    assert (r.val_loss, r.val_metric, r.test_loss, r.test_metric) == (None, None, None, None)
    assert 0 < r.steps < 40 and r.error is None


def test_failure_is_a_result(task, data):
    r = train_trial(cfg("no-such-schedule"), task, data)
    assert isinstance(r, TrialResult) and r.status == "failed"
    assert "no-such-schedule" in r.error and r.steps == 0 and r.val_loss is None
    r = train_trial(cfg("plateau"), task, data)  # plateau without its patience
    assert r.status == "failed" and "patience" in r.error


def test_task_mismatch_raises(data):
    with pytest.raises(ValueError, match="digits-mlp.*mnist1d-mlp"):
        train_trial(cfg(), get_task("mnist1d-mlp"), data)
