"""Cost of one model-step of each suite v2 task (a sizing figure for docs/tasks.md, not a benchmark).

    python benchmarks/suite_step_cost.py [TASKS] [K] [BUDGET]

Trains K members of one seed (the paper's schedules at four LRs, SGDM) of each task together with the batched
engine, one torch thread, evaluation every epoch included, after a two-member warm-up; prints the process's CPU time
per model-step (CPU time, so other processes on a shared machine do not count against it). Defaults: suite v2's
tasks, K = 32, budget 4 % (200 steps, 50 evaluations).
"""
from __future__ import annotations

import os
import sys
import time

import torch

from budgetsched.bench.engines.batched import train_group
from budgetsched.bench.protocol.grid import expand
from budgetsched.bench.protocol.presets import SUITE_V2_TASKS
from budgetsched.bench.tasks import get_task


def main() -> None:
    torch.set_num_threads(1)
    tasks = sys.argv[1].split(",") if len(sys.argv) > 1 else list(SUITE_V2_TASKS)
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    budget = float(sys.argv[3]) if len(sys.argv) > 3 else 4.0
    for name in tasks:
        task = get_task(name)
        data = task.load(None, None)
        configs = expand([name], ["rex", "linear", "cosine", "step", "onecycle", "exp", "constant", "plateau"],
                         ["sgdm"], [budget], [0.01, 0.03, 0.1, 0.3], [0], [5])[:k]
        list(train_group(configs[:2], task, data, chunk_size=k))  # warm-up
        t0 = time.process_time()
        results = list(train_group(configs, task, data, chunk_size=k))
        cpu = time.process_time() - t0
        steps = sum(r.steps for _, r in results)
        print(f"{name}: K={len(configs)}, {steps} model-steps, {1e3 * cpu / steps:.3f} ms CPU per model-step "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
