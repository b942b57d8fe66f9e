"""Lightning integration: a budget that follows ``trainer.estimated_stepping_batches``, resume included.

* :class:`BudgetCallback`, a ``lightning.pytorch.Callback``. At train start, fresh or resumed from a checkpoint
  (``trainer.fit(model, ckpt_path=...)``), it sets the budget of every budgetsched scheduler of the run to the
  steps the trainer will run. Without it a resume with a larger ``max_epochs`` restores the checkpoint's budget
  and trains the new steps at the end LR, 0 by default.
* :func:`lr_scheduler_config`, for ``configure_optimizers``: a budgetsched scheduler over the trainer's estimated
  stepping batches, in the dictionary Lightning expects.

::

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-3)
        return {"optimizer": opt, "lr_scheduler": lr_scheduler_config(opt, "rex", self.trainer, warmup_fraction=0.05)}

    trainer = L.Trainer(max_epochs=10, callbacks=[BudgetCallback()])
"""
from __future__ import annotations

from typing import Any

from budgetsched import _require

_require("budgetsched.integrations.lightning", "lightning", "torch", "lightning")

from lightning.pytorch import Callback  # noqa: E402
from lightning.pytorch.callbacks import Timer  # noqa: E402

from budgetsched.budget import parse_duration  # noqa: E402

from budgetsched.profiles import canonical_name  # noqa: E402
from budgetsched.torch import BudgetScheduler, PlateauScheduler  # noqa: E402

from budgetsched.schedule import _show  # noqa: E402

from budgetsched.budget import check_clock  # noqa: E402
from ._budget import check_ratio, check_rewarm, check_strategy, follow_time, sync_budget, unwrap  # noqa: E402

__all__ = ["BudgetCallback", "lr_scheduler_config"]


def _stepping_batches(trainer: Any, who: str) -> int:
    total = trainer.estimated_stepping_batches
    if total is None or total == float("inf") or total < 0:
        raise ValueError(f"{who}: the run has no finite length (trainer.estimated_stepping_batches is {total}); "
                         "set max_epochs or max_steps")
    return int(total)


def lr_scheduler_config(optimizer: Any, profile: str = "rex", trainer: Any = None, *, monitor: str | None = None,
                        **kwargs: Any) -> dict[str, Any]:
    """The ``"lr_scheduler"`` entry of ``configure_optimizers`` for a budgetsched schedule.

    A profile is stepped once per optimizer step (``"interval": "step"``) over ``total_steps`` =
    ``trainer.estimated_stepping_batches`` (pass ``self.trainer``) unless ``total_steps=`` is given; ``kwargs``
    are :class:`budgetsched.torch.BudgetScheduler`'s (``warmup_fraction``, ``min_lr_ratio``, profile parameters,
    ...). ``"plateau"`` gives a :class:`PlateauScheduler` stepped once per epoch with the metric ``monitor``
    (required, e.g. ``"val_loss"``) and ``kwargs`` such as ``patience``.
    """
    if canonical_name(profile) == "plateau":
        if not monitor:
            raise ValueError("plateau decays on a metric: give monitor= (e.g. 'val_loss'), the name it is logged under")
        total = kwargs.pop("total_steps", None)
        if total is None and trainer is not None and (trainer.max_epochs or -1) > 0:
            total = trainer.max_epochs  # its budget in evaluations (recorded; it does not move the LR)
        return {"scheduler": PlateauScheduler(optimizer, total, **kwargs), "interval": "epoch", "frequency": 1,
                "monitor": monitor}
    if monitor is not None:
        raise ValueError(f"monitor= is for plateau only; {profile!r} follows the budget, not a metric")
    if "total_steps" not in kwargs:
        if trainer is None:
            raise ValueError("give the trainer (self.trainer in configure_optimizers) or total_steps=")
        kwargs["total_steps"] = _stepping_batches(trainer, "lr_scheduler_config")
    return {"scheduler": BudgetScheduler(optimizer, profile, **kwargs), "interval": "step", "frequency": 1}


class BudgetCallback(Callback):
    """Sets the budget of the run's budgetsched schedulers from the trainer at train start, fresh or resumed.

    For a scheduler stepped per optimizer step (``"interval": "step"``) the budget becomes its current step plus
    the optimizer steps left, ``trainer.estimated_stepping_batches - trainer.global_step`` (divided by the
    scheduler's ``frequency``); for one stepped per epoch, its step plus the epochs left, ``max_epochs -
    current_epoch``. A fresh run gets exactly the schedule built for that budget; a resume (``ckpt_path=``) with
    another ``max_epochs`` / ``max_steps`` reaches the floor at the new end: by default a larger one re-warms to the
    peak once the decay has begun (a finished run included), a smaller one continues with no LR jump
    (``strategy=``). Plateau schedulers are left alone.

    Args:
        warmup_ratio: the warmup as a ratio of the run, set at the start of a fresh run (replacing the
            scheduler's own warmup); default: the scheduler's own.
        rewarm_steps, rewarm_peak: the shape of a re-warm (the default when a resume makes the budget grow after
            the decay began, a finished run included, or ``strategy="rewarm"``): from the current LR up to
            ``rewarm_peak`` (default each group's peak) over ``rewarm_steps`` steps (default the initial warmup,
            at least 1), then the profile down to the floor at the new end.
        time_budget: seconds of training (a number or ``"2h"``) for the whole run, resumes included. Default: the
            trainer's ``max_time`` when it is set (the budget is then the scheduler's used time plus Lightning's
            ``Timer.time_remaining()`` at train start, so both end together). The schedule follows the clock
            (``clock``, default ``time.monotonic``), counted from train start, and the callback stops the trainer
            when the budget is used (``trainer.should_stop``), the last step at the floor.
        strategy: how a resume with another length continues: None or "auto" (default: "rewarm" when the budget
            grows after the decay began, else "continue"; :meth:`budgetsched.Schedule.default_strategy`),
            "continue" (no LR jump; a finished run then stays at its end value, with a warning), "rewarm" or
            "extend". The checkpoint records the strategy that ran.
        count_validation: with a time budget, whether validation counts (default True; Lightning's ``max_time``
            counts it, so keep True with ``max_time``); False stops the clock during validation loops.
    """

    def __init__(self, warmup_ratio: float | None = None, *, rewarm_steps: int | None = None,
                 rewarm_peak: float | None = None, time_budget: float | str | None = None, clock: Any = None,
                 count_validation: bool = True, strategy: str | None = None) -> None:
        self.warmup_ratio = check_ratio("warmup_ratio", warmup_ratio)
        self.strategy = check_strategy(strategy)
        self.rewarm_steps, self.rewarm_peak = check_rewarm(rewarm_steps, rewarm_peak)
        self.time_budget = None if time_budget is None else parse_duration(time_budget)
        self.clock, self.count_validation = check_clock(clock), bool(count_validation)
        self._timed: list[Any] = []

    def _deadline(self, trainer: Any) -> tuple[float | None, str]:
        if self.time_budget is not None:
            return self.time_budget, f"time_budget={self.time_budget:g}s"
        for cb in getattr(trainer, "callbacks", []):
            if isinstance(cb, Timer):
                left = cb.time_remaining()
                if left is not None:
                    return left, f"Trainer(max_time=...): {left:.1f}s remaining"
        return None, ""

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        seconds, source = self._deadline(trainer)
        if seconds is not None:
            self._timed = []
            for config in trainer.lr_scheduler_configs:
                sched = unwrap(config.scheduler)
                if not isinstance(sched, BudgetScheduler):
                    continue
                total = seconds if self.time_budget is not None else (
                    sched.used if sched.budget_unit == "seconds" else 0.0) + seconds
                warmup = None if self.warmup_ratio is None else ("fraction", self.warmup_ratio)
                timed = follow_time(sched, total, who="BudgetCallback", clock=self.clock, warmup=warmup, source=source)
                if timed is not None:
                    timed.resume()  # counted from train start, as Lightning's own Timer
                    self._timed.append(timed)
            if self._timed:
                return
        self._sync_steps(trainer)

    def on_train_batch_end(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if any(s.done for s in self._timed):
            trainer.should_stop = True

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if not self.count_validation:
            for s in self._timed:
                s.pause()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not self.count_validation:
            for s in self._timed:
                s.resume()

    def _sync_steps(self, trainer: Any) -> None:
        configs = list(trainer.lr_scheduler_configs)
        ours = [c for c in configs if isinstance(unwrap(c.scheduler), (BudgetScheduler, PlateauScheduler))]
        if not ours:
            kinds = ", ".join(type(c.scheduler).__name__ for c in configs) or "none"
            raise ValueError(f"BudgetCallback found no budgetsched scheduler among the trainer's LR schedulers "
                             f"({kinds}); return one from configure_optimizers (see lr_scheduler_config)")
        for config in ours:
            frequency = max(int(getattr(config, "frequency", 1) or 1), 1)
            if config.interval == "step":
                total = _stepping_batches(trainer, "BudgetCallback")
                left = (total - trainer.global_step) // frequency
                source = f"estimated_stepping_batches={total}, global_step={trainer.global_step}"
            else:
                if trainer.max_epochs is None or trainer.max_epochs < 0:
                    raise ValueError("BudgetCallback: a scheduler stepped once per epoch needs max_epochs")
                left = (trainer.max_epochs - trainer.current_epoch) // frequency
                source = f"max_epochs={trainer.max_epochs}, current_epoch={trainer.current_epoch}"
            warmup = None if self.warmup_ratio is None else ("fraction", self.warmup_ratio)
            sync_budget(config.scheduler, left, who="BudgetCallback", warmup=warmup, override_warmup=True,
                        rewarm_steps=self.rewarm_steps, rewarm_peak=self.rewarm_peak, source=source,
                        strategy=self.strategy)
