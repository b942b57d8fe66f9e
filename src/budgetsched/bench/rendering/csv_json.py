"""The report as data: JSON (every number of the report, no NaN or inf) and CSV (one row per setting x schedule)."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict
from typing import Any

from budgetsched.bench.analysis.ablations import Ablations, LrGridView
from budgetsched.bench.analysis.report_model import Difference, Report
from budgetsched.bench.rendering.ablations import ablations_json, lr_grid_json
from budgetsched.bench.analysis.rows import schedule_order
from budgetsched.bench.rendering.headline import counted_text
from budgetsched.bench.rendering.text import evaluation_text, finite, method_text

__all__ = ["to_json", "to_csv", "CSV_COLUMNS"]

CSV_COLUMNS = ("task", "optimizer", "budget", "split", "schedule", "status", "lr", "patience", "val_mean", "mean",
               "std", "n", "rank", "ranked_as", "lo", "hi", "p_top1", "p_top3", "lr_grid", "lr_edge", "stand_in",
               "n_seeds", "tied_within_noise", "reference", "diff_vs_reference", "diff_lo", "diff_hi",
               "total_steps", "budget_unit", "counted_in_table1", "same_run_as", "baseline", "headline_counted",
               "headline_lo", "headline_hi", "headline_n")


def _diff(d: Difference | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"label": d.label, "against": d.against, "value": finite(d.value), "lo": finite(d.lo),
            "hi": finite(d.hi), "relative": finite(d.relative), "n": d.n, "clear": d.clear,
            "diverged": None if math.isfinite(d.value) else ("both" if math.isnan(d.value) else
                                                             (d.label if d.value > 0 else d.against))}


def _fair(fr: Any) -> dict[str, Any] | None:
    """A setting's Table-1 ranking (:class:`budgetsched.bench.analysis.fair.FairRanking`) as JSON."""
    if fr is None:
        return None

    def verdict(v: Any) -> dict[str, Any] | None:
        return None if v is None else {"value": finite(v[0]), "lo": finite(v[1]), "hi": finite(v[2]), "clear": v[3]}
    return {
        "evaluation": fr.mode, "fairness_claim": fr.fair,
        "rows": {label: {"mean": finite(float(fr.means[i])), "rank": int(fr.ranks[i]) or None,
                         "top1": float(fr.top1[i]), "top3": float(fr.top3[i]),
                         "n_candidates": int(fr.n_candidates[i])} for i, label in enumerate(fr.labels)},
        "stand_in_only": list(fr.stand_in_only),
        "best": fr.labels[fr.best] if fr.best >= 0 else None,
        "runner_up": fr.labels[fr.runner_up] if fr.runner_up >= 0 else None,
        "gap": verdict(fr.gap), "tied_within_noise": fr.tied, "vs_best_other": verdict(fr.vs_best_other),
        **({"evaluation_missing": [{"row": label, "lr": lr, "patience": pat, "seeds": list(miss), "stale": old}
                                   for label, lr, pat, miss, old in fr.evaluation_issues]}
           if getattr(fr, "evaluation_issues", ()) else {}),
    }


def _headline(h: Any) -> dict[str, Any] | None:
    """A setting's headline-rule decision (:class:`budgetsched.bench.analysis.headline.Headline`) as JSON: ``lo`` /
    ``hi`` the 95 % interval of baseline − score of the best schedule over its ``n`` scores."""
    if h is None:
        return None
    return {"counted": h.counted, "rule_applied": h.applied, "best": h.best, "lr": h.lr, "patience": h.patience,
            "scores": h.scores, "n": h.n, "mean": finite(h.mean), "baseline": finite(h.baseline),
            "lo": finite(h.lo), "hi": finite(h.hi), "reason": h.reason}


def to_json(report: Report, *, ablations: Ablations | None = None, lr_grid: LrGridView | None = None
            ) -> dict[str, Any]:
    """The report as JSON-ready data (no NaN/inf: a diverged result has ``mean: null, diverged: true``).

    ``ablations``: an ablation study's paired side tables, under the key ``ablations``; ``lr_grid``: the LR grid
    read, under ``lr_grid`` when it is not every LR tried. Both keys only when there is something to say, so a report
    without them is unchanged."""
    settings = []
    for s in report.settings:
        scheds = {}
        for label, c in s.results.items():
            scheds[label] = {
                "lr": c.lr, "patience": c.patience, "val_mean": finite(c.val_mean), "mean": finite(c.mean),
                "std": finite(c.std) if c.n > 1 else None, "n": c.n, "diverged": c.diverged, "rank": c.rank,
                "ranked_as": c.ranked_as, "lo": finite(c.lo), "hi": finite(c.hi), "p_top1": c.p_top1,
                "p_top3": c.p_top3, "lr_grid": list(c.lr_grid), "lr_edge": c.lr_edge, "stand_in": c.stand_in,
                "n_candidates": c.n_candidates,
            }
        settings.append({
            "task": s.task, "optimizer": s.optimizer, "budget": s.budget, "split": s.split,
            "metric": report.metric_names.get(s.task), "n_seeds": s.n_seeds, "schedules": scheds,
            "missing": list(s.missing),
            "ranking": {k: {"source": r.source, "mean": finite(r.mean), "rank": r.rank, "p_top1": r.p_top1,
                            "p_top3": r.p_top3} for k, r in s.ranking.items()},
            "best": s.best, "runner_up": s.runner_up, "gap": _diff(s.gap), "tied_within_noise": s.tied,
            "vs_reference": {k: _diff(d) for k, d in s.vs_reference.items()}, "vs_best_other": _diff(s.vs_best_other),
            "total_steps": s.total_steps, "budget_unit": s.budget_unit, "counted_in_table1": report.in_table1(s),
            "same_run_as": s.same_run_as, "table1_ranking": _fair(s.fair), "headline": _headline(s.headline),
        })
    u = report.uncertainty
    return {
        "n_trials": report.n_trials,
        "n_trials_done": report.n_trials_done,
        "n_trials_diverged": report.n_trials_diverged,
        "n_trials_failed": report.n_trials_failed,
        "n_settings": len(report.settings),
        "n_settings_counted": len(report.table1_settings()),
        "headline_rule": {"all_settings": report.all_settings, "counted": len(report.table1_settings()),
                          "of": sum(s.counted for s in report.settings),
                          "set_apart": len(report.set_apart_settings()), "not_applied_to": report.no_baseline(),
                          "text": counted_text(report)},
        "low_limit": report.low_limit,
        "reference": report.reference,
        "subject": report.subject,
        "uncertainty": dict(u),
        "protocol": {
            "selection": "per setting and schedule, the LR (and plateau patience) with the lowest mean validation "
                         "metric over seeds; diverged = +inf, failed = missing",
            "reported": "mean and sample std (ddof=1; null for one seed) of the test metric of the chosen candidate",
            "ranking": "competition ranking (ties share a rank: 1, 1, 3); " + (
                "plateau merged into step by validation" if report.plateau_into_step else "plateau its own schedule"),
            "low_budget": f"budget < {report.low_limit:g} %",
            "uncertainty": method_text(report) if u else None,
            "tied_within_noise": "the 95 % interval of runner-up − best (paired) contains 0",
            "table1": "settings[].table1_ranking: each finish credited once (a place tied between k schedules "
                      "counts 1/k for each; a stand-in earns none), scores apart from the choices (evaluation: "
                      "cross-fit, evaluation-seeds, or same-run with one seed: no fairness claim); shares over the "
                      "split's settings, 95 % intervals for these tasks (seeds within settings, settings within "
                      "tasks)",
            "evaluation": evaluation_text(report) or None,
            "same_run": "budgets of one task x optimizer with equal total_steps are one run, counted once in "
                        "Table 1 under the largest budget",
        },
        "table1": {label: {split: asdict(cell) for split, cell in cells.items()}
                   for label, cells in report.table1.items()},
        "by_budget": [asdict(r) for r in report.by_budget],
        "statistics": report.statistics,
        "duplicates": [asdict(d) for d in report.duplicates],
        "settings": settings,
        "missing": [asdict(m) for m in report.missing],
        # trials whose scheduler did not follow its plan: a key only when there are any (older reports unchanged)
        **({"off_plan": [asdict(o) for o in report.off_plan]} if report.off_plan else {}),
        **({"lr_grid": lr_grid_json(lr_grid)} if lr_grid is not None and lr_grid.grid != "all" else {}),
        **({"ablations": ablations_json(ablations)} if ablations is not None else {}),
    }


def _csv_num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def _headline_csv(h: Any) -> dict[str, Any]:
    if h is None:
        return {}
    return {"baseline": _csv_num(h.baseline), "headline_counted": h.counted, "headline_lo": _csv_num(h.lo),
            "headline_hi": _csv_num(h.hi), "headline_n": h.n}


def to_csv(report: Report) -> str:
    """One row per setting x schedule label of the study; ``status`` is ok, diverged or missing.

    ``lo`` / ``hi``: 95 % interval of the mean; ``p_top1`` / ``p_top3``: probabilities (step: incl. plateau);
    ``lr_grid``: the LRs tried, space-separated; ``lr_edge``: low / high / only; ``diff_vs_reference`` with
    ``diff_lo`` / ``diff_hi``: paired difference against ``reference``; ``tied_within_noise`` is per setting, and
    so is the headline rule (docs/tasks.md): ``baseline`` (the task's trivial baseline), ``headline_counted`` (the
    rule counts the setting), ``headline_lo`` / ``headline_hi`` (95 % interval of baseline − the best schedule's
    score over its ``headline_n`` scores); ``counted_in_table1``: Table 1 counts it (the rule and same runs applied;
    every setting counted once with --all-settings). Empty fields: not applicable (one seed, diverged, missing).
    """
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for s in report.settings:
        for label in schedule_order(set(report.labels) | set(s.results) | set(s.ranking)):
            c = s.results.get(label)
            r = s.ranking.get(label)
            base = {"task": s.task, "optimizer": s.optimizer, "budget": s.budget, "split": s.split, "schedule": label,
                    "n_seeds": s.n_seeds, "tied_within_noise": "" if s.tied is None else s.tied,
                    "reference": report.reference or "", "total_steps": "" if s.total_steps is None else s.total_steps,
                    "budget_unit": s.budget_unit or "", "counted_in_table1": report.in_table1(s),
                    "same_run_as": "" if s.same_run_as is None else s.same_run_as, **_headline_csv(s.headline)}
            if c is None:
                w.writerow({**base, "status": "missing", "rank": "" if r is None else r.rank,
                            "ranked_as": "" if r is None or r.source == label else r.source,
                            "p_top1": "" if r is None or r.p_top1 is None else r.p_top1,
                            "p_top3": "" if r is None or r.p_top3 is None else r.p_top3})
                continue
            d = s.vs_reference.get(label)
            w.writerow({**base, "status": "diverged" if c.diverged else "ok", "lr": c.lr,
                        "patience": "" if c.patience is None else c.patience,
                        "val_mean": _csv_num(c.val_mean), "mean": _csv_num(c.mean),
                        "std": _csv_num(c.std) if c.n > 1 else "", "n": c.n,
                        "rank": "" if c.rank is None else c.rank, "ranked_as": c.ranked_as or "",
                        "lo": _csv_num(c.lo), "hi": _csv_num(c.hi),
                        "p_top1": "" if c.p_top1 is None else c.p_top1, "p_top3": "" if c.p_top3 is None else c.p_top3,
                        "lr_grid": " ".join(f"{x:g}" for x in c.lr_grid), "lr_edge": c.lr_edge or "",
                        "stand_in": c.stand_in or "",
                        "diff_vs_reference": "" if d is None else _csv_num(d.value),
                        "diff_lo": "" if d is None else _csv_num(d.lo), "diff_hi": "" if d is None else _csv_num(d.hi)})
    return buf.getvalue()
