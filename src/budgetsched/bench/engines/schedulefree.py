"""Schedule-free training as a contender: one run serves every budget, trained by the one loop.

Schedule-Free SGD and AdamW (Defazio et al. 2024; the ``schedulefree`` package, optional extra
``budgetsched[schedulefree]``) need no budget: they train at a constant LR and evaluate an average of the iterates.
In a study they are the schedule ``"schedule-free"``: in an SGDM setting it is ``SGDScheduleFree(momentum=0.9)``,
in an Adam or AdamW setting ``AdamWScheduleFree(betas=(0.9, 0.999))``, with the task's weight decay (decoupled, as
its authors define it: the same decay as ``adamw``'s, not ``adam``'s L2). The update is :class:`budgetsched.bench.engines.optim.ScheduleFreeSpec`, an optimizer
specification of :func:`budgetsched.bench.engines.train.fit` like any other: the same loop, data order,
augmentation draws, initial weights, evaluation points and divergence rule as every trial of its seed.

The trials of one (task, optimizer, LR, seed) that differ only in budget are one run (:func:`run_key`): the method
does not depend on the budget, so the longest budget's run is a *trunk* (:func:`train_schedule_free`) and each
shorter budget a branch from the trunk's snapshot at that budget's last step, finished as a run of that length is
finished (the budget's last evaluation, then the test split, at the averaged weights). Each budget's result is what
a separate run of that length gives; a budget whose end the trunk never reached (it diverged first) is
``diverged`` with the trunk's record up to then.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from budgetsched.bench.engines.optim import ScheduleFreeSpec, optimizer_for, schedule_free_spec
from budgetsched.bench.engines.train import Batches, Members, Snapshot, TrialResult, _sync, fit, lr_plan, place
from budgetsched.bench.protocol.grid import SCHEDULE_FREE, TrialConfig
from budgetsched.bench.protocol.plan import PlannedTrial, as_planned
from budgetsched.bench.protocol.status import Status

__all__ = ["SCHEDULE_FREE", "ScheduleFreeSpec", "train_schedule_free", "make_optimizer", "run_key"]


def make_optimizer(optimizer: str, params: Any, lr: float, weight_decay: float, warmup_steps: int = 0) -> Any:
    """The ``schedulefree`` package's counterpart of the protocol's optimizer (``sgdm`` -> SGD, ``adam`` and
    ``adamw`` -> AdamW), e.g. for a user's own loop; the harness trains with its :class:`ScheduleFreeSpec`."""
    if optimizer not in ("sgdm", "adam", "adamw"):
        raise ValueError(f"no schedule-free counterpart of optimizer {optimizer!r}; choose from sgdm, adam, adamw")
    return schedule_free_spec(optimizer, warmup_steps).torch_optimizer(params, lr, weight_decay)


def run_key(c: TrialConfig) -> tuple:
    """Trials with equal run keys are one schedule-free run (they differ only in budget)."""
    return (c.task, c.optimizer, c.lr, c.seed, c.schedule_params, c.budget_unit, c.diverge_factor)


def train_schedule_free(configs: Sequence[TrialConfig | PlannedTrial], task: Any, data: Any,
                        device: str | torch.device = "cpu") -> list[tuple[TrialConfig, TrialResult]]:
    """One schedule-free run for ``configs`` (planned trials, or configs planned here; one run key, any budgets);
    ``(config, TrialResult)`` per budget, shortest first."""
    from budgetsched.bench.engines.stacked import SingleModel

    planned = sorted((as_planned(c, task, len(data.train_y)) for c in configs), key=lambda p: p.config.budget)
    if len({run_key(p.config) for p in planned}) != 1 or any(p.config.schedule != SCHEDULE_FREE for p in planned):
        raise ValueError("train_schedule_free takes schedule-free trials of one (task, optimizer, LR, seed)")
    trunk = max(planned, key=lambda p: p.total_steps)
    first = trunk.config
    t0 = time.perf_counter()
    snaps: dict[int, Snapshot] = {}
    results: dict[TrialConfig, TrialResult] = {}
    try:
        torch.manual_seed(first.seed)
        model = SingleModel(task.make_model(), task, device)
        placed = place(data, device, model.flat.dtype)
        spec = optimizer_for(first)

        def batches() -> Batches:
            return Batches([first.seed], placed.train_x, placed.train_y, task.batch_size,
                           getattr(task, "augment", None))
        members = Members([first], [lr_plan(trunk)])
        branch_at = {p.total_steps for p in planned} - {trunk.total_steps}
        fit(model, members, spec, task, placed, batches(), snapshot_at=branch_at,
            on_snapshot=lambda s: snaps.__setitem__(s.step, s))
        _sync(model.flat.device)
        [results[first]] = members.results(0.0)
        for p in planned:
            if p.config == first:
                continue
            if p.total_steps == trunk.total_steps:  # the same run (budgets that round to one length)
                results[p.config] = results[first]
            elif p.total_steps in snaps:
                branch = Members([p.config], [lr_plan(p)])
                fit(model, branch, spec, task, placed, batches(), start=snaps[p.total_steps])
                [results[p.config]] = branch.results(0.0)
            else:  # the trunk stopped (diverged) before this budget's end
                r = results[first]
                curves = {k: [v for v, s in zip(vs, r.curves["step"]) if s <= p.total_steps]
                          for k, vs in r.curves.items()}
                results[p.config] = TrialResult(Status.DIVERGED, None, None, None, None, curves, r.steps, 0.0)
        _sync(model.flat.device)
        error = None
    except Exception as e:  # the run failed: every budget it serves failed with it
        error = f"{type(e).__name__}: {e}"
    wall = (time.perf_counter() - t0) / len(planned)
    out = []
    for p in planned:
        r = results.get(p.config)
        if error is not None or r is None:
            out.append((p.config, TrialResult.failed(error or "the run ended early", steps=0, wall_time=wall)))
        else:
            out.append((p.config, TrialResult(r.status, r.val_loss, r.val_metric, r.test_loss, r.test_metric,
                                               {k: list(v) for k, v in r.curves.items()}, r.steps, wall, r.error)))
    return out
