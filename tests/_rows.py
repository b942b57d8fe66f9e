"""Hand-made trials typed as the store types them: tests write rows as plain dicts (the stored columns), and
:func:`typed` turns them into :class:`~budgetsched.bench.protocol.records.TrialRow` s before they reach the analysis."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.protocol.records import Provenance, TrialRow
from budgetsched.bench.protocol.status import Status


def trial_row(d: Mapping[str, Any]) -> TrialRow:
    """One hand-made row (task, schedule, schedule_params, optimizer, budget, lr, seed, status, metrics, ...); its
    label is the config's, as for a stored row."""
    unit = d.get("budget_unit") or (d.get("config") or {}).get("budget_unit") or "steps"
    config = TrialConfig(d["task"], d["schedule"], d["optimizer"], d["budget"], d["lr"], d["seed"],
                         tuple(sorted((d.get("schedule_params") or {}).items())), unit)
    return TrialRow(key=d.get("key") or config.key, config=config, status=Status.parse(d["status"]),
                    val_loss=d.get("val_loss"), val_metric=d.get("val_metric"), test_loss=d.get("test_loss"),
                    test_metric=d.get("test_metric"), curves=d.get("curves") or {}, steps=d.get("steps"),
                    wall_time=d.get("wall_time"), error=d.get("error"), provenance=Provenance(),
                    total_steps=d.get("total_steps"), stand_in=d.get("stand_in"))


def typed(rows: Iterable[Mapping[str, Any] | TrialRow]) -> list[TrialRow]:
    """Every row as a TrialRow (rows already typed pass through)."""
    return [r if isinstance(r, TrialRow) else trial_row(r) for r in rows]
