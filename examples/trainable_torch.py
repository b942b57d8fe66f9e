"""Your own PyTorch training loop under the REX paper's protocol: a budgetsched *trainable*.

The loop below is ordinary PyTorch (DataLoader, torch.optim); budgetsched gives each trial its optimizer, its
schedule over its own budget, and stores what the function returns. Wine data ships with scikit-learn (no download).

    python examples/trainable_torch.py [OUT_DIR]
    budgetsched run --task examples/trainable_torch.py:train --schedules rex,linear --lrs 0.01,0.1 --store w.db
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from budgetsched.bench import trainable


def wine_splits():
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    x, y = load_wine(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.3, stratify=y_rest, random_state=0)
    mean, std = x_train.mean(0), x_train.std(0)
    t = lambda a, b: TensorDataset(torch.tensor((a - mean) / std, dtype=torch.float32), torch.tensor(b))  # noqa: E731
    return t(x_train, y_train), t(x_val, y_val), t(x_test, y_test)


def error_percent(model: nn.Module, data: TensorDataset) -> float:
    model.eval()
    with torch.no_grad():
        x, y = data.tensors
        err = (model(x).argmax(1) != y).float().mean().item() * 100
    model.train()
    return err


@trainable(max_epochs=30, steps_per_epoch=5, metric_name="error %")  # 86 examples / batch 16 = 5 steps an epoch
def train(trial):
    train_set, val_set, test_set = wine_splits()
    loader = DataLoader(train_set, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(trial.seed))
    model = nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 3))  # torch is seeded with trial.seed
    opt = trial.optimizer(model.parameters())
    sched = trial.scheduler(opt)
    step = 0
    while step < trial.total_steps:
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if trial.schedule_name != "plateau":
                sched.step()
            if step == trial.total_steps:
                break
        val = error_percent(model, val_set)
        if trial.schedule_name == "plateau":
            sched.step(val)
        trial.report(step=step, train_loss=loss.item(), val_metric=val, lr=opt.param_groups[0]["lr"])
    return {"val_metric": error_percent(model, val_set), "test_metric": error_percent(model, test_set),
            "steps": step}


def main() -> int:
    from budgetsched.cli import main as cli

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    store = str(out / "wine.db")
    grid = ["--task", f"{__file__}:train", "--schedules", "rex,linear,step,plateau", "--plateau-patience", "2",
            "--budgets", "10,50,100", "--lrs", "sgdm=0.01,0.03,0.1;adam=0.003,0.01,0.03", "--seeds", "2"]
    return cli(["run", *grid, "--store", store, "--quiet"]) or cli(["report", store, "--format", "md"])


if __name__ == "__main__":
    sys.exit(main())
