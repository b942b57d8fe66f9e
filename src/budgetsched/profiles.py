"""Profiles: the curve m(z) of a learning-rate schedule, as a pure function of progress z in [0, 1].

The REX paper (Chen, Wolfe, Kyrillidis, MLSys 2022, section 3) splits a schedule into a *profile* (this module)
and a *sampling rate* (:mod:`budgetsched.sampling`). Every profile here is vectorised numpy math of z, returns the
multiplier of the peak LR, and has m(0) = 1 unless its docstring says otherwise. The LR at progress z is
``min_lr + (peak_lr - min_lr) * m(z)`` (see :class:`budgetsched.Schedule`).

Use :func:`available` for the names and :func:`get_profile` to bind parameters (with validation).
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

ArrayLike = Any  # float or np.ndarray
Profile = Callable[[ArrayLike], np.ndarray]


def _z(z: ArrayLike) -> np.ndarray:
    return np.asarray(z, dtype=np.float64)


# --- the REX paper's profiles (section 4.1) -------------------------------------------------------------------

def rex(z: ArrayLike) -> np.ndarray:
    """REX, the reflected exponential: m(z) = (1 - z) / (1/2 + 1/2 (1 - z)) = 2(1 - z) / (2 - z).

    REX paper, section 4.1. Sampled every step.

    >>> float(rex(0.0)), float(rex(0.5)), float(rex(1.0))
    (1.0, 0.6666666666666666, 0.0)
    """
    z = _z(z)
    return 2.0 * (1.0 - z) / (2.0 - z)


def linear(z: ArrayLike) -> np.ndarray:
    """Linear decay to zero: m(z) = 1 - z (Li et al. 2020; REX paper section 4.1).

    >>> float(linear(0.0)), float(linear(0.5)), float(linear(1.0))
    (1.0, 0.5, 0.0)
    """
    return 1.0 - _z(z)


def cosine(z: ArrayLike) -> np.ndarray:
    """Cosine decay: m(z) = (1 + cos(pi z)) / 2 (Loshchilov & Hutter 2017; REX paper section 4.1).

    >>> float(cosine(0.0)), round(float(cosine(0.5)), 12), float(cosine(1.0))
    (1.0, 0.5, 0.0)
    """
    return 0.5 * (1.0 + np.cos(np.pi * _z(z)))


def exp(z: ArrayLike, gamma: float = -3.0) -> np.ndarray:
    """Exponential decay: m(z) = exp(gamma z); the paper tuned gamma = -3 (section 4.1).

    >>> float(exp(0.0)), round(float(exp(0.5)), 6), round(float(exp(1.0)), 6)
    (1.0, 0.22313, 0.049787)
    """
    return np.exp(gamma * _z(z))


def step(z: ArrayLike, milestones: Sequence[float] = (0.5, 0.75), factor: float = 0.1) -> np.ndarray:
    """Step decay: m(z) = factor ** (number of milestones <= z). Default "50-75" with factor 0.1 (He et al. 2016).

    Its default sampling rate is its own milestones (the paper's step schedule is this profile sampled at 50-75).

    >>> float(step(0.0)), float(step(0.5)), round(float(step(1.0)), 12)
    (1.0, 0.1, 0.01)
    """
    z = _z(z)
    n = np.searchsorted(np.asarray(milestones, dtype=np.float64), z, side="right")
    return np.power(float(factor), n).astype(np.float64)


def onecycle(
    z: ArrayLike,
    variant: str = "triangle",
    min_ratio: float = 0.1,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    max_momentum: float = 0.95,
    base_momentum: float = 0.85,
) -> np.ndarray:
    """OneCycle (Smith 2018). m(0) is NOT 1: the peak is reached mid-cycle.

    ``variant="triangle"`` (default, the REX paper's setting): linear from ``min_ratio`` (0.1) up to 1 over the
    first half, back down to ``min_ratio`` over the second half. The paper's printed formula lost its factors of 2;
    this is the triangle it describes. ``max_momentum``/``base_momentum`` shape :func:`onecycle_momentum`, the
    momentum (SGD) or beta1 (Adam) curve that moves the opposite way. ``variant="torch"``: PyTorch's OneCycleLR shape (cosine, warm-up fraction
    ``pct_start``, start 1/div_factor, end 1/(div_factor*final_div_factor)).

    >>> float(onecycle(0.0)), float(onecycle(0.5)), round(float(onecycle(1.0)), 12)
    (0.1, 1.0, 0.1)
    """
    z = _z(z)
    if variant == "triangle":
        up = min_ratio + (1.0 - min_ratio) * 2.0 * z
        down = min_ratio + (1.0 - min_ratio) * (2.0 - 2.0 * z)
        return np.where(z < 0.5, up, down)
    start, end = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)
    a = np.clip(z / pct_start, 0.0, 1.0)
    b = np.clip((z - pct_start) / (1.0 - pct_start), 0.0, 1.0)
    rise = start + (1.0 - start) * 0.5 * (1.0 - np.cos(np.pi * a))
    fall = end + (1.0 - end) * 0.5 * (1.0 + np.cos(np.pi * b))
    return np.where(z < pct_start, rise, fall)


def onecycle_momentum(
    z: ArrayLike,
    variant: str = "triangle",
    max_momentum: float = 0.95,
    base_momentum: float = 0.85,
    pct_start: float = 0.3,
    **_: Any,
) -> np.ndarray:
    """OneCycle's momentum (SGD) or beta1 (Adam): moves opposite to the LR, 0.95 -> 0.85 -> 0.95 (Smith 2018).

    >>> float(onecycle_momentum(0.0)), float(onecycle_momentum(0.5)), round(float(onecycle_momentum(1.0)), 12)
    (0.95, 0.85, 0.95)
    """
    z = _z(z)
    span = max_momentum - base_momentum
    if variant == "triangle":
        return np.where(z < 0.5, max_momentum - span * 2.0 * z, base_momentum + span * (2.0 * z - 1.0))
    a = np.clip(z / pct_start, 0.0, 1.0)
    b = np.clip((z - pct_start) / (1.0 - pct_start), 0.0, 1.0)
    down = max_momentum - span * 0.5 * (1.0 - np.cos(np.pi * a))
    up = base_momentum + span * 0.5 * (1.0 - np.cos(np.pi * b))
    return np.where(z < pct_start, down, up)


def constant(z: ArrayLike) -> np.ndarray:
    """No decay (the paper's "None"): m(z) = 1.

    >>> float(constant(0.0)), float(constant(0.5)), float(constant(1.0))
    (1.0, 1.0, 1.0)
    """
    return np.ones_like(_z(z))


def delayed_linear(z: ArrayLike, delay: float = 0.5) -> np.ndarray:
    """Linear decay delayed to a fraction ``delay`` of the run: 1 for z < d, then (1 - z)/(1 - d) (paper Figure 2).

    >>> float(delayed_linear(0.0)), float(delayed_linear(0.5)), float(delayed_linear(0.75)), float(delayed_linear(1.0))
    (1.0, 1.0, 0.5, 0.0)
    """
    z = _z(z)
    return np.where(z < delay, 1.0, (1.0 - z) / (1.0 - delay))


# --- neighbouring papers ----------------------------------------------------------------------------------------

def rex_beta(z: ArrayLike, beta: float = 0.5) -> np.ndarray:
    """Generalised REX: m(z) = (1 - z) / (1 - (1 - beta) z), beta >= 0.

    beta = 0.5 is the paper's REX, beta = 1 is linear, beta = 0 is constant. (Some widely copied ports use
    (1 - z)/(0.1 + 0.9 (1 - z)), which is beta = 0.1, not the paper's REX.)

    >>> float(rex_beta(0.0)), float(rex_beta(0.5)), float(rex_beta(1.0))
    (1.0, 0.6666666666666666, 0.0)
    """
    z = _z(z)
    den = 1.0 - (1.0 - beta) * z
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den == 0.0, 1.0, (1.0 - z) / np.where(den == 0.0, 1.0, den))


def uba(z: ArrayLike, phi: float = 2.0) -> np.ndarray:
    """UBA: m(z) = 1 / (1 + (phi/2) tan^2(pi z / 2)), phi > 0; phi = 2 equals cosine exactly.

    From "Stepsize anything" (NeurIPS 2025). Only the abstract was available to us; this form follows a
    third-party reading of the paper.

    >>> float(uba(0.0)), round(float(uba(0.5)), 12), float(uba(1.0))
    (1.0, 0.5, 0.0)
    """
    z = _z(z)
    with np.errstate(over="ignore"):
        t = np.tan(np.pi * np.minimum(z, 1.0) / 2.0)
        return np.where(z >= 1.0, 0.0, 1.0 / (1.0 + 0.5 * phi * t * t))


def wsd(z: ArrayLike, fraction: float = 0.2, cooldown: str = "linear") -> np.ndarray:
    """Warmup-stable-decay's stable + cooldown part: 1 until 1 - f, then 1 - x (linear) or 1 - sqrt(x) (1-sqrt),
    x = progress through the final fraction f (MiniCPM; Hagele et al. 2024 use f = 0.2; 1-sqrt beats linear).
    Combine with ``warmup_steps`` for the warmup.

    >>> float(wsd(0.0)), round(float(wsd(0.9)), 12), float(wsd(1.0))
    (1.0, 0.5, 0.0)
    """
    z = _z(z)
    x = np.clip(1.0 - (1.0 - z) / fraction, 0.0, 1.0)  # written so that z = 1 gives x = 1 exactly
    return 1.0 - (np.sqrt(x) if cooldown == "1-sqrt" else x)


def polynomial(z: ArrayLike, power: float = 2.0) -> np.ndarray:
    """Polynomial decay: m(z) = (1 - z)^power.

    >>> float(polynomial(0.0)), float(polynomial(0.5)), float(polynomial(1.0))
    (1.0, 0.25, 0.0)
    """
    return np.power(np.clip(1.0 - _z(z), 0.0, 1.0), power)


def refined_table(grad_norms: Sequence[float], optimizer: str = "sgd", smooth: float = 0.1) -> np.ndarray:
    """The refined schedule's multipliers m_1..m_T from a previous run's gradient norms g_1..g_T.

    Defazio et al., "When, Why and How Much? Adaptive learning rate scheduling by refinement":
    w_t = 1/g_t^2 (SGD, g = L2 norm) or 1/g_t (Adam, g = L1 norm); m_t proportional to w_t * sum_{s>t} w_s,
    m_T = 0, normalised so max m = 1. The norms are first smoothed by a running median over ``smooth`` of the run.
    Constant norms give exactly linear decay.
    """
    g = np.asarray(grad_norms, dtype=np.float64)
    if g.ndim != 1 or g.size < 2:
        raise ValueError(f"refined: grad_norms must be a 1-D sequence of at least 2 values, got shape {g.shape}")
    if not np.all(np.isfinite(g)) or np.any(g <= 0):
        raise ValueError("refined: grad_norms must be finite and > 0")
    width = max(1, int(round(smooth * g.size)))
    if width > 1:
        half = width // 2
        padded = np.pad(g, (half, width - 1 - half), mode="edge")
        g = np.median(np.lib.stride_tricks.sliding_window_view(padded, width), axis=1)
    w = 1.0 / (g * g if optimizer == "sgd" else g)
    tail = np.concatenate([np.cumsum(w[::-1])[::-1][1:], [0.0]])  # sum_{s>t} w_s
    m = w * tail
    return m / m.max()


def refined(z: ArrayLike, grad_norms: Sequence[float] = (), optimizer: str = "sgd", smooth: float = 0.1) -> np.ndarray:
    """Refined schedule (see :func:`refined_table`), read at progress z by linear interpolation between the
    previous run's steps (so a new run of any length can use it).

    >>> float(refined(0.0, [1.0] * 11)), round(float(refined(0.5, [1.0] * 11)), 12), float(refined(1.0, [1.0] * 11))
    (1.0, 0.5, 0.0)
    """
    table = refined_table(grad_norms, optimizer, smooth)
    knots = np.linspace(0.0, 1.0, table.size)
    return np.interp(_z(z), knots, table)


# --- registry -----------------------------------------------------------------------------------------------------

def _in(name: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False):
    def check(v: Any) -> str | None:
        try:
            x = float(v)
        except (TypeError, ValueError):
            return f"{name} must be a number, got {v!r}"
        if not math.isfinite(x):
            return f"{name} must be finite, got {v!r}"
        low_ok = lo is None or (x > lo if lo_open else x >= lo)
        high_ok = hi is None or (x < hi if hi_open else x <= hi)
        if not (low_ok and high_ok):
            lb = "-inf" if lo is None else f"{lo:g}"
            ub = "inf" if hi is None else f"{hi:g}"
            return f"{name} must be in {'(' if lo_open or lo is None else '['}{lb}, {ub}{')' if hi_open or hi is None else ']'}, got {v!r}"
        return None
    return check


def _one_of(name: str, options: Sequence[str]):
    def check(v: Any) -> str | None:
        return None if v in options else f"{name} must be one of {', '.join(map(repr, options))}, got {v!r}"
    return check


def _milestones(v: Any) -> str | None:
    try:
        ms = [float(x) for x in v]
    except (TypeError, ValueError):
        return f"milestones must be a sequence of fractions, got {v!r}"
    if not ms or any(not (0.0 < m < 1.0) for m in ms) or any(b <= a for a, b in zip(ms, ms[1:])):
        return f"milestones must be strictly increasing fractions in (0, 1), got {v!r}"
    return None


def _grad_norms(v: Any) -> str | None:
    try:
        refined_table(v)
    except (TypeError, ValueError) as e:
        return str(e).replace("refined: ", "")
    return None


@dataclass(frozen=True)
class ProfileSpec:
    """A registered profile: its function, parameter checks and default sampling rate."""

    name: str
    fn: Callable[..., np.ndarray]
    checks: dict[str, Callable[[Any], str | None]]
    required: tuple[str, ...] = ()


_REGISTRY: dict[str, ProfileSpec] = {}


def _register(name: str, fn: Callable[..., np.ndarray], required: tuple[str, ...] = (), **checks: Any) -> None:
    _REGISTRY[name] = ProfileSpec(name, fn, checks, required)


_register("rex", rex)
_register("linear", linear)
_register("cosine", cosine)
_register("exp", exp, gamma=_in("gamma", hi=0.0))
_register("step", step, milestones=_milestones, factor=_in("factor", 0.0, 1.0, lo_open=True))
_register("onecycle", onecycle, variant=_one_of("variant", ("triangle", "torch")),
          min_ratio=_in("min_ratio", 0.0, 1.0, hi_open=True), pct_start=_in("pct_start", 0.0, 1.0, True, True),
          div_factor=_in("div_factor", 1.0), final_div_factor=_in("final_div_factor", 1.0),
          max_momentum=_in("max_momentum", 0.0, 1.0, hi_open=True), base_momentum=_in("base_momentum", 0.0, 1.0, hi_open=True))
_register("constant", constant)
_register("delayed-linear", delayed_linear, delay=_in("delay", 0.0, 1.0, hi_open=True))
_register("rex-beta", rex_beta, beta=_in("beta", 0.0))
_register("uba", uba, phi=_in("phi", 0.0, lo_open=True))
_register("wsd", wsd, fraction=_in("fraction", 0.0, 1.0, lo_open=True), cooldown=_one_of("cooldown", ("linear", "1-sqrt")))
_register("polynomial", polynomial, power=_in("power", 0.0, lo_open=True))
_register("refined", refined, required=("grad_norms",), grad_norms=_grad_norms,
          optimizer=_one_of("optimizer", ("sgd", "adam")), smooth=_in("smooth", 0.0, 1.0, hi_open=True))

#: Schedules that are not a profile of z (they need a metric); handled by :class:`budgetsched.Plateau`.
METRIC_SCHEDULES = ("plateau",)

#: Aliases accepted for convenience (paper names).
ALIASES = {"none": "constant", "rex_beta": "rex-beta", "delayed_linear": "delayed-linear", "poly": "polynomial",
           "one-cycle": "onecycle", "exponential": "exp"}


def available() -> list[str]:
    """Names of every schedule: all profiles, plus ``plateau`` (metric-driven)."""
    return sorted([*_REGISTRY, *METRIC_SCHEDULES])


def canonical_name(name: str) -> str:
    """Resolve aliases; raise ValueError listing valid names for an unknown one."""
    if not isinstance(name, str):
        raise ValueError(f"profile name must be a string, got {name!r}")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in _REGISTRY and key not in METRIC_SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid names: {', '.join(available())}")
    return key


def get_profile(name: str, **params: Any) -> Profile:
    """Return m(z) for profile ``name`` with ``params`` bound, after checking every parameter.

    >>> m = get_profile("exp", gamma=-3.0)
    >>> round(float(m(1.0)), 6)
    0.049787
    """
    key = canonical_name(name)
    if key in METRIC_SCHEDULES:
        raise ValueError(
            f"{name!r} is not a profile of progress: it decays on a validation metric. Use budgetsched.Plateau, "
            "or budgetsched.torch.BudgetScheduler(optimizer, 'plateau', ...) with step(metric)")
    spec = _REGISTRY[key]
    valid = [p for p in inspect.signature(spec.fn).parameters if p != "z"]
    for p in params:
        if p not in valid:
            allowed = ", ".join(valid) if valid else "none"
            raise ValueError(f"unknown parameter {p!r} for profile {key!r}; its parameters: {allowed}")
    for p in spec.required:
        if p not in params:
            raise ValueError(f"profile {key!r} needs parameter {p!r}")
    for p, v in params.items():
        msg = spec.checks[p](v) if p in spec.checks else None
        if msg:
            raise ValueError(f"profile {key!r}: {msg}")
    if key == "refined":  # build the table once, not on every call
        table = refined_table(params["grad_norms"], params.get("optimizer", "sgd"), params.get("smooth", 0.1))
        knots = np.linspace(0.0, 1.0, table.size)
        return lambda z: np.interp(_z(z), knots, table)
    if not params:
        return spec.fn
    return lambda z: spec.fn(z, **params)


def get_momentum(name: str, **params: Any) -> Profile | None:
    """The momentum/beta1 curve of a profile that has one (only ``onecycle``), else None."""
    if canonical_name(name) != "onecycle":
        return None
    return lambda z: onecycle_momentum(z, **params)
