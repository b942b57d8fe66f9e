"""Sequential training engine: one trial, one model, one optimizer, read top to bottom.

Common random numbers: a trial seeds torch with ``config.seed`` right before ``task.make_model()`` and draws its
data order from ``torch.Generator().manual_seed(config.seed)`` (one ``randperm`` per epoch), so trials that differ
only in schedule or LR start from the same weights and see the same batches. The batched engine
(:mod:`budgetsched.bench.batched`) reproduces exactly this recipe and shares the helpers below.

Plateau (decay on plateau) multiplies a constant LR by :class:`budgetsched.Plateau`'s scale, updated on the
validation loss at the end of every epoch. Its ``patience`` is in epochs; a budget of few epochs could never use
a patience of 5 or 10, so the engines use ``min(patience, max(1, epochs // 10))`` (:func:`effective_patience`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from budgetsched import Plateau, Schedule
from budgetsched.bench.data import TaskData
from budgetsched.bench.grid import TrialConfig

#: Examples per evaluation forward pass: large for speed; both engines split the same way so the sums agree.
EVAL_BATCH = 1000
#: Plateau keys handled by the engine (everything else is a Schedule keyword).
PLATEAU_PARAMS = ("patience", "factor", "threshold")


@dataclass
class TrialResult:
    """Outcome of one trial (see docs/architecture.md). Metrics are None unless ``status == "done"``."""

    status: str  # "done" | "diverged" | "failed"
    val_loss: float | None
    val_metric: float | None
    test_loss: float | None
    test_metric: float | None
    curves: dict[str, list[float]]  # epoch, train_loss, val_loss, val_metric, lr (lr of the epoch's last step)
    steps: int  # optimizer steps taken
    wall_time: float  # seconds of training + evaluation
    error: str | None = None


@dataclass
class Plan:
    """Step counts and per-step tables of one trial. ``lrs`` excludes the plateau scale (applied per epoch)."""

    epochs: int
    steps_per_epoch: int
    total_steps: int
    lrs: np.ndarray  # float64 [total_steps]
    momenta: np.ndarray | None  # onecycle's momentum / beta1 per step, else None
    plateau: Plateau | None


def effective_patience(patience: int, epochs: int) -> int:
    """Plateau patience for a run of ``epochs`` epochs: ``min(patience, max(1, epochs // 10))``."""
    return min(int(patience), max(1, epochs // 10))


def plan_trial(config: TrialConfig, max_epochs: int, batch_size: int, n_train: int) -> Plan:
    """The trial's budget in steps and its LR (and momentum) for every step."""
    epochs = config.epochs(max_epochs)
    steps_per_epoch = math.ceil(n_train / batch_size)
    total = epochs * steps_per_epoch
    params = config.params
    if config.schedule == "plateau":
        unknown = sorted(set(params) - set(PLATEAU_PARAMS))
        if unknown or "patience" not in params:
            raise ValueError(f"plateau takes schedule params {PLATEAU_PARAMS} with 'patience' (epochs) required, "
                             f"got {sorted(params)}")
        plateau = Plateau(effective_patience(params["patience"], epochs),
                          **{k: v for k, v in params.items() if k != "patience"})
        return Plan(epochs, steps_per_epoch, total, np.full(total, config.lr), None, plateau)
    sched = Schedule(config.schedule, total, peak_lr=config.lr, **params)
    return Plan(epochs, steps_per_epoch, total, sched.values(), sched.momentum_values(), None)


#: The task's splits on the training device, floating inputs cast to the model's dtype: a TaskData, moved.
Placed = TaskData


def place(data: Any, device: str | torch.device, dtype: torch.dtype) -> Placed:
    def mv(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)
    return Placed(*(mv(getattr(data, f)) for f in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")))


def augment_generator(seed: int, device: str | torch.device) -> torch.Generator:
    """Randomness for ``task.augment``: its own stream, so augmentation never shifts the data order."""
    return torch.Generator(device=device).manual_seed(seed + 1_000_003)


def _sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean loss and mean per-example metric over (x, y), in batches of EVAL_BATCH."""
    model.eval()
    loss = metric = 0.0
    for s in range(0, len(y), EVAL_BATCH):
        out, yb = model(x[s:s + EVAL_BATCH]), y[s:s + EVAL_BATCH]
        loss = loss + task.loss(out, yb) * len(yb)
        metric = metric + task.metric(out, yb).sum()
    model.train()
    return float(loss) / len(y), float(metric) / len(y)


def _set_hparams(opt: torch.optim.Optimizer, lr: float, momentum: float | None) -> None:
    for g in opt.param_groups:
        g["lr"] = lr
        if momentum is not None:
            if "betas" in g:
                g["betas"] = (momentum, g["betas"][1])
            else:
                g["momentum"] = momentum


def make_optimizer(name: str, params: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgdm":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose from sgdm, adam")


def new_curves() -> dict[str, list[float]]:
    return {"epoch": [], "train_loss": [], "val_loss": [], "val_metric": [], "lr": []}


def train_trial(config: TrialConfig, task: Any, data: Any, device: str | torch.device = "cpu") -> TrialResult:
    """Train one trial and return its result; never raises for a trial that fails (status ``failed``).

    Raises:
        ValueError: ``config.task`` is not ``task.name`` (a caller mistake, not a trial outcome).
    """
    if config.task != task.name:
        raise ValueError(f"config is for task {config.task!r} but the task given is {task.name!r}")
    curves, steps = new_curves(), 0
    t0 = time.perf_counter()

    def result(status: str, final: tuple[float, float, float, float] | None = None, error: str | None = None):
        _sync(device)
        return TrialResult(status, *(final or (None,) * 4), curves=curves, steps=steps,
                           wall_time=time.perf_counter() - t0, error=error)

    try:
        n, bs = len(data.train_y), task.batch_size
        plan = plan_trial(config, task.max_epochs, bs, n)
        torch.manual_seed(config.seed)
        model = task.make_model().to(device)
        d = place(data, device, next(model.parameters()).dtype)
        order = torch.Generator().manual_seed(config.seed)
        aug = getattr(task, "augment", None)
        aug_gen = augment_generator(config.seed, device) if aug is not None else None
        opt = make_optimizer(config.optimizer, model.parameters(), config.lr, task.weight_decay)
        scale = 1.0
        model.train()
        for epoch in range(plan.epochs):
            perm = torch.randperm(n, generator=order).to(device)
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            for i in range(plan.steps_per_epoch):
                t = epoch * plan.steps_per_epoch + i
                lr = float(plan.lrs[t]) * scale
                _set_hparams(opt, lr, None if plan.momenta is None else float(plan.momenta[t]))
                idx = perm[i * bs:(i + 1) * bs]
                xb, yb = d.train_x[idx], d.train_y[idx]
                if aug is not None:
                    xb = aug(xb, aug_gen)
                loss = task.loss(model(xb), yb)
                if not torch.isfinite(loss):
                    return result("diverged")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                steps += 1
                loss_sum += loss.detach()
            val_loss, val_metric = evaluate(model, task, d.val_x, d.val_y)
            for k, v in zip(curves, (epoch + 1, float(loss_sum) / plan.steps_per_epoch, val_loss, val_metric, lr)):
                curves[k].append(v)
            if not math.isfinite(val_loss):
                return result("diverged")
            if plan.plateau is not None:
                scale = plan.plateau.update(val_loss)
        return result("done", (val_loss, val_metric, *evaluate(model, task, d.test_x, d.test_y)))
    except Exception as e:  # a failed trial is a result, so one bad config never stops a study
        return result("failed", error=f"{type(e).__name__}: {e}")
