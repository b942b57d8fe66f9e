"""One argument vocabulary across the Schedule and every adapter (style note 6), checked on the signatures."""
import inspect

import budgetsched
from budgetsched import Schedule
from budgetsched.keras import BudgetSchedule
from budgetsched.optax import schedule as optax_schedule
from budgetsched.torch import BudgetScheduler

VOCAB = ("total_steps", "min_lr", "warmup_steps", "sampling")


def _params(fn):
    return inspect.signature(fn).parameters


def test_every_entry_point_speaks_the_same_vocabulary():
    for fn in (Schedule, optax_schedule, BudgetSchedule, BudgetScheduler):
        ps = _params(fn)
        for name in VOCAB:
            assert name in ps, f"{fn.__name__} lacks {name}"
        assert not any(p in ps for p in ("T", "num_steps", "max_steps", "final_lr", "eta_min", "warmup")), fn
    # peak_lr: the closed forms take it; the torch scheduler reads each parameter group's own lr instead
    for fn in (Schedule, optax_schedule, BudgetSchedule):
        assert "peak_lr" in _params(fn)
    assert "peak_lr" not in _params(BudgetScheduler)


def test_public_api_is_small_and_documented():
    assert set(budgetsched.__all__) == {"Schedule", "Plateau", "Sampling", "available", "get_profile",
                                        "parse_sampling", "__version__"}
    for name in budgetsched.__all__:
        obj = getattr(budgetsched, name)
        if callable(obj):
            assert obj.__doc__ and len(obj.__doc__) > 40, name
