"""PyTorch adapter: :class:`BudgetScheduler` (profiles) and :class:`PlateauScheduler` (decay on plateau).

:class:`BudgetScheduler` is a ``torch.optim.lr_scheduler.LRScheduler`` whose LR at step t is the closed form of
:class:`budgetsched.Schedule`, one per parameter group sharing one budget history (a
:class:`budgetsched.GroupSchedule`), computed at each step on Python floats: no table of steps, so construction and
budget changes cost the same at T = 1e4 and T = 1e8, and resuming restores one counter and the budget history. The
budget is in optimizer steps, tokens (``token_budget=``) or wall-clock seconds (``time_budget=``; see
:mod:`budgetsched.budget`). Every LR it sets goes through one method (``_apply``).

:class:`PlateauScheduler` subclasses ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (Hugging Face ``Trainer`` and
Lightning pass evaluation metrics only to such instances), with :class:`budgetsched.Plateau` semantics and the
same peak/floor vocabulary. :func:`make_scheduler` builds either from the same arguments, and
``BudgetScheduler(optimizer, "plateau", ...)`` is its plateau path.

>>> import torch
>>> from budgetsched.torch import BudgetScheduler
>>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
>>> sched = BudgetScheduler(opt, "rex", total_steps=100)
>>> for _ in range(50):
...     opt.step()
...     sched.step()
>>> round(sched.get_last_lr()[0], 12) == round(0.1 * 2 / 3, 12)
True
"""
from __future__ import annotations

from . import _require

_require("budgetsched.torch", "torch", "torch")  # one line naming the extra if PyTorch is missing

from ._torch.plateau import PlateauScheduler  # noqa: E402
from ._torch.scheduler import BudgetScheduler, make_scheduler  # noqa: E402

__all__ = ["BudgetScheduler", "PlateauScheduler", "make_scheduler"]
