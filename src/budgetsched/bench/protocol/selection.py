"""The selection protocol, written once: how a study's trials become one choice per schedule.

Every part of the harness that picks "the best LR" - the report (Table 1 and the per-task tables, in every resampled
draw), the study's LR refinement, refined schedules, the sampling and budget-change sections and the advisor (through
the report) - goes through this module, so the rule has one statement (REX paper, section 5; ``docs/protocol.md``):

* **Score of a trial** (:func:`score`): its final *validation* metric, lower is better. A ``diverged`` trial, or
  one whose metric is not a finite number, scores ``+inf``; a ``failed`` trial is *missing* (``NaN``), never a
  loss.
* **Candidates x seeds** (:func:`candidates`): one row per candidate (an LR, and for plateau a patience), one column
  per seed; ``NaN`` where a seed has no finished trial.
* **Score of a candidate** (:func:`seed_means`): the mean over its present seeds,
  ``s_k = (1 / |S_k|) * sum_{s in S_k} v[k, s]``; ``+inf`` when any present seed is ``+inf``; ``NaN`` with no seed.
* **Choice** (:func:`choose`): ``argmin_k s_k`` with exact ties to the first candidate - candidates are ordered by
  LR ascending (then patience), so ties go to the smaller LR, then the smaller patience; never to the better test
  metric. A candidate with no seed is never chosen over one with a score.
* **Plateau -> step** (:func:`merge_plateau`, the paper's Table 1 view, an option of the caller): step stands for
  whichever of step's and plateau's choices has the better validation score, step on a tie (:func:`better`).
* **Ranks** (:func:`competition_ranks`): competition ranking, ``rank_i = 1 + #{j : x_j better than x_i}``, so tied
  values share a rank and the next is skipped (1, 1, 3). Two values tie when they differ by at most
  :data:`REL_TIE` relative (``|a - b| <= REL_TIE * max(1, |a|, |b|)``).

Two views of the candidates, both offered and never merged (the callers group, this module chooses):

* the *report's*: per setting (task x optimizer x budget) and schedule label, candidates = (LR, patience) with at
  least one finished trial, means over the seeds present;
* the *refinement's*: per setting and (schedule, parameters) - so plateau per patience - candidates = LRs, and only
  when every seed of the grid has finished at every LR (:func:`complete`).

The functions are pure (arrays in, indices or arrays out) so that other estimators - cross-fitting over seeds,
ranks that credit a finish once - can be built on the same pieces. numpy only; no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np

from budgetsched.bench.protocol.status import Status

__all__ = ["REL_TIE", "metric_score", "score", "trial_values", "Candidates", "candidates", "seed_means", "complete",
           "choose", "choose_one", "choose_lr", "better", "merge_plateau", "competition_ranks"]

#: Relative tolerance under which two scores tie (ranks, the plateau -> step merge).
REL_TIE = 1e-9


def metric_score(v: Any) -> float:
    """A stored metric as a score: None / NaN / +-inf (no usable number) -> +inf."""
    if v is None:
        return math.inf
    v = float(v)
    return v if math.isfinite(v) else math.inf


def score(status: Status | str, val_metric: Any) -> float:
    """A trial's selection score: ``val_metric`` if it finished; +inf if it diverged or its metric is not finite;
    NaN (missing) if it failed."""
    status = Status.parse(status)
    if status is Status.FAILED:
        return math.nan
    if status is Status.DIVERGED:
        return math.inf
    return metric_score(val_metric)


def trial_values(status: Status | str, val_metric: Any, test_metric: Any) -> tuple[float, float]:
    """(validation score, test value) of a trial under the same rule: a diverged trial is (+inf, +inf), a
    non-finite metric +inf, a failed trial (NaN, NaN)."""
    status = Status.parse(status)
    if status is Status.FAILED:
        return math.nan, math.nan
    if status is Status.DIVERGED:
        return math.inf, math.inf
    return metric_score(val_metric), metric_score(test_metric)


@dataclass(frozen=True)
class Candidates:
    """Candidates x seeds arrays of one choice: ``val[k, s]`` / ``test[k, s]`` for ``keys[k]`` and ``seeds[s]``."""

    keys: tuple[Hashable, ...]
    seeds: tuple[int, ...]
    val: np.ndarray  # (K, S), NaN = no finished trial
    test: np.ndarray


def candidates(trials: Iterable[tuple[Hashable, int, float, float]], order: Any = None) -> Candidates:
    """Arrange ``(candidate key, seed, validation score, test value)`` tuples as candidates x seeds arrays.

    ``order`` is the sort key of the candidate keys (default: the keys themselves); put the LR first so that
    :func:`choose` sends ties to the smaller LR. Seeds are sorted. A later tuple for the same (key, seed) replaces
    an earlier one.
    """
    got: dict[Hashable, dict[int, tuple[float, float]]] = {}
    for key, seed, v, t in trials:
        got.setdefault(key, {})[int(seed)] = (float(v), float(t))
    keys = tuple(sorted(got, key=order))
    seeds = tuple(sorted({s for by_seed in got.values() for s in by_seed}))
    col = {s: i for i, s in enumerate(seeds)}
    val = np.full((len(keys), len(seeds)), np.nan)
    test = np.full_like(val, np.nan)
    for k, key in enumerate(keys):
        for s, (v, t) in got[key].items():
            val[k, col[s]], test[k, col[s]] = v, t
    return Candidates(keys, seeds, val, test)


def seed_means(values: np.ndarray) -> np.ndarray:
    """Mean over the present seeds of each candidate (last axis): +inf if any present seed is +inf, NaN if none."""
    values = np.asarray(values, dtype=float)
    present = ~np.isnan(values)
    n = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.asarray(np.where(present, values, 0.0).sum(axis=-1) / n, dtype=float)
    out[(np.isinf(values) & present).any(axis=-1)] = math.inf
    out[n == 0] = np.nan
    return out


def complete(values: np.ndarray) -> np.ndarray:
    """Candidates (rows) with every seed present: the refinement's view, which waits for the whole grid."""
    return ~np.isnan(np.asarray(values, dtype=float)).any(axis=-1)


def choose(scores: np.ndarray) -> np.ndarray:
    """Index of the lowest score along the last axis, exact ties to the first (the smaller LR when candidates are
    ordered by LR); NaN (no seed) is never chosen over a score. Works on (K,) and (draws, K) arrays."""
    scores = np.asarray(scores, dtype=float)
    nan = np.isnan(scores)
    if not nan.any():
        return np.argmin(scores, axis=-1)
    filled = np.where(nan, np.inf, scores)
    best = filled.min(axis=-1, keepdims=True)
    ok = (filled == best) & ~nan
    ok |= ~ok.any(axis=-1, keepdims=True) & (filled == best)  # every candidate NaN: the first
    return np.argmax(ok, axis=-1)


def choose_one(scores: Sequence[float]) -> int:
    """:func:`choose` on one list of candidate scores, as a Python int."""
    return int(choose(np.asarray(scores, dtype=float)))


def choose_lr(scores_by_lr: Mapping[float, Sequence[float]]) -> tuple[float, float]:
    """(chosen LR, its score) from each LR's per-seed scores (:func:`score`): the lowest mean, ties to the smaller
    LR. The caller decides which seeds count (the refinement waits for all of them: :func:`complete`)."""
    lrs = sorted(scores_by_lr)
    means = [float(seed_means(np.asarray(scores_by_lr[lr], dtype=float))) for lr in lrs]
    k = choose_one(means)
    return lrs[k], means[k]


def better(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """``a`` strictly better (lower) than ``b`` beyond the tie tolerance :data:`REL_TIE`, elementwise; +inf is
    worse than every finite value and ties with +inf."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore"):
        tol = REL_TIE * np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
        inf = np.isinf(a) | np.isinf(b)
        return np.where(inf, a < b, a < b - np.where(inf, 0.0, tol))


def merge_plateau(step_val: np.ndarray, step_test: np.ndarray, plateau_val: np.ndarray,
                  plateau_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper's Table-1 view: step stands for the better of step's and plateau's choices *by validation*, step
    on a tie. Returns (validation, test, plateau used) elementwise (e.g. per resampled draw)."""
    use = better(plateau_val, step_val)
    return np.where(use, plateau_val, step_val), np.where(use, plateau_test, step_test), use


def competition_ranks(values: np.ndarray) -> np.ndarray:
    """Competition ranks along the last axis: ``1 + #{j : values[j] better than values[i]}`` with the tolerance
    taken relative to the value being ranked (``REL_TIE * max(1, |x_i|)``); +inf ranks after every finite value
    and ties with +inf."""
    values = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        threshold = values - REL_TIE * np.maximum(1.0, np.abs(values))  # inf - inf tolerance: stays inf
        threshold = np.where(np.isinf(values), values, threshold)
    return 1 + (values[..., None, :] < threshold[..., :, None]).sum(axis=-1)
