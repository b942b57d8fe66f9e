"""What the framework callbacks share: set a scheduler's budget to the steps the trainer will run from now on.

Needs torch (the callers check their extra first).
"""
from __future__ import annotations

import logging
import math
import numbers
import warnings
from typing import Any

from budgetsched.changes import DEFAULT_STRATEGY, STRATEGIES, strategy_of
from budgetsched.schedule import _check_fraction, _check_int, _show
from budgetsched.torch import BudgetScheduler, PlateauScheduler

logger = logging.getLogger("budgetsched")

#: A warmup: ("fraction", f) or ("steps", W).
Warmup = tuple[str, float]


def unwrap(scheduler: Any) -> Any:
    """The scheduler inside ``accelerate``'s ``AcceleratedScheduler`` wrapper (if any)."""
    while type(scheduler).__name__ == "AcceleratedScheduler" and hasattr(scheduler, "scheduler"):
        scheduler = scheduler.scheduler
    return scheduler


def check_ratio(name: str, value: Any) -> float | None:
    """A warmup ratio in [0, 1) (None passes)."""
    return None if value is None else _check_fraction(name, value)


def check_rewarm(rewarm_steps: Any, rewarm_peak: Any) -> tuple[int | None, float | None]:
    if rewarm_steps is None:
        if rewarm_peak is not None:
            raise ValueError(f"rewarm_peak ({rewarm_peak!r}) needs rewarm_steps (the length of the re-warm ramp)")
        return None, None
    steps = _check_int("rewarm_steps", rewarm_steps, 1)
    if rewarm_peak is not None and (isinstance(rewarm_peak, bool) or not isinstance(rewarm_peak, numbers.Real)
                                    or not math.isfinite(rewarm_peak) or rewarm_peak < 0):
        raise ValueError(f"rewarm_peak must be a learning rate >= 0, got {_show(rewarm_peak)}")
    return steps, rewarm_peak


def own_warmup(scheduler: BudgetScheduler) -> Warmup | None:
    """The warmup the scheduler was built with (None for none)."""
    state = scheduler.state_dict()
    if state.get("warmup_fraction"):
        return ("fraction", float(state["warmup_fraction"]))
    if state.get("warmup_steps"):
        return ("steps", int(state["warmup_steps"]))
    return None


def show_warmup(w: Warmup | None) -> str:
    if w is None:
        return "no warmup"
    return f"a warmup ratio of {w[1]:g}" if w[0] == "fraction" else f"{int(w[1])} warmup steps"


class _DropFinishedRunRecord(logging.Filter):
    """Hides the library's 'continuing a finished run' record while a callback logs its own (naming its option)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "continuing a finished run" not in record.getMessage()


def _set_warmup(scheduler: BudgetScheduler, total: int, warmup: Warmup) -> None:
    """At step 0 only: rebuild the scheduler's configuration with this warmup and budget (its state is plain data)."""
    state = scheduler.state_dict()
    kind, value = warmup
    state.update(warmup_fraction=value if kind == "fraction" else None,
                 warmup_steps=int(value) if kind == "steps" else None,
                 initial_total_steps=total, total_steps=total, budget_changes=[])
    with warnings.catch_warnings():  # the 'restored the saved budget' note: here we set the budget on purpose
        warnings.simplefilter("ignore", UserWarning)
        scheduler.load_state_dict(state)


def _ours(scheduler: Any, who: str) -> BudgetScheduler | None:
    """The budgetsched scheduler inside ``scheduler`` (None for a plateau one); a TypeError for another kind."""
    sched = unwrap(scheduler)
    if isinstance(sched, PlateauScheduler):
        return None
    if not isinstance(sched, BudgetScheduler):
        raise TypeError(f"{who} sets the budget of a budgetsched BudgetScheduler, but the trainer's scheduler is a "
                        f"{type(sched).__module__}.{type(sched).__name__}; pass a budgetsched.torch.BudgetScheduler "
                        "(or build it with budgetsched.integrations' helpers)")
    return sched


def follow_time(scheduler: Any, seconds: float, *, who: str, clock: Any = None, warmup: Warmup | None = None,
                source: str = "") -> BudgetScheduler | None:
    """Make ``scheduler`` count a time budget of ``seconds`` of training in all (a resumed time budget keeps its
    used time): before the first step a step budget becomes this time budget (:meth:`BudgetScheduler.use_time_budget`,
    with ``warmup`` as a ratio if the scheduler has no warmup); a time budget that differs is changed with the
    default strategy (:meth:`budgetsched.Schedule.default_strategy`). Returns the scheduler (None for plateau)."""
    sched = _ours(scheduler, who)
    if sched is None:
        return None
    if sched.budget_unit == "steps" and warmup is not None and warmup[0] == "fraction" and own_warmup(sched) is None:
        _set_warmup(sched, sched.total_steps, warmup)
    try:
        sched.use_time_budget(seconds, clock=clock)
    except ValueError as e:
        raise ValueError(f"{who}: {e}") from None
    where = f" ({source})" if source else ""
    logger.info("budgetsched: %s follows a time budget of %gs (%.1f%% used)%s", who, seconds,
                100 * sched.fraction_used, where)
    return sched


def check_strategy(strategy: Any) -> str | None:
    """A continuation strategy of :data:`budgetsched.changes.STRATEGIES`, or None / "auto" (the default rule,
    :meth:`budgetsched.Schedule.default_strategy`; returned as None)."""
    if strategy is None or (isinstance(strategy, str) and strategy == DEFAULT_STRATEGY):
        return None
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(map(repr, STRATEGIES))} or None, got {_show(strategy)} "
                         f"(None or {DEFAULT_STRATEGY!r}: the default, which picks one)")
    return strategy


def sync_budget(scheduler: Any, steps_left: int, *, who: str, warmup: Warmup | None = None,
                override_warmup: bool = False, rewarm_steps: int | None = None,
                rewarm_peak: float | None = None, source: str = "", strategy: str | None = None) -> bool:
    """Make ``scheduler`` end exactly ``steps_left`` of its steps from now (its ``last_epoch``).

    * At step 0 (a fresh run) the schedule becomes exactly the one built for that budget; ``warmup`` (a ratio or
      steps) is applied if the scheduler has none, or always with ``override_warmup``; a scheduler warmup that
      differs from a not-overriding ``warmup`` is a ``ValueError`` (two different warmups were asked for).
    * Later (a resume, or a finished run continued), ``set_total_steps`` with ``strategy``. None is the default
      rule (:meth:`budgetsched.Schedule.default_strategy`): "rewarm" when the budget grows after the decay has
      begun (a finished run included), with ``rewarm_steps`` / ``rewarm_peak`` if given, else "continue" (no LR
      jump, the floor at the new end). An explicit "continue" of a finished run keeps the LR at its end value and
      logs one warning (logger ``"budgetsched"``) naming ``who``'s option.

    Plateau schedulers are left alone (their budget is in evaluations and does not move the LR). Returns whether
    the scheduler was changed.
    """
    sched = _ours(scheduler, who)
    if sched is None or sched.budget_unit != "steps":
        return False  # plateau: a budget in evaluations; a time or token budget is not the trainer's step count
    if steps_left <= 0:
        return False  # the trainer has nothing left to run
    at = max(sched.last_epoch, 0)
    total = at + int(steps_left)
    where = f" ({source})" if source else ""
    if at == 0:  # nothing has run: set the budget (the plan for it), no strategy applies
        mine = own_warmup(sched)
        if warmup is not None and warmup != mine:
            if mine is not None and not override_warmup:
                raise ValueError(f"{who}: the scheduler was built with {show_warmup(mine)} but the training arguments "
                                 f"ask for {show_warmup(warmup)}; give the warmup in one place")
            if mine is None or override_warmup:
                _set_warmup(sched, total, warmup)
                sched.set_total_steps(total, strategy="continue")  # writes the step-0 LR (the one write path)
                logger.info("budgetsched: %s set the budget to %d steps with %s%s", who, total, show_warmup(warmup),
                            where)
                return True
        if total == sched.total_steps:
            return False
        sched.set_total_steps(total, strategy="continue")
        logger.info("budgetsched: %s set the budget to %d steps%s", who, total, where)
        return True
    if total == sched.total_steps:
        return False
    old = sched.total_steps
    finished = at >= old
    if strategy is None:  # the default rule; given rewarm_steps / rewarm_peak shape its re-warm
        strategy = sched.schedule.default_strategy(total, at)
        if strategy == "continue" and finished and rewarm_steps is not None:
            strategy = "rewarm"  # asked for a re-warm of a finished run: its ramp, or an error naming it
    rewarm = {"rewarm_steps": rewarm_steps, "rewarm_peak": rewarm_peak} if strategy == "rewarm" else {}
    if finished and strategy == "continue":
        end = sched.get_last_lr()[0]
        drop = _DropFinishedRunRecord()
        logger.addFilter(drop)
        try:
            sched.set_total_steps(total, strategy="continue")
        finally:
            logger.removeFilter(drop)
        logger.warning("budgetsched: %s: resuming a finished run (step %d of %d) with a budget of %d steps and "
                       "strategy 'continue': the learning rate stays at its end value %g for the %d new steps. To "
                       "train on, re-warm: %s(rewarm_steps=K[, rewarm_peak=P]), or leave strategy at its default%s",
                       who, at, old, total, end, total - at, who, where)
        return True
    try:
        sched.set_total_steps(total, strategy=strategy, **rewarm)
    except ValueError as e:
        given = "".join(f", {k}={v!r}" for k, v in rewarm.items() if v is not None)
        raise ValueError(f"{who}(strategy={strategy!r}{given}): {e}") from None
    ran = strategy_of(sched.budget_changes[-1])
    what = "continued a finished run" if finished else "changed the budget"
    logger.info("budgetsched: %s %s at step %d from %d to %d steps (strategy %s)%s", who, what, at, old, total, ran,
                where)
    return True
