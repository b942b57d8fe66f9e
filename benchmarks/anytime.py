"""Anytime branching against separate runs: compute saved (model-steps, wall time) and the quality difference.

Trains one WSD grid twice, side by side in one process (WSD with a 20 % linear cooldown and a warmup fixed in steps,
mnist1d-mlp, SGDM and Adam, the six paper budgets, three LRs per optimizer, three seeds):

* separately: every (budget, LR, seed) its own run (the batched engine);
* ``--anytime``: one trunk per (LR, seed) and a branch per budget;

then REX on the same grid (not timed) for the quality comparison.

It prints the model-steps each way (counted, and the closed-form count), the wall times, and per budget the paired
per-seed difference of the test metric (LR chosen on validation for each) between branched and separately trained
WSD, and between branched WSD and REX.

Usage: ``python benchmarks/anytime.py [--out DIR] [--seeds 3] [--threads 2]``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from budgetsched.bench.engines import anytime as anytime_mod
from budgetsched.bench.analysis.report import build_report
from budgetsched.bench.execution.runners import run_study
from budgetsched.bench.analysis.stats import mean_interval
from budgetsched.bench.storage.store import Store
from budgetsched.bench.protocol.study import StudySpec
from budgetsched.bench.tasks import get_task
from budgetsched.bench.engines.train import plan_trial, steps_per_epoch

WSD = ["wsd", {"fraction": 0.2, "cooldown": "linear", "warmup_steps": 20}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="directory for the two stores (default: a temporary one)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out or tempfile.mkdtemp())
    spec = StudySpec.from_mapping({
        "tasks": ["mnist1d-mlp"], "schedules": [WSD, "rex"], "optimizers": ["sgdm", "adam"],
        "budgets": [1, 5, 10, 25, 50, 100], "lrs": {"sgdm": [0.1, 0.3, 1.0], "adam": [0.003, 0.01, 0.03]},
        "seeds": args.seeds}, "anytime benchmark")
    configs = spec.configs()
    wsd_configs = [c for c in configs if c.schedule == "wsd"]
    counted = {"separate": 0, "anytime": 0}
    walls = {}
    for mode in ("separate", "anytime"):  # WSD only, timed: the same grid trained both ways
        store_path = out / f"{mode}.db"
        real = anytime_mod.train_anytime

        def counting(chunk, *a, counter=None, **k):  # count the model-steps the anytime engine trains for WSD
            box = [0]
            yield from real(chunk, *a, counter=box, **k)
            if chunk[0].schedule == "wsd":
                counted["anytime"] += box[0]
        anytime_mod.train_anytime = counting
        try:
            with Store(store_path) as store:
                t0 = time.perf_counter()
                run_study(wsd_configs, store, progress=False, anytime=mode == "anytime",
                          checkpoint_dir=out / f"{mode}.anytime")
                walls[mode] = time.perf_counter() - t0
                if mode == "anytime":  # REX beside it for the quality comparison (not timed)
                    run_study([c for c in configs if c.schedule == "rex"], store, progress=False)
                rows = store.rows()
        finally:
            anytime_mod.train_anytime = real
        if mode == "separate":
            counted["separate"] = sum(r["steps"] for r in rows if r["schedule"] == "wsd")
        else:
            anytime_rows = rows
    separate_rows = Store(out / "separate.db", readonly=True).rows()
    task = get_task("mnist1d-mlp")
    data = task.load(None, None)
    n = len(data.train_y)
    trunk = [c for c in configs if c.schedule == "wsd" and (c.optimizer, c.lr, c.seed) == ("sgdm", 0.1, 0)]
    plans = {c: plan_trial(c, task, n) for c in trunk}
    longest = max(plans, key=lambda c: c.budget)
    points = anytime_mod.branch_points(plans, anytime_mod.trunk_plan(longest, plans[longest].total_steps))
    per_trunk = anytime_mod.anytime_model_steps([p.total_steps for p in plans.values()], list(points.values()))
    n_trunks = len({(c.optimizer, c.lr, c.seed) for c in configs if c.schedule == "wsd"})
    print(f"mnist1d-mlp: {n_trunks} WSD trunks, budgets {[c.budget for c in sorted(plans, key=lambda c: c.budget)]}, "
          f"{steps_per_epoch(task, n)} steps per epoch")
    print(f"model-steps of WSD: separate {counted['separate']:,}, anytime {counted['anytime']:,} "
          f"({counted['anytime'] / counted['separate']:.3f} of separate; formula per trunk {per_trunk[0]:,} vs "
          f"{per_trunk[1]:,} = {per_trunk[0] / per_trunk[1]:.3f}; paper budgets in full runs: "
          f"{per_trunk[0] / plans[longest].total_steps:.2f} vs {per_trunk[1] / plans[longest].total_steps:.2f})")
    print(f"wall time of the WSD grid ({len(wsd_configs)} trials, 1 process): separate {walls['separate']:.1f} s, "
          f"anytime {walls['anytime']:.1f} s ({walls['anytime'] / walls['separate']:.2f}x)")
    sep = build_report(separate_rows, resamples=1000)
    any_ = build_report(anytime_rows, resamples=1000)
    print("per budget, paired over seeds (test error %, LR chosen on validation; mean [95 % interval]):")
    print("optimizer  budget  branched WSD - separate WSD     branched WSD - REX")
    for s_any in any_.settings:
        s_sep = next(s for s in sep.settings if (s.task, s.optimizer, s.budget) == (s_any.task, s_any.optimizer,
                                                                                      s_any.budget))
        w_any, w_sep = s_any.results.get("wsd(cooldown=linear,fraction=0.2,warmup_steps=20)"), \
            s_sep.results.get("wsd(cooldown=linear,fraction=0.2,warmup_steps=20)")
        rex = s_any.results.get("rex")

        def seed_values(rows, setting, choice):
            return {r["seed"]: r["test_metric"] for r in rows if (r["task"], r["optimizer"], r["budget"],
                    r["label"], r["lr"]) == (setting.task, setting.optimizer, setting.budget, choice.label, choice.lr)
                    and r["test_metric"] is not None}
        a = seed_values(anytime_rows, s_any, w_any)
        b = seed_values(separate_rows, s_sep, w_sep)
        c = seed_values(anytime_rows, s_any, rex)
        d1 = mean_interval([a[k] - b[k] for k in sorted(set(a) & set(b))])
        d2 = mean_interval([a[k] - c[k] for k in sorted(set(a) & set(c))])
        fmt = lambda d: "n/a" if d is None else f"{d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}]"  # noqa: E731
        print(f"{s_any.optimizer:9s}  {s_any.budget:5g}%  {fmt(d1):30s}  {fmt(d2)}")
    print(f"stores in {out}")


if __name__ == "__main__":
    main()
