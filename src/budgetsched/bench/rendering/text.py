"""How the report writes its numbers: one formatting of each quantity, shared by the markdown, rich, csv and json
renderers."""
from __future__ import annotations

import math

from budgetsched.bench.analysis.report_model import Choice, Difference, Report, Setting, Table1Cell
from budgetsched.bench.protocol import selection
from budgetsched.bench.protocol.grid import OPTIMIZERS

__all__ = ["finite", "big", "num", "pct", "pct_ci", "result_cell", "edge", "prob", "diff_text", "budget_text",
           "step_name", "step_label", "optimizers", "seeds_text", "unit_text", "method_text", "best_labels", "count",
           "candidates_text", "evaluation_text"]


def finite(x: float | None) -> float | None:
    """``x`` when it is a finite number, else None (JSON has no NaN or inf)."""
    return x if x is not None and math.isfinite(x) else None


def big(x: float) -> bool:
    return math.isfinite(x) and abs(x) >= 1


def num(x: float, large: bool, signed: bool = False) -> str:
    """The paper's two decimals for errors in %, losses and nll; 3 significant digits for small metrics."""
    sign = "+" if signed else ""
    text = f"{x:{sign}.2f}" if large else f"{x:{sign}.3g}"
    return text.replace("-", "−")


def pct(cell: Table1Cell, key: str) -> str:
    """A Table-1 share ("top1" / "top3") as ``NN% (count/n)``."""
    share = getattr(cell, key)
    if share is None:
        return "—"
    return f"{100 * share:.0f}% ({count(getattr(cell, 'n_' + key))}/{cell.n})"


def count(x: float) -> str:
    """A number of finishes: whole when it is (7), else to two decimals (3.5, 2.33: ties share a finish)."""
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.2f}".rstrip("0")


def candidates_text(cell: Table1Cell) -> str:
    """The candidates a Table-1 row chose among (median over the settings where it has a result of its own)."""
    if cell.n_candidates is None or not cell.n_present:
        return "—"
    return f"{cell.n_candidates:g}"


def pct_ci(cell: Table1Cell, key: str) -> str:
    ci = getattr(cell, key + "_ci")
    if ci is None:
        return "—"
    return f"{100 * ci[0]:.0f}–{100 * ci[1]:.0f}%"


def result_cell(c: Choice | None) -> str:
    """A chosen result: mean ± sample std, ``(n=1)`` with one seed, ``diverged``."""
    if c is None:
        return "—"
    if c.diverged:
        return "diverged"
    if c.n < 2:
        text = f"{c.mean:.2f}" if abs(c.mean) >= 1 else f"{c.mean:.4g}"
        return f"{text} (n=1)"
    if abs(c.mean) >= 1:  # the paper's two decimals for errors in %, losses and nll
        return f"{c.mean:.2f} ± {c.std:.2f}"
    return f"{c.mean:.4g} ± {c.std:.2g}"  # bits/char and other small metrics keep 4 significant digits


def edge(c: Choice) -> str:
    return {"low": "↓", "high": "↑", "only": " (only LR)"}.get(c.lr_edge or "", "")


def prob(p: float | None) -> str:
    return "n=1" if p is None else f"{p:.2f}"


def diff_text(d: Difference | None, large: bool, relative: bool = False) -> str:
    if d is None:
        return "—"
    if math.isnan(d.value):
        return "both diverged"
    if math.isinf(d.value):
        return f"{d.label if d.value > 0 else d.against} diverged"
    text = num(d.value, large, signed=True)
    if d.lo is None:
        text += " (n=1)"
    else:
        text += f" [{num(d.lo, large, True)}, {num(d.hi, large, True)}]"
    if relative and d.relative is not None:
        text += f" ({100 * d.relative:+.1f}%)".replace("-", "−")
    return text


def budget_text(b: float) -> str:
    return f"{b:g}%"


def step_name(report: Report, label: str) -> str:
    """Table 1's name of a row: step is "step (incl. plateau, the paper's view)" when plateau is merged into it."""
    merged = label == "step" and report.plateau_into_step and "plateau" in report.labels
    return "step (incl. plateau, the paper's view)" if merged else label


def step_label(s: Setting, label: str) -> str:
    r = s.ranking.get(label)
    return f"{label} (via plateau)" if r is not None and r.source != label else label


def optimizers(ss: list[Setting]) -> list[str]:
    have = {s.optimizer for s in ss}
    return [o for o in OPTIMIZERS if o in have] + sorted(have - set(OPTIMIZERS))


def seeds_text(report: Report) -> str:
    ns = report.uncertainty.get("seeds_per_setting") or []
    if not ns:
        return "no settings"
    return f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"


def unit_text(report: Report) -> str:
    units = sorted({s.budget_unit for s in report.settings if s.budget_unit})
    if not units:
        return ""
    what = {"steps": "a fraction of the 100 % run's optimizer steps", "epochs": "whole epochs, rounded up"}
    return " Budgets counted in " + "; ".join(f"{u} ({what.get(u, u)})" for u in units) + "."


def method_text(report: Report) -> str:
    u = report.uncertainty
    how = ("a t-calibrated Gaussian multiplier over seeds (every fixed paired contrast gets the Student-t "
           "interval, exact at n = 3 for normal seed noise)" if u["method"] == "t"
           else "the Bayesian bootstrap over seeds (Dirichlet(1, ..., 1) weights)")
    return (f"{u['resamples']} draws per setting (seed {u['seed']}) of {how}; the same seed weights for every "
            "schedule and LR of a setting (a paired design: they share data order and initialisation), and the LR, "
            "patience and plateau→step choices redone on validation inside every draw. Per-budget summaries also "
            "reweight the settings (Bayesian bootstrap over settings); Table 1: see Evaluation. Intervals are 95 % and "
            "equal-tailed; probabilities carry a Monte-Carlo error of at most "
            f"{0.5 / math.sqrt(u['resamples']):.3f}.")


def evaluation_text(report: Report) -> str:
    """How Table 1's scores were obtained (selection kept apart from evaluation, docs/protocol.md "Fairness");
    "" when no setting has a fair ranking."""
    modes = [s.fair.mode for s in report.table1_settings() if s.fair is not None]
    if not modes:
        return ""
    text = ("Table 1 credits each finish once (k schedules tied for a place share it, 1/k each; a plateau trial that "
            "cannot trigger is constant's run and earns no finish); "
            + ("plateau is merged into step, the paper's view. " if report.plateau_into_step
               else "plateau is a row of its own. "))
    n_cf, n_ev, n_same = modes.count("cross-fit"), modes.count("evaluation-seeds"), modes.count("same-run")
    if n_cf:
        text += (f"{n_cf} setting(s) cross-fitted over seeds: the LR (and patience) for seed s is chosen on the mean "
                 "validation of the other seeds and scored on seed s's test, so no score comes from the runs that "
                 "chose it; the shares' 95 % intervals are for these tasks (seeds resampled within settings, settings "
                 "within tasks). ")
    if n_ev:
        text += f"{n_ev} setting(s) scored on fresh evaluation seeds of each chosen configuration. "
    if n_same:
        text += (f"{n_same} setting(s) with one seed: choice and score come from the same run; no fairness claim "
                 "and no interval. ")
    stale = [(s, i) for s in report.table1_settings() if s.fair is not None
             for i in getattr(s.fair, "evaluation_issues", ())]
    if stale:  # evaluation runs that no longer match the choice (or never ran): named, and those settings cross-fitted
        shown = [f"{s.task}/{s.optimizer}/{s.budget:g}% {label} at LR {lr:g}"
                 + (f" (patience {pat})" if pat is not None else "")
                 + f" lacks seed(s) {', '.join(map(str, miss))}" + (" (stale: the choice changed)" if old else "")
                 for s, (label, lr, pat, miss, old) in stale]
        n_st = len({id(s) for s, _ in stale})
        text += (f"{n_st} setting(s) have evaluation runs that are stale or missing, so they were cross-fitted "
                 f"instead: {'; '.join(shown[:10])}" + (f"; and {len(shown) - 10} more" if len(shown) > 10 else "")
                 + ". Rerun with --eval-seeds to train the missing ones. ")
    cands = {x: c["overall"].n_candidates for x, c in report.table1.items() if c["overall"].n_candidates}
    fewest = min(cands.values(), default=0)
    more = [f"{x} ({v:g})" for x, v in cands.items() if v > fewest]
    if more:  # equal tuning: say which rows chose among more candidates (e.g. plateau at several patiences)
        text += (f"Not equally tuned: {', '.join(more)} chose among more candidates than the others ({fewest:g}; "
                 "medians over settings). ")
    return text + "The per-task tables report each choice over its own seeds, as the paper's tables do."


def best_labels(s: Setting) -> set[str]:
    """The labels whose mean is the lowest of the setting (ties within the protocol's tolerance: all of them)."""
    means = {k: c.mean for k, c in s.results.items() if not c.diverged}
    if not means:
        return set()
    best = min(means.values())
    return {k for k, v in means.items() if not selection.better(best, v)}
