"""Throughput of the training engines: a plain PyTorch loop, the sequential engine and the batched engine.

Measured side by side in one process (same torch thread count, a discarded warm-up, engines' repeats interleaved,
medians), per task:

* model-steps per second (one optimizer step of one trial = one model-step, evaluation included) of
  - ``plain``: a user's own loop, one model at a time (``DataLoader``, ``torch.optim``, ``BudgetScheduler``,
    evaluation on the validation split every epoch and on the test split at the end, like the engines);
  - ``sequential``: ``train_trial`` (the sequential engine);
  - ``batched``: ``train_group`` at K = 8, 32, 128 (model build and data placement included) with the paper
    protocol's member mix: K members of one (task, optimizer, budget) group, the paper's schedules x LRs, with
    3 seeds whose members are contiguous (members of a seed share their input batches);
* the ratio to the sequential engine and the share of the FLOP limit: training FLOPs per model-step (forward +
  backward, counted by ``torch.utils.flop_counter``) against this machine's fp32 matmul rate, measured in the same
  run with a large ``torch.matmul``;
* the share of each engine's time spent evaluating.

``--workers-threads`` also measures one 2-thread batched engine against two 1-thread engines in two processes
running at once (aggregate model-steps/s), the choice the runner's ``--workers`` makes on a 2-core machine.

Usage: ``python benchmarks/engines.py [--quick] [--threads 2] [--tasks mnist1d-mlp,mnist1d-cnn,...] [--ks 8,32,128]
[--repeats N] [--workers-threads] [--compare-stacking] [--clock wall|cpu] [--device cpu|cuda]``.
The last line of ``--quick`` is ``batched/sequential speedup: X.XX`` (mnist1d-mlp, K = 32, paper member mix).
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils.data import DataLoader, TensorDataset

from budgetsched.bench.engines import batched, stacked, train
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.engines.optim import get_optimizer
from budgetsched.bench.tasks import get_task

# The paper protocol's group members (presets.py "paper"): 8 schedules, plateau with two patiences, 5 LRs each.
PAPER_SCHEDULES = [("rex", ()), ("linear", ()), ("cosine", ()), ("step", ()), ("plateau", (("patience", 5),)),
                   ("plateau", (("patience", 10),)), ("onecycle", ()), ("exp", ()), ("constant", ())]
PAPER_LRS = {"sgdm": [0.01, 0.03, 0.1, 0.3, 1.0], "adam": [0.001, 0.003, 0.01, 0.03, 0.1]}
SEEDS = 3


@dataclass
class Setting:
    """One task's benchmark: its optimizer and LRs, budget (percent) per mode, engines' K, trials per repeat."""

    task: str
    optimizer: str
    lrs: list[float]
    budget: dict[str, float]  # "quick" / "full" -> budget percent
    ks: list[int]
    n_seq: dict[str, int] = field(default_factory=lambda: {"quick": 3, "full": 6})


SETTINGS = {
    # whole epochs, so that evaluation (every epoch, and the test split at the end) weighs as in a real study:
    # mnist1d-mlp 5 % = 3 epochs of 64 steps (quick), 10 % = 6 epochs (full)
    "mnist1d-mlp": Setting("mnist1d-mlp", "adam", PAPER_LRS["adam"], {"quick": 5.0, "full": 10.0}, [8, 32, 128]),
    "mnist1d-cnn": Setting("mnist1d-cnn", "adam", PAPER_LRS["adam"], {"quick": 5.0, "full": 10.0}, [8, 32, 128],
                           {"quick": 2, "full": 3}),
    # 25 % = 1 epoch of 95 steps
    "shakespeare-char": Setting("shakespeare-char", "adam", [0.001, 0.003, 0.01], {"quick": 25.0, "full": 25.0},
                                [8, 32], {"quick": 2, "full": 3}),
    # 5 % = 5 epochs of 15 steps
    "digits-vae": Setting("digits-vae", "adam", PAPER_LRS["adam"], {"quick": 5.0, "full": 5.0}, [8, 32, 128]),
}


#: The benchmark's clock: wall time (default), or with ``--clock cpu`` this process's CPU time, which on a shared
#: machine with 1 torch thread approximates the wall time of a quiet one (time the others' processes take from
#: this one's core is not counted; their effect on its caches is).
_CLOCK = {"clock": time.perf_counter}


def clock() -> float:
    return _CLOCK["clock"]()


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
        t = clock()
        for _ in range(4):
            a @ b
        sync(device)
        times.append((clock() - t) / 4)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def flops_per_model_step(task, data) -> float:
    """Forward + backward FLOPs of one training step of one model (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = stacked.SingleModel(task.make_model(), task, "cpu")
    bs = task.batch_size
    x, y = data.train_x[:bs], data.train_y[:bs]
    if getattr(task, "augment", None) is not None:
        x = task.augment(x, torch.Generator().manual_seed(0))
    x, y = x.unsqueeze(0), y.unsqueeze(0)
    with FlopCounterMode(display=False) as counter:
        model.loss_and_grad(x.to(model.flat.dtype) if x.is_floating_point() else x, y)
    return float(counter.get_total_flops())


def paper_members(setting: Setting, k: int, budget: float) -> list[TrialConfig]:
    """k members of one group: 3 seeds in contiguous blocks, the paper's schedules x LRs cycling in each block."""
    grid = [(s, p, lr) for lr in setting.lrs for s, p in PAPER_SCHEDULES]
    seeds = [min(SEEDS - 1, i * SEEDS // k) for i in range(k)]
    return [TrialConfig(setting.task, s, setting.optimizer, budget, lr, seed, p)
            for seed, (s, p, lr) in zip(seeds, (grid[i % len(grid)] for i in range(k)))]


class EvalTimer:
    """Accumulates the time spent in the containers' ``evaluate`` (patched on the classes)."""

    def __init__(self, device: str) -> None:
        self.device, self.total = device, 0.0
        self.orig = {cls: cls.evaluate for cls in (stacked.SingleModel, stacked.StackedModel)}

    def __enter__(self) -> "EvalTimer":
        for cls, orig in self.orig.items():
            def timed(obj, *args, _orig=orig, **kwargs):
                t = clock()
                out = _orig(obj, *args, **kwargs)
                sync(self.device)
                self.total += clock() - t
                return out
            cls.evaluate = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc) -> None:
        for cls, orig in self.orig.items():
            cls.evaluate = orig  # type: ignore[method-assign]


def run_plain(task, data, cfgs, device) -> tuple[float, float]:
    """A user's loop: DataLoader, torch.optim, BudgetScheduler, one model at a time; eval every epoch."""
    from budgetsched.torch import BudgetScheduler

    ev = 0.0
    steps = 0
    t0 = clock()
    for c in cfgs:
        torch.manual_seed(c.seed)
        model = task.make_model().to(device)
        opt = get_optimizer(c.optimizer).torch_optimizer(model.parameters(), lr=c.lr,
                                                         weight_decay=getattr(task, "weight_decay", 0.0))
        spe = math.ceil(len(data.train_y) / task.batch_size)
        total = c.total_steps(task.max_epochs, spe)
        sched = BudgetScheduler(opt, c.schedule if c.schedule != "plateau" else "constant", total_steps=total)
        loader = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=task.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(c.seed))
        augment, aug_gen = getattr(task, "augment", None), torch.Generator().manual_seed(c.seed + 1)
        done = 0
        while done < total:
            model.train()
            for xb, yb in loader:
                xb, yb = xb.to(device), yb.to(device)
                if augment is not None:
                    xb = augment(xb, aug_gen)
                loss = task.loss(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                done += 1
                if done == total:
                    break
            t = clock()
            model.eval()
            splits = [(data.val_x, data.val_y)] + ([(data.test_x, data.test_y)] if done == total else [])
            with torch.no_grad():
                for x, y in splits:
                    for s in range(0, len(y), train.EVAL_BATCH):
                        xb, yb = x[s:s + train.EVAL_BATCH].to(device), y[s:s + train.EVAL_BATCH].to(device)
                        out = model(xb)
                        float(task.loss(out, yb)), float(task.metric(out, yb).sum())
            ev += clock() - t
        steps += total
    sync(device)
    wall = clock() - t0
    return steps / wall, ev / wall


def run_sequential(task, data, cfgs, device) -> tuple[float, float]:
    placed = train.place(data, device, torch.get_default_dtype())
    with EvalTimer(device) as ev:
        t = clock()
        results = [train.train_trial(c, task, data, device, placed=placed) for c in cfgs]
        sync(device)
        wall = clock() - t
    assert all(r.status != "failed" for r in results), [r.error for r in results]
    return sum(r.steps for r in results) / wall, ev.total / wall


def run_batched(task, data, cfgs, device, stacking="auto") -> tuple[float, float]:
    with EvalTimer(device) as ev:
        t = clock()
        results = [r for _, r in batched.train_group(cfgs, task, data, device, chunk_size=len(cfgs),
                                                     stacking=stacking)]
        sync(device)
        wall = clock() - t
    assert all(r.status != "failed" for r in results), [r.error for r in results]
    return sum(r.steps for r in results) / wall, ev.total / wall


def interleaved(fns: dict[str, Callable[[], tuple[float, float]]], repeats: int) -> dict[str, tuple[float, float]]:
    """Warm each up once, then run the repeats round-robin; medians of (model-steps/s, eval share)."""
    for fn in fns.values():
        fn()
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            runs[name].append(fn())
    return {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
            for name, rs in runs.items()}


def bench_task(setting: Setting, mode: str, ks: list[int], repeats: int, device: str, gflops: float,
               stacking: bool) -> dict[tuple[str, int], tuple[float, float]]:
    task = get_task(setting.task)
    data = task.load(None, None)
    budget = setting.budget[mode]
    flops = flops_per_model_step(task, data)
    limit = gflops * 1e9 / flops
    seq_cfgs = paper_members(setting, setting.n_seq[mode], budget)
    fns: dict[str, Callable[[], tuple[float, float]]] = {
        "plain": lambda: run_plain(task, data, seq_cfgs, device),
        "sequential": lambda: run_sequential(task, data, seq_cfgs, device),
    }
    for k in ks:
        fns[f"batched {k}"] = (lambda k=k: run_batched(task, data, paper_members(setting, k, budget), device))
        if stacking:
            fns[f"batched-vmap {k}"] = (lambda k=k: run_batched(task, data, paper_members(setting, k, budget), device,
                                                                "vmap"))
    steps = seq_cfgs[0].total_steps(task.max_epochs, math.ceil(len(data.train_y) / task.batch_size))
    print(f"\n{setting.task}: {setting.optimizer}, budget {budget:g}% ({steps} steps), paper member mix "
          f"({SEEDS} seeds), {flops / 1e6:.1f} MFLOP per model-step, FLOP limit {limit:,.0f} model-steps/s",
          flush=True)
    res = interleaved(fns, repeats)
    seq = res["sequential"][0]
    print(f"{'engine':<14}{'K':>5}{'model-steps/s':>15}{'vs seq':>9}{'of FLOP limit':>15}{'eval share':>12}")
    out = {}
    for name, (rate, ev) in res.items():
        engine, _, k = name.partition(" ")
        out[(engine, int(k) if k else 1)] = (rate, ev)
        print(f"{engine:<14}{k or '1':>5}{rate:>15,.0f}{rate / seq:>8.2f}x{rate / limit:>14.1%}{ev:>12.1%}",
              flush=True)
    return out


# ------------------------------------------------------------------------------------------ workers x threads
def _worker(args: tuple[str, int, float, int, int, "mp.synchronize.Barrier"]) -> tuple[int, float, float]:
    name, k, budget, repeats, threads, barrier = args
    torch.set_num_threads(threads)
    setting = SETTINGS[name]
    task = get_task(name)
    data = task.load(None, None)
    cfgs = paper_members(setting, k, budget)
    run_batched(task, data, cfgs, "cpu")  # warm-up
    barrier.wait()
    t0 = time.perf_counter()
    steps = 0
    for _ in range(repeats):
        steps += sum(r.steps for _, r in batched.train_group(cfgs, task, data, "cpu", chunk_size=k))
    return steps, t0, time.perf_counter()


def workers_threads(name: str, k: int, budget: float, repeats: int) -> None:
    """Aggregate model-steps/s of W processes x T threads each (W x T = 2), batched engine, K members each."""
    print(f"\nworkers x threads ({name}, batched K={k}, budget {budget:g}%, {repeats} runs per worker, "
          f"aggregate model-steps/s over the overlapped runs):")
    ctx = mp.get_context("spawn")
    results = {}
    for workers, threads in ((1, 1), (1, 2), (2, 1)):
        barrier = ctx.Manager().Barrier(workers)
        with ctx.Pool(workers) as pool:
            outs = pool.map(_worker, [(name, k, budget, repeats, threads, barrier)] * workers)
        wall = max(o[2] for o in outs) - min(o[1] for o in outs)
        results[(workers, threads)] = sum(o[0] for o in outs) / wall
        print(f"  {workers} worker(s) x {threads} thread(s): {results[(workers, threads)]:>9,.0f} model-steps/s",
              flush=True)
    print(f"  2 x 1 vs 1 x 2: {results[(2, 1)] / results[(1, 2)]:.2f}x")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (a few minutes on 2 CPU cores)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (median)")
    ap.add_argument("--ks", default=None, help="batched group sizes (default per task: 8,32,128 or 4,8)")
    ap.add_argument("--tasks", default=None, help="comma-separated (default: mnist1d-cnn,shakespeare-char,"
                                                  "mnist1d-mlp; full runs add digits-vae)")
    ap.add_argument("--compare-stacking", action="store_true", help="also time the vmap path")
    ap.add_argument("--workers-threads", action="store_true", help="also time 2 processes x 1 thread")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: time by this process's CPU time (with --threads 1, robust on a shared machine)")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but CUDA is not available")
    torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        if args.threads != 1:
            raise SystemExit("--clock cpu needs --threads 1 (CPU time sums the threads)")
        _CLOCK["clock"] = time.process_time
    mode = "quick" if args.quick else "full"
    repeats = args.repeats or (3 if args.quick else 5)
    names = args.tasks.split(",") if args.tasks else (
        ["mnist1d-mlp", "mnist1d-cnn", "shakespeare-char"] + ([] if args.quick else ["digits-vae"]))
    if "mnist1d-mlp" in names:  # the headline line needs it: run it last
        names = [n for n in names if n != "mnist1d-mlp"] + ["mnist1d-mlp"]
    gflops = matmul_gflops(args.device, 1024 if args.quick else 2048, repeats)
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, {repeats} repeats "
          f"(interleaved, median), {args.clock} clock; fp32 matmul {gflops:.1f} GFLOP/s", flush=True)
    results = {}
    for name in names:
        setting = SETTINGS[name]
        ks = [int(k) for k in args.ks.split(",")] if args.ks else list(setting.ks)
        if name == "mnist1d-mlp" and 32 not in ks:
            ks.append(32)
        results[name] = bench_task(setting, mode, ks, repeats, args.device, gflops, args.compare_stacking)
    if args.workers_threads:
        workers_threads("mnist1d-mlp", 32, SETTINGS["mnist1d-mlp"].budget[mode], repeats)
    if "mnist1d-mlp" in results:
        r = results["mnist1d-mlp"]
        print(f"batched/sequential speedup: {r[('batched', 32)][0] / r[('sequential', 1)][0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
