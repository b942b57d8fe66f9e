"""Profiles: the curve m(z) of a learning-rate schedule, as a pure function of progress z in [0, 1].

The REX paper (Chen, Wolfe, Kyrillidis, MLSys 2022, section 3) splits a schedule into a *profile* (this module)
and a *sampling rate* (:mod:`budgetsched.sampling`). Every profile here returns the multiplier of the peak LR and
has m(0) = 1 unless its docstring says otherwise. The LR at progress z is ``min_lr + (peak_lr - min_lr) * m(z)``
(see :class:`budgetsched.Schedule`).

Each formula is written once, against :class:`Ops`, the handful of array operations it needs. Called plainly it
uses numpy (``rex(0.5)``); the PyTorch adapter evaluates the same formula on Python floats, one step at a time,
and the optax and Keras adapters on ``jax.numpy`` and ``keras.ops`` values, so no adapter needs a table of steps.

Use :func:`available` for the names and :func:`get_profile` to bind parameters (with validation).
"""
from __future__ import annotations

import bisect
import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ._param_checks import _in, _milestones, _one_of, _short

ArrayLike = Any  # float or np.ndarray
Profile = Callable[[ArrayLike], np.ndarray]


@dataclass(frozen=True)
class Ops:
    """The array operations a profile formula may use, for one array library.

    ``NP`` (numpy, float64) and ``PY`` (Python floats, for one step at a time) live here; the optax and Keras
    adapters build theirs from ``jax.numpy`` and ``keras.ops``. ``index`` turns a float array of whole numbers
    into integer indices for ``take``; ``const`` turns a numpy table into the library's constant.
    """

    name: str
    asarray: Callable[[Any], Any]
    where: Callable[[Any, Any, Any], Any]
    cos: Callable[[Any], Any]
    sin: Callable[[Any], Any]
    exp: Callable[[Any], Any]
    tan: Callable[[Any], Any]
    sqrt: Callable[[Any], Any]
    power: Callable[[Any, Any], Any]
    minimum: Callable[[Any, Any], Any]
    maximum: Callable[[Any, Any], Any]
    floor: Callable[[Any], Any]
    index: Callable[[Any], Any]
    take: Callable[[Any, Any], Any]
    searchsorted: Callable[[Any, Any], Any]  # side="right"
    const: Callable[[np.ndarray], Any]
    #: Machine epsilon of the computation (a float, or a function returning it when the dtype is chosen at run time,
    #: as jax's x64 flag). Above 1e-10 (float32) the schedule works around float32 rounding; see ``low_precision``.
    eps: float | Callable[[], float] = 2.0**-52

    def clip(self, x: Any, lo: Any, hi: Any) -> Any:
        return self.minimum(self.maximum(x, lo), hi)

    def epsilon(self) -> float:
        return self.eps() if callable(self.eps) else self.eps

    @property
    def low_precision(self) -> bool:
        """float32 (optax, Keras): 1 - z is computed from the steps left, not from a rounded z (see :func:`_rest`);
        progress is moved up by 4 ulp before it is held at a sample point (:meth:`Sampling.hold_with`), because
        XLA's float32 division is not correctly rounded (40 / 200 gives 0.19999999), so a step exactly on a sample
        point would otherwise read the level before it. float64 (numpy, Python) does neither: its values are
        bit-for-bit continuous across budget changes."""
        return self.epsilon() > 1e-10


def _z(z: ArrayLike) -> np.ndarray:
    return np.asarray(z, dtype=np.float64)


def _rest(z: Any, r: Any) -> Any:
    """1 - z: the remaining progress r when the caller computed it (exactly, from integer steps), else 1 - z.

    Near the end of a run m(z) -> 0 and is proportional to 1 - z; in float32 (optax, Keras) 1 - z computed from a
    rounded z has a relative error of eps / (1 - z), so the formulas take r from the schedule instead.
    """
    return 1.0 - z if r is None else r


NP = Ops("numpy", asarray=_z, where=np.where, cos=np.cos, sin=np.sin, exp=np.exp, tan=np.tan, sqrt=np.sqrt, power=np.power,
         minimum=np.minimum, maximum=np.maximum, floor=np.floor, index=lambda x: np.asarray(x).astype(np.int64),
         take=lambda table, i: np.asarray(table)[i], searchsorted=lambda a, v: np.searchsorted(a, v, side="right"),
         const=lambda a: np.asarray(a, dtype=np.float64))


def _py_where(c: Any, a: Any, b: Any) -> Any:
    return a if c else b


PY = Ops("python", asarray=float, where=_py_where, cos=math.cos, sin=math.sin, exp=math.exp, tan=math.tan, sqrt=math.sqrt,
         power=pow, minimum=min, maximum=max, floor=math.floor, index=int, take=lambda table, i: table[i],
         searchsorted=bisect.bisect_right, const=lambda a: [float(x) for x in np.asarray(a, dtype=np.float64)])


# --- the REX paper's profiles (section 4.1) -------------------------------------------------------------------

def rex(z: ArrayLike, xp: Ops = NP, r: Any = None) -> Any:
    """REX, the reflected exponential: m(z) = (1 - z) / (1/2 + 1/2 (1 - z)) = 2(1 - z) / (2 - z).

    REX paper, section 4.1. Sampled every step.

    >>> float(rex(0.0)), float(rex(0.5)), float(rex(1.0))
    (1.0, 0.6666666666666666, 0.0)
    """
    z = xp.asarray(z)
    return 2.0 * _rest(z, r) / (2.0 - z)


def linear(z: ArrayLike, xp: Ops = NP, r: Any = None) -> Any:
    """Linear decay to zero: m(z) = 1 - z (Li et al. 2020; REX paper section 4.1).

    >>> float(linear(0.0)), float(linear(0.5)), float(linear(1.0))
    (1.0, 0.5, 0.0)
    """
    return _rest(xp.asarray(z), r)


def cosine(z: ArrayLike, xp: Ops = NP, r: Any = None) -> Any:
    """Cosine decay: m(z) = (1 + cos(pi z)) / 2 (Loshchilov & Hutter 2017; REX paper section 4.1).

    Computed as sin^2(pi (1 - z) / 2), the same value without the cancellation of 1 + cos near z = 1.

    >>> float(cosine(0.0)), round(float(cosine(0.5)), 12), float(cosine(1.0))
    (1.0, 0.5, 0.0)
    """
    s = xp.sin(0.5 * math.pi * _rest(xp.asarray(z), r))
    return s * s


def exp(z: ArrayLike, gamma: float = -3.0, xp: Ops = NP, r: Any = None) -> Any:
    """Exponential decay: m(z) = exp(gamma z); the paper tuned gamma = -3 (section 4.1).

    >>> float(exp(0.0)), round(float(exp(0.5)), 6), round(float(exp(1.0)), 6)
    (1.0, 0.22313, 0.049787)
    """
    return xp.exp(float(gamma) * xp.asarray(z))


def step(z: ArrayLike, milestones: Sequence[float] = (0.5, 0.75), factor: float = 0.1, xp: Ops = NP,
         r: Any = None) -> Any:
    """Step decay: m(z) = factor ** (number of milestones <= z). Default "50-75" with factor 0.1 (He et al. 2016).

    Its default sampling rate is its own milestones (the paper's step schedule is this profile sampled at 50-75).
    The levels factor**k are computed once with numpy and selected, so every array library gives the same bits.

    >>> float(step(0.0)), float(step(0.5)), round(float(step(1.0)), 12)
    (1.0, 0.1, 0.01)
    """
    z = xp.asarray(z)
    levels = np.power(float(factor), np.arange(len(milestones) + 1))
    m = xp.where(z >= 0.0, 1.0, 1.0)  # ones shaped like z
    for k, milestone in enumerate(milestones, start=1):  # increasing: the last milestone passed wins
        m = xp.where(z >= float(milestone), float(levels[k]), m)
    return m


def onecycle(
    z: ArrayLike,
    variant: str = "triangle",
    min_ratio: float = 0.1,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    max_momentum: float = 0.95,
    base_momentum: float = 0.85,
    xp: Ops = NP,
    r: Any = None,
) -> Any:
    """OneCycle (Smith 2018). m(0) is NOT 1: the peak is reached mid-cycle.

    ``variant="triangle"`` (default, the REX paper's setting): linear from ``min_ratio`` (0.1) up to 1 over the
    first half, back down to ``min_ratio`` over the second half. The paper's printed formula lost its factors of 2;
    this is the triangle it describes. ``max_momentum``/``base_momentum`` shape :func:`onecycle_momentum`, the
    momentum (SGD) or beta1 (Adam) curve that moves the opposite way. ``variant="torch"``: PyTorch's OneCycleLR
    shape (cosine, warm-up fraction ``pct_start``, start 1/div_factor, end 1/(div_factor*final_div_factor)).

    >>> float(onecycle(0.0)), float(onecycle(0.5)), round(float(onecycle(1.0)), 12)
    (0.1, 1.0, 0.1)
    """
    z = xp.asarray(z)
    rest = _rest(z, r)
    if variant == "triangle":
        up = min_ratio + (1.0 - min_ratio) * 2.0 * z
        down = min_ratio + (1.0 - min_ratio) * 2.0 * rest
        return xp.where(z < 0.5, up, down)
    start, end = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)
    a = xp.clip(z / pct_start, 0.0, 1.0)
    b_rest = xp.clip(rest / (1.0 - pct_start), 0.0, 1.0)  # 1 - b, b the progress through the fall
    up, down = xp.sin(0.5 * math.pi * a), xp.sin(0.5 * math.pi * b_rest)  # (1 -+ cos(pi x)) / 2 = sin^2, cos^2
    rise = start + (1.0 - start) * up * up
    fall = end + (1.0 - end) * down * down
    return xp.where(z < pct_start, rise, fall)


def onecycle_momentum(
    z: ArrayLike,
    variant: str = "triangle",
    max_momentum: float = 0.95,
    base_momentum: float = 0.85,
    pct_start: float = 0.3,
    xp: Ops = NP,
    r: Any = None,
    **_: Any,
) -> Any:
    """OneCycle's momentum (SGD) or beta1 (Adam): moves opposite to the LR, 0.95 -> 0.85 -> 0.95 (Smith 2018).

    >>> float(onecycle_momentum(0.0)), float(onecycle_momentum(0.5)), round(float(onecycle_momentum(1.0)), 12)
    (0.95, 0.85, 0.95)
    """
    z = xp.asarray(z)
    span = max_momentum - base_momentum
    if variant == "triangle":
        return xp.where(z < 0.5, max_momentum - span * 2.0 * z, base_momentum + span * (2.0 * z - 1.0))
    a = xp.clip(z / pct_start, 0.0, 1.0)
    b = xp.clip((z - pct_start) / (1.0 - pct_start), 0.0, 1.0)
    down = max_momentum - span * 0.5 * (1.0 - xp.cos(math.pi * a))
    up = base_momentum + span * 0.5 * (1.0 - xp.cos(math.pi * b))
    return xp.where(z < pct_start, down, up)


def constant(z: ArrayLike, xp: Ops = NP, r: Any = None) -> Any:
    """No decay (the paper's "None"): m(z) = 1.

    >>> float(constant(0.0)), float(constant(0.5)), float(constant(1.0))
    (1.0, 1.0, 1.0)
    """
    z = xp.asarray(z)
    return xp.where(z >= 0.0, 1.0, 1.0)


def delayed_linear(z: ArrayLike, delay: float = 0.5, xp: Ops = NP, r: Any = None) -> Any:
    """Linear decay delayed to a fraction ``delay`` of the run: 1 for z < d, then (1 - z)/(1 - d) (paper Figure 2).

    >>> float(delayed_linear(0.0)), float(delayed_linear(0.5)), float(delayed_linear(0.75)), float(delayed_linear(1.0))
    (1.0, 1.0, 0.5, 0.0)
    """
    z = xp.asarray(z)
    return xp.where(z < delay, 1.0, _rest(z, r) / (1.0 - delay))


# --- neighbouring papers ----------------------------------------------------------------------------------------

def rex_beta(z: ArrayLike, beta: float = 0.5, xp: Ops = NP, r: Any = None) -> Any:
    """Generalised REX: m(z) = (1 - z) / (1 - (1 - beta) z), beta >= 0.

    beta = 0.5 is the paper's REX, beta = 1 is linear, beta = 0 is constant. (Some widely copied ports use
    (1 - z)/(0.1 + 0.9 (1 - z)), which is beta = 0.1, not the paper's REX.)

    >>> float(rex_beta(0.0)), float(rex_beta(0.5)), float(rex_beta(1.0))
    (1.0, 0.6666666666666666, 0.0)
    """
    rest = _rest(xp.asarray(z), r)
    den = beta + (1.0 - beta) * rest  # = 1 - (1 - beta) z, accurate near z = 1 where it is smallest
    safe = xp.where(den == 0.0, 1.0, den)  # beta = 0 at z = 1: 0/0, the constant profile's limit is 1
    return xp.where(den == 0.0, 1.0, rest / safe)


def uba(z: ArrayLike, phi: float = 2.0, xp: Ops = NP, r: Any = None) -> Any:
    """UBA: m(z) = 1 / (1 + (phi/2) tan^2(pi z / 2)), phi > 0; phi = 2 equals cosine exactly.

    Computed as c^2 / (c^2 + phi/2) with c = tan(pi (1 - z) / 2) = 1 / tan(pi z / 2): the same value, exact at
    z = 1 (c = 0) and without the overflow of tan(pi z / 2) there.

    From "Stepsize anything" (NeurIPS 2025). Only the abstract was available to us; this form follows a
    third-party reading of the paper.

    >>> float(uba(0.0)), round(float(uba(0.5)), 12), float(uba(1.0))
    (1.0, 0.5, 0.0)
    """
    c = xp.tan(0.5 * math.pi * xp.clip(_rest(xp.asarray(z), r), 0.0, 1.0))
    c2 = c * c
    return c2 / (c2 + 0.5 * phi)


def wsd(z: ArrayLike, fraction: float = 0.2, cooldown: str = "linear", xp: Ops = NP, r: Any = None) -> Any:
    """Warmup-stable-decay's stable + cooldown part: 1 until 1 - f, then 1 - x (linear) or 1 - sqrt(x) (1-sqrt),
    x = progress through the final fraction f (MiniCPM; Hagele et al. 2024 use f = 0.2; 1-sqrt beats linear).
    Combine with ``warmup_steps`` for the warmup.

    >>> float(wsd(0.0)), round(float(wsd(0.9)), 12), float(wsd(1.0))
    (1.0, 0.5, 0.0)
    """
    rest = _rest(xp.asarray(z), r)
    y = xp.clip(rest / fraction, 0.0, 1.0)  # 1 - x, exactly 0 at z = 1
    if cooldown == "1-sqrt":
        # 1 - sqrt(x) = (1 - x) / (1 + sqrt(x)): no cancellation near x = 1, and x itself computed directly (exact at
        # the start of the cooldown, where sqrt has an infinite slope)
        x = xp.clip((fraction - rest) / fraction, 0.0, 1.0)
        if xp.low_precision:  # a step on the cooldown's start must give x = 0, not sqrt(rounding error) ~ 3e-4
            x = xp.where(x < 8.0 * xp.epsilon(), 0.0, x)
        return y / (1.0 + xp.sqrt(x))
    return y


def polynomial(z: ArrayLike, power: float = 2.0, xp: Ops = NP, r: Any = None) -> Any:
    """Polynomial decay: m(z) = (1 - z)^power.

    >>> float(polynomial(0.0)), float(polynomial(0.5)), float(polynomial(1.0))
    (1.0, 0.25, 0.0)
    """
    return xp.power(xp.clip(_rest(xp.asarray(z), r), 0.0, 1.0), float(power))


def _weighting(weighting: str | None, optimizer: str | None) -> str:
    """``weighting``, or the deprecated name ``optimizer`` (it collides with the adapters' optimizer argument)."""
    if optimizer is not None:
        if weighting is not None:
            raise ValueError(f"refined: give weighting={weighting!r} only; optimizer={optimizer!r} is its old name")
        warnings.warn("refined: the parameter 'optimizer' is renamed 'weighting' (it collided with the adapters' "
                      f"optimizer argument); use weighting={optimizer!r}", DeprecationWarning, stacklevel=3)
        return optimizer
    return "sgd" if weighting is None else weighting


def refined_table(grad_norms: Sequence[float], weighting: str = "sgd", smooth: float = 0.1) -> np.ndarray:
    """The refined schedule's multipliers m_1..m_T from a previous run's gradient norms g_1..g_T.

    Defazio et al., "When, Why and How Much? Adaptive learning rate scheduling by refinement":
    w_t = 1/g_t^2 (``weighting="sgd"``, g = L2 norm) or 1/g_t (``weighting="adam"``, g = L1 norm);
    m_t proportional to w_t * sum_{s>t} w_s, m_T = 0, normalised so max m = 1. The norms are first smoothed by a
    running median over ``smooth`` of the run. Constant norms give exactly linear decay.

    Computed in log space (log m_t = log w_t + logsumexp_{s>t} log w_s, shifted by its maximum before exp), so any
    finite positive norms, 1e-80 or 1e80 included, give finite multipliers in [0, 1].

    >>> [round(float(m), 12) for m in refined_table([1e-80] * 5)]
    [1.0, 0.75, 0.5, 0.25, 0.0]
    """
    try:
        g = np.asarray(grad_norms, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"refined: grad_norms must be a 1-D sequence of finite numbers > 0, got "
                         f"{_short(grad_norms)}") from None
    if g.ndim != 1 or g.size < 2:
        raise ValueError(f"refined: grad_norms must be a 1-D sequence of at least 2 values, got shape {g.shape}")
    if not np.all(np.isfinite(g)) or np.any(g <= 0):
        bad = g[~(np.isfinite(g) & (g > 0))][0]
        raise ValueError(f"refined: grad_norms must be finite and > 0, got {float(bad)!r}")
    if weighting not in ("sgd", "adam"):
        raise ValueError(f"refined: weighting must be one of 'sgd', 'adam', got {weighting!r}")
    width = max(1, int(round(smooth * g.size)))
    if width > 1:
        half = width // 2
        padded = np.pad(g, (half, width - 1 - half), mode="edge")
        g = np.median(np.lib.stride_tricks.sliding_window_view(padded, width), axis=1)
    log_w = -(2.0 if weighting == "sgd" else 1.0) * np.log(g)
    suffix = np.logaddexp.accumulate(log_w[::-1])[::-1]  # log sum_{s>=t} w_s
    log_tail = np.append(suffix[1:], -np.inf)  # log sum_{s>t} w_s; the last step has none: m_T = 0
    log_m = log_w + log_tail
    return np.exp(log_m - log_m.max())


def refined(z: ArrayLike, grad_norms: Sequence[float] = (), weighting: str | None = None, smooth: float = 0.1,
            optimizer: str | None = None, xp: Ops = NP, r: Any = None) -> Any:
    """Refined schedule (see :func:`refined_table`), read at progress z by linear interpolation between the
    previous run's steps (so a new run of any length can use it). ``optimizer`` is the deprecated name of
    ``weighting``.

    >>> float(refined(0.0, [1.0] * 11)), round(float(refined(0.5, [1.0] * 11)), 12), float(refined(1.0, [1.0] * 11))
    (1.0, 0.5, 0.0)
    """
    return _interpolate(refined_table(grad_norms, _weighting(weighting, optimizer), smooth), xp)(z, r)


def _interpolate(table: np.ndarray, xp: Ops) -> Callable[[Any, Any], Any]:
    """Linear interpolation of ``table`` on the knots i/(n-1), in closed form (no search).

    Indexed from the end of the run (by 1 - z), where the values are small and need the relative precision.
    """
    n = table.size
    backwards = xp.const(table[::-1].copy())

    def m(z: Any, r: Any = None) -> Any:
        x = xp.clip(_rest(xp.asarray(z), r), 0.0, 1.0) * (n - 1)  # knots from the end
        i = xp.clip(xp.floor(x), 0.0, n - 2.0)
        frac = x - i
        k = xp.index(i)
        return xp.take(backwards, k) * (1.0 - frac) + xp.take(backwards, k + 1) * frac

    return m


# --- registry -----------------------------------------------------------------------------------------------------

def _grad_norms(v: Any) -> str | None:
    try:
        refined_table(v)
    except (TypeError, ValueError) as e:
        return str(e).replace("refined: ", "")
    return None


@dataclass(frozen=True)
class ProfileSpec:
    """A registered profile: its formula, parameter checks and required parameters."""

    name: str
    fn: Callable[..., Any]
    checks: dict[str, Callable[[Any], str | None]]
    required: tuple[str, ...] = ()


_REGISTRY: dict[str, ProfileSpec] = {}


def _register(name: str, fn: Callable[..., Any], required: tuple[str, ...] = (), **checks: Any) -> None:
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
          weighting=_one_of("weighting", ("sgd", "adam")), optimizer=_one_of("optimizer", ("sgd", "adam")),
          smooth=_in("smooth", 0.0, 1.0, hi_open=True))

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
        raise ValueError(f"profile name must be a string, got {_short(name)}")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in _REGISTRY and key not in METRIC_SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid names: {', '.join(available())}")
    return key


def _parameters(spec: ProfileSpec) -> list[str]:
    return [p for p, par in inspect.signature(spec.fn).parameters.items()
            if p not in ("z", "xp", "r") and par.kind is not inspect.Parameter.VAR_KEYWORD]


def profile_parameters(name: str) -> list[str]:
    """The parameter names profile ``name`` takes (``delay``, which delays any profile's decay, included)."""
    key = canonical_name(name)
    if key in METRIC_SCHEDULES:
        return []
    own = [v for v in _parameters(_REGISTRY[key]) if v != "optimizer"]
    return own if "delay" in own else [*own, "delay"]


def check_params(name: str, params: dict[str, Any]) -> str:
    """Validate ``params`` for profile ``name`` (ValueError naming the parameter); return the canonical name."""
    key = canonical_name(name)
    if key in METRIC_SCHEDULES:
        raise ValueError(
            f"{name!r} is not a profile of progress: it decays on a validation metric. Use budgetsched.Plateau, "
            "or budgetsched.torch.PlateauScheduler (BudgetScheduler(optimizer, 'plateau', ...)) with step(metric)")
    spec = _REGISTRY[key]
    valid = _parameters(spec)
    for p in params:
        if p not in valid:
            allowed = ", ".join(v for v in valid if v != "optimizer") if valid else "none"
            raise ValueError(f"unknown parameter {p!r} for profile {key!r}; its parameters: {allowed}")
    for p in spec.required:
        if p not in params:
            raise ValueError(f"profile {key!r} needs parameter {p!r}")
    for p, v in params.items():
        msg = spec.checks[p](v) if p in spec.checks else None
        if msg:
            raise ValueError(f"profile {key!r}: {msg}")
    return key


def profile_formula(name: str, **params: Any) -> Callable[..., Any]:
    """``f(z, xp, r=None)``: profile ``name`` with ``params`` bound (checked), evaluated with the array operations
    ``xp``; ``r`` is 1 - z when the caller has it more precisely than 1 - z (see :func:`_rest`).

    >>> f = profile_formula("rex")
    >>> f(0.5, PY)
    0.6666666666666666
    """
    key = canonical_name(name)
    if "delay" in params and key not in ("delayed-linear", *METRIC_SCHEDULES):
        params = dict(params)
        delay = params.pop("delay")
        msg = _in("delay", 0.0, 1.0, hi_open=True)(delay)
        if msg:
            raise ValueError(f"profile {key!r}: {msg}")
        return _delayed(profile_formula(name, **params), float(delay))
    key = check_params(name, params)
    if key == "refined":  # the one profile built from data: its table is computed once, here
        table = refined_table(params["grad_norms"], _weighting(params.get("weighting"), params.get("optimizer")),
                              params.get("smooth", 0.1))
        cache: dict[str, Callable[[Any, Any], Any]] = {}

        def interp(z: Any, xp: Ops, r: Any = None) -> Any:
            if xp.name not in cache:
                cache[xp.name] = _interpolate(table, xp)
            return cache[xp.name](z, r)

        return interp
    fn = _REGISTRY[key].fn
    if not params and list(inspect.signature(fn).parameters) == ["z", "xp", "r"]:
        return lambda z, xp, r=None: fn(z, xp, r)  # positional: the per-step path calls this once per step
    return lambda z, xp, r=None: fn(z, xp=xp, r=r, **params)


def _delayed(inner: Callable[..., Any], d: float) -> Callable[..., Any]:
    """Any profile with its decay delayed to a fraction d of the run (REX paper, Figure 2, generalised):
    m_d(z) = 1 for z < d, then m((z - d) / (1 - d)); delayed linear is linear with a delay.

    >>> f = _delayed(profile_formula("rex"), 0.5)
    >>> f(0.25, PY), f(0.5, PY), f(0.75, PY), f(1.0, PY)
    (1.0, 1.0, 0.6666666666666666, 0.0)
    """
    if d == 0.0:
        return inner

    def f(z: Any, xp: Ops, r: Any = None) -> Any:
        z = xp.asarray(z)
        inner_z = xp.maximum(z - d, 0.0) / (1.0 - d)  # clamped: the held part never evaluates the profile outside [0, 1]
        inner_r = xp.minimum(_rest(z, r) / (1.0 - d), 1.0)
        return xp.where(z < d, 1.0, inner(inner_z, xp, inner_r))
    return f


def get_profile(name: str, **params: Any) -> Profile:
    """Return m(z) (numpy) for profile ``name`` with ``params`` bound, after checking every parameter.

    >>> m = get_profile("exp", gamma=-3.0)
    >>> round(float(m(1.0)), 6)
    0.049787
    """
    f = profile_formula(name, **params)
    return lambda z: f(z, NP)


def momentum_formula(name: str, **params: Any) -> Callable[[Any, Ops], Any] | None:
    """``f(z, xp)`` of the momentum/beta1 curve of a profile that has one (only ``onecycle``), else None."""
    if canonical_name(name) != "onecycle":
        return None
    return lambda z, xp, r=None: onecycle_momentum(z, xp=xp, r=r, **params)


def get_momentum(name: str, **params: Any) -> Profile | None:
    """The momentum/beta1 curve (numpy) of a profile that has one (only ``onecycle``), else None."""
    f = momentum_formula(name, **params)
    return None if f is None else (lambda z: f(z, NP))
