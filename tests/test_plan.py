"""The plan: a budget becomes a run once (steps, evaluations, budget change, stand-in), and one rule decides which
budget counts a run that several budgets share (the largest)."""
from __future__ import annotations

import subprocess
import sys
import warnings
from types import SimpleNamespace

import pytest

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.protocol.plan import (BudgetCollapseWarning, PlannedTrial, counted_budget, plan_study,
                                             plan_trial, plateau_is_constant, same_run_key, steps_per_epoch)

# 60 epochs of ceil(898 / 32) = 29 steps: digits' shape, without loading it
TASK = SimpleNamespace(name="T", max_epochs=60, batch_size=32)
N = 898


def cfg(budget=10.0, schedule="rex", lr=0.1, seed=0, unit="steps", **params):
    return TrialConfig("T", schedule, "sgdm", budget, lr, seed, tuple(params.items()), unit)


def test_a_budget_becomes_steps_and_evaluation_points_by_hand():
    assert steps_per_epoch(TASK, N) == 29 and steps_per_epoch(SimpleNamespace(steps_per_epoch=7), 0) == 7
    p = plan_trial(cfg(budget=1.0), TASK, N)  # ceil(0.01 x 60 x 29) = ceil(17.4) = 18 steps: one partial epoch
    assert (p.total_steps, p.steps_per_epoch, p.epochs, p.evaluation_steps) == (18, 29, 1, (18,))
    p = plan_trial(cfg(budget=5.0), TASK, N)  # ceil(87) = 87 = 3 epochs exactly
    assert (p.total_steps, p.epochs, p.evaluation_steps) == (87, 3, (29, 58, 87))
    p = plan_trial(cfg(budget=6.0), TASK, N)  # ceil(104.4) = 105: 3 full epochs, then 18 steps
    assert p.evaluation_steps == (29, 58, 87, 105) and list(p.epoch_range(3)) == list(range(87, 105))
    p = plan_trial(cfg(budget=1.0, unit="epochs"), TASK, N)  # ceil(0.6) = 1 whole epoch
    assert (p.total_steps, p.evaluation_steps) == (29, (29,))
    assert p.config == p.trained and p.stand_in is None and p.change is None


def test_a_budget_change_is_planned_in_steps():
    c = cfg(budget=100.0, planned_budget=25, change_at=20, on_change="continue")
    p = plan_trial(c, TASK, N)  # 1740 steps, planned ceil(435) = 435, learned at ceil(348) = 348
    assert (p.total_steps, p.change) == (1740, (435, 348, "continue"))


@pytest.mark.parametrize("patience", [1, 2, 5])
def test_a_plateau_that_cannot_trigger_stands_in_for_constant(patience):
    for epochs in range(1, 9):
        p = plan_trial(cfg(budget=epochs * 100 / 60, schedule="plateau", unit="epochs", patience=patience), TASK, N)
        assert p.epochs == epochs
        assert plateau_is_constant(p) == (epochs <= patience + 2)
        if epochs <= patience + 2:
            assert p.stand_in == "constant"
            assert p.trained == TrialConfig("T", "constant", "sgdm", p.config.budget, 0.1, 0, (), "epochs")
        else:
            assert p.stand_in is None and p.trained == p.config


def test_a_planned_trial_is_frozen_and_needs_a_step():
    p = plan_trial(cfg(), TASK, N)
    with pytest.raises(Exception):
        p.total_steps = 3
    with pytest.raises(ValueError, match="total_steps=0"):
        PlannedTrial(cfg(), 0, 29)


def test_the_one_rule_counts_a_shared_run_under_its_largest_budget():
    assert counted_budget([1.0, 1.5, 0.5]) == 1.5
    assert same_run_key("T", "sgdm", "epochs", 29) == same_run_key("T", "sgdm", "epochs", 29.0)
    grid = [cfg(b, lr=lr, unit="epochs") for b in (1.0, 1.5, 5.0) for lr in (0.1, 0.3)]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        plan = plan_study(grid, {"T": (TASK, N)})
    msgs = [str(x.message) for x in w if issubclass(x.category, BudgetCollapseWarning)]
    assert msgs == ["T: budget 1 % is 29 steps, the same run as budget 1.5 %; it is trained and counted once "
                    "(as 1.5 %)"]
    assert sorted({c.budget for c in plan.configs}) == [1.5, 5.0]
    assert plan.dropped == {cfg(1.0, lr=lr, unit="epochs"): cfg(1.5, lr=lr, unit="epochs") for lr in (0.1, 0.3)}
    assert {c.budget: s for c, s in plan.steps.items()} == {1.5: 29, 5.0: 87}
    assert all(plan.trained(c) == c for c in plan.configs)
    # in steps the same budgets are three runs
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetCollapseWarning)
        plan = plan_study([cfg(b) for b in (1.0, 1.5, 5.0)], {"T": (TASK, N)})
    assert sorted(plan.steps.values()) == [18, 27, 87]


def test_a_store_that_kept_the_smallest_budget_resumes_from_it():
    """Before the one rule, the planner kept the smallest budget of a shared run: its row is reused, not retrained."""
    grid = [cfg(b, unit="epochs", schedule=s, **({"patience": 5} if s == "plateau" else {}))
            for b in (1.0, 1.5) for s in ("rex", "plateau")]
    old_rex, old_plateau = cfg(1.0, unit="epochs"), grid[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetCollapseWarning)
        plan = plan_study(grid, {"T": (TASK, N)}, finished={old_rex.key, old_plateau.key})
    rex, plateau = cfg(1.5, unit="epochs"), grid[3]
    assert plan.configs == [rex, plateau]
    assert plan.trained(rex) == old_rex and plan.planned[rex].stand_in is None  # the same run, as stored
    assert plan.trained(plateau) == old_plateau  # a plateau row reused as it was stored
    assert plan.steps[old_rex] == plan.steps[rex] == 29


def test_the_plan_loads_without_torch():
    code = "import sys; import budgetsched.bench.protocol.plan, budgetsched.bench.protocol.records; " \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
