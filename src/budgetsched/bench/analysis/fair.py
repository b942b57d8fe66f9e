"""Fair by construction: each finish credited once, equal tuning, and selection kept apart from evaluation.

Pure functions on numpy arrays; the report calls them. Lower metric values are better; ``+inf`` is a diverged run
and ``NaN`` a missing one (a failed or never-run trial). A *setting* (task x optimizer x budget) has *rows* (the
schedules compared, e.g. ``rex``, ``linear``, ``plateau``) and each row has *candidates* (its LRs, and for plateau
its patience); every candidate has one run per seed. One setting is described by

* ``val``, ``test``: (candidates x seeds) final validation and test metrics;
* ``rows``: (candidates,) int, the row each candidate belongs to (candidates of a row ordered as the selection
  rule breaks ties: the smaller LR first, then the smaller patience);
* ``run_ids``: (candidates,) which underlying run a candidate is (a plateau trial that can never trigger reuses the
  constant trial of the same LR and seed: a *stand-in*, the same run under a second name).

Why each rule (measured with a null study, docs/protocol.md "Fairness"):

1. **A finish is counted once** (:func:`topk_credit`, :func:`drop_borrowed`). Rows that tie exactly share the
   positions they occupy: a group of g tied rows at positions a..b (1-based) gets ``|[a, b] ∩ [1, k]| / g`` Top-k
   credit each, so the Top-1 credits of a setting sum to 1 and the Top-k credits to ``min(k, rows)``. A candidate
   that is another row's run (a stand-in) is dropped from the borrowing row, so constant's run never finishes
   twice under two names.
2. **Equal tuning** (:func:`equal_tuning`). Choosing the best of more candidates on validation and reporting the
   same runs' test inflates the winner (validation and test share the trained model). Rows are compared on the same
   number of candidates: plateau at one patience fixed before the run, every row on the LRs all rows have.
3. **Selection apart from evaluation** (:func:`cross_fit`, :func:`evaluation_seeds`). The score of a chosen
   configuration never comes from the runs that chose it: either fresh *evaluation seeds* of each chosen
   configuration, or *cross-fitting over seeds*: the configuration for seed s is chosen on the mean validation of
   the other seeds (leave-one-seed-out), and its test at seed s is reported::

       c*(s) = argmin_c  mean_{s' != s} val[c, s'],      score[s] = test[c*(s), s]

   Under the null (every candidate has the same distribution) ``score[s]`` is independent of the choice, so every
   row's score has the same distribution however many candidates it had. Paired intervals ("clearly better /
   worse") use the next-seed variant, whose per-seed scores are independent under the null (:func:`cross_fit`).
4. **One seed** (:func:`same_run`): nothing is left to evaluate a choice on; choice and score come from the same
   run, and :func:`evaluate` says so (``fair = False``: no fairness claim, no interval).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

from budgetsched.bench.protocol import selection

__all__ = ["REL_TIE", "topk_credit", "shares", "drop_borrowed", "candidate_counts", "TuningCheck", "equal_tuning",
           "loo_means", "choose", "cross_fit", "evaluation_seeds", "same_run", "Evaluation", "evaluate",
           "row_means", "paired_verdict", "t_interval", "MODES", "FairRanking", "rank_setting", "tuning_choice"]

#: Two row values within this relative distance are a tie (the report's tolerance).
REL_TIE = 1e-9
#: How a chosen configuration's score was obtained (``Evaluation.mode``).
MODES = ("evaluation-seeds", "cross-fit", "same-run")


# ---------------------------------------------------------------------------------------------------------------
# 1. credit once


def _quantise(v: np.ndarray, rel_tol: float) -> np.ndarray:
    """``v`` with its mantissa rounded to about ``rel_tol`` relative precision: equal after rounding is a tie.
    (Unlike "within rel_tol of each other", equality is transitive, so tie groups are well defined.)"""
    bits = max(1, int(round(-math.log2(rel_tol)))) if rel_tol > 0 else 52
    with np.errstate(invalid="ignore"):
        m, e = np.frexp(np.where(np.isfinite(v), v, 0.0))
        q = np.ldexp(np.round(m * 2.0 ** bits) / 2.0 ** bits, e)
    return np.where(np.isfinite(v), q, v)


def topk_credit(values: np.ndarray, k: int, rel_tol: float = REL_TIE) -> np.ndarray:
    """Top-k credit of each row, ties sharing the positions they occupy.

    ``values``: (..., rows) a row's reported value per setting (lower is better, +inf diverged, NaN = the row has no
    result: it takes no position and gets 0). Values equal to about ``rel_tol`` relative precision tie (+inf ties
    with +inf). A row with ``a`` rows strictly better and ``g`` rows tied with it (itself included) occupies
    positions a+1..a+g and gets ``max(0, min(a + g, k) - a) / g``. Over the rows of one setting the credits sum to
    ``min(k, present)`` exactly.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    v = _quantise(np.asarray(values, dtype=float), rel_tol)
    if v.ndim == 0:
        v = v.reshape(1)
    present = ~np.isnan(v)
    mine, other = v[..., :, None], v[..., None, :]
    with np.errstate(invalid="ignore"):
        better = (other < mine).sum(axis=-1)
        tied = (other == mine).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        credit = np.clip(np.minimum(better + tied, k) - better, 0, None) / tied
    return np.where(present, credit, 0.0).reshape(np.shape(values) if np.ndim(values) else (1,))


def shares(credit: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Share of each row: its total credit over the settings of a view divided by the number of settings.

    ``credit``: (settings x rows) from :func:`topk_credit`. The denominator is the same for every row (all settings
    of the view), so the Top-1 shares of a view sum to 1 whenever every setting has a result; a row missing from a
    setting earns nothing there (``present`` is accepted for symmetry and only checked for shape).
    """
    c = np.asarray(credit, dtype=float)
    if present is not None and np.shape(present) != c.shape:
        raise ValueError(f"present has shape {np.shape(present)}, credit {c.shape}")
    if c.shape[0] == 0:
        return np.full(c.shape[1:], np.nan)
    return c.sum(axis=0) / c.shape[0]


def drop_borrowed(rows: Sequence[int], run_ids: Sequence[Hashable],
                  own: Sequence[bool] | None = None) -> np.ndarray:
    """Keep-mask over candidates so that each underlying run belongs to one row only.

    A run shared by candidates of several rows (a plateau stand-in that reuses constant's trial) stays with its
    owner: the row of a candidate with ``own`` True (the trial was trained under that row's schedule; default: the
    first row, in row order, that has it); candidates of other rows with that run are dropped. A run that only one
    row has is kept, whatever ``own`` says (it is not counted twice).
    """
    rows = np.asarray(rows)
    if len(run_ids) != len(rows) or (own is not None and len(own) != len(rows)):
        raise ValueError("rows, run_ids and own must have one entry per candidate")
    own_arr = np.ones(len(rows), dtype=bool) if own is None else np.asarray(own, dtype=bool)
    owner: dict[Hashable, int] = {}
    for c in sorted(range(len(rows)), key=lambda c: (not own_arr[c], rows[c], c)):
        owner.setdefault(run_ids[c], int(rows[c]))
    return np.array([owner[run_ids[c]] == rows[c] for c in range(len(rows))], dtype=bool)


# ---------------------------------------------------------------------------------------------------------------
# 2. equal tuning


def candidate_counts(rows: Sequence[int], n_rows: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Number of candidates of each row (those with ``keep`` True)."""
    rows = np.asarray(rows, dtype=int)
    w = np.ones(len(rows)) if keep is None else np.asarray(keep, dtype=float)
    return np.bincount(rows, weights=w, minlength=n_rows).astype(int)


@dataclass(frozen=True)
class TuningCheck:
    """What :func:`equal_tuning` kept: ``keep`` (candidates), ``counts`` per row before and after, ``grid`` the
    LRs every row has, and ``more`` (rows) still having more candidates than the fewest a present row has."""

    keep: np.ndarray
    counts_before: np.ndarray
    counts: np.ndarray
    grid: tuple[float, ...]
    more: np.ndarray

    @property
    def equal(self) -> bool:
        return not bool(self.more.any())


def equal_tuning(rows: Sequence[int], lrs: Sequence[float], n_rows: int, *, extra: Sequence[float | None] | None =
                 None, fixed_extra: float | None = None, trim: bool = True) -> TuningCheck:
    """Give every row the same number of tuning candidates, or flag the rows that have more.

    ``extra``: a second tuned parameter per candidate (plateau's patience; None/NaN for rows without one).
    ``fixed_extra``: the one value fixed before the run (a task's patience): candidates with another value are
    dropped. ``trim``: keep only LRs that every present row has (refinement and grid edges give rows their own
    points; the common grid is the symmetric part). Rows that still have more candidates than the row with the
    fewest (several patiences at one LR, no common value to trim to) are flagged in ``more``, for the report to say.
    """
    rows = np.asarray(rows, dtype=int)
    lrs = np.asarray(lrs, dtype=float)
    keep = np.ones(len(rows), dtype=bool)
    before = candidate_counts(rows, n_rows)
    if extra is not None and fixed_extra is not None:
        ex = np.array([np.nan if e is None else float(e) for e in extra])
        keep &= np.isnan(ex) | (ex == float(fixed_extra))
        # a row whose candidates all had another value keeps them (no candidate at the fixed value): flagged below
        for r in np.unique(rows[~np.isnan(ex)]):
            if not keep[rows == r].any():
                keep[rows == r] = True
    present = [r for r in range(n_rows) if keep[rows == r].any()]
    grid: set[float] = set()
    if present:
        grid = set.intersection(*(set(lrs[(rows == r) & keep].tolist()) for r in present))
        if trim and grid:
            keep &= np.isin(lrs, sorted(grid))
    counts = candidate_counts(rows, n_rows, keep)
    fewest = min((counts[r] for r in present), default=0)
    more = np.zeros(n_rows, dtype=bool)
    for r in present:
        more[r] = counts[r] > fewest
    return TuningCheck(keep, before, counts, tuple(sorted(grid)), more)


# ---------------------------------------------------------------------------------------------------------------
# 3. selection apart from evaluation


def _means(values: np.ndarray) -> np.ndarray:
    """Mean over present seeds (axis 1): +inf if any present seed diverged, NaN if none is present."""
    v = np.asarray(values, dtype=float)
    present = ~np.isnan(v)
    n = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(present & np.isfinite(v), v, 0.0).sum(axis=1) / n
    out[(np.isinf(v) & present).any(axis=1)] = math.inf
    out[n == 0] = np.nan
    return out


def row_means(scores: np.ndarray) -> np.ndarray:
    """(rows,) the mean over seeds of (rows x seeds) scores: +inf if a seed diverged, NaN if no seed is present."""
    return _means(scores)


def loo_means(values: np.ndarray) -> np.ndarray:
    """Leave-one-seed-out means: ``out[c, s]`` = mean of ``values[c, s']`` over present seeds s' != s.

    +inf if one of those diverged, NaN if none is present (one seed, or the others missing).
    """
    v = np.asarray(values, dtype=float)
    present = ~np.isnan(v)
    inf = np.isinf(v) & present
    finite = np.where(present & ~inf, v, 0.0)
    n = present.sum(axis=1, keepdims=True) - present
    n_inf = inf.sum(axis=1, keepdims=True) - inf
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (finite.sum(axis=1, keepdims=True) - finite) / n
    out = np.where(n_inf > 0, math.inf, out)
    return np.where(n == 0, np.nan, out)


def choose(scores: np.ndarray, rows: Sequence[int], n_rows: int) -> np.ndarray:
    """Per row, the index of the candidate with the lowest score under the protocol's one rule
    (:func:`budgetsched.bench.protocol.selection.choose`: exact ties to the first candidate, i.e. the smaller LR when
    candidates are ordered by LR; NaN never wins). ``scores`` (candidates,) or (candidates x columns) gives (rows,) or
    (rows x columns); -1 where a row has no candidate with a score."""
    s = np.asarray(scores, dtype=float)
    rows = np.asarray(rows, dtype=int)
    single = s.ndim == 1
    s2 = s[:, None] if single else s
    out = np.full((n_rows, s2.shape[1]), -1, dtype=int)
    for r in range(n_rows):
        idx = np.flatnonzero(rows == r)
        if idx.size == 0:
            continue
        block = s2[idx]
        has = ~np.isnan(block).all(axis=0)
        if has.any():
            out[r, has] = idx[selection.choose(block[:, has].T)]
    return out[:, 0] if single else out


def _take(test: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """``test[chosen[r, s], s]`` (NaN where chosen is -1)."""
    cols = np.arange(chosen.shape[1])[None, :]
    out = test[np.maximum(chosen, 0), np.broadcast_to(cols, chosen.shape)]
    return np.where(chosen < 0, np.nan, out)


def cross_fit(val: np.ndarray, test: np.ndarray, rows: Sequence[int], n_rows: int,
              keep: np.ndarray | None = None, scheme: str = "leave-one-out") -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitting over seeds: (scores, chosen), both (rows x seeds).

    ``scheme="leave-one-out"``: ``chosen[r, s]`` is row r's candidate with the lowest mean validation over the seeds
    other than s (the first on a tie), ``scores[r, s] = test[chosen[r, s], s]``: the test of seed s of a
    configuration chosen without seed s. ``scheme="next-seed"``: the choice for seed s is made on the validation of
    the next seed only (s + 1, cyclically). Both are unbiased under the null; they differ in how their per-seed
    scores depend on each other. Leave-one-out uses every other seed for each choice (the better choice), but the
    choices for seeds s and s' share the other seeds' validation, and validation and test share the trained
    model, so its per-seed scores are correlated (measured: rho ~ 0.15 at 3 seeds) and a Student-t interval over
    them is too narrow (3.7 % of null settings "clearly worse" instead of 2.5 %). Next-seed scores are pairwise
    independent under the null (the choice for s uses only seed s + 1, and seed s's score, given that choice, is
    any candidate's draw), so the t interval of paired differences keeps its level (measured 2.4 / 2.7 %). The
    report ranks on leave-one-out and takes paired intervals from next-seed.
    ``keep`` masks candidates out (stand-ins, trimmed candidates). NaN / -1 where no choice can be made (one seed).
    """
    val = np.asarray(val, dtype=float)
    test = np.asarray(test, dtype=float)
    if val.shape != test.shape or val.ndim != 2:
        raise ValueError(f"val and test must be (candidates x seeds) of one shape, got {val.shape} and {test.shape}")
    if scheme == "leave-one-out":
        sel = loo_means(val)
    elif scheme == "next-seed":
        present = np.flatnonzero((~np.isnan(val)).any(axis=0))
        sel = np.full_like(val, np.nan)
        if present.size >= 2:
            nxt = np.roll(present, -1)
            sel[:, present] = val[:, nxt]
    else:
        raise ValueError(f"unknown cross-fitting scheme {scheme!r}; choose from leave-one-out, next-seed")
    if keep is not None:
        sel = np.where(np.asarray(keep, dtype=bool)[:, None], sel, np.nan)
    chosen = choose(sel, rows, n_rows)
    return _take(test, chosen), chosen


def same_run(val: np.ndarray, test: np.ndarray, rows: Sequence[int], n_rows: int,
             keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Choice and score from the same runs (the paper's protocol; the only option with one seed): per row the
    candidate with the lowest mean validation over all seeds, and that candidate's test at every seed.
    Returns (scores, chosen) of shapes (rows x seeds) and (rows,)."""
    val = np.asarray(val, dtype=float)
    test = np.asarray(test, dtype=float)
    m = _means(val)
    if keep is not None:
        m = np.where(np.asarray(keep, dtype=bool), m, np.nan)
    chosen = choose(m, rows, n_rows)
    return _take(test, np.repeat(chosen[:, None], test.shape[1], axis=1)), chosen


def evaluation_seeds(val: np.ndarray, test_eval: np.ndarray, rows: Sequence[int], n_rows: int,
                     keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Choice on the tuning seeds, score from fresh evaluation seeds: (scores, chosen, missing).

    ``val``: (candidates x tuning seeds) validation; ``test_eval``: (candidates x evaluation seeds) test metrics of
    the evaluation runs (NaN where a candidate was not retrained: only chosen configurations need to be). Per row
    the candidate with the lowest mean tuning validation is chosen; ``scores`` (rows x evaluation seeds) are its
    evaluation runs; ``missing`` (rows,) is True where the chosen configuration has evaluation seeds not run (the
    evaluation runs are stale or incomplete: the choice changed, or they were never run).
    """
    val = np.asarray(val, dtype=float)
    te = np.asarray(test_eval, dtype=float)
    if te.ndim != 2 or te.shape[0] != val.shape[0]:
        raise ValueError(f"test_eval must be (candidates x evaluation seeds) with {val.shape[0]} candidates, "
                         f"got {te.shape}")
    m = _means(val)
    if keep is not None:
        m = np.where(np.asarray(keep, dtype=bool), m, np.nan)
    chosen = choose(m, rows, n_rows)
    scores = _take(te, np.repeat(chosen[:, None], te.shape[1], axis=1))
    missing = (chosen >= 0) & np.isnan(scores).any(axis=1)
    return scores, chosen, missing


@dataclass(frozen=True)
class Evaluation:
    """How one setting's rows were scored.

    ``scores`` (rows x seeds): the per-seed scores the report ranks on (their mean) and resamples; ``chosen`` the
    chosen candidate per row (rows,) or per row and seed (rows x seeds, cross-fitting); ``mode`` one of
    :data:`MODES`; ``fair`` False when choice and score come from the same runs; ``stale`` rows whose evaluation
    runs do not match the choice.
    """

    scores: np.ndarray
    chosen: np.ndarray
    mode: str
    fair: bool
    stale: np.ndarray

    @property
    def note(self) -> str:
        if self.mode == "evaluation-seeds":
            return "each choice scored on fresh evaluation seeds (choice made on the tuning seeds)"
        if self.mode == "cross-fit":
            return "cross-fitted over seeds: the choice for seed s made on the other seeds' validation"
        return "one seed: choice and score come from the same run; no fairness claim"


def evaluate(val: np.ndarray, test: np.ndarray, rows: Sequence[int], n_rows: int, *,
             test_eval: np.ndarray | None = None, keep: np.ndarray | None = None,
             same_runs: bool = False, scheme: str = "leave-one-out") -> Evaluation:
    """Score every row of a setting, keeping selection apart from evaluation where the data allow it.

    Evaluation seeds when ``test_eval`` has columns; otherwise cross-fitting when at least two seeds are present
    (``same_runs=True`` forces the paper's same-run scoring, labelled unfair; ``scheme`` as in :func:`cross_fit`);
    otherwise (one seed) the same run.
    """
    val = np.asarray(val, dtype=float)
    if test_eval is not None and np.asarray(test_eval).ndim == 2 and np.asarray(test_eval).shape[1] > 0:
        scores, chosen, missing = evaluation_seeds(val, test_eval, rows, n_rows, keep)
        return Evaluation(scores, chosen, "evaluation-seeds", True, missing)
    n_seeds = int((~np.isnan(val)).any(axis=0).sum())
    if n_seeds >= 2 and not same_runs:
        scores, chosen = cross_fit(val, test, rows, n_rows, keep, scheme)
        return Evaluation(scores, chosen, "cross-fit", True, np.zeros(n_rows, dtype=bool))
    scores, chosen = same_run(val, test, rows, n_rows, keep)
    return Evaluation(scores, chosen, "same-run", False, np.zeros(n_rows, dtype=bool))


def paired_verdict(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float | None,
                                                                                       float | None, str | None]:
    """(mean, lo, hi, verdict) of the paired per-seed differences ``a - b`` (lower is better): the Student-t
    interval over the seeds both have (``scipy.stats.t``, ddof=1); verdict "better" when the interval lies below 0,
    "worse" above 0, None otherwise or with fewer than two finite pairs (no interval)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    both = ~np.isnan(a) & ~np.isnan(b)
    with np.errstate(invalid="ignore"):
        d = a[both] - b[both]
    if d.size == 0:
        return math.nan, None, None, None
    if not np.isfinite(d).all():
        return float(np.mean(d)), None, None, None
    mean = float(d.mean())
    if d.size < 2:
        return mean, None, None, None
    lo, hi = t_interval(d, confidence)
    verdict = "better" if hi < 0 else "worse" if lo > 0 else None
    return mean, lo, hi, verdict


def t_interval(d: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The Student-t ``confidence`` interval of the mean of ``d`` (n >= 2 finite values):
    ``mean -/+ t_{(1+c)/2, n-1} * sd(ddof=1) / sqrt(n)`` (``scipy.stats.t``); the point ``(mean, mean)`` when
    sd = 0. The one t interval of the paired verdicts and the headline rule."""
    from scipy import stats as st

    x = np.asarray(d, dtype=float)
    if x.size < 2 or not np.isfinite(x).all():
        raise ValueError(f"a t interval needs at least two finite values, got {x.tolist()}")
    mean = float(x.mean())
    sem = float(x.std(ddof=1)) / math.sqrt(x.size)
    if sem == 0.0:
        return mean, mean
    lo, hi = st.t.interval(confidence, x.size - 1, loc=mean, scale=sem)
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------------------------
# one setting of a report: the rules above on a setting's candidates x seeds arrays


@dataclass(frozen=True)
class FairRanking:
    """One setting ranked fairly: per Table-1 row (``labels``), its per-seed evaluation ``scores`` (rows x seeds;
    NaN for a row with no result of its own), ``means``, competition ``ranks`` (0 = no result), Top-1 / Top-3
    ``top1`` / ``top3`` credit (ties share it), ``n_candidates`` it chose among; how the scores were obtained
    (``mode``, ``fair``, ``note``); ``stand_in_only``: rows whose every candidate was another row's run; and the
    subject against the best other row (``vs_best_other``: mean, lo, hi, verdict; None without a subject)."""

    labels: tuple[str, ...]
    scores: np.ndarray
    means: np.ndarray
    ranks: np.ndarray
    top1: np.ndarray
    top3: np.ndarray
    n_candidates: np.ndarray
    mode: str
    fair: bool
    note: str
    stand_in_only: tuple[str, ...]
    vs_best_other: tuple[float, float | None, float | None, str | None] | None
    best: int = -1
    runner_up: int = -1
    gap: tuple[float, float | None, float | None, str | None] | None = None
    #: evaluation runs that could not be used (the report fell back to cross-fitting): per row whose chosen
    #: configuration lacks evaluation runs, (label, LR, patience, missing evaluation seeds, stale) - stale when
    #: the row has evaluation runs of another configuration (the choice changed since they were trained)
    evaluation_issues: tuple = ()

    @property
    def tied(self) -> bool | None:
        """True when the runner-up - best interval contains 0, False when it excludes it, None without one."""
        if self.gap is None or self.gap[1] is None:
            return None
        return self.gap[3] is None


def _table_rows(keys: Sequence[tuple[str, float, int | None]], stand_in: Sequence[str | None],
                labels: Sequence[str], merge: bool) -> tuple[np.ndarray, list, np.ndarray, np.ndarray]:
    """(use, keys used, row of each used candidate, keep): the candidates of Table 1's rows ``labels`` (plateau's
    counted as step's with ``merge``), stand-ins dropped from the row that borrows them (:func:`drop_borrowed`)."""
    row_of = {x: i for i, x in enumerate(labels)}
    if merge and "step" in row_of:
        row_of.setdefault("plateau", row_of["step"])
    use = np.array([k[0] in row_of for k in keys], dtype=bool)
    ks = [k for k, u in zip(keys, use) if u]
    rows = np.array([row_of[k[0]] for k in ks], dtype=int)
    si = [s for s, u in zip(stand_in, use) if u]
    run_ids = [(s, k[1], None) if s else (k[0], k[1], k[2]) for k, s in zip(ks, si)]
    keep = drop_borrowed(rows, run_ids, [s is None for s in si]) if len(ks) else np.zeros(0, dtype=bool)
    return use, ks, rows, keep


def tuning_choice(keys: Sequence[tuple[str, float, int | None]], val: np.ndarray, stand_in: Sequence[str | None],
                  labels: Sequence[str], *, merge: bool = False) -> np.ndarray:
    """Per Table-1 row (``labels``), the index into ``keys`` of the configuration chosen on the tuning seeds, -1
    where a row has none: the choice :func:`evaluation_seeds` scores (same rows, same stand-in rule, lowest mean
    validation, ties to the first candidate), so the configurations retrained on evaluation seeds are exactly the
    ones :func:`rank_setting` looks up. Arguments as in :func:`rank_setting`."""
    labels = list(labels)
    use, ks, rows, keep = _table_rows(keys, stand_in, labels, merge)
    if not len(ks):
        return np.full(len(labels), -1, dtype=int)
    m = np.where(keep, _means(np.asarray(val, dtype=float)[use]), np.nan)
    chosen = choose(m, rows, len(labels))
    idx = np.flatnonzero(use)
    return np.where(chosen >= 0, idx[np.maximum(chosen, 0)], -1)


def rank_setting(keys: Sequence[tuple[str, float, int | None]], val: np.ndarray, test: np.ndarray,
                 stand_in: Sequence[str | None], labels: Sequence[str], *, merge: bool = False,
                 subject: str | None = None, test_eval: np.ndarray | None = None,
                 same_runs: bool = False) -> FairRanking:
    """Rank one setting's rows with each finish credited once and selection kept apart from evaluation.

    ``keys``: (label, LR, patience) per candidate, in the protocol's order (a label's candidates by LR, then
    patience); ``val`` / ``test``: (candidates x seeds); ``stand_in``: per candidate, the label whose run it reuses
    (``"constant"`` for a plateau trial that cannot trigger) or None. ``labels``: the rows to rank. ``merge``: the
    paper's view, plateau's candidates counted as step's (then ``labels`` should not hold "plateau"). ``subject``:
    compared with the best other row (chosen by validation, next-seed cross-fitted, paired t interval).
    """
    labels = list(labels)
    val = np.asarray(val, dtype=float)
    test = np.asarray(test, dtype=float)
    use, ks, rows, keep = _table_rows(keys, stand_in, labels, merge)
    v, t = val[use], test[use]
    n = len(labels)
    te = None if test_eval is None else np.asarray(test_eval, dtype=float)[use]
    ev = evaluate(v, t, rows, n, test_eval=te, keep=keep, same_runs=same_runs)
    means = row_means(ev.scores)
    ranks = np.where(np.isnan(means), 0, selection.competition_ranks(np.where(np.isnan(means), np.inf, means)))
    had = candidate_counts(rows, n) if len(ks) else np.zeros(n, dtype=int)
    counts = candidate_counts(rows, n, keep) if len(ks) else np.zeros(n, dtype=int)
    only = tuple(labels[r] for r in range(n) if had[r] > 0 and counts[r] == 0)
    order = [i for i in np.argsort(np.where(np.isnan(means), np.inf, means), kind="stable") if not np.isnan(means[i])]
    best = int(order[0]) if order else -1
    runner = int(order[1]) if len(order) > 1 else -1
    gap = None
    if runner >= 0:  # paired over seeds on next-seed scores (independent under the null: the interval keeps its level)
        two = np.where(rows == best, 0, np.where(rows == runner, 1, -1))
        sel = two >= 0
        pair = evaluate(v[sel], t[sel], two[sel], 2, test_eval=None if te is None else te[sel], keep=keep[sel],
                        same_runs=same_runs, scheme="next-seed")
        d = paired_verdict(pair.scores[1], pair.scores[0])
        gap = d if pair.fair else (d[0], None, None, None)
    vs = None
    if subject is not None and subject in labels and len(ks):
        two = np.where(rows == labels.index(subject), 0, 1)
        if (two == 1).any():
            pair = evaluate(v, t, two, 2, test_eval=te, keep=keep, same_runs=same_runs, scheme="next-seed")
            vs = paired_verdict(pair.scores[0], pair.scores[1]) if pair.fair else \
                (paired_verdict(pair.scores[0], pair.scores[1])[0], None, None, None)
    return FairRanking(tuple(labels), ev.scores, means, ranks.astype(int), topk_credit(means, 1),
                       topk_credit(means, 3), counts, ev.mode, ev.fair, ev.note, only, vs, best, runner, gap)
