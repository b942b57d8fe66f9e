"""Checkpoints saved by budgetsched 0.1.0 (captured before the adapter refactor) still load and continue exactly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from budgetsched.torch import BudgetScheduler, PlateauScheduler

torch.set_num_threads(1)
SAVED = json.loads((Path(__file__).parent / "fixtures" / "torch_scheduler_states_v0_1.json").read_text())


def _opt(lrs, kind):
    groups = [{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, momentum=0.9) if kind == "sgd" else torch.optim.AdamW(groups)


@pytest.mark.parametrize("case", SAVED["cases"], ids=lambda c: c["name"])
def test_old_checkpoint_loads_and_continues_with_the_recorded_lrs(case):
    opt = _opt(case["lrs"], case["kind"])
    sched = BudgetScheduler(opt, case["state"]["profile"], total_steps=case["state"]["total_steps"])
    sched.load_state_dict(case["state"])
    assert sched.get_last_lr() == case["lrs_after"][0]
    assert sched.last_epoch == case["state"]["last_epoch"]
    assert [list(c) for c in sched.state_dict()["budget_changes"]] == case["state"]["budget_changes"]
    for want_lrs, want_moms in zip(case["lrs_after"][1:], case["moms_after"][1:]):
        opt.step()
        sched.step()
        assert [g["lr"] for g in opt.param_groups] == want_lrs
        assert [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups] == want_moms


def test_old_plateau_checkpoint_loads():
    opt = _opt([0.1], "sgd")
    sched = BudgetScheduler(opt, "plateau", total_steps=10, patience=1)
    assert isinstance(sched, PlateauScheduler)
    sched.load_state_dict(SAVED["plateau"]["state"])
    assert sched.get_last_lr() == [SAVED["plateau"]["lr"]]
    assert sched.budget_changes == [(4, 12)]
