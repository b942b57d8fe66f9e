"""``budgetsched run``'s flags as a study: text parsed into values here, every rule checked once by the study spec
(:class:`budgetsched.bench.protocol.study.StudySpec`). Nothing here imports torch."""
from __future__ import annotations

import argparse
from typing import Any

from budgetsched.bench.protocol.grid import parse_list
from budgetsched.errors import UsageError

__all__ = ["parse_schedules", "parse_lrs", "parse_seeds", "parse_workers", "study_spec"]

#: study key -> the ``run`` flag that sets it (a missing key names its flag).
FLAGS = {"tasks": "--task", "schedules": "--schedules", "optimizers": "--optimizers", "budgets": "--budgets",
         "lrs": "--lrs", "seeds": "--seeds", "plateau_patience": "--plateau-patience",
         "budget_unit": "--budget-unit", "diverge_factor": "--diverge-factor", "refine": "--refine",
         "eval_seeds": "--eval-seeds"}


def _number(text: str) -> Any:
    """'5' -> 5, '0.5' -> 0.5, anything else stays a string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _list(text: str, kind: type, flag: str) -> list[Any]:
    try:
        return parse_list(text, kind)
    except ValueError as e:
        raise UsageError(f"{flag}: {e}") from None


def parse_schedules(text: str) -> list[str | tuple[str, dict[str, Any]]]:
    """``rex,linear,delayed-linear:delay=0.5`` -> ``["rex", "linear", ("delayed-linear", {"delay": 0.5})]``.

    Parameters follow the name after ``:``, several separated by ``:`` (``step:factor=0.2``). Names and parameters
    are checked once, when the study is built (:class:`budgetsched.bench.protocol.study.StudySpec`).
    """
    out: list[str | tuple[str, dict[str, Any]]] = []
    for item in parse_list(text):
        name, *params = item.split(":")
        if not params:
            out.append(name)
            continue
        kw: dict[str, Any] = {}
        for p in params:
            k, eq, v = p.partition("=")
            if not eq or not k or not v:
                raise UsageError(f"bad schedule parameter {p!r} in {item!r}; write name:key=value, "
                                 f"e.g. delayed-linear:delay=0.5")
            kw[k] = _number(v)
        out.append((name, kw))
    return out


def parse_lrs(text: str) -> list[float] | dict[str, list[float]]:
    """``0.01,0.03`` (every optimizer) or ``sgdm=0.01,0.03;adam=0.001,0.003`` (per optimizer; the optimizer
    names are the spec's to check)."""
    if "=" not in text:
        return _list(text, float, "--lrs")
    out: dict[str, list[float]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        opt, _, vals = part.partition("=")
        out[opt.strip()] = _list(vals, float, f"--lrs for {opt.strip()}")
    return out


def _seeds(text: str) -> int | list[int]:
    """``3`` -> the count 3; ``0,1,2`` or ``7,`` -> exactly those seeds."""
    seeds = _list(text, int, "--seeds")
    if "," in text:
        return seeds
    if len(seeds) != 1:
        raise UsageError(f"--seeds: give a count like 3 or a list like 0,1,2, got {text!r}")
    return seeds[0]


def _count(text: str, flag: str) -> Any:
    """``3`` -> 3; anything else is left for the spec to refuse, naming the value (``--eval-seeds: ...``)."""
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{flag}: give a count of seeds (an integer >= 0), got {text!r}") from None


def parse_seeds(text: str) -> list[int]:
    """``3`` -> seeds 0, 1, 2 (a count, expanded by the spec's rule); ``0,1,2`` or ``7,`` -> exactly those seeds."""
    from budgetsched.bench.protocol.study import seed_list

    return seed_list(_seeds(text), "--seeds")


def parse_workers(text: str) -> int | str:
    """``--workers``: a count, or ``auto`` (the count's range is the runner's option check)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes or 'auto'") from None


def study_spec(args: argparse.Namespace) -> Any:
    """The study of ``budgetsched run``: a preset or a ``--config`` file (not both), with every flag applied over
    it, validated once (:class:`budgetsched.bench.protocol.study.StudySpec`)."""
    from budgetsched.bench.protocol.presets import get_preset
    from budgetsched.bench.protocol.study import StudySpec, load_config, per_task_lrs

    if args.preset is not None and args.config is not None:
        raise UsageError("give --preset or --config, not both")
    base: dict[str, Any] = {}
    source = "command line"
    if args.preset is not None:
        base, source = get_preset(args.preset), f"preset {args.preset!r}"
    elif args.config is not None:
        base, source = load_config(args.config), str(args.config)
    text = {"tasks": args.task, "schedules": args.schedules, "optimizers": args.optimizers, "budgets": args.budgets,
            "lrs": args.lrs, "seeds": args.seeds, "plateau_patience": args.plateau_patience}
    parse = {"tasks": parse_list, "schedules": parse_schedules, "optimizers": parse_list,
             "budgets": lambda t: _list(t, float, "--budgets"), "lrs": parse_lrs, "seeds": _seeds,
             "plateau_patience": lambda t: _list(t, int, "--plateau-patience")}
    flags = {k: parse[k](v) for k, v in text.items() if v is not None}
    for k in ("budget_unit", "diverge_factor"):
        if getattr(args, k) is not None:
            flags[k] = getattr(args, k)
    if args.refine:
        flags["refine"] = True if args.refine == "all" else "edge"
    if getattr(args, "eval_seeds", None) is not None:
        flags["eval_seeds"] = _count(args.eval_seeds, "--eval-seeds")
    lrs = base.get("lrs")
    if "tasks" in flags and "lrs" not in flags and per_task_lrs(lrs):
        # --task narrows a study whose LRs are a table per task: keep the chosen tasks' tables
        lacking = [t for t in flags["tasks"] if t not in lrs]
        if lacking:
            raise UsageError(f"{source} has no LRs for task(s) {', '.join(map(repr, lacking))} (its tasks: "
                             f"{', '.join(lrs)}); give them with --lrs")
        base = {**base, "lrs": {t: v for t, v in lrs.items() if t in flags["tasks"]}}
    if flags and base:
        source += " with flags"
    return StudySpec.from_mapping({**base, **flags}, source, flags=FLAGS)
