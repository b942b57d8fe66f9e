"""Study report: the REX paper's Table 1 and its per-task tables (Tables 4-9), with their uncertainty, from the rows
of a results store.

Protocol (REX paper, section 5 and Table 1; ``docs/architecture.md``):

* A *setting* is one task x optimizer x budget. Within it, each schedule label has *candidates*: its initial LRs
  (and, for ``plateau``, its patience values).
* **Selection by validation.** A candidate's score is the mean final *validation* metric over its seeds (lower is
  better). A ``diverged`` trial scores +inf (so does a candidate with any diverged seed); a ``failed`` trial is
  *missing* (left out of the mean, listed in ``Report.missing``), never a loss. The candidate with the lowest score
  is chosen; equal scores go to the smaller LR, then the smaller patience (never to the better test metric).
* **Reported value.** The *test* metric of the chosen candidate over its seeds: mean and *sample* standard
  deviation (``ddof=1``) when it has n > 1 seeds (n = 1: no spread, shown as ``n=1``). If the chosen candidate
  diverged (every candidate did), the schedule's result is +inf ("diverged"): it ranks last and counts.
* **Plateau into step** (as in the paper's Table 1): in each setting the ``step`` row of Table 1 stands for
  whichever of step's and plateau's chosen results has the lower *validation* mean (step on a tie); plateau is not
  ranked on its own. The per-task tables still show plateau as its own row, as the paper's Tables 4-9 do. A plateau
  trial whose patience can never trigger within its budget reuses the constant trial of the same LR and seed
  (row field ``stand_in == "constant"``); it is labelled so and still stands in for step.
* **Ranking.** Per setting, the Table-1 schedules are ranked by that mean test metric with *competition ranking*:
  tied schedules share a rank and the next rank is skipped (1, 1, 3). Two means tie when they differ by at most
  1e-9 relative. Top-1 = rank 1, Top-3 = rank <= 3.
* **Table 1** gives, per schedule, the share of settings where it is Top-1 and Top-3, split into low budgets
  (``budget < low_limit``, 25 % by default), high budgets and overall. The denominator of a schedule's share is
  the number of settings in which it has a result; settings where it is missing are listed, not counted as losses.
  Two budgets of one task and optimizer whose runs have the same ``total_steps`` are one run: Table 1 counts that
  setting once, under the largest of those budgets (rounding is upward, so it is the closest to the real length),
  and the report says so.

Uncertainty (:mod:`budgetsched.bench.analysis.stats` explains the method and why): every setting is redrawn ``resamples``
times with paired seed weights (the same for every candidate of the setting); inside every draw the LR (and
patience) selection, the plateau-into-step merge and the ranking are redone. From the draws:

* each schedule's 95 % interval of its reported mean, and its probability of being Top-1 and Top-3;
* ``gap``: runner-up minus best of the setting (paired); the setting is *tied within noise* when its 95 % interval
  contains 0;
* ``vs_reference``: each schedule minus the reference schedule (``reference``, default ``linear``), paired;
* ``vs_best_other``: the subject schedule (``subject``, default ``rex``) minus the best other Table-1 schedule,
  the other one chosen *by validation* inside every draw (choosing it by test would pick the luckiest rival);
* Table 1 shares and the per-budget summaries across settings get 95 % intervals from nested draws: the seed draws
  of each setting, then Bayesian-bootstrap weights over the settings.

With one seed there is nothing to resample: probabilities and intervals are ``None`` and shown as ``n=1``.

``build_report`` computes everything into a :class:`Report`; ``to_json``, ``to_markdown``, ``to_csv`` and
``render_rich`` only format it.
"""
from __future__ import annotations

import csv
import io
import math
import os
import statistics
from dataclasses import dataclass, field, replace
from typing import Any, Collection, Iterable, Mapping, Sequence

import numpy as np

from budgetsched.bench.analysis import stats
from budgetsched.bench.protocol import selection
from budgetsched.bench.protocol.grid import LOW_BUDGET_LIMIT, OPTIMIZERS
from budgetsched.bench.protocol.status import FINISHED, STATUSES, Status
from budgetsched.errors import UsageError

__all__ = ["Choice", "Ranked", "Difference", "Setting", "Report", "LrPoint", "build_report", "to_json",
           "to_markdown", "to_csv", "render_rich", "schedule_order", "metric_name", "metric_value", "patience_of",
           "lr_points", "DEFAULT_REFERENCE", "DEFAULT_SUBJECT", "CSV_COLUMNS"]

SPLITS = ("low", "high", "overall")
#: Reference schedule of the paired differences when the study has it (``--reference``).
DEFAULT_REFERENCE = "linear"
#: Schedule compared with the reference and with the best other schedule per budget (``--subject``).
DEFAULT_SUBJECT = "rex"
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
    std: float  # sample std (ddof=1) if n > 1; 0 if n == 1 (shown as "n=1", never as "± 0"); nan if diverged
    n: int  # seeds averaged
    n_candidates: int  # LRs (x patiences) of this schedule with a finished trial in this setting
    rank: int | None = None  # Table-1 rank in the setting; None for plateau (merged into step) or unranked labels
    ranked_as: str | None = None  # "plateau" on the step row when plateau's result stood for step
    lo: float | None = None  # 95 % interval of the mean test metric, LR re-selected in every draw; None if n < 2
    hi: float | None = None
    p_top1: float | None = None  # probability of rank 1 over the draws (step: step incl. plateau); None if n < 2
    p_top3: float | None = None
    lr_grid: tuple[float, ...] = ()  # the LRs this schedule was run at in this setting (any status)
    stand_in: str | None = None  # "constant": the chosen plateau trials reuse constant's (patience never triggers)

    @property
    def diverged(self) -> bool:
        return math.isinf(self.mean)

    @property
    def lr_edge(self) -> str | None:
        """Where the chosen LR sits in ``lr_grid``: "low" (smallest) or "high" (largest), where the best LR may lie
        outside the grid; "only" for a one-LR grid; None inside the grid."""
        if not self.lr_grid:
            return None
        if len(self.lr_grid) == 1:
            return "only"
        if self.lr == min(self.lr_grid):
            return "low"
        if self.lr == max(self.lr_grid):
            return "high"
        return None


@dataclass(frozen=True)
class Ranked:
    """One Table-1 competitor of a setting: ``source`` is the label whose result stands ("plateau" for step)."""

    label: str
    source: str
    mean: float
    rank: int
    p_top1: float | None
    p_top3: float | None


@dataclass(frozen=True)
class Difference:
    """A paired difference ``label - against`` of mean test metrics (lower is better: negative = ``label`` better).

    ``value`` is the point estimate (+inf if only ``label`` diverged, -inf if only ``against`` did, nan if both);
    ``lo`` / ``hi`` its 95 % interval (None with one seed); ``relative`` = value / |mean of against|.
    """

    label: str
    against: str
    value: float
    lo: float | None
    hi: float | None
    relative: float | None
    n: int  # seeds of the setting

    @property
    def clear(self) -> str | None:
        """The interval's verdict: "better" when it lies below 0, "worse" above 0, None when it contains 0 or is
        absent (one seed, a diverged side)."""
        if self.lo is None or self.hi is None:
            return None
        if self.hi < 0:
            return "better"
        if self.lo > 0:
            return "worse"
        return None


@dataclass
class Setting:
    """One task x optimizer x budget with each schedule's chosen result, its ranking and their uncertainty."""

    task: str
    optimizer: str
    budget: float
    split: str  # "low" or "high"
    results: dict[str, Choice]  # every schedule with a finished trial (plateau included), display order
    missing: list[str]  # schedule labels of the study with no finished trial in this setting
    n_seeds: int = 0  # distinct seeds with a finished trial in this setting
    ranking: dict[str, Ranked] = field(default_factory=dict)  # Table-1 competitors
    best: str | None = None  # the Table-1 label ranked first (display order among ties)
    runner_up: str | None = None
    gap: Difference | None = None  # runner_up - best, paired
    tied: bool | None = None  # True when gap's 95 % interval contains 0; None with one seed or one competitor
    vs_reference: dict[str, Difference] = field(default_factory=dict)
    vs_best_other: Difference | None = None
    total_steps: int | None = None
    budget_unit: str | None = None
    same_run_as: float | None = None  # the budget under which this same run is counted in Table 1

    @property
    def counted(self) -> bool:
        """Counted in Table 1 (False for a budget that is the same run as a larger budget of the study)."""
        return self.same_run_as is None


@dataclass
class Report:
    """Everything the renderers need. Build it with :func:`build_report`."""

    settings: list[Setting]
    table1: dict[str, dict[str, dict[str, Any]]]  # label -> split -> cell (see build_report)
    labels: list[str]  # every schedule label, display order
    ranked_labels: list[str]  # labels in Table 1
    missing: list[dict[str, Any]]
    n_trials: int
    n_trials_done: int
    n_trials_diverged: int
    n_trials_failed: int
    low_limit: float
    metric_names: dict[str, str] = field(default_factory=dict)
    reference: str | None = None
    subject: str | None = None
    uncertainty: dict[str, Any] = field(default_factory=dict)  # method, resamples, seed, confidence
    by_budget: list[dict[str, Any]] = field(default_factory=list)  # subject vs reference / best other per budget
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # budgets that are one run


@dataclass(frozen=True)
class LrPoint:
    """One LR of one schedule in one setting (Figure 3): mean over seeds with its Student-t 95 % interval."""

    lr: float
    patience: int | None
    mean: float  # +inf if any seed diverged
    lo: float | None
    hi: float | None
    n: int


# ---------------------------------------------------------------------------------------------------------------
# row helpers (public: the plots use them)


#: A stored metric as a score: None / NaN / inf mean the run did not produce a usable number -> +inf.
metric_value = selection.metric_score


def patience_of(row: Mapping[str, Any]) -> int | None:
    """A plateau row's patience (in evaluations); None for other schedules."""
    if row["schedule"] != "plateau":
        return None
    p = (row.get("schedule_params") or {}).get("patience")
    return None if p is None else int(p)


def metric_name(task: str) -> str:
    """The task's metric name from the task registry; a generic name for unknown or removed tasks."""
    try:  # the task registry is optional here: rows from unknown or removed tasks still get a report
        from budgetsched.bench.tasks import get_task

        return str(get_task(task).metric_name)
    except Exception:
        return "metric (lower is better)"


def _trial_values(row: Mapping[str, Any]) -> tuple[float, float]:
    return selection.trial_values(row["status"], row["val_metric"], row["test_metric"])


def lr_points(rows: Sequence[Mapping[str, Any]],
              metric: str = "test") -> dict[tuple[str, str, float], dict[str, list[LrPoint]]]:
    """Per setting and schedule label, one :class:`LrPoint` per LR (sorted), from the finished trials.

    ``metric`` is "test" or "val". Plateau uses, at each LR, the patience with the lowest mean validation metric
    (the smaller patience on a tie). The interval is :func:`stats.mean_interval` of the seeds (None with one seed
    or a diverged seed).
    """
    if metric not in ("test", "val"):
        raise ValueError(f"metric must be 'test' or 'val', got {metric!r}")
    groups: dict[tuple[str, str, float], dict[str, dict[float, list[tuple]]]] = {}
    for r in rows:
        if r["status"] in FINISHED:
            g = groups.setdefault((r["task"], r["optimizer"], float(r["budget"])), {})
            g.setdefault(r["label"], {}).setdefault(float(r["lr"]), []).append(
                (patience_of(r), int(r["seed"]), *_trial_values(r)))
    out: dict[tuple[str, str, float], dict[str, list[LrPoint]]] = {}
    for key, by_label in groups.items():
        out[key] = {}
        for label in schedule_order(by_label):
            pts = []
            for lr in sorted(by_label[label]):
                # the patience chosen at this LR: the protocol's choice among this LR's patiences
                cands = selection.candidates(by_label[label][lr], order=lambda p: -1 if p is None else p)
                k = selection.choose_one(selection.seed_means(cands.val))
                pat = cands.keys[k]
                ys = [float(y) for y in (cands.test if metric == "test" else cands.val)[k] if not np.isnan(y)]
                mean = math.inf if any(math.isinf(y) for y in ys) else math.fsum(ys) / len(ys)
                ci = stats.mean_interval(ys)
                pts.append(LrPoint(lr, pat, mean, None if ci is None else ci[1], None if ci is None else ci[2],
                                   len(ys)))
            out[key][label] = pts
    return out


# ---------------------------------------------------------------------------------------------------------------
# building


@dataclass
class _Draws:
    """Per-setting draws (row 0 = point estimate, rows 1.. = resamples) that the study-level summaries reuse."""

    top1: dict[str, np.ndarray]  # Table-1 label -> bool per resample
    top3: dict[str, np.ndarray]
    rel_ref: np.ndarray | None  # subject vs reference, relative, per resample (None if not comparable)
    rel_best: np.ndarray | None


def _setting_stream(seed: int, task: str, opt: str, budget: float) -> np.random.Generator:
    return stats.rng_for(seed, "setting", task, opt, float(budget))


def _analyse(task: str, opt: str, budget: float, grows: list[Mapping[str, Any]], labels: list[str],
             ranked: list[str], reference: str | None, subject: str | None, opts: dict[str, Any]
             ) -> tuple[Setting, _Draws]:
    """Choose, rank and resample one setting (see the module docstring)."""
    by_label: dict[str, dict[tuple[float, int | None], dict[int, Mapping[str, Any]]]] = {}
    grid: dict[str, set[float]] = {}
    for r in grows:
        grid.setdefault(r["label"], set()).add(float(r["lr"]))
        if r["status"] in FINISHED:
            by_label.setdefault(r["label"], {}).setdefault((float(r["lr"]), patience_of(r)), {})[int(r["seed"])] = r
    present = [x for x in labels if x in by_label]
    pos = {x: i for i, x in enumerate(present)}
    # one candidates x seeds array for the whole setting (every candidate shares the seed draws: paired), each
    # label's candidates contiguous and ordered by LR, then patience (the protocol's tie order)
    cands = selection.candidates(
        [((label, lr, pat), s, *_trial_values(r))
         for label in present for (lr, pat), trials in by_label[label].items() for s, r in trials.items()],
        order=lambda k: (pos[k[0]], k[1], -1 if k[2] is None else k[2]))
    cand_keys, val, test = cands.keys, cands.val, cands.test

    n_seeds = len(cands.seeds)
    resampled = n_seeds >= 2
    draws = stats.SeedDraws(n_seeds, opts["resamples"], _setting_stream(opts["seed"], task, opt, budget),
                            opts["method"])
    mval = np.vstack([selection.seed_means(val)[None], draws.means(val, convex=True)])  # (1 + B, K); selection only
    mtest = np.vstack([selection.seed_means(test)[None], draws.means(test)])
    rows_idx = np.arange(mval.shape[0])

    # selection per label, in every draw (ties to the first: the smaller LR, then the smaller patience)
    sel_val: dict[str, np.ndarray] = {}
    sel_test: dict[str, np.ndarray] = {}
    results: dict[str, Choice] = {}
    start = 0
    for label in present:
        stop = start + len(by_label[label])
        pick = start + selection.choose(mval[:, start:stop])
        n_cands, start = stop - start, stop
        sel_val[label], sel_test[label] = mval[rows_idx, pick], mtest[rows_idx, pick]
        k0 = int(pick[0])
        _, lr, pat = cand_keys[k0]
        trials = by_label[label][(lr, pat)]
        tests = [v for v in test[k0] if not np.isnan(v)]
        mean = float(mtest[0, k0])
        std = math.nan if math.isinf(mean) else (statistics.stdev(tests) if len(tests) > 1 else 0.0)
        lo = hi = None
        if resampled and math.isfinite(mean):
            lo_, hi_ = stats.interval(sel_test[label][1:], opts["confidence"])
            lo, hi = float(lo_), float(hi_)
        stand = {r.get("stand_in") for r in trials.values()}
        results[label] = Choice(label, lr, pat, float(mval[0, k0]), mean, std, len(tests), n_cands, lo=lo, hi=hi,
                                lr_grid=tuple(sorted(grid.get(label, ()))),
                                stand_in=next(iter(stand)) if len(stand) == 1 else None)

    # Table-1 competitors: step stands for the better of step and plateau *by validation* (step on a tie)
    comp_test: dict[str, np.ndarray] = {}
    comp_val: dict[str, np.ndarray] = {}
    comp_src: dict[str, str] = {}
    for label in ranked:
        if label == "step" and "plateau" in results:
            if "step" in results:
                comp_val["step"], comp_test["step"], use_p = selection.merge_plateau(
                    sel_val["step"], sel_test["step"], sel_val["plateau"], sel_test["plateau"])
                comp_src["step"] = "plateau" if use_p[0] else "step"
            else:
                comp_test["step"], comp_val["step"] = sel_test["plateau"], sel_val["plateau"]
                comp_src["step"] = "plateau"
        elif label in results:
            comp_test[label], comp_val[label], comp_src[label] = sel_test[label], sel_val[label], label
    names = list(comp_test)
    top1: dict[str, np.ndarray] = {}
    top3: dict[str, np.ndarray] = {}
    ranking: dict[str, Ranked] = {}
    best = runner_up = None
    gap = None
    tied = None
    if names:
        C = np.stack([comp_test[x] for x in names], axis=1)  # (1 + B, R)
        ranks = selection.competition_ranks(C)
        for i, label in enumerate(names):
            top1[label], top3[label] = ranks[1:, i] == 1, ranks[1:, i] <= 3
            p1 = float(top1[label].mean()) if resampled else None
            p3 = float(top3[label].mean()) if resampled else None
            ranking[label] = Ranked(label, comp_src[label], float(C[0, i]), int(ranks[0, i]), p1, p3)
            src = comp_src[label]
            if label in results:
                results[label] = replace(results[label], rank=int(ranks[0, i]), p_top1=p1, p_top3=p3,
                                         ranked_as="plateau" if label == "step" and src == "plateau" else None)
        order = sorted(range(len(names)), key=lambda i: (ranks[0, i], C[0, i], i))
        best = names[order[0]]
        if len(names) > 1:
            runner_up = names[order[1]]
            gap = _difference(runner_up, best, comp_test[runner_up], comp_test[best], n_seeds, opts)
            if resampled:  # both diverged: equal; only the runner-up diverged: clear
                tied = (True if math.isnan(gap.value) else False if math.isinf(gap.value)
                        else bool(gap.lo <= 0.0 <= gap.hi))

    vs_ref: dict[str, Difference] = {}
    if reference is not None and reference in results:
        for label in results:
            if label != reference:
                vs_ref[label] = _difference(label, reference, sel_test[label], sel_test[reference], n_seeds, opts)
    vs_best = None
    rel_best = None
    if subject is not None and subject in comp_test and len(names) > 1:
        others = [x for x in names if x != subject]
        ov = np.stack([comp_val[x] for x in others], axis=1)
        ot = np.stack([comp_test[x] for x in others], axis=1)
        pick = selection.choose(ov)  # the best other schedule by validation, in every draw
        other_test = ot[rows_idx, pick]
        vs_best = _difference(subject, others[int(pick[0])], comp_test[subject], other_test, n_seeds, opts)
        rel_best = _relative_draws(comp_test[subject], other_test)
    rel_ref = None
    if subject is not None and reference is not None and subject in results and reference in results \
            and subject != reference:
        rel_ref = _relative_draws(sel_test[subject], sel_test[reference])

    split = "low" if budget < opts["low_limit"] else "high"
    setting = Setting(task, opt, budget, split, {k: results[k] for k in schedule_order(results)},
                      [x for x in labels if x not in results], n_seeds, ranking, best, runner_up, gap, tied,
                      vs_ref, vs_best)
    steps = {r.get("total_steps") for r in grows}
    units = {r.get("budget_unit") or (r.get("config") or {}).get("budget_unit") for r in grows}
    setting.total_steps = int(next(iter(steps))) if len(steps) == 1 and None not in steps else None
    setting.budget_unit = next(iter(units)) if len(units) == 1 else None
    return setting, _Draws(top1, top3, rel_ref, rel_best)


def _difference(label: str, against: str, a: np.ndarray, b: np.ndarray, n_seeds: int,
                opts: Mapping[str, Any]) -> Difference:
    """Paired ``a - b`` (row 0 the point estimate, rows 1.. the draws) as a :class:`Difference`."""
    with np.errstate(invalid="ignore"):
        d = a - b
    value = float(d[0])
    lo = hi = None
    if n_seeds >= 2 and math.isfinite(value):
        lo_, hi_ = stats.interval(d[1:], opts["confidence"])
        lo, hi = float(lo_), float(hi_)
    rel = value / abs(float(b[0])) if math.isfinite(value) and math.isfinite(b[0]) and b[0] != 0 else None
    return Difference(label, against, value, lo, hi, rel, n_seeds)


def _relative_draws(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """(a - b) / |b at the point estimate| per resample (a fixed scale: dividing by b's own draw would make the
    ratio explode whenever a draw of b nears 0, as heavy-tailed draws at 2 seeds do); None when either side is not
    finite or b is 0 at the point estimate."""
    if not (np.isfinite(a[0]) and np.isfinite(b[0]) and b[0] != 0):
        return None
    with np.errstate(invalid="ignore"):
        return (a[1:] - b[1:]) / abs(float(b[0]))


def _mark_same_runs(settings: list[Setting]) -> list[dict[str, Any]]:
    """Budgets of one task x optimizer with equal ``total_steps`` are one run: count the largest budget only."""
    groups: dict[tuple[str, str, int], list[Setting]] = {}
    for s in settings:
        if s.total_steps is not None:
            groups.setdefault((s.task, s.optimizer, s.total_steps), []).append(s)
    full = {(s.task, s.optimizer): s.total_steps for s in settings if s.budget == 100.0 and s.total_steps}
    out = []
    for (task, opt, steps), ss in groups.items():
        if len(ss) < 2:
            continue
        ss = sorted(ss, key=lambda s: s.budget)
        keep = ss[-1].budget
        for s in ss[:-1]:
            s.same_run_as = keep
        real = full.get((task, opt))
        out.append({"task": task, "optimizer": opt, "total_steps": steps, "budgets": [s.budget for s in ss],
                    "counted_as": keep, "real_percent": 100.0 * steps / real if real else None,
                    "budget_unit": ss[-1].budget_unit})
    return out


def _resolve(name: str | None, default: str, pool: list[str], what: str, hint: str = "") -> str | None:
    if name is None:
        return default if default in pool else None
    if name not in pool:
        raise UsageError(f"{what} {name!r} is not {hint or 'in the study'}; choose from "
                         f"{', '.join(pool) if pool else 'none (the study has no schedules)'}")
    return name


def build_report(rows: Sequence[Mapping[str, Any]], low_limit: float = LOW_BUDGET_LIMIT, *,
                 rank_labels: Collection[str] | None = None,
                 metric_names: Mapping[str, str] | None = None,
                 reference: str | None = None, subject: str | None = None,
                 resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0, method: str = "t") -> Report:
    """Select, aggregate, rank and resample the trials of a study (see the module docstring for the protocol).

    ``rows`` are ``Store.rows()`` dicts. ``rank_labels`` restricts Table 1 to these schedule labels (default: all
    but plateau, which is merged into step). ``metric_names`` maps task -> metric name for the tables (default:
    from the task registry when the task is known). ``reference`` is the schedule every other one is compared with
    (default ``linear`` when the study has it); ``subject`` the schedule compared with the reference and with the
    best other schedule per budget (default ``rex`` when Table 1 has it). ``resamples`` draws per setting,
    ``seed`` their seed, ``method`` the seed-level resampling (:data:`stats.METHODS`).

    Table-1 cells (``report.table1[label][split]``): ``top1`` / ``top3`` shares (None without settings), ``n``
    settings, ``n_top1`` / ``n_top3`` counts, ``top1_ci`` / ``top3_ci`` 95 % intervals ([lo, hi] or None),
    ``n_clear_top1``: Top-1 finishes in settings not tied within noise.
    """
    if not (isinstance(low_limit, (int, float)) and 0 < low_limit <= 100):
        raise UsageError(f"low_limit must be a budget percent in (0, 100], got {low_limit!r}")
    stats.check_options(method, resamples, seed)
    rows = list(rows)
    for r in rows:
        try:
            Status(r.get("status"))
        except ValueError:
            raise ValueError(f"row {r.get('key')!r} has unknown status {r.get('status')!r}; "
                             f"choose from {', '.join(STATUSES)}") from None
    labels = schedule_order({r["label"] for r in rows})
    if rank_labels is None:
        ranked = [x for x in labels if x != "plateau"]
        if "plateau" in labels and "step" not in ranked:
            ranked = schedule_order(ranked + ["step"])
    else:
        unknown = sorted(set(rank_labels) - set(labels) - {"step"})
        if unknown:
            raise UsageError(f"rank_labels {unknown} are not in the study; labels present: {', '.join(labels)}")
        ranked = schedule_order(x for x in rank_labels if x != "plateau")
    reference = _resolve(reference, DEFAULT_REFERENCE, labels, "reference schedule")
    subject = _resolve(subject, DEFAULT_SUBJECT, ranked, "subject schedule", "ranked in Table 1")
    opts = {"resamples": int(resamples), "seed": int(seed), "method": method, "confidence": stats.CONFIDENCE,
            "low_limit": float(low_limit)}

    groups: dict[tuple[str, str, float], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["optimizer"], float(r["budget"])), []).append(r)
    opt_pos = {o: i for i, o in enumerate(OPTIMIZERS)}
    keys = sorted(groups, key=lambda k: (k[0], opt_pos.get(k[1], len(opt_pos)), k[1], k[2]))

    settings: list[Setting] = []
    draws: list[_Draws] = []
    missing: list[dict[str, Any]] = []
    for task, opt, budget in keys:
        grows = groups[(task, opt, budget)]
        s, d = _analyse(task, opt, budget, grows, labels, ranked, reference, subject, opts)
        settings.append(s)
        draws.append(d)
        missing.extend(_missing_trials(task, opt, budget, grows, labels))
    duplicates = _mark_same_runs(settings)

    table1 = _table1(settings, draws, ranked, opts)
    by_budget = _by_budget(settings, draws, reference, subject, opts)
    names = dict(metric_names or {})
    for task in {s.task for s in settings}:
        names.setdefault(task, metric_name(task))
    counts = {s: sum(r["status"] == s for r in rows) for s in Status}
    uncertainty = {"method": method, "resamples": int(resamples), "seed": int(seed), "confidence": stats.CONFIDENCE,
                   "seeds_per_setting": sorted({s.n_seeds for s in settings})}
    return Report(settings, table1, labels, ranked, missing, len(rows), counts[Status.DONE],
                  counts[Status.DIVERGED], counts[Status.FAILED], float(low_limit), names, reference, subject,
                  uncertainty, by_budget, duplicates)


def _missing_trials(task: str, opt: str, budget: float, grows: list[Mapping[str, Any]],
                    labels: list[str]) -> list[dict[str, Any]]:
    """Trials the setting's own grid implies but that have no finished result, and schedules absent altogether.

    The implied grid: every label of the study x every LR (and, for plateau, LR and patience) that label has in
    the setting x every seed seen in the setting. LRs are per label because refinement gives each schedule (and
    patience) its own: a schedule never run at an LR that others ran is not a missing trial.
    """
    where = {"task": task, "optimizer": opt, "budget": budget}
    seeds = sorted({int(r["seed"]) for r in grows})
    status = {(r["label"], float(r["lr"]), patience_of(r), int(r["seed"])): r for r in grows}
    out = []
    for label in labels:
        have = [r for r in grows if r["label"] == label and r["status"] in FINISHED]
        if not have:
            failed = [r for r in grows if r["label"] == label]
            why = f"all {len(failed)} trial(s) failed" if failed else "not run"
            out.append({**where, "schedule": label, "lr": None, "patience": None, "seed": None,
                        "reason": f"schedule missing in this setting: {why}"})
            continue
        cands = sorted({(float(r["lr"]), patience_of(r) if label == "plateau" else None)
                        for r in grows if r["label"] == label}, key=lambda c: (c[0], c[1] or 0))
        for lr, pat in cands:
            for seed in seeds:
                r = status.get((label, lr, pat, seed))
                if r is not None and r["status"] in FINISHED:
                    continue
                reason = "not run" if r is None else f"failed: {r.get('error') or 'no error message'}"
                out.append({**where, "schedule": label, "lr": lr, "patience": pat, "seed": seed,
                            "reason": reason})
    return out


def _in_split(s: Setting, split: str) -> bool:
    return s.counted and (split == "overall" or s.split == split)


def _table1(settings: list[Setting], draws: list[_Draws], ranked: list[str],
            opts: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Shares with nested 95 % intervals: each setting's own draws, then Dirichlet weights over the settings."""
    table: dict[str, dict[str, dict[str, Any]]] = {x: {} for x in ranked}
    for split in SPLITS:
        idx = [i for i, s in enumerate(settings) if _in_split(s, split)]
        w = stats.setting_weights(stats.rng_for(opts["seed"], "table1", split), opts["resamples"], len(idx))
        for label in ranked:
            have = [j for j, i in enumerate(idx) if label in settings[i].ranking]
            ranks = [settings[idx[j]].ranking[label].rank for j in have]
            n = len(ranks)
            n1 = sum(r == 1 for r in ranks)
            n3 = sum(r <= 3 for r in ranks)
            clear = sum(settings[idx[j]].ranking[label].rank == 1 and settings[idx[j]].tied is False for j in have)
            cell: dict[str, Any] = {"top1": n1 / n if n else None, "top3": n3 / n if n else None, "n": n,
                                    "n_top1": n1, "n_top3": n3, "n_clear_top1": clear,
                                    "top1_ci": None, "top3_ci": None}
            if n:
                ww = w[:, have]
                ww = ww / ww.sum(axis=1, keepdims=True)
                for key, attr in (("top1_ci", "top1"), ("top3_ci", "top3")):
                    ind = np.stack([getattr(draws[idx[j]], attr)[label] for j in have], axis=1)  # (B, n)
                    share = np.round((ww * ind).sum(axis=1), 12)  # a share of all-ones is 1, not 1 - 2e-16
                    lo, hi = stats.interval(share, opts["confidence"])
                    cell[key] = [float(lo), float(hi)]
            table[label][split] = cell
    return table


def _by_budget(settings: list[Setting], draws: list[_Draws], reference: str | None, subject: str | None,
               opts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per budget: the subject against the reference and against the best other schedule, across settings.

    ``mean_relative``: the plain mean over the budget's settings of (subject - other) / |other| (the denominator
    is the other schedule's point estimate in that setting, a fixed scale), with a nested
    95 % interval (each setting's paired draws, then Dirichlet weights over the settings). ``better`` / ``worse``:
    settings where the point estimate is below / above 0; ``clear_better`` / ``clear_worse``: settings whose own
    95 % interval lies below / above 0. Settings where either side diverged are counted in ``not_comparable``.
    """
    if subject is None:
        return []
    out = []
    for budget in sorted({s.budget for s in settings if s.counted}):
        idx = [i for i, s in enumerate(settings) if s.counted and s.budget == budget]
        row: dict[str, Any] = {"budget": budget, "n_settings": len(idx)}
        for key, get_diff, get_rel in (
                ("vs_reference", lambda s: s.vs_reference.get(subject), lambda d: d.rel_ref),
                ("vs_best_other", lambda s: s.vs_best_other, lambda d: d.rel_best)):
            if key == "vs_reference" and reference is None:
                row[key] = None
                continue
            diffs = [(i, get_diff(settings[i])) for i in idx]
            diffs = [(i, d) for i, d in diffs if d is not None]
            ok = [(i, d) for i, d in diffs if get_rel(draws[i]) is not None and d.relative is not None]
            cell: dict[str, Any] = {
                "n": len(ok), "not_comparable": len(diffs) - len(ok),
                "better": sum(d.value < 0 for _, d in ok), "worse": sum(d.value > 0 for _, d in ok),
                "clear_better": sum(d.clear == "better" for _, d in ok),
                "clear_worse": sum(d.clear == "worse" for _, d in ok),
                "mean_relative": None, "ci": None,
                "against": sorted({d.against for _, d in ok}),
            }
            if ok:
                cell["mean_relative"] = float(np.mean([d.relative for _, d in ok]))
                rel = np.stack([get_rel(draws[i]) for i, _ in ok], axis=1)  # (B, n)
                w = stats.setting_weights(stats.rng_for(opts["seed"], "by_budget", key, budget), opts["resamples"],
                                          len(ok))
                lo, hi = stats.interval((w * rel).sum(axis=1), opts["confidence"])
                if any(settings[i].n_seeds >= 2 for i, _ in ok) or len(ok) > 1:
                    cell["ci"] = [float(lo), float(hi)]
            row[key] = cell
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------------------------
# rendering: shared text helpers


def _f(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _big(x: float) -> bool:
    return math.isfinite(x) and abs(x) >= 1


def _num(x: float, big: bool, signed: bool = False) -> str:
    """The paper's two decimals for errors in %, losses and nll; 3 significant digits for small metrics."""
    sign = "+" if signed else ""
    text = f"{x:{sign}.2f}" if big else f"{x:{sign}.3g}"
    return text.replace("-", "−")


def _pct(cell: Mapping[str, Any], key: str) -> str:
    if cell[key] is None:
        return "—"
    return f"{100 * cell[key]:.0f}% ({cell['n_' + key]}/{cell['n']})"


def _pct_ci(cell: Mapping[str, Any], key: str) -> str:
    ci = cell.get(key + "_ci")
    if ci is None:
        return "—"
    return f"{100 * ci[0]:.0f}–{100 * ci[1]:.0f}%"


def _cell(c: Choice | None) -> str:
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


def _edge(c: Choice) -> str:
    return {"low": "↓", "high": "↑", "only": " (only LR)"}.get(c.lr_edge or "", "")


def _prob(p: float | None) -> str:
    return "n=1" if p is None else f"{p:.2f}"


def _diff_text(d: Difference | None, big: bool, relative: bool = False) -> str:
    if d is None:
        return "—"
    if math.isnan(d.value):
        return "both diverged"
    if math.isinf(d.value):
        return f"{d.label if d.value > 0 else d.against} diverged"
    text = _num(d.value, big, signed=True)
    if d.lo is None:
        text += " (n=1)"
    else:
        text += f" [{_num(d.lo, big, True)}, {_num(d.hi, big, True)}]"
    if relative and d.relative is not None:
        text += f" ({100 * d.relative:+.1f}%)".replace("-", "−")
    return text


def _budget(b: float) -> str:
    return f"{b:g}%"


def _table1_order(report: Report) -> list[str]:
    return sorted(report.ranked_labels, key=lambda x: (-(report.table1[x]["overall"]["top1"] or 0),
                                                       -(report.table1[x]["overall"]["top3"] or 0), x))


def _step_name(report: Report, label: str) -> str:
    return "step (incl. plateau)" if label == "step" and "plateau" in report.labels else label


def _optimizers(ss: list[Setting]) -> list[str]:
    have = {s.optimizer for s in ss}
    return [o for o in OPTIMIZERS if o in have] + sorted(have - set(OPTIMIZERS))


def _seeds_text(report: Report) -> str:
    ns = report.uncertainty.get("seeds_per_setting") or []
    if not ns:
        return "no settings"
    return f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"


def _unit_text(report: Report) -> str:
    units = sorted({s.budget_unit for s in report.settings if s.budget_unit})
    if not units:
        return ""
    what = {"steps": "a fraction of the 100 % run's optimizer steps", "epochs": "whole epochs, rounded up"}
    return " Budgets counted in " + "; ".join(f"{u} ({what.get(u, u)})" for u in units) + "."


def _method_text(report: Report) -> str:
    u = report.uncertainty
    how = ("a t-calibrated Gaussian multiplier over seeds (every fixed paired contrast gets the Student-t "
           "interval, exact at n = 3 for normal seed noise)" if u["method"] == "t"
           else "the Bayesian bootstrap over seeds (Dirichlet(1, ..., 1) weights)")
    return (f"{u['resamples']} draws per setting (seed {u['seed']}) of {how}; the same seed weights for every "
            "schedule and LR of a setting (a paired design: they share data order and initialisation), and the LR, "
            "patience and plateau→step choices redone on validation inside every draw. Table 1 and per-budget "
            "summaries also reweight the settings (Bayesian bootstrap over settings). Intervals are 95 % and "
            "equal-tailed; probabilities carry a Monte-Carlo error of at most "
            f"{0.5 / math.sqrt(u['resamples']):.3f}.")


def _task_grid(report: Report, task: str):
    """(settings of the task, budgets, optimizers, {opt: {budget: Setting}})."""
    ss = [s for s in report.settings if s.task == task]
    budgets = sorted({s.budget for s in ss})
    by = {opt: {s.budget: s for s in ss if s.optimizer == opt} for opt in _optimizers(ss)}
    return ss, budgets, by


def _task_tables(report: Report) -> list[tuple[str, str, list[float], list[tuple[str, str, list[tuple[str, bool]]]]]]:
    """Per task: (task, metric, budgets, rows), rows = (optimizer, label, [(cell text, is_best)]).

    A cell is best when its mean is the lowest of its optimizer x budget (ties: all of them).
    """
    out = []
    for task in sorted({s.task for s in report.settings}):
        ss, budgets, by = _task_grid(report, task)
        rows = []
        for opt, by_budget in by.items():
            labels = schedule_order({k for s in by_budget.values() for k in s.results})
            for label in labels:
                cells = []
                for b in budgets:
                    s = by_budget.get(b)
                    c = None if s is None else s.results.get(label)
                    text = _cell(c)
                    if c is not None and c.stand_in:
                        text += " †"
                    cells.append((text, s is not None and c is not None and label in _best_labels(s)))
                rows.append((opt, label, cells))
        out.append((task, report.metric_names.get(task, "metric"), budgets, rows))
    return out


def _best_labels(s: Setting) -> set[str]:
    finite = {k: c.mean for k, c in s.results.items() if not c.diverged}
    if not finite:
        return set()
    best = min(finite.values())
    return {k for k, v in finite.items() if not selection.better(best, v)}


def _choice_rows(report: Report, task: str) -> list[tuple[str, str, list[str]]]:
    """Per optimizer x label: chosen LR (edge-flagged), patience, stand-in, P(Top-1) / P(Top-3) per budget."""
    ss, budgets, by = _task_grid(report, task)
    rows = []
    for opt, by_budget in by.items():
        for label in schedule_order({k for s in by_budget.values() for k in s.results}):
            cells = []
            for b in budgets:
                s = by_budget.get(b)
                c = None if s is None else s.results.get(label)
                if c is None:
                    cells.append("—")
                    continue
                text = f"{c.lr:g}{_edge(c)}"
                if c.patience is not None:
                    text += f" p{c.patience}"
                if c.stand_in:
                    text += f" (= {c.stand_in})"
                if label == "plateau" and "step" in s.ranking:
                    text += " · in step" if s.ranking["step"].source == "plateau" else " · not used"
                elif c.rank is not None:
                    via = " via plateau" if c.ranked_as == "plateau" else ""
                    text += f" · {_prob(c.p_top1)} / {_prob(c.p_top3)}{via}"
                cells.append(text)
            rows.append((opt, label, cells))
    return rows


def _diff_rows(report: Report, task: str) -> list[tuple[str, str, list[str]]]:
    """Per optimizer x label: paired difference against the reference per budget."""
    ss, budgets, by = _task_grid(report, task)
    rows = []
    for opt, by_budget in by.items():
        for label in schedule_order({k for s in by_budget.values() for k in s.vs_reference}):
            cells = []
            for b in budgets:
                s = by_budget.get(b)
                d = None if s is None else s.vs_reference.get(label)
                ref = None if s is None else s.results.get(report.reference)
                cells.append(_diff_text(d, ref is not None and _big(ref.mean)))
            rows.append((opt, label, cells))
    return rows


def _ranking_rows(report: Report, task: str) -> tuple[list[str], list[list[str]]]:
    """One row per setting of the task: n, best and runner-up (with P(Top-1)), their gap, verdict, subject rows."""
    head = ["Optimizer", "Budget", "n seeds", "Top-1 (P Top-1)", "Runner-up (P Top-1)", "runner-up − best [95 %]",
            "within noise?"]
    subj, ref = report.subject, report.reference
    if subj and ref and subj != ref:
        head.append(f"{subj} − {ref} [95 %]")
    if subj:
        head.append(f"{subj} − best other by val [95 %]")
    rows = []
    for s in [s for s in report.settings if s.task == task]:
        bud = _budget(s.budget) + ("" if s.counted else f" (= {_budget(s.same_run_as)} run)")
        big = s.best is not None and _big(s.ranking[s.best].mean)
        best = "—" if s.best is None else f"{_step_label(s, s.best)} ({_prob(s.ranking[s.best].p_top1)})"
        ru = "—" if s.runner_up is None else f"{_step_label(s, s.runner_up)} ({_prob(s.ranking[s.runner_up].p_top1)})"
        verdict = {True: "tied", False: "clear", None: "n=1" if s.n_seeds == 1 else "—"}[s.tied]
        row = [s.optimizer, bud, str(s.n_seeds), best, ru, _diff_text(s.gap, big), verdict]
        if subj and ref and subj != ref:
            row.append(_diff_text(s.vs_reference.get(subj), big, relative=True))
        if subj:
            d = s.vs_best_other
            row.append("—" if d is None else f"vs {d.against}: {_diff_text(d, big, relative=True)}")
        rows.append(row)
    return head, rows


def _step_label(s: Setting, label: str) -> str:
    r = s.ranking.get(label)
    return f"{label} (via plateau)" if r is not None and r.source != label else label


def _by_budget_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    subj, ref = report.subject, report.reference
    head = ["Budget", "settings"]
    if ref and ref != subj:
        head += [f"{subj} − {ref}, mean relative [95 %]", "better / worse (clear)"]
    head += [f"{subj} − best other, mean relative [95 %]", "better / worse (clear)", "best other (by val)"]
    rows = []
    for r in report.by_budget:
        row = [_budget(r["budget"]), str(r["n_settings"])]
        keys = (["vs_reference"] if ref and ref != subj else []) + ["vs_best_other"]
        for key in keys:
            c = r.get(key)
            if not c or c["mean_relative"] is None:
                row += ["—", "—"]
            else:
                ci = "" if c["ci"] is None else (f" [{100 * c['ci'][0]:+.1f}, {100 * c['ci'][1]:+.1f}]%")
                row.append((f"{100 * c['mean_relative']:+.1f}%{ci}").replace("-", "−"))
                extra = f", {c['not_comparable']} diverged" if c["not_comparable"] else ""
                row.append(f"{c['better']} / {c['worse']} ({c['clear_better']} / {c['clear_worse']}){extra}")
        c = r.get("vs_best_other")
        row.append(", ".join(c["against"]) if c and c["against"] else "—")
        rows.append(row)
    return head, rows


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


def _duplicate_lines(report: Report) -> list[str]:
    out = []
    for d in report.duplicates:
        real = "" if d["real_percent"] is None else f", {d['real_percent']:.3g} % of the 100 % run"
        out.append(f"{d['task']} / {d['optimizer']}: budgets {', '.join(_budget(b) for b in d['budgets'])} are one "
                   f"run ({d['total_steps']} steps{real}); Table 1 counts it once, as {_budget(d['counted_as'])}.")
    return out


def _tied_line(report: Report) -> str:
    counted = [s for s in report.settings if s.counted]
    tied = [s for s in counted if s.tied]
    unknown = [s for s in counted if s.tied is None]
    text = (f"Settings whose Top-1 is tied within noise (the 95 % interval of runner-up − best contains 0): "
            f"{len(tied)} of {len(counted)}")
    if unknown:
        text += f" ({len(unknown)} cannot tell: one seed or one schedule)"
    return text + "."


def _legend() -> list[str]:
    return ["↑ / ↓: the chosen LR is the largest / smallest LR tried for that schedule in that setting (the best "
            "LR may lie outside the grid); \"only LR\": the schedule was run at one LR.",
            "† plateau's chosen patience never triggers within that budget: its result is the constant trial of the "
            "same LR and seed (a stand-in, as in the paper's merge it still stands in for step).",
            "n=1: one seed, no spread, no interval and no probability."]


# ---------------------------------------------------------------------------------------------------------------
# renderers


def to_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (no NaN/inf: a diverged result has ``mean: null, diverged: true``)."""

    def diff(d: Difference | None) -> dict[str, Any] | None:
        if d is None:
            return None
        return {"label": d.label, "against": d.against, "value": _f(d.value), "lo": _f(d.lo), "hi": _f(d.hi),
                "relative": _f(d.relative), "n": d.n, "clear": d.clear,
                "diverged": None if math.isfinite(d.value) else ("both" if math.isnan(d.value) else
                                                                 (d.label if d.value > 0 else d.against))}

    settings = []
    for s in report.settings:
        scheds = {}
        for label, c in s.results.items():
            scheds[label] = {
                "lr": c.lr, "patience": c.patience, "val_mean": _f(c.val_mean), "mean": _f(c.mean),
                "std": _f(c.std) if c.n > 1 else None, "n": c.n, "diverged": c.diverged, "rank": c.rank,
                "ranked_as": c.ranked_as, "lo": _f(c.lo), "hi": _f(c.hi), "p_top1": c.p_top1, "p_top3": c.p_top3,
                "lr_grid": list(c.lr_grid), "lr_edge": c.lr_edge, "stand_in": c.stand_in,
                "n_candidates": c.n_candidates,
            }
        settings.append({
            "task": s.task, "optimizer": s.optimizer, "budget": s.budget, "split": s.split,
            "metric": report.metric_names.get(s.task), "n_seeds": s.n_seeds, "schedules": scheds,
            "missing": list(s.missing),
            "ranking": {k: {"source": r.source, "mean": _f(r.mean), "rank": r.rank, "p_top1": r.p_top1,
                            "p_top3": r.p_top3} for k, r in s.ranking.items()},
            "best": s.best, "runner_up": s.runner_up, "gap": diff(s.gap), "tied_within_noise": s.tied,
            "vs_reference": {k: diff(d) for k, d in s.vs_reference.items()}, "vs_best_other": diff(s.vs_best_other),
            "total_steps": s.total_steps, "budget_unit": s.budget_unit, "counted_in_table1": s.counted,
            "same_run_as": s.same_run_as,
        })
    u = report.uncertainty
    return {
        "n_trials": report.n_trials,
        "n_trials_done": report.n_trials_done,
        "n_trials_diverged": report.n_trials_diverged,
        "n_trials_failed": report.n_trials_failed,
        "n_settings": len(report.settings),
        "n_settings_counted": sum(s.counted for s in report.settings),
        "low_limit": report.low_limit,
        "reference": report.reference,
        "subject": report.subject,
        "uncertainty": dict(u),
        "protocol": {
            "selection": "per setting and schedule, the LR (and plateau patience) with the lowest mean validation "
                         "metric over seeds; diverged = +inf, failed = missing",
            "reported": "mean and sample std (ddof=1; null for one seed) of the test metric of the chosen candidate",
            "ranking": "competition ranking (ties share a rank: 1, 1, 3); plateau merged into step by validation",
            "low_budget": f"budget < {report.low_limit:g} %",
            "uncertainty": _method_text(report) if u else None,
            "tied_within_noise": "the 95 % interval of runner-up − best (paired) contains 0",
            "same_run": "budgets of one task x optimizer with equal total_steps are one run, counted once in "
                        "Table 1 under the largest budget",
        },
        "table1": report.table1,
        "by_budget": report.by_budget,
        "duplicates": report.duplicates,
        "settings": settings,
        "missing": list(report.missing),
    }


def _md_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _md_grouped(budgets: list[float], rows: list[tuple[str, str, list[str]]], first: str = "") -> list[str]:
    out = [f"| {first}| " + " | ".join(_budget(b) for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    last = None
    for opt, label, cells in rows:
        if opt != last:
            out.append(f"| **{opt.upper()}** |" + " |" * len(budgets))
            last = opt
        out.append(f"| + {label} | " + " | ".join(cells) + " |")
    return out


def to_markdown(report: Report, figures: Mapping[str, str] | None = None) -> str:
    """Markdown in the structure of ``docs/results.md``.

    Sections: summary and method; Table 1 (shares with counts, each followed by its 95 % interval row) and the
    Top-1 finishes clear of noise; the subject against the reference and the best other schedule per budget; per
    task: test metric mean ± sd (best per column in bold), chosen LR with P(Top-1) / P(Top-3), the ranking per
    setting (n, best, runner-up, gap, tied within noise, subject differences), paired differences against the
    reference; figures (``figures`` maps a caption to an image path, e.g. Figure 2 and 3 written by
    :mod:`budgetsched.bench.rendering.plots`); missing trials.
    """
    n_low = sum(s.split == "low" for s in report.settings)
    n_counted = sum(s.counted for s in report.settings)
    out = [
        "# Budgeted-training study report",
        "",
        f"Trials: {report.n_trials_done} done, {report.n_trials_diverged} diverged, {report.n_trials_failed} failed. "
        f"Settings (task x optimizer x budget): {len(report.settings)} ({n_low} low budget < {report.low_limit:g} %, "
        f"{len(report.settings) - n_low} high); {n_counted} counted in Table 1. Seeds per setting: "
        f"{_seeds_text(report)}.{_unit_text(report)}",
        "",
        "LR (and plateau patience) chosen per setting by mean validation metric over seeds; cells give the test "
        "metric of that choice as mean ± sample std (ddof=1) over seeds; lower is better. Ties share a rank "
        "(competition ranking 1, 1, 3). In Table 1 plateau is merged into step (whichever of the two has the better "
        "validation mean stands for step).",
        "",
    ]
    if report.uncertainty:
        out += [f"Uncertainty: {_method_text(report)}", ""]
    dups = _duplicate_lines(report)
    if dups:
        out += ["Budgets that are the same run:", ""] + [f"- {x}" for x in dups] + [""]
    out += [
        "## Table 1: share of settings where each schedule is Top-1 / Top-3",
        "",
        "| Schedule | Low Top-1 | Low Top-3 | High Top-1 | High Top-3 | Overall Top-1 | Overall Top-3 |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in _table1_order(report):
        t = report.table1[label]
        out.append(f"| {_step_name(report, label)} | "
                   + " | ".join(_pct(t[sp], k) for sp in SPLITS for k in ("top1", "top3")) + " |")
        out.append("| ↳ 95 % interval | " + " | ".join(_pct_ci(t[sp], k) for sp in SPLITS for k in ("top1", "top3"))
                   + " |")
    out += ["", "Top-1 finishes clear of noise (the setting's runner-up − best interval excludes 0), of all Top-1 "
                "finishes:", ""]
    out += _md_table(["Schedule", "Low", "High", "Overall"],
                     [[_step_name(report, x)] + [f"{report.table1[x][sp]['n_clear_top1']} of "
                                                 f"{report.table1[x][sp]['n_top1']}" for sp in SPLITS]
                      for x in _table1_order(report)])
    out += ["", _tied_line(report)]
    if report.subject and report.by_budget:
        ref = f"{report.reference} and " if report.reference and report.reference != report.subject else ""
        head, rows = _by_budget_rows(report)
        out += ["", f"## {report.subject} against {ref}the best other schedule, per budget", "",
                f"Paired over seeds within each setting: ({report.subject} − other) / |other| of the test metric "
                f"(negative = {report.subject} better), averaged over the task x optimizer settings of the budget "
                "with a nested 95 % interval. \"best other\": the Table-1 schedule with the lowest validation mean, "
                "chosen inside every draw. better / worse: settings by point estimate; in brackets those whose own "
                "95 % interval excludes 0.", ""]
        out += _md_table(head, rows)
    for task, metric, budgets, rows in _task_tables(report):
        ss, _, _ = _task_grid(report, task)
        marks = {s.budget: s.same_run_as for s in ss if not s.counted}
        out += ["", f"## {task}: test {metric} (best per column in bold)", ""]
        header = [(_budget(b) + (f" (= {_budget(marks[b])} run)" if b in marks else "")) for b in budgets]
        out += ["| | " + " | ".join(header) + " |", "|---|" + "---|" * len(budgets)]
        last_opt = None
        for opt, label, cells in rows:
            if opt != last_opt:
                out.append(f"| **{opt.upper()}** |" + " |" * len(budgets))
                last_opt = opt
            out.append(f"| + {label} | " + " | ".join(f"**{t}**" if best else t for t, best in cells) + " |")
        out += ["", f"### {task}: chosen LR (↑/↓ at the grid's edge), P(Top-1) / P(Top-3)", ""]
        out += _md_grouped(budgets, _choice_rows(report, task))
        head, rrows = _ranking_rows(report, task)
        out += ["", f"### {task}: ranking per setting", ""] + _md_table(head, rrows)
        drows = _diff_rows(report, task)
        if drows:
            out += ["", f"### {task}: paired difference against {report.reference} (schedule − {report.reference}, "
                        f"test {metric}; negative = better than {report.reference}; 95 % interval)", ""]
            out += _md_grouped(budgets, drows)
    out += ["", "Legend:", ""] + [f"- {x}" for x in _legend()]
    if figures:
        out += ["", "## Figures", ""]
        for caption, path in figures.items():
            out += [f"![{caption}]({path})", "", f"*{caption}*", ""]
        out.pop()
    out += ["", "## Missing trials", ""]
    lines = _missing_lines(report)
    out += [f"- {x}" for x in lines] if lines else ["None: every trial of the grid has a result."]
    return "\n".join(out) + "\n"


CSV_COLUMNS = ("task", "optimizer", "budget", "split", "schedule", "status", "lr", "patience", "val_mean", "mean",
               "std", "n", "rank", "ranked_as", "lo", "hi", "p_top1", "p_top3", "lr_grid", "lr_edge", "stand_in",
               "n_seeds", "tied_within_noise", "reference", "diff_vs_reference", "diff_lo", "diff_hi",
               "total_steps", "budget_unit", "counted_in_table1", "same_run_as")


def _csv_num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def to_csv(report: Report) -> str:
    """One row per setting x schedule label of the study; ``status`` is ok, diverged or missing.

    ``lo`` / ``hi``: 95 % interval of the mean; ``p_top1`` / ``p_top3``: probabilities (step: incl. plateau);
    ``lr_grid``: the LRs tried, space-separated; ``lr_edge``: low / high / only; ``diff_vs_reference`` with
    ``diff_lo`` / ``diff_hi``: paired difference against ``reference``; ``tied_within_noise`` is per setting.
    Empty fields: not applicable (one seed, diverged, missing).
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
                    "budget_unit": s.budget_unit or "", "counted_in_table1": s.counted,
                    "same_run_as": "" if s.same_run_as is None else s.same_run_as}
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


def render_rich(report: Report, console: Any) -> None:
    """Print the report to a ``rich.console.Console``: the sections of :func:`to_markdown` as rich tables."""
    from rich.table import Table

    def grouped(title: str, budgets: list[float], rows: list[tuple[str, str, list[str]]], first: str) -> Table:
        t = Table(title=title)
        t.add_column(first)
        for b in budgets:
            t.add_column(_budget(b), justify="right")
        for opt, label, cells in rows:
            t.add_row(f"{opt} + {label}", *cells, style="bold magenta" if label == "rex" else None)
        return t

    def plain(title: str, head: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
        t = Table(title=title)
        for h in head:
            t.add_column(h)
        for r in rows:
            t.add_row(*r)
        return t

    n_low = sum(s.split == "low" for s in report.settings)
    console.print(f"[bold]Trials[/]: {report.n_trials_done} done, {report.n_trials_diverged} diverged, "
                  f"{report.n_trials_failed} failed; {len(report.settings)} settings ({n_low} low budget, "
                  f"{len(report.settings) - n_low} high; {sum(s.counted for s in report.settings)} counted in "
                  f"Table 1); seeds per setting: {_seeds_text(report)}.{_unit_text(report)} LR chosen by validation; "
                  "test metric mean ± sample std.")
    if report.uncertainty:
        console.print(f"Uncertainty: {_method_text(report)}", markup=False)
    for line in _duplicate_lines(report):
        console.print(f"[yellow]Same run:[/] {line}")
    t1 = Table(title="Table 1: share of settings where each schedule is Top-1 / Top-3 (plateau merged into step), "
                     "95 % interval below each row")
    t1.add_column("Schedule")
    for sp in SPLITS:
        for k in ("Top-1", "Top-3"):
            t1.add_column(f"{sp.capitalize()} {k}", justify="right")
    for label in _table1_order(report):
        t = report.table1[label]
        style = "bold magenta" if label == "rex" else None
        t1.add_row(_step_name(report, label), *[_pct(t[sp], k) for sp in SPLITS for k in ("top1", "top3")],
                   style=style)
        t1.add_row("  95 % interval", *[_pct_ci(t[sp], k) for sp in SPLITS for k in ("top1", "top3")], style="dim")
    console.print(t1)
    console.print(plain("Top-1 finishes clear of noise, of all Top-1 finishes", ["Schedule", "Low", "High", "Overall"],
                        [[_step_name(report, x)] + [f"{report.table1[x][sp]['n_clear_top1']} of "
                                                    f"{report.table1[x][sp]['n_top1']}" for sp in SPLITS]
                         for x in _table1_order(report)]))
    console.print(_tied_line(report), markup=False)
    if report.subject and report.by_budget:
        head, rows = _by_budget_rows(report)
        console.print(plain(f"{report.subject} against the reference and the best other schedule, per budget "
                            "(relative test-metric difference, negative = better)", head, rows))
    for task, metric, budgets, rows in _task_tables(report):
        tt = Table(title=f"{task}: test {metric} (lower is better; best per column highlighted)")
        tt.add_column("Optimizer + schedule")
        for b in budgets:
            tt.add_column(_budget(b), justify="right")
        for opt, label, cells in rows:
            tt.add_row(f"{opt} + {label}", *[f"[bold green]{t}[/]" if best else t for t, best in cells])
        console.print(tt)
        console.print(grouped(f"{task}: chosen LR (↑/↓ at the grid's edge), P(Top-1) / P(Top-3)", budgets,
                              _choice_rows(report, task), "Optimizer + schedule"))
        head, rrows = _ranking_rows(report, task)
        console.print(plain(f"{task}: ranking per setting", head, rrows))
        drows = _diff_rows(report, task)
        if drows:
            console.print(grouped(f"{task}: paired difference against {report.reference} (negative = better)",
                                  budgets, drows, "Optimizer + schedule"))
    for line in _legend():
        console.print(line, markup=False)
    lines = _missing_lines(report)
    if lines:
        console.print(f"[bold yellow]Missing trials ({len(lines)}):[/]")
        for x in lines:
            console.print(f"  {x}", markup=False)
    else:
        console.print("No missing trials.")
