"""Study grid: the trial configuration, its canonical key, and grid expansion.

A *trial* is one training run: one task, schedule, optimizer, budget, initial LR and seed.
Each budget is its own run whose schedule decays over its own steps (REX paper, section 5).

A :class:`TrialConfig` cannot be built wrong: the schedule name, its parameters, the optimizer, the budget, the LR,
the seed and the budget unit are checked when it is constructed, so a bad grid fails before any store is written.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from budgetsched.changes import STRATEGIES

#: Bump when the meaning of a stored config changes, so old rows never match new trials.
#: 2: budgets counted in optimizer steps by default (``budget_unit``), plateau patience in evaluations with no
#: hidden cap, divergence also on a loss above ``diverge_factor`` x the first step's loss.
CONFIG_VERSION = 2

#: The optimizers of the protocol (each specified in ``engines/optim.py``, whose registry has exactly these keys):
#: ``sgdm`` (SGD, momentum 0.9) and ``adam`` (Adam, L2 decay) are the REX paper's; ``adamw`` is Adam with the same
#: decay coefficient decoupled (``torch.optim.AdamW``), for the ablation against schedule-free AdamW.
OPTIMIZERS = ("sgdm", "adam", "adamw")
#: The optimizers a study runs when it names none: the paper's two.
DEFAULT_OPTIMIZERS = ("sgdm", "adam")
PAPER_BUDGETS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0)
LOW_BUDGET_LIMIT = 25.0  # budgets < 25 % are "low", >= 25 % are "high" (Table 1)
#: How a budget percent becomes a run length: "steps" (default) takes that fraction of the 100 % run's optimizer
#: steps, rounded up; "epochs" rounds the fraction of the maximum epochs up to whole epochs, as the REX paper does.
BUDGET_UNITS = ("steps", "epochs")
#: A trial diverges when a training loss is not finite or exceeds this multiple of its first step's loss.
DIVERGE_FACTOR = 10.0
#: Plateau's parameters (patience in evaluations; factor and threshold as torch's ReduceLROnPlateau).
PLATEAU_PARAMS = ("patience", "factor", "threshold")
#: Schedule-free training (``budgetsched.bench.engines.schedulefree``): a pseudo-schedule, one run serves every budget.
SCHEDULE_FREE = "schedule-free"
#: A budget change learned mid-run (the budget-change study): the run was planned for ``planned_budget`` percent,
#: learns at ``change_at`` percent of the 100 % run that its budget is ``budget``, and then goes on by ``on_change``:
#: one of the library's strategies (:data:`budgetsched.changes.STRATEGIES`, ``Schedule.with_budget(strategy=...)``):
#: "continue" (no LR jump, decays to the new end), "rewarm" (the schedule again from its peak over the remaining
#: steps), "extend" (the plan for the new budget from the start, its peak scaled by min(1, sqrt(T / T'))), or the
#: baseline "keep" (never told: the planned schedule, then its end value held).
CHANGE_PARAMS = ("planned_budget", "change_at", "on_change")
ON_CHANGE = (*STRATEGIES, "keep")
#: Earlier spellings of ``on_change``, read as today's ("restart" was the harness's name for "rewarm").
ON_CHANGE_ALIASES = {"restart": "rewarm"}
#: ... and the spelling a trial's key is computed with, so the keys of stores written before stay byte-identical
#: (such a store resumes with zero retraining): "rewarm" trials were stored as "restart".
_KEYED_AS = {"rewarm": "restart"}
_MAX_SEED = 2 ** 63 - 1


def _freeze(v: Any) -> Any:
    """Parameter values as hashable, JSON-stable values (lists -> tuples)."""
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    return v


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``" (did you mean 'rex'?)"`` for a misspelled name close to one of ``choices`` (difflib), else ``""``."""
    from budgetsched._checks import did_you_mean

    close = did_you_mean(str(word), choices)
    return f" (did you mean {close!r}?)" if close else ""


@functools.lru_cache(maxsize=4096)
def _check_schedule(schedule: str, params: tuple[tuple[str, Any], ...]) -> None:
    """ValueError unless ``schedule`` with ``params`` builds a schedule (or is a valid plateau)."""
    kw = dict(params)
    change = {k: kw.pop(k) for k in CHANGE_PARAMS if k in kw}
    if change:
        missing = [k for k in CHANGE_PARAMS if k not in change]
        if missing:
            raise ValueError(f"a budget change needs {', '.join(CHANGE_PARAMS)}; missing {', '.join(missing)}")
        pb, at = change["planned_budget"], change["change_at"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 100 for v in (pb, at)):
            raise ValueError(f"planned_budget and change_at must be percents in (0, 100], got {pb!r} and {at!r}")
        if change["on_change"] not in ON_CHANGE:
            raise ValueError(f"unknown on_change {change['on_change']!r}; choose from {', '.join(ON_CHANGE)}")
        if schedule == "plateau":
            raise ValueError("a budget change applies to a closed-form schedule, not to plateau")
    if schedule == SCHEDULE_FREE:
        unknown = sorted(set(kw) - {"warmup_steps"})
        if unknown or change:
            first = (unknown or list(change))[0]
            raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown or list(change)))} for schedule "
                             f"{SCHEDULE_FREE!r}{_did_you_mean(first, ['warmup_steps'])}; choose from warmup_steps")
        w = kw.get("warmup_steps", 0)
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise ValueError(f"schedule-free warmup_steps must be an integer >= 0, got {w!r}")
        return
    if schedule == "plateau":
        unknown = sorted(set(kw) - set(PLATEAU_PARAMS))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))} for schedule 'plateau'"
                             f"{_did_you_mean(unknown[0], PLATEAU_PARAMS)}; choose from {', '.join(PLATEAU_PARAMS)}")
        p = kw.get("patience")
        if isinstance(p, bool) or not isinstance(p, int) or p < 1:
            raise ValueError(f"plateau needs an integer patience >= 1 (evaluations), got {p!r}")
        f = kw.get("factor", 0.1)
        if not (isinstance(f, (int, float)) and 0.0 < f < 1.0):
            raise ValueError(f"plateau factor must be in (0, 1), got {f!r}")
        th = kw.get("threshold", 1e-4)
        if not (isinstance(th, (int, float)) and 0.0 <= th < 1.0):
            raise ValueError(f"plateau threshold must be in [0, 1), got {th!r}")
        return
    from budgetsched import Schedule, available

    if schedule not in available():
        names = available() + [SCHEDULE_FREE, "plateau"]
        raise ValueError(f"unknown schedule {schedule!r}{_did_you_mean(schedule, names)}; choose from "
                         f"{', '.join(available() + [SCHEDULE_FREE])}")
    try:
        Schedule(schedule, total_steps=1000, peak_lr=1.0, **{k: list(v) if isinstance(v, tuple) else v
                                                             for k, v in kw.items()})
    except TypeError as e:  # an unexpected keyword
        raise ValueError(f"bad parameters {kw} for schedule {schedule!r}: {e}") from None
    except ValueError as e:
        raise ValueError(f"bad parameters {kw} for schedule {schedule!r}: {e}") from None


@dataclass(frozen=True)
class TrialConfig:
    """Everything that determines one trial's result.

    ``schedule_params`` holds extra profile parameters as a sorted tuple of pairs, e.g. ``(("delay", 0.5),)`` for
    delayed-linear or ``(("patience", 5),)`` for plateau (patience in evaluations). ``budget`` is a percent of the
    task's 100 % run, turned into steps by ``budget_unit`` (:func:`total_steps`). ``diverge_factor`` is the
    divergence rule's multiple of the first step's loss.

    Raises:
        ValueError: naming the field and the value, for anything that could not run.
    """

    task: str
    schedule: str
    optimizer: str
    budget: float  # percent of the task's 100 % run, in (0, 100]
    lr: float  # initial (peak) learning rate
    seed: int
    schedule_params: tuple[tuple[str, Any], ...] = field(default=())
    budget_unit: str = "steps"
    diverge_factor: float = DIVERGE_FACTOR

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or not self.task:
            raise ValueError(f"task must be a non-empty name, got {self.task!r}")
        try:
            budget, lr = float(self.budget), float(self.lr)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"budget and lr must be numbers, got budget={self.budget!r}, lr={self.lr!r}") from None
        if not (0.0 < budget <= 100.0):
            raise ValueError(f"budget must be a percent in (0, 100], got {self.budget!r}")
        if not (lr > 0.0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            hint = _did_you_mean(self.optimizer, OPTIMIZERS)
            raise ValueError(f"unknown optimizer {self.optimizer!r}{hint}; choose from {', '.join(OPTIMIZERS)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or not 0 <= self.seed <= _MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if self.budget_unit not in BUDGET_UNITS:
            raise ValueError(f"unknown budget unit {self.budget_unit!r}; choose from {', '.join(BUDGET_UNITS)}")
        try:
            factor = float(self.diverge_factor)
        except (TypeError, ValueError, OverflowError):
            factor = math.nan
        if not (factor > 1.0 and math.isfinite(factor)):
            raise ValueError(f"diverge_factor must be a finite number > 1, got {self.diverge_factor!r}")
        try:
            params = tuple(sorted((str(k), _freeze(v)) for k, v in dict(self.schedule_params).items()))
        except (TypeError, ValueError):
            raise ValueError(f"schedule_params must be (name, value) pairs, got {self.schedule_params!r}") from None
        params = tuple((k, ON_CHANGE_ALIASES.get(v, v)) if k == "on_change" and isinstance(v, str) else (k, v)
                       for k, v in params)  # an earlier spelling read as today's
        if not isinstance(self.schedule, str):
            raise ValueError(f"schedule must be a name, got {self.schedule!r}")
        _check_schedule(self.schedule, params)
        kw = dict(params)
        if "change_at" in kw and not (kw["change_at"] < budget and kw["change_at"] <= kw["planned_budget"]):
            raise ValueError(f"change_at {kw['change_at']!r} must come before the budget ({budget:g}) and at or "
                             f"before the planned budget ({kw['planned_budget']!r})")
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "budget", budget)
        object.__setattr__(self, "lr", lr)
        object.__setattr__(self, "diverge_factor", factor)
        object.__setattr__(self, "schedule_params", params)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.schedule_params)

    @property
    def label(self) -> str:
        """Schedule name as shown in reports, e.g. ``delayed-linear(delay=0.5)``.

        Plateau's patience is an LR-like tuned knob, and ``refined``'s gradient norms are data (they differ per
        setting), so neither is part of the label; nor is ``refined``'s weighting when it is the optimizer's own
        (``sgd`` for SGDM, ``adam`` for Adam and AdamW), so a refined schedule is one schedule across optimizers.
        """
        own = {"sgdm": "sgd", "adam": "adam", "adamw": "adam"}.get(self.optimizer)
        shown = {k: v for k, v in self.schedule_params
                 if not (self.schedule == "plateau" and k == "patience") and k != "grad_norms"
                 and not (self.schedule == "refined" and k == "weighting" and v == own)}
        if not shown:
            return self.schedule
        return f"{self.schedule}(" + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                              for k, v in shown.items()) + ")"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schedule_params"] = dict(self.schedule_params)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrialConfig":
        d = dict(d)
        d["schedule_params"] = tuple(sorted(dict(d.get("schedule_params") or {}).items()))
        return cls(**d)

    @property
    def key(self) -> str:
        """Canonical hash of the full config and the config version (stable across runs and machines).

        sha256 of the JSON of ``{"v": CONFIG_VERSION, **to_dict()}`` (keys sorted, no spaces), first 32 hex digits;
        ``on_change="rewarm"`` is hashed as ``"restart"``, its spelling before the rename (:data:`_KEYED_AS`).
        """
        payload = {"v": CONFIG_VERSION, **self.to_dict()}
        change = payload["schedule_params"].get("on_change")
        if change in _KEYED_AS:  # the spelling stored before the rename: same trial, same key (see _KEYED_AS)
            payload["schedule_params"]["on_change"] = _KEYED_AS[change]
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_json_default)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def total_steps(self, max_epochs: int, steps_per_epoch: int) -> int:
        """Optimizer steps of this budget's run (see :func:`total_steps`)."""
        return total_steps(self.budget, self.budget_unit, max_epochs, steps_per_epoch)

    def epochs(self, max_epochs: int) -> int:
        """Whole epochs of this budget as the REX paper counts them: ceil(max_epochs * budget / 100), at least 1."""
        return max(1, math.ceil(max_epochs * self.budget / 100.0 - 1e-9))


def total_steps(budget: float, unit: str, max_epochs: int, steps_per_epoch: int) -> int:
    """Optimizer steps of a run at ``budget`` percent of a task with ``max_epochs`` x ``steps_per_epoch`` steps.

    ``"steps"``: ceil(budget % of max_epochs x steps_per_epoch), at least 1, so 1 % of a 5-epoch task is 1 % of its
    steps. ``"epochs"``: ceil(budget % of max_epochs) whole epochs (the REX paper's rounding:
    ceil(50 x 0.01) = 1 epoch for YOLO).

    >>> total_steps(1, "steps", 5, 241), total_steps(1, "epochs", 5, 241)
    (13, 241)
    """
    if unit == "epochs":
        return max(1, math.ceil(max_epochs * budget / 100.0 - 1e-9)) * steps_per_epoch
    if unit == "steps":
        return max(1, math.ceil(max_epochs * steps_per_epoch * budget / 100.0 - 1e-9))
    raise ValueError(f"unknown budget unit {unit!r}; choose from {', '.join(BUDGET_UNITS)}")


def _json_default(o: Any) -> Any:
    if isinstance(o, (tuple, set)):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {o!r}")


def expand(
    tasks: Sequence[str],
    schedules: Sequence[str | tuple[str, Mapping[str, Any]]],
    optimizers: Sequence[str],
    budgets: Sequence[float],
    lrs: Sequence[float],
    seeds: Sequence[int],
    plateau_patience: Sequence[int] = (5, 10),
    *,
    budget_unit: str = "steps",
    diverge_factor: float = DIVERGE_FACTOR,
) -> list[TrialConfig]:
    """The full grid, ordered so trials that can train together (same task, optimizer, budget) are adjacent.

    ``plateau`` expands over ``plateau_patience`` too (patience in evaluations, multiples of 5 as the paper tunes
    it in epochs; no cap: where a patience cannot trigger within a budget the runner reuses the constant trial).
    Every config is validated as it is built (ValueError naming the bad value).
    """
    for name, seq in (("tasks", tasks), ("schedules", schedules), ("optimizers", optimizers),
                      ("budgets", budgets), ("lrs", lrs), ("seeds", seeds)):
        if len(seq) == 0:
            raise ValueError(f"empty grid: no {name} given")
    out: list[TrialConfig] = []
    for task, opt, budget in itertools.product(tasks, optimizers, budgets):
        for sched, lr, seed in itertools.product(schedules, lrs, seeds):
            name, params = (sched, {}) if isinstance(sched, str) else (sched[0], dict(sched[1]))
            if name == "plateau" and "patience" not in params:
                for p in plateau_patience:
                    out.append(TrialConfig(task, name, opt, budget, lr, seed, tuple({**params, "patience": p}.items()),
                                           budget_unit, diverge_factor))
            else:
                out.append(TrialConfig(task, name, opt, budget, lr, seed, tuple(params.items()), budget_unit,
                                       diverge_factor))
    return out


def group_key(c: TrialConfig) -> tuple[str, str, float, str]:
    """Trials with equal group keys run the same number of steps on the same data and can be batched."""
    return (c.task, c.optimizer, c.budget, c.budget_unit)


def lr_grid(lo: float, hi: float) -> list[float]:
    """Initial LRs in multiples of 3 between lo and hi: ..., 0.01, 0.03, 0.1, 0.3, 1, ..."""
    if not (0 < lo <= hi):
        raise ValueError(f"need 0 < lo <= hi, got lo={lo!r}, hi={hi!r}")
    vals = []
    e = math.floor(math.log10(lo)) - 1
    while True:
        for m in (1.0, 3.0):
            v = float(f"{m * 10.0 ** e:.12g}")
            if v > hi * (1 + 1e-9):
                return vals
            if v >= lo * (1 - 1e-9):
                vals.append(v)
        e += 1


def parse_list(text: str, kind: type = str) -> list[Any]:
    """Parse a comma-separated CLI list; raises ValueError naming the bad item."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    out = []
    for t in items:
        try:
            out.append(kind(t))
        except ValueError:
            raise ValueError(f"cannot read {t!r} as {kind.__name__}") from None
    return out


def iter_groups(configs: Iterable[TrialConfig]) -> dict[tuple[str, str, float, str], list[TrialConfig]]:
    """Configs by :func:`group_key`, in first-seen order."""
    groups: dict[tuple[str, str, float, str], list[TrialConfig]] = {}
    for c in configs:
        groups.setdefault(group_key(c), []).append(c)
    return groups
