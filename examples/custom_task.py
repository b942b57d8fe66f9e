"""Run the REX paper's protocol on your own model and data: a budgetsched ``Task``.

The data set ships with scikit-learn (breast-cancer, 569 tumours, 30 features: no download); the model is a small
MLP. Run it as a script (about half a minute on 2 CPU cores), or name the task from the command line::

    python examples/custom_task.py
    budgetsched run --task examples/custom_task.py:make_task --schedules rex,linear,cosine,step \\
        --lrs 0.003,0.01,0.03,0.1 --seeds 3 --store cancer.db
    budgetsched report cancer.db
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from budgetsched.bench.tasks import Task, TaskData, cross_entropy, error_percent


def load_breast_cancer_data(data_dir=None, cache_dir=None) -> TaskData:
    """Fixed stratified split 60 / 20 / 20 %, features standardized with the training statistics."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.25, stratify=y_rest, random_state=0)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    f = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    i = lambda a: torch.tensor(a, dtype=torch.int64)  # noqa: E731
    return TaskData(f(x_train), i(y_train), f(x_val), i(y_val), f(x_test), i(y_test))


def make_task() -> Task:
    """The task: what a 100 % budget is (40 epochs of batch 32), the model, the loss and the metric."""
    return Task(
        name="breast-cancer-mlp", max_epochs=40, batch_size=32, metric_name="error %",
        load=load_breast_cancer_data,
        make_model=lambda: nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 2)),
        loss=cross_entropy, metric=error_percent, weight_decay=1e-4,
    )


def main() -> int:
    from budgetsched.cli import main as cli

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    store = str(out / "cancer.db")
    grid = ["--task", f"{__file__}:make_task", "--schedules", "rex,linear,cosine,step,constant",
            "--budgets", "5,25,100", "--lrs", "sgdm=0.01,0.03,0.1,0.3;adam=0.001,0.003,0.01,0.03", "--seeds", "3"]
    code = cli(["run", *grid, "--store", store, "--quiet"])
    return code or cli(["report", store, "--format", "md"])


if __name__ == "__main__":
    sys.exit(main())
