"""Lightning with a budget-aware schedule that survives resume: ``lr_scheduler_config`` + ``BudgetCallback``.

``configure_optimizers`` returns a budgetsched scheduler over ``trainer.estimated_stepping_batches``, stepped once
per optimizer step; ``BudgetCallback()`` sets its budget again at train start, so resuming a checkpoint with a
larger ``max_epochs`` continues the decay with no LR jump down to the floor at the new end (without it, the
checkpoint's budget comes back and the new steps run at LR 0). A tiny regression model, no download:

    python examples/lightning_loop.py

The user's lines: the ``configure_optimizers`` body below (2 lines) and ``callbacks=[BudgetCallback()]``.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import lightning.pytorch as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from budgetsched.integrations.lightning import BudgetCallback, lr_scheduler_config


class Regressor(L.LightningModule):
    def __init__(self, profile: str = "rex", lr: float = 0.03, **schedule_args) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        self.profile, self.lr, self.schedule_args = profile, lr, schedule_args

    def training_step(self, batch, batch_idx):  # noqa: ANN001
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x).squeeze(-1), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr)
        return {"optimizer": optimizer,
                "lr_scheduler": lr_scheduler_config(optimizer, self.profile, self.trainer, **self.schedule_args)}


class RecordLR(L.Callback):
    """The LR each optimizer step runs at (read before the step)."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def data(n: int = 80, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, x @ torch.tensor([1.0, -2.0, 0.5, 3.0])), batch_size=16)  # 5 steps an epoch


def train(max_epochs: int, out_dir: str, *, ckpt_path: str | None = None, budget_callback: L.Callback | None = None,
          callbacks: list | None = None, max_time: str | None = None, **module_args) -> tuple[L.Trainer, list[float]]:
    """Fit for ``max_epochs`` (a checkpoint per epoch in ``out_dir``), resuming ``ckpt_path`` if given; return the
    trainer and the LR of every step this call ran."""
    torch.manual_seed(0)
    recorder = RecordLR()
    checkpoints = L.callbacks.ModelCheckpoint(dirpath=out_dir, filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    trainer = L.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, max_time=max_time,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[recorder, checkpoints, budget_callback or BudgetCallback(), *(callbacks or [])])
    trainer.fit(Regressor(**module_args), data(), ckpt_path=ckpt_path)
    return trainer, recorder.lrs


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    _, lrs = train(4, str(out), warmup_fraction=0.1)
    print("4 epochs, LR per step:", " ".join(f"{x:.4f}" for x in lrs))
    _, more = train(8, str(out), ckpt_path=str(out / "epoch=1.ckpt"), warmup_fraction=0.1)
    print("resumed after epoch 2 with max_epochs=8:", " ".join(f"{x:.4f}" for x in more))
    return 0


if __name__ == "__main__":
    sys.exit(main())
