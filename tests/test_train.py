"""The training loop (sequential engine): budgets in steps, LR / momentum per step, plateau in evaluations,
the divergence rule, common random numbers, failures, and equality with a plain torch.optim loop."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from budgetsched import Plateau, Schedule
from budgetsched.bench.engines import optim
from budgetsched.bench.protocol.grid import TrialConfig, total_steps
from budgetsched.bench.protocol.status import Status
from budgetsched.bench.tasks import get_task
from budgetsched.bench.engines.train import EVAL_BATCH, TrialResult, plan_trial, plateau_is_constant, train_trial

TASK = "digits-mlp"
BATCH = 45  # the tests' variant of the task: 20 steps per epoch (898 training examples), 50 epochs at 100 %


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def task():
    return dataclasses.replace(get_task(TASK), max_epochs=50, batch_size=BATCH, weight_decay=0.0)


@pytest.fixture(scope="module")
def data(task):
    return task.load(None, None)


@pytest.fixture
def recorded(monkeypatch):
    """Records (lr, momentum or beta1) of every optimizer step the engine takes (member 0)."""
    log: list[tuple[float, float]] = []
    orig = optim.OptimizerSpec.update

    def update(self, flat, grad, state, cols, i, weight_decay=0.0):
        a, b = float(cols.a[i][0, 0]), float(cols.b[i][0, 0])
        if self.name == "sgdm":
            log.append((-a, b))
        else:  # a = -lr / (1 - b1^t), b = 1 - b1
            b1 = 1.0 - b
            log.append((-a * (1.0 - b1 ** (len(log) + 1)), b1))
        return orig(self, flat, grad, state, cols, i, weight_decay)
    monkeypatch.setattr(optim.OptimizerSpec, "update", update)
    return log


def cfg(schedule="rex", optimizer="sgdm", lr=0.1, seed=0, budget=4.0, unit="steps", **params):
    return TrialConfig(TASK, schedule, optimizer, budget, lr, seed, tuple(params.items()), unit)


def test_lr_of_every_step_is_the_schedule(task, data, recorded):
    r = train_trial(cfg("rex", budget=6.0), task, data)  # 6 % of 50 x 20 steps = 60 steps = 3 epochs
    assert r.status == "done" and r.steps == 60
    expected = Schedule("rex", 60, peak_lr=0.1).values()
    # the engine hands the optimizer the LR in the model's precision (float32 here)
    np.testing.assert_allclose([lr for lr, _ in recorded], expected.astype(np.float32), rtol=0, atol=0)
    assert all(m == np.float32(0.9) for _, m in recorded)
    assert r.curves["epoch"] == [1, 2, 3] and r.curves["step"] == [20, 40, 60]
    assert r.curves["lr"] == pytest.approx([expected[19], expected[39], expected[59]])
    assert all(math.isfinite(v) for v in (r.val_loss, r.val_metric, r.test_loss, r.test_metric))
    assert r.val_loss == r.curves["val_loss"][-1] and r.wall_time > 0


@pytest.mark.parametrize("optimizer", ["sgdm", "adam"])
def test_onecycle_moves_momentum(task, data, recorded, optimizer):
    lr = 0.1 if optimizer == "sgdm" else 0.003
    r = train_trial(cfg("onecycle", optimizer, lr=lr, budget=4.0), task, data)
    assert r.status == "done"
    expected = Schedule("onecycle", 40, peak_lr=lr).momentum_values()
    np.testing.assert_allclose([m for _, m in recorded], expected, rtol=1e-6)  # float32 columns
    np.testing.assert_allclose([x for x, _ in recorded], Schedule("onecycle", 40, peak_lr=lr).values(), rtol=1e-5)
    assert max(expected) == pytest.approx(0.95) and min(expected) < 0.86  # 0.95 -> 0.85 -> 0.95


@pytest.mark.parametrize("budget,unit,steps", [(1, "steps", 10), (2.5, "steps", 25), (1, "epochs", 20),
                                               (2.5, "epochs", 40), (100, "steps", 1000)])
def test_budget_is_counted_in_steps(task, data, budget, unit, steps):
    """1 % of 50 epochs x 20 steps is 10 steps (half an epoch), not a whole epoch; --budget-unit epochs rounds
    up to whole epochs as the paper does."""
    plan = plan_trial(cfg(budget=budget, unit=unit), task, len(data.train_y))
    assert plan.total_steps == steps and plan.epochs == math.ceil(steps / 20)


def test_partial_epoch_run_is_evaluated_at_its_end(task, data, recorded):
    r = train_trial(cfg("linear", budget=2.5), task, data)  # 25 steps: one epoch of 20, then 5
    assert r.status == "done" and r.steps == 25 and len(recorded) == 25
    assert r.curves["epoch"] == [1, 2] and r.curves["step"] == [20, 25]
    assert recorded[-1][0] == pytest.approx(Schedule("linear", 25, peak_lr=0.1)(24))


def test_a_five_epoch_task_gets_three_different_runs_at_1_5_10_percent():
    epochs, spe = 5, 241  # e.g. a character model trained for 5 epochs of 241 steps
    runs = [total_steps(b, "steps", epochs, spe) for b in (1, 5, 10)]
    assert len(set(runs)) == 3 and runs[0] < spe
    assert runs == [13, 61, 121]
    assert {total_steps(b, "epochs", epochs, spe) for b in (1, 5, 10)} == {spe}  # the paper's rounding collapses them


def test_plateau_patience_is_in_evaluations_with_no_cap(task, data, recorded):
    """10 epochs, patience 2: the LR follows budgetsched.Plateau fed with the validation losses of the run."""
    r = train_trial(cfg("plateau", lr=1.0, budget=20.0, patience=2), task, data)
    assert r.status == "done"
    lrs = np.array([lr for lr, _ in recorded]).reshape(10, 20)
    assert (lrs == lrs[:, :1]).all()  # constant within an epoch
    ref, scales = Plateau(2), [1.0]
    for v in r.curves["val_loss"][:-1]:
        scales.append(ref.update(v))
    np.testing.assert_allclose(lrs[:, 0], 1.0 * np.array(scales), rtol=1e-6)
    assert min(scales) < 1.0  # the rule did decay in this run
    # patience 12 on the same run: no cap to 10 // 10 = 1 epoch, so no decay can happen
    recorded.clear()
    r12 = train_trial(cfg("plateau", lr=1.0, budget=20.0, patience=12), task, data)
    assert r12.status == "done" and {lr for lr, _ in recorded} == {1.0}


@pytest.mark.parametrize("patience", [1, 2, 3, 5])
def test_plateau_that_cannot_trigger_equals_constant(task, data, patience):
    """E evaluations allow a decay that still changes training only if E >= patience + 3."""
    n = len(data.train_y)
    for epochs in range(1, 8):
        c = cfg("plateau", lr=1.0, budget=2.0 * epochs, patience=patience)  # 2 % = 1 epoch
        assert plateau_is_constant(c, task, n) == (epochs <= patience + 2)
    # a run where a decay is possible but the validation loss keeps improving also equals constant; one where it
    # cannot trigger must equal constant exactly (both trained here, no reuse)
    c = cfg("plateau", lr=0.1, budget=6.0, patience=1)  # 3 evaluations
    assert plateau_is_constant(c, task, n)
    a, b = train_trial(c, task, data), train_trial(cfg("constant", lr=0.1, budget=6.0), task, data)
    assert a.curves == b.curves and (a.val_loss, a.test_metric) == (b.val_loss, b.test_metric)
    assert not plateau_is_constant(cfg("rex", budget=6.0), task, n)


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


def test_divergence_non_finite_loss(task, data):
    r = train_trial(cfg("rex", lr=1e30), task, data)  # overflows float32 within the first steps
    assert r.status == Status.DIVERGED == "diverged"
    assert (r.val_loss, r.val_metric, r.test_loss, r.test_metric) == (None, None, None, None)
    assert 0 < r.steps < 40 and r.error is None and r.curves["epoch"] == []


def test_divergence_by_loss_explosion(task, data):
    """SGDM at LR 1e4 keeps a finite but exploded loss; it is diverged, at the first step whose loss exceeds 10x
    the first step's loss (found here by replaying the losses)."""
    losses: list[float] = []

    def spy(out, y):
        loss = task.loss(out, y)
        losses.append(float(loss.detach()))
        return loss
    r = train_trial(cfg("constant", lr=1e4, budget=6.0), dataclasses.replace(task, loss=spy), data)
    assert r.status == "diverged"
    assert all(math.isfinite(v) for v in losses[: r.steps + 1])
    first_bad = next(i for i, v in enumerate(losses) if not math.isfinite(v) or v > 10 * losses[0])
    assert r.steps == first_bad and losses[first_bad] > 10 * losses[0]
    # a looser factor lets more steps through
    loose = train_trial(dataclasses.replace(cfg("constant", lr=1e4, budget=6.0), diverge_factor=1e30), task, data)
    assert loose.steps >= r.steps


def test_setup_failure_is_a_result(task, data):
    def broken():
        raise RuntimeError("cannot build this model")
    r = train_trial(cfg(), dataclasses.replace(task, make_model=broken), data)
    assert isinstance(r, TrialResult) and r.status == "failed"
    assert "cannot build this model" in r.error and r.steps == 0 and r.val_loss is None


def test_task_mismatch_raises(data):
    with pytest.raises(ValueError, match="digits-mlp.*mnist1d-mlp"):
        train_trial(cfg(), get_task("mnist1d-mlp"), data)


def test_sequential_engine_equals_a_plain_torch_optim_loop(task, data):
    """Independent truth: a hand-written loop with torch.optim (scheduler LRs set per step) gives the same run."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for optimizer, lr, sched in (("sgdm", 0.1, "rex"), ("adam", 0.003, "onecycle")):
            c = cfg(sched, optimizer, lr=lr, seed=5, budget=3.0)  # 30 steps: 1.5 epochs
            r = train_trial(c, dataclasses.replace(task, weight_decay=1e-3), data)
            s = Schedule(sched, 30, peak_lr=lr)
            torch.manual_seed(5)
            model = task.make_model()
            opt = optim.get_optimizer(optimizer).torch_optimizer(model.parameters(), lr, weight_decay=1e-3)
            x, y = data.train_x.double(), data.train_y
            order, t, norms = torch.Generator().manual_seed(5), 0, []
            while t < 30:
                perm = torch.randperm(len(y), generator=order)
                for i in range(20):
                    if t == 30:
                        break
                    mom = s.momentum(t) if s.momentum(t) is not None else 0.9
                    for g in opt.param_groups:
                        g["lr"] = s(t)
                        if optimizer == "sgdm":
                            g["momentum"] = mom
                        else:
                            g["betas"] = (mom, 0.999)
                    idx = perm[i * BATCH:(i + 1) * BATCH]
                    opt.zero_grad()
                    task.loss(model(x[idx]), y[idx]).backward()
                    norms.append(float(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).norm()))
                    opt.step()
                    t += 1
            with torch.no_grad():
                out = model(data.test_x.double())
                test_loss, test_metric = float(task.loss(out, data.test_y)), float(task.metric(out, data.test_y).double().mean())
            assert len(data.test_y) <= EVAL_BATCH
            assert r.steps == 30
            # the recorded gradient norm is the epoch's mean norm of the mini-batch gradient (before weight decay)
            assert r.curves["grad_norm"] == pytest.approx([np.mean(norms[:20]), np.mean(norms[20:])], rel=1e-9)
            assert r.test_loss == pytest.approx(test_loss, rel=1e-9)
            assert r.test_metric == pytest.approx(test_metric, abs=1e-9)
    finally:
        torch.set_default_dtype(old)


@pytest.mark.parametrize("schedule", ["linear", "rex", "onecycle"])
def test_budget_change_plans(task, data, schedule):
    """Planned 25 % (250 steps), told at 20 % (step 200) that the budget is 100 % (1000 steps)."""
    n = len(data.train_y)
    plan = lambda how: plan_trial(cfg(schedule, lr=0.5, budget=100.0, planned_budget=25, change_at=20,  # noqa: E731
                                      on_change=how), task, n)
    first = Schedule(schedule, 250, peak_lr=0.5)
    cont, restart, keep = plan("continue"), plan("restart"), plan("keep")
    rewarm, extend = plan("rewarm"), plan("extend")
    assert cont.total_steps == restart.total_steps == keep.total_steps == extend.total_steps == 1000
    np.testing.assert_allclose(cont.lrs, first.with_budget(1000, at_step=200, strategy="continue").values(), rtol=1e-12)
    for p in (cont, restart, keep, rewarm, extend):  # the same run until the change is learned
        np.testing.assert_allclose(p.lrs[:200], first.values()[:200], rtol=1e-12)
    assert cont.lrs[200] == pytest.approx(first(200))  # continue: no jump
    # rewarm (spelled "restart" before): the schedule again from its peak over the remaining 800 steps
    np.testing.assert_allclose(restart.lrs[200:], Schedule(schedule, 800, peak_lr=0.5).values(), rtol=1e-12)
    np.testing.assert_array_equal(rewarm.lrs, restart.lrs)
    # extend: from the news on, the plan for 1000 steps from the start at peak 0.5 x sqrt(250 / 1000)
    np.testing.assert_allclose(extend.lrs[200:], Schedule(schedule, 1000, peak_lr=0.25).values()[200:], rtol=1e-12)
    if schedule == "onecycle":  # momentum follows the same rule
        np.testing.assert_allclose(rewarm.momenta[200:], [Schedule(schedule, 800).momentum(t) for t in range(800)])
        np.testing.assert_allclose(rewarm.momenta[:200], [first.momentum(t) for t in range(200)])
    np.testing.assert_allclose(keep.lrs[:250], first.values(), rtol=1e-12)
    assert np.all(keep.lrs[250:] == first(250))  # then the planned end value, held
    if schedule == "onecycle":
        np.testing.assert_allclose(cont.momenta, [first.with_budget(1000, 200, strategy="continue").momentum(t)
                                                  for t in range(1000)])


@pytest.mark.parametrize("params,match", [
    (dict(planned_budget=25, change_at=20), "missing on_change"),
    (dict(planned_budget=25, change_at=20, on_change="jump"), "unknown on_change 'jump'"),
    (dict(planned_budget=25, change_at=30, on_change="keep"), "change_at 30 must come before"),
    (dict(planned_budget=0, change_at=20, on_change="keep"), "percents in"),
])
def test_bad_budget_changes_are_rejected(params, match):
    with pytest.raises(ValueError, match=match):
        cfg("linear", budget=100.0, **params)


def test_the_engines_train_the_planned_run_and_never_recompute_it(task, data):
    """A PlannedTrial is the run: its total_steps and steps_per_epoch are what the loop trains and evaluates,
    whatever the config's budget would give (here 2 % = 20 steps, planned as 13 steps in epochs of 5)."""
    from budgetsched.bench.engines.batched import train_group
    from budgetsched.bench.protocol.plan import PlannedTrial, plan_trial as planned_of

    c = cfg("linear", budget=2.0)
    assert planned_of(c, task, len(data.train_y)).total_steps == 20
    planned = PlannedTrial(c, 13, 5)
    r = train_trial(planned, task, data)
    assert r.status == "done" and r.steps == 13 and r.curves["step"] == [5, 10, 13]
    [(config, b)] = list(train_group([planned], task, data))
    assert config == c and b.steps == 13 and b.curves["step"] == [5, 10, 13]
    assert b.test_metric == pytest.approx(r.test_metric, abs=1e-9)
