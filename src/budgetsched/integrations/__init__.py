"""Framework integrations that keep a budgetsched scheduler's budget in step with the trainer, resume included.

* :mod:`budgetsched.integrations.hf` (extra ``hf``): ``BudgetCallback`` (a ``transformers.TrainerCallback``),
  ``get_scheduler`` (HF's argument names) and ``BudgetTrainer`` / ``BudgetTrainerMixin`` (a ``Trainer`` whose
  ``create_scheduler`` builds a budgetsched schedule).
* :mod:`budgetsched.integrations.lightning` (extra ``lightning``): ``BudgetCallback`` (a Lightning ``Callback``)
  and ``lr_scheduler_config`` for ``configure_optimizers``.

At train begin (a fresh run or a resume from a checkpoint) the callbacks set the scheduler's budget to the steps the
trainer will run: ``state.max_steps`` (Hugging Face), ``trainer.estimated_stepping_batches`` (Lightning). A resume
with another budget therefore decays to the floor exactly at the new end (:meth:`budgetsched.Schedule.with_budget`)
instead of restoring the checkpoint's budget and training the new steps at the end value: by default a larger
budget re-warms to the peak once the decay has begun (a finished run included) and a smaller one continues with no
LR jump; ``strategy=`` picks another ("continue" keeps a finished run at its end value, with a warning). With
``time_budget=`` (Lightning: also
``Trainer(max_time=...)``) the schedule follows the clock and the callback stops training at the deadline with the
LR at its floor. See docs/integrations.md.

Importing this package needs nothing; importing ``.hf`` or ``.lightning`` without its framework raises
:class:`budgetsched.MissingExtraError` naming the extra to install.
"""

__all__: list[str] = []
