"""What the PyTorch schedulers share: per-group argument checks, the optimizer write, the step watch."""
from __future__ import annotations

import numbers
import weakref
from typing import Any, Sequence

import numpy as np
import torch
from torch.optim import Optimizer

from .._checks import _check_fraction, _check_lr, _show

# torch's own text for the deprecated step(epoch), with a fallback for releases that rename it
EPOCH_DEPRECATION = getattr(torch.optim.lr_scheduler, "EPOCH_DEPRECATION_WARNING",
                            "The epoch parameter in `scheduler.step()` is deprecated; call `scheduler.step()`.")


def _plain(value: Any) -> Any:
    """Profile parameters as plain Python (numpy arrays and scalars become lists and floats)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _per_group(name: str, value: Any, n: int) -> tuple[list[Any], list[str]]:
    """A scalar or a list with one entry per parameter group, as n values and their names for messages."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (numbers.Real, Sequence, np.ndarray, torch.Tensor)):
        raise ValueError(f"{name} must be a number or a list with one number per parameter group, got {_show(value)}")
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        value = float(value)
    if isinstance(value, numbers.Real):
        return [value] * n, [name] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but the optimizer has {n} parameter groups: {values!r}")
    return values, [f"{name}[{i}]" for i in range(n)]


def _group_peak(group: dict[str, Any], i: int) -> float:
    return _check_lr(f"param_groups[{i}]['lr']", group["initial_lr"] if "initial_lr" in group else group["lr"])


def _peaks(groups: list[dict[str, Any]], peak_lr: Any, resuming: bool) -> list[float]:
    """Each group's peak: ``peak_lr`` (scalar or per group) if given, else its ``initial_lr``, else its ``lr``."""
    if peak_lr is not None:
        values, names = _per_group("peak_lr", peak_lr, len(groups))
        return [_check_lr(name, v) for name, v in zip(names, values)]
    if resuming:
        missing = [i for i, g in enumerate(groups) if "initial_lr" not in g]
        if missing:
            raise ValueError(f"last_epoch >= 0 resumes a run: parameter group {missing[0]} has no 'initial_lr' (its "
                             "peak); load the optimizer's state first, or pass peak_lr=")
    return [_group_peak(g, i) for i, g in enumerate(groups)]


def _floors(min_lr: Any, min_lr_ratio: Any, peaks: list[float]) -> list[float]:
    """Each group's floor: ``min_lr`` (scalar or per group) or ``min_lr_ratio`` x its peak; in [0, peak]."""
    if min_lr is not None and min_lr_ratio is not None:
        raise ValueError(f"give min_lr ({min_lr!r}) or min_lr_ratio ({min_lr_ratio!r}), not both")
    n = len(peaks)
    if min_lr_ratio is not None:
        values, names = _per_group("min_lr_ratio", min_lr_ratio, n)
        return [_check_fraction(name, v, hi_open=False) * p for name, v, p in zip(names, values, peaks)]
    return _lrs_below_peaks("min_lr", 0.0 if min_lr is None else min_lr, peaks)


def _starts(warmup_start_lr: Any, peaks: list[float]) -> list[float | None]:
    """Each group's warmup start LR (scalar or per group), in [0, peak]; None for each when not given."""
    if warmup_start_lr is None:
        return [None] * len(peaks)
    return list(_lrs_below_peaks("warmup_start_lr", warmup_start_lr, peaks))


def _lrs_below_peaks(what: str, value: Any, peaks: list[float]) -> list[float]:
    """``value`` (scalar or one per group) checked as an LR and <= each group's peak."""
    values, names = _per_group(what, value, len(peaks))
    out = []
    for name, v, peak in zip(names, values, peaks):
        x = _check_lr(name, v)
        if x > peak:
            raise ValueError(f"{name} ({v!r}) must be <= the parameter group's peak lr ({peak!r})")
        out.append(x)
    return out


def _write(group: dict[str, Any], key: str, value: float) -> None:
    current = group[key]
    if isinstance(current, torch.Tensor):  # a tensor LR (compiled optimizer steps) is filled in place
        current.fill_(value)
    else:
        group[key] = value


def _new_group_floor(config: dict[str, Any], peak: float, i: int) -> float:
    """The floor of a parameter group added after construction (see the class docstring)."""
    if config["min_lr_ratio"] is not None and isinstance(config["min_lr_ratio"], numbers.Real):
        return float(config["min_lr_ratio"]) * peak
    spec = config["min_lr"]
    if spec is None or not isinstance(spec, numbers.Real):
        return 0.0
    if float(spec) > peak:
        raise ValueError(f"parameter group {i} was added with lr {peak!r}, below min_lr ({spec!r}); give it an lr "
                         ">= min_lr")
    return float(spec)


class _StepWatch:
    """Remembers whether the optimizer has stepped, through torch's public step hook (removed after it fires)."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.stepped = False
        ref = weakref.ref(self)

        def hook(opt: Optimizer, args: Any, kwargs: Any) -> None:
            me = ref()
            if me is not None:
                me.stepped = True
                me.handle.remove()

        # A wrapper that is an Optimizer without one's state (accelerate's AcceleratedOptimizer, as Trainer's
        # create_scheduler receives it) steps the optimizer it wraps: watch that one.
        inner = optimizer
        while isinstance(getattr(inner, "optimizer", None), Optimizer):
            inner = inner.optimizer
        self.handle = inner.register_step_post_hook(hook)


def _plain_change(c: tuple[Any, ...]) -> list[Any]:
    """A budget change as a checkpoint stores it: ``[at, total, rewarm_steps, rewarm_peaks]`` (None where it does
    not apply; the format of 0.1), plus ``"extend"`` as a fifth entry for that strategy."""
    if len(c) == 3 and c[2] == "extend":
        return [c[0], c[1], None, None, "extend"]
    if len(c) == 2:
        return [c[0], c[1], None, None]
    return [c[0], c[1], c[2], None if c[3] is None else list(c[3])]
