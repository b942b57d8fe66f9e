"""The LR every parameter group uses at each optimizer step, read the way a training loop meets it: the LR is read,
the optimizer steps, then the scheduler (with a metric for a plateau scheduler)."""
from __future__ import annotations

from typing import Any, Sequence


def lr_trace(opt: Any, sched: Any, n: int, metrics: Sequence[float] | None = None) -> list[list[float]]:
    """The LR of every group used by each of ``n`` optimizer steps."""
    out = []
    for i in range(n):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step() if metrics is None else sched.step(metrics[i])
    return out
