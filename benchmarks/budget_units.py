"""Budgets as users have them: a time budget under drifting step times, and the continuation strategies.

Public APIs only (``budgetsched.bench.tasks.get_task`` for the data and model, ``budgetsched.torch.BudgetScheduler``
in a plain PyTorch loop, SGD with momentum 0.9, REX, one model at a time; time is simulated, not measured):

(a) **Time budget.** Each step "takes" 1 simulated second times a drift that wanders within +-30 % (a clipped random
    walk, injected through ``clock=``). A run with ``time_budget=T_plan`` seconds trains until ``scheduler.done``;
    we report how far past the deadline it stopped, how close to the floor its last LR was, and its test metric
    against a step-budgeted run that knew the exact number of steps the time allowed (paired by seed).
(b) **Continuation strategies.** The LR is tuned (on validation, REX) for the *planned* budget T_plan. At 20 % or
    80 % of T_plan the run learns that its budget is T_final = 2 T_plan; it continues by ``continue``, ``rewarm``
    (the default ramp: back to the peak at the next step) or ``extend``; against a run that knew T_final from the
    start (same LR). Reported: test metric minus the run that knew, mean and 95 % t-interval over seeds.

Usage::

    python benchmarks/budget_units.py --quick          # one task, 2 seeds, short runs: about a minute on 2 cores
    python benchmarks/budget_units.py --seeds 10 --tasks mnist1d-mlp,digits-mlp --plan 0.25   # the full evidence
"""
from __future__ import annotations

import argparse
import math
import random
import statistics
import sys

import torch

from budgetsched.bench.tasks import get_task
from budgetsched.torch import BudgetScheduler

STRATEGIES = ("continue", "rewarm", "extend")


def _interval(xs: list[float]) -> str:
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return f"{m:+.2f}"
    t95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}.get(len(xs) - 1, 2.0)
    h = t95 * statistics.stdev(xs) / math.sqrt(len(xs))
    return f"{m:+.2f} [{m - h:+.2f}, {m + h:+.2f}]"


class Run:
    """One model, one seed: ``step()`` trains one batch at the optimizer's current LR."""

    def __init__(self, task, data, seed: int, lr: float) -> None:
        torch.manual_seed(seed)
        self.task, self.data = task, data
        self.model = task.make_model()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9, weight_decay=task.weight_decay)
        self.gen = torch.Generator().manual_seed(seed)
        self.order: list[int] = []

    def step(self) -> None:
        if len(self.order) < self.task.batch_size:
            self.order = torch.randperm(len(self.data.train_x), generator=self.gen).tolist()
        idx, self.order = self.order[:self.task.batch_size], self.order[self.task.batch_size:]
        x, y = self.data.train_x[idx], self.data.train_y[idx]
        self.opt.zero_grad()
        loss = self.task.loss(self.model(x), y)
        loss.backward()
        self.opt.step()

    @torch.no_grad()
    def metric(self, split: str) -> float:
        x, y = getattr(self.data, f"{split}_x"), getattr(self.data, f"{split}_y")
        value = float(self.task.metric(self.model(x), y).float().mean())
        return value if math.isfinite(value) else float("inf")


def train_steps(task, data, seed, lr, total, change=None) -> Run:
    """REX over ``total`` steps; ``change=(at, new_total, strategy)`` re-budgets at step ``at``."""
    run = Run(task, data, seed, lr)
    sched = BudgetScheduler(run.opt, "rex", total_steps=total)
    end = total if change is None else change[1]
    for t in range(end):
        if change is not None and t == change[0]:
            sched.set_total_steps(change[1], strategy=change[2])
        run.step()
        sched.step()
    return run


def time_budget_run(task, data, seed, lr, seconds, rng) -> tuple[Run, int, float, float]:
    """Train under a time budget with drifting step times; (run, steps, stop time / deadline - 1, last LR / peak)."""
    clock = [0.0]
    run = Run(task, data, seed, lr)
    sched = BudgetScheduler(run.opt, "rex", time_budget=seconds, clock=lambda: clock[0])
    drift, steps, last_lr, start = 1.0, 0, lr, None
    while not sched.done:
        last_lr = run.opt.param_groups[0]["lr"]
        drift = min(1.3, max(0.7, drift + rng.uniform(-0.05, 0.05)))  # the injected per-step time drift
        clock[0] += drift
        run.step()
        steps += 1
        if start is None:
            start = clock[0]  # the clock starts at the first step() (the first step is not counted)
        sched.step()
    return run, steps, (clock[0] - start) / seconds - 1.0, last_lr / lr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="mnist1d-mlp,digits-mlp")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--plan", type=float, default=0.25, help="the planned budget as a fraction of the task's 100 %%")
    ap.add_argument("--lrs", default="0.01,0.03,0.1,0.3", help="the grid the planned budget's LR is tuned on")
    ap.add_argument("--quick", action="store_true", help="digits-mlp, 2 seeds, plan 0.1, two LRs: a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.tasks, args.seeds, args.plan, args.lrs = "digits-mlp", 2, 0.1, "0.03,0.1"
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    for name in args.tasks.split(","):
        task = get_task(name)
        data = task.load(None, None)
        per_epoch = math.ceil(len(data.train_x) / task.batch_size)
        plan = max(20, round(args.plan * task.max_epochs * per_epoch))
        # the LR tuned for the planned budget, on validation (mean over seeds)
        lrs = [float(x) for x in args.lrs.split(",")]
        val = {lr: statistics.fmean(train_steps(task, data, s, lr, plan).metric("val") for s in seeds) for lr in lrs}
        lr = min(val, key=lambda k: (val[k], k))
        print(f"\n## {name}: planned budget {plan} steps ({args.plan:.0%} of 100 %), LR {lr:g} "
              f"(validation {task.metric_name}: " + ", ".join(f"{k:g}: {v:.2f}" for k, v in val.items()) + ")")

        # (a) time budget under +-30 % drift vs a step budget of the same length
        rows, diffs = [], []
        for s in seeds:
            timed, steps, over, last = time_budget_run(task, data, s, lr, float(plan), random.Random(1000 + s))
            exact = train_steps(task, data, s, lr, steps)
            rows.append((steps, over, last))
            diffs.append(timed.metric("test") - exact.metric("test"))
        print(f"(a) time budget {plan} simulated s, step time drifting within +-30 %: steps run "
              f"{min(r[0] for r in rows)}-{max(r[0] for r in rows)}; stopped past the deadline by at most "
              f"{100 * max(r[1] for r in rows):.3f} % of it; last step's LR at most {100 * max(r[2] for r in rows):.2f} % "
              f"of the peak (floor 0); test {task.metric_name} minus the step-budgeted run that knew the count: "
              f"{_interval(diffs)}")

        # (b) strategies vs knowing the final budget (2x the plan), news at 20 % and 80 % of the plan
        final = 2 * plan
        knew = {s: train_steps(task, data, s, lr, final).metric("test") for s in seeds}
        for news in (0.2, 0.8):
            at = round(news * plan)
            cells = []
            for strategy in STRATEGIES:
                d = [train_steps(task, data, s, lr, plan, (at, final, strategy)).metric("test") - knew[s] for s in seeds]
                cells.append(f"{strategy} {_interval(d)}")
            print(f"(b) news at {news:.0%} of the plan (step {at}), budget {plan} -> {final}: test {task.metric_name} "
                  f"minus knowing {final} from the start: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
