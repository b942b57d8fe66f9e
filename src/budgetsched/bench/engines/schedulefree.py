"""Schedule-free training as a contender: one run serves every budget.

Schedule-Free SGD and AdamW (Defazio et al. 2024; the ``schedulefree`` package, optional extra
``budgetsched[schedulefree]``) need no budget: they train at a constant LR and evaluate an average of the iterates.
In a study they are the schedule ``"schedule-free"``: in an SGDM setting it is ``SGDScheduleFree(momentum=0.9)``,
in an Adam setting ``AdamWScheduleFree(betas=(0.9, 0.999))``, with the task's weight decay (decoupled in AdamW, as
its authors define it). The trials of one (task, optimizer, LR, seed) that differ only in budget are one run: it
trains to the largest budget and, at each budget's last step, switches to the averaged weights
(``optimizer.eval()``, as the package prescribes), evaluates, and switches back (``optimizer.train()``). Each
budget's result is what a separate run of that length would give: the method does not depend on the budget.

The run uses the same data order, augmentation draws and initial weights as every other trial of its seed
(:class:`budgetsched.bench.engines.train.Batches`, seed-then-``make_model``), the same evaluation points (epoch ends and the
end of each budget) and the same divergence rule (a budget whose run diverged before its end is ``diverged``).
"""
from __future__ import annotations

import math
import time
from typing import Any, Sequence

import torch

from budgetsched.bench.protocol.grid import SCHEDULE_FREE, TrialConfig
from budgetsched.bench.protocol.status import Status

__all__ = ["SCHEDULE_FREE", "train_schedule_free", "make_optimizer", "run_key"]


def make_optimizer(optimizer: str, params: Any, lr: float, weight_decay: float, warmup_steps: int = 0) -> Any:
    """The schedule-free counterpart of the protocol's optimizer (``sgdm`` -> SGD, ``adam`` -> AdamW)."""
    try:
        import schedulefree
    except ImportError:
        raise ImportError("schedule-free trials need the schedulefree package: "
                          "pip install 'budgetsched[schedulefree]'") from None
    if optimizer == "sgdm":
        return schedulefree.SGDScheduleFree(params, lr=lr, momentum=0.9, weight_decay=weight_decay,
                                            warmup_steps=warmup_steps)
    if optimizer == "adam":
        return schedulefree.AdamWScheduleFree(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay,
                                              warmup_steps=warmup_steps)
    raise ValueError(f"no schedule-free counterpart of optimizer {optimizer!r}; choose from sgdm, adam")


def run_key(c: TrialConfig) -> tuple:
    """Trials with equal run keys are one schedule-free run (they differ only in budget)."""
    return (c.task, c.optimizer, c.lr, c.seed, c.schedule_params, c.budget_unit, c.diverge_factor)


def train_schedule_free(configs: Sequence[TrialConfig], task: Any, data: Any, device: str | torch.device = "cpu"
                        ) -> list[tuple[TrialConfig, Any]]:
    """One schedule-free run for ``configs`` (one run key, any budgets); ``(config, TrialResult)`` per budget."""
    from budgetsched.bench.engines.stacked import SingleModel
    from budgetsched.bench.engines.train import CURVE_KEYS, Batches, TrialResult, place
    from budgetsched.bench.protocol.plan import as_planned

    planned = sorted((as_planned(c, task, len(data.train_y)) for c in configs), key=lambda p: p.config.budget)
    configs = [p.config for p in planned]
    if len({run_key(c) for c in configs}) != 1 or any(c.schedule != SCHEDULE_FREE for c in configs):
        raise ValueError("train_schedule_free takes schedule-free trials of one (task, optimizer, LR, seed)")
    first = configs[0]
    spe = planned[0].steps_per_epoch
    ends = {p.config: p.total_steps for p in planned}
    total = max(ends.values())
    t0 = time.perf_counter()
    results: dict[TrialConfig, Any] = {}
    curves: list[dict[str, float]] = []  # every evaluation of the run: its step and values
    try:
        torch.manual_seed(first.seed)
        model = SingleModel(task.make_model(), task, device)
        d = place(data, device, model.flat.dtype)
        opt = make_optimizer(first.optimizer, model.model.parameters(), first.lr, float(task.weight_decay),
                             int(first.params.get("warmup_steps", 0)))
        batches = Batches([first.seed], d.train_x, d.train_y, task.batch_size, getattr(task, "augment", None))
        first_loss, bad_step = None, None
        loss_sum, norm_sum, n_in_period, step = 0.0, 0.0, 0, 0
        evaluations = sorted({*ends.values(), *range(spe, total + 1, spe)})
        opt.train()
        for epoch in range(-(-total // spe)):
            steps_here = min(spe, total - epoch * spe)
            xs, ys = batches.epoch(steps_here)
            for i in range(steps_here):
                xb, yb = batches.batch(xs, ys, i)
                loss = task.loss(model.model(xb[0]), yb[0])
                value = float(loss.detach())
                first_loss = value if first_loss is None else first_loss
                if not math.isfinite(value) or (first_loss > 0 and value > first.diverge_factor * first_loss):
                    bad_step = step
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                norm_sum += float(torch.linalg.vector_norm(
                    torch.cat([p.grad.reshape(-1) for p in model.params if p.grad is not None])))
                opt.step()
                step += 1
                loss_sum += value
                n_in_period += 1
                if step in evaluations:
                    opt.eval()  # the averaged weights, as the method's authors evaluate
                    val = model.evaluate(d.val_x, d.val_y)
                    point = {"epoch": epoch + 1, "step": step, "train_loss": loss_sum / n_in_period,
                             "val_loss": val[0][0], "val_metric": val[1][0], "lr": first.lr,
                             "grad_norm": norm_sum / n_in_period}
                    loss_sum, norm_sum, n_in_period = 0.0, 0.0, 0
                    curves.append(point)
                    finite = math.isfinite(point["val_loss"])
                    for c, end in ends.items():
                        if end == step:
                            if finite:
                                test = model.evaluate(d.test_x, d.test_y)
                                results[c] = (Status.DONE, (val[0][0], val[1][0], test[0][0], test[1][0]), step)
                            else:
                                results[c] = (Status.DIVERGED, (None,) * 4, step)
                    opt.train()
                    if not finite:
                        bad_step = step
                        break
            if bad_step is not None:
                break
        error = None
    except Exception as e:  # the run failed: every budget it serves failed with it
        error = f"{type(e).__name__}: {e}"
    wall = (time.perf_counter() - t0) / len(configs)
    out = []
    for c in configs:
        end = ends[c]
        mine = {k: [p[k] for p in curves if p["step"] <= end] for k in CURVE_KEYS}
        if error is not None:
            out.append((c, TrialResult.failed(error, mine, 0, wall)))
        elif c in results:
            status, metrics, steps = results[c]
            out.append((c, TrialResult(status, *metrics, curves=mine, steps=steps, wall_time=wall)))
        else:  # the run stopped (diverged) before this budget's end
            out.append((c, TrialResult(Status.DIVERGED, None, None, None, None, mine, bad_step or 0, wall)))
    return out
