"""Decay on plateau: multiply the LR by ``factor`` when the validation metric stops improving.

The REX paper (section 4.1) tunes ``patience`` in multiples of 5 epochs. This is the only schedule that needs a
metric, so it is not a profile of progress; the adapters give it its own path (``step(metric)``). The semantics
equal ``torch.optim.lr_scheduler.ReduceLROnPlateau(mode='min', threshold_mode='rel', cooldown=0)``, with one
difference: torch skips a reduction smaller than 1e-8 in *absolute* LR, we apply that bound to the *scale*, so the
two can differ only once the LR itself is below about 1e-7.
"""
from __future__ import annotations

import math
import numbers
from typing import Any


def _show(value: Any) -> str:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and abs(int(value)) > 10**18:
        return f"an integer with {len(str(abs(int(value))))} digits"
    return repr(value)


def _number(name: str, value: Any) -> float:
    """``value`` as a float (NaN allowed: the callers decide), else one ValueError naming it."""
    if value is None or isinstance(value, (str, bytes, bool)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    except OverflowError:
        raise ValueError(f"{name} must be a number within float range, got {_show(value)}") from None


class Plateau:
    """LR scale that drops by ``factor`` after more than ``patience`` evaluations without improvement.

    >>> p = Plateau(patience=1, factor=0.1)
    >>> [p.update(v) for v in (1.0, 1.0, 1.0, 0.5)]
    [1.0, 1.0, 0.1, 0.1]
    """

    def __init__(self, patience: int, factor: float = 0.1, threshold: float = 1e-4, mode: str = "min",
                 min_scale: float = 0.0) -> None:
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {_show(patience)}")
        factor_ = _number("factor", factor)
        if not (0.0 < factor_ < 1.0):
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        threshold_ = _number("threshold", threshold)
        if not (threshold_ >= 0.0) or not math.isfinite(threshold_):
            raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        min_scale_ = _number("min_scale", min_scale)
        if not (0.0 <= min_scale_ <= 1.0):
            raise ValueError(f"min_scale must be in [0, 1], got {min_scale!r}")
        self.patience, self.factor, self.threshold = int(patience), factor_, threshold_
        self.mode, self.min_scale = mode, min_scale_
        self.scale = 1.0
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad = 0

    def _better(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best * (1.0 - self.threshold) if self.best != math.inf else value < self.best
        return value > self.best * (1.0 + self.threshold) if self.best != -math.inf else value > self.best

    def update(self, metric: float) -> float:
        """Record one evaluation of the metric; return the LR scale to use from now on.

        A NaN metric (a diverged evaluation) never improves, as in ``ReduceLROnPlateau``; ``None``, text and numbers
        beyond float range are a ValueError.
        """
        value = _number("metric", metric)
        if self._better(value):
            self.best, self.num_bad = value, 0
        else:
            self.num_bad += 1
        if self.num_bad > self.patience:
            new = max(self.scale * self.factor, self.min_scale)
            # torch skips reductions smaller than eps=1e-8 in absolute LR; on a scale of 1 this is the same bound
            if self.scale - new > 1e-8:
                self.scale = new
            self.num_bad = 0
        return self.scale

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "best": self.best, "num_bad": self.num_bad, "patience": self.patience,
                "factor": self.factor, "threshold": self.threshold, "mode": self.mode, "min_scale": self.min_scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in ("scale", "best", "num_bad", "patience", "factor", "threshold", "mode", "min_scale"):
            setattr(self, k, state[k])

    def __repr__(self) -> str:
        return f"Plateau(patience={self.patience}, factor={self.factor}, scale={self.scale:g})"
