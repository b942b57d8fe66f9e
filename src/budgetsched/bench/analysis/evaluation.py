"""Evaluation seeds: retrain each configuration chosen on validation on fresh seeds, and score the choice on them.

Selection apart from evaluation (docs/protocol.md "Fairness", F3). After the tuning grid, per setting (task x
optimizer x budget) and schedule row, the configuration the report chooses (:func:`choices`: the same candidates,
stand-in rule and selection as :func:`budgetsched.bench.analysis.fair.rank_setting`, through
:func:`budgetsched.bench.analysis.fair.tuning_choice`) is retrained on ``n`` fresh seeds
``max(tuning seeds) + 1 .. max(tuning seeds) + n`` (:func:`evaluation_trials`). Each evaluation trial is an ordinary
:class:`~budgetsched.bench.protocol.grid.TrialConfig` with the new seed; the store's ``evaluations`` table records
which row and configuration it evaluates and what the choice was made on (:meth:`Store.record_evaluations`).

Evaluation trials never enter a choice: :func:`tuning_rows` removes them from the trials the choice (and the report's
selection) sees. The report uses a setting's evaluation runs only when every row's *current* choice has all its
evaluation seeds (:func:`evaluation_matrix`); otherwise the runs are stale (more LRs or seeds changed a choice) or
incomplete, the report says which are missing and cross-fits that setting instead.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from budgetsched.bench.analysis import fair
from budgetsched.bench.analysis.rows import patience_of, schedule_order, setting_key, trial_values
from budgetsched.bench.protocol import selection
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.protocol.status import FINISHED

__all__ = ["Candidates", "candidates", "choices", "tuning_rows", "evaluation_trials", "evaluation_matrix"]

Key = tuple[str, float, "int | None"]


@dataclasses.dataclass(frozen=True)
class Candidates:
    """One setting's tuning candidates as the report builds them: ``keys`` (label, LR, patience) in the protocol's
    order, ``val`` / ``test`` (candidates x seeds), ``seeds``, ``stand_in`` per candidate and ``trials``: per
    candidate, its finished rows by seed."""

    keys: list[Key]
    val: np.ndarray
    test: np.ndarray
    seeds: list[int]
    stand_in: list[str | None]
    trials: list[dict[int, TrialRow]]


def candidates(grows: Iterable[TrialRow], labels: Sequence[str] | None = None) -> Candidates:
    """The finished tuning trials of one setting as candidates x seeds arrays, each label's candidates contiguous
    (in ``labels`` order, default the display order) and ordered by LR, then patience (the selection's tie order):
    the arrays :func:`budgetsched.bench.analysis.setting.analyse_setting` ranks."""
    by_label: dict[str, dict[tuple[float, int | None], dict[int, TrialRow]]] = {}
    for r in grows:
        if r.status in FINISHED:
            by_label.setdefault(r.label, {}).setdefault((float(r.lr), patience_of(r)), {})[r.seed] = r
    present = [x for x in (schedule_order(by_label) if labels is None else labels) if x in by_label]
    pos = {x: i for i, x in enumerate(present)}
    c = selection.candidates(
        [((label, lr, pat), s, *trial_values(r))
         for label in present for (lr, pat), trials in by_label[label].items() for s, r in trials.items()],
        order=lambda k: (pos[k[0]], k[1], -1 if k[2] is None else k[2]))
    trials = [by_label[k[0]][(k[1], k[2])] for k in c.keys]
    stand = [next((r.stand_in for r in t.values() if r.stand_in), None) for t in trials]
    return Candidates(list(c.keys), c.val, c.test, [int(s) for s in c.seeds], stand, trials)


def choices(cands: Candidates, labels: Sequence[str], merge: bool = False) -> dict[str, int]:
    """Row label -> index of its chosen candidate (rows without one left out): the report's Table-1 choice."""
    if not cands.keys:
        return {}
    chosen = fair.tuning_choice(cands.keys, cands.val, cands.stand_in, labels, merge=merge)
    return {label: int(c) for label, c in zip(labels, chosen) if c >= 0}


def _eval_only(records: Iterable[Mapping[str, Any]], planned_keys: Iterable[str] = ()) -> set[str]:
    """Keys of evaluation trials that are not also trials of a study's grid (a later study with more seeds may
    plan the very same trial: then it is a tuning trial too)."""
    return {r["key"] for r in records} - set(planned_keys)


def tuning_rows(rows: Iterable[TrialRow], records: Iterable[Mapping[str, Any]],
                planned_keys: Iterable[str] = ()) -> tuple[list[TrialRow], list[TrialRow]]:
    """(tuning rows, evaluation rows): evaluation trials (recorded in ``records``) never enter a choice."""
    only = _eval_only(records, planned_keys)
    rows = list(rows)
    return [r for r in rows if r.key not in only], [r for r in rows if r.key in only]


def _digest(keys: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def evaluation_trials(rows: Iterable[TrialRow], n: int, settings: Iterable[tuple[str, str, float]] | None = None
                      ) -> list[tuple[TrialConfig, dict[str, Any]]]:
    """The evaluation trials of ``n`` fresh seeds for each chosen configuration, with their records.

    ``rows``: the tuning trials (:func:`tuning_rows`); ``settings``: the (task, optimizer, budget) to evaluate
    (default: every setting in ``rows``). Per setting, each schedule row's choice (:func:`choices`, plateau its own
    row) is retrained at seeds ``m + 1 .. m + n``, ``m`` the setting's largest tuning seed: deterministic, so a rerun
    asks for the same trials (and trains none), and never a tuning seed. Returns (config, record) pairs; a record
    names the setting, row, configuration and seed, and in ``choice`` the tuning seeds, the row's candidates and a
    digest of its tuning trials' keys.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a count of evaluation seeds >= 0, got {n!r}")
    groups: dict[tuple[str, str, float], list[TrialRow]] = {}
    for r in rows:
        groups.setdefault(setting_key(r), []).append(r)
    wanted = set(groups) if settings is None else {(t, o, float(b)) for t, o, b in settings}
    out: list[tuple[TrialConfig, dict[str, Any]]] = []
    for key in sorted(k for k in groups if k in wanted):
        cands = candidates(groups[key])
        if not cands.seeds or n == 0:
            continue
        labels = schedule_order({k[0] for k in cands.keys})
        first = max(cands.seeds) + 1
        for label, c in choices(cands, labels).items():
            proto = next(iter(cands.trials[c].values())).config
            own = [i for i, k in enumerate(cands.keys) if k[0] == label]
            choice = {"tuning_seeds": cands.seeds, "candidates": [[cands.keys[i][1], cands.keys[i][2]] for i in own],
                      "tuning_keys": _digest(r.key for i in own for r in cands.trials[i].values())}
            for seed in range(first, first + n):
                config = dataclasses.replace(proto, seed=seed)
                out.append((config, {"key": config.key, "task": key[0], "optimizer": key[1], "budget": key[2],
                                     "label": label, "lr": cands.keys[c][1], "patience": cands.keys[c][2],
                                     "seed": seed, "choice": choice}))
    return out


def evaluation_matrix(cands: Candidates, erows: Sequence[TrialRow], records: Sequence[Mapping[str, Any]],
                      labels: Sequence[str], merge: bool = False) -> tuple[np.ndarray | None, tuple]:
    """(test_eval, issues) for :func:`budgetsched.bench.analysis.fair.rank_setting`, one setting.

    ``erows``: the setting's evaluation trials, ``records`` their records. ``test_eval`` (candidates x evaluation
    seeds) holds the test metric of each finished evaluation run that evaluates that very candidate, at a seed that
    is not a tuning seed; it is None (the report cross-fits) when the setting has no evaluation runs, or when a row's
    current choice lacks some: ``issues`` then lists (label, LR, patience, missing seeds, stale) per such row, stale
    when the row's evaluation runs evaluate another configuration (the choice changed since they were trained).
    """
    rec = {r["key"]: r for r in records}
    mine = [r for r in erows if r.key in rec]
    if not mine or not cands.keys:
        return None, ()
    tuning = set(cands.seeds)
    seeds = sorted({int(rec[r.key]["seed"]) for r in mine} - tuning)
    if not seeds:
        return None, ()
    col = {s: j for j, s in enumerate(seeds)}
    row_of = {k: i for i, k in enumerate(cands.keys)}
    te = np.full((len(cands.keys), len(seeds)), np.nan)
    evaluated: dict[str, set[int]] = {}  # label -> candidates it has evaluation runs of
    for r in mine:
        d = rec[r.key]
        k = (d["label"], float(d["lr"]), None if d["patience"] is None else int(d["patience"]))
        if k in row_of:
            evaluated.setdefault(d["label"], set()).add(row_of[k])
        if r.status in FINISHED and k in row_of and int(d["seed"]) in col:
            te[row_of[k], col[int(d["seed"])]] = trial_values(r)[1]
    issues = []
    for label, c in choices(cands, labels, merge).items():
        miss = tuple(s for s in seeds if np.isnan(te[c, col[s]]))
        if miss:
            k = cands.keys[c]
            stale = bool(evaluated.get(k[0], set()) - {c})
            issues.append((label, k[1], k[2], miss, stale))
    return (None if issues else te), tuple(issues)
