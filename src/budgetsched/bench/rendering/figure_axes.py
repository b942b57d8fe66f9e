"""What the figures share beyond drawing: readable LR ticks, the budget's unit in words, and the user's choice of
budgets and schedules checked against what the study ran.

* :func:`lr_ticks` / :func:`fit_lr_labels` - every LR of a grid keeps a tick; labels (two significant digits) go on
  as many as fit without overlapping once the figure is laid out, round values (1, 2, 3, 5 x 10^k: the grid's
  base values) first, so a refined grid (0.01, 0.0173, 0.03, 0.0520, 0.1) reads as 0.01, 0.03, 0.1 with unlabelled
  ticks between instead of running together.
* :func:`budget_words` - "% of the 100 % run's steps" (the default unit) or "... epochs" (``--budget-unit epochs``).
* :func:`check_selection` - ``budgets`` / ``schedules`` that the study does not have are one error naming them, with
  the likeliest meant value.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from matplotlib.ticker import FixedLocator, NullFormatter

from budgetsched.errors import UsageError

__all__ = ["lr_label", "lr_ticks", "fit_lr_labels", "budget_words", "unit_of", "check_selection"]

#: Horizontal gap (pixels) that two neighbouring tick labels must keep.
LABEL_GAP_PX = 4.0


def lr_label(x: float) -> str:
    """An LR with two significant digits (0.0577350 -> 0.058); exact grid values stay as written (0.003)."""
    return f"{x:.2g}"


def _round_value(x: float) -> bool:
    """1, 2, 3 or 5 times a power of ten: a value a user writes in a grid (refinement adds x/÷ sqrt 3 around it)."""
    m = x / 10.0 ** math.floor(math.log10(x))
    return any(abs(m - r) < 1e-6 * r for r in (1.0, 2.0, 3.0, 5.0, 10.0))


def lr_ticks(ax: Any, lrs: Iterable[float]) -> list[float]:
    """Ticks at every LR of the grid, each labelled for now (:func:`fit_lr_labels` thins them once laid out)."""
    grid = sorted({float(x) for x in lrs if x > 0})
    ax.set_xticks(grid, [lr_label(x) for x in grid])
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.xaxis.set_minor_formatter(NullFormatter())
    return grid


def _keep(lrs: Sequence[float], extents: Sequence[tuple[float, float]]) -> list[float]:
    """The LRs whose labels are kept: greedily, round values first (then grid order), each kept only if its label
    stays clear of every label already kept."""
    order = sorted(range(len(lrs)), key=lambda i: (not _round_value(lrs[i]), i))
    kept: list[int] = []
    for i in order:
        x0, x1 = extents[i]
        if all(x1 + LABEL_GAP_PX <= extents[j][0] or extents[j][1] + LABEL_GAP_PX <= x0 for j in kept):
            kept.append(i)
    return [lrs[i] for i in sorted(kept)]


def fit_lr_labels(fig: Any, panels: Sequence[tuple[Any, Sequence[float]]], rounds: int = 3) -> None:
    """Lay ``fig`` out and drop the LR labels that would overlap (see :func:`_keep`); a dropped LR keeps an unlabelled
    (minor) tick. Repeated until the layout stops changing the answer (a thinner axis can widen)."""
    for _ in range(rounds):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        changed = False
        for ax, lrs in panels:
            lrs = sorted(lrs)
            shown = [float(x) for x in ax.get_xticks()]
            if len(shown) < 2:
                continue
            ax.set_xticks(lrs, [lr_label(x) for x in lrs])  # measure every label at its place
            ax.xaxis.set_minor_locator(FixedLocator([]))
            fig.canvas.draw()
            ext = [(b.x0, b.x1) for b in (t.get_window_extent(renderer) for t in ax.xaxis.get_majorticklabels())]
            keep = _keep(lrs, ext)
            ax.set_xticks(keep, [lr_label(x) for x in keep])
            ax.xaxis.set_minor_locator(FixedLocator([x for x in lrs if x not in keep]))
            ax.xaxis.set_minor_formatter(NullFormatter())
            changed |= keep != shown
        if not changed:
            return
    fig.canvas.draw()


def unit_of(units: Iterable[str | None]) -> str | None:
    """The one budget unit of some rows or settings (None when absent or mixed)."""
    got = {u for u in units if u}
    return got.pop() if len(got) == 1 else None


def budget_words(unit: str | None) -> str:
    """What a budget percent is a percent of."""
    return {"steps": "% of the 100 % run's steps", "epochs": "% of the 100 % run's epochs"}.get(unit or "",
                                                                                              "% of the 100 % run")


def check_selection(budgets: Sequence[float] | None, schedules: Sequence[str] | None,
                    run_budgets: Iterable[float], run_schedules: Iterable[str]) -> None:
    """Refuse budgets or schedules the study did not run: one :class:`UsageError` naming each, with the likeliest
    meant value (the nearest budget on a log scale; the closest schedule name) and what the study has."""
    from budgetsched._checks import did_you_mean

    have_b = sorted({float(b) for b in run_budgets})
    have_s = sorted(set(run_schedules))
    problems = []
    if budgets is not None:
        bad = [float(b) for b in budgets if float(b) not in have_b]
        if bad:
            parts = []
            for b in bad:
                near = min(have_b, key=lambda x: abs(math.log(x / b))) if have_b and b > 0 else None
                parts.append(f"{b:g}%" + (f" (did you mean {near:g}%?)" if near is not None else ""))
            problems.append(f"budget(s) not in the study: {', '.join(parts)}; budgets run: "
                            f"{', '.join(f'{x:g}%' for x in have_b) or 'none'}")
    if schedules is not None:
        bad_s = [s for s in schedules if s not in have_s]
        if bad_s:
            parts = []
            for s in bad_s:
                close = did_you_mean(s, have_s)
                parts.append(repr(s) + (f" (did you mean {close!r}?)" if close else ""))
            problems.append(f"schedule(s) not in the study: {', '.join(parts)}; schedules run: {', '.join(have_s)}")
    if problems:
        raise UsageError("; ".join(problems))
