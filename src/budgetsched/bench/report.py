"""Study report: the REX paper's Table 1 and its per-task tables (Tables 4-9), from the rows of a results store.

Protocol (REX paper, section 4; ``docs/architecture.md``):

* A *setting* is one task x optimizer x budget. Within it, each schedule label has *candidates*: its initial LRs
  (and, for ``plateau``, its patience values).
* **Selection by validation.** A candidate's score is the mean final *validation* metric over its seeds (lower is
  better). A ``diverged`` trial scores +inf; a ``failed`` trial is *missing* (left out of the mean, listed in
  ``Report.missing``), never a loss. The candidate with the lowest score is chosen; equal scores go to the smaller
  LR, then the smaller patience (never to the better test metric).
* **Reported value.** The *test* metric of the chosen candidate over its seeds: mean and *sample* standard
  deviation (``ddof=1``) when it has n > 1 seeds, 0 when n = 1. If the chosen candidate diverged (every candidate
  did), the schedule's result is +inf ("diverged"): it ranks last, and it counts in the denominators.
* **Ranking.** Per setting, schedules are ranked by that mean test metric with *competition ranking*: tied
  schedules share a rank and the next rank is skipped (1, 1, 3). Two means tie when they differ by at most
  1e-9 relative. Top-1 = rank 1, Top-3 = rank <= 3, so all schedules tied for best are Top-1.
* **Plateau into step** (as in the paper's Table 1): in each setting the ``step`` row is ranked with the better
  (lower) of step's and plateau's results, and plateau is not ranked on its own. The per-task tables still show
  plateau as its own row, as the paper's Tables 4-9 do.
* **Table 1** gives, per schedule, the share of settings where it is Top-1 and Top-3, split into low budgets
  (``budget < low_limit``, 25 % by default), high budgets and overall. The denominator of a schedule's share is
  the number of settings in which it has a result; settings where it is missing are listed, not counted as losses.

``build_report`` computes everything into a :class:`Report`; ``to_json``, ``to_markdown``, ``to_csv`` and
``render_rich`` only format it.
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Mapping, Sequence

from budgetsched.bench.grid import LOW_BUDGET_LIMIT, OPTIMIZERS

__all__ = ["Choice", "Setting", "Report", "build_report", "to_json", "to_markdown", "to_csv", "render_rich",
           "schedule_order"]

SPLITS = ("low", "high", "overall")
_FINISHED = ("done", "diverged")
_REL_TIE = 1e-9
# Display order of the paper's tables ("None" first, REX last); other labels go between, alphabetically.
_ORDER = ("constant", "step", "plateau", "cosine", "onecycle", "linear", "exp")
_LAST = ("rex",)


def schedule_order(labels: Iterable[str]) -> list[str]:
    """Labels in the paper's display order: constant, step, plateau, cosine, onecycle, linear, exp, others, rex."""
    labels = set(labels)
    head = [x for x in _ORDER if x in labels]
    tail = [x for x in _LAST if x in labels]
    return head + sorted(labels - set(head) - set(tail)) + tail


@dataclass(frozen=True)
class Choice:
    """One schedule's result in one setting: the candidate chosen by validation and its test statistics."""

    label: str
    lr: float
    patience: int | None  # plateau only
    val_mean: float  # selection score (+inf if the candidate diverged)
    mean: float  # mean test metric over the chosen candidate's seeds (+inf if it diverged)
    std: float  # sample std (ddof=1) if n > 1, 0 if n == 1, nan if diverged
    n: int  # seeds averaged
    n_candidates: int
    rank: int | None = None  # Table-1 rank in the setting; None for plateau (merged into step) or unranked labels
    ranked_as: str | None = None  # "plateau" on the step row when plateau's result stood for step

    @property
    def diverged(self) -> bool:
        return math.isinf(self.mean)


@dataclass
class Setting:
    """One task x optimizer x budget with each schedule's chosen result."""

    task: str
    optimizer: str
    budget: float
    split: str  # "low" or "high"
    results: dict[str, Choice]
    missing: list[str]  # schedule labels of the study with no finished trial in this setting


@dataclass
class Report:
    """Everything the renderers need. Build it with :func:`build_report`."""

    settings: list[Setting]
    table1: dict[str, dict[str, dict[str, Any]]]  # label -> split -> {top1, top3 (fractions or None), n, n_top1, n_top3}
    labels: list[str]  # every schedule label, display order
    ranked_labels: list[str]  # labels in Table 1
    missing: list[dict[str, Any]]
    n_trials: int
    n_trials_done: int
    n_trials_diverged: int
    n_trials_failed: int
    low_limit: float
    metric_names: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# building


def _num(v: Any) -> float:
    """A stored metric as a score: None / NaN / inf mean the run did not produce a usable number -> +inf."""
    if v is None:
        return math.inf
    v = float(v)
    return v if math.isfinite(v) else math.inf


def _patience(row: Mapping[str, Any]) -> int | None:
    if row["schedule"] != "plateau":
        return None
    p = (row.get("schedule_params") or {}).get("patience")
    return None if p is None else int(p)


def _stats(values: list[float]) -> tuple[float, float]:
    if any(math.isinf(v) for v in values):
        return math.inf, math.nan
    mean = math.fsum(values) / len(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _less(a: float, b: float) -> bool:
    """a is strictly better than b (beyond the tie tolerance)."""
    if math.isinf(a) or math.isinf(b):
        return a < b
    return a < b - _REL_TIE * max(1.0, abs(a), abs(b))


def _competition_ranks(values: Mapping[str, float]) -> dict[str, int]:
    return {k: 1 + sum(_less(w, v) for w in values.values()) for k, v in values.items()}


def _metric_name(task: str) -> str:
    try:  # the task registry is optional here: rows from unknown or removed tasks still get a report
        from budgetsched.bench.tasks import get_task

        return str(get_task(task).metric_name)
    except Exception:
        return "metric (lower is better)"


def _choose(label: str, rows: list[Mapping[str, Any]]) -> Choice | None:
    cands: dict[tuple[float, int | None], list[Mapping[str, Any]]] = {}
    for r in rows:
        if r["status"] in _FINISHED:
            cands.setdefault((float(r["lr"]), _patience(r)), []).append(r)
    if not cands:
        return None

    def score(item):
        (lr, pat), trials = item
        val = math.fsum(_num(t["val_metric"]) if t["status"] == "done" else math.inf for t in trials) / len(trials)
        return (val, lr, -1 if pat is None else pat)

    (lr, pat), trials = min(cands.items(), key=score)
    val_mean = score(((lr, pat), trials))[0]
    tests = [_num(t["test_metric"]) if t["status"] == "done" else math.inf for t in trials]
    mean, std = _stats(tests)
    return Choice(label, lr, pat, val_mean, mean, std, len(trials), len(cands))


def build_report(rows: Sequence[Mapping[str, Any]], low_limit: float = LOW_BUDGET_LIMIT, *,
                 rank_labels: Collection[str] | None = None,
                 metric_names: Mapping[str, str] | None = None) -> Report:
    """Select, aggregate and rank the trials of a study (see the module docstring for the exact protocol).

    ``rows`` are ``Store.rows()`` dicts. ``rank_labels`` restricts Table 1 to these schedule labels (default: all
    but plateau, which is merged into step). ``metric_names`` maps task -> metric name for the tables (default:
    from the task registry when the task is known).
    """
    if not (isinstance(low_limit, (int, float)) and 0 < low_limit <= 100):
        raise ValueError(f"low_limit must be a budget percent in (0, 100], got {low_limit!r}")
    rows = list(rows)
    for r in rows:
        if r.get("status") not in ("done", "diverged", "failed"):
            raise ValueError(f"row {r.get('key')!r} has unknown status {r.get('status')!r}; "
                             "choose from done, diverged, failed")
    labels = schedule_order({r["label"] for r in rows})
    if rank_labels is None:
        ranked = [x for x in labels if x != "plateau"]
        if "plateau" in labels and "step" not in ranked:
            ranked = schedule_order(ranked + ["step"])
    else:
        unknown = sorted(set(rank_labels) - set(labels) - {"step"})
        if unknown:
            raise ValueError(f"rank_labels {unknown} are not in the study; labels present: {', '.join(labels)}")
        ranked = schedule_order(x for x in rank_labels if x != "plateau")

    groups: dict[tuple[str, str, float], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["optimizer"], float(r["budget"])), []).append(r)
    opt_pos = {o: i for i, o in enumerate(OPTIMIZERS)}
    keys = sorted(groups, key=lambda k: (k[0], opt_pos.get(k[1], len(opt_pos)), k[1], k[2]))

    settings: list[Setting] = []
    missing: list[dict[str, Any]] = []
    for task, opt, budget in keys:
        grows = groups[(task, opt, budget)]
        by_label: dict[str, list[Mapping[str, Any]]] = {}
        for r in grows:
            by_label.setdefault(r["label"], []).append(r)
        results = {}
        for label in labels:
            ch = _choose(label, by_label.get(label, []))
            if ch is not None:
                results[label] = ch
        # Table-1 values: step stands for the better of step and plateau.
        compete: dict[str, float] = {}
        stood_for_step = None
        for label in ranked:
            if label == "step" and "plateau" in results:
                best = results.get("step")
                if best is None or _less(results["plateau"].mean, best.mean):
                    best, stood_for_step = results["plateau"], "plateau"
                compete["step"] = best.mean
            elif label in results:
                compete[label] = results[label].mean
        ranks = _competition_ranks(compete)
        for label, rank in ranks.items():
            if label in results:
                results[label] = _replace(results[label], rank=rank,
                                          ranked_as=stood_for_step if label == "step" else None)
            else:  # step missing, plateau stands for it
                p = results["plateau"]
                results["step"] = Choice("step", p.lr, p.patience, p.val_mean, p.mean, p.std, p.n, 0, rank, "plateau")
        split = "low" if budget < low_limit else "high"
        absent = [x for x in labels if x not in results or results[x].n_candidates == 0]
        settings.append(Setting(task, opt, budget, split, {k: results[k] for k in schedule_order(results)}, absent))
        missing.extend(_missing_trials(task, opt, budget, grows, labels))

    table1 = _table1(settings, ranked)
    names = dict(metric_names or {})
    for task in {s.task for s in settings}:
        names.setdefault(task, _metric_name(task))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "diverged", "failed")}
    return Report(settings, table1, labels, ranked, missing, len(rows), counts["done"], counts["diverged"],
                  counts["failed"], float(low_limit), names)


def _replace(c: Choice, **kw: Any) -> Choice:
    from dataclasses import replace

    return replace(c, **kw)


def _missing_trials(task: str, opt: str, budget: float, grows: list[Mapping[str, Any]],
                    labels: list[str]) -> list[dict[str, Any]]:
    """Trials the setting's own grid implies but that have no finished result, and schedules absent altogether.

    The implied grid: every label of the study x every LR seen in the setting (x every patience seen, for
    plateau) x every seed seen in the setting.
    """
    where = {"task": task, "optimizer": opt, "budget": budget}
    lrs = sorted({float(r["lr"]) for r in grows})
    seeds = sorted({int(r["seed"]) for r in grows})
    pats = sorted({p for r in grows if (p := _patience(r)) is not None}) or [None]
    status = {(r["label"], float(r["lr"]), _patience(r), int(r["seed"])): r for r in grows}
    out = []
    for label in labels:
        have = [r for r in grows if r["label"] == label and r["status"] in _FINISHED]
        if not have:
            failed = [r for r in grows if r["label"] == label]
            why = f"all {len(failed)} trial(s) failed" if failed else "not run"
            out.append({**where, "schedule": label, "lr": None, "patience": None, "seed": None,
                        "reason": f"schedule missing in this setting: {why}"})
            continue
        for lr in lrs:
            for pat in (pats if label == "plateau" else [None]):
                for seed in seeds:
                    r = status.get((label, lr, pat, seed))
                    if r is not None and r["status"] in _FINISHED:
                        continue
                    reason = "not run" if r is None else f"failed: {r.get('error') or 'no error message'}"
                    out.append({**where, "schedule": label, "lr": lr, "patience": pat, "seed": seed,
                                "reason": reason})
    return out


def _table1(settings: list[Setting], ranked: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for label in ranked:
        table[label] = {}
        for split in SPLITS:
            ranks = [s.results[label].rank for s in settings
                     if (split == "overall" or s.split == split) and label in s.results
                     and s.results[label].rank is not None]
            n = len(ranks)
            n1 = sum(r == 1 for r in ranks)
            n3 = sum(r <= 3 for r in ranks)
            table[label][split] = {"top1": n1 / n if n else None, "top3": n3 / n if n else None,
                                   "n": n, "n_top1": n1, "n_top3": n3}
    return table


# ---------------------------------------------------------------------------------------------------------------
# rendering


def _f(x: float) -> float | None:
    return x if math.isfinite(x) else None


def to_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (no NaN/inf: a diverged result has ``mean: null, diverged: true``)."""
    settings = []
    for s in report.settings:
        scheds = {}
        for label, c in s.results.items():
            scheds[label] = {
                "lr": c.lr, "patience": c.patience, "val_mean": _f(c.val_mean), "mean": _f(c.mean),
                "std": _f(c.std), "n": c.n, "diverged": c.diverged, "rank": c.rank, "ranked_as": c.ranked_as,
            }
        settings.append({"task": s.task, "optimizer": s.optimizer, "budget": s.budget, "split": s.split,
                         "metric": report.metric_names.get(s.task), "schedules": scheds, "missing": list(s.missing)})
    return {
        "n_trials": report.n_trials,
        "n_trials_done": report.n_trials_done,
        "n_trials_diverged": report.n_trials_diverged,
        "n_trials_failed": report.n_trials_failed,
        "n_settings": len(report.settings),
        "low_limit": report.low_limit,
        "protocol": {
            "selection": "per setting and schedule, the LR (and plateau patience) with the lowest mean validation "
                         "metric over seeds; diverged = +inf, failed = missing",
            "reported": "mean and sample std (ddof=1; 0 for one seed) of the test metric of the chosen candidate",
            "ranking": "competition ranking (ties share a rank: 1, 1, 3); plateau merged into step",
            "low_budget": f"budget < {report.low_limit:g} %",
        },
        "table1": report.table1,
        "settings": settings,
        "missing": list(report.missing),
    }


def _pct(cell: Mapping[str, Any], key: str) -> str:
    if cell[key] is None:
        return "—"
    return f"{100 * cell[key]:.0f}% ({cell['n_' + key]}/{cell['n']})"


def _cell(c: Choice | None) -> str:
    if c is None:
        return "—"
    if c.diverged:
        return "diverged"
    if abs(c.mean) >= 1:  # the paper's two decimals for errors in %, losses and nll
        return f"{c.mean:.2f} ± {c.std:.2f}"
    return f"{c.mean:.4g} ± {c.std:.2g}"  # bits/char and other small metrics keep 4 significant digits


def _best_labels(s: Setting) -> set[str]:
    finite = {k: c.mean for k, c in s.results.items() if not c.diverged and not (k == "step" and c.n_candidates == 0)}
    if not finite:
        return set()
    best = min(finite.values())
    return {k for k, v in finite.items() if not _less(best, v)}


def _task_tables(report: Report) -> list[tuple[str, str, list[float], list[tuple[str, str, list[tuple[str, bool]]]]]]:
    """Per task: (task, metric, budgets, rows), rows = (optimizer, label, [(cell text, is_best)])."""
    out = []
    for task in sorted({s.task for s in report.settings}):
        ss = [s for s in report.settings if s.task == task]
        budgets = sorted({s.budget for s in ss})
        rows = []
        for opt in [o for o in OPTIMIZERS if any(s.optimizer == o for s in ss)] + sorted(
                {s.optimizer for s in ss} - set(OPTIMIZERS)):
            by_budget = {s.budget: s for s in ss if s.optimizer == opt}
            labels = schedule_order({k for s in by_budget.values() for k, c in s.results.items()
                                     if not (k == "step" and c.n_candidates == 0)})
            for label in labels:
                cells = []
                for b in budgets:
                    s = by_budget.get(b)
                    c = None if s is None else s.results.get(label)
                    if c is not None and label == "step" and c.n_candidates == 0:
                        c = None  # a plateau stand-in, not a step result
                    cells.append((_cell(c), s is not None and c is not None and label in _best_labels(s)))
                rows.append((opt, label, cells))
        out.append((task, report.metric_names.get(task, "metric"), budgets, rows))
    return out


def _budget(b: float) -> str:
    return f"{b:g}%"


def _missing_lines(report: Report) -> list[str]:
    lines = []
    for m in report.missing:
        what = f"{m['task']} / {m['optimizer']} / {_budget(m['budget'])} / {m['schedule']}"
        if m["lr"] is not None:
            what += f" / lr={m['lr']:g}"
            if m["patience"] is not None:
                what += f" / patience={m['patience']}"
            what += f" / seed={m['seed']}"
        lines.append(f"{what}: {m['reason']}")
    return lines


def to_markdown(report: Report) -> str:
    """Markdown: summary, Table 1, one table per task (best mean per column in bold), missing trials."""
    n_low = sum(s.split == "low" for s in report.settings)
    out = [
        "# Budgeted-training study report",
        "",
        f"Trials: {report.n_trials_done} done, {report.n_trials_diverged} diverged, {report.n_trials_failed} failed. "
        f"Settings (task x optimizer x budget): {len(report.settings)} ({n_low} low budget < {report.low_limit:g} %, "
        f"{len(report.settings) - n_low} high).",
        "",
        "LR (and plateau patience) chosen per setting by mean validation metric over seeds; cells give the test "
        "metric of that choice as mean ± sample std (ddof=1) over seeds; lower is better. Ties share a rank "
        "(competition ranking 1, 1, 3). In Table 1 plateau is merged into step (the better of the two counts).",
        "",
        "## Table 1: share of settings where each schedule is Top-1 / Top-3",
        "",
        f"| Schedule | Low Top-1 | Low Top-3 | High Top-1 | High Top-3 | Overall Top-1 | Overall Top-3 |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in sorted(report.ranked_labels, key=lambda x: (-(report.table1[x]["overall"]["top1"] or 0),
                                                             -(report.table1[x]["overall"]["top3"] or 0), x)):
        t = report.table1[label]
        shown = "step (incl. plateau)" if label == "step" and "plateau" in report.labels else label
        out.append(f"| {shown} | " + " | ".join(_pct(t[sp], k) for sp in SPLITS for k in ("top1", "top3")) + " |")
    for task, metric, budgets, rows in _task_tables(report):
        out += ["", f"## {task}: test {metric} (best per column in bold)", "",
                "| | " + " | ".join(_budget(b) for b in budgets) + " |",
                "|---|" + "---|" * len(budgets)]
        last_opt = None
        for opt, label, cells in rows:
            if opt != last_opt:
                out.append(f"| **{opt.upper()}** |" + " |" * len(budgets))
                last_opt = opt
            out.append(f"| + {label} | " + " | ".join(f"**{t}**" if best else t for t, best in cells) + " |")
    out += ["", "## Missing trials", ""]
    lines = _missing_lines(report)
    out += [f"- {x}" for x in lines] if lines else ["None: every trial of the grid has a result."]
    return "\n".join(out) + "\n"


CSV_COLUMNS = ("task", "optimizer", "budget", "split", "schedule", "status", "lr", "patience", "val_mean", "mean",
               "std", "n", "rank", "ranked_as")


def to_csv(report: Report) -> str:
    """One row per setting x schedule label of the study; ``status`` is ok, diverged or missing."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for s in report.settings:
        for label in schedule_order(set(report.labels) | set(s.results)):
            c = s.results.get(label)
            base = {"task": s.task, "optimizer": s.optimizer, "budget": s.budget, "split": s.split, "schedule": label}
            if c is None or (label == "step" and c.n_candidates == 0):
                w.writerow({**base, "status": "missing",
                            "rank": "" if c is None else c.rank, "ranked_as": "" if c is None else c.ranked_as})
                continue
            w.writerow({**base, "status": "diverged" if c.diverged else "ok", "lr": c.lr,
                        "patience": "" if c.patience is None else c.patience,
                        "val_mean": "" if math.isinf(c.val_mean) else repr(c.val_mean),
                        "mean": "" if c.diverged else repr(c.mean), "std": "" if c.diverged else repr(c.std),
                        "n": c.n, "rank": "" if c.rank is None else c.rank, "ranked_as": c.ranked_as or ""})
    return buf.getvalue()


def render_rich(report: Report, console: Any) -> None:
    """Print the report to a ``rich.console.Console``: Table 1, per-task tables (best highlighted), missing."""
    from rich.table import Table

    n_low = sum(s.split == "low" for s in report.settings)
    console.print(f"[bold]Trials[/]: {report.n_trials_done} done, {report.n_trials_diverged} diverged, "
                  f"{report.n_trials_failed} failed; {len(report.settings)} settings ({n_low} low budget, "
                  f"{len(report.settings) - n_low} high). LR chosen by validation; test metric mean ± sample std.")
    t1 = Table(title="Table 1: share of settings where each schedule is Top-1 / Top-3 (plateau merged into step)")
    t1.add_column("Schedule")
    for sp in SPLITS:
        for k in ("Top-1", "Top-3"):
            t1.add_column(f"{sp.capitalize()} {k}", justify="right")
    for label in sorted(report.ranked_labels, key=lambda x: (-(report.table1[x]["overall"]["top1"] or 0),
                                                             -(report.table1[x]["overall"]["top3"] or 0), x)):
        t = report.table1[label]
        t1.add_row(label, *[_pct(t[sp], k) for sp in SPLITS for k in ("top1", "top3")],
                   style="bold magenta" if label == "rex" else None)
    console.print(t1)
    for task, metric, budgets, rows in _task_tables(report):
        tt = Table(title=f"{task}: test {metric} (lower is better; best per column highlighted)")
        tt.add_column("Optimizer + schedule")
        for b in budgets:
            tt.add_column(_budget(b), justify="right")
        for opt, label, cells in rows:
            tt.add_row(f"{opt} + {label}", *[f"[bold green]{t}[/]" if best else t for t, best in cells])
        console.print(tt)
    lines = _missing_lines(report)
    if lines:
        console.print(f"[bold yellow]Missing trials ({len(lines)}):[/]")
        for x in lines:
            console.print(f"  {x}", markup=False)
    else:
        console.print("No missing trials.")
