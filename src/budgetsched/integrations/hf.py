"""Hugging Face ``Trainer`` integration: a budget that follows ``max_steps``, resume included.

Three pieces (docs/integrations.md):

* :class:`BudgetCallback`, a ``transformers.TrainerCallback``. At train begin, fresh or resumed from a checkpoint,
  it sets the scheduler's budget to the steps the Trainer will run (``state.max_steps``; the warmup from a ratio).
  Without it a resume with a larger ``max_steps`` restores the checkpoint's budget (the Trainer swallows the
  ``UserWarning`` that says so) and trains the new steps at the end LR, 0 by default.
* :func:`get_scheduler`, a drop-in for ``transformers.get_scheduler`` with its argument names that builds a
  :class:`budgetsched.torch.BudgetScheduler` (any budgetsched profile) or a ``PlateauScheduler``.
* :class:`BudgetTrainer` (``Trainer`` + :class:`BudgetTrainerMixin`): a ``Trainer`` whose ``create_scheduler``
  builds the budgetsched schedule itself and that adds the callback. ``TrainingArguments.lr_scheduler_type`` is a
  closed enum, so the schedule is named here instead (``BudgetTrainer(..., schedule="rex")``).

>>> import torch
>>> from budgetsched.integrations.hf import get_scheduler
>>> opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
>>> sched = get_scheduler("rex", opt, num_warmup_steps=0.1, num_training_steps=1000)
>>> sched.schedule.warmup_steps
100
"""
from __future__ import annotations

import inspect
import math
import numbers
from typing import Any, Mapping

from budgetsched import _require

_require("budgetsched.integrations.hf", "hf", "torch", "transformers")

from transformers import Trainer, TrainerCallback  # noqa: E402

from budgetsched.profiles import canonical_name  # noqa: E402
from budgetsched.schedule import _show  # noqa: E402
from budgetsched.torch import BudgetScheduler, PlateauScheduler  # noqa: E402

from budgetsched.budget import parse_duration  # noqa: E402

from budgetsched.budget import check_clock  # noqa: E402
from ._budget import Warmup, check_ratio, check_rewarm, check_strategy, follow_time, sync_budget  # noqa: E402

__all__ = ["BudgetCallback", "get_scheduler", "BudgetTrainerMixin", "BudgetTrainer", "warmup_from_args"]

#: transformers' scheduler names that are budgetsched schedules under another name.
HF_ALIASES = {"constant_with_warmup": "constant", "reduce_lr_on_plateau": "plateau", "cosine_with_min_lr": "cosine"}
#: transformers' schedules with no budgetsched counterpart (an error that says so).
HF_ONLY = ("cosine_with_restarts", "inverse_sqrt", "cosine_warmup_with_min_lr", "warmup_stable_decay", "greedy")
# arguments get_scheduler takes under HF's names; in scheduler_specific_kwargs they would be given twice
_OWN = {"total_steps": "num_training_steps", "warmup_steps": "num_warmup_steps",
        "warmup_fraction": "num_warmup_steps (a float in (0, 1) is a ratio)"}


def warmup_from_args(args: Any) -> Warmup | None:
    """The warmup a ``TrainingArguments`` asks for: ``("fraction", f)``, ``("steps", W)`` or None.

    transformers >= 5: ``warmup_steps`` (a float < 1 is a ratio of the run); before 5: ``warmup_steps`` (steps),
    else ``warmup_ratio``.
    """
    steps = getattr(args, "warmup_steps", 0) or 0
    if steps >= 1:
        return ("steps", int(steps))
    if steps > 0:
        return ("fraction", float(steps))
    ratio = getattr(args, "warmup_ratio", None)
    if ratio:
        return ("fraction", float(ratio))
    return None


def _warmup_kwargs(num_warmup_steps: Any) -> dict[str, Any]:
    w = 0 if num_warmup_steps is None else num_warmup_steps
    if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
        raise ValueError(f"num_warmup_steps must be a step count >= 0 or a ratio in (0, 1), got {_show(w)}")
    if 0 < w < 1:
        return {"warmup_fraction": float(w)}
    if w != int(w):
        raise ValueError(f"num_warmup_steps must be a whole number of steps or a ratio in (0, 1), got {w!r}")
    return {"warmup_steps": int(w)} if w else {}


def get_scheduler(name: Any, optimizer: Any, num_warmup_steps: int | float | None = 0,
                  num_training_steps: int | None = None,
                  scheduler_specific_kwargs: Mapping[str, Any] | None = None) -> BudgetScheduler | PlateauScheduler:
    """``transformers.get_scheduler`` with a budgetsched schedule: same arguments, same call.

    Args:
        name: a budgetsched schedule (``budgetsched.available()``: rex, linear, cosine, ..., plateau) or one of
            transformers' names that is one of them (``constant_with_warmup``, ``reduce_lr_on_plateau``,
            ``cosine_with_min_lr``); a ``SchedulerType`` works too.
        optimizer: the ``torch.optim`` optimizer (or accelerate's wrapper of one); each parameter group's LR is
            its peak.
        num_warmup_steps: linear warmup steps (0: none), or a ratio of the run in (0, 1) (a ``warmup_fraction``,
            which a budget change re-maps). budgetsched's warmup starts at peak / W, never 0: step t runs at
            transformers' LR of step t + 1.
        num_training_steps: the run's optimizer steps (the budget). Required except for plateau; under a
            ``Trainer`` with :class:`BudgetCallback`, the callback resets it from ``state.max_steps``.
        scheduler_specific_kwargs: the profile's parameters and budgetsched's options (``min_lr``,
            ``min_lr_ratio``, ``warmup_start_lr``, ``sampling``, ``peak_lr``, ``gamma=``, ``patience=``, ...);
            for ``cosine_with_min_lr`` transformers' ``min_lr`` / ``min_lr_rate``; for ``polynomial`` transformers'
            ``lr_end`` (the floor) and ``power`` (budgetsched's defaults stay: ``power=2``, floor 0).

    Returns a :class:`budgetsched.torch.BudgetScheduler`, or for plateau a :class:`PlateauScheduler` (a
    ``ReduceLROnPlateau``, which the Trainer steps with ``metric_for_best_model`` after each evaluation;
    ``reduce_lr_on_plateau`` defaults to torch's ``patience=10``, ``plateau`` needs ``patience``).
    """
    raw, profile = _resolve(name)
    optimizer = _unwrap_optimizer(optimizer)
    kwargs = dict(scheduler_specific_kwargs or {})
    for key, ours in _OWN.items():
        if key in kwargs:
            raise ValueError(f"give {key} as get_scheduler's {ours}, not in scheduler_specific_kwargs")
    if raw.lower() == "cosine_with_min_lr" and "min_lr_rate" in kwargs:
        kwargs["min_lr_ratio"] = kwargs.pop("min_lr_rate")
    if profile == "polynomial" and "lr_end" in kwargs:  # transformers' name for the floor, an absolute LR
        if "min_lr" in kwargs or "min_lr_ratio" in kwargs:
            raise ValueError(f"give the floor once: lr_end ({kwargs['lr_end']!r}, transformers' name) or min_lr / "
                             "min_lr_ratio")
        kwargs["min_lr"] = kwargs.pop("lr_end")
    if raw.lower() == "cosine_with_min_lr" and kwargs.get("num_cycles", 0.5) == 0.5:
        kwargs.pop("num_cycles", None)  # transformers' default half cycle is budgetsched's cosine
    if profile == "plateau":
        if num_warmup_steps:
            raise ValueError(f"num_warmup_steps ({num_warmup_steps!r}) does not apply to plateau (its steps are "
                             "evaluations)")
        if raw.lower() == "reduce_lr_on_plateau":
            kwargs.setdefault("patience", 10)  # torch's (and transformers') default
        allowed = [k for k in inspect.signature(PlateauScheduler.__init__).parameters
                   if k not in ("self", "optimizer", "total_steps")]
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r} for plateau; its parameters: {', '.join(allowed)}")
        if "patience" not in kwargs:
            raise ValueError("'plateau' needs the parameter 'patience' (evaluations without improvement) in "
                             "scheduler_specific_kwargs")
        return PlateauScheduler(optimizer, num_training_steps, **kwargs)
    if num_training_steps is None:
        raise ValueError(f"{raw!r} requires num_training_steps (the run's optimizer steps, its budget); under a "
                         "Trainer with BudgetCallback any positive guess works: the callback sets it from "
                         "state.max_steps at train begin")
    return BudgetScheduler(optimizer, profile, total_steps=num_training_steps, **_warmup_kwargs(num_warmup_steps),
                           **kwargs)


def _unwrap_optimizer(optimizer: Any) -> Any:
    """The torch optimizer inside accelerate's ``AcceleratedOptimizer`` (what ``Trainer.create_scheduler`` is given);
    the wrapper shares its parameter groups and calls its ``step``."""
    while type(optimizer).__name__ == "AcceleratedOptimizer" and hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer


def _resolve(name: Any) -> tuple[str, str]:
    """(the name as given, the budgetsched schedule it means); ValueError for names that mean none."""
    raw = getattr(name, "value", name)  # transformers' SchedulerType is a str enum
    if not isinstance(raw, str):
        raise ValueError(f"name must be a schedule name, got {_show(name)}")
    if raw.lower() in HF_ONLY:
        from budgetsched import available

        raise ValueError(f"{raw!r} is a transformers schedule with no budgetsched counterpart: use "
                         f"transformers.get_scheduler for it, or a budgetsched schedule: {', '.join(available())}")
    return raw, canonical_name(HF_ALIASES.get(raw.lower(), raw))


class BudgetCallback(TrainerCallback):
    """Sets a budgetsched scheduler's budget from the Trainer's state at train begin, fresh or resumed.

    The budget becomes the steps the Trainer will run: the scheduler's current step plus ``state.max_steps -
    state.global_step``. A fresh run gets exactly the schedule built for ``max_steps``; a resume from a checkpoint
    reaches the floor at the new ``max_steps``: by default a larger one re-warms to the peak once the decay has
    begun (a finished run included) and a smaller one continues with no LR jump (``strategy=``). Plateau
    schedulers are left alone.

    Args:
        warmup_ratio: the warmup as a ratio of the run, set at the start of a fresh run (it replaces the
            scheduler's own warmup). Default: the ``TrainingArguments``' warmup (``warmup_steps``, a float < 1
            being a ratio; ``warmup_ratio`` before transformers 5) when the scheduler was built without one
            (both with different values is an error).
        rewarm_steps, rewarm_peak: the shape of a re-warm (the default when a resume makes the budget grow after
            the decay began, a finished run included, or ``strategy="rewarm"``): from the current LR up to
            ``rewarm_peak`` (default each group's peak) over ``rewarm_steps`` steps (default the initial warmup,
            at least 1), then the profile down to the floor at the new end.

        time_budget: seconds of training (a number or ``"2h"``, ``"90m"``, ``"45s"``) for the whole run, resumes
            included: the schedule follows the clock (``clock``, default ``time.monotonic``) and training stops at
            the deadline (``control.should_training_stop``), its last step within one step of it at the floor.
            ``max_steps`` must not be reached first (set it high). The warmup is a ratio (``warmup_ratio``, or the
            arguments' ratio).
        strategy: how a resume with another ``max_steps`` continues: None or "auto" (default: "rewarm" when the
            budget grows after the decay began, else "continue"; :meth:`budgetsched.Schedule.default_strategy`),
            "continue" (no LR jump; a finished run then stays at its end value, with a warning), "rewarm" or
            "extend" (docs/schedules.md). The checkpoint records the strategy that ran.
        count_evaluation: with a time budget, whether evaluation and checkpoint saving count (default True: a
            wall-clock budget); False stops the clock from the end of the step before them until they are done.

    A resume with a smaller ``max_steps`` never re-warms: the rest of the decay is re-mapped to the new budget.
    """

    def __init__(self, warmup_ratio: float | None = None, *, rewarm_steps: int | None = None,
                 rewarm_peak: float | None = None, time_budget: float | str | None = None, clock: Any = None,
                 count_evaluation: bool = True, strategy: str | None = None) -> None:
        self.warmup_ratio = check_ratio("warmup_ratio", warmup_ratio)
        self.strategy = check_strategy(strategy)
        self.rewarm_steps, self.rewarm_peak = check_rewarm(rewarm_steps, rewarm_peak)
        self.time_budget = None if time_budget is None else parse_duration(time_budget)
        self.clock, self.count_evaluation = check_clock(clock), bool(count_evaluation)
        self._timed: Any = None
        self.owner = "BudgetCallback"  # whose rewarm_steps= a message names (BudgetTrainer sets its own)

    def on_train_begin(self, args: Any, state: Any, control: Any, lr_scheduler: Any = None, **kwargs: Any) -> None:
        if lr_scheduler is None:
            raise ValueError("BudgetCallback: the Trainer has no LR scheduler at train begin")
        warmup = ("fraction", self.warmup_ratio) if self.warmup_ratio is not None else warmup_from_args(args)
        if self.time_budget is not None:
            self._timed = follow_time(lr_scheduler, self.time_budget, who="BudgetCallback", clock=self.clock,
                                      warmup=warmup, source=f"state.global_step={state.global_step}")
            return
        sync_budget(lr_scheduler, state.max_steps - state.global_step, who=self.owner, warmup=warmup,
                    override_warmup=self.warmup_ratio is not None, rewarm_steps=self.rewarm_steps,
                    rewarm_peak=self.rewarm_peak, strategy=self.strategy,
                    source=f"state.max_steps={state.max_steps}, state.global_step={state.global_step}")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        sched = self._timed
        if sched is None:
            return
        if sched.done:
            control.should_training_stop = True
        elif not self.count_evaluation and (control.should_evaluate or control.should_save):
            sched.pause()

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._timed is not None and not self.count_evaluation and not control.should_save:
            self._timed.resume()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._timed is not None and not self.count_evaluation:
            self._timed.resume()


class BudgetTrainerMixin:
    """Makes a ``Trainer`` (subclass) build a budgetsched schedule in ``create_scheduler`` and add
    :class:`BudgetCallback`. Use :class:`BudgetTrainer`, or mix it in first: ``class T(BudgetTrainerMixin,
    MyTrainer)``.

    Keyword arguments (besides the Trainer's): ``schedule`` (a budgetsched schedule, default ``"rex"``),
    ``schedule_kwargs`` (its parameters and options, as :func:`get_scheduler`'s ``scheduler_specific_kwargs``),
    ``rewarm_steps`` / ``rewarm_peak`` / ``strategy`` (for the callback). The warmup is the ``TrainingArguments``' (a ratio stays
    a ratio, re-mapped when a resume changes the budget); ``lr_scheduler_type`` and ``lr_scheduler_kwargs`` are
    not used. Passing ``optimizers=(optimizer, scheduler)`` bypasses ``create_scheduler``, as in transformers.
    """

    def __init__(self, *args: Any, schedule: str = "rex", schedule_kwargs: Mapping[str, Any] | None = None,
                 rewarm_steps: int | None = None, rewarm_peak: float | None = None, strategy: str | None = None,
                 **kwargs: Any) -> None:
        _resolve(schedule)  # a bad name fails before any work
        callback = BudgetCallback(rewarm_steps=rewarm_steps, rewarm_peak=rewarm_peak, strategy=strategy)
        callback.owner = "BudgetTrainer"  # its messages name BudgetTrainer(rewarm_steps=...), the option users have
        super().__init__(*args, **kwargs)
        self.budget_schedule = schedule
        self.budget_schedule_kwargs = dict(schedule_kwargs or {})
        if not any(isinstance(cb, BudgetCallback) for cb in self.callback_handler.callbacks):
            self.add_callback(callback)

    # The override to copy into your own Trainer subclass:
    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        if self.lr_scheduler is None:
            warmup = warmup_from_args(self.args)
            self.lr_scheduler = get_scheduler(self.budget_schedule,
                                              self.optimizer if optimizer is None else optimizer,
                                              num_warmup_steps=0 if warmup is None else warmup[1],
                                              num_training_steps=num_training_steps,
                                              scheduler_specific_kwargs=self.budget_schedule_kwargs)
            self._created_lr_scheduler = True  # transformers rebuilds it on the next train() call
        return self.lr_scheduler


class BudgetTrainer(BudgetTrainerMixin, Trainer):
    """``transformers.Trainer`` with a budgetsched schedule: ``BudgetTrainer(model, args, ..., schedule="rex")``."""
