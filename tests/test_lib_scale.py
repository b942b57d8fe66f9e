"""No adapter keeps a table of steps (issue 10, item 3): building or re-budgeting a schedule for T = 1e8 steps takes
the same memory as for T = 1e4, and the optax schedule compiles to a program whose size does not depend on T.

Memory is measured with tracemalloc (deterministic); times are left to benchmarks/scheduler_overhead.py.
"""
from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
import torch

from budgetsched import Schedule
from budgetsched.torch import BudgetScheduler

os.environ.setdefault("KERAS_BACKEND", "torch")

BIG, HUGE = 10**4, 10**8
CASES = [("rex", {}), ("cosine", {"sampling": "1-100", "warmup_steps": 1000}), ("step", {}),
         ("wsd", {"sampling": "every-0.0000001%", "warmup_fraction": 0.01}), ("onecycle", {}),
         ("linear", {"sampling": "10-10", "min_lr_ratio": 0.1})]


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        result = fn()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("profile,kw", CASES)
def test_torch_scheduler_memory_does_not_grow_with_T(profile, kw):
    def build(total):
        def make():
            opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": 0.1 * (i + 1)}
                                   for i in range(4)], momentum=0.9)
            sched = BudgetScheduler(opt, profile, total_steps=total, **kw)
            sched.set_total_steps(2 * total)
            return sched
        return make

    build(BIG)()  # imports and caches warmed outside the measurement
    small, _ = _peak_bytes(build(BIG))
    large, sched = _peak_bytes(build(HUGE))
    assert large < 1_000_000 and large < small + 20_000, (small, large)
    # and it schedules: the LR half-way through the new budget is the closed form's
    sched.step(HUGE)
    ref = Schedule(profile, HUGE, 0.1, **kw).with_budget(2 * HUGE, at_step=0)
    assert sched.get_last_lr()[0] == pytest.approx(ref(HUGE), rel=1e-12)


@pytest.mark.parametrize("profile,kw", CASES[:4])
def test_optax_schedule_memory_and_program_size_do_not_grow_with_T(profile, kw):
    jax = pytest.importorskip("jax")
    pytest.importorskip("optax")
    import jax.numpy as jnp

    from budgetsched.optax import schedule

    sizes, peaks = [], []
    for total in (BIG, 10**6, HUGE):
        peak, fn = _peak_bytes(lambda: schedule(profile, total, 0.1, budget_changes=[(total // 2, 2 * total)], **kw))
        peaks.append(peak)
        sizes.append(len(jax.jit(fn).lower(jnp.int32(0)).as_text()))
        ref = Schedule(profile, total, 0.1, **kw).with_budget(2 * total, at_step=total // 2, strategy="continue")
        t = total // 2 + total // 3
        assert float(fn(t)) == pytest.approx(ref(t), rel=1e-5)
    assert max(peaks) < 1_000_000
    # only the digits of T's literals differ (a table would add 4 bytes per step: 400 MB at T = 1e8)
    assert max(sizes) - min(sizes) < 200 and max(sizes) < 60_000, sizes


def test_keras_schedule_memory_does_not_grow_with_T():
    pytest.importorskip("keras")
    from budgetsched.keras import BudgetSchedule

    def build(total):
        def make():
            s = BudgetSchedule("rex", total, 0.1, sampling="1-100", warmup_steps=100)
            s.set_total_steps(2 * total, at_step=total // 2)
            return s
        return make

    build(BIG)()
    small, _ = _peak_bytes(build(BIG))
    large, sched = _peak_bytes(build(HUGE))
    assert large < 1_000_000 and large < small + 20_000, (small, large)
    ref = Schedule("rex", HUGE, 0.1, sampling="1-100", warmup_steps=100).with_budget(2 * HUGE, at_step=HUGE // 2)
    out = sched(np.int64(HUGE))
    out = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)  # a torch tensor on torch
    assert float(out) == pytest.approx(ref(HUGE), rel=1e-5)
