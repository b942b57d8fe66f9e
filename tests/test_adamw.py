"""The protocol's third optimizer, ``adamw``: torch.optim.AdamW's update (decoupled weight decay,
``p <- p - lr_t wd p``, then the Adam step) in the flat batched kernel, the sequential and batched engines and
schedule-free (AdamWScheduleFree); the truth is torch.optim.AdamW / the schedulefree package, built here directly.
Also: adam and adamw are one optimizer without decay and two with it, the CLI runs ``--optimizers adamw``, and a
misspelled optimizer gets a did-you-mean."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from budgetsched import Schedule
from budgetsched.bench.engines import optim
from budgetsched.bench.engines.batched import train_group
from budgetsched.bench.engines.train import train_trial
from budgetsched.bench.protocol.grid import OPTIMIZERS, TrialConfig
from budgetsched.bench.tasks import get_task
from budgetsched.cli import main

from _flat_kernel import flat_steps

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASK = "digits-mlp"
BATCH = 45  # 20 steps per epoch of digits-mlp's 898 training examples


def _flat_steps(name, p0, grads, lrs, moms, wd, epochs):
    """Parameters after each step of the flat kernel, its columns built per epoch (``epochs``: step ranges)."""
    return flat_steps(optim.get_optimizer(name), p0, grads, lrs, moms, wd, epochs)


@pytest.mark.parametrize("wd", [1e-2, 0.3])
@pytest.mark.parametrize("varying_beta1", [False, True])
def test_flat_kernel_equals_torch_adamw_step_by_step(wd, varying_beta1):
    """K members with their own LR per step (decaying, one member stopped at LR 0 halfway), over two epochs of
    columns, against torch.optim.AdamW(betas=(0.9, 0.999), eps=1e-8, weight_decay=wd) with group lr / betas set
    before every step."""
    gen = torch.Generator().manual_seed(3)
    K, N, S = 3, 9, 14
    p0 = torch.randn(K, N, generator=gen, dtype=torch.float64)
    grads = [torch.randn(K, N, generator=gen, dtype=torch.float64) for _ in range(S)]
    lrs = np.array([[0.1, 0.03, 0.3]]) * np.linspace(1.0, 0.05, S)[:, None]
    lrs[S // 2:, 2] = 0.0  # a stopped member: no step, no decay
    moms = np.linspace(0.95, 0.85, S)[:, None] * np.ones((1, K)) if varying_beta1 else None
    ours = _flat_steps("adamw", p0, grads, lrs, moms, wd, (range(0, 5), range(5, S)))
    for k in range(K):
        p = torch.nn.Parameter(p0[k].clone())
        opt = torch.optim.AdamW([p], lr=float(lrs[0, k]), betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
        for i in range(S):
            group = opt.param_groups[0]
            group["lr"] = float(lrs[i, k])
            group["betas"] = (float(moms[i, k]) if moms is not None else 0.9, 0.999)
            p.grad = grads[i][k].clone()
            opt.step()
            torch.testing.assert_close(ours[i][k], p.detach(), rtol=1e-13, atol=1e-15)


def test_one_adamw_step_by_hand():
    """The formula itself, for one step from zero state: p1 = p0 (1 - lr wd) - lr m1 / (1 - b1) /
    (sqrt(v1 / (1 - b2)) + eps) with m1 = (1 - b1) g, v1 = (1 - b2) g^2, i.e. p0 (1 - lr wd) - lr g / (|g| + eps)."""
    p0 = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    g = torch.tensor([[0.2, 0.0, -3.0]], dtype=torch.float64)
    lr, wd = 0.1, 0.5
    [p1] = _flat_steps("adamw", p0, [g], np.array([[lr]]), None, wd, (range(0, 1),))
    want = p0 * (1 - lr * wd) - lr * g / (g.abs() + 1e-8)
    torch.testing.assert_close(p1, want, rtol=1e-12, atol=1e-15)


def test_adam_and_adamw_agree_without_decay_and_differ_with_it():
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(2, 6, generator=gen, dtype=torch.float64)
    grads = [torch.randn(2, 6, generator=gen, dtype=torch.float64) for _ in range(6)]
    lrs = np.full((6, 2), 0.05)
    run = lambda name, wd: _flat_steps(name, p0, grads, lrs, None, wd, (range(0, 6),))[-1]  # noqa: E731
    assert torch.equal(run("adam", 0.0), run("adamw", 0.0))
    adam, adamw = run("adam", 0.1), run("adamw", 0.1)
    assert not torch.allclose(adam, adamw, rtol=1e-6, atol=0.0)


def test_registry_and_torch_optimizer():
    spec = optim.get_optimizer("adamw")
    assert (spec.momentum, spec.beta2, spec.eps, spec.decoupled_weight_decay) == (0.9, 0.999, 1e-8, True)
    assert not optim.get_optimizer("adam").decoupled_weight_decay
    assert OPTIMIZERS == ("sgdm", "adam", "adamw") and tuple(optim.OPTIMIZERS) == OPTIMIZERS
    p = torch.nn.Parameter(torch.zeros(3))
    opt = spec.torch_optimizer([p], 0.01, weight_decay=5e-4)
    assert type(opt) is torch.optim.AdamW and opt.defaults["weight_decay"] == 5e-4
    assert opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["eps"] == 1e-8
    assert type(optim.get_optimizer("adam").torch_optimizer([p], 0.01)) is torch.optim.Adam


# ----------------------------------------------------------------------------------------------------- engines
@pytest.fixture(scope="module")
def task():
    return dataclasses.replace(get_task(TASK), max_epochs=50, batch_size=BATCH, weight_decay=0.05)


@pytest.fixture(scope="module")
def data(task):
    return task.load(None, None)


def cfg(schedule, optimizer, lr, seed=5, budget=3.0):
    return TrialConfig(TASK, schedule, optimizer, budget, lr, seed)


def test_sequential_engine_equals_a_plain_torch_adamw_loop(task, data, float64):
    """Independent truth: a hand-written loop with torch.optim.AdamW, the schedule's LR and beta1 set before each
    step (OneCycle moves both), the engine's data order (one randperm per epoch from the seed)."""
    lr, T = 0.003, 30  # 3 % of 50 x 20 steps: 1.5 epochs
    r = train_trial(cfg("onecycle", "adamw", lr), task, data)
    s = Schedule("onecycle", T, peak_lr=lr)
    torch.manual_seed(5)
    model = task.make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=task.weight_decay)
    x, y = data.train_x.double(), data.train_y
    order, t = torch.Generator().manual_seed(5), 0
    while t < T:
        perm = torch.randperm(len(y), generator=order)
        for i in range(20):
            if t == T:
                break
            for g in opt.param_groups:
                g["lr"], g["betas"] = s(t), (s.momentum(t), 0.999)
            idx = perm[i * BATCH:(i + 1) * BATCH]
            opt.zero_grad()
            task.loss(model(x[idx]), y[idx]).backward()
            opt.step()
            t += 1
    with torch.no_grad():
        out = model(data.test_x.double())
    assert r.status == "done" and r.steps == T
    assert r.test_loss == pytest.approx(float(task.loss(out, data.test_y)), rel=1e-9)
    assert r.test_metric == pytest.approx(float(task.metric(out, data.test_y).double().mean()), abs=1e-9)


def test_batched_engine_equals_the_sequential_one(task, data, float64):
    configs = [cfg("rex", "adamw", 0.003, seed=0), cfg("onecycle", "adamw", 0.01, seed=1),
               cfg("linear", "adamw", 0.001, seed=0)]
    batched = dict(train_group(configs, task, data))
    for c in configs:
        seq = train_trial(c, task, data)
        assert batched[c].status == seq.status == "done"
        for k in ("val_loss", "test_loss", "test_metric"):
            assert getattr(batched[c], k) == pytest.approx(getattr(seq, k), rel=1e-7, abs=1e-12), k


def test_engines_adam_equals_adamw_only_without_decay(task, data):
    run = lambda t, o: train_trial(cfg("rex", o, 0.003, budget=2.0), t, data)  # noqa: E731
    bare = dataclasses.replace(task, weight_decay=0.0)
    assert run(bare, "adam").curves == run(bare, "adamw").curves
    assert run(task, "adam").val_loss != run(task, "adamw").val_loss


def test_schedule_free_adamw_is_adamw_schedule_free():
    """The schedule-free counterpart of adamw is AdamWScheduleFree (as adam's is): same spec update as adam's, and
    equal to the package step by step with decoupled decay."""
    schedulefree = pytest.importorskip("schedulefree")
    spec = optim.optimizer_for(TrialConfig(TASK, "schedule-free", "adamw", 10.0, 0.01, 0))
    assert isinstance(spec, optim.ScheduleFreeSpec) and spec.n_state == 2
    assert dataclasses.replace(spec, name="adam") == optim.schedule_free_spec("adam")
    gen = torch.Generator().manual_seed(2)
    K, N, S, wd, lr = 2, 5, 8, 0.01, [0.01, 0.03]
    p0 = torch.randn(K, N, generator=gen, dtype=torch.float64)
    grads = [torch.randn(K, N, generator=gen, dtype=torch.float64) for _ in range(S)]
    ours = flat_steps(spec, p0, grads, np.tile(lr, (S, 1)), None, wd)
    for k in range(K):
        p = torch.nn.Parameter(p0[k].clone())
        opt = schedulefree.AdamWScheduleFree([p], lr=lr[k], betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
        assert type(spec.torch_optimizer([torch.nn.Parameter(p0[k].clone())], lr[k], wd)) is type(opt)
        opt.train()
        for i in range(S):
            p.grad = grads[i][k].clone()
            opt.step()
            torch.testing.assert_close(ours[i][k], p.detach(), rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------------------- CLI
def test_cli_runs_adamw(tmp_path, capsys):
    import json

    from budgetsched.bench.storage.store import Store

    db = tmp_path / "adamw.db"
    assert main(["run", "--task", TASK, "--schedules", "rex,schedule-free", "--optimizers", "adam,adamw",
                 "--budgets", "2", "--lrs", "0.003", "--seeds", "1", "--store", str(db), "--quiet"]) == 0
    with Store(db, readonly=True) as s:
        rows = s.rows()
    assert {(r["optimizer"], r["schedule"]) for r in rows} == {(o, s) for o in ("adam", "adamw")
                                                               for s in ("rex", "schedule-free")}
    assert {r["status"] for r in rows} == {"done"}
    by = {(r["optimizer"], r["schedule"]): r for r in rows}
    # the task has weight decay: L2 and decoupled decay train differently; schedule-free is AdamWScheduleFree in both
    assert by[("adam", "rex")]["val_loss"] != by[("adamw", "rex")]["val_loss"]
    assert by[("adam", "schedule-free")]["val_loss"] == by[("adamw", "schedule-free")]["val_loss"]
    capsys.readouterr()
    assert main(["report", str(db), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report


@pytest.mark.parametrize("bad,close", [("adamww", "adamw"), ("adm", "adam")])
def test_a_misspelled_optimizer_gets_a_did_you_mean(bad, close, tmp_path, capsys):
    assert main(["run", "--task", TASK, "--schedules", "rex", "--optimizers", bad, "--budgets", "2", "--lrs", "0.1",
                 "--seeds", "1", "--store", str(tmp_path / "s.db"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("budgetsched: error: ") and err.count("\n") == 1, err
    assert f"unknown optimizer {bad!r} (did you mean {close!r}?); choose from sgdm, adam, adamw" in err
    with pytest.raises(ValueError, match=f"unknown optimizer {bad!r} \\(did you mean {close!r}\\?\\)"):
        TrialConfig(TASK, "rex", bad, 2.0, 0.1, 0)


def test_adamw_keys_and_labels():
    adam, adamw = (TrialConfig(TASK, "rex", o, 2.0, 0.01, 0) for o in ("adam", "adamw"))
    assert adam.key != adamw.key and adamw.label == "rex"
    refined = TrialConfig(TASK, "refined", "adamw", 2.0, 0.01, 0, (("grad_norms", (1.0, 2.0)), ("weighting", "adam")))
    assert refined.label == "refined"  # Adam's weighting is AdamW's own, as it is Adam's


def test_refine_gives_adamw_adams_weighting():
    """``budgetsched refine``: a refined schedule for AdamW weights its gradient norms as Adam's does (1 / ||g||)."""
    from _rows import trial_row

    from budgetsched.bench.analysis.refine import refined_trials

    rows = [trial_row(dict(task=TASK, schedule="linear", optimizer=o, budget=2.0, lr=0.01, seed=0, status="done",
                           val_metric=10.0, test_metric=10.0, curves={"grad_norm": [2.0, 1.0]}))
            for o in ("sgdm", "adam", "adamw")]
    new = refined_trials(rows)
    assert {(c.optimizer, c.params["weighting"]) for c in new} == {("sgdm", "sgd"), ("adam", "adam"),
                                                                  ("adamw", "adam")}
    assert {c.label for c in new} == {"refined"}
