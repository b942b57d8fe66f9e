"""budgetsched: budget-aware learning-rate schedules (REX and friends) and the REX paper's benchmark harness.

A schedule is a *profile* m(z) of progress z in [0, 1] times a *sampling rate* (Chen, Wolfe, Kyrillidis,
"REX: Revisiting Budgeted Training with an Improved Schedule", MLSys 2022).

>>> from budgetsched import Schedule
>>> Schedule("rex", total_steps=1000, peak_lr=0.1)(500)  # 0.1 * 2/3
0.06666666666666667
"""
from .plateau import Plateau
from .profiles import available, get_profile
from .sampling import Sampling, parse_sampling
from .schedule import Schedule

__version__ = "0.1.0"
__all__ = ["Schedule", "Plateau", "Sampling", "available", "get_profile", "parse_sampling", "__version__"]
