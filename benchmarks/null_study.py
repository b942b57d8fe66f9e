"""The full-CLI null study: does ``budgetsched run`` + ``budgetsched report`` rank schedules fairly when no schedule
is better than another? And does it find one that is?

    python benchmarks/null_study.py                    # null and planted, 13 tasks x 2 optimizers x 6 budgets
    python benchmarks/null_study.py --tasks 16 --out /tmp/null --workers 2 --only null

Each "task" is a ``@trainable`` (``null00`` ... / ``planted00`` ... in this file, named to the CLI by reference)
that trains nothing: a trial's metrics are drawn from the same distribution for every schedule and LR, with the
structure real runs have (docs/protocol.md, "Fairness")::

    val  = 50 + a[seed] + u[run] + e_val[run]          a ~ N(0, 0.5^2): shared by every run of the seed (paired)
    test = 50 + a[seed] + u[run] + e_test[run]         u ~ N(0, 1): the trained model's quality, in both splits
                                                       e ~ N(0, 0.5^2): each split's own sampling noise

Draws are keyed by the trial's config, so a rerun gives the same numbers and the store resumes. Budgets map to
1-20 evaluations, so plateau's patiences (5, 10) cannot trigger at the low budgets and its trials there are
constant's runs (stand-ins), as in the suite. The *planted* variant makes every ``rex`` run better by one
seed-standard-deviation (sqrt(0.5^2 + 1 + 0.5^2) = 1.22).

It prints twice - as ``budgetsched report --format json`` ranks the trials (Table 1 and its ``statistics``), and as
``analysis.fair`` / ``analysis.aggregate`` rank them when called directly (they agree when the report is wired to
them) - each Table-1 row's Top-1 and Top-3 share (overall) with its fair share, their sums, how often the
subject (rex) is "clearly better" / "clearly worse" than the best other schedule (nominal 2.5 % each under the
null), and P(rex better than each other row) per budget regime. A fair protocol gives a row 1/k and 3/k of each
setting where it is present among k rows, Top-1 shares summing to 1. About 13 x 2 x 6 x 81 = 12 600 trials.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np

from budgetsched.bench import trainable

SA, SU, SE = 0.5, 1.0, 0.5
SEED_SD = math.sqrt(SA ** 2 + SU ** 2 + SE ** 2)
SCHEDULES = "constant,step,plateau,cosine,onecycle,linear,exp,rex"
LRS = "0.01,0.03,0.1"
MAX_TASKS = 20


def _normal(*key: object) -> float:
    """A standard normal keyed by ``key`` (the same key, the same draw, in every process)."""
    words = [zlib.crc32(repr(k).encode()) for k in key]
    return float(np.random.default_rng(words).standard_normal())


def _make(i: int, planted: str | None):
    kind = "planted" if planted else "null"

    def fn(trial):
        c = trial.config
        setting = (kind, i, c.optimizer, float(c.budget))
        run = (*setting, c.schedule, tuple(c.schedule_params), float(c.lr), int(c.seed))
        a = SA * _normal(*setting, int(c.seed), "seed")
        u = SU * _normal(*run, "run") - (SEED_SD if c.schedule == planted else 0.0)
        return {"val_metric": 50.0 + a + u + SE * _normal(*run, "val"),
                "test_metric": 50.0 + a + u + SE * _normal(*run, "test")}

    fn.__name__ = f"{kind}{i:02d}"
    return trainable(fn, max_epochs=20, steps_per_epoch=10, metric_name="score")


for _i in range(MAX_TASKS):
    globals()[f"null{_i:02d}"] = _make(_i, None)
    globals()[f"planted{_i:02d}"] = _make(_i, "rex")


def _cli(*args: str) -> str:
    exe = Path(sys.executable).with_name("budgetsched")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "budgetsched.cli"]
    out = subprocess.run([*cmd, *args], check=True, capture_output=True, text=True)
    return out.stdout


def summarise(report: dict) -> dict:
    """Top-1 / Top-3 shares (overall) per Table-1 row, their sums, and the clearly better / worse rates of the
    subject against the best other schedule, from the report's JSON."""
    table1 = report["table1"]
    top1 = {k: v["overall"]["top1"] for k, v in table1.items()}
    top3 = {k: v["overall"]["top3"] for k, v in table1.items()}
    counted = [s for s in report["settings"] if s.get("counted_in_table1", True)]
    # the fair verdict (Table 1's ranking, next-seed cross-fitted) where the report has one, else the paper's draws'
    verdicts = [((s.get("table1_ranking") or {}).get("vs_best_other") or {}).get("clear") if s.get("table1_ranking")
                else (s.get("vs_best_other") or {}).get("clear") for s in counted]
    n = len(counted)
    extra: dict = {}
    fr = [s["table1_ranking"] for s in counted if s.get("table1_ranking")]
    if fr and len(fr) == n:  # the fair share of each row: 1/k (k/3 for Top-3) in each setting where it is present
        present = np.array([[fr_i["rows"][x]["mean"] is not None for x in table1] for fr_i in fr])
        k = present.sum(axis=1, keepdims=True)
        extra["fair_top1"] = dict(zip(table1, (present / k).mean(axis=0).tolist()))
        extra["fair_top3"] = dict(zip(table1, (present * np.minimum(3, k) / k).mean(axis=0).tolist()))
        extra["top1_ci"] = {x: v["overall"]["top1_ci"] for x, v in table1.items()}
        extra["evaluation"] = sorted({f["evaluation"] for f in fr})
    st = report.get("statistics") or {}
    if st.get("p_improvement"):
        by_row = st["p_improvement"]["by_row"]
        extra["p_improvement"] = {o: {g: v[g]["p"] for g in v} for o, v in by_row.items()}
        extra["p_improvement_ci"] = {o: {g: [v[g]["lo"], v[g]["hi"]] for g in v} for o, v in by_row.items()}
        extra["present"] = {x: v["overall"].get("n_present") for x, v in table1.items()}
        extra["candidates"] = {x: v["overall"].get("n_candidates") or 0 for x, v in table1.items()}
    return {
        **extra,
        "settings": n, "rows": len(table1),
        "top1": top1, "top3": top3,
        "top1_sum": sum(v or 0.0 for v in top1.values()), "top3_sum": sum(v or 0.0 for v in top3.values()),
        "clearly_better": verdicts.count("better") / n if n else None,
        "clearly_worse": verdicts.count("worse") / n if n else None,
        "protocol": report.get("protocol", {}),
    }


def fair_view(store: Path, subject: str = "rex", low_limit: float = 25.0) -> dict:
    """The same trials through ``budgetsched.bench.analysis.fair`` and ``aggregate`` directly (whatever the report
    does): plateau its own row with its stand-ins dropped, each row's score cross-fitted over seeds, finishes
    credited once (:func:`fair.rank_setting`, :func:`aggregate.table1`), the subject against the best other
    schedule with next-seed cross-fitting, and P(improvement) per budget regime."""
    from budgetsched.bench.analysis import aggregate, fair
    from budgetsched.bench.protocol import selection
    from budgetsched.bench.storage.store import Store

    order = SCHEDULES.split(",")
    groups: dict[tuple, list[dict]] = {}
    for r in Store(store).rows():
        groups.setdefault((r["task"], r["optimizer"], float(r["budget"])), []).append(r)
    rankings, tasks, budgets = [], [], []
    for (task, opt, budget), rs in sorted(groups.items()):
        trials, stand = [], {}
        for r in rs:
            pat = (r["schedule_params"] or {}).get("patience")
            key = (r["label"], float(r["lr"]), pat)
            trials.append((key, int(r["seed"]), *selection.trial_values(r["status"], r["val_metric"],
                                                                          r["test_metric"])))
            stand[key] = r.get("stand_in")
        c = selection.candidates(trials, order=lambda k: (order.index(k[0]), k[1], -1 if k[2] is None else k[2]))
        rankings.append(fair.rank_setting(c.keys, c.val, c.test, [stand[k] for k in c.keys], order,
                                          subject=subject))
        tasks.append(task)
        budgets.append(budget)
    n = len(rankings)
    t1 = aggregate.table1(rankings, tasks, budgets, low_limit=low_limit, resamples=500)
    means = np.array([r.means for r in rankings])
    present = ~np.isnan(means)
    k = present.sum(axis=1, keepdims=True)
    verdicts = [None if r.vs_best_other is None else r.vs_best_other[3] for r in rankings]
    seeds = max(r.scores.shape[1] for r in rankings)
    scores = np.full((n, len(order), seeds), np.nan)
    for i, r in enumerate(rankings):
        scores[i, :, : r.scores.shape[1]] = r.scores
    poi = aggregate.improvement_by_regime(scores, order, subject, tasks, budgets, low_limit=low_limit,
                                          resamples=500)
    return {
        "settings": n, "rows": len(order), "mode": sorted({r.mode for r in rankings}),
        "top1": {x: t1[x]["overall"]["top1"] for x in order}, "top3": {x: t1[x]["overall"]["top3"] for x in order},
        "top1_ci": {x: t1[x]["overall"]["top1_ci"] for x in order},
        "fair_top1": dict(zip(order, (present / k).mean(axis=0).tolist())),
        "fair_top3": dict(zip(order, (present * np.minimum(3, k) / k).mean(axis=0).tolist())),
        "top1_sum": sum(t1[x]["overall"]["top1"] for x in order),
        "top3_sum": sum(t1[x]["overall"]["top3"] for x in order),
        "present": {x: t1[x]["overall"]["n_present"] for x in order},
        "candidates": {x: t1[x]["overall"]["n_candidates"] for x in order},
        "clearly_better": verdicts.count("better") / n, "clearly_worse": verdicts.count("worse") / n,
        "p_improvement": {o: {g: v[g]["p"] for g in v} for o, v in poi.items()},
        "p_improvement_ci": {o: {g: [v[g]["lo"], v[g]["hi"]] for g in v} for o, v in poi.items()},
    }


def study(kind: str, tasks: int, out: Path, workers: str, seeds: int) -> dict:
    here = Path(__file__).resolve()
    store = out / f"{kind}.db"
    refs = ",".join(f"{here}:{kind}{i:02d}" for i in range(tasks))
    _cli("run", "--task", refs, "--schedules", SCHEDULES, "--lrs", LRS, "--seeds", str(seeds),
         "--store", str(store), "--workers", workers, "--quiet")
    report = json.loads(_cli("report", str(store), "--format", "json", "--resamples", "200"))
    return {"report": summarise(report), "fair": fair_view(store)}


def _print(kind: str, s: dict) -> None:
    print(f"\n{kind}: {s['settings']} settings, {s['rows']} Table-1 rows (fair share: Top-1 "
          f"{1 / s['rows']:.3f}, Top-3 {min(3, s['rows']) / s['rows']:.3f} per row present everywhere)")
    for label in s["top1"]:
        t1, t3 = s["top1"][label], s["top3"][label]
        line = f"  {label:<12} Top-1 {'—' if t1 is None else f'{t1:.3f}'}   Top-3 {'—' if t3 is None else f'{t3:.3f}'}"
        if "fair_top1" in s:  # the share a fair protocol gives a row present where it is (k rows present: 1/k)
            ci = s["top1_ci"][label]
            line += (f"   (Top-1 interval {'—' if ci is None else f'[{ci[0]:.3f}, {ci[1]:.3f}]'}; fair shares "
                     f"{s['fair_top1'][label]:.3f} / {s['fair_top3'][label]:.3f})")
        print(line)
    print(f"  sum of Top-1 shares {s['top1_sum']:.3f}, of Top-3 shares {s['top3_sum']:.3f}")
    print(f"  rex vs best other: clearly better {100 * s['clearly_better']:.1f} %, clearly worse "
          f"{100 * s['clearly_worse']:.1f} % (nominal 2.5 % each under the null)")
    if "p_improvement" in s:
        print("  rows present in (settings): " + ", ".join(f"{k} {v}" for k, v in s["present"].items()))
        print("  candidates per row (median): " + ", ".join(f"{k} {v:g}" for k, v in s["candidates"].items()))
        for other, cells in s["p_improvement"].items():
            ci = s["p_improvement_ci"][other]
            print(f"  P(rex better than {other:<9}) " + "   ".join(
                f"{g} {'—' if p is None else f'{p:.2f} [{ci[g][0]:.2f}, {ci[g][1]:.2f}]'}" for g, p in cells.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=13, help=f"trainable tasks (x 2 optimizers x 6 budgets; <= {MAX_TASKS})")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("null-study-out"))
    p.add_argument("--workers", default="auto")
    p.add_argument("--only", choices=("null", "planted"), default=None)
    args = p.parse_args(argv)
    if not 1 <= args.tasks <= MAX_TASKS:
        p.error(f"--tasks must be in 1..{MAX_TASKS}, got {args.tasks}")
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = {}
    for kind in ("null", "planted"):
        if args.only in (None, kind):
            results[kind] = study(kind, args.tasks, args.out, args.workers, args.seeds)
            _print(f"{kind}, as `budgetsched report` ranks it", results[kind]["report"])
            _print(f"{kind}, through analysis.fair / analysis.aggregate", results[kind]["fair"])
    (args.out / "null_study.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
