"""A study specification: the one place where a user's grid is read and validated.

A :class:`StudySpec` comes from a preset, a TOML file (``budgetsched run --config study.toml``) or command-line
flags (flags override the file, which overrides the preset). It is validated when it is built - unknown keys,
wrong types, unknown tasks, schedules, parameters or optimizers, LRs <= 0 - so a bad study fails with one clear
error before any store is written. :meth:`StudySpec.configs` expands it into trials; :func:`refinement` adds the
LR points of ``refine = true`` around each schedule's best LR.

Keys (the same in TOML files and presets; each is also a ``budgetsched run`` flag):

==================  ==========================================================================================
``tasks``           task names or ``package.module:factory`` / ``path/to/file.py:factory`` references
``schedules``       schedule names, or ``[name, {param = value}]`` pairs (``["delayed-linear", {delay = 0.5}]``)
``optimizers``      ``sgdm`` and/or ``adam`` (default both)
``budgets``         percents of the task's 100 % run, in (0, 100] (default 1, 5, 10, 25, 50, 100)
``lrs``             one list of initial LRs for every optimizer, a table ``{sgdm = [...], adam = [...]}``, or a
                    table per task ``{"mnist1d-mlp" = {sgdm = [...], adam = [...]}, ...}`` (a list or an optimizer
                    table for each task)
``seeds``           a count (3 -> 0, 1, 2) or a list of seeds (default 3)
``plateau_patience`` plateau's patience grid, in evaluations (default 5, 10: multiples of 5 as in the paper)
``budget_unit``     ``steps`` (default: a budget is that fraction of the 100 % run's steps) or ``epochs``
                    (the paper's rounding up to whole epochs)
``diverge_factor``  a trial diverges when its training loss exceeds this multiple of its first loss (default 10)
``refine``          add LR points around each schedule's best LR (x/÷ sqrt 3) and extend the grid where the best
                    sits at its edge (default false)
``description``     free text
==================  ==========================================================================================
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from budgetsched.bench.protocol.grid import (BUDGET_UNITS, DIVERGE_FACTOR, OPTIMIZERS, PAPER_BUDGETS, TrialConfig, expand,
                                    group_key)
from budgetsched.errors import UsageError

__all__ = ["StudySpec", "load_config", "refinement", "REFINE_FACTOR", "MAX_EXTENSIONS"]

#: The largest seed count a study may ask for (a list of seeds is checked seed by seed).
MAX_SEEDS = 10_000
#: Refinement puts LR points at best x REFINE_FACTOR and best / REFINE_FACTOR (half a step of the x3 grid).
REFINE_FACTOR = math.sqrt(3.0)
#: Refinement extends the grid at most this many x3 steps past its coarse edge.
MAX_EXTENSIONS = 3

Schedules = list[Any]  # str or (name, {params})


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass
class StudySpec:
    """A validated study grid (see the module docstring for each field)."""

    tasks: list[str]
    schedules: Schedules
    lrs: list[float] | dict[str, Any]
    optimizers: list[str] = field(default_factory=lambda: list(OPTIMIZERS))
    budgets: list[float] = field(default_factory=lambda: list(PAPER_BUDGETS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    plateau_patience: list[int] = field(default_factory=lambda: [5, 10])
    budget_unit: str = "steps"
    diverge_factor: float = DIVERGE_FACTOR
    refine: bool = False
    description: str = ""

    # -- construction --------------------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, d: Mapping[str, Any], source: str = "study") -> "StudySpec":
        """Build and validate a spec from a preset / TOML mapping; ``source`` names it in error messages."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UsageError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"valid keys: {', '.join(sorted(known))}")
        missing = [k for k in ("tasks", "schedules", "lrs") if k not in d]
        if missing:
            raise UsageError(f"{source}: no {', '.join(missing)} given")
        kw = dict(d)
        if "seeds" in kw and _is_number(kw["seeds"]):
            if not isinstance(kw["seeds"], int) or not 1 <= kw["seeds"] <= MAX_SEEDS:
                raise UsageError(f"{source}: seeds must be a count in [1, {MAX_SEEDS}] or a list of seeds, "
                                 f"got {kw['seeds']!r}")
            kw["seeds"] = list(range(kw["seeds"]))
        spec = cls(**kw)
        spec.validate(source)
        return spec

    def validate(self, source: str = "study") -> "StudySpec":
        """Check every field (types, ranges, names); raises :class:`UsageError` naming the bad value."""
        def bad(msg: str) -> UsageError:
            return UsageError(f"{source}: {msg}")

        def str_list(name: str, v: Any) -> list[str]:
            if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
                raise bad(f"{name} must be a non-empty list of names, got {v!r}")
            return v

        def num_list(name: str, v: Any) -> list[float]:
            if not isinstance(v, list) or not v or not all(_is_number(x) for x in v):
                raise bad(f"{name} must be a non-empty list of numbers, got {v!r}")
            return [float(x) for x in v]

        from budgetsched.bench.tasks import get_task

        str_list("tasks", self.tasks)
        for t in self.tasks:
            try:
                get_task(t)
            except ValueError as e:
                raise bad(str(e)) from None
        if not isinstance(self.schedules, list) or not self.schedules:
            raise bad(f"schedules must be a non-empty list, got {self.schedules!r}")
        norm: Schedules = []
        for s in self.schedules:
            if isinstance(s, str):
                norm.append(s)
            elif isinstance(s, (list, tuple)) and len(s) == 2 and isinstance(s[0], str) and isinstance(s[1], Mapping):
                norm.append((s[0], dict(s[1])))
            else:
                raise bad(f"a schedule must be a name or [name, {{param = value}}], got {s!r}")
        self.schedules = norm
        str_list("optimizers", self.optimizers)
        for o in self.optimizers:
            if o not in OPTIMIZERS:
                raise bad(f"unknown optimizer {o!r}; choose from {', '.join(OPTIMIZERS)}")
        self.budgets = num_list("budgets", self.budgets)
        for b in self.budgets:
            if not 0.0 < b <= 100.0:
                raise bad(f"budget {b:g} is outside (0, 100] (percent of the task's 100 % run)")
        def opt_table(where: str, v: Any) -> list[float] | dict[str, list[float]]:
            if not isinstance(v, Mapping):
                return num_list(f"lrs{where}", v)
            out = {}
            for o, x in v.items():
                if o not in OPTIMIZERS:
                    raise bad(f"unknown optimizer {o!r} in lrs{where}; choose from {', '.join(OPTIMIZERS)}")
                out[o] = num_list(f"lrs{where} for {o}", x)
            lacking = [o for o in self.optimizers if o not in out]
            if lacking:
                raise bad(f"lrs{where} gives no learning rates for optimizer(s) {', '.join(lacking)}")
            return out

        if isinstance(self.lrs, Mapping) and not set(self.lrs) <= set(OPTIMIZERS):  # a table per task
            if set(self.lrs) & set(OPTIMIZERS):
                raise bad("lrs mixes optimizer and task keys; give one table per task or per optimizer")
            unknown_tasks = sorted(set(self.lrs) - set(self.tasks))
            if unknown_tasks:
                raise bad(f"lrs names task(s) {', '.join(map(repr, unknown_tasks))} that are not in tasks")
            lacking = [t for t in self.tasks if t not in self.lrs]
            if lacking:
                raise bad(f"lrs gives no learning rates for task(s) {', '.join(lacking)}")
            self.lrs = {t: opt_table(f" for {t}", v) for t, v in self.lrs.items()}
        else:
            self.lrs = opt_table("", self.lrs)
        all_lrs = [x for v in (self.lrs.values() if isinstance(self.lrs, dict) else [self.lrs])
                   for x in (v if isinstance(v, list) else [y for w in (v.values() if isinstance(v, dict) else [v])
                                                           for y in w])]
        for v in all_lrs:
            if not (v > 0 and math.isfinite(v)):
                raise bad(f"learning rate {v!r} must be a positive finite number")
        if not isinstance(self.seeds, list) or not self.seeds or not all(
                isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2 ** 63 for x in self.seeds):
            raise bad(f"seeds must be a list of integers in [0, 2**63), got {self.seeds!r}")
        if not isinstance(self.plateau_patience, list) or not self.plateau_patience or not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in self.plateau_patience):
            raise bad(f"plateau_patience must be a list of integers >= 1 (evaluations), got {self.plateau_patience!r}")
        if self.budget_unit not in BUDGET_UNITS:
            raise bad(f"unknown budget_unit {self.budget_unit!r}; choose from {', '.join(BUDGET_UNITS)}")
        if not (_is_number(self.diverge_factor) and self.diverge_factor > 1 and math.isfinite(self.diverge_factor)):
            raise bad(f"diverge_factor must be a number > 1, got {self.diverge_factor!r}")
        if not isinstance(self.refine, bool):
            raise bad(f"refine must be true or false, got {self.refine!r}")
        if not isinstance(self.description, str):
            raise bad(f"description must be text, got {self.description!r}")
        try:
            self.configs()  # every schedule name and parameter, checked by TrialConfig
        except ValueError as e:
            raise bad(str(e)) from None
        return self

    def override(self, source: str = "command line", **changes: Any) -> "StudySpec":
        """A copy with ``changes`` (None values ignored), validated."""
        d = asdict(self)
        d.update({k: v for k, v in changes.items() if v is not None})
        return StudySpec.from_mapping(d, source)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (TOML/JSON-ready): what the store records as the study it ran."""
        d = asdict(self)
        d["schedules"] = [s if isinstance(s, str) else [s[0], dict(s[1])] for s in self.schedules]
        return d

    # -- expansion -----------------------------------------------------------------------------------------------
    def lrs_for(self, optimizer: str, task: str) -> list[float]:
        """The coarse LR grid of ``optimizer`` on ``task``."""
        v: Any = self.lrs
        if isinstance(v, dict) and task in v and task not in OPTIMIZERS:
            v = v[task]
        return list(v[optimizer]) if isinstance(v, dict) else list(v)

    def configs(self) -> list[TrialConfig]:
        """The grid: tasks x schedules (x plateau patience) x optimizers x budgets x LRs x seeds."""
        out: list[TrialConfig] = []
        for task in self.tasks:
            for opt in self.optimizers:
                out += expand([task], self.schedules, [opt], self.budgets, self.lrs_for(opt, task), self.seeds,
                              self.plateau_patience, budget_unit=self.budget_unit,
                              diverge_factor=self.diverge_factor)
        return out


def load_config(path: str | Path) -> dict[str, Any]:
    """The mapping of a TOML study file (validated later by :meth:`StudySpec.from_mapping`)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"--config {str(p)!r}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--config {str(p)!r}: not valid TOML ({e})") from None
    except OSError as e:
        raise UsageError(f"--config {str(p)!r}: cannot read it ({e.strerror or e})") from None


# ------------------------------------------------------------------------------------------------ refinement
def _round(v: float) -> float:
    return float(f"{v:.6g}")


def refinement(spec: StudySpec, configs: Sequence[TrialConfig], rows: Iterable[Mapping[str, Any]]) -> list[TrialConfig]:
    """The next round of LR points for ``spec``'s grid, grown to ``configs``, whose trials are in ``rows``.

    Per setting (task, optimizer, budget) and schedule (label and parameters, so plateau per patience), the LR
    with the lowest mean *validation* metric over seeds (diverged = +inf; ties to the smaller LR) is the best:

    1. if it is the largest (smallest) LR tried, the next point of the 1-3 grid beyond it is added
       (0.1 -> 0.3 -> 1, 0.03 -> 0.01 -> 0.003), at most :data:`MAX_EXTENSIONS` points past ``spec``'s LRs;
    2. otherwise, once, the points best x sqrt 3 and best / sqrt 3 are added.

    Returns the new configs (every seed of the grid each), or an empty list when refinement is complete. A schedule
    whose trials are not all finished, or that never trains at any LR, is left alone.
    """
    from budgetsched.bench.protocol import selection
    from budgetsched.bench.protocol.status import Status

    base: dict[tuple, list[TrialConfig]] = {}
    for c in configs:
        base.setdefault((*group_key(c), c.schedule, c.schedule_params), []).append(c)
    finished: dict[str, Mapping[str, Any]] = {r["key"]: r for r in rows if r["status"] != Status.FAILED}
    out: list[TrialConfig] = []
    for members in base.values():
        lrs = sorted({c.lr for c in members})
        seeds = sorted({c.seed for c in members})
        by_lr: dict[float, list[float]] = {}
        for c in members:
            r = finished.get(c.key)
            if r is None:
                continue
            by_lr.setdefault(c.lr, []).append(selection.score(r["status"], r["val_metric"]))
        if len(by_lr) != len(lrs) or any(len(v) != len(seeds) for v in by_lr.values()):
            continue  # the refinement's view: every seed at every LR
        best, best_score = selection.choose_lr(by_lr)
        if math.isinf(best_score):
            continue
        coarse = spec.lrs_for(members[0].optimizer, members[0].task)
        have = {_round(lr) for lr in lrs}
        refined = any(_round(a * REFINE_FACTOR) in have for a in lrs)
        above = sum(lr > max(coarse) * (1 + 1e-9) for lr in lrs)
        below = sum(lr < min(coarse) * (1 - 1e-9) for lr in lrs)
        new: list[float] = []
        if refined:
            pass
        elif best == lrs[-1] and above < MAX_EXTENSIONS:
            new = [_next_on_grid(best, up=True)]
        elif best == lrs[0] and below < MAX_EXTENSIONS:
            new = [_next_on_grid(best, up=False)]
        else:
            new = [_round(best * REFINE_FACTOR), _round(best / REFINE_FACTOR)]
        proto = members[0]
        for lr in new:
            if lr not in have:
                out += [TrialConfig(proto.task, proto.schedule, proto.optimizer, proto.budget, lr, s,
                                    proto.schedule_params, proto.budget_unit, proto.diverge_factor) for s in seeds]
    return out


def _on_grid(lr: float) -> bool:
    """``lr`` is 1 or 3 times a power of ten (a point of the paper's "multiples of 3" grid)."""
    e = math.floor(math.log10(lr) + 1e-9)
    m = lr / 10 ** e
    return abs(m - 1) < 1e-6 or abs(m - 3) < 1e-6


def _next_on_grid(lr: float, up: bool) -> float:
    """The next point of the 1-3 grid above (below) ``lr``; x3 (/3) for an LR off that grid."""
    if not _on_grid(lr):
        return _round(lr * 3 if up else lr / 3)
    e = math.floor(math.log10(lr) + 1e-9)
    m = round(lr / 10 ** e)
    if up:
        return _round(3 * 10 ** e if m == 1 else 10 ** (e + 1))
    return _round(10 ** (e - 1) * 3 if m == 1 else 10 ** e)
