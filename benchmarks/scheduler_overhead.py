"""Scheduler overhead: per-step cost against torch's LambdaLR, and construction cost against the run length T.

1. ``BudgetScheduler.step()`` vs ``torch.optim.lr_scheduler.LambdaLR.step()`` with the same REX lambda, driving an
   SGD optimizer with a few parameter groups. No forward/backward and no optimizer step in the timed region, so
   only the scheduler is measured. Blocks of steps of the two schedulers are interleaved (the order alternates
   every repeat) and the median per-step time over many repeats is reported, with their ratio.
2. Construction and re-budgeting at T = 1e4, 1e6, 1e8 for the torch, optax and Keras adapters: median wall time
   over repeats, and the peak memory traced by ``tracemalloc`` in a separate, untimed build (tracemalloc slows
   allocation). Two schedules: REX sampled every step, and cosine with "1-100" sampling and a warmup.
3. The optax schedule's program size against T: the lowered StableHLO text and XLA's compiled text of
   ``jax.jit(schedule)`` for one int32 count (a per-step table would grow it by 4 bytes per step).

    python benchmarks/scheduler_overhead.py [--groups 4] [--repeats 201] [--block 500] [--build-repeats 21]

Run it on an otherwise idle machine and read the ratios (ours / LambdaLR) rather than the absolute times.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import tracemalloc
from typing import Any, Callable

os.environ.setdefault("KERAS_BACKEND", "torch")

import torch  # noqa: E402
from torch.optim.lr_scheduler import LambdaLR  # noqa: E402

from budgetsched import Schedule  # noqa: E402
from budgetsched.torch import BudgetScheduler  # noqa: E402

SIZES = (10**4, 10**6, 10**8)
SCHEDULES = {"rex": {}, "cosine 1-100 +warmup": {"profile": "cosine", "sampling": "1-100", "warmup_steps": 100}}


def _optimizer(groups: int) -> torch.optim.SGD:
    params = [{"params": [torch.zeros(8, requires_grad=True)], "lr": 0.1 * (i + 1)} for i in range(groups)]
    return torch.optim.SGD(params, momentum=0.9)


def _block(sched: Any, n: int) -> float:
    step = sched.step
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


# -- 1. per-step cost -----------------------------------------------------------------------------------------------

def step_cost(groups: int, repeats: int, block: int) -> None:
    # A budget longer than every step taken, so both schedulers compute in-range values the whole time.
    total = repeats * block + block + 1

    def rex(t: int) -> float:
        z = min(t / total, 1.0)
        return 2.0 * (1.0 - z) / (2.0 - z)

    opt_a, opt_b = _optimizer(groups), _optimizer(groups)
    ours = BudgetScheduler(opt_a, "rex", total_steps=total)
    theirs = LambdaLR(opt_b, rex)
    opt_a.step()
    opt_b.step()  # the optimizer has stepped once, as in training (no out-of-order warning)
    _block(ours, block)
    _block(theirs, block)  # warm-up blocks, discarded

    a, b = [], []
    for r in range(repeats):
        if r % 2:
            b.append(_block(theirs, block))
            a.append(_block(ours, block))
        else:
            a.append(_block(ours, block))
            b.append(_block(theirs, block))
    # Same values, so the comparison is like for like.
    assert all(abs(x - y) <= 1e-12 * max(1.0, abs(y)) for x, y in zip(ours.get_last_lr(), theirs.get_last_lr()))
    ma, mb = statistics.median(a) * 1e6, statistics.median(b) * 1e6
    print(f"## per-step cost: SGD with {groups} param groups, {repeats} x {block} steps, interleaved, median")
    print(f"BudgetScheduler.step(): {ma:8.3f} us")
    print(f"LambdaLR.step() (REX):  {mb:8.3f} us")
    print(f"ratio (ours / LambdaLR): {ma / mb:.3f}x  (goal <= 0.5x, acceptable <= 1.0x)")


# -- 2. construction and re-budget against T ----------------------------------------------------------------------

def _measure(build: Callable[[], Any], repeats: int) -> tuple[float, int]:
    """(median seconds, peak traced bytes) of ``build()``."""
    build()  # imports, caches and first-call work outside the measurement
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        build()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    build()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), peak


def _builders(total: int, spec: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    profile = spec.get("profile", "rex")
    kw = {k: v for k, v in spec.items() if k != "profile"}
    out: dict[str, Callable[[], Any]] = {}
    opt = _optimizer(4)

    def torch_build() -> Any:
        return BudgetScheduler(opt, profile, total_steps=total, **kw)

    torch_sched = torch_build()

    def torch_rebudget() -> Any:
        torch_sched.set_total_steps(2 * total)  # at step 0: each call replaces the last decay, nothing accumulates
        return torch_sched

    out["torch BudgetScheduler(...)"] = torch_build
    out["torch set_total_steps(2T)"] = torch_rebudget
    try:
        from budgetsched.optax import schedule
        out["optax schedule(...)"] = lambda: schedule(profile, total, 0.1, **kw)
        out["optax schedule(..., budget_changes)"] = lambda: schedule(profile, total, 0.1,
                                                                      budget_changes=[(total // 2, 2 * total)], **kw)
    except ImportError:
        pass
    try:
        from budgetsched.keras import BudgetSchedule
        out["keras BudgetSchedule(...)"] = lambda: BudgetSchedule(profile, total, 0.1, **kw)
        keras_sched = BudgetSchedule(profile, total, 0.1, **kw)
        base = keras_sched.schedule

        def keras_rebudget() -> Any:
            keras_sched.schedule = base
            keras_sched.set_total_steps(2 * total, at_step=total // 2)
            return keras_sched

        out["keras set_total_steps(2T)"] = keras_rebudget
    except ImportError:
        pass
    return out


def construction(repeats: int) -> None:
    print(f"\n## construction and re-budget: median of {repeats} builds; peak memory traced by tracemalloc")
    for name, spec in SCHEDULES.items():
        rows: dict[str, list[str]] = {}
        for total in SIZES:
            for what, build in _builders(total, spec).items():
                seconds, peak = _measure(build, repeats)
                rows.setdefault(what, []).append(f"{seconds * 1e3:7.3f} ms {peak / 1e3:7.1f} kB")
        print(f"\n{name}")
        print(f"{'':38}" + "".join(f"{'T = 1e' + str(len(str(t)) - 1):>24}" for t in SIZES))
        for what, cells in rows.items():
            print(f"{what:38}" + "".join(f"{c:>24}" for c in cells))
    # what a table of every step would cost (the adapters kept one before): numpy float64 values()
    t0 = time.perf_counter()
    Schedule("rex", 10**6, 0.1).values()
    print(f"\nfor comparison, a float64 table of the steps (Schedule.values() at T = 1e6): "
          f"{(time.perf_counter() - t0) * 1e3:.0f} ms, {8 * 10**6 / 1e6:.0f} MB")


# -- 3. optax program size against T ----------------------------------------------------------------------------

def program_size() -> None:
    try:
        import jax
        import jax.numpy as jnp

        from budgetsched.optax import schedule
    except ImportError:
        print("\n(optax program size: jax is not installed)")
        return
    print(f"\n## optax program size (jax {jax.__version__}): characters of jax.jit(fn).lower(int32) text")
    print(f"{'schedule':44}" + "".join(f"{'T = 1e' + str(len(str(t)) - 1):>22}" for t in SIZES))
    cases = {"rex": ("rex", {}), "cosine 1-100 +warmup": ("cosine", {"sampling": "1-100", "warmup_steps": 100}),
             "rex + 1 budget change": ("rex", {"budget_changes": "half"}),
             "rex + 3 budget changes (one re-warm)": ("rex", {"budget_changes": "three"})}
    for name, (profile, kw) in cases.items():
        cells = []
        for total in SIZES:
            kw2 = dict(kw)
            if kw.get("budget_changes") == "half":
                kw2["budget_changes"] = [(total // 2, 2 * total)]
            elif kw.get("budget_changes") == "three":
                kw2["budget_changes"] = [(total // 4, 2 * total), (total // 2, total), (total, 2 * total, 100)]
            fn = schedule(profile, total, 0.1, **kw2)
            lowered = jax.jit(fn).lower(jnp.int32(0))
            cells.append(f"{len(lowered.as_text()):>8} / {len(lowered.compile().as_text()):>8}")
        print(f"{name:44}" + "".join(f"{c:>22}" for c in cells))
    print("(lowered StableHLO / compiled XLA text; a table would add 4 bytes per step: 400 MB at T = 1e8)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=4, help="parameter groups of the optimizer")
    ap.add_argument("--repeats", type=int, default=201, help="timed blocks per scheduler")
    ap.add_argument("--block", type=int, default=500, help="scheduler steps per timed block")
    ap.add_argument("--build-repeats", type=int, default=21, help="timed builds per adapter and T")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.processor() or platform.machine()}")
    step_cost(args.groups, args.repeats, args.block)
    construction(args.build_repeats)
    program_size()


if __name__ == "__main__":
    main()
