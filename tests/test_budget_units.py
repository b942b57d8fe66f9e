"""Budgets in steps, tokens and wall-clock seconds; continuation strategies; against hand-computed values."""
from __future__ import annotations

import logging
import math
import random

import pytest
import torch

from budgetsched import Schedule
from budgetsched.budget import TICKS_PER_SECOND, parse_duration
from budgetsched.torch import BudgetScheduler

torch.set_num_threads(1)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _opt(*lrs):
    return torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs], momentum=0.9)


def test_parse_duration_and_its_errors():
    assert parse_duration("2h") == 7200 and parse_duration("90m") == 5400 and parse_duration("45s") == 45
    assert parse_duration("1h30m") == 5400 and parse_duration("1.5h") == 5400 and parse_duration(12.5) == 12.5
    for bad in ("2 days", "", "h", -1, 0, float("nan"), True, None):
        with pytest.raises(ValueError, match="time_budget"):
            parse_duration(bad)


def test_time_budget_with_30_percent_jitter_reaches_the_floor_at_the_deadline(caplog):
    clock, rng = FakeClock(), random.Random(0)
    opt = _opt(0.1)
    sched = BudgetScheduler(opt, "rex", time_budget="100s", clock=clock, min_lr_ratio=0.1, warmup_fraction=0.02)
    peak, floor = 0.1, 0.01
    lrs, fractions, dts, start = [], [], [], None
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        while not sched.done:
            lrs.append(opt.param_groups[0]["lr"])
            dt = 0.1 * (1 + rng.uniform(-0.3, 0.3))
            clock.t += dt
            dts.append(dt)
            opt.step()
            if start is None:
                start = clock.t  # the clock starts at the first step(): the first (compiling) step is not counted
            sched.step()
            fractions.append(sched.fraction_used)
    assert not caplog.records  # the last step overshoots by design: no "stepped past the budget" warning
    counted = clock.t - start
    assert 100.0 <= counted < 100.0 + dts[-1]  # done within one step of the deadline
    assert (lrs[-1] - floor) <= 0.01 * (peak - floor)  # the last step ran within 1 % of the peak above the floor
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 <= fractions[0] < 0.01
    after_warmup = lrs[30:]
    assert all(a >= b for a, b in zip(after_warmup, after_warmup[1:]))
    assert max(lrs) <= peak and len(lrs) > 900
    # the LR is the schedule's at the microseconds of training used before each step
    s = Schedule("rex", 100 * TICKS_PER_SECOND, peak, min_lr_ratio=0.1, warmup_fraction=0.02)
    assert sched.get_last_lr()[0] == s(sched.schedule.total_steps) == pytest.approx(floor)
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        for _ in range(3):  # training on after done: one warning
            clock.t += 0.1
            opt.step()
            sched.step()
    assert len(caplog.records) == 1 and "stepped past the budget" in caplog.text


def _timed_run(dts, pause_at=None, pause_for=0.0):
    clock = FakeClock()
    opt = _opt(0.1, 0.05)
    sched = BudgetScheduler(opt, "cosine", time_budget=60, clock=clock, min_lr=0.001)
    lrs = []
    for i, dt in enumerate(dts):
        if i == pause_at:
            sched.pause()  # evaluation, a checkpoint, a restart: not training
            clock.t += pause_for
            state, opt_state = sched.state_dict(), opt.state_dict()
            clock = FakeClock()
            clock.t = 5e6  # a new process: another clock origin
            opt = _opt(0.1, 0.05)
            sched = BudgetScheduler(opt, "cosine", time_budget=60, clock=clock, min_lr=0.001)
            opt.load_state_dict(opt_state)  # the order torch, Hugging Face and Lightning use
            sched.load_state_dict(state)
            assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]  # no jump
        lrs.append([g["lr"] for g in opt.param_groups])
        clock.t += dt
        opt.step()
        sched.step()
    return lrs, sched


def test_state_dict_round_trip_with_a_pause_continues_the_clock_with_no_lr_jump():
    rng = random.Random(1)
    dts = [0.1 * (1 + rng.uniform(-0.3, 0.3)) for _ in range(500)]
    ref, ref_sched = _timed_run(dts)
    resumed, sched = _timed_run(dts, pause_at=250, pause_for=3600.0)
    flat = lambda rows: [x for row in rows for x in row]  # noqa: E731
    assert flat(resumed[:251]) == flat(ref[:251])  # identical up to and including the first step after the resume
    # the hour of pause is not counted; the one untimed step after the resume is credited at the mean step time,
    # so the run continues within a fraction of a step of the uninterrupted one
    assert abs(sched.fraction_used - ref_sched.fraction_used) < 0.4 * 0.1 / 60  # +-30 % jitter: under half a step
    assert flat(resumed) == pytest.approx(flat(ref), abs=1e-3 * 0.1)  # within 0.1 % of the peak at every step
    moves = lambda rows: [abs(a[0] - b[0]) for a, b in zip(rows, rows[1:])]  # noqa: E731
    assert moves(resumed)[250] <= 1.5 * max(moves(ref)[245:256])  # no LR jump at the resume


def test_token_budget_with_uneven_tokens_per_step():
    rng = random.Random(2)
    opt = _opt(0.2)
    sched = BudgetScheduler(opt, "linear", token_budget=10_000, warmup_fraction=0.05)
    ref = Schedule("linear", 10_000, 0.2, warmup_fraction=0.05)
    used = 0
    while not sched.done:
        assert opt.param_groups[0]["lr"] == pytest.approx(ref(used), rel=1e-12, abs=1e-15)
        n = rng.randint(20, 180)  # e.g. the tokens of every micro-batch of this optimizer step
        opt.step()
        sched.step(tokens=n)
        used += n
        assert sched.fraction_used == min(used / 10_000, 1.0)
    assert 10_000 <= used < 10_180 and opt.param_groups[0]["lr"] == 0.0
    with pytest.raises(ValueError, match=r"step\(tokens=n\)"):
        sched.step()
    with pytest.raises(ValueError, match="tokens= counts a token budget"):
        BudgetScheduler(_opt(0.1), "rex", total_steps=10).step(tokens=5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(time_budjet="2h"), r"unknown keyword 'time_budjet'.*Did you mean 'time_budget' \(an argument of BudgetScheduler\)"),
    (dict(token_budgets=100), r"Did you mean 'token_budget'"),
    (dict(warmup_step=5, total_steps=10), r"Did you mean 'warmup_steps' \(an argument of BudgetScheduler\)"),
    (dict(total_steps=10, time_budget="1h"), "exactly one of total_steps.*time_budget"),
    (dict(), "total_steps is required"),
    (dict(time_budget="1h", warmup_steps=5), "warmup_fraction"),
    (dict(token_budget=100, warmup_steps=5), "warmup_fraction"),
    (dict(total_steps=10, clock=lambda: 0.0), "clock and startup_steps belong to a time_budget"),
    (dict(time_budget="1 fortnight"), "time_budget must be seconds"),
    (dict(time_budget="1h", measure_steps=10), "measure_steps"),
])
def test_budget_keyword_errors(kwargs, match):
    kwargs = dict(kwargs)
    with pytest.raises(ValueError, match=match):
        BudgetScheduler(_opt(0.1), "rex", **kwargs)


# -- continuation strategies, against hand-computed curves (linear, T = 100, peak 1, news at step 40: T' = 200) --

def _linear_changed(strategy, **kw):
    return Schedule("linear", 100, 1.0).with_budget(200, at_step=40, strategy=strategy, **kw)


def test_continue_strategy_by_hand():
    s = _linear_changed("continue")
    for t in (0, 20, 40):
        assert s(t) == pytest.approx(1 - t / 100)
    # z'(t) = 0.4 + 0.6 (t - 40) / 160
    for t in (41, 120, 199, 200, 250):
        assert s(t) == pytest.approx(1 - min(0.4 + 0.6 * (t - 40) / 160, 1.0), abs=1e-15)


def test_rewarm_strategy_by_hand():
    s = _linear_changed("rewarm", rewarm_steps=10)
    assert s(40) == pytest.approx(0.6)
    for t in range(40, 50):  # ramp from 0.6 at step 40 to the peak 1 at step 49
        u = (t - 40) / 9
        assert s(t) == pytest.approx(0.6 * (1 - u) + u)
    for t in (50, 125, 200):  # linear from the peak over [50, 200)
        assert s(t) == pytest.approx(1 - (t - 50) / 150, abs=1e-15)
    assert s.budget_changes == [(40, 200, 10, None)]
    # the old keywords are the rewarm strategy
    assert Schedule("linear", 100, 1.0).with_budget(200, at_step=40, rewarm_steps=10).values().tolist() == \
        s.values().tolist()
    # default length: the initial warmup (here none, so 1 step: a restart at the peak at step a + 1)
    r = _linear_changed("rewarm")
    assert r(40) == pytest.approx(0.6) and r(41) == 1.0 and r(121) == pytest.approx(1 - 80 / 159)


def test_extend_strategy_by_hand():
    s = _linear_changed("extend")
    peak = math.sqrt(100 / 200)  # the horizon-transfer peak
    assert s(40) == pytest.approx(0.6)  # the step that ran keeps its LR
    for t in (41, 100, 150, 200):  # then the plan for 200 steps: peak' (1 - t / 200)
        assert s(t) == pytest.approx(peak * (1 - t / 200), abs=1e-15)
    assert s.budget_changes == [(40, 200, "extend")]
    shorter = Schedule("linear", 100, 1.0).with_budget(50, at_step=40, strategy="extend")
    assert shorter(41) == pytest.approx(1 - 41 / 50)  # a shorter budget keeps the peak (never above the tuned one)
    with pytest.raises(ValueError, match="strategy must be one of 'continue', 'rewarm', 'extend', got 'restart'"):
        Schedule("linear", 100, 1.0).with_budget(200, at_step=40, strategy="restart")
    with pytest.raises(ValueError, match="rewarm_steps / rewarm_peak belong to strategy='rewarm'"):
        Schedule("linear", 100, 1.0).with_budget(200, at_step=40, strategy="extend", rewarm_steps=3)


@pytest.mark.parametrize("strategy,kw", [("continue", {}), ("rewarm", {"rewarm_steps": 10}), ("extend", {})])
def test_torch_strategies_follow_the_schedule_and_survive_state_dict(strategy, kw):
    opt = _opt(1.0, 0.5)
    sched = BudgetScheduler(opt, "linear", total_steps=100)
    for _ in range(40):
        opt.step()
        sched.step()
    sched.set_total_steps(200, strategy=strategy, **kw)
    state = sched.state_dict()
    lrs = []
    for _ in range(170):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    want = _linear_changed(strategy, **kw)
    assert lrs == pytest.approx([want(t) for t in range(40, 210)], abs=1e-15)
    opt2 = _opt(1.0, 0.5)
    again = BudgetScheduler(opt2, "linear", total_steps=100)
    again.load_state_dict(state)
    assert again.budget_changes == sched.budget_changes
    for _ in range(170):
        opt2.step()
        again.step()
    assert again.get_last_lr() == sched.get_last_lr()


def test_time_budget_change_with_a_strategy():
    clock = FakeClock()
    opt = _opt(0.1)
    sched = BudgetScheduler(opt, "linear", time_budget="10s", clock=clock)
    for _ in range(51):
        clock.t += 0.1
        opt.step()
        sched.step()
    before = sched.get_last_lr()[0]
    assert before == pytest.approx(0.05)  # 5 s of 10 counted
    sched.set_budget("20s")  # continue: no jump, the floor at 20 s
    assert sched.get_last_lr()[0] == before and sched.fraction_used == pytest.approx(0.25)
    sched.set_budget("40s", strategy="rewarm", rewarm="1s")
    assert sched.budget_changes[-1][2] == TICKS_PER_SECOND
    with pytest.raises(ValueError, match="set_total_steps changes a step budget"):
        sched.set_total_steps(10)


def test_measured_throughput_rebudgets_in_steps_with_no_jump_and_replays():
    clock = FakeClock()
    opt = _opt(0.1)
    sched = BudgetScheduler(opt, "rex", time_budget="100s", clock=clock, total_steps=300, measure_steps=50)
    rng = random.Random(3)
    lrs = []
    while not sched.done:
        lrs.append(opt.param_groups[0]["lr"])
        clock.t += 0.1 * (1 + rng.uniform(-0.3, 0.3))
        opt.step()
        sched.step()
    assert sched.budget_unit == "seconds" and sched.budget_changes  # the estimates, in steps
    assert abs(sched.total_steps - len(lrs)) <= 5  # the floor within a few steps of the deadline
    jumps = [abs(a - b) for a, b in zip(lrs, lrs[1:])]
    assert max(jumps) < 0.002  # no LR jump at a re-budget (rex drops ~0.2/1000 per step)
    replay = Schedule("rex", 300, 0.1).with_budget_history(sched.budget_changes)
    assert lrs == [replay(t) for t in range(len(lrs))]  # reproducible given its estimates


@pytest.mark.parametrize("seed", range(8))
def test_random_strategy_chains_keep_the_past_and_agree_on_every_path(seed):
    rng = random.Random(seed)
    profile = rng.choice(["rex", "linear", "cosine", "step", "wsd", "onecycle"])
    warm = rng.choice([{}, {"warmup_steps": 5}, {"warmup_fraction": 0.1}])
    s = Schedule(profile, rng.randint(30, 80), 0.5, min_lr=0.01, **warm)
    for _ in range(3):
        at = rng.randint(0, s.total_steps + 10)
        strategy = rng.choice(["continue", "rewarm", "extend"])
        total = at + rng.randint(15, 90)
        new = s.with_budget(total, at_step=at, strategy=strategy, warn=False)
        assert [new(t) for t in range(at + 1)] == [s(t) for t in range(at + 1)]  # the past and step a: unchanged
        if profile not in ("step", "onecycle"):  # m(1) = 0: the floor at the new end
            assert new(total) == pytest.approx(0.01, abs=1e-15)
        values = new.values()
        assert values.tolist() == pytest.approx([new(t) for t in range(total)], rel=1e-12, abs=1e-15)  # numpy path
        assert all(0.01 - 1e-12 <= v <= 0.5 + 1e-12 for v in values)
        s = new
    replay = Schedule(profile, s.initial_total_steps, 0.5, min_lr=0.01, **warm).with_budget_history(s.budget_changes)
    assert replay.values().tolist() == s.values().tolist()
