"""A study specification: the one place where a user's grid is read, validated and expanded.

A :class:`StudySpec` comes from a preset, a TOML file (``budgetsched run --config study.toml``) or command-line
flags (flags override the file, which overrides the preset). It is validated when it is built, so a bad study
fails with one clear error before any store is written, and without loading torch (built-in task names are
checked against :data:`budgetsched.bench.tasks.names.BUILTIN_TASKS`). Each rule has one home:

* the spec checks what only a study has: its keys (with a did-you-mean), the shape of each list, a seed count
  (3 -> seeds 0, 1, 2), task names, the LR tables' keys, the plateau patience grid, ``refine``, ``description``;
* every value of a trial - budget in (0, 100], LR > 0, seed in [0, 2**63), optimizer, budget unit, divergence
  factor, schedule name and parameters - is checked by :class:`~budgetsched.bench.protocol.grid.TrialConfig` as
  the spec expands the grid, once, in :meth:`StudySpec.validate` (:meth:`StudySpec.configs` hands that expansion
  out). The command line only parses text; the runner trusts the trials it is given.

:func:`refinement` adds the LR points of ``refine = true`` around each schedule's best LR.

Keys (the same in TOML files and presets; each is also a ``budgetsched run`` flag):

==================  ==========================================================================================
``tasks``           task names or ``package.module:factory`` / ``path/to/file.py:factory`` references
``schedules``       schedule names, or ``[name, {param = value}]`` pairs (``["delayed-linear", {delay = 0.5}]``)
``optimizers``      ``sgdm``, ``adam`` (L2 decay) and/or ``adamw`` (decoupled decay) (default ``sgdm`` and ``adam``)
``budgets``         percents of the task's 100 % run, in (0, 100] (default 1, 5, 10, 25, 50, 100)
``lrs``             one list of initial LRs for every optimizer, a table ``{sgdm = [...], adam = [...]}``, or a
                    table per task ``{"mnist1d-mlp" = {sgdm = [...], adam = [...]}, ...}`` (a list or an optimizer
                    table for each task)
``seeds``           a count (3 -> 0, 1, 2) or a list of seeds (default 3)
``plateau_patience`` plateau's patience grid, in evaluations (default 5, 10: multiples of 5 as in the paper)
``budget_unit``     ``steps`` (default: a budget is that fraction of the 100 % run's steps) or ``epochs``
                    (the paper's rounding up to whole epochs)
``diverge_factor``  a trial diverges when its training loss exceeds this multiple of its first loss (default 10)
``refine``          ``true``: add LR points around each schedule's best LR (x/÷ sqrt 3) and extend the grid where
                    the best sits at its edge; ``"edge"``: only extend the grid where the best sits at its edge (the
                    REX paper's x3 grid, grown only where it is too narrow); default false
``eval_seeds``      retrain each setting's configuration chosen on validation (per schedule row) on this many
                    fresh seeds after the tuning grid, and score the choice on them (default 0: off; the report
                    then cross-fits over the tuning seeds; docs/protocol.md "Fairness", F3)
``description``     free text
==================  ==========================================================================================
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from budgetsched._checks import did_you_mean
from budgetsched.bench.protocol.grid import (DEFAULT_OPTIMIZERS, DIVERGE_FACTOR, OPTIMIZERS, PAPER_BUDGETS, TrialConfig,
                                            expand, group_key)
from budgetsched.errors import UsageError

if TYPE_CHECKING:
    from budgetsched.bench.protocol.records import TrialRow

__all__ = ["StudySpec", "load_config", "refinement", "seed_list", "on_grid", "REFINE_FACTOR", "MAX_EXTENSIONS",
           "MAX_SEEDS"]

#: The largest seed count a study may ask for (each seed is a full copy of the grid; a list of seeds is checked
#: seed by seed, by TrialConfig).
MAX_SEEDS = 10_000
#: Refinement puts LR points at best x REFINE_FACTOR and best / REFINE_FACTOR (half a step of the x3 grid).
REFINE_FACTOR = math.sqrt(3.0)
#: Refinement extends the grid at most this many x3 steps past its coarse edge.
MAX_EXTENSIONS = 3
#: The keys a study cannot do without.
REQUIRED = ("tasks", "schedules", "lrs")

Schedules = list[Any]  # str or (name, {params})


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def seed_list(seeds: Any, source: str = "study") -> list[int]:
    """``seeds`` as a list: a count n gives seeds 0 .. n-1 (1 <= n <= :data:`MAX_SEEDS`); a list is kept as it is
    (each seed's range is TrialConfig's rule). :class:`UsageError` naming ``source`` otherwise."""
    if _is_number(seeds):
        if not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
            raise UsageError(f"{source}: seeds must be a count in [1, {MAX_SEEDS}] or a list of seeds, "
                             f"got {seeds!r}")
        return list(range(seeds))
    if not isinstance(seeds, list) or not seeds:
        raise UsageError(f"{source}: seeds must be a list of integers in [0, 2**63) or a count, got {seeds!r}")
    return seeds


def _unknown_keys(unknown: Sequence[str], known: Sequence[str]) -> str:
    """``'schedule'; did you mean 'schedules'?`` for each misspelled key."""
    shown = []
    for k in unknown:
        close = did_you_mean(str(k), known)
        shown.append(f"{k!r}" + (f" (did you mean {close!r}?)" if close else ""))
    if len(unknown) == 1 and " (did you mean " in shown[0]:
        return shown[0].replace(" (did you mean ", "; did you mean ").rstrip(")")
    return ", ".join(shown)


@dataclass
class StudySpec:
    """A validated study grid (see the module docstring for each field)."""

    tasks: list[str]
    schedules: Schedules
    lrs: list[float] | dict[str, Any]
    optimizers: list[str] = field(default_factory=lambda: list(DEFAULT_OPTIMIZERS))
    budgets: list[float] = field(default_factory=lambda: list(PAPER_BUDGETS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    plateau_patience: list[int] = field(default_factory=lambda: [5, 10])
    budget_unit: str = "steps"
    diverge_factor: float = DIVERGE_FACTOR
    refine: bool | str = False
    eval_seeds: int = 0
    description: str = ""

    # -- construction --------------------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, d: Mapping[str, Any], source: str = "study", *,
                     flags: Mapping[str, str] | None = None) -> "StudySpec":
        """Build and validate a spec from a preset / TOML / flags mapping; ``source`` names it in error messages,
        ``flags`` (key -> command-line flag) lets a missing key name the flag that gives it."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in set(d) - set(known))
        if unknown:
            shown = _unknown_keys(unknown, known)
            valid = ', '.join(sorted(known))
            raise UsageError(f"{source}: unknown key(s) {shown}" + (f" (valid keys: {valid})" if shown.endswith("?")
                                                                    else f"; valid keys: {valid}"))
        for k in REQUIRED:
            if k not in d:
                how = f": pass {flags[k]}, --preset or --config" if flags and k in flags else ""
                raise UsageError(f"{source}: no {k} given{how}")
        spec = cls(**dict(d))
        spec.validate(source)
        return spec

    def _fingerprint(self) -> str:
        return repr(tuple(getattr(self, f.name) for f in fields(self)))

    def validate(self, source: str = "study") -> "StudySpec":
        """Check the study and expand its grid once (:class:`UsageError` naming the bad value).

        The spec's own rules are checked here; each trial's values are checked by TrialConfig as the grid is
        expanded; task names last (a ``module:factory`` reference is imported to check it)."""
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

        str_list("tasks", self.tasks)
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
        for o in self.optimizers:  # the LR tables are keyed by optimizer: their names first
            if o not in OPTIMIZERS:
                close = did_you_mean(o, OPTIMIZERS)
                raise bad(f"unknown optimizer {o!r}" + (f" (did you mean {close!r}?)" if close else "")
                          + f"; choose from {', '.join(OPTIMIZERS)}")
        self.budgets = num_list("budgets", self.budgets)

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

        if per_task_lrs(self.lrs):
            if set(self.lrs) & set(OPTIMIZERS):
                strangers = [k for k in self.lrs if k not in OPTIMIZERS and k not in self.tasks]
                if strangers:  # an optimizer table with a misspelled optimizer
                    close = did_you_mean(str(strangers[0]), OPTIMIZERS)
                    raise bad(f"unknown optimizer {strangers[0]!r} in lrs"
                              + (f" (did you mean {close!r}?)" if close else "")
                              + f"; choose from {', '.join(OPTIMIZERS)}")
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
        self.seeds = seed_list(self.seeds, source)
        if not isinstance(self.plateau_patience, list) or not self.plateau_patience or not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in self.plateau_patience):
            raise bad(f"plateau_patience must be a list of integers >= 1 (evaluations), got {self.plateau_patience!r}")
        if not _is_number(self.diverge_factor):  # its range is TrialConfig's rule
            raise bad(f"diverge_factor must be a number > 1, got {self.diverge_factor!r}")
        if not (isinstance(self.refine, bool) or self.refine == "edge"):
            raise bad(f"refine must be true, false or \"edge\" (extend the grid only at its edge), "
                      f"got {self.refine!r}")
        if isinstance(self.eval_seeds, bool) or not isinstance(self.eval_seeds, int) or \
                not 0 <= self.eval_seeds <= MAX_SEEDS:
            raise bad(f"eval_seeds must be a count of evaluation seeds in [0, {MAX_SEEDS}] (0: off), "
                      f"got {self.eval_seeds!r}")
        if not isinstance(self.description, str):
            raise bad(f"description must be text, got {self.description!r}")
        self._check_task_names(bad, references=False)
        try:  # every budget, LR, seed, optimizer, unit, factor, schedule name and parameter: TrialConfig's rules
            trials = self._expand()
        except ValueError as e:
            raise bad(str(e)) from None
        self._check_task_names(bad, references=True)
        self._trials, self._trials_of = trials, self._fingerprint()
        return self

    def _check_task_names(self, bad: Any, references: bool) -> None:
        """Names without torch (:func:`~budgetsched.bench.tasks.names.known_tasks`); with ``references``, the
        ``module:factory`` references, resolved (importing the user's module) so a bad one fails here."""
        from budgetsched.bench.tasks.names import known_tasks

        known = known_tasks()
        for t in self.tasks:
            if t in known:
                continue
            if ":" not in t:
                close = did_you_mean(t, known)
                raise bad(f"unknown task {t!r}" + (f" (did you mean {close!r}?)" if close else "")
                          + f"; choose from {', '.join(known)}, or give your own as package.module:factory or "
                            "path/to/file.py:factory")
            if references:
                from budgetsched.bench.tasks import get_task

                try:
                    get_task(t)
                except ValueError as e:
                    raise bad(str(e)) from None

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
        """The grid: tasks x schedules (x plateau patience) x optimizers x budgets x LRs x seeds.

        Expanded once, by :meth:`validate`; a spec changed since is validated (and expanded) again."""
        if getattr(self, "_trials_of", None) != self._fingerprint():
            self.validate()
        return list(self._trials)

    def _expand(self) -> list[TrialConfig]:
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


def per_task_lrs(lrs: Any) -> bool:
    """``lrs`` is a table per task (``{task: ...}``), not one list or one table per optimizer: a mapping with a key
    that is not an optimizer name."""
    return isinstance(lrs, Mapping) and not set(lrs) <= set(OPTIMIZERS)


# ------------------------------------------------------------------------------------------------ refinement
def _round(v: float) -> float:
    return float(f"{v:.6g}")


def refinement(spec: StudySpec, configs: Sequence[TrialConfig], rows: Iterable[TrialRow]) -> list[TrialConfig]:
    """The next round of LR points for ``spec``'s grid, grown to ``configs``, whose trials are in ``rows``
    (:class:`~budgetsched.bench.protocol.records.TrialRow`, as ``Store.trial_rows()`` gives them).

    Per setting (task, optimizer, budget) and schedule (label and parameters, so plateau per patience), the LR
    with the lowest mean *validation* metric over seeds (diverged = +inf; ties to the smaller LR) is the best:

    1. if it is the largest (smallest) LR tried, the next point of the 1-3 grid beyond it is added
       (0.1 -> 0.3 -> 1, 0.03 -> 0.01 -> 0.003), at most :data:`MAX_EXTENSIONS` points past ``spec``'s LRs;
    2. otherwise, once, the points best x sqrt 3 and best / sqrt 3 are added - unless ``spec.refine == "edge"``,
       which only extends the grid (step 1).

    Returns the new configs (every seed of the grid each), or an empty list when refinement is complete. A schedule
    whose trials are not all finished, or that never trains at any LR, is left alone.
    """
    from budgetsched.bench.protocol import selection
    from budgetsched.bench.protocol.status import Status

    base: dict[tuple, list[TrialConfig]] = {}
    for c in configs:
        base.setdefault((*group_key(c), c.schedule, c.schedule_params), []).append(c)
    finished: dict[str, TrialRow] = {r.key: r for r in rows if r.status is not Status.FAILED}
    out: list[TrialConfig] = []
    for members in base.values():
        lrs = sorted({c.lr for c in members})
        seeds = sorted({c.seed for c in members})
        by_lr: dict[float, list[float]] = {}
        for c in members:
            r = finished.get(c.key)
            if r is None:
                continue
            by_lr.setdefault(c.lr, []).append(selection.score(r.status, r.val_metric))
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
        elif spec.refine != "edge":
            new = [_round(best * REFINE_FACTOR), _round(best / REFINE_FACTOR)]
        proto = members[0]
        for lr in new:
            if lr not in have:
                out += [TrialConfig(proto.task, proto.schedule, proto.optimizer, proto.budget, lr, s,
                                    proto.schedule_params, proto.budget_unit, proto.diverge_factor) for s in seeds]
    return out


def on_grid(lr: float) -> bool:
    """``lr`` is 1 or 3 times a power of ten (a point of the paper's "multiples of 3" grid; refinement's sqrt 3
    points are off it). ``budgetsched report --lr-grid x3`` reads only such trials."""
    e = math.floor(math.log10(lr) + 1e-9)
    m = lr / 10 ** e
    return abs(m - 1) < 1e-6 or abs(m - 3) < 1e-6


_on_grid = on_grid  # the earlier private name


def _next_on_grid(lr: float, up: bool) -> float:
    """The next point of the 1-3 grid above (below) ``lr``; x3 (/3) for an LR off that grid."""
    if not _on_grid(lr):
        return _round(lr * 3 if up else lr / 3)
    e = math.floor(math.log10(lr) + 1e-9)
    m = round(lr / 10 ** e)
    if up:
        return _round(3 * 10 ** e if m == 1 else 10 ** (e + 1))
    return _round(10 ** (e - 1) * 3 if m == 1 else 10 ** e)
