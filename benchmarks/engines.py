"""Throughput of the training engines on mnist1d-mlp: sequential vs batched (K stacked models).

Measures, side by side in one process (same torch thread count, a discarded warm-up, several repeats, median):

* model-steps per second (one optimizer step of one trial = one model-step) of ``train_trial`` and of
  ``train_group`` at K = 8, 32, 128, and the ratio batched / sequential;
* a FLOP-limit estimate: forward + backward FLOPs of the MLP per model-step (batch x 2 x weights for the forward,
  twice that for the backward minus the first layer's input gradient) against this machine's fp32 matmul GFLOP/s,
  measured in the same run with a large ``torch.matmul``;
* orchestration share: the fraction of an engine's time spent in per-epoch evaluation rather than training.

Usage: ``python benchmarks/engines.py [--quick] [--device cpu|cuda] [--threads 2] [--repeats 3]``.
The last line is ``batched/sequential speedup: X.XX`` (K = 32).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from budgetsched.bench import batched, train
from budgetsched.bench.grid import TrialConfig
from budgetsched.bench.tasks import get_task

TASK = "mnist1d-mlp"
SCHEDULES = ("rex", "linear", "cosine", "step", "onecycle", "exp")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_gflops(device: str, n: int, repeats: int) -> float:
    """fp32 GFLOP/s of an n x n matmul (median of repeats after a warm-up)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        sync(device)
        times.append((time.perf_counter() - t) / 4)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def mlp_flops_per_step(model: torch.nn.Module, batch: int) -> float:
    """Forward + backward FLOPs of one training step of an MLP (Linear layers only; activations are free)."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    fwd = sum(2 * m.in_features * m.out_features for m in linears)
    bwd = 2 * fwd - 2 * linears[0].in_features * linears[0].out_features  # weight grads + input grads (not layer 1)
    return float(batch * (fwd + bwd))


def configs(n: int, budget: float) -> list[TrialConfig]:
    """n trials of one group: mixed schedules, LRs and seeds."""
    return [TrialConfig(TASK, SCHEDULES[k % len(SCHEDULES)], "sgdm", budget, 0.01 * 3 ** (k % 4), k)
            for k in range(n)]


class EvalTimer:
    """Wraps an engine's evaluation function to accumulate the time spent in it."""

    def __init__(self, module, name: str, device: str) -> None:
        self.module, self.name, self.device, self.total = module, name, device, 0.0
        self.orig = getattr(module, name)

    def __enter__(self) -> "EvalTimer":
        def timed(*args, **kwargs):
            t = time.perf_counter()
            out = self.orig(*args, **kwargs)
            sync(self.device)
            self.total += time.perf_counter() - t
            return out
        setattr(self.module, self.name, timed)
        return self

    def __exit__(self, *exc) -> None:
        setattr(self.module, self.name, self.orig)


def run_sequential(task, data, cfgs, device):
    with EvalTimer(train, "evaluate", device) as ev:
        t = time.perf_counter()
        results = [train.train_trial(c, task, data, device) for c in cfgs]
        sync(device)
        wall = time.perf_counter() - t
    assert all(r.status == "done" for r in results), [r.error for r in results]
    return sum(r.steps for r in results) / wall, ev.total / wall


def run_batched(task, data, cfgs, device, stacking="auto"):
    with EvalTimer(batched, "_evaluate", device) as ev:
        t = time.perf_counter()
        results = [r for _, r in batched.train_group(cfgs, task, data, device, chunk_size=len(cfgs),
                                                     stacking=stacking)]
        sync(device)
        wall = time.perf_counter() - t
    assert all(r.status == "done" for r in results), [r.error for r in results]
    return sum(r.steps for r in results) / wall, ev.total / wall


def median_of(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up, discarded
    runs = [fn() for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (under a minute on 2 CPU cores)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (median)")
    ap.add_argument("--ks", default="8,32,128", help="batched group sizes")
    ap.add_argument("--compare-stacking", action="store_true", help="also time the vmap forward")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but CUDA is not available")
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    budget = 1.0 if args.quick else 5.0  # 1 or 5 epochs of 36 steps
    n_seq = 3 if args.quick else 6
    ks = [int(k) for k in args.ks.split(",")]
    if 32 not in ks:
        ks.append(32)

    task = get_task(TASK)
    data = task.load(None, None)
    torch.manual_seed(0)
    flops = mlp_flops_per_step(task.make_model(), task.batch_size)
    gflops = matmul_gflops(args.device, 1024 if args.quick else 2048, repeats)
    limit = gflops * 1e9 / flops  # model-steps/s if every FLOP ran at large-matmul speed

    print(f"{TASK} on {args.device}, torch threads {torch.get_num_threads()}, {repeats} repeats (median), "
          f"budget {budget:g}% ({configs(1, budget)[0].epochs(task.max_epochs)} epochs x 36 steps)")
    print(f"fp32 matmul: {gflops:.1f} GFLOP/s; MLP fwd+bwd: {flops / 1e6:.2f} MFLOP per model-step; "
          f"FLOP limit: {limit:,.0f} model-steps/s")
    seq, seq_eval = median_of(lambda: run_sequential(task, data, configs(n_seq, budget), args.device), repeats)
    rows = [("sequential", 1, seq, seq_eval)]
    for k in ks:
        rate, ev = median_of(lambda: run_batched(task, data, configs(k, budget), args.device), repeats)
        rows.append(("batched", k, rate, ev))
        if args.compare_stacking:
            rate, ev = median_of(lambda: run_batched(task, data, configs(k, budget), args.device, "vmap"), repeats)
            rows.append(("batched-vmap", k, rate, ev))
    print(f"{'engine':<13}{'K':>5}{'model-steps/s':>15}{'vs seq':>9}{'of FLOP limit':>15}{'eval share':>12}")
    for name, k, rate, ev in rows:
        print(f"{name:<13}{k:>5}{rate:>15,.0f}{rate / seq:>8.2f}x{rate / limit:>14.1%}{ev:>12.1%}")
    k32 = next(rate for name, k, rate, _ in rows if name == "batched" and k == 32)
    print(f"batched/sequential speedup: {k32 / seq:.2f}")


if __name__ == "__main__":
    main()
