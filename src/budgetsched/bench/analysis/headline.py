"""The headline rule (docs/tasks.md, "The headline rule"), decided once per setting.

A setting (task x optimizer x budget) **counts in the headline** - Table 1, the per-budget comparison, the
study-level statistics - only if its best schedule beats the task's trivial baseline (``Task.baseline``: chance
error, the mean image, unigram bits/char) by more than its own noise:

* *its best schedule*: the row ranked first by the setting's fair ranking (:class:`~.fair.FairRanking`, ``best``),
  each choice made on validation;
* *its scores* ``score_s``: with evaluation seeds, that row's chosen configuration retrained on each evaluation seed
  s (the scores Table 1 ranks on); without them, its cross-fitted tuning-seed scores, *next-seed* variant (the
  configuration for seed s chosen on seed s + 1's validation, :func:`~.fair.cross_fit`): the per-seed scores the
  report's paired intervals use, because leave-one-out scores are correlated and a t interval over them is too
  narrow (docs/protocol.md, F4);
* *its own noise*: the 95 % Student-t interval of ``d_s = baseline - score_s`` over its n scores::

      mean(d) -/+ t_{0.975, n-1} * sd(d, ddof=1) / sqrt(n)          (scipy.stats.t.interval)

  The setting counts when the interval lies above 0 (``lo > 0``: better than the baseline; lower is better for
  every metric). The baseline is a constant of the task (no seed), so this is the one-sample interval of the
  scores around it.

Where the rule cannot decide:

* **no baseline known here** (a user's task without ``Task.baseline``, or one whose data cannot be loaded): the
  setting counts, and the report names the task as one the rule was not applied to;
* **one score** (one seed, n = 1): no noise is measured, so the rule cannot decide; as for a one-seed setting
  everywhere in the report (docs/protocol.md F5: no interval, no fairness claim), the setting counts and the report
  says the rule was not applied to it (a one-seed study such as ``make demo`` keeps its Table 1). A setting whose
  best diverged in any seed (``d`` not finite: no interval) or that has no result at all is set apart. Two equal
  scores (sd = 0) give the point interval ``[mean, mean]``.

Set-apart settings are listed by the report with their interval, never dropped; ``--all-settings``
(``build_report(all_settings=True)``) counts every setting again, the old view, labelled so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from budgetsched.bench.analysis import fair
from budgetsched.bench.analysis.stats import CONFIDENCE

__all__ = ["Headline", "NoiseScores", "noise_scores", "decide", "interval"]


@dataclass(frozen=True)
class NoiseScores:
    """The per-seed scores the rule is decided on, for one setting: the best row's ``label`` (None without a
    result), the configuration chosen for it on all tuning seeds (``lr``, ``patience``), ``scores`` (one per seed,
    NaN where a seed has none) and how they were obtained (``mode``, one of :data:`~.fair.MODES`: evaluation seeds,
    next-seed cross-fitted tuning seeds, or one tuning seed's same run)."""

    label: str | None
    lr: float | None
    patience: int | None
    scores: np.ndarray
    mode: str


@dataclass(frozen=True)
class Headline:
    """The headline rule's decision for one setting.

    ``counted``: the setting counts in the headline (also True when the rule could not be applied:
    ``applied`` False, no baseline or one score). ``best`` / ``lr`` / ``patience``: the best row and its configuration chosen on
    validation; ``mean``: mean of its ``n`` scores (obtained as ``scores`` says); ``baseline``: the task's trivial
    baseline (None: unknown here); ``lo`` / ``hi``: the 95 % Student-t interval of ``baseline - score`` (None when
    there is none: n < 2, a diverged seed, no baseline); ``reason``: the decision in words.
    """

    task: str
    optimizer: str
    budget: float
    best: str | None
    lr: float | None
    patience: int | None
    scores: str
    n: int
    mean: float | None
    baseline: float | None
    lo: float | None
    hi: float | None
    counted: bool
    applied: bool
    reason: str


def interval(d: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Student-t ``confidence`` interval of the mean of ``d`` (n >= 2 finite values):
    ``mean -/+ t_{(1+c)/2, n-1} * sd(ddof=1) / sqrt(n)``; the point ``(mean, mean)`` when sd = 0
    (:func:`budgetsched.bench.analysis.fair.t_interval`, the paired verdicts' interval too)."""
    return fair.t_interval(d, confidence)


def decide(task: str, optimizer: str, budget: float, noise: NoiseScores, baseline: float | None,
           confidence: float = CONFIDENCE) -> Headline:
    """Apply the rule (module docstring) to one setting's best-row scores ``noise`` against ``baseline``."""
    s = np.asarray(noise.scores, dtype=float)
    s = s[~np.isnan(s)]  # a seed without a score (a missing trial) is not a score
    n = int(s.size)
    mean = float(s.mean()) if n else None
    base = None if baseline is None else float(baseline)

    def out(counted: bool, reason: str, lo: float | None = None, hi: float | None = None, *,
            applied: bool = True) -> Headline:
        return Headline(task, optimizer, float(budget), noise.label, noise.lr, noise.patience, noise.mode, n,
                        mean if mean is None or math.isfinite(mean) else None, base, lo, hi, counted,
                        applied and base is not None, reason)

    if base is None:
        return out(True, "no trivial baseline known for this task here: the rule was not applied")
    if noise.label is None or n == 0:
        return out(False, "no schedule has a result")
    if not np.isfinite(s).all():
        return out(False, "the best schedule diverged in a seed: no interval, it cannot be shown better")
    if n < 2:
        return out(True, "one score: its noise is not measured, so the rule was not applied", applied=False)
    lo, hi = interval(base - s, confidence)
    if lo > 0:
        return out(True, "better than the baseline: the interval excludes 0", lo, hi)
    if hi < 0:
        return out(False, "worse than the baseline: the interval lies below 0", lo, hi)
    return out(False, "not clear of the baseline: the interval contains 0", lo, hi)


def noise_scores(ranking: fair.FairRanking | None, keys: Sequence[tuple[str, float, int | None]], val: np.ndarray,
                 test: np.ndarray, stand_in: Sequence[str | None], *, merge: bool = False) -> NoiseScores:
    """The best row's per-seed scores on which the rule is decided (arguments as for :func:`~.fair.rank_setting`,
    which made ``ranking``): its evaluation-seed scores (``ranking.scores``) when the setting was scored on
    evaluation seeds; otherwise its next-seed cross-fitted scores on the tuning seeds (one seed: the same run), on
    the same candidates as the ranking (stand-ins dropped as it drops them)."""
    if ranking is None or ranking.best < 0:
        return NoiseScores(None, None, None, np.empty(0), "same-run" if ranking is None else ranking.mode)
    labels = list(ranking.labels)
    best = ranking.best
    choice = fair.tuning_choice(keys, val, stand_in, labels, merge=merge)[best]
    _, lr, pat = keys[choice] if choice >= 0 else (None, None, None)
    lr = None if lr is None else float(lr)
    if ranking.mode == "evaluation-seeds":
        return NoiseScores(labels[best], lr, pat, np.asarray(ranking.scores[best], dtype=float), ranking.mode)
    # the ranking's candidates per row, by the ranking's own function, so that the rule scores the same row
    use, _, rows, keep = fair._table_rows(keys, stand_in, labels, merge)
    mine = rows == best
    v = np.asarray(val, dtype=float)[use][mine]
    t = np.asarray(test, dtype=float)[use][mine]
    ev = fair.evaluate(v, t, np.zeros(int(mine.sum()), dtype=int), 1, keep=keep[mine], scheme="next-seed")
    return NoiseScores(labels[best], lr, pat, ev.scores[0], ev.mode)
