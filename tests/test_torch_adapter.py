"""BudgetScheduler against PyTorch's own schedulers, the closed form, and the torch scheduler contract."""
from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from torch.optim import lr_scheduler as L

from _examples import load_example
from budgetsched import Plateau, Schedule
from budgetsched.torch import BudgetScheduler

torch.set_num_threads(1)


def _opt(lrs=(0.1,), kind="sgd", **kw):
    groups = [{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs]
    if kind == "sgd":
        return torch.optim.SGD(groups, momentum=kw.pop("momentum", 0.9), **kw)
    if kind == "adam":
        return torch.optim.Adam(groups, **kw)
    if kind == "adamw":
        return torch.optim.AdamW(groups, **kw)
    return torch.optim.Adagrad(groups, **kw)


def _run(opt, sched, n, metrics=None):
    """LR (and momentum) of every group used by each of n optimizer steps."""
    lrs, moms = [], []
    for i in range(n):
        lrs.append([g["lr"] for g in opt.param_groups])
        moms.append([g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups])
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[i])
    return lrs, moms


T = 100


@pytest.mark.parametrize("profile,make_torch,steps", [
    ("linear", lambda o: L.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=T), T + 10),
    ("cosine", lambda o: L.CosineAnnealingLR(o, T_max=T), T + 1),
    ("exp", lambda o: L.ExponentialLR(o, gamma=math.exp(-3.0 / T)), T + 1),
    ("step", lambda o: L.MultiStepLR(o, milestones=[T // 2, 3 * T // 4], gamma=0.1), T + 10),
])
def test_matches_pytorch_scheduler_step_by_step(profile, make_torch, steps):
    o1, o2 = _opt((0.1, 0.03)), _opt((0.1, 0.03))
    ours, _ = _run(o1, BudgetScheduler(o1, profile, total_steps=T), steps)
    theirs, _ = _run(o2, make_torch(o2), steps)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), (profile, t)


def test_plateau_matches_reduce_lr_on_plateau():
    metrics = [1.0, 0.9, 0.9, 0.9, 0.9, 0.85, 0.85, 0.86, 0.9, 0.9, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.49999, 0.5]
    o1, o2 = _opt((0.1, 0.02)), _opt((0.1, 0.02))
    s1 = BudgetScheduler(o1, "plateau", total_steps=len(metrics), patience=2, factor=0.5)
    s2 = L.ReduceLROnPlateau(o2, mode="min", patience=2, factor=0.5)
    ours, _ = _run(o1, s1, len(metrics), metrics)
    theirs, _ = _run(o2, s2, len(metrics), metrics)
    for a, b in zip(ours, theirs):
        assert a == pytest.approx(b, rel=1e-12)
    assert ours[-1][0] < 0.1 * 0.5 ** 2  # it did decay several times
    assert s1.get_last_lr() == pytest.approx([g["lr"] for g in o2.param_groups], rel=1e-12)


def test_onecycle_torch_variant_close_to_onecycle_lr():
    # Same shape; OneCycleLR ends its phases one step early (at pct_start*T - 1 and T - 1), we at z = pct_start and
    # z = 1, so values differ by O(1/T) of the peak.
    n = 1000
    o1, o2 = _opt((0.1,)), _opt((0.1,))
    s1 = BudgetScheduler(o1, "onecycle", total_steps=n, variant="torch")
    s2 = L.OneCycleLR(o2, max_lr=0.1, total_steps=n)
    (ours, om), (theirs, tm) = _run(o1, s1, n), _run(o2, s2, n)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)  # both start at max_lr / 25
    assert max(abs(a[0] - b[0]) for a, b in zip(ours, theirs)) < 1e-2 * 0.1
    assert max(abs(a[0] - b[0]) for a, b in zip(om, tm)) < 1e-2 * 0.1
    assert om[0][0] == 0.95 and min(m[0] for m in om) == pytest.approx(0.85, abs=1e-6)


def test_onecycle_triangle_drives_adam_beta1_and_sgd_momentum():
    for kind in ("adam", "adamw", "sgd"):
        o = _opt((0.1,), kind)
        s = BudgetScheduler(o, "onecycle", total_steps=T)
        lrs, moms = _run(o, s, T + 2)
        ref = Schedule("onecycle", T, 0.1)
        assert [x[0] for x in lrs] == pytest.approx([ref(t) for t in range(T + 2)], rel=1e-12)
        assert [x[0] for x in moms] == pytest.approx([ref.momentum(t) for t in range(T + 2)], rel=1e-12)
        if kind != "sgd":
            assert o.param_groups[0]["betas"][1] == 0.999  # beta2 untouched


def test_onecycle_optimizer_without_momentum_is_an_error():
    o = _opt((0.1,), "adagrad")
    with pytest.raises(ValueError, match="neither 'momentum'.*'betas'"):
        BudgetScheduler(o, "onecycle", total_steps=T)
    assert o.param_groups[0]["lr"] == 0.1 and "initial_lr" not in o.param_groups[0]  # nothing half-written
    BudgetScheduler(o, "onecycle", total_steps=T, cycle_momentum=False)  # allowed when asked


@pytest.mark.parametrize("profile,params", [("rex", {}), ("cosine", {}), ("step", {}), ("exp", {"gamma": -2.0}),
                                            ("wsd", {"cooldown": "1-sqrt"}), ("linear", {"sampling": "10-10"})])
def test_closed_form_per_group_peaks_and_floors(profile, params):
    o = _opt((0.1, 0.01, 0.5))
    o.param_groups[2]["initial_lr"] = 0.2  # a group that already has initial_lr keeps it as its peak
    floors = [0.001, 0.0, 0.02]
    s = BudgetScheduler(o, profile, total_steps=T, min_lr=floors, **params)
    lrs, _ = _run(o, s, T + 5)
    for g, (peak, floor) in enumerate(zip((0.1, 0.01, 0.2), floors)):
        ref = Schedule(profile, T, peak, min_lr=floor, **params)
        assert [x[g] for x in lrs] == pytest.approx([ref(t) for t in range(T + 5)], rel=1e-12)
    assert s.base_lrs == [0.1, 0.01, 0.2]


def test_first_step_runs_at_step_zero_lr_and_past_budget_holds_end_value():
    o = _opt((0.3,))
    s = BudgetScheduler(o, "exp", total_steps=T)
    assert o.param_groups[0]["lr"] == 0.3 and s.get_last_lr() == [0.3] and s.last_epoch == 0
    lrs, _ = _run(o, s, 3 * T)
    assert lrs[T][0] == lrs[-1][0] == pytest.approx(0.3 * math.exp(-3.0), rel=1e-12)


def test_warmup_first_lr_is_peak_over_w():
    o = _opt((0.4,))
    s = BudgetScheduler(o, "rex", total_steps=T, warmup_steps=8)
    lrs, _ = _run(o, s, T)
    assert lrs[0][0] == pytest.approx(0.4 / 8) and lrs[0][0] > 0
    assert lrs[7][0] == pytest.approx(0.4)
    ref = Schedule("rex", T, 0.4, warmup_steps=8)
    assert [x[0] for x in lrs] == pytest.approx([ref(t) for t in range(T)], rel=1e-12)


def test_set_total_steps_has_no_jump_and_follows_with_budget():
    o = _opt((0.1, 0.05))
    s = BudgetScheduler(o, "rex", total_steps=T)
    before, _ = _run(o, s, 30)
    lr_now = [g["lr"] for g in o.param_groups]
    s.set_total_steps(250, strategy="continue")
    assert [g["lr"] for g in o.param_groups] == lr_now and s.get_last_lr() == lr_now
    after, _ = _run(o, s, 230)
    ref = Schedule("rex", T, 0.1).with_budget(250, at_step=30, strategy="continue")
    assert [x[0] for x in before + after] == pytest.approx([ref(t) for t in range(260)], rel=1e-12)
    assert after[0][0] == lr_now[0]  # the next optimizer step still runs at the LR of the change point
    assert 0 < after[0][0] - after[1][0] < before[-2][0] - before[-1][0]  # from here on it decays more slowly
    assert after[-1][0] == 0.0 and after[-11][0] > 0.0 and s.budget_changes == [(30, 250)]


def _checkpoint(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)  # plain Python only, as Hugging Face loads scheduler states


@pytest.mark.parametrize("change", [False, True])
def test_state_dict_round_trip_continues_identically(change):
    def make(total=T):
        o = _opt((0.1, 0.02), "adam")
        return o, BudgetScheduler(o, "onecycle", total_steps=total, min_lr=[0.001, 0.0], sampling="1-100")

    o1, s1 = make()
    _run(o1, s1, 20)
    if change:
        s1.set_total_steps(180)
    _run(o1, s1, 20)
    opt_state, sched_state = _checkpoint(o1.state_dict()), _checkpoint(s1.state_dict())
    o2, s2 = make(total=180 if change else T)
    o2.load_state_dict(opt_state)
    s2.load_state_dict(sched_state)
    assert s2.last_epoch == s1.last_epoch == 40 and s2.budget_changes == s1.budget_changes
    assert s2.total_steps == s1.total_steps
    a, b = _run(o1, s1, 200), _run(o2, s2, 200)
    assert a == b


def test_load_then_set_total_steps_wins_unlike_pytorch():
    o1 = _opt((0.1,))
    s1 = BudgetScheduler(o1, "linear", total_steps=T)
    _run(o1, s1, 40)
    state = s1.state_dict()
    o2 = _opt((0.1,))
    s2 = BudgetScheduler(o2, "linear", total_steps=300)
    with pytest.warns(UserWarning, match="total_steps=100 over this scheduler's total_steps=300"):
        s2.load_state_dict(state)
    assert s2.total_steps == T  # the checkpoint's budget, said aloud
    s2.set_total_steps(300)  # a budget given after loading wins
    lrs, _ = _run(o2, s2, 270)
    assert s2.total_steps == 300 and lrs[-11][0] > 0 and o2.param_groups[0]["lr"] == 0.0
    assert lrs[0][0] == pytest.approx(0.1 * 0.6)  # continuous with the saved run at step 40

    # PyTorch's own scheduler: the new T_max given at construction is silently replaced by the checkpoint's.
    t1 = L.CosineAnnealingLR(_opt((0.1,)), T_max=T)
    t2 = L.CosineAnnealingLR(_opt((0.1,)), T_max=300)
    t2.load_state_dict(t1.state_dict())
    assert t2.T_max == T


def test_plateau_state_round_trip_and_budget_record():
    metrics = [1.0, 1.0, 1.0, 1.0, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3]
    o1 = _opt((0.1,))
    s1 = BudgetScheduler(o1, "plateau", total_steps=10, patience=1, factor=0.1)
    _run(o1, s1, 5, metrics[:5])
    o2 = _opt((0.1,))
    s2 = BudgetScheduler(o2, "plateau", total_steps=10, patience=1, factor=0.1)
    s2.load_state_dict(_checkpoint(s1.state_dict()))
    assert o2.param_groups[0]["lr"] == 0.1  # torch's convention: a scheduler's load_state_dict never writes LRs
    o2.load_state_dict(_checkpoint(o1.state_dict()))  # the optimizer's state carries them (HF loads both)
    assert o2.param_groups[0]["lr"] == o1.param_groups[0]["lr"] == pytest.approx(0.01)
    assert _run(o1, s1, 5, metrics[5:]) == _run(o2, s2, 5, metrics[5:])
    ref = Plateau(patience=1, factor=0.1)
    assert o1.param_groups[0]["lr"] == pytest.approx(0.1 * [ref.update(m) for m in metrics][-1])
    s1.set_total_steps(40)  # recorded; the plateau LR does not depend on the budget
    assert s1.total_steps == 40 and s1.get_last_lr() == [o1.param_groups[0]["lr"]]


def test_tensor_lr_is_filled_in_place():
    p = torch.zeros(2, requires_grad=True)
    o = torch.optim.Adam([p], lr=torch.tensor(0.1))
    lr_tensor = o.param_groups[0]["lr"]
    s = BudgetScheduler(o, "rex", total_steps=10)
    _run(o, s, 5)
    assert o.param_groups[0]["lr"] is lr_tensor
    assert float(lr_tensor) == pytest.approx(Schedule("rex", 10, 0.1)(5))


def test_works_with_a_compiled_model():
    # The scheduler only touches the optimizer. The "eager" backend exercises graph capture without a C++
    # toolchain build (the default inductor backend needs ~1 min of compiling on a small CPU box).
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    compiled = torch.compile(model, backend="eager")
    o = torch.optim.SGD(model.parameters(), lr=0.1)
    s = BudgetScheduler(o, "rex", total_steps=4)
    x = torch.randn(8, 4)
    losses = []
    for _ in range(4):
        o.zero_grad()
        loss = compiled(x).pow(2).mean()
        loss.backward()
        losses.append(loss.item())
        o.step()
        s.step()
    assert o.param_groups[0]["lr"] == 0.0 and losses[-1] < losses[0]


def test_errors_name_the_bad_value_and_touch_nothing():
    o = _opt((0.1, 0.01))
    cases = [
        (dict(profile="rex", total_steps=T, min_lr=[0.0, 0.0, 0.0]), r"min_lr has 3 entries .* 2 parameter groups"),
        (dict(profile="rex", total_steps=T, min_lr=-0.01), r"min_lr must be .* >= 0, got -0.01"),
        (dict(profile="rex", total_steps=T, min_lr=[0.0, -0.5]), r"min_lr\[1\] must be .* >= 0, got -0.5"),
        (dict(profile="rex", total_steps=T, min_lr=[0.0, 0.02]), r"min_lr\[1\] \(0.02\) must be <= .* \(0.01\)"),
        (dict(profile="rexx", total_steps=T), r"unknown schedule 'rexx'; valid names: .*rex"),
        (dict(profile="rex", total_steps=T, warmup_steps=T), r"warmup_steps must be < total_steps \(100\), got 100"),
        (dict(profile="rex", total_steps=0), r"total_steps must be >= 1, got 0"),
        (dict(profile="rex", total_steps=-5), r"total_steps must be >= 1, got -5"),
        (dict(profile="rex"), r"total_steps is required"),
        (dict(profile="exp", total_steps=T, gamma=1.5), r"gamma must be in .*got 1.5"),
        (dict(profile="plateau", total_steps=T), r"needs the parameter 'patience'"),
        (dict(profile="plateau", total_steps=T, patience=2, gamma=3), r"unknown parameter 'gamma' for 'plateau'"),
        (dict(profile="plateau", total_steps=T, patience=2, warmup_steps=3), r"warmup_steps .* got 3"),
    ]
    for kwargs, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            BudgetScheduler(o, **kwargs)
    assert [g["lr"] for g in o.param_groups] == [0.1, 0.01]
    assert all("initial_lr" not in g for g in o.param_groups)

    s = BudgetScheduler(o, "rex", total_steps=T)
    with pytest.raises(ValueError, match=r"only for the 'plateau' schedule, this one is 'rex'; got metric=0.25"):
        s.step(0.25)
    _run(o, s, 30)
    with pytest.raises(ValueError, match=r"new_total_steps \(20\) must be > at_step \(30\)"):
        s.set_total_steps(20)
    with pytest.raises(ValueError, match=r"new_total_steps must be >= 1, got 0"):
        s.set_total_steps(0)
    assert s.total_steps == T and s.budget_changes == []
    p = BudgetScheduler(_opt((0.1,)), "plateau", total_steps=T, patience=3)
    with pytest.raises(ValueError, match="call step\\(metric\\) once per evaluation, got no metric"):
        p.step()
    with pytest.raises(ValueError, match="metric must be a number, got 'low'"):
        p.step("low")
    assert p.last_epoch == 0


def test_no_warning_in_the_normal_loop():
    o = _opt((0.1,))
    s = BudgetScheduler(o, "rex", total_steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(o, s, 5)
    o2 = _opt((0.1,))
    s2 = BudgetScheduler(o2, "rex", total_steps=5)
    with pytest.warns(UserWarning, match="before optimizer.step"):
        s2.step()


def test_hugging_face_trainer_steps_and_resumes_the_schedule(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    example = load_example("hf_trainer.py")

    out = str(tmp_path)
    _, sched, lrs = example.train(max_steps=20, output_dir=out, save_steps=10, warmup_steps=4)
    ref = Schedule("rex", 20, 3e-2, warmup_steps=4)
    assert lrs == pytest.approx([ref(t) for t in range(20)], rel=1e-12)  # one scheduler step per optimizer step
    assert sched.last_epoch == 20
    # Resuming from the Trainer's checkpoint (scheduler state loaded by the Trainer) continues the same LRs.
    _, resumed, lrs2 = example.train(max_steps=20, output_dir=out, resume_from_checkpoint=f"{out}/checkpoint-10",
                                     warmup_steps=4)
    assert lrs2 == lrs[10:] and resumed.last_epoch == 20
