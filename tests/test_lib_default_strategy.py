"""The default continuation strategy, "auto" (issue 19 item 3): "rewarm" when the budget grows after the decay began,
"continue" otherwise; what ran is recorded, and histories saved before the default existed replay as they ran.

The truth is hand-computed from the rules in docs/schedules.md (linear profile: m(z) = 1 - z).
"""
from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch

from budgetsched import Schedule
from budgetsched.changes import DEFAULT_STRATEGY, BudgetChange, Rewarm, strategy_of
from budgetsched.groups import GroupSchedule
from budgetsched.torch import BudgetScheduler

from _lr_trace import lr_trace


def _opt(*lrs):
    return torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs], momentum=0.9)


_run = lr_trace  # the LR of every group at each step


def _checkpoint(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# -- the rule ---------------------------------------------------------------------------------------------------------

def test_a_growing_budget_rewarms_by_default_hand_computed():
    s = Schedule("linear", 100, 1.0)
    grown = s.with_budget(200, at_step=40)
    # step 40 keeps its LR 0.6; the ramp is max(warmup 0, 1) = 1 step, so step 41 is at the peak, then linear
    # from the peak at 41 down to 0 at 200: 1 - (t - 41) / 159
    assert grown(40) == pytest.approx(0.6, rel=1e-15)
    assert [grown(t) for t in range(41, 201)] == pytest.approx([1 - (t - 41) / 159 for t in range(41, 201)],
                                                               rel=1e-13, abs=1e-15)
    np.testing.assert_array_equal(grown.values(), s.with_budget(200, at_step=40, strategy="rewarm").values())
    np.testing.assert_array_equal(grown.values()[:41], np.append(s.values()[:40], 0.6))  # the past is unchanged
    assert grown.budget_changes == [Rewarm(40, 200, 1, None)] == [(40, 200, 1, None)]

    # with a warmup of W = 10 the re-warm ramps over 10 steps, the warmup's rule: step a keeps its LR, a + 9 peaks
    w = Schedule("linear", 100, 1.0, warmup_steps=10)
    lr50 = 1 - 40 / 90  # z = (50 - 10) / 90
    g = w.with_budget(300, at_step=50)
    assert [g(t) for t in range(50, 60)] == pytest.approx([lr50 + (1 - lr50) * k / 9 for k in range(10)], rel=1e-13)
    assert [g(t) for t in range(60, 301, 20)] == pytest.approx([1 - (t - 60) / 240 for t in range(60, 301, 20)],
                                                               rel=1e-13, abs=1e-15)
    assert g.budget_changes == [(50, 300, 10, None)]


def test_a_shrinking_budget_continues_by_default_hand_computed():
    s = Schedule("linear", 100, 1.0)
    short = s.with_budget(80, at_step=40)
    # continue: z'(t) = 0.4 + 0.6 (t - 40) / 40, so lr = 0.6 (1 - (t - 40) / 40)
    assert [short(t) for t in range(40, 81)] == pytest.approx([0.6 * (1 - (t - 40) / 40) for t in range(40, 81)],
                                                              rel=1e-13, abs=1e-15)
    np.testing.assert_array_equal(short.values(), s.with_budget(80, at_step=40, strategy="continue").values())
    assert short.budget_changes == [BudgetChange(40, 80)] == [(40, 80)]


def test_before_the_decay_the_default_is_the_plan_for_the_new_budget():
    # at step 0, or during the warmup, "continue" already is the schedule built for the new budget: nothing to re-warm
    s = Schedule("linear", 100, 1.0, warmup_steps=10)
    assert s.default_strategy(300, 0) == s.default_strategy(300, 5) == s.default_strategy(300, 10) == "continue"
    np.testing.assert_allclose(s.with_budget(300, at_step=5).values(),
                               Schedule("linear", 300, 1.0, warmup_steps=10).values(), rtol=1e-13)
    assert s.default_strategy(300, 11) == "rewarm" and s.default_strategy(90, 50) == "continue"
    # no room for the ramp (T' <= a + max(W, 1)): continue
    assert s.default_strategy(105, 95) == "continue" and s.default_strategy(106, 95) == "rewarm"


def test_auto_is_the_default_and_is_recorded_as_what_it_picked():
    s = Schedule("rex", 100, 0.3)
    assert DEFAULT_STRATEGY == "auto"
    for total in (60, 250):
        by_name = s.with_budget(total, at_step=50, strategy="auto")
        np.testing.assert_array_equal(by_name.values(), s.with_budget(total, at_step=50).values())
        assert by_name.budget_changes == s.with_budget(total, at_step=50).budget_changes
        assert "auto" not in repr(by_name.budget_changes)
    assert [strategy_of(c) for c in s.with_budget(250, 50).with_budget(200, 150).budget_changes] == ["rewarm",
                                                                                                     "continue"]
    # rewarm_steps still means rewarm, for a shrink too; rewarm_peak alone is an error, as before
    assert s.with_budget(80, at_step=50, strategy="auto", rewarm_steps=3).budget_changes == [(50, 80, 3, None)]
    with pytest.raises(ValueError, match=r"rewarm_peak \(0.1\) needs rewarm_steps"):
        s.with_budget(200, at_step=50, strategy="auto", rewarm_peak=0.1)
    with pytest.raises(ValueError, match=r"strategy must be one of 'continue', 'rewarm', 'extend', got 'restart' "
                                         r"\(or 'auto', the default, which picks one\)"):
        s.with_budget(200, at_step=50, strategy="restart")


def test_a_finished_run_rewarms_by_default_and_only_an_explicit_continue_warns(caplog):
    s = Schedule("linear", 10, 1.0)
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        again = s.with_budget(20, at_step=10)
    assert caplog.records == []
    assert again(10) == 0.0 and [again(t) for t in range(11, 21)] == pytest.approx([1 - (t - 11) / 9
                                                                                    for t in range(11, 21)], abs=1e-15)
    assert min(again(t) for t in range(11, 20)) > 0  # no LR-0 tail
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        flat = s.with_budget(20, at_step=10, strategy="continue")
    assert len(caplog.records) == 1 and "continuing a finished run" in caplog.records[0].getMessage()
    assert all(flat(t) == 0.0 for t in range(10, 21))


# -- stored histories replay as they ran ----------------------------------------------------------------------------

def test_plain_pairs_replay_as_continue_never_as_the_default():
    s = Schedule("linear", 100, 1.0)
    cont = s.with_budget(200, at_step=40, strategy="continue")
    for history in ([(40, 200)], [[40, 200]], [BudgetChange(40, 200)]):
        np.testing.assert_array_equal(s.with_budget_history(history).values(), cont.values())
    # a torch checkpoint row [at, total, None, None] (release 0.1) is continue too
    g = GroupSchedule.build(s, [1.0, 0.5], [0.0, 0.0]).with_history([[40, 200, None, None]])
    assert g.budget_changes == [(40, 200)] and g.lrs(120) == [cont(120), 0.5 * cont(120)]
    # and a recorded default replays as what it picked
    grown = s.with_budget(200, at_step=40)
    np.testing.assert_array_equal(s.with_budget_history(grown.budget_changes).values(), grown.values())


def test_torch_records_the_picked_strategy_in_state_dict_and_old_states_continue():
    opt = _opt(0.1, 0.02)
    sched = BudgetScheduler(opt, "linear", total_steps=100)
    _run(opt, sched, 40)
    sched.set_total_steps(200)  # the default: grows after the decay began, so rewarm
    state, opt_state = _checkpoint(sched.state_dict()), _checkpoint(opt.state_dict())
    assert state["budget_changes"] == [[40, 200, 1, None]] and sched.budget_changes == [(40, 200, 1, None)]
    lrs = _run(opt, sched, 160)
    assert [x[0] for x in lrs] == pytest.approx([0.1 * 0.6] + [0.1 * (1 - (t - 41) / 159) for t in range(41, 200)],
                                                rel=1e-12)
    opt2 = _opt(0.1, 0.02)
    opt2.load_state_dict(opt_state)  # the optimizer first, then the scheduler and its state (as trainers resume)
    again = BudgetScheduler(opt2, "linear", total_steps=100)
    with pytest.warns(UserWarning, match="restored the saved budget total_steps=200"):
        again.load_state_dict(state)
    assert _run(opt2, again, 160) == lrs

    # a state saved before the default existed: [40, 200, None, None] is continue, whatever the default
    old = dict(state, budget_changes=[[40, 200, None, None]])
    opt3 = _opt(0.1, 0.02)
    opt3.load_state_dict(opt_state)
    before = BudgetScheduler(opt3, "linear", total_steps=100)
    with pytest.warns(UserWarning, match="restored the saved budget total_steps=200"):
        before.load_state_dict(old)
    cont = Schedule("linear", 100, 0.1).with_budget(200, at_step=40, strategy="continue")
    assert [x[0] for x in _run(opt3, before, 160)] == pytest.approx([cont(t) for t in range(40, 200)], rel=1e-12)
    assert before.budget_changes == [(40, 200)]


def test_keras_and_optax_histories_replay_pairs_as_continue():
    cont = Schedule("linear", 100, 0.1).with_budget(200, at_step=40, strategy="continue")
    keras = pytest.importorskip("keras")
    from budgetsched.keras import BudgetSchedule

    restored = BudgetSchedule.from_config(dict(BudgetSchedule("linear", 100, 0.1).get_config(),
                                               budget_changes=[[40, 200]]))
    out = restored(keras.ops.arange(201))
    out = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
    np.testing.assert_allclose(out, cont.table(), rtol=1e-5, atol=1e-8)
    grown = BudgetSchedule("linear", 100, 0.1)
    grown.set_total_steps(200, at_step=40)
    assert grown.get_config()["budget_changes"] == [[40, 200, 1, None]]
    optax_mod = pytest.importorskip("budgetsched.optax")
    fn = optax_mod.schedule("linear", 100, 0.1, budget_changes=[(40, 200)])
    np.testing.assert_allclose(np.asarray(fn(np.arange(201))), cont.table(), rtol=1e-5, atol=1e-8)
