"""Reading a study's trials for analysis: typed rows in, the protocol's values out.

Every analysis entry point (the report, the advisor, the experiments' sections, refinement, the figures) takes the
store's trials as :class:`~budgetsched.bench.protocol.records.TrialRow` s (``Store.trial_rows()``); a mapping as
``Store.rows()`` spells it is decoded once here (:func:`trial_rows`), so the rest reads attributes and the
:class:`~budgetsched.bench.protocol.status.Status` enum, never string keys.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from budgetsched.bench.analysis import stats
from budgetsched.bench.analysis.report_model import LrPoint
from budgetsched.bench.protocol import selection
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.protocol.status import FINISHED, STATUSES

__all__ = ["trial_rows", "schedule_order", "metric_value", "patience_of", "metric_name", "trial_values",
           "lr_points", "setting_key"]

# Display order of the paper's tables ("None" first, REX last); other labels go between, alphabetically.
_ORDER = ("constant", "step", "plateau", "cosine", "onecycle", "linear", "exp")
_LAST = ("rex",)

#: A stored metric as a score: None / NaN / inf mean the run did not produce a usable number -> +inf.
metric_value = selection.metric_score


def trial_rows(rows: Iterable[TrialRow | Mapping[str, Any]]) -> list[TrialRow]:
    """The trials as :class:`TrialRow` s: rows already typed pass through, a mapping of stored columns (as
    ``Store.rows()`` gives them) is decoded with :meth:`TrialRow.from_stored`.

    Raises:
        ValueError: a row with an unknown status, or one that cannot be decoded (naming its key).
    """
    out = []
    for r in rows:
        if isinstance(r, TrialRow):
            out.append(r)
            continue
        if r.get("status") not in STATUSES:
            raise ValueError(f"row {r.get('key')!r} has unknown status {r.get('status')!r}; "
                             f"choose from {', '.join(STATUSES)}")
        try:
            out.append(TrialRow.from_stored(r))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"row {r.get('key')!r} cannot be read as a trial ({e})") from None
    return out


def schedule_order(labels: Iterable[str]) -> list[str]:
    """Labels in the paper's display order: constant, step, plateau, cosine, onecycle, linear, exp, others, rex."""
    labels = set(labels)
    head = [x for x in _ORDER if x in labels]
    tail = [x for x in _LAST if x in labels]
    return head + sorted(labels - set(head) - set(tail)) + tail


def patience_of(row: TrialRow) -> int | None:
    """A plateau row's patience (in evaluations); None for other schedules."""
    if row.schedule != "plateau":
        return None
    p = row.params.get("patience")
    return None if p is None else int(p)


def metric_name(task: str) -> str:
    """The task's metric name from the task registry; a generic name for unknown or removed tasks."""
    try:  # the task registry is optional here: rows from unknown or removed tasks still get a report
        from budgetsched.bench.tasks import get_task

        return str(get_task(task).metric_name)
    except Exception:
        return "metric (lower is better)"


def metric_bounds(name: str) -> tuple[float, float]:
    """The range a metric's values (and so their intervals) can take: ``[0, 100]`` for a percentage (``"error %"``),
    ``[0, inf)`` for a loss-like metric (nll, nats, bits/char, loss, perplexity), unbounded otherwise (a user's metric
    may be negative)."""
    low = name.lower()
    if "%" in low:
        return 0.0, 100.0
    if any(w in low for w in ("nll", "nats", "bits", "loss", "perplexity")):
        return 0.0, math.inf
    return -math.inf, math.inf


def trial_values(row: TrialRow) -> tuple[float, float]:
    """(validation score, test value) of a trial under the protocol (:func:`selection.trial_values`)."""
    return selection.trial_values(row.status, row.val_metric, row.test_metric)


def setting_key(row: TrialRow) -> tuple[str, str, float]:
    """The setting a trial belongs to: (task, optimizer, budget)."""
    return row.task, row.optimizer, float(row.budget)


def lr_points(rows: Sequence[TrialRow | Mapping[str, Any]],
              metric: str = "test") -> dict[tuple[str, str, float], dict[str, list[LrPoint]]]:
    """Per setting and schedule label, one :class:`LrPoint` per LR (sorted), from the finished trials.

    ``metric`` is "test" or "val". Plateau uses, at each LR, the patience the protocol chooses (the lowest mean
    validation metric, the smaller patience on a tie). The interval is :func:`stats.mean_interval` of the seeds
    (None with one seed or a diverged seed).
    """
    if metric not in ("test", "val"):
        raise ValueError(f"metric must be 'test' or 'val', got {metric!r}")
    groups: dict[tuple[str, str, float], dict[str, dict[float, list[tuple]]]] = {}
    for r in trial_rows(rows):
        if r.status in FINISHED:
            g = groups.setdefault(setting_key(r), {})
            g.setdefault(r.label, {}).setdefault(float(r.lr), []).append((patience_of(r), r.seed, *trial_values(r)))
    out: dict[tuple[str, str, float], dict[str, list[LrPoint]]] = {}
    for key, by_label in groups.items():
        out[key] = {}
        for label in schedule_order(by_label):
            pts = []
            for lr in sorted(by_label[label]):
                # the patience chosen at this LR: the protocol's choice among this LR's patiences
                cands = selection.candidates(by_label[label][lr], order=lambda p: -1 if p is None else p)
                k = selection.choose_one(selection.seed_means(cands.val))
                ys = [float(y) for y in (cands.test if metric == "test" else cands.val)[k] if not np.isnan(y)]
                mean = math.inf if any(math.isinf(y) for y in ys) else math.fsum(ys) / len(ys)
                ci = stats.mean_interval(ys)
                pts.append(LrPoint(lr, cands.keys[k], mean, None if ci is None else ci[1],
                                   None if ci is None else ci[2], len(ys)))
            out[key][label] = pts
    return out
