"""The optimizers of the REX paper's protocol, specified once: name -> hyper-parameters -> update rule.

Both training engines (one model at a time, and K models stacked in one ``[K, N]`` parameter buffer) update
parameters with :meth:`OptimizerSpec.update`; its per-step hyper-parameters come from :meth:`OptimizerSpec.columns`.
The rule is ``torch.optim``'s, written for a flat buffer with one LR (and one momentum / beta1) per row:

* ``sgdm`` - ``torch.optim.SGD(momentum=0.9)`` (REX paper, section 5: "SGD with momentum (beta = 0.9)"):
  ``g = grad + wd * p;  buf = mu_t * buf + g;  p = p - lr_t * buf``.
* ``adam`` - ``torch.optim.Adam(betas=(0.9, 0.999), eps=1e-8)`` with L2 weight decay (coupled: the decay term
  enters the moments):
  ``g = grad + wd * p;  m = b1_t m + (1 - b1_t) g;  v = b2 v + (1 - b2) g^2;
  p = p - lr_t / (1 - b1_t^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
* ``adamw`` - ``torch.optim.AdamW(betas=(0.9, 0.999), eps=1e-8)``, the same coefficient ``wd`` decoupled from the
  gradient (Loshchilov & Hutter 2019, as torch applies it: the decay scaled by the scheduled LR, before the Adam step):
  ``p = p - lr_t * wd * p;  g = grad;`` then ``adam``'s moments and step.

``mu_t`` / ``b1_t`` is the schedule's momentum when it has one (``onecycle``), else the constant above, exactly as
a scheduler writing ``group["momentum"]`` / ``group["betas"]`` before each ``torch.optim`` step would. The tests
check :meth:`update` against ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` step by step, weight decay and momentum changes
included, so the engines never need ``torch.optim`` themselves; :meth:`torch_optimizer` builds the equivalent
``torch.optim`` object for users' own loops and for that test.
"""
from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, NamedTuple

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used, so the grid (and `budgetsched report`) never loads it
    import torch

__all__ = ["OptimizerSpec", "StepColumns", "OPTIMIZERS", "get_optimizer", "optimizer_for", "ScheduleFreeSpec",
           "ScheduleFreeColumns", "schedule_free_spec"]


class StepColumns(NamedTuple):
    """Per-step hyper-parameters of one epoch for K members: ``a``, ``b`` are ``[S, K, 1]`` tensors, ``c`` is
    ``[S]`` Python floats (shared by every member). Their meaning is the optimizer's (see ``columns``). ``lr`` is
    the ``[S, K, 1]`` LR itself, for decoupled weight decay (``adamw``), else None."""

    a: torch.Tensor
    b: torch.Tensor
    c: list[float]
    lr: torch.Tensor | None = None


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer of the protocol. ``momentum`` is SGD's momentum or Adam's beta1 (the value used when the
    schedule has no momentum curve of its own)."""

    name: str
    momentum: float
    beta2: float | None = None
    eps: float = 0.0
    decoupled_weight_decay: bool = False  # AdamW: p <- p (1 - lr_t wd) instead of g <- g + wd p

    @property
    def n_state(self) -> int:
        """Buffers of optimizer state per parameter: SGD's momentum buffer; Adam's (and AdamW's) two moments."""
        return 1 if self.name == "sgdm" else 2

    def init_state(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Zeroed optimizer state shaped like the ``[K, N]`` parameter buffer."""
        import torch

        return [torch.zeros_like(flat) for _ in range(self.n_state)]

    def columns(self, lrs: np.ndarray, momenta: np.ndarray | None, steps: np.ndarray, device: torch.device | str,
                dtype: torch.dtype) -> StepColumns:
        """Hyper-parameter columns for steps ``steps`` (0-based global step indices, length S).

        Args:
            lrs: ``[S, K]`` learning rates (schedule x plateau scale x alive mask).
            momenta: ``[S, K]`` momentum / beta1 per step and member, or None for the constant.
            steps, device, dtype: where and in which precision the columns are used.

        sgdm: ``a = -lr``, ``b = mu``. adam, adamw: ``a = -lr / (1 - b1^t)``, ``b = 1 - b1``,
        ``c = sqrt(1 - b2^t)``, with t = step + 1, computed in float64 as ``torch.optim`` computes its Python-float
        step sizes; adamw also ``lr`` (its decay factor ``1 - lr wd`` is formed in :meth:`update`).
        """
        import torch

        mom = np.full_like(lrs, self.momentum) if momenta is None else momenta
        t = (np.asarray(steps, dtype=np.float64) + 1.0)[:, None]
        if self.name == "sgdm":
            a, b, c = -lrs, mom, [0.0] * len(steps)
        else:
            a, b = -lrs / (1.0 - mom ** t), 1.0 - mom
            c = [math.sqrt(1.0 - self.beta2 ** s) for s in t[:, 0]]  # type: ignore[operator]
        col = lambda v: torch.as_tensor(np.ascontiguousarray(v), dtype=dtype).unsqueeze(-1).to(device)  # noqa: E731
        return StepColumns(col(a), col(b), c, col(lrs) if self.decoupled_weight_decay else None)

    def update(self, flat: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor], cols: StepColumns, i: int,
               weight_decay: float = 0.0) -> None:
        """One optimizer step of every member (row) of ``flat`` in place, with step ``i`` of ``cols``.

        ``grad`` is overwritten (it serves as scratch space). Call it under ``torch.no_grad()``. Every pass writes
        into an existing buffer: a fresh ``[K, N]`` temporary per step costs more than the arithmetic on a CPU
        (its pages are faulted in anew each time).
        """
        import torch

        if weight_decay and self.decoupled_weight_decay:
            # torch.optim.AdamW: p *= 1 - lr_t wd, before the step ((-lr) wd + 1 rounds as torch's 1 - lr wd)
            flat.mul_(torch.mul(cols.lr[i], -weight_decay).add_(1.0))  # type: ignore[index]
        elif weight_decay:
            grad.add_(flat, alpha=weight_decay)  # L2: the decay term joins the gradient (and Adam's moments)
        if self.name == "sgdm":
            buf = state[0]
            torch.addcmul(grad, buf, cols.b[i], out=buf)  # buf = mu * buf + g, one pass
            flat.addcmul_(buf, cols.a[i])
        else:
            m, v = state
            m.lerp_(grad, cols.b[i])
            v.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)  # type: ignore[operator]
            denom = torch.sqrt(v, out=grad).div_(cols.c[i]).add_(self.eps)  # the gradient is no longer needed
            flat.addcdiv_(torch.mul(m, cols.a[i], out=_scratch(flat)), denom)

    @contextlib.contextmanager
    def evaluating(self, flat: torch.Tensor, state: list[torch.Tensor]) -> Iterator[None]:
        """The parameters to evaluate, in ``flat`` while the block runs: the iterates themselves (schedule-free
        specs swap in their average, :class:`budgetsched.bench.engines.schedulefree.ScheduleFreeSpec`)."""
        yield

    def torch_optimizer(self, params: Iterable[torch.nn.Parameter], lr: float,
                        weight_decay: float = 0.0) -> torch.optim.Optimizer:
        """The equivalent ``torch.optim`` optimizer (for a user's own loop, and the equivalence test)."""
        import torch

        if self.name == "sgdm":
            return torch.optim.SGD(params, lr=lr, momentum=self.momentum, weight_decay=weight_decay)
        adam = torch.optim.AdamW if self.decoupled_weight_decay else torch.optim.Adam
        return adam(params, lr=lr, betas=(self.momentum, self.beta2), eps=self.eps,  # type: ignore[arg-type]
                    weight_decay=weight_decay)


_SCRATCH = threading.local()


def _scratch(like: torch.Tensor) -> torch.Tensor:
    """A scratch tensor shaped like ``like``, kept between calls (one per thread)."""
    import torch

    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.shape != like.shape or buf.dtype != like.dtype or buf.device != like.device:
        buf = _SCRATCH.buf = torch.empty_like(like)
    return buf


#: The protocol's optimizers by name.
OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgdm": OptimizerSpec("sgdm", momentum=0.9),
    "adam": OptimizerSpec("adam", momentum=0.9, beta2=0.999, eps=1e-8),
    "adamw": OptimizerSpec("adamw", momentum=0.9, beta2=0.999, eps=1e-8, decoupled_weight_decay=True),
}


def get_optimizer(name: str) -> OptimizerSpec:
    """The spec of optimizer ``name``; any other name raises ``ValueError`` listing the valid ones."""
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}") from None


class ScheduleFreeColumns(NamedTuple):
    """Per-step hyper-parameters of one epoch of schedule-free training for K members: ``z_step`` (``-lr_t``) and
    ``y_step`` (``lr_t (beta (1 - c_t) - 1)``) are ``[S, K, 1]`` tensors; ``c`` (the averaging weight ``c_t``) and
    ``bc2`` (``1 - beta2^t``) are ``[S]`` Python floats shared by every member."""

    z_step: torch.Tensor
    y_step: torch.Tensor
    c: list[float]
    bc2: list[float]


@dataclass(frozen=True)
class ScheduleFreeSpec:
    """Schedule-free SGD or AdamW (Defazio et al. 2024), written for the flat ``[K, N]`` buffer of the one loop.

    ``flat`` holds the point the gradient is taken at, ``y``; the state holds ``z`` (and AdamW's second moment
    ``v``); the average ``x`` that is evaluated is ``y`` moved towards ``z`` (:meth:`evaluating`). Step t (from 1),
    as the ``schedulefree`` package (``SGDScheduleFree`` / ``AdamWScheduleFree``, ``r = 0``,
    ``weight_lr_power = 2``) computes it:

    * ``lr_t = lr x min(1, t / warmup_steps)``; ``c_t = lr_t^2 / sum_{s <= t} lr_s^2`` (the LR cancels: only the
      warmup shapes it);
    * sgdm: ``g = grad + wd y``; adam and adamw (both AdamWScheduleFree): ``v = beta2 v + (1 - beta2) grad^2``,
      ``g = grad / (sqrt(v / (1 - beta2^t)) + eps) + wd y`` (decoupled decay);
    * ``y = (1 - c_t) y + c_t z + lr_t (beta (1 - c_t) - 1) g``;  ``z = z - lr_t g``;
    * evaluation at ``x = y + (1 - 1/beta)(z - y)``, back to ``y = x + (1 - beta)(z - x)`` after it.
    """

    name: str  # the protocol optimizer it stands for: sgdm, adam or adamw (the last two: one AdamW update)
    momentum: float  # beta (SGD) or beta1 (AdamW)
    warmup_steps: int = 0
    beta2: float | None = None
    eps: float = 0.0

    @property
    def n_state(self) -> int:
        return 1 if self.name == "sgdm" else 2

    def init_state(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``z`` starts at the initial parameters (AdamW's ``v`` at zero)."""
        import torch

        return [flat.detach().clone()] + ([torch.zeros_like(flat)] if self.name != "sgdm" else [])

    def _c(self, steps: np.ndarray) -> list[float]:
        """``c_t`` of each step (t = step + 1): the warmup factors' squares over their running sum (float64)."""
        t = np.arange(1, int(np.max(steps)) + 2, dtype=np.float64)
        f2 = np.minimum(1.0, t / self.warmup_steps) ** 2 if self.warmup_steps else np.ones_like(t)
        return [float(x) for x in (f2 / np.cumsum(f2))[np.asarray(steps)]]

    def columns(self, lrs: np.ndarray, momenta: np.ndarray | None, steps: np.ndarray, device: torch.device | str,
                dtype: torch.dtype) -> ScheduleFreeColumns:
        """Columns for steps ``steps`` from the members' ``[S, K]`` LRs (constant: schedule-free needs no schedule;
        0 for members that stopped). ``momenta`` is unused: beta is the method's own."""
        import torch

        t = np.asarray(steps, dtype=np.float64) + 1.0
        warm = np.minimum(1.0, t / self.warmup_steps) if self.warmup_steps else np.ones_like(t)
        lr = lrs * warm[:, None]
        c = self._c(steps)
        y_step = lr * (self.momentum * (1.0 - np.array(c))[:, None] - 1.0)
        bc2 = [1.0 - self.beta2 ** s for s in t] if self.beta2 is not None else [1.0] * len(t)
        col = lambda v: torch.as_tensor(np.ascontiguousarray(v), dtype=dtype).unsqueeze(-1).to(device)  # noqa: E731
        return ScheduleFreeColumns(col(-lr), col(y_step), c, bc2)

    def update(self, flat: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor], cols: ScheduleFreeColumns,
               i: int, weight_decay: float = 0.0) -> None:
        """One schedule-free step of every member of ``flat`` (= y) in place; ``grad`` is overwritten."""
        z = state[0]
        if self.name != "sgdm":
            v = state[1]
            v.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)  # type: ignore[operator]
            denom = v.div(cols.bc2[i]).sqrt_().add_(self.eps)
            grad.div_(denom)
        if weight_decay:
            grad.add_(flat, alpha=weight_decay)  # at y: SGD's L2 term; AdamW's decoupled decay (after scaling)
        flat.lerp_(z, cols.c[i])
        flat.addcmul_(grad, cols.y_step[i])
        z.addcmul_(grad, cols.z_step[i])

    @contextlib.contextmanager
    def evaluating(self, flat: torch.Tensor, state: list[torch.Tensor]) -> Iterator[None]:
        """``flat`` holds the average ``x`` while the block runs (``optimizer.eval()``), then ``y`` again
        (``optimizer.train()``), with the package's own two interpolations."""
        import torch

        z = state[0]
        with torch.no_grad():
            flat.lerp_(z, 1.0 - 1.0 / self.momentum)
        try:
            yield
        finally:
            with torch.no_grad():
                flat.lerp_(z, 1.0 - self.momentum)

    def torch_optimizer(self, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0) -> Any:
        """The ``schedulefree`` package's optimizer with these settings (for a user's own loop and the test)."""
        try:
            import schedulefree
        except ImportError:
            raise ImportError("schedule-free trials need the schedulefree package: "
                              "pip install 'budgetsched[schedulefree]'") from None
        if self.name == "sgdm":
            return schedulefree.SGDScheduleFree(params, lr=lr, momentum=self.momentum, weight_decay=weight_decay,
                                                warmup_steps=self.warmup_steps)
        return schedulefree.AdamWScheduleFree(params, lr=lr, betas=(self.momentum, self.beta2), eps=self.eps,
                                              weight_decay=weight_decay, warmup_steps=self.warmup_steps)


def schedule_free_spec(optimizer: str, warmup_steps: int = 0) -> ScheduleFreeSpec:
    """The schedule-free counterpart of a protocol optimizer: ``sgdm`` -> SGD with beta 0.9; ``adam`` and ``adamw``
    -> AdamW with betas (0.9, 0.999) and eps 1e-8 (the package's defaults), decoupled decay in both (the method's
    own: against ``adamw`` it is compared at the same decay; against ``adam`` the decay differs, L2 vs decoupled)."""
    base = get_optimizer(optimizer)
    return ScheduleFreeSpec(base.name, base.momentum, int(warmup_steps), base.beta2, base.eps)


def optimizer_for(config: Any) -> OptimizerSpec | ScheduleFreeSpec:
    """The optimizer specification a trial trains with: its protocol optimizer, or for the ``schedule-free``
    pseudo-schedule that optimizer's schedule-free counterpart."""
    from budgetsched.bench.protocol.grid import SCHEDULE_FREE

    if config.schedule == SCHEDULE_FREE:
        return schedule_free_spec(config.optimizer, int(config.params.get("warmup_steps", 0)))
    return get_optimizer(config.optimizer)
