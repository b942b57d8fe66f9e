"""Hugging Face Trainer with a budget-aware schedule: pass the optimizer and a BudgetScheduler as ``optimizers``,
and ``BudgetCallback()`` so the budget follows ``max_steps``, also when a run is resumed with more steps.

The Trainer calls ``scheduler.step()`` once per optimizer step, so ``total_steps`` is the number of optimizer steps
of the run (``max_steps``, or epochs x batches per epoch / gradient accumulation); ``BudgetCallback`` sets it from
``state.max_steps`` at train begin, so a resume from a checkpoint with a larger ``max_steps`` continues the decay
(no LR jump) down to the floor at the new end instead of training the new steps at LR 0. A tiny regression model
keeps the example self-contained (no download):

    python examples/hf_trainer.py

The user's lines: ``scheduler = BudgetScheduler(optimizer, "rex", total_steps=max_steps)`` and
``Trainer(..., optimizers=(optimizer, scheduler), callbacks=[BudgetCallback()])``; or let the Trainer build it:
``BudgetTrainer(model=..., args=..., schedule="rex")`` (budgetsched.integrations.hf).

``BudgetScheduler(optimizer, "plateau", patience=...)`` is a ``PlateauScheduler``, a ``ReduceLROnPlateau``: the
Trainer then steps it with the evaluation metric (``metric_for_best_model``) after each evaluation, and not after
each optimizer step. ``train(profile="plateau", eval_steps=5, patience=0)`` shows it.
"""
from __future__ import annotations

import tempfile

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from budgetsched.integrations.hf import BudgetCallback
from budgetsched.torch import BudgetScheduler


class TinyRegressor(nn.Module):
    """Any nn.Module whose forward takes the batch's keys and returns a dict with "loss" works with Trainer."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = self.net(x).squeeze(-1)
        return {"loss": nn.functional.mse_loss(out, labels), "logits": out} if labels is not None else {"logits": out}


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n: int = 256, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


class RecordLR(TrainerCallback):
    """Records the LR each optimizer step runs at (read before the step)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer, self.lrs = optimizer, []

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.lrs.append(self.optimizer.param_groups[0]["lr"])


def train(max_steps: int = 40, output_dir: str | None = None, profile: str = "rex", *, save_steps: int | None = None,
          eval_steps: int | None = None, resume_from_checkpoint: str | None = None,
          budget_callback: BudgetCallback | None = None, callbacks: list | None = None, **schedule_args) -> tuple:
    """Train the tiny model for ``max_steps`` optimizer steps under ``profile``; return (trainer, scheduler, lrs).

    With ``save_steps`` the Trainer checkpoints (optimizer and scheduler state included) to ``output_dir``;
    ``resume_from_checkpoint`` continues such a run: the scheduler resumes from its saved step, and
    ``budget_callback`` (default ``BudgetCallback()``) moves its budget to this call's ``max_steps``.
    With ``eval_steps`` it evaluates on a held-out set every ``eval_steps`` steps (``eval_loss`` is the metric a
    plateau scheduler receives).
    """
    torch.manual_seed(0)
    model = TinyRegressor()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    scheduler = BudgetScheduler(optimizer, profile, total_steps=max_steps, **schedule_args)
    recorder = RecordLR(optimizer)
    with tempfile.TemporaryDirectory() as tmp:
        evaluating = eval_steps is not None
        args = TrainingArguments(output_dir=output_dir or tmp, max_steps=max_steps, per_device_train_batch_size=16,
                                 logging_steps=10, report_to=[],
                                 save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500, use_cpu=True,
                                 eval_strategy="steps" if evaluating else "no", eval_steps=eval_steps,
                                 metric_for_best_model="loss" if evaluating else None,
                                 disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=Pairs(), optimizers=(optimizer, scheduler),
                          eval_dataset=Pairs(n=64, seed=1) if evaluating else None,
                          callbacks=[recorder, budget_callback or BudgetCallback(), *(callbacks or [])])
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer, scheduler, recorder.lrs


if __name__ == "__main__":
    trainer, scheduler, lrs = train(max_steps=40, warmup_steps=4)
    print("LR per step:", " ".join(f"{x:.4f}" for x in lrs))
    print("final train loss:", trainer.state.log_history[-1].get("train_loss"))
    with tempfile.TemporaryDirectory() as out:  # stop at step 20 of 40, then resume with a budget of 80 steps
        train(max_steps=40, output_dir=out, save_steps=20)
        _, scheduler, lrs = train(max_steps=80, output_dir=out, resume_from_checkpoint=f"{out}/checkpoint-20")
        print("resumed at step 20 with max_steps=80, LR per step:", " ".join(f"{x:.4f}" for x in lrs))
        print("budget changes:", scheduler.budget_changes)
    trainer, scheduler, lrs = train(max_steps=40, profile="plateau", eval_steps=5, patience=0, factor=0.5)
    print("plateau, LR per step:", " ".join(f"{x:.4f}" for x in lrs))
