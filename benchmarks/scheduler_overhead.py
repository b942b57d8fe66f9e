"""Per-step cost of BudgetScheduler.step() vs torch's LambdaLR with the same REX lambda.

Both drive an SGD optimizer with a few parameter groups; there is no forward/backward and no optimizer step in
the timed region, so only the scheduler is measured. Blocks of steps of the two schedulers are interleaved (the
order alternates every repeat) and the median per-step time over many repeats is reported.

    python benchmarks/scheduler_overhead.py [--groups 4] [--repeats 201] [--block 500]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.optim.lr_scheduler import LambdaLR

from budgetsched.torch import BudgetScheduler


def _optimizer(groups: int) -> torch.optim.SGD:
    params = [{"params": [torch.zeros(8, requires_grad=True)], "lr": 0.1 * (i + 1)} for i in range(groups)]
    opt = torch.optim.SGD(params, momentum=0.9)
    return opt


def _block(sched, n: int) -> float:
    step = sched.step
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=4, help="parameter groups of the optimizer")
    ap.add_argument("--repeats", type=int, default=201, help="timed blocks per scheduler")
    ap.add_argument("--block", type=int, default=500, help="scheduler steps per timed block")
    args = ap.parse_args()
    torch.set_num_threads(1)

    # A budget longer than every step taken, so both schedulers compute in-range values the whole time.
    total = args.repeats * args.block + args.block + 1

    def rex(t: int) -> float:
        z = min(t / total, 1.0)
        return 2.0 * (1.0 - z) / (2.0 - z)

    opt_a, opt_b = _optimizer(args.groups), _optimizer(args.groups)
    ours = BudgetScheduler(opt_a, "rex", total_steps=total)
    theirs = LambdaLR(opt_b, rex)
    opt_a.step()
    opt_b.step()  # the optimizer has stepped once, as in training (no out-of-order warning)
    _block(ours, args.block)
    _block(theirs, args.block)  # warm-up blocks, discarded

    a, b = [], []
    for r in range(args.repeats):
        if r % 2:
            b.append(_block(theirs, args.block))
            a.append(_block(ours, args.block))
        else:
            a.append(_block(ours, args.block))
            b.append(_block(theirs, args.block))
    # Same values, so the comparison is like for like.
    assert all(abs(x - y) <= 1e-12 * max(1.0, abs(y)) for x, y in zip(ours.get_last_lr(), theirs.get_last_lr()))

    ma, mb = statistics.median(a) * 1e6, statistics.median(b) * 1e6
    print(f"torch {torch.__version__}, SGD with {args.groups} param groups, {args.repeats} x {args.block} steps, median")
    print(f"BudgetScheduler.step(): {ma:8.3f} us")
    print(f"LambdaLR.step() (REX):  {mb:8.3f} us")
    print(f"ratio (ours / LambdaLR): {ma / mb:.3f}x  (goal <= 1.0x)")


if __name__ == "__main__":
    main()
