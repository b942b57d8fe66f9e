"""Typed records of a trial (torch-free): what an engine returns (:class:`TrialResult`) and what the store gives
back (:class:`TrialRow`, decoded once by :meth:`budgetsched.bench.storage.store.Store.trial_rows`).

A :class:`TrialRow` is the trial's :class:`~budgetsched.bench.protocol.grid.TrialConfig`, its result (status as the
:class:`~budgetsched.bench.protocol.status.Status` enum, metrics, curves, steps, wall time, error), where and with
what it was produced (:class:`Provenance`), its planned run length (``total_steps``) and, for a row that reuses
another trial's result, what it stands in for (``stand_in``). Readers use attributes (``row.status``,
``row.budget``, ``row.config.lr``), never string keys.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.protocol.status import Status

__all__ = ["CURVE_KEYS", "new_curves", "TrialResult", "Provenance", "TrialRow"]

#: Curves recorded per evaluation.
#: ``grad_norm`` is the epoch's mean L2 norm of the mini-batch gradient (before weight decay): the input of the
#: ``refined`` schedule (``budgetsched refine``).
CURVE_KEYS = ("epoch", "step", "train_loss", "val_loss", "val_metric", "lr", "grad_norm")


def new_curves() -> dict[str, list[float]]:
    """Empty curves, one list per :data:`CURVE_KEYS` entry."""
    return {k: [] for k in CURVE_KEYS}


@dataclass
class TrialResult:
    """Outcome of one trial (see docs/architecture.md). Metrics are None unless ``status`` is done."""

    status: Status
    val_loss: float | None
    val_metric: float | None
    test_loss: float | None
    test_metric: float | None
    curves: dict[str, list[float]]  # per evaluation: epoch, step, train_loss, val_loss, val_metric, lr (last step's)
    steps: int  # optimizer steps taken
    wall_time: float  # seconds of training + evaluation (its share of a stacked run)
    error: str | None = None
    # a @trainable's scheduler position when it differs from its plan (None: as planned, or not known)
    scheduler_steps: int | None = None

    @classmethod
    def failed(cls, error: str, curves: dict[str, list[float]] | None = None, steps: int = 0,
               wall_time: float = 0.0) -> "TrialResult":
        return cls(Status.FAILED, None, None, None, None, curves or new_curves(), steps, wall_time, error)


@dataclass(frozen=True)
class Provenance:
    """Where and with what a row was produced, so any number in a report can be traced to it."""

    package_version: str | None = None
    torch_version: str | None = None
    python_version: str | None = None
    hostname: str | None = None
    engine: str | None = None  # the engine that trained it: batched, sequential, ...
    device: str | None = None
    started: str | None = None  # ISO time
    finished: str | None = None  # ISO time the row was written
    run_meta: Mapping[str, Any] | None = None  # the run's whole meta (workers, git commit, ...)


#: The columns of a stored trial, as :meth:`TrialRow.as_dict` gives them (and the store's ``rows()`` did).
ROW_KEYS = (
    "key", "task", "schedule", "schedule_params", "label", "optimizer", "budget", "lr", "seed", "status",
    "val_loss", "val_metric", "test_loss", "test_metric", "curves", "steps", "wall_time", "error",
    "started", "finished", "package_version", "torch_version", "python_version", "hostname", "engine", "device",
    "run_meta", "config", "budget_unit", "total_steps", "stand_in", "scheduler_steps",
)
_PROVENANCE = ("package_version", "torch_version", "python_version", "hostname", "engine", "device", "started",
               "finished", "run_meta")


@dataclass(frozen=True)
class TrialRow:
    """One stored trial, decoded once: config, result, provenance, planned length and stand-in.

    ``key`` is the key the row is stored under (``config.key`` for every row this version writes). ``stand_in``
    names what the row's result reuses (``"constant"``: a plateau whose patience cannot trigger within its budget
    carries the constant trial's result), None for a trial trained as itself. The config's fields are also
    attributes of the row (``row.task``, ``row.budget``, ``row.label``, ...).
    """

    key: str
    config: TrialConfig
    status: Status
    val_loss: float | None
    val_metric: float | None
    test_loss: float | None
    test_metric: float | None
    curves: Mapping[str, list[float]]
    steps: int | None
    wall_time: float | None
    error: str | None
    provenance: Provenance
    total_steps: int | None = None  # the planned run length in optimizer steps (None in a v1 store)
    stand_in: str | None = None
    scheduler_steps: int | None = None  # a @trainable's scheduler position when it differs from the plan

    def __post_init__(self) -> None:
        if not isinstance(self.status, Status):
            raise TypeError(f"TrialRow.status must be a Status, got {self.status!r}")

    # -- the config's fields ------------------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.config.task

    @property
    def schedule(self) -> str:
        return self.config.schedule

    @property
    def params(self) -> dict[str, Any]:
        """The schedule's parameters (``config.params``)."""
        return self.config.params

    @property
    def label(self) -> str:
        return self.config.label

    @property
    def optimizer(self) -> str:
        return self.config.optimizer

    @property
    def budget(self) -> float:
        return self.config.budget

    @property
    def budget_unit(self) -> str:
        return self.config.budget_unit

    @property
    def lr(self) -> float:
        return self.config.lr

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def finished(self) -> bool:
        """Needs no rerun: done or diverged (a failed trial is retried)."""
        return self.status in (Status.DONE, Status.DIVERGED)

    # -- conversions --------------------------------------------------------------------------------------------
    def result(self) -> TrialResult:
        """The row's result as an engine returns it (a copy of its curves), e.g. to write it again under a
        config that stands in for this one."""
        return TrialResult(self.status, self.val_loss, self.val_metric, self.test_loss, self.test_metric,
                           {k: list(v) for k, v in self.curves.items()}, self.steps or 0, self.wall_time or 0.0,
                           self.error, self.scheduler_steps)

    def as_dict(self) -> dict[str, Any]:
        """The row as the flat mapping the store's columns spell (:data:`ROW_KEYS`; status as its string)."""
        p = self.provenance
        return {
            "key": self.key, "task": self.task, "schedule": self.schedule, "schedule_params": self.params,
            "label": self.label, "optimizer": self.optimizer, "budget": self.budget, "lr": self.lr,
            "seed": self.seed, "status": self.status.value, "val_loss": self.val_loss,
            "val_metric": self.val_metric, "test_loss": self.test_loss, "test_metric": self.test_metric,
            "curves": dict(self.curves), "steps": self.steps, "wall_time": self.wall_time, "error": self.error,
            **{k: getattr(p, k) for k in _PROVENANCE if k != "run_meta"},
            "run_meta": dict(p.run_meta or {}), "config": self.config.to_dict(), "budget_unit": self.budget_unit,
            "total_steps": self.total_steps, "stand_in": self.stand_in, "scheduler_steps": self.scheduler_steps,
        }

    @classmethod
    def from_stored(cls, d: Mapping[str, Any]) -> "TrialRow":
        """Decode one stored row (column name -> value; JSON columns as text or already decoded).

        The config is the stored ``config`` JSON; a field a v1 store did not write (``budget_unit``) is taken from
        its column. Raises ValueError / TypeError naming what cannot be read.
        """
        def obj(name: str) -> dict[str, Any]:
            v = d.get(name)
            v = json.loads(v) if isinstance(v, (str, bytes)) else ({} if v is None and name == "run_meta" else v)
            if not isinstance(v, dict):
                raise ValueError(f"column {name} holds {type(v).__name__}, not an object")
            return v

        cfg = obj("config")
        if "budget_unit" not in cfg and d.get("budget_unit") is not None:
            cfg = {**cfg, "budget_unit": d["budget_unit"]}
        config = TrialConfig.from_dict(cfg)
        prov = Provenance(**{k: d.get(k) for k in _PROVENANCE if k != "run_meta"}, run_meta=obj("run_meta"))
        total = d.get("total_steps")
        sched = d.get("scheduler_steps")
        return cls(
            key=str(d["key"]), config=config, status=Status.parse(d["status"]),
            val_loss=d.get("val_loss"), val_metric=d.get("val_metric"), test_loss=d.get("test_loss"),
            test_metric=d.get("test_metric"), curves=obj("curves"), steps=d.get("steps"),
            wall_time=d.get("wall_time"), error=d.get("error"), provenance=prov,
            total_steps=None if total is None else int(total), stand_in=d.get("stand_in"),
            scheduler_steps=None if sched is None else int(sched),
        )
