"""Figures of the REX paper, redrawn from this package's schedules and a study's results.

* :func:`figure1` - profiles x sampling rates (paper, Figure 1).
* :func:`figure2` - test metric vs budget (% of the 100 % run's steps, or epochs), log x, one panel per task x optimizer (paper, Figure 2), with the
  report's 95 % interval of each schedule's result as error bars.
* :func:`figure2_paired` - each schedule minus the reference schedule (paired over seeds) vs % of epochs, with
  95 % intervals: the comparison Figure 2's marginal error bars cannot show, since all schedules of a seed share
  its data order and initialisation.
* :func:`figure3` - test (or validation) metric vs initial LR, log x, one panel per task x optimizer x budget
  (paper, Figure 3: the 5 % and 25 % budgets; every budget run when the study lacks them, as the title says), with
  the Student-t 95 % interval of each LR's mean over seeds as error bars; LR ticks thinned to labels that fit.
* :func:`curves` - LR, training loss and validation metric per epoch of the trials chosen for one setting.

``budgets=`` and ``schedules=`` restrict what is drawn (the analysis still sees every trial: intervals and the
reference do not change); a schedule the study does not have is a :class:`~budgetsched.errors.UsageError` naming
it (:func:`~budgetsched.bench.rendering.figure_axes.check_selection`). Axis labels and titles say what a budget
percent counts: the 100 % run's optimizer steps (the default unit) or its epochs (``budget_unit="epochs"``).

Every function writes a PNG and a PDF, returns the list of files written, and skips panels without data with a
:class:`PlotSkipWarning` instead of failing. Figures are drawn on plain ``matplotlib.figure.Figure`` objects (the
Agg canvas, no pyplot state), so they work headless and from worker threads. A schedule has the same colour in
every figure (:func:`color_for`; REX is always magenta, as the paper's pink line).
"""
from __future__ import annotations

import math
import re
import textwrap
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from budgetsched.bench.analysis.report import Report, build_report, lr_points, metric_name, patience_of, schedule_order
from budgetsched.bench.analysis.rows import metric_bounds
from budgetsched.bench.analysis.rows import setting_key, trial_rows
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.protocol.status import Status
from budgetsched.bench.rendering.figure_axes import budget_words, check_selection, fit_lr_labels, lr_ticks, unit_of

__all__ = ["figure1", "figure2", "figure2_paired", "figure3", "figure3_budgets", "curves", "color_for",
           "PlotSkipWarning", "FIGURE1_SAMPLINGS", "PAPER_BUDGETS"]

#: Sampling rates of the paper's Figure 1, from every step to the coarsest.
FIGURE1_SAMPLINGS = ("every-step", "1-100", "5-25", "10-10", "25-50-75", "33-66", "50-75")
#: The budgets of the paper's Figure 3 (percent of the 100 % run).
PAPER_BUDGETS = (5.0, 25.0)

_COLORS = {
    "rex": "#e7298a",  # magenta: REX is the pink line of the paper's Figure 3
    "linear": "#1f77b4",
    "cosine": "#2ca02c",
    "step": "#ff7f0e",
    "plateau": "#8c564b",
    "onecycle": "#9467bd",
    "exp": "#bcbd22",
    "constant": "#7f7f7f",
    "rex-beta": "#f781bf",
    "polynomial": "#17becf",
    "uba": "#d62728",
    "wsd": "#000000",
    "refined": "#6a3d9a",
}
_EXTRA = ("#a6761d", "#1b9e77", "#666666", "#e6ab02", "#66a61e", "#7570b3", "#d95f02", "#b15928")


class PlotSkipWarning(UserWarning):
    """A panel (or a whole figure) was skipped because it has no data to draw."""


def _skip(msg: str) -> None:
    warnings.warn(msg, PlotSkipWarning, stacklevel=3)


def color_for(label: str) -> str:
    """The colour of a schedule label, the same in every figure.

    ``delayed-linear(delay=d)`` variants get blues, lighter for longer delays; unknown labels a fixed colour
    derived from the label.
    """
    if label in _COLORS:
        return _COLORS[label]
    base = label.split("(")[0]
    if base == "delayed-linear":
        try:
            d = float(label.split("delay=")[1].rstrip(")").split(",")[0])
        except (IndexError, ValueError):
            d = 0.5
        r, g, b = 0.12 + 0.6 * d, 0.47 + 0.35 * d, 0.71 + 0.2 * d
        return "#{:02x}{:02x}{:02x}".format(*(int(255 * min(1.0, c)) for c in (r, g, b)))
    if base in _COLORS:
        return _COLORS[base]
    return _EXTRA[zlib.crc32(label.encode()) % len(_EXTRA)]


def _dodge(i: int, n: int) -> float:
    """A small multiplicative x offset (log axes) so that the error bars of n lines at one x do not overlap."""
    return 10.0 ** ((i - (n - 1) / 2) * 0.012)


def _errorbars(ax: Any, x: np.ndarray, m: np.ndarray, lo: np.ndarray, hi: np.ndarray, label: str,
               bounds: tuple[float, float] = (-math.inf, math.inf)) -> None:
    """Points with their intervals. With the selection redone in every draw a point can lie outside its own
    interval (the choice it was made with is a minority of the draws); its bar then ends at the point. An interval
    stays inside the metric's range (``bounds``, :func:`metric_bounds`): an error rate's bar never goes below 0 %."""
    lo, hi = np.clip(lo, *bounds), np.clip(hi, *bounds)
    ax.errorbar(x, m, yerr=np.vstack([np.maximum(m - lo, 0.0), np.maximum(hi - m, 0.0)]), marker="o",
                markersize=3.5, capsize=1.5, elinewidth=0.8, label=label, **_style(label))


def _suptitle(fig: Figure, text: str) -> None:
    """A figure title wrapped to the figure's width (a one-panel figure would otherwise clip a long title)."""
    width = max(30, int(fig.get_figwidth() * 13))
    fig.suptitle("\n".join(textwrap.fill(part, width) for part in text.split("\n")), fontsize=10)


def _budget_axes(ax: Any, budgets: Iterable[float], task: str, opt: str, ylabel: str, unit: str | None) -> None:
    """A panel of metric against budget: log x with the budgets as ticks, labels, title, grid, legend."""
    budgets = sorted(budgets)
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{b:g}%" for b in budgets])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"budget ({budget_words(unit)}, log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{task} / {opt}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)


def _style(label: str) -> dict[str, Any]:
    delay = re.search(r"delay=([0-9.eE+-]+)", label)
    color = color_for(label) if delay is None else matplotlib.colormaps["viridis"](0.1 + 0.8 * float(delay.group(1)))
    return {"color": color, "linewidth": 2.2 if label == "rex" else 1.4,
            "linestyle": "--" if label.startswith("delayed-linear") or "delay=" in label else "-",
            "zorder": 3 if label == "rex" else 2}


def _out_dir(out_dir: str | Path) -> Path:
    p = Path(out_dir)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create figure directory {str(p)!r}: {e.strerror or e}") from None
    return p


def _grid(n: int, width: float = 4.2, height: float = 3.4, max_cols: int = 4) -> tuple[Figure, list[Any]]:
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _save(fig: Figure, out: Path, stem: str) -> list[Path]:
    files = []
    for ext in ("png", "pdf"):
        path = out / f"{stem}.{ext}"
        fig.savefig(path, dpi=110 if ext == "png" else None)
        files.append(path)
    return files


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


# ---------------------------------------------------------------------------------------------------------------
# Figure 1


def figure1(out_dir: str | Path, total_steps: int = 1000) -> list[Path]:
    """Profiles x sampling rates, as the paper's Figure 1: step, linear and REX each under every sampling rate of
    :data:`FIGURE1_SAMPLINGS`, and a last panel with every profile of :func:`budgetsched.available` at its usual
    sampling (profiles that need more than a name, such as ``plateau`` or ``refined``, are skipped with a warning).
    Writes ``figure1.png`` and ``figure1.pdf``."""
    from budgetsched import Schedule, available

    out = _out_dir(out_dir)
    profiles = ("step", "linear", "rex")
    fig, axes = _grid(len(profiles) + 1, width=4.0, height=3.3)
    x = 100.0 * np.arange(total_steps) / total_steps
    shades = [f"C{i}" for i in range(len(FIGURE1_SAMPLINGS))]
    for ax, prof in zip(axes, profiles):
        for sampling, col in zip(FIGURE1_SAMPLINGS, shades):
            y = Schedule(prof, total_steps=total_steps, peak_lr=1.0, sampling=sampling).values()
            ax.step(x, y, where="post", color=col, linewidth=1.3, label=sampling)
        ax.set_title(f"{prof} profile x sampling rate")
    ax = axes[-1]
    for name in schedule_order(available()):
        if name == "plateau":
            _skip("figure1: plateau is metric-driven (no fixed profile); left out of the last panel")
            continue
        try:
            y = Schedule(name, total_steps=total_steps, peak_lr=1.0).values()
        except (ValueError, TypeError) as e:
            _skip(f"figure1: profile {name!r} needs parameters to draw ({e}); left out of the last panel")
            continue
        ax.plot(x, y, label=name, **_style(name))
    ax.set_title("profiles at their usual sampling rate")
    for ax in axes:
        ax.set_xlabel("training progress (% of the run's steps)")
        ax.set_ylabel("LR / peak LR")
        ax.set_ylim(-0.03, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="sampling" if ax is not axes[-1] else "profile", title_fontsize=7)
    fig.suptitle("Learning-rate profiles under different sampling rates (REX paper, Figure 1)")
    return _save(fig, out, "figure1")


# ---------------------------------------------------------------------------------------------------------------
# Figure 2



def _panels(report: Report, budgets: Sequence[float] | None = None) -> list[tuple[str, str, list[Any]]]:
    """(task, optimizer, its settings by budget) per panel of a per-budget figure, in the report's order; only the
    settings of ``budgets`` when given."""
    keep = None if budgets is None else {float(b) for b in budgets}
    settings = [s for s in report.settings if keep is None or s.budget in keep]
    return [(task, opt, sorted((s for s in settings if (s.task, s.optimizer) == (task, opt)), key=lambda s: s.budget))
            for task, opt in dict.fromkeys((s.task, s.optimizer) for s in settings)]


def _labels(found: Iterable[str], schedules: Sequence[str] | None) -> list[str]:
    """The schedule labels to draw, in display order: those found, restricted to ``schedules`` when given."""
    return schedule_order(set(found) if schedules is None else set(found) & set(schedules))


def _check(report: Report, schedules: Sequence[str] | None) -> None:
    """A schedule the study does not have is the caller's mistake, not an empty figure."""
    check_selection(None, schedules, (), report.labels)


def figure2(report_or_rows: Report | Sequence[TrialRow | Mapping[str, Any]], out_dir: str | Path, *,
            budgets: Sequence[float] | None = None, schedules: Sequence[str] | None = None) -> list[Path]:
    """Test metric vs budget (% of the 100 % run's steps, or epochs), log x, one line per schedule (delayed-linear
    variants dashed), one panel per task x optimizer. A point is the mean test metric of the candidate chosen on
    validation; its error bar is the report's 95 % interval of that result (seeds resampled, LR re-chosen in every
    draw; none with one seed). Diverged results are left out. ``budgets`` / ``schedules``: draw only these.
    Writes ``figure2.png`` / ``.pdf``."""
    report = report_or_rows if isinstance(report_or_rows, Report) else build_report(report_or_rows)
    _check(report, schedules)
    out = _out_dir(out_dir)
    panels = []
    for task, opt, ss in _panels(report, budgets):
        lines = {}
        for label in _labels((k for s in ss for k in s.results), schedules):
            pts = [(s.budget, c.mean, c.mean if c.lo is None else c.lo, c.mean if c.hi is None else c.hi)
                   for s in ss if (c := s.results.get(label)) is not None and not c.diverged]
            if pts:
                lines[label] = pts
        if lines:
            panels.append((task, opt, lines))
        else:
            _skip(f"figure2: no finished, non-diverged result for {task} / {opt}; panel skipped")
    if not panels:
        _skip("figure2: no data to plot; nothing written")
        return []
    fig, axes = _grid(len(panels), max_cols=3)
    for ax, (task, opt, lines) in zip(axes, panels):
        for i, (label, pts) in enumerate(lines.items()):
            b, m, lo, hi = (np.array(v, dtype=float) for v in zip(*pts))
            _errorbars(ax, b * _dodge(i, len(lines)), m, lo, hi, label,
                       metric_bounds(report.metric_names.get(task, "metric")))
        _budget_axes(ax, {p[0] for pts in lines.values() for p in pts}, task, opt,
                     f"test {report.metric_names.get(task, 'metric')}", unit_of(s.budget_unit for s in report.settings))
    _suptitle(fig, "Test metric vs training budget (LR chosen on validation; mean and 95 % interval over seeds). "
                   "The intervals include the seed effect all schedules share: compare schedules in figure2_paired.")
    return _save(fig, out, "figure2")


def figure2_paired(report_or_rows: Report | Sequence[TrialRow | Mapping[str, Any]], out_dir: str | Path, *,
                   budgets: Sequence[float] | None = None, schedules: Sequence[str] | None = None) -> list[Path]:
    """Each schedule minus the report's reference schedule (``Setting.vs_reference``: the test metric of each one's
    validation-chosen LR, paired over seeds, LR re-chosen in every draw) vs budget, log x, with its 95 %
    interval as error bar (none with one seed) and a line at 0 (below = better than the reference). One panel per
    task x optimizer; differences where either side diverged are left out. ``budgets`` / ``schedules``: draw only
    these (the reference line stays). Writes ``figure2_paired.png`` / ``.pdf``; nothing (with a warning) when the
    report has no reference."""
    report = report_or_rows if isinstance(report_or_rows, Report) else build_report(report_or_rows)
    _check(report, schedules)
    out = _out_dir(out_dir)
    if report.reference is None:
        _skip("figure2_paired: the report has no reference schedule; nothing written")
        return []
    panels = []
    for task, opt, ss in _panels(report, budgets):
        lines = {}
        for label in _labels((k for s in ss for k in s.vs_reference), schedules):
            pts = [(s.budget, d.value, d.value if d.lo is None else d.lo, d.value if d.hi is None else d.hi)
                   for s in ss if (d := s.vs_reference.get(label)) is not None and math.isfinite(d.value)]
            if pts:
                lines[label] = pts
        if lines:
            panels.append((task, opt, lines))
        else:
            _skip(f"figure2_paired: no paired difference against {report.reference} for {task} / {opt}; "
                  "panel skipped")
    if not panels:
        _skip("figure2_paired: no data to plot; nothing written")
        return []
    fig, axes = _grid(len(panels), max_cols=3)
    for ax, (task, opt, lines) in zip(axes, panels):
        ax.axhline(0.0, color=color_for(report.reference), linewidth=1.2, label=f"{report.reference} (reference)")
        for i, (label, pts) in enumerate(lines.items()):
            b, m, lo, hi = (np.array(v, dtype=float) for v in zip(*pts))
            _errorbars(ax, b * _dodge(i, len(lines)), m, lo, hi, label)
        _budget_axes(ax, {p[0] for pts in lines.values() for p in pts}, task, opt,
                     f"test {report.metric_names.get(task, 'metric')} − {report.reference}",
                     unit_of(s.budget_unit for s in report.settings))
    _suptitle(fig, f"Schedule − {report.reference}, paired over seeds (LR chosen on validation; 95 % interval; "
                   "below 0 = better)")
    return _save(fig, out, "figure2_paired")


# ---------------------------------------------------------------------------------------------------------------
# Figure 3


def figure3_budgets(present: Iterable[float]) -> tuple[list[float], str]:
    """The budgets Figure 3 shows by default for one task x optimizer, and what the title should say about them.

    The paper's 5 % and 25 % when both were run (``""``); otherwise every budget that was run, never a stand-in
    nearest budget, with a note naming the paper's budgets the study lacks.
    """
    run = sorted({float(b) for b in present})
    absent = [b for b in PAPER_BUDGETS if b not in run]
    if not absent:
        return list(PAPER_BUDGETS), ""
    return run, (f"the paper's {' and '.join(f'{b:g} %' for b in absent)} not run: every budget run is shown")


def _figure3_panels(rows: Sequence[TrialRow | Mapping[str, Any]], budgets: Sequence[float] | None, metric: str,
                    schedules: Sequence[str] | None) -> tuple[list[tuple], list[str]]:
    """(task, optimizer, budget, lines, diverged LRs) per panel of Figure 3 and the notes on the budgets chosen."""
    points = lr_points(rows, metric)
    check_selection(None, schedules, (), {x for by_label in points.values() for x in by_label})
    groups: dict[tuple[str, str], list[float]] = {}
    for task, opt, b in points:
        groups.setdefault((task, opt), []).append(b)
    panels, notes = [], []
    for (task, opt), present in groups.items():
        if budgets is None:
            wanted, note = figure3_budgets(present)
            if note:
                notes.append(f"{task} / {opt}: {note}")
        else:
            wanted = sorted(float(b) for b in budgets)
        for b in wanted:
            by_label = {k: v for k, v in (points.get((task, opt, b)) or {}).items()
                        if schedules is None or k in schedules}
            if not by_label:
                _skip(f"figure3: no finished trial for {task} / {opt} / {b:g}%; panel skipped")
                continue
            lines, diverged = {}, []
            for label, pts in by_label.items():
                diverged += [f"{label}@{p.lr:.2g}" for p in pts if math.isinf(p.mean)]
                finite = [p for p in pts if math.isfinite(p.mean)]
                if finite:
                    lines[label] = finite
            if lines:
                panels.append((task, opt, b, lines, diverged))
            else:
                _skip(f"figure3: every trial of {task} / {opt} / {b:g}% diverged; panel skipped")
    return panels, notes


def draw_figure3(rows: Sequence[TrialRow | Mapping[str, Any]], budgets: Sequence[float] | None = None,
                 metric: str = "test", schedules: Sequence[str] | None = None) -> Figure | None:
    """Figure 3 drawn and laid out (LR labels thinned to fit), not saved; None when there is nothing to draw.
    See :func:`figure3`."""
    if metric not in ("test", "val"):
        raise ValueError(f"metric must be 'test' or 'val', got {metric!r}")
    rows = trial_rows(rows)
    panels, notes = _figure3_panels(rows, budgets, metric, schedules)
    if not panels:
        _skip("figure3: no data to plot; nothing written")
        return None
    steps = {(r.task, r.optimizer, float(r.budget)): r.total_steps for r in rows if r.total_steps}
    unit = unit_of(r.budget_unit for r in rows)
    fig, axes = _grid(len(panels), max_cols=4)
    ticked = []
    for ax, (task, opt, b, lines, diverged) in zip(axes, panels):
        for i, (label, pts) in enumerate(lines.items()):
            lr = np.array([p.lr for p in pts])
            m = np.array([p.mean for p in pts])
            lo = np.array([p.mean if p.lo is None else p.lo for p in pts])
            hi = np.array([p.mean if p.hi is None else p.hi for p in pts])
            _errorbars(ax, lr * _dodge(i, len(lines)), m, lo, hi, label, metric_bounds(metric_name(task)))
        ax.set_xscale("log")
        # the grid's LRs as ticks (not log decades); labels thinned below so a refined grid stays readable
        ticked.append((ax, lr_ticks(ax, (p.lr for pts in lines.values() for p in pts))))
        ax.set_xlabel("initial (peak) learning rate (log scale)")
        ax.set_ylabel(f"{'test' if metric == 'test' else 'validation'} {metric_name(task)}")
        n = steps.get((task, opt, b))
        ax.set_title(f"{task} / {opt} / {b:g} % budget" + (f" ({n} steps)" if n else ""), fontsize=9)
        if diverged:
            shown = ", ".join(diverged[:6]) + (" ..." if len(diverged) > 6 else "")
            ax.text(0.01, 0.99, f"diverged (not shown): {shown}", transform=ax.transAxes, fontsize=6, va="top")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    title = (f"{'Test' if metric == 'test' else 'Validation'} metric vs initial learning rate (mean and Student-t "
             f"95 % interval over seeds; budgets in {budget_words(unit)})")
    _suptitle(fig, "\n".join([title, *notes]))
    fit_lr_labels(fig, ticked)
    return fig


def figure3(rows: Sequence[TrialRow | Mapping[str, Any]], out_dir: str | Path, budgets: Sequence[float] | None = None,
            metric: str = "test", *, schedules: Sequence[str] | None = None) -> list[Path]:
    """Final test (``metric="test"``) or validation metric vs initial LR, log x, one line per schedule and one
    panel per task x optimizer x budget. ``budgets`` defaults, per task x optimizer, to the paper's 5 % and 25 %
    when both were run, else to every budget that was run, and the title says so (:func:`figure3_budgets`).
    Each point is the mean over seeds with its Student-t 95 % interval as error bar
    (:func:`budgetsched.bench.analysis.report.lr_points`; none with one seed); an LR where any seed diverged is left out
    (listed in the panel); plateau uses, at each LR, the patience chosen by validation. Every LR of the grid has a
    tick; labels (two significant digits) go on those that fit, round values first. ``schedules``: draw only these.
    Writes ``figure3.png`` / ``.pdf``."""
    if metric not in ("test", "val"):
        raise ValueError(f"metric must be 'test' or 'val', got {metric!r}")
    fig = draw_figure3(rows, budgets, metric, schedules)
    return [] if fig is None else _save(fig, _out_dir(out_dir), "figure3")


# ---------------------------------------------------------------------------------------------------------------
# curves


def _mean_curve(trials: list[TrialRow], name: str) -> tuple[np.ndarray, np.ndarray] | None:
    series = [(t.curves.get("epoch"), t.curves.get(name)) for t in trials]
    series = [(e, v) for e, v in series if v]
    if not series:
        return None
    n = min(len(v) for _, v in series)
    y = np.nanmean(np.array([[np.nan if x is None else float(x) for x in v[:n]] for _, v in series]), axis=0)
    e = series[0][0]
    x = np.asarray(e[:n], dtype=float) if e and len(e) >= n else np.arange(1, n + 1, dtype=float)
    return x, y


def curves(rows: Sequence[TrialRow | Mapping[str, Any]], out_dir: str | Path, task: str | None = None,
           optimizer: str | None = None, budget: float | None = None,
           report: Report | None = None, *, schedules: Sequence[str] | None = None) -> list[Path]:
    """LR, training loss and validation metric per epoch for the candidate each schedule chose (by validation)
    in one setting, averaged over its seeds. The setting defaults to the first one (of the given task / optimizer /
    budget) that has curves; ``schedules``: draw only these. The title gives the budget with its unit and length
    (``25 % of the 100 % run's steps, 480 steps``). Writes ``curves_<task>_<optimizer>_<budget>.png`` / ``.pdf``."""
    rows = trial_rows(rows)
    report = report or build_report(rows)
    _check(report, schedules)
    out = _out_dir(out_dir)
    cands = [s for s in report.settings if (task is None or s.task == task)
             and (optimizer is None or s.optimizer == optimizer) and (budget is None or s.budget == float(budget))]
    if not cands:
        have = ", ".join(f"{s.task}/{s.optimizer}/{s.budget:g}%" for s in report.settings) or "none"
        raise ValueError(f"no setting matches task={task!r}, optimizer={optimizer!r}, budget={budget!r}; "
                         f"settings with results: {have}")
    by_setting: dict[tuple[str, str, float], list[TrialRow]] = {}
    for r in rows:
        if r.status is Status.DONE:
            by_setting.setdefault(setting_key(r), []).append(r)
    for s in cands:
        chosen = {}
        for label, c in s.results.items():
            if c.diverged or (schedules is not None and label not in schedules):
                continue
            trials = [r for r in by_setting.get((s.task, s.optimizer, s.budget), [])
                      if r.label == label and float(r.lr) == c.lr and patience_of(r) == c.patience and r.curves]
            if trials:
                chosen[label] = (c, trials)
        if chosen:
            break
        _skip(f"curves: no stored curves for {s.task} / {s.optimizer} / {s.budget:g}%; trying the next setting")
    else:
        _skip("curves: no setting has stored curves; nothing written")
        return []
    panels = (("lr", "learning rate"), ("train_loss", "training loss"),
              ("val_metric", f"validation {report.metric_names.get(s.task, 'metric')}"))
    fig, axes = _grid(len(panels), width=4.4, height=3.4, max_cols=3)
    for ax, (name, ylabel) in zip(axes, panels):
        drawn = 0
        for label, (c, trials) in chosen.items():
            mc = _mean_curve(trials, name)
            if mc is None:
                continue
            tag = f"{label} (lr {c.lr:.3g}" + (f", patience {c.patience}" if c.patience is not None else "") + ")"
            ax.plot(*mc, label=tag, **_style(label))
            drawn += 1
        if not drawn:
            _skip(f"curves: no {name!r} curve stored for {s.task} / {s.optimizer} / {s.budget:g}%; panel left empty")
            ax.text(0.5, 0.5, f"no {name} curve stored", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=7)
        if name == "train_loss" and drawn and all(np.nanmin(ln.get_ydata()) > 0 for ln in ax.get_lines()):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel)
        ax.grid(alpha=0.3)
    length = f", {s.total_steps} steps" if s.total_steps else ""
    _suptitle(fig, f"{s.task} / {s.optimizer} / {s.budget:g} {budget_words(s.budget_unit)}{length}: the LR each "
                   "schedule chose on validation (mean over seeds)")
    return _save(fig, out, _safe(f"curves_{s.task}_{s.optimizer}_{s.budget:g}"))


# ---------------------------------------------------------------------------------------------------------------
# The paper's other experiments


def delay_figure(report_or_rows: Report | Sequence[TrialRow | Mapping[str, Any]], out_dir: str | Path,
                 reference: str = "step") -> list[Path]:
    """The paper's Figure 2: test metric vs budget for REX, linear and the delayed schedules, with the
    ``reference`` schedule's result at the largest budget as a dashed horizontal line (the paper's red line: step at
    100 % of the epochs). Writes ``figure2_delay.png`` / ``.pdf``."""
    report = report_or_rows if isinstance(report_or_rows, Report) else build_report(report_or_rows)
    out = _out_dir(out_dir)
    pairs = list(dict.fromkeys((s.task, s.optimizer) for s in report.settings))
    if not pairs:
        _skip("delay_figure: no data to plot; nothing written")
        return []
    fig, axes = _grid(len(pairs), max_cols=2, width=5.2, height=3.8)
    for ax, (task, opt, ss) in zip(axes, _panels(report)):
        labels = [x for x in schedule_order({k for s in ss for k in s.results}) if x != reference]
        for i, label in enumerate(labels):
            pts = [(s.budget, c.mean, c.mean if c.lo is None else c.lo, c.mean if c.hi is None else c.hi)
                   for s in ss if (c := s.results.get(label)) is not None and not c.diverged]
            if pts:
                b, m, lo, hi = (np.array(v, dtype=float) for v in zip(*pts))
                _errorbars(ax, b * _dodge(i, len(labels)), m, lo, hi, label,
                           metric_bounds(report.metric_names.get(task, "metric")))
        ref = ss[-1].results.get(reference) if ss else None
        if ref is not None and not ref.diverged:
            ax.axhline(ref.mean, color="#d62728", linestyle="--", linewidth=1.2,
                       label=f"{reference} at {ss[-1].budget:g} %")
        _budget_axes(ax, [s.budget for s in ss], task, opt, f"test {report.metric_names.get(task, 'metric')}",
                     unit_of(s.budget_unit for s in report.settings))
    _suptitle(fig, "Delaying the decay (paper, Figure 2): linear delayed to X % of the run, REX and linear; dashed "
                   "red: the step schedule at the largest budget. Mean and 95 % interval over seeds.")
    return _save(fig, out, "figure2_delay")


def sampling_heatmap(rows: Sequence[TrialRow | Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """The paper's Table 2 as heat-maps: profiles x sampling rates, one panel per task x optimizer x budget, colour =
    mean test metric (each panel on its own scale), the value written in each cell. Writes ``table2_sampling``."""
    from budgetsched.bench.analysis.experiments import SAMPLING_ORDER, sampling_cells

    cells = sampling_cells(rows)
    out = _out_dir(out_dir)
    if not cells:
        _skip("sampling_heatmap: no sampling study in these rows; nothing written")
        return []
    keys = sorted(cells)
    fig, axes = _grid(len(keys), max_cols=3, width=4.6, height=3.6)
    for ax, key in zip(axes, keys):
        table = cells[key]
        profiles = sorted({p for p, _ in table}, key=lambda p: (p != "step≈exp", p))
        rates = sorted({r for _, r in table}, key=lambda r: SAMPLING_ORDER.index(r) if r in SAMPLING_ORDER else 99)
        m = np.array([[table[(p, r)][0] if table.get((p, r)) else np.nan for p in profiles] for r in rates])
        shown = np.where(np.isfinite(m), m, np.nan)
        im = ax.imshow(shown, cmap="viridis_r", aspect="auto")
        for i in range(len(rates)):
            for j in range(len(profiles)):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.3g}", ha="center", va="center", fontsize=7, color="white")
        ax.set_xticks(range(len(profiles)), profiles, fontsize=8)
        ax.set_yticks(range(len(rates)), rates, fontsize=8)
        task, opt, budget = key
        ax.set_title(f"{task} / {opt} / {budget:g} %", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8, label=f"test {metric_name(task)}")
    _suptitle(fig, "Profiles x sampling rates at a fixed LR (paper, Table 2): mean test metric over seeds "
                   "(lower, and lighter, is better)")
    return _save(fig, out, "table2_sampling")
