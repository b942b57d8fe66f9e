"""Refined schedules from a study's own runs (Defazio et al. 2023, "When, why and how much?").

The ``refined`` profile turns a previous run's gradient norms into a schedule (``budgetsched.profiles.refined``).
``budgetsched refine STORE --from linear`` does it for a whole study: in every setting (task x optimizer x budget)
it takes the ``--from`` schedule's run chosen on validation (its LR with the lowest mean validation metric over
seeds), averages the per-epoch gradient norms those runs recorded (``curves["grad_norm"]``, the mean L2 norm of the
mini-batch gradient over each epoch), and adds a ``refined`` schedule built from them to the setting, with its LR
tuned on the same grid as the other schedules and the same seeds. The new trials are ordinary trials of the same
store, so Table 1 ranks ``refined`` beside the rest.

Two approximations, stated: the norms are per-epoch means, not per-step (a run of one epoch gives a constant norm,
hence exactly the linear profile); and for Adam the refinement's ``1 / ||g||_1`` weighting is applied to the L2
norm (``weighting="adam"``), the only one recorded.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from budgetsched.bench.analysis.rows import setting_key, trial_rows
from budgetsched.bench.protocol import selection
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.protocol.status import Status
from budgetsched.errors import UsageError

__all__ = ["refined_trials"]

_WEIGHTING = {"sgdm": "sgd", "adam": "adam", "adamw": "adam"}  # AdamW adapts per coordinate as Adam does


def refined_trials(rows: Iterable[TrialRow | Mapping[str, Any]], source: str = "linear") -> list[TrialConfig]:
    """The ``refined`` trials of every setting of a study whose trials are ``rows`` (``Store.trial_rows()``).

    Raises:
        UsageError: ``source`` is not a schedule of the study, or none of its runs recorded gradient norms.
    """
    rows = [r for r in trial_rows(rows) if r.status is not Status.FAILED]
    labels = sorted({r.label for r in rows})
    if source not in labels:
        raise UsageError(f"--from {source!r} is not a schedule of this study; choose from {', '.join(labels)}")
    settings: dict[tuple, list[TrialRow]] = {}
    for r in rows:
        settings.setdefault((*setting_key(r), r.budget_unit), []).append(r)
    out: list[TrialConfig] = []
    recorded = False
    for (task, optimizer, budget, unit), group in settings.items():
        mine = [r for r in group if r.label == source]
        by_lr: dict[float, list[TrialRow]] = {}
        for r in mine:
            by_lr.setdefault(float(r.lr), []).append(r)
        if not by_lr:
            continue

        best, best_score = selection.choose_lr(
            {lr: [selection.score(r.status, r.val_metric) for r in rs] for lr, rs in by_lr.items()})
        chosen = [r for r in by_lr[best] if r.status is Status.DONE]
        series = [r.curves.get("grad_norm") or [] for r in chosen]
        series = [s for s in series if s and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0
                                                  for v in s)]
        if not series or math.isinf(best_score):
            continue
        recorded = True
        n = min(len(s) for s in series)
        norms = [sum(s[i] for s in series) / len(series) for i in range(n)]
        if len(norms) == 1:
            norms = norms * 2  # one evaluation period: a constant norm (the linear profile)
        norms = [float(f"{v:.6g}") for v in norms]
        lrs = sorted({float(r.lr) for r in group if r.schedule != "plateau"})
        seeds = sorted({r.seed for r in group})
        factor = chosen[0].config.diverge_factor
        params = (("grad_norms", tuple(norms)), ("weighting", _WEIGHTING.get(optimizer, "sgd")))
        out += [TrialConfig(task, "refined", optimizer, budget, lr, seed, params, unit, factor)
                for lr in lrs for seed in seeds]
    if not recorded:
        raise UsageError(f"no run of {source!r} in this study recorded gradient norms (studies run before "
                         "budgetsched 0.2 did not); rerun it to refine")
    return out
