"""Study grid: the trial configuration, its canonical key, and grid expansion.

A *trial* is one training run: one task, schedule, optimizer, budget, initial LR and seed.
Each budget is its own run whose schedule decays over its own steps (REX paper, section 4).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

#: Bump when the meaning of a stored config changes, so old rows never match new trials.
CONFIG_VERSION = 1

OPTIMIZERS = ("sgdm", "adam")
PAPER_BUDGETS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0)
LOW_BUDGET_LIMIT = 25.0  # budgets < 25 % are "low", >= 25 % are "high" (Table 1)


@dataclass(frozen=True)
class TrialConfig:
    """Everything that determines one trial's result.

    ``schedule_params`` holds extra profile parameters as a sorted tuple of pairs, e.g.
    ``(("delay", 0.5),)`` for delayed-linear or ``(("patience", 5),)`` for plateau
    (patience in epochs).
    """

    task: str
    schedule: str
    optimizer: str
    budget: float  # percent of the task's maximum epochs, in (0, 100]
    lr: float  # initial (peak) learning rate
    seed: int
    schedule_params: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not (0.0 < float(self.budget) <= 100.0):
            raise ValueError(f"budget must be a percent in (0, 100], got {self.budget!r}")
        if not (float(self.lr) > 0.0 and math.isfinite(float(self.lr))):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        object.__setattr__(self, "budget", float(self.budget))
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "schedule_params", tuple(sorted(dict(self.schedule_params).items())))

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.schedule_params)

    @property
    def label(self) -> str:
        """Schedule name as shown in reports, e.g. ``delayed-linear(delay=0.5)``.

        Plateau's patience is an LR-like tuned knob, so it is not part of the label.
        """
        shown = {k: v for k, v in self.schedule_params if not (self.schedule == "plateau" and k == "patience")}
        if not shown:
            return self.schedule
        return f"{self.schedule}(" + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()) + ")"

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
        """Canonical hash of the full config (stable across runs and machines)."""
        payload = {"v": CONFIG_VERSION, **self.to_dict()}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_json_default)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def epochs(self, max_epochs: int) -> int:
        """Epochs of this budget: ceil(max_epochs * budget / 100), at least 1 (as the paper rounds up)."""
        return max(1, math.ceil(max_epochs * self.budget / 100.0 - 1e-9))


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
) -> list[TrialConfig]:
    """The full grid, ordered so trials that can train together (same task, optimizer, budget) are adjacent.

    ``plateau`` expands over ``plateau_patience`` too (patience in epochs, multiples of 5 as in the paper;
    the runner caps it for budgets shorter than the patience).
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
                    out.append(TrialConfig(task, name, opt, budget, lr, seed, tuple({**params, "patience": p}.items())))
            else:
                out.append(TrialConfig(task, name, opt, budget, lr, seed, tuple(params.items())))
    return out


def group_key(c: TrialConfig) -> tuple[str, str, float]:
    """Trials with equal group keys run the same number of steps on the same data and can be batched."""
    return (c.task, c.optimizer, c.budget)


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


def iter_groups(configs: Iterable[TrialConfig]) -> dict[tuple[str, str, float], list[TrialConfig]]:
    groups: dict[tuple[str, str, float], list[TrialConfig]] = {}
    for c in configs:
        groups.setdefault(group_key(c), []).append(c)
    return groups
