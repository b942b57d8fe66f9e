"""The headline rule in the report's words (docs/tasks.md, "The headline rule"; decided by
:mod:`budgetsched.bench.analysis.headline`): the line that Table 1 and the study-level sections carry ("N of M settings
counted") and the section that lists the settings the rule sets apart, with their intervals."""
from __future__ import annotations

from typing import Any

from budgetsched.bench.analysis.report_model import Report, Setting
from budgetsched.bench.rendering.text import big, budget_text, num

__all__ = ["SET_APART", "counted_text", "headline_note", "set_apart_table", "scores_text"]

#: The heading of the settings the headline rule sets apart.
SET_APART = "Set apart by the headline rule"

_SCORES = {"evaluation-seeds": "evaluation seeds", "cross-fit": "tuning seeds, next-seed cross-fitted",
           "same-run": "one tuning seed"}


def _once(report: Report) -> list[Setting]:
    """The settings the rule decides on: each run counted once (a same run of a larger budget is that budget's)."""
    return [s for s in report.settings if s.counted]


def counted_text(report: Report) -> str:
    """"N of M settings counted (docs/tasks.md, headline rule)", or, with ``--all-settings``, the old view so
    labelled."""
    m = len(_once(report))
    if report.all_settings:
        return (f"All {m} settings counted (--all-settings: the headline rule of docs/tasks.md not applied; it sets "
                f"apart {len(report.set_apart_settings())}).")
    return f"{len(report.table1_settings())} of {m} settings counted (docs/tasks.md, headline rule)."


def scores_text(report: Report) -> str:
    """Which scores the rule was decided on, over the study's settings."""
    modes = {s.headline.scores for s in _once(report) if s.headline is not None and s.headline.applied}
    if modes == {"evaluation-seeds"}:
        return "the evaluation seeds of each chosen configuration"
    if "evaluation-seeds" in modes:
        return "the evaluation seeds where the setting has them, else the tuning seeds, cross-fitted (next-seed)"
    return "the tuning seeds, cross-fitted (next-seed: the LR for seed s chosen on seed s + 1's validation)"


def headline_note(report: Report) -> str:
    """Table 1's note: what it counts, what the rule sets apart and which tasks it could not be applied to."""
    text = counted_text(report)
    applied = [s for s in _once(report) if s.headline is not None and s.headline.applied]
    if applied:
        text += (" A setting counts when its best schedule beats its task's trivial baseline by more than its own "
                 f"noise: the 95 % Student-t interval of baseline − score over {scores_text(report)} lies above 0.")
    k = len(report.set_apart_settings())
    if k and not report.all_settings:
        text += f" {k} set apart: listed under \"{SET_APART}\", not counted in Table 1 or the study-level sections."
    elif k:
        text += f" The {k} it would set apart are listed under \"{SET_APART}\" and counted here."
    one = len(report.one_score())
    if one:
        text += (f" The rule was not applied to {one} setting{'s' if one != 1 else ''} with one score (no noise "
                 "measured): they count, with no fairness claim.")
    tasks = report.no_baseline()
    if tasks:
        text += (f" The rule could not be applied to {', '.join(tasks)} (no trivial baseline known here): their "
                 "settings count.")
    return text


def _best(s: Setting) -> str:
    h = s.headline
    if h.best is None:
        return "—"
    conf = ", ".join(x for x in (None if h.lr is None else f"lr {h.lr:g}",
                                 None if h.patience is None else f"patience {h.patience}") if x)
    return f"{h.best} ({conf})" if conf else h.best


def _value(x: float | None, large: bool, signed: bool = False) -> str:
    return "—" if x is None else num(x, large, signed)


def set_apart_table(report: Report) -> dict[str, Any] | None:
    """The settings the rule sets apart as a table's fields (``sections.Table(**...)``), one row each: task,
    optimizer, budget, the best schedule (its LR chosen on validation), its mean score, the baseline, the 95 %
    interval of baseline − score, n (and which scores), why; None when it sets none apart."""
    rows = []
    for s in report.set_apart_settings():
        h = s.headline
        large = any(x is not None and big(x) for x in (h.mean, h.baseline))
        ci = "—" if h.lo is None else f"[{num(h.lo, large, True)}, {num(h.hi, large, True)}]"
        rows.append((s.task, s.optimizer, budget_text(s.budget), _best(s), _value(h.mean, large),
                     _value(h.baseline, large), ci, f"{h.n} ({_SCORES.get(h.scores, h.scores)})", h.reason))
    if not rows:
        return None
    anyway = " They are counted anyway in this report (--all-settings)." if report.all_settings else (
        " They are left out of Table 1, the per-budget comparison and the study-level statistics; "
        "`budgetsched report --all-settings` counts them.")
    return dict(caption=f"{SET_APART} (docs/tasks.md): the best schedule not shown to beat the task's trivial "
                        "baseline by more than its own noise",
                head=("Task", "Optimizer", "Budget", "Best schedule", "mean score", "baseline",
                      "baseline − score [95 %]", "n (scores)", "why"),
                rows=tuple(rows), title=SET_APART, level=2,
                intro=("Settings whose best schedule (rank 1 of Table 1's ranking, its LR chosen on validation) is "
                       "not shown to beat the task's trivial baseline by more than its own noise (docs/tasks.md, "
                       "the headline rule): the 95 % Student-t interval of baseline − score over its scores does not "
                       "lie above 0, or there is none (the best diverged in a seed). Lower is better for every "
                       "metric, so baseline − score > 0 is better than the baseline." + anyway))
