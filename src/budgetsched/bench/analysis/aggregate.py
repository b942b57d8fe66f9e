"""Statistics at the level of the study: normalised scores, mean and IQM, a bootstrap stratified by task,
performance profiles and the probability of improvement.

The methods are those of rliable (Agarwal et al., *Deep Reinforcement Learning at the Edge of the Statistical
Precipice*, NeurIPS 2021), implemented with numpy / scipy (rliable itself pulls pandas, seaborn and arch) and
adapted to a study's structure: *tasks* hold *settings* (optimizer x budget), settings hold *rows* (schedules)
scored on *seeds*. Inputs are ``scores`` arrays (settings x rows x seeds) of per-seed scores of each row's chosen
configuration (:func:`budgetsched.bench.analysis.fair.evaluate`: cross-fitted or evaluation-seed scores), metric
lower is better, +inf diverged, NaN missing.

* **Normalised score** (:func:`normalise`), higher is better, 1 = the setting's best row, 0 = the task's trivial
  baseline b (chance error, the mean image, unigram bits/char; ``Task.baseline``)::

      ns = (b - x) / (b - best)            best = the lowest row mean of the setting

  Without a baseline the score is a fraction of the best, ``ns = best / x`` (1 = best, 1/2 = twice the best's
  error; defined for positive metrics). A diverged run learned nothing: ``ns = 0`` either way. This puts a 3 %
  error and a 27-nat likelihood on one scale before anything is averaged across settings.
* **Aggregates** (:func:`aggregate`): the mean (of the per-setting means over seeds: rliable's ``aggregate_mean``)
  and the interquartile mean of all (setting, seed) scores, ``scipy.stats.trim_mean(x, 0.25)`` (rliable's
  ``aggregate_iqm``): the mean of the middle 50 %, robust to a few diverged or outlying runs, and far less
  noisy than the median.
* **Bootstrap stratified by task** (:func:`stratified_draws`): each draw resamples, with replacement, the settings
  *within each task* and the seeds *within each chosen setting* (the same seeds for every row: the design is
  paired); the tasks are fixed. The interval is therefore *for these tasks*: it says how much the answer would
  move with other seeds and other settings of these tasks, not with other tasks. Percentile intervals
  (:func:`interval`), widened where needed to contain their point estimate, inside the statistic's range.
* **Performance profile** (:func:`performance_profile`): rliable's run-score distribution, the fraction of runs
  with ``ns > tau`` for each threshold tau.
* **Probability of improvement** (:func:`probability_of_improvement`): P(X better than Y) in one setting is the
  Mann-Whitney U statistic over the pairs of seeds, ``(1/(n m)) sum_i sum_j [x_i < y_j] + 1/2 [x_i = y_j]``
  (lower is better); across settings, its mean (rliable averages its tasks). :func:`improvement_by_regime`
  gives it per budget regime (low / high / all) with stratified-bootstrap intervals.
"""
from __future__ import annotations

import math
import warnings
import zlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["normalise", "iqm", "aggregate", "stratified_draws", "bootstrap", "interval", "performance_profile",
           "probability_of_improvement", "regimes", "improvement_by_regime", "summary", "share_intervals", "table1", "study_statistics", "CONFIDENCE", "DEFAULT_RESAMPLES"]

CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000


def _setting_means(scores: np.ndarray) -> np.ndarray:
    """(settings x rows) mean over seeds (+inf if a seed diverged, NaN if none present)."""
    s = np.asarray(scores, dtype=float)
    present = ~np.isnan(s)
    n = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(present & np.isfinite(s), s, 0.0).sum(axis=-1) / n
    out = np.where((np.isinf(s) & present).any(axis=-1), math.inf, out)
    return np.where(n == 0, np.nan, out)


def normalise(scores: np.ndarray, baseline: Sequence[float | None] | np.ndarray | None = None,
              best: np.ndarray | None = None) -> np.ndarray:
    """Normalised scores (same shape as ``scores``, settings x rows x seeds), higher is better (module docstring).

    ``baseline``: (settings,) the trivial baseline of each setting's task (None / NaN: normalise to the best).
    ``best``: (settings,) the reference best (default: the lowest finite row mean of the setting). A setting whose
    best does not beat its baseline, or (without baseline) whose best is not positive, is NaN: no scale exists.
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim != 3:
        raise ValueError(f"scores must be (settings x rows x seeds), got shape {s.shape}")
    n = s.shape[0]
    if best is None:
        m = _setting_means(s)
        m = np.where(np.isfinite(m), m, np.nan)
        with np.errstate(all="ignore"):
            best = np.array([np.nanmin(r) if np.isfinite(r).any() else np.nan for r in m])
    best = np.asarray(best, dtype=float).reshape(n)
    if baseline is None:
        b = np.full(n, np.nan)
    else:
        b = np.array([np.nan if x is None else float(x) for x in np.asarray(baseline, dtype=object).reshape(n)])
    has_b = ~np.isnan(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        by_base = (b[:, None, None] - s) / (b - best)[:, None, None]
        by_best = best[:, None, None] / s
    out = np.where(has_b[:, None, None], by_base, by_best)
    ok = np.where(has_b, b > best, best > 0)
    out = np.where(np.isposinf(s), 0.0, out)  # a diverged run learned nothing
    out = np.where(np.isnan(s), np.nan, out)
    return np.where(ok[:, None, None], out, np.nan)


def iqm(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Interquartile mean ignoring NaN: the mean of the sorted values from index ``floor(n/4)`` to
    ``n - floor(n/4)`` (exclusive), which is ``scipy.stats.trim_mean(x, 0.25)`` for NaN-free data."""
    a = np.asarray(x, dtype=float)
    if axis is None:
        a, axis = a.reshape(-1), 0
    a = np.moveaxis(a, axis, -1)
    srt = np.sort(a, axis=-1)  # NaN last
    n = (~np.isnan(srt)).sum(axis=-1)
    lo = n // 4
    hi = n - lo
    filled = np.where(np.isnan(srt), 0.0, srt)
    # differences of a cumulative sum are inf - inf where +inf sits inside the window; use an explicit mask instead
    idx = np.arange(a.shape[-1])
    window = (idx >= lo[..., None]) & (idx < hi[..., None])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(window, filled, 0.0).sum(axis=-1) / (hi - lo)
    return np.where(n == 0, np.nan, out)


def aggregate(ns: np.ndarray, statistic: str = "mean") -> np.ndarray:
    """(rows,) aggregate of normalised scores (settings x rows x seeds): "mean" (of per-setting means over seeds)
    or "iqm" (over every present (setting, seed) score of the row)."""
    a = np.asarray(ns, dtype=float)
    if statistic == "mean":
        def nanmean(x: np.ndarray, axis: int) -> np.ndarray:
            ok = ~np.isnan(x)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(ok, x, 0.0).sum(axis=axis) / ok.sum(axis=axis)
        return nanmean(nanmean(a, -1), 0)
    if statistic == "iqm":
        return iqm(np.moveaxis(a, 1, 0).reshape(a.shape[1], -1), axis=1)
    raise ValueError(f"unknown statistic {statistic!r}; choose from mean, iqm")


def stratified_draws(tasks: Sequence[Any], n_seeds: int, resamples: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a bootstrap stratified by task: (settings_idx, seeds_idx) of shapes (B x N) and (B x N x S).

    Draw b takes, for each task, as many settings as it has, with replacement among that task's settings (so
    ``settings_idx[b]`` lists N settings, the tasks' proportions fixed), and for each of those S seeds with
    replacement. Indexing ``scores[settings_idx[..., None], :, seeds_idx]`` gives (B x N x S x rows).
    """
    tasks = list(tasks)
    n = len(tasks)
    out = np.empty((resamples, n), dtype=int)
    groups: dict[Any, list[int]] = {}
    for i, t in enumerate(tasks):
        groups.setdefault(t, []).append(i)
    for members in groups.values():
        m = np.asarray(members)
        out[:, m] = m[rng.integers(0, len(m), size=(resamples, len(m)))]
    seeds = rng.integers(0, max(n_seeds, 1), size=(resamples, n, max(n_seeds, 1)))
    return out, seeds


def bootstrap(scores: np.ndarray, tasks: Sequence[Any], statistic: Callable[[np.ndarray], np.ndarray],
              resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of ``statistic`` (any function of a (settings x rows x seeds) array) under :func:`stratified_draws`:
    an array (B x statistic's shape)."""
    s = np.asarray(scores, dtype=float)
    si, ki = stratified_draws(tasks, s.shape[2], resamples, rng)
    out = []
    for b in range(resamples):
        # advanced indices around a slice put the slice's axis last: (N, S, rows) -> (N, rows, S)
        rs = s[si[b][:, None], :, ki[b]]
        out.append(statistic(np.moveaxis(rs, -1, 1)))
    return np.asarray(out)


def interval(point: np.ndarray | float, draws: np.ndarray, confidence: float = CONFIDENCE,
             bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed percentile interval of ``draws`` (axis 0), widened to contain ``point`` and clipped to
    ``bounds`` (the statistic's range, e.g. (0, 1) for a probability)."""
    d = np.asarray(draws, dtype=float)
    p = np.asarray(point, dtype=float)
    with warnings.catch_warnings():  # an all-NaN column (a row absent from every draw) gives NaN, said here
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(d, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0) if d.size else (p, p)
    lo = np.clip(np.fmin(lo, p), *bounds)
    hi = np.clip(np.fmax(hi, p), *bounds)
    return lo, hi


def performance_profile(ns: np.ndarray, taus: Sequence[float]) -> np.ndarray:
    """(rows x taus): the fraction of each row's present (setting, seed) normalised scores above each tau
    (rliable's run-score distribution; 1 at low tau, falling to 0)."""
    a = np.moveaxis(np.asarray(ns, dtype=float), 1, 0).reshape(np.shape(ns)[1], -1)
    present = ~np.isnan(a)
    t = np.asarray(taus, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        above = ((a[:, :, None] > t[None, None, :]) & present[:, :, None]).sum(axis=1)
        return above / present.sum(axis=1)[:, None]


def _u_per_setting(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(..., settings) P(x better than y) per setting from (..., settings x seeds) arrays; NaN seeds left out,
    NaN where either side has none. Lower is better; +inf ties with +inf."""
    xv, yv = x[..., :, None], y[..., None, :]
    ok = ~np.isnan(xv) & ~np.isnan(yv)
    with np.errstate(invalid="ignore"):
        win = np.where(ok, (xv < yv) + 0.5 * (xv == yv), 0.0).sum(axis=(-1, -2))
    pairs = ok.sum(axis=(-1, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, win / pairs, np.nan)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X better than Y): the Mann-Whitney probability per setting (rows of the (settings x seeds) arrays ``x``,
    ``y``; lower is better), averaged over the settings where both have a seed."""
    p = _u_per_setting(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    return float(np.nanmean(p)) if (~np.isnan(p)).any() else math.nan


def regimes(budgets: Sequence[float], low_limit: float = 25.0) -> dict[str, np.ndarray]:
    """Boolean masks over settings: "low" (budget < low_limit), "high" and "all"."""
    b = np.asarray(budgets, dtype=float)
    return {"low": b < low_limit, "high": b >= low_limit, "all": np.ones(b.shape, dtype=bool)}


def improvement_by_regime(scores: np.ndarray, rows: Sequence[str], subject: str, tasks: Sequence[Any],
                          budgets: Sequence[float], *, low_limit: float = 25.0, resamples: int = DEFAULT_RESAMPLES,
                          rng: np.random.Generator | None = None, confidence: float = CONFIDENCE
                          ) -> dict[str, dict[str, dict[str, Any]]]:
    """P(``subject`` better than each other row) per regime, with a bootstrap stratified by task.

    ``scores``: (settings x rows x seeds) raw per-seed scores (lower is better). Returns
    ``{other: {regime: {"p", "lo", "hi", "n_settings"}}}``; the interval is for these tasks, in [0, 1] and
    containing ``p``. Draws resample settings within each task of the regime and seeds within each setting (the same
    seeds for both rows: paired).
    """
    s = np.asarray(scores, dtype=float)
    rows = list(rows)
    if subject not in rows:
        raise ValueError(f"subject {subject!r} is not a row; rows: {', '.join(rows)}")
    rng = np.random.default_rng(0) if rng is None else rng
    tasks = np.asarray(list(tasks), dtype=object)
    i = rows.index(subject)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    masks = regimes(budgets, low_limit)
    idx_of = {name: np.flatnonzero(m) for name, m in masks.items()}
    draws_of = {name: stratified_draws(list(tasks[idx]), s.shape[2], resamples, rng) for name, idx in idx_of.items()
                if idx.size}
    for j, other in enumerate(rows):
        if j == i:
            continue
        cell: dict[str, dict[str, Any]] = {}
        for name, idx in idx_of.items():
            x, y = s[idx, i, :], s[idx, j, :]
            per = _u_per_setting(x, y)
            ok = ~np.isnan(per)
            res: dict[str, Any] = {"p": None, "lo": None, "hi": None, "n_settings": int(ok.sum())}
            if ok.any():
                p = float(per[ok].mean())
                si, ki = draws_of[name]
                xb = x[si[:, :, None], ki]  # (B, N, S)
                yb = y[si[:, :, None], ki]
                with warnings.catch_warnings():  # a draw of only settings where a side is absent: NaN, left out
                    warnings.simplefilter("ignore", RuntimeWarning)
                    pb = np.nanmean(_u_per_setting(xb, yb), axis=1)
                lo, hi = interval(p, pb, confidence, (0.0, 1.0))
                res.update(p=p, lo=float(lo), hi=float(hi))
            cell[name] = res
        out[other] = cell
    return out


def summary(scores: np.ndarray, rows: Sequence[str], tasks: Sequence[Any], baseline: Sequence[float | None] | None,
            *, resamples: int = DEFAULT_RESAMPLES, rng: np.random.Generator | None = None,
            confidence: float = CONFIDENCE) -> dict[str, Mapping[str, Any]]:
    """Per row: mean and IQM of the normalised scores with stratified-bootstrap intervals ("for these tasks").

    The scale of each setting (its baseline and best) is fixed at the point estimate, so a draw moves the scores,
    not the ruler.
    """
    ns = normalise(scores, baseline)
    rng = np.random.default_rng(0) if rng is None else rng
    out: dict[str, Mapping[str, Any]] = {}
    stats = {"mean": lambda a: aggregate(a, "mean"), "iqm": lambda a: aggregate(a, "iqm")}
    res = {}
    for name, f in stats.items():
        point = f(ns)
        draws = bootstrap(ns, tasks, f, resamples, rng)
        lo, hi = interval(point, draws, confidence)
        res[name] = (point, lo, hi)
    for r, label in enumerate(rows):
        out[label] = {name: {"value": _f(p[r]), "lo": _f(lo[r]), "hi": _f(hi[r])} for name, (p, lo, hi) in res.items()}
    return out


def share_intervals(scores: np.ndarray, tasks: Sequence[Any], k: int, *, resamples: int = DEFAULT_RESAMPLES,
                    rng: np.random.Generator | None = None, confidence: float = CONFIDENCE
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k shares of each row with intervals from the bootstrap stratified by task: (share, lo, hi), (rows,) each.

    ``scores``: (settings x rows x seeds) per-seed scores of each row's choice (cross-fitted or evaluation seeds:
    the choice is not redone in a draw, it was made without the seed it is scored on). A draw resamples settings
    within tasks and seeds within settings, averages each row's drawn seeds, and credits finishes once
    (:func:`budgetsched.bench.analysis.fair.topk_credit`); a share is total credit / settings, so the Top-1 shares
    of every draw sum to 1 when every row is present. Intervals are for these tasks, inside [0, 1].
    """
    from budgetsched.bench.analysis.fair import topk_credit

    s = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(0) if rng is None else rng
    point = topk_credit(_setting_means(s), k).mean(axis=0) if s.shape[0] else np.full(s.shape[1], np.nan)
    if s.shape[0] == 0:
        return point, point.copy(), point.copy()
    si, ki = stratified_draws(tasks, s.shape[2], resamples, rng)
    shares = np.empty((resamples, s.shape[1]))
    for c in range(0, resamples, 256):  # in chunks: a draw is settings x rows x seeds, credits rows x rows
        drawn = np.moveaxis(s[si[c:c + 256, :, None], :, ki[c:c + 256]], -1, 2)  # (b, N, rows, S)
        shares[c:c + 256] = topk_credit(_setting_means(drawn), k).mean(axis=1)
    lo, hi = interval(point, shares, confidence, (0.0, 1.0))
    return point, lo, hi


def _f(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _stacked_scores(rankings: Sequence[Any]) -> np.ndarray:
    """The settings' fair (rows x seeds) scores as one (settings x rows x seeds) array, NaN where a setting has
    fewer seeds than the most."""
    seeds = max(r.scores.shape[1] for r in rankings)
    scores = np.full((len(rankings), len(rankings[0].labels), seeds), np.nan)
    for i, r in enumerate(rankings):
        scores[i, :, : r.scores.shape[1]] = r.scores
    return scores


def table1(rankings: Sequence[Any], tasks: Sequence[Any], budgets: Sequence[float], *, low_limit: float = 25.0,
           resamples: int = DEFAULT_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE
           ) -> dict[str, dict[str, dict[str, Any]]]:
    """Table 1 with each finish credited once: per row and split ("low", "high", "overall") the Top-1 / Top-3 share,
    its credit, the settings where the row has a result, and 95 % intervals for these tasks.

    ``rankings``: one :class:`budgetsched.bench.analysis.fair.FairRanking` per setting counted in Table 1, all with
    the same ``labels``. A share is the row's credit over the split's settings divided by their number (the same
    denominator for every row), so the Top-1 shares of a split sum to 1 when each setting has a result.
    ``n_top1`` / ``n_top3`` are credits (a tie of two adds 1/2 to each). ``n_candidates``: the median over the
    settings where the row has a result of the candidates it chose among. Intervals: :func:`share_intervals` (seeds
    within settings, settings within tasks; None with one seed per setting, where the report makes no claim).
    """
    if not rankings:
        return {}
    labels = list(rankings[0].labels)
    scores = _stacked_scores(rankings)
    top1 = np.array([r.top1 for r in rankings])
    top3 = np.array([r.top3 for r in rankings])
    present = np.array([~np.isnan(r.means) for r in rankings])
    cands = np.array([r.n_candidates for r in rankings])
    fair_all = all(r.fair for r in rankings)
    masks = regimes(budgets, low_limit)
    out: dict[str, dict[str, dict[str, Any]]] = {x: {} for x in labels}
    for split, name in (("low", "low"), ("high", "high"), ("overall", "all")):
        m = masks[name]
        n = int(m.sum())
        ci1 = ci3 = None
        if n and fair_all:
            rng = np.random.default_rng([int(seed), zlib.crc32(split.encode())])  # one stream per split
            _, lo1, hi1 = share_intervals(scores[m], [t for t, k in zip(tasks, m) if k], 1, resamples=resamples,
                                          rng=rng, confidence=confidence)
            _, lo3, hi3 = share_intervals(scores[m], [t for t, k in zip(tasks, m) if k], 3, resamples=resamples,
                                          rng=rng, confidence=confidence)
            ci1, ci3 = (lo1, hi1), (lo3, hi3)
        for j, label in enumerate(labels):
            have = m & present[:, j]
            c1, c3 = float(top1[m, j].sum()), float(top3[m, j].sum())
            out[label][split] = {
                "top1": c1 / n if n else None, "top3": c3 / n if n else None, "n": n,
                "n_present": int(have.sum()), "n_top1": c1, "n_top3": c3,
                "n_candidates": float(np.median(cands[have, j])) if have.any() else 0.0,
                "top1_ci": None if ci1 is None else (float(ci1[0][j]), float(ci1[1][j])),
                "top3_ci": None if ci3 is None else (float(ci3[0][j]), float(ci3[1][j])),
            }
    return out


def study_statistics(rankings: Sequence[Any], tasks: Sequence[Any], budgets: Sequence[float],
                     baselines: Mapping[Any, float | None], subject: str | None, *, low_limit: float = 25.0,
                     resamples: int = DEFAULT_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE
                     ) -> dict[str, Any]:
    """The study-level statistics of the report, from the settings' fair rankings (per-seed scores kept apart from
    the choices): per row the mean and IQM of the normalised scores (:func:`summary`; each task's trivial baseline
    from ``baselines``, else normalised to the best) and, for the ``subject``, P(subject better than each other
    row) per budget regime (:func:`improvement_by_regime`). Every interval is for these tasks. Settings with one
    seed make no claim: without two seeds everywhere the result says so and gives no intervals."""
    if not rankings:
        return {}
    labels = list(rankings[0].labels)
    scores = _stacked_scores(rankings)
    base = [baselines.get(t) for t in tasks]
    fair_all = all(r.fair for r in rankings)
    rng = np.random.default_rng([int(seed), zlib.crc32(b"statistics")])
    out: dict[str, Any] = {
        "scope": "for these tasks: seeds resampled within settings, settings within tasks, tasks fixed",
        "baselines": {str(t): baselines.get(t) for t in dict.fromkeys(tasks)},
        "fairness_claim": fair_all,
    }
    if fair_all:
        out["normalised"] = summary(scores, labels, tasks, base, resamples=resamples, rng=rng, confidence=confidence)
        if subject in labels:
            out["p_improvement"] = {"subject": subject, "by_row": improvement_by_regime(
                scores, labels, subject, tasks, budgets, low_limit=low_limit, resamples=resamples, rng=rng,
                confidence=confidence)}
    else:
        ns = normalise(scores, base)
        out["normalised"] = {x: {s: {"value": _f(v), "lo": None, "hi": None}
                                 for s, v in (("mean", aggregate(ns, "mean")[j]), ("iqm", aggregate(ns, "iqm")[j]))}
                             for j, x in enumerate(labels)}
    return out
