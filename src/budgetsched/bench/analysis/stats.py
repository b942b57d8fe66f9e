"""Uncertainty over seeds for the study report: resampled seed weights, intervals and nested study-level draws.

The question
------------
A study has few seeds per setting (the paper: 3). Every number the report ranks on is a *weighted mean over
seeds* of some candidate's validation or test metric, followed by non-linear steps: the LR (and patience) with the
lowest validation mean is chosen per schedule, plateau is merged into step by validation, schedules are ranked by
the test mean of their choice. The report needs the uncertainty of those results, keeping two facts:

* the design is **paired**: every schedule and LR of one seed shares data order and initialisation, so the seed
  effect must cancel in every comparison (the same seed weights for every candidate of a setting);
* the **selection** is part of what is uncertain, so it is redone inside every draw.

The method: a t-calibrated Gaussian multiplier over seeds (``method="t"``, the default)
---------------------------------------------------------------------------------------
Each draw b gives every seed s of a setting a weight ::

    w[b, s] = 1/n + (Z[b, s] - mean_s Z[b, :]) / sqrt(n * X[b]),   Z ~ N(0, 1) iid,  X ~ chi2(n - 1)

(weights sum to 1 and may be negative). A candidate's draw is ``sum_s w[b, s] * y[s]``. For any *fixed* linear
contrast of seed means - a candidate's mean, the paired difference of two candidates - this draw is distributed
exactly as ``ybar + s / sqrt(n) * t(n - 1)`` with ``s`` the sample standard deviation (ddof=1) of the contrast over
seeds: the Bayesian posterior of a normal mean under the reference prior, whose equal-tailed 95 % interval *is* the
paired Student-t interval (``scipy.stats.ttest_rel(...).confidence_interval()``). That interval is exact at n = 3
for normal seed noise. The draws of all candidates use the same Z and X, so their joint spread follows the seeds'
sample covariance: a paired design. Selection, merge and ranking are then applied to every draw, so an LR that wins
on validation only under some draws moves the test result accordingly.

Selection in a draw: on Bayesian-bootstrap weights of the same seeds
---------------------------------------------------------------------
The choices made on validation (LR, patience, plateau -> step, "best other") use, in each draw, convex weights over
the same seeds: Dirichlet(1, ..., 1) built from the draw's own normals (``-log(1 - Phi(Z))`` is Exp(1), increasing
in Z, so a seed weighted up in the t draw is weighted up here too, and validation and test stay coupled). The reason
is measured: with the t weights (negative, and heavy-tailed at n = 3, t(2)) an LR with one blown-up seed looks
better on validation than any of its seeds did in a sizeable share of draws; in the suite that put upper tails of
30 points on 1-point differences (e.g. digits-mlp, SGDM, 1 %: REX - exp +1.20 [-1.45, +30.15]). A convex weighting
never ranks a candidate better than its best seed, so an LR is re-chosen only where the seeds really disagree.
The values reported for the chosen candidates - their test means, paired differences, ranks - use the t weights.
Measured on the suite: the per-budget "REX - best other" intervals went from e.g. [-23.5, +342.5] % to
[-33.1, +23.9] % at 50 %. Where a candidate with an outlying seed is still re-chosen in more than 2.5 % of draws, the
interval's end carries that candidate's t-weighted value: the seeds do not settle that choice, and the interval says
so (the normal seed model behind the t weights knows no bound such as "an error is >= 0").

Why not the alternatives (measured in ``tests/test_report_stats.py`` on synthetic paired data with a known mean)
------------------------------------------------------------------------------------------------------------------
* A plain bootstrap over 3 seeds has 10 distinct resamples; its percentile interval cannot be honest.
* The Bayesian bootstrap (Dirichlet(1, ..., 1) weights over seeds, ``method="dirichlet"``, kept for comparison)
  draws convex combinations, so every interval lies inside the range of the n observed values; the true mean lies
  in the range of 3 draws with probability 1 - 2 / 2**3 = 0.75 only, and the 95 % interval covers it about 2/3 of
  the time at n = 3 (measured: 0.67). It is honest for large n, not at the paper's n.
* ``scipy.stats.bootstrap`` resamples one level of independent observations; our statistics need the same weights
  for every candidate, the selection redone per draw and (for Table 1) two levels. scipy is used where it fits:
  the t interval of one candidate's mean (:func:`mean_interval`, Figure 3) and as the reference answer in tests.

Special cases: a candidate with one present seed is held at its value (no spread can be estimated from one seed:
the report shows ``n=1`` and no interval); a candidate where any seed diverged (+inf) is +inf in every draw, as in
the point estimate; seeds missing for a candidate (failed trials) are left out and the weights are drawn for the
seeds it has (with ``chi2(m - 1)`` for its m seeds, the chi-square variables nested so candidates stay paired).

Study level (Table 1 shares, summaries across settings)
-------------------------------------------------------
A share is a mean over settings of a per-setting indicator (Top-1, Top-3). Its draws are nested: the seed-level
draws above, independently per setting, give each setting's indicator in draw b; then the settings are reweighted
with Bayesian-bootstrap weights Dirichlet(1, ..., 1) over the settings (:func:`setting_weights`; a share must stay
in [0, 1], and with the ~50 settings of a suite the convex-hull limit of the Dirichlet above is negligible: it
matters below ~5 settings, where the report's intervals are too narrow and say so by their n).

Every draw is seeded: :func:`rng_for` derives one stream per setting from the report seed and the setting's name,
so a report is reproducible and one setting's draws do not change when other settings are added.
"""
from __future__ import annotations

import math
import zlib
from typing import Sequence

import numpy as np

from budgetsched.bench.protocol.selection import seed_means
from budgetsched.errors import UsageError

__all__ = ["METHODS", "DEFAULT_RESAMPLES", "CONFIDENCE", "MIN_RESAMPLES", "MAX_RESAMPLES", "SeedDraws",
           "check_options", "check_method", "check_resamples",
           "point_means", "interval", "setting_weights", "rng_for", "mean_interval"]

#: Seed-level resampling methods: "t" (t-calibrated Gaussian multiplier, default), "dirichlet" (Bayesian bootstrap).
METHODS = ("t", "dirichlet")
#: Draws per setting. The Monte-Carlo standard error of a probability is at most 0.5 / sqrt(4000) = 0.008.
DEFAULT_RESAMPLES = 4000
#: Fewer draws than this cannot place a 2.5 % quantile on more than a handful of draws.
MIN_RESAMPLES = 200
#: ... and more than this is refused (memory grows with it; 10**4 already gives stable intervals).
MAX_RESAMPLES = 1_000_000
#: Level of every interval in the report.
CONFIDENCE = 0.95


def check_method(method: str) -> None:
    """``method`` is one of :data:`METHODS` (UsageError naming it and the valid ones)."""
    if method not in METHODS:
        raise UsageError(f"unknown resampling method {method!r}; choose from {', '.join(METHODS)}")


def check_resamples(resamples: int) -> None:
    """``resamples`` is an integer in [:data:`MIN_RESAMPLES`, :data:`MAX_RESAMPLES`] (UsageError naming it): the
    one home of ``--resamples``' bounds."""
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < MIN_RESAMPLES:
        raise UsageError(f"resamples must be an integer >= {MIN_RESAMPLES}, got {resamples!r}")
    if resamples > MAX_RESAMPLES:
        raise UsageError(f"resamples must be at most {MAX_RESAMPLES}, got {resamples!r}")


def check_options(method: str, resamples: int, seed: int) -> None:
    """ValueError naming the bad value and the valid ones."""
    check_method(method)
    check_resamples(resamples)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"resampling seed must be an integer >= 0, got {seed!r}")


def rng_for(seed: int, *key: object) -> np.random.Generator:
    """A generator for one named stream (e.g. one setting): the same ``seed`` and ``key`` give the same draws."""
    words = [int(seed)] + [zlib.crc32(repr(k).encode()) for k in key]
    return np.random.default_rng(words)


class SeedDraws:
    """``resamples`` draws of seed weights for one setting of ``n_seeds`` seeds (see the module docstring).

    :meth:`means` turns a (candidates x seeds) array into a (resamples x candidates) array of resampled means;
    every candidate of the setting is resampled with the same draws (paired).
    """

    def __init__(self, n_seeds: int, resamples: int, rng: np.random.Generator, method: str = "t") -> None:
        check_method(method)
        self.n_seeds, self.resamples, self.method = int(n_seeds), int(resamples), method
        if method == "t":
            self._z = rng.standard_normal((self.resamples, self.n_seeds))
            # chi2(m - 1) for every m <= n from one set of normals: nested, so subsets of seeds stay paired.
            u2 = rng.standard_normal((self.resamples, max(self.n_seeds - 1, 0))) ** 2
            self._chi2 = np.cumsum(u2, axis=1)  # column m - 2 is chi2(m - 1)
            # Exp(1) variables from the same normals (-log(1 - Phi(z)), increasing in z): normalised over the present
            # seeds they are Dirichlet(1, ..., 1) weights, comonotone with the t weights (see "Selection" above).
            from scipy.special import log_ndtr

            self._exp = -log_ndtr(-self._z)
        else:
            self._dirichlet = rng.dirichlet(np.ones(self.n_seeds), size=self.resamples) if self.n_seeds else None

    def weights(self, present: np.ndarray, convex: bool = False) -> np.ndarray:
        """(resamples x m) weights over the m seeds where ``present`` (a bool mask over the seeds) is true.

        ``convex``: the draw's Bayesian-bootstrap weights (non-negative, summing to 1) instead of the t weights; with
        ``method="dirichlet"`` both are the same.
        """
        present = np.asarray(present, dtype=bool)
        m = int(present.sum())
        if m == 0:
            raise ValueError("no seed present: nothing to weight")
        if m == 1:
            return np.ones((self.resamples, 1))
        if self.method == "t" and convex:
            g = self._exp[:, present]
            return g / g.sum(axis=1, keepdims=True)
        if self.method == "t":
            z = self._z[:, present]
            zc = z - z.mean(axis=1, keepdims=True)
            return 1.0 / m + zc / np.sqrt(m * self._chi2[:, m - 2])[:, None]
        g = self._dirichlet[:, present]  # a renormalised sub-vector of a Dirichlet(1, ..., 1) is Dirichlet(1, ..., 1)
        return g / g.sum(axis=1, keepdims=True)

    def means(self, values: np.ndarray, convex: bool = False) -> np.ndarray:
        """Resampled means of ``values`` (candidates x seeds; NaN = seed missing, +inf = diverged).

        Returns (resamples x candidates): +inf for a candidate with any diverged seed, NaN for one with no seed.
        ``convex``: weighted by the draw's Bayesian-bootstrap weights (every mean inside its seeds' range; used for
        the selections made on validation).
        """
        values = np.asarray(values, dtype=float)
        present = ~np.isnan(values)
        dead = (np.isinf(values) & present).any(axis=1)
        live = ~dead & present.any(axis=1)
        if values.size and live.all() and present.all():  # the usual case: one matrix product
            return self.weights(np.ones(values.shape[1], dtype=bool), convex) @ values.T
        out = np.full((self.resamples, values.shape[0]), np.nan)
        out[:, dead] = math.inf
        if not live.any():
            return out
        patterns, inverse = np.unique(present[live], axis=0, return_inverse=True)
        rows = np.flatnonzero(live)
        for i, pattern in enumerate(patterns):
            idx = rows[np.asarray(inverse).ravel() == i]
            out[:, idx] = self.weights(pattern, convex) @ values[np.ix_(idx, pattern)].T
        return out


def point_means(values: np.ndarray) -> np.ndarray:
    """Plain means over the present seeds of each candidate (+inf if any diverged, NaN if none present): the
    protocol's candidate score, :func:`budgetsched.bench.protocol.selection.seed_means`."""
    return seed_means(values)


def interval(draws: np.ndarray, confidence: float = CONFIDENCE, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed interval of ``draws``: the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles.

    +inf draws are ordered last (a quantile can be +inf); a NaN anywhere makes that interval NaN.
    """
    lo, hi = np.quantile(np.asarray(draws, dtype=float), [(1 - confidence) / 2, (1 + confidence) / 2], axis=axis)
    return lo, hi


def setting_weights(rng: np.random.Generator, resamples: int, n_settings: int) -> np.ndarray:
    """(resamples x n_settings) Bayesian-bootstrap weights over settings: Dirichlet(1, ..., 1), rows sum to 1."""
    if n_settings == 0:
        return np.zeros((resamples, 0))
    return rng.dirichlet(np.ones(n_settings), size=resamples)


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float] | None:
    """(mean, lo, hi): the Student-t interval of the mean of ``values`` (``scipy.stats.t``, ddof=1).

    None for fewer than two values (no spread to estimate) or non-finite values.
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if x.size < 2 or not np.isfinite(x).all():
        return None
    mean = float(x.mean())
    sem = float(x.std(ddof=1)) / math.sqrt(x.size)
    if sem == 0.0:
        return mean, mean, mean
    lo, hi = stats.t.interval(confidence, x.size - 1, loc=mean, scale=sem)
    return mean, float(lo), float(hi)
