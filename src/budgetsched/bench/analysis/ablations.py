"""Ablations as paired side tables (not ranked in Table 1), and the LR grid a report reads.

An *ablation* asks what one component of a schedule or an optimizer is worth: OneCycle without its momentum cycle,
REX and linear with OneCycle's warm-up, decoupled weight decay (AdamW) against coupled L2 (Adam), schedule-free
against tuned schedules, the paper's x3 LR grid against the refined one. Ranking such variants in Table 1 against
each other would split their base schedule's finishes between near-copies, so they are compared in **pairs**:

Pairs, detected from what the rows hold (:func:`ablations`), per setting (task x optimizer x budget):

* **schedule variant - its base**: a label that is a base label plus schedule parameters (``rex(warmup_fraction=0.5)``
  against ``rex``; ``onecycle(base_momentum=0.9,max_momentum=0.9)`` against ``onecycle``), the base present in the
  same setting. Parameters that define another study are not variants: the sampling rate (Table 2), ``delay``
  (Figure 2) and a budget change (:data:`OTHER_STUDY_PARAMS`);
* **optimizer variant - its base** for the same schedule: an optimizer whose name is another's plus ``w``, the
  naming of decoupled weight decay (AdamW against Adam; Loshchilov & Hutter, *Decoupled Weight Decay
  Regularization*, ICLR 2019). Its "setting" is (task, budget, schedule), the seeds paired by index (the same seed
  draws the same data order under both optimizers). A schedule whose two optimizers' trials are one run (identical
  LRs, seeds and metrics: schedule-free runs AdamWScheduleFree for both) has no pair;
* in a study that has either kind of variant: **schedule-free - the best tuned schedule** of the same optimizer (the
  Table-1 schedules' candidates pooled, the best chosen on validation like every LR) and **schedule-free - linear**;
  and per Table-1 schedule with LRs off the 1-3 grid, **the x3-grid choice - the refined-grid choice** (the LR
  chosen among the grid's points only, against the LR chosen among all the LRs tried).

Each side's configuration is chosen on validation by the protocol's one rule
(:func:`budgetsched.bench.protocol.selection.choose`: lowest mean validation metric, ties to the smaller LR) and
scored apart from the runs that chose it, as Table 1's paired intervals are
(:func:`budgetsched.bench.analysis.fair.cross_fit`, the *next-seed* scheme): the configuration for seed s is chosen on
the validation of seed s + 1 (cyclically) and scored on seed s's test,

    c*_X(s) = argmin_{c in X} val[c, s + 1],    d_s = test[c*_variant(s), s] - test[c*_base(s), s],

so that under the null the d_s are independent and the Student-t interval keeps its level (measured in
docs/protocol.md). The pair's difference is ``mean_s d_s`` (negative: the variant is better; lower is better) with
its 95 % paired Student-t interval ``mean +- t_{0.975, n-1} * sd(d) / sqrt(n)`` over the n seeds both sides have
(:func:`budgetsched.bench.analysis.fair.paired_verdict`, ``scipy.stats.t``); with one seed the choice and score come
from the same run and there is no interval. A diverged side makes the difference +-inf (no interval).
Evaluation-seed trials are kept out of the choice (:func:`budgetsched.bench.analysis.evaluation.tuning_rows`); the
ablation tables score on the tuning seeds (evaluation seeds exist only for Table 1's choices).

The summary per pair and task (:class:`PairSummary`): over its settings, the mean difference (in the task's metric)
and the mean relative difference ``mean_settings d / |base mean|``; how many settings are *clearly better* (the
interval lies below 0), *clearly worse* (above 0), *within noise* (it contains 0), or without an interval.

Table 1 in an ablation study (:attr:`Ablations.table1_labels`): schedule variants are left out of Table 1, which ranks
the base schedules only (schedule-free included: it is a schedule of its own), and the report says so. This rule is
automatic rather than a report mode, because a variant is defined by the rows themselves (a base label plus
parameters, both run): ranking it against its own base is never the question Table 1 answers, and a store without
variants reports exactly as before. Optimizer variants need no rule (each optimizer is its own setting).

**The LR grid a report reads** (:func:`lr_grid_rows`): ``"all"`` (every LR tried, the default) or ``"x3"``, the
paper's grid alone - only trials whose LR is 1 or 3 times a power of ten
(:func:`budgetsched.bench.protocol.study.on_grid`), so a refined study can be read as if it had not been refined.
Points that refinement added beyond a grid's edge are points of the 1-3 grid and stay, so the x3 view of a
``refine = true`` study is the grid a ``refine = "edge"`` study (suite v2's) runs: a grid is extended at its edge
before any sqrt 3 point is added and never after (:func:`budgetsched.bench.protocol.study.refinement`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from budgetsched.bench.analysis import fair
from budgetsched.bench.analysis.evaluation import Candidates, candidates, tuning_rows
from budgetsched.bench.analysis.report_model import Difference
from budgetsched.bench.analysis.rows import schedule_order, setting_key, trial_rows
from budgetsched.bench.protocol import selection
from budgetsched.bench.protocol.grid import CHANGE_PARAMS, OPTIMIZERS, SCHEDULE_FREE
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.protocol.study import on_grid
from budgetsched.errors import UsageError

__all__ = ["LR_GRIDS", "LrGridView", "lr_grid_rows", "OTHER_STUDY_PARAMS", "KINDS", "Pair", "PairSummary",
           "Ablations", "schedule_variants", "optimizer_pairs", "ablations"]

#: The LR grids a report can read: every LR tried, or the paper's x3 grid alone.
LR_GRIDS = ("all", "x3")
#: Schedule parameters that define another study, whose labels are not ablation variants: the sampling rate (the
#: paper's Table 2), a delayed decay (Figure 2) and a budget change learned mid-run (their own sections).
OTHER_STUDY_PARAMS = ("sampling", "delay", *CHANGE_PARAMS)
#: The kinds of pair, in the order the report shows them.
KINDS = ("schedule", "optimizer", "schedule-free", "lr-grid")


# ------------------------------------------------------------------------------------------------- the LR grid
@dataclass(frozen=True)
class LrGridView:
    """Which LRs a report read: ``grid`` ("all" or "x3"), the trials kept and left out, and the LRs left out."""

    grid: str
    kept: int
    left_out: int
    left_out_lrs: tuple[float, ...] = ()


def lr_grid_rows(rows: Iterable[TrialRow | Mapping[str, Any]], grid: str = "all"
                 ) -> tuple[list[TrialRow], LrGridView]:
    """The trials a report reads on ``grid``: every one ("all"), or only those whose LR is on the paper's 1-3 grid
    ("x3", :func:`budgetsched.bench.protocol.study.on_grid`); with what was kept and left out."""
    if grid not in LR_GRIDS:
        raise UsageError(f"unknown LR grid {grid!r}; choose from {', '.join(LR_GRIDS)}")
    rows = trial_rows(rows)
    if grid == "all":
        return rows, LrGridView("all", len(rows), 0)
    kept = [r for r in rows if on_grid(r.lr)]
    off = sorted({float(r.lr) for r in rows if not on_grid(r.lr)})
    return kept, LrGridView("x3", len(kept), len(rows) - len(kept), tuple(off))


# ------------------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class Pair:
    """One paired comparison in one setting: ``difference`` is variant - base of the test metric (negative: the
    variant is better), its ``lo`` / ``hi`` the 95 % paired t interval (None with one seed or a diverged side).

    ``name`` identifies the pair across settings (the summary's key), e.g. ``"rex(warmup_fraction=0.5) − rex"``;
    ``optimizer`` is the variant's (for an optimizer pair, ``base_optimizer`` is the other); ``variant_lr`` /
    ``base_lr`` the LRs each side chooses on the validation mean of all its seeds (what the per-task tables show;
    the difference itself is cross-fitted); ``base_label`` the schedule that side chose (the best tuned one for
    schedule-free); ``mode`` how the choices were scored (:data:`budgetsched.bench.analysis.fair.MODES`).
    """

    kind: str
    name: str
    task: str
    optimizer: str
    budget: float
    variant: str
    base: str
    difference: Difference
    base_mean: float  # the base side's mean score (the scale of ``difference.relative``)
    variant_lr: float | None = None
    base_lr: float | None = None
    base_label: str | None = None
    base_optimizer: str | None = None
    mode: str = "cross-fit"


@dataclass(frozen=True)
class PairSummary:
    """One pair on one task, over its settings (optimizers x budgets): ``n`` settings, ``mean`` difference over the
    settings with a finite one (the task's metric), ``mean_relative`` (difference / |base mean|), and how many are
    clearly better / clearly worse / within noise / without an interval (one seed, a diverged side)."""

    kind: str
    name: str
    task: str
    n: int
    mean: float | None
    mean_relative: float | None
    better: int
    worse: int
    within_noise: int
    no_interval: int


@dataclass(frozen=True)
class Ablations:
    """The paired side tables of an ablation study: ``variants`` (schedule labels left out of Table 1),
    ``table1_labels`` (the labels Table 1 ranks; None: all, the study has no schedule variant), ``pairs`` in the
    report's order and their ``summary``."""

    variants: tuple[str, ...]
    table1_labels: tuple[str, ...] | None
    pairs: tuple[Pair, ...]
    summary: tuple[PairSummary, ...]
    optimizer_pairs: tuple[tuple[str, str], ...] = ()


# ------------------------------------------------------------------------------------------------- detection
def schedule_variants(rows: Iterable[TrialRow]) -> dict[str, str]:
    """Variant label -> its base label: a label with schedule parameters (none of :data:`OTHER_STUDY_PARAMS`) whose
    schedule also runs without parameters in the same setting."""
    plain: set[tuple] = set()
    with_params: dict[tuple, str] = {}
    for r in rows:
        if r.label == r.schedule:
            plain.add((*setting_key(r), r.schedule))
        elif not any(k in OTHER_STUDY_PARAMS for k in r.params):
            with_params[(*setting_key(r), r.label)] = r.schedule
    return {label: base for (t, o, b, label), base in with_params.items() if (t, o, b, base) in plain}


def optimizer_pairs(optimizers: Iterable[str]) -> list[tuple[str, str]]:
    """(variant, base) optimizer pairs: a name that is another's plus ``w`` (decoupled weight decay: adamw, adam)."""
    have = set(optimizers)
    return sorted((o, o[:-1]) for o in have if o.endswith("w") and o[:-1] in have)


# ------------------------------------------------------------------------------------------------ one pair
def _aligned(c: Candidates, idx: Sequence[int], seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(val, test) of candidates ``idx`` of ``c`` on the seed columns ``seeds`` (NaN where a seed is absent)."""
    col = {s: j for j, s in enumerate(c.seeds)}
    val = np.full((len(idx), len(seeds)), np.nan)
    test = np.full_like(val, np.nan)
    for j, s in enumerate(seeds):
        if s in col:
            val[:, j], test[:, j] = c.val[list(idx), col[s]], c.test[list(idx), col[s]]
    return val, test


def _compare(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], variant: str, base: str
             ) -> tuple[Difference, float, str]:
    """(variant - base as a :class:`Difference`, the base's mean score, scoring mode): each side's choice cross-
    fitted over seeds (next-seed), the per-seed differences' mean and paired t interval."""
    val = np.vstack([a[0], b[0]])
    test = np.vstack([a[1], b[1]])
    rows = np.array([0] * len(a[0]) + [1] * len(b[0]), dtype=int)
    ev = fair.evaluate(val, test, rows, 2, scheme="next-seed")
    mean, lo, hi, _ = fair.paired_verdict(ev.scores[0], ev.scores[1])
    if not ev.fair:
        lo = hi = None  # one seed: choice and score from the same run, no interval
    both = ~np.isnan(ev.scores[0]) & ~np.isnan(ev.scores[1])
    base_mean = float(fair.row_means(ev.scores[1:2, both])[0]) if both.any() else math.nan
    rel = mean / abs(base_mean) if math.isfinite(mean) and math.isfinite(base_mean) and base_mean != 0 else None
    return Difference(variant, base, float(mean), lo, hi, rel, int(both.sum())), base_mean, ev.mode


def _chosen(c: Candidates, idx: Sequence[int]) -> int | None:
    """Index into ``c`` of the candidate among ``idx`` with the lowest validation mean over all seeds."""
    if not idx:
        return None
    k = selection.choose_one(selection.seed_means(c.val[list(idx)]))
    return list(idx)[k]


def _pair(kind: str, name: str, key: tuple[str, str, float], c: Candidates, a_idx: list[int], b_idx: list[int],
          variant: str, base: str, base_optimizer: str | None = None, cb: Candidates | None = None) -> Pair:
    """One pair: ``a_idx`` candidates of ``c`` against ``b_idx`` of ``cb`` (default ``c``), seeds paired by index."""
    cb = c if cb is None else cb
    seeds = sorted(set(c.seeds) | set(cb.seeds))
    d, base_mean, mode = _compare(_aligned(c, a_idx, seeds), _aligned(cb, b_idx, seeds), variant, base)
    ka, kb = _chosen(c, a_idx), _chosen(cb, b_idx)
    return Pair(kind, name, key[0], key[1], key[2], variant, base, d, base_mean,
                None if ka is None else c.keys[ka][1], None if kb is None else cb.keys[kb][1],
                None if kb is None else cb.keys[kb][0], base_optimizer, mode)


def _same_runs(c: Candidates, a: list[int], cb: Candidates, b: list[int]) -> bool:
    """The two sides are one run under two names: the same LRs and seeds with identical validation and test values
    (schedule-free's Adam and AdamW trials both run AdamWScheduleFree, whose decay is always decoupled); such a
    pair would compare a run with itself, so it is not shown."""
    same = ([c.keys[i][1:] for i in a] == [cb.keys[i][1:] for i in b] and list(c.seeds) == list(cb.seeds))
    return same and all(np.array_equal(x[a], y[b], equal_nan=True) for x, y in ((c.val, cb.val), (c.test, cb.test)))


# ------------------------------------------------------------------------------------------------ the study
def ablations(rows: Iterable[TrialRow | Mapping[str, Any]], evaluations: Iterable[Mapping[str, Any]] | None = None,
              planned_keys: Iterable[str] = ()) -> Ablations | None:
    """The paired side tables of the study in ``rows`` (see the module docstring), or None when it holds no
    variant (neither a schedule variant nor an optimizer pair): then the report is exactly as without this module.

    ``evaluations`` / ``planned_keys``: the store's evaluation records and planned trial keys; evaluation trials
    are kept out of every choice.
    """
    rows = trial_rows(rows)
    if evaluations:
        rows, _ = tuning_rows(rows, list(evaluations), planned_keys)
    variants = schedule_variants(rows)
    opt_pairs = optimizer_pairs(r.optimizer for r in rows)
    if not variants and not opt_pairs:
        return None
    groups: dict[tuple[str, str, float], list[TrialRow]] = {}
    for r in rows:
        groups.setdefault(setting_key(r), []).append(r)
    cands = {k: candidates(g) for k, g in groups.items()}
    opt_pos = {o: i for i, o in enumerate(OPTIMIZERS)}
    keys = sorted(cands, key=lambda k: (k[0], opt_pos.get(k[1], len(opt_pos)), k[1], k[2]))
    base_labels = schedule_order({r.label for r in rows} - set(variants))

    pairs: list[Pair] = []
    for key in keys:
        c = cands[key]
        idx: dict[str, list[int]] = {}
        for i, k in enumerate(c.keys):
            idx.setdefault(k[0], []).append(i)
        # schedule variants against their base
        for label in schedule_order(x for x in idx if x in variants):
            base = variants[label]
            if base in idx:
                pairs.append(_pair("schedule", f"{label} − {base}", key, c, idx[label], idx[base], label, base))
        # schedule-free against the best tuned schedule and against linear
        tuned = [x for x in base_labels if x in idx and x != SCHEDULE_FREE]
        if SCHEDULE_FREE in idx and tuned:
            pooled = [i for x in tuned for i in idx[x]]
            pairs.append(_pair("schedule-free", f"{SCHEDULE_FREE} − best tuned", key, c, idx[SCHEDULE_FREE], pooled,
                               SCHEDULE_FREE, "best tuned"))
            if "linear" in idx:
                pairs.append(_pair("schedule-free", f"{SCHEDULE_FREE} − linear", key, c, idx[SCHEDULE_FREE],
                                   idx["linear"], SCHEDULE_FREE, "linear"))
        # the x3 grid's choice against the refined grid's, per Table-1 schedule with LRs off the grid
        for label in (x for x in base_labels if x in idx):
            grid = [i for i in idx[label] if on_grid(c.keys[i][1])]
            if grid and len(grid) < len(idx[label]):
                pairs.append(_pair("lr-grid", f"{label}: x3 grid − refined grid", key, c, grid, idx[label],
                                   f"{label} (x3 grid)", f"{label} (refined grid)"))
    # optimizer variants against their base, per task, budget and Table-1 schedule
    for variant_opt, base_opt in opt_pairs:
        for key in keys:
            task, opt, budget = key
            other = (task, base_opt, budget)
            if opt != variant_opt or other not in cands:
                continue
            c, cb = cands[key], cands[other]
            for label in base_labels:
                a = [i for i, k in enumerate(c.keys) if k[0] == label]
                b = [i for i, k in enumerate(cb.keys) if k[0] == label]
                if a and b and not _same_runs(c, a, cb, b):
                    pairs.append(_pair("optimizer", f"{label}: {variant_opt} − {base_opt}", key, c, a, b,
                                       f"{label} ({variant_opt})", f"{label} ({base_opt})", base_opt, cb))
    pairs.sort(key=lambda p: KINDS.index(p.kind))  # stable: settings keep their order within a kind
    table1 = tuple(base_labels) if variants else None
    return Ablations(tuple(schedule_order(set(variants))), table1, tuple(pairs), _summary(pairs), tuple(opt_pairs))


def _summary(pairs: Sequence[Pair]) -> tuple[PairSummary, ...]:
    """Per pair name and task, over its settings (see :class:`PairSummary`)."""
    groups: dict[tuple[str, str, str], list[Pair]] = {}
    for p in pairs:
        groups.setdefault((p.kind, p.name, p.task), []).append(p)
    out = []
    for (kind, name, task), ps in sorted(groups.items(), key=lambda g: (KINDS.index(g[0][0]), g[0][1], g[0][2])):
        ds = [p.difference for p in ps]
        finite = [d.value for d in ds if math.isfinite(d.value)]
        rel = [d.relative for d in ds if d.relative is not None]
        clear = [d.clear for d in ds]
        has = [d.lo is not None for d in ds]
        out.append(PairSummary(kind, name, task, len(ps), math.fsum(finite) / len(finite) if finite else None,
                               math.fsum(rel) / len(rel) if rel else None, clear.count("better"),
                               clear.count("worse"), sum(h and c is None for h, c in zip(has, clear)),
                               sum(not h for h in has)))
    return tuple(out)
