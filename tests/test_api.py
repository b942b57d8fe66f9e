"""One argument vocabulary across the Schedule and every adapter (style note 6), checked on the signatures."""
import inspect

import budgetsched
from budgetsched import Schedule
from budgetsched.keras import BudgetSchedule
from budgetsched.optax import schedule as optax_schedule
from budgetsched.torch import BudgetScheduler, PlateauScheduler

VOCAB = ("total_steps", "peak_lr", "min_lr", "min_lr_ratio", "warmup_steps", "warmup_fraction", "warmup_start_lr",
         "sampling")
FOREIGN = ("T", "num_steps", "max_steps", "final_lr", "eta_min", "warmup", "warmup_ratio", "warmup_lr_init",
           "num_warmup_steps", "num_training_steps", "lr_min", "base_lr", "min_lr_rate")


def _params(fn):
    return inspect.signature(fn).parameters


def test_every_entry_point_speaks_the_same_vocabulary():
    # issue 10: warmup as a fraction, a warmup start LR and a floor ratio join the vocabulary everywhere, and the
    # torch scheduler takes peak_lr too (a scalar or one per group; default each group's own lr)
    for fn in (Schedule, optax_schedule, BudgetSchedule, BudgetScheduler):
        ps = _params(fn)
        for name in VOCAB:
            assert name in ps, f"{fn.__name__} lacks {name}"
        assert not any(p in ps for p in FOREIGN), fn
    ps = _params(PlateauScheduler)
    for name in ("total_steps", "peak_lr", "min_lr", "min_lr_ratio"):
        assert name in ps, f"PlateauScheduler lacks {name}"
    assert not any(p in ps for p in FOREIGN)
    # a budget change and a re-warm are spelled the same way in the core and the stateful adapters
    for method in (Schedule.with_budget, BudgetScheduler.set_total_steps, BudgetSchedule.set_total_steps):
        assert {"rewarm_steps", "rewarm_peak"} <= set(_params(method)), method
    assert "budget_changes" in _params(optax_schedule) and "budget_changes" in _params(BudgetSchedule)


def test_public_api_is_small_and_documented():
    assert set(budgetsched.__all__) == {"Schedule", "Plateau", "Sampling", "available", "get_profile",
                                        "parse_sampling", "__version__"}
    for name in budgetsched.__all__:
        obj = getattr(budgetsched, name)
        if callable(obj):
            assert obj.__doc__ and len(obj.__doc__) > 40, name
