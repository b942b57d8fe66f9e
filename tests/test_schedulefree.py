"""Schedule-free as a contender: one run per (LR, seed) serves every budget, evaluated with the averaged weights;
checked against calling the schedulefree package directly."""
from __future__ import annotations

import dataclasses

import numpy as np

import pytest
import torch

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.engines.schedulefree import train_schedule_free
from budgetsched.bench.tasks import get_task
from budgetsched.bench.engines.train import Batches

schedulefree = pytest.importorskip("schedulefree", reason="the schedulefree extra is part of make test's install")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup():
    task = dataclasses.replace(get_task("digits-mlp"), max_epochs=10, batch_size=45, weight_decay=1e-3)
    return task, task.load(None, None)


def _direct(task, data, optimizer, lr, seed, steps):
    """The package used by hand: same seed, same data order, averaged weights at the end (opt.eval())."""
    torch.manual_seed(seed)
    model = task.make_model()
    if optimizer == "sgdm":
        opt = schedulefree.SGDScheduleFree(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)
    else:
        opt = schedulefree.AdamWScheduleFree(model.parameters(), lr=lr, weight_decay=1e-3)
    batches = Batches([seed], data.train_x, data.train_y, task.batch_size, None)
    opt.train()
    done = 0
    while done < steps:
        n = min(20, steps - done)
        xs, ys = batches.epoch(n)
        for i in range(n):
            xb, yb = batches.batch(xs, ys, i)
            loss = task.loss(model(xb[0]), yb[0])
            opt.zero_grad()
            loss.backward()
            opt.step()
        done += n
    opt.eval()
    with torch.no_grad():
        out = model(data.test_x)
        return float(task.loss(out, data.test_y)), float(task.metric(out, data.test_y).double().mean())


@pytest.mark.parametrize("optimizer,lr", [("sgdm", 0.3), ("adam", 0.003)])
def test_one_run_serves_every_budget_and_equals_the_package(setup, optimizer, lr):
    task, data = setup
    configs = [TrialConfig("digits-mlp", "schedule-free", optimizer, b, lr, 4) for b in (10.0, 25.0, 100.0)]
    calls = []
    real = task.make_model
    counted = dataclasses.replace(task, make_model=lambda: calls.append(1) or real())
    out = dict(train_schedule_free(configs, counted, data))
    assert len(calls) == 1  # one model, one run for three budgets
    for c, steps in zip(configs, (20, 50, 200)):  # 10 epochs x 20 steps
        r = out[c]
        assert r.status == "done" and r.steps == steps and r.curves["step"][-1] == steps
        test_loss, test_metric = _direct(task, data, optimizer, lr, 4, steps)
        assert r.test_loss == pytest.approx(test_loss, rel=1e-5)
        assert r.test_metric == pytest.approx(test_metric, abs=1e-9)
    assert out[configs[1]].curves["step"] == [20, 40, 50]  # epoch ends, then the budget's own end


def test_schedule_free_is_a_schedule_of_the_grid():
    c = TrialConfig("digits-mlp", "schedule-free", "adam", 10.0, 0.01, 0, (("warmup_steps", 5),))
    assert c.label == "schedule-free(warmup_steps=5)"
    with pytest.raises(ValueError, match="choose from warmup_steps"):
        TrialConfig("digits-mlp", "schedule-free", "adam", 10.0, 0.01, 0, (("gamma", 5),))


def test_divergence_ends_the_later_budgets(setup):
    task, data = setup
    configs = [TrialConfig("digits-mlp", "schedule-free", "sgdm", b, 1e4, 0) for b in (1.0, 100.0)]
    out = dict(train_schedule_free(configs, task, data))
    assert out[configs[1]].status == "diverged" and out[configs[1]].steps < 200


# -------------------------------------------------------------------- the optimizer specification, step by step
@pytest.mark.parametrize("name", ["sgdm", "adam"])
@pytest.mark.parametrize("wd,warmup", [(0.0, 0), (1e-3, 0), (1e-3, 5)])
def test_the_spec_equals_the_package_step_by_step(name, wd, warmup):
    """Independent truth: SGDScheduleFree / AdamWScheduleFree on one parameter per member. After every step the
    iterate y (train mode) and the evaluated average x (eval mode, then back) agree; each member has its own LR,
    and a member's LR columns spread over two epochs (the columns of a later epoch know the steps before it)."""
    from budgetsched.bench.engines.optim import ScheduleFreeSpec, optimizer_for

    spec = optimizer_for(TrialConfig("digits-mlp", "schedule-free", name, 10.0, 0.1, 0,
                                     (("warmup_steps", warmup),) if warmup else ()))
    assert isinstance(spec, ScheduleFreeSpec) and spec.warmup_steps == warmup
    gen = torch.Generator().manual_seed(1)
    K, N, S = 3, 7, 14
    lr = [0.3, 0.1, 0.03] if name == "sgdm" else [0.01, 0.003, 0.03]
    p0 = torch.randn(K, N, generator=gen, dtype=torch.float64)
    grads = [torch.randn(K, N, generator=gen, dtype=torch.float64) for _ in range(S)]
    flat, state = p0.clone(), spec.init_state(p0)
    ours_y, ours_x = [], []
    for epoch in (range(0, 6), range(6, S)):
        steps = np.arange(epoch.start, epoch.stop)
        cols = spec.columns(np.tile(lr, (len(steps), 1)), None, steps, "cpu", torch.float64)
        for i, step in enumerate(steps):
            with torch.no_grad():
                spec.update(flat, grads[step].clone(), state, cols, i, wd)
            with spec.evaluating(flat, state):
                ours_x.append(flat.clone())
            ours_y.append(flat.clone())
    for k in range(K):
        p = torch.nn.Parameter(p0[k].clone())
        opt = spec.torch_optimizer([p], lr=lr[k], weight_decay=wd)
        opt.train()
        for i in range(S):
            p.grad = grads[i][k].clone()
            opt.step()
            opt.eval()
            torch.testing.assert_close(ours_x[i][k], p.detach(), rtol=1e-12, atol=1e-14)
            opt.train()
            torch.testing.assert_close(ours_y[i][k], p.detach(), rtol=1e-12, atol=1e-14)


def test_schedule_free_trains_in_the_one_loop_with_its_divergence_rule(setup, monkeypatch):
    """No second loop: the run goes through train.fit (the one divergence rule), with the schedule-free spec."""
    from budgetsched.bench.engines import schedulefree as sf_mod
    from budgetsched.bench.engines.optim import ScheduleFreeSpec

    task, data = setup
    seen = []
    real = sf_mod.fit

    def spy(model, members, spec, *a, **k):
        seen.append((type(spec), members.plan.total_steps, k.get("start") is not None))
        return real(model, members, spec, *a, **k)
    monkeypatch.setattr(sf_mod, "fit", spy)
    configs = [TrialConfig("digits-mlp", "schedule-free", "sgdm", b, 0.3, 1) for b in (10.0, 20.0, 100.0)]
    out = dict(train_schedule_free(configs, task, data))
    assert seen == [(ScheduleFreeSpec, 200, False), (ScheduleFreeSpec, 20, True), (ScheduleFreeSpec, 40, True)]
    assert [out[c].steps for c in configs] == [20, 40, 200] and {out[c].status for c in configs} == {"done"}
    # a budget ending at an epoch end is finished from the trunk's snapshot: its last evaluation is the trunk's
    assert out[configs[1]].curves["step"] == [20, 40] and out[configs[2]].curves["val_loss"][:2] == \
        out[configs[1]].curves["val_loss"]
