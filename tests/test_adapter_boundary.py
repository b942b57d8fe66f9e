"""The adapters use Schedule's public API only; budget changes live in one place; plateau has an explicit factory."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch

import budgetsched
from budgetsched import Schedule
from budgetsched.groups import GroupSchedule
from budgetsched.torch import BudgetScheduler, PlateauScheduler, make_scheduler

SRC = Path(budgetsched.__file__).parent
PRIVATE = re.compile(r"\._(coefs|evals|starts|rebudget|derive|locate|mom|phases|history|scalar_momentum|w0)\b")


@pytest.mark.parametrize("module", ["torch.py", "_torch/scheduler.py", "_torch/plateau.py", "_torch/common.py",
                                    "optax.py", "keras.py", "integrations/_budget.py", "integrations/hf.py",
                                    "integrations/lightning.py"])
def test_adapters_read_no_private_field_of_schedule(module):
    text = (SRC / module).read_text()
    assert not PRIVATE.findall(text), module
    assert len(text.splitlines()) <= 600, module


def _opt(*lrs):
    return torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs], momentum=0.9)


def test_plateau_is_built_by_the_factory_and_the_class_signature_is_its_init():
    assert "__signature__" not in vars(BudgetScheduler)
    params = list(inspect.signature(BudgetScheduler).parameters)
    assert params[:3] == ["optimizer", "profile", "total_steps"] and "time_budget" in params
    for build in (make_scheduler, BudgetScheduler):
        p = build(_opt(0.1), "plateau", total_steps=5, patience=1)
        assert isinstance(p, PlateauScheduler)
        p.step(1.0), p.step(1.0), p.step(1.0)
        assert p.get_last_lr() == [pytest.approx(0.01)]
    assert type(make_scheduler(_opt(0.1), "rex", total_steps=5)) is BudgetScheduler


def test_budget_changes_live_in_the_schedules_only():
    opt = _opt(0.1, 0.02)
    s = BudgetScheduler(opt, "linear", total_steps=10)
    for _ in range(4):
        opt.step()
        s.step()
    s.set_total_steps(20, strategy="continue")
    s.set_total_steps(30, rewarm_steps=2, rewarm_peak=[0.05, 0.01])
    assert not [k for k, v in vars(s).items() if isinstance(v, list) and v and isinstance(v[0], tuple)]
    assert s.budget_changes == [(4, 20), (4, 30, 2, [0.05, 0.01])]
    assert [c for c in s.schedules[1].budget_changes] == [(4, 20), (4, 30, 2, 0.01)]
    # the per-group LRs are the group schedule's, which are each group's Schedule
    g = GroupSchedule.build(Schedule("linear", 10, 0.1), [0.1, 0.02], [0.0, 0.0]).with_history(s.budget_changes)
    assert g.lrs(4) == s.get_lr() and g.lrs(7) == [sch(7) for sch in s.schedules]
