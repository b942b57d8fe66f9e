"""Estimate suite v2's wall time from a pilot store (docs/benchmarks.md, "Suite v2 pilot").

    budgetsched run --preset suite-pilot --workers 2 --store results/pilot.db
    python benchmarks/suite_estimate.py results/pilot.db [--workers 2] [--refine-factor 1.41] [--eval-seeds 10]

Per task, the pilot gives seconds per model-step (the sum of its trials' ``wall_time``, each trial's share of its
stacked chunk, over the sum of their optimizer steps). The suite's model-steps are counted from its plan
(``--preset suite``: every trial's ``total_steps``, plateau stand-ins not trained), times the refinement factor
(suite v1's refinement added 41 % of trials), plus ``eval-seeds`` runs of each chosen configuration (one per
schedule variant and setting) once the runner has evaluation seeds. Process-seconds over ``workers`` is the wall
time of a perfectly balanced run; a chunk in flight at the end and data loading come on top.
"""
from __future__ import annotations

import argparse
from collections import defaultdict

from budgetsched.bench.protocol.plan import plan_trial
from budgetsched.bench.protocol.presets import get_preset
from budgetsched.bench.protocol.study import StudySpec
from budgetsched.bench.storage.store import Store
from budgetsched.bench.tasks import get_task


def suite_steps(eval_seeds: int) -> tuple[dict[str, int], dict[str, int]]:
    """(coarse-grid model-steps, evaluation-seed model-steps) per task of the suite preset."""
    spec = StudySpec.from_mapping(get_preset("suite"), "suite")
    coarse: dict[str, int] = defaultdict(int)
    chosen: dict[str, int] = defaultdict(int)  # one chosen configuration per (setting, schedule variant)
    seen = set()
    n_train = {"mnist1d-mlp-v2": 19_000, "mnist1d-cnn-v2": 19_000, "digits-mlp-v2": 898, "digits-vae-v2": 898,
               "shakespeare-mlp": 200_000}
    for c in spec.configs():
        p = plan_trial(c, get_task(c.task), n_train[c.task])
        if p.stand_in is None:
            coarse[c.task] += p.total_steps
        variant = (c.task, c.optimizer, c.budget, c.schedule, c.schedule_params)
        if variant not in seen:
            seen.add(variant)
            chosen[c.task] += p.total_steps * eval_seeds
    return dict(coarse), dict(chosen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--refine-factor", type=float, default=1.41)
    ap.add_argument("--eval-seeds", type=int, default=10)
    a = ap.parse_args()
    with Store(a.store, readonly=True) as s:
        rows = s.rows()
    secs: dict[str, float] = defaultdict(float)
    steps: dict[str, int] = defaultdict(int)
    for r in rows:
        secs[r["task"]] += float(r["wall_time"] or 0.0)
        steps[r["task"]] += int(r["steps"] or 0)
    coarse, evals = suite_steps(a.eval_seeds)
    print("| task | pilot trials | pilot model-steps | pilot process-s | ms / model-step | suite model-steps "
          "(tuning + refinement / + eval seeds) | suite process-s (tuning / all) | share |")
    print("|---|---|---|---|---|---|---|---|")
    total_t = total_all = 0.0
    per = {}
    for task in coarse:
        ms = secs[task] / max(steps[task], 1)
        tuning = coarse[task] * a.refine_factor
        per[task] = (ms, tuning, tuning + evals[task])
        total_t += ms * tuning
        total_all += ms * (tuning + evals[task])
    for task, (ms, tuning, everything) in per.items():
        n = sum(r["task"] == task for r in rows)
        print(f"| `{task}` | {n} | {steps[task]:,} | {secs[task]:.0f} | {1e3 * ms:.3f} | {tuning / 1e6:.2f} M / "
              f"{everything / 1e6:.2f} M | {ms * tuning:,.0f} / {ms * everything:,.0f} | "
              f"{ms * everything / total_all:.0%} |")
    print(f"\nall tasks: {total_t:,.0f} process-s with tuning seeds only ({total_t / a.workers / 3600:.2f} h on "
          f"{a.workers} workers); {total_all:,.0f} with {a.eval_seeds} evaluation seeds "
          f"({total_all / a.workers / 3600:.2f} h)")


if __name__ == "__main__":
    main()
