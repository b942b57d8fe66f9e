"""Batched engine: K trials of one group (same task, optimizer, budget) trained as one stacked model.

Every member is built exactly as :func:`budgetsched.bench.train.train_trial` builds it (seed, then
``task.make_model()``; its own data order from ``torch.Generator().manual_seed(seed)``), and keeps its own
LR schedule, momentum / beta1, optimizer state and plateau logic, so each member's result equals its sequential
run up to floating-point reduction order. What is shared is the work: one forward, one backward and one
optimizer update per step for all K members.

Layout: the K models' parameters live in one flat ``[K, N]`` buffer; each parameter is a ``[K, *shape]`` view of
it. The optimizer (SGD-momentum or Adam, ``torch.optim`` semantics incl. weight decay and bias correction) runs
as a handful of tensor ops on that buffer with per-member ``[K, 1]`` LR / momentum columns read from tables
precomputed per epoch. ``nn.Sequential`` MLPs run as batched matmuls (``baddbmm``); other models through
``torch.func.vmap(functional_call)``.

A member whose training (or validation) loss is not finite is flagged ``diverged``: its LR becomes 0 and its
parameters and optimizer state are zeroed, so it stays finite and never touches the others.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from budgetsched.bench.grid import TrialConfig, group_key
from budgetsched.bench.models import MLP
from budgetsched.bench.tasks import cross_entropy
from budgetsched.bench.train import (EVAL_BATCH, Placed, Plan, TrialResult, _sync, augment_generator, new_curves,
                                     place, plan_trial)

#: Forward implementations for the stacked model; "auto" uses "bmm" where the model allows it.
STACKINGS = ("auto", "bmm", "vmap")
_ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Identity, nn.Softplus)
_ADAM_BETA2, _ADAM_EPS, _SGD_MOMENTUM, _ADAM_BETA1 = 0.999, 1e-8, 0.9, 0.9


def supports(task: Any) -> bool:
    """True if the task's model can be stacked (no BatchNorm / dropout state): ``task.batchable``."""
    return bool(getattr(task, "batchable", False))


def train_group(configs: Iterable[TrialConfig], task: Any, data: Any, device: str | torch.device = "cpu",
                chunk_size: int = 64, *, stacking: str = "auto") -> Iterator[tuple[TrialConfig, TrialResult]]:
    """Train trials of one group together; yield ``(config, result)`` per trial as each chunk finishes.

    Args:
        configs: trials sharing ``grid.group_key`` (task, optimizer, budget).
        task, data: the task and its data (as for ``train_trial``).
        device: where the stacked model and the data live.
        chunk_size: models trained at once (bounds memory); results of a chunk are yielded when it finishes.
        stacking: forward implementation, one of ``STACKINGS`` (results agree; speed differs).

    Raises:
        ValueError: (at call time, before any training) the configs do not share one group, are for another task,
            the task is not batchable, or chunk_size / stacking is invalid.
    """
    configs = list(configs)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if stacking not in STACKINGS:
        raise ValueError(f"unknown stacking {stacking!r}; choose from {', '.join(STACKINGS)}")
    if not supports(task):
        raise ValueError(f"task {task.name!r} is not batchable (its model has per-batch state); "
                         "use the sequential engine")
    keys = sorted({group_key(c) for c in configs}, key=str)
    if len(keys) > 1:
        raise ValueError(f"configs must share one (task, optimizer, budget) group, got {len(keys)}: {keys}")
    if configs and configs[0].task != task.name:
        raise ValueError(f"configs are for task {configs[0].task!r} but the task given is {task.name!r}")
    return _run(configs, task, data, device, chunk_size, stacking)


def _run(configs: list[TrialConfig], task: Any, data: Any, device: str | torch.device, chunk_size: int,
         stacking: str) -> Iterator[tuple[TrialConfig, TrialResult]]:
    placed: dict[torch.dtype, Placed] = {}  # data moved to the device once per dtype
    for s in range(0, len(configs), chunk_size):
        chunk = configs[s:s + chunk_size]
        yield from zip(chunk, _train_chunk(chunk, task, data, device, placed, stacking))


class _Stack:
    """K models as one: a flat [K, N] parameter buffer, [K, *shape] views, and a batched forward."""

    def __init__(self, models: list[nn.Module], device: str | torch.device, stacking: str) -> None:
        named = [dict(m.named_parameters()) for m in models]
        self.names = list(named[0])
        self.K = len(models)
        shapes = [named[0][n].shape for n in self.names]
        self.flat = torch.cat([torch.stack([p[n].detach().reshape(-1) for p in named]) for n in self.names],
                              dim=1).to(device)
        self.params: dict[str, torch.Tensor] = {}
        off = 0
        for n, shape in zip(self.names, shapes):
            size = math.prod(shape)
            self.params[n] = self.flat[:, off:off + size].view(self.K, *shape).requires_grad_(True)
            off += size
        self.buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in models]).to(device)
                        for n, _ in models[0].named_buffers()}
        self.ops = _mlp_ops(models[0]) if stacking in ("auto", "bmm") else None
        if stacking == "bmm" and self.ops is None:
            raise ValueError("stacking 'bmm' needs an MLP (or nn.Sequential of Linear / elementwise / Flatten layers)")
        if self.ops is None:
            base = copy.deepcopy(models[0]).to("meta")
            fn = lambda p, b, x: functional_call(base, (p, b), (x,))  # noqa: E731
            self._vm_stacked = vmap(fn, in_dims=(0, 0, 0))
            self._vm_shared = vmap(fn, in_dims=(0, 0, None))

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """Outputs [K, B, ...] for inputs x [K, B, ...] (or [B, ...] shared by all members if ``shared``)."""
        if self.ops is None:
            return (self._vm_shared if shared else self._vm_stacked)(self.params, self.buffers, x)
        h, stacked = x, not shared
        for op, arg in self.ops:
            if op == "linear":
                w, b = self.params[arg + ".weight"], self.params.get(arg + ".bias")
                if stacked:
                    h = torch.bmm(h, w.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), h,
                                                                                        w.transpose(1, 2))
                else:  # first layer of an evaluation pass: one input for all members
                    h = torch.matmul(h, w.transpose(1, 2))
                    h = h if b is None else h + b.unsqueeze(1)
                    stacked = True
            elif op == "flatten":
                h = h.flatten(2) if stacked else h.flatten(1)
            else:
                h = arg(h)
        return h if stacked else h.expand(self.K, *h.shape)


def _mlp_ops(model: nn.Module) -> list[tuple[str, Any]] | None:
    """The layers of an MLP (the project's ``MLP`` or an ``nn.Sequential`` of Linear / elementwise / Flatten
    layers) as (op, arg) pairs, or None if the model is anything else."""
    if any(True for _ in model.buffers()):
        return None
    if type(model) is MLP:
        ops: list[tuple[str, Any]] = [("flatten", None)]
        for i in range(len(model.layers)):
            ops += [("linear", f"layers.{i}")] + ([("fn", torch.relu)] if i < len(model.layers) - 1 else [])
        return ops
    if not isinstance(model, nn.Sequential):
        return None
    ops = []
    for name, m in model.named_children():
        if isinstance(m, nn.Linear):
            ops.append(("linear", name))
        elif isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
            ops.append(("flatten", None))
        elif isinstance(m, _ELEMENTWISE):
            ops.append(("fn", m))
        else:
            return None
    return ops


def _member_loss(loss: Callable) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-member mean loss [K] of outputs [K, B, ...] and targets [K, B, ...]: the task's loss under vmap, or for
    the tasks' cross-entropy one flat call (same value, no vmap overhead in the hot loop)."""
    if loss is not cross_entropy:
        return vmap(loss)

    def flat_ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        per = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")
        return per.view(out.shape[0], -1).mean(1)
    return flat_ce


def _tables(plans: list[Plan], optimizer: str, epoch: int, scale: np.ndarray, alive: np.ndarray,
            device: str | torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Per-step [steps_per_epoch, K, 1] columns for one epoch.

    sgdm: (-lr, momentum). adam: (-lr / (1 - beta1^t), 1 - beta1) plus sqrt(1 - beta2^t) per step, computed in
    float64 exactly as torch.optim computes its Python-float step sizes.
    """
    spe = plans[0].steps_per_epoch
    t = np.arange(epoch * spe, (epoch + 1) * spe)
    lr = np.stack([p.lrs[t] for p in plans], axis=1) * (scale * alive)[None, :]
    default = _SGD_MOMENTUM if optimizer == "sgdm" else _ADAM_BETA1
    mom = np.stack([p.momenta[t] if p.momenta is not None else np.full(spe, default) for p in plans], axis=1)
    step = (t + 1.0)[:, None]
    if optimizer == "sgdm":
        a, b, c = -lr, mom, [0.0] * spe
    else:
        a, b, c = -lr / (1.0 - mom ** step), 1.0 - mom, [math.sqrt(1.0 - _ADAM_BETA2 ** s) for s in t + 1.0]
    col = lambda v: torch.as_tensor(v, dtype=dtype).unsqueeze(-1).to(device)  # noqa: E731
    return col(a), col(b), c


def _train_chunk(chunk: list[TrialConfig], task: Any, data: Any, device: str | torch.device,
                 placed: dict[torch.dtype, Placed], stacking: str) -> list[TrialResult]:
    t0 = time.perf_counter()
    out: list[TrialResult | None] = [None] * len(chunk)
    n, bs = len(data.train_y), task.batch_size
    members, plans, models = [], [], []
    for i, c in enumerate(chunk):  # a member whose setup fails is reported failed; the rest train on
        try:
            plan = plan_trial(c, task.max_epochs, bs, n)
            torch.manual_seed(c.seed)
            model = task.make_model()
        except Exception as e:
            out[i] = TrialResult("failed", None, None, None, None, new_curves(), 0, 0.0, f"{type(e).__name__}: {e}")
            continue
        members.append(i)
        plans.append(plan)
        models.append(model)
    K = len(members)
    curves = [new_curves() for _ in range(K)]
    status = ["done"] * K
    steps = np.zeros(K, dtype=np.int64)
    final: list[tuple[float, ...] | None] = [None] * K
    try:
        if K:
            _train_members([chunk[i] for i in members], plans, models, task, data, device, placed, stacking,
                           curves, status, steps, final)
        error = None
    except Exception as e:  # the whole chunk failed (e.g. out of memory): report it per member
        error = f"{type(e).__name__}: {e}"
    _sync(device)
    wall = (time.perf_counter() - t0) / max(K, 1)
    for k, i in enumerate(members):
        if error is not None:
            out[i] = TrialResult("failed", None, None, None, None, curves[k], int(steps[k]), wall, error)
        else:
            metrics = final[k] if status[k] == "done" else (None,) * 4
            out[i] = TrialResult(status[k], *metrics, curves=curves[k], steps=int(steps[k]), wall_time=wall)
    return out  # type: ignore[return-value]


def _train_members(configs: list[TrialConfig], plans: list[Plan], models: list[nn.Module], task: Any, data: Any,
                   device: str | torch.device, placed: dict[torch.dtype, Placed], stacking: str,
                   curves: list[dict[str, list[float]]], status: list[str], steps: np.ndarray,
                   final: list[tuple[float, ...] | None]) -> None:
    K, optimizer, bs = len(configs), configs[0].optimizer, task.batch_size
    stack = _Stack(models, device, stacking)
    del models
    dtype = stack.flat.dtype
    if dtype not in placed:
        placed[dtype] = place(data, device, dtype)
    d = placed[dtype]
    n, epochs, spe = len(d.train_y), plans[0].epochs, plans[0].steps_per_epoch
    loss_fn = _member_loss(task.loss)
    orders = [torch.Generator().manual_seed(c.seed) for c in configs]
    aug = getattr(task, "augment", None)
    aug_gens = [augment_generator(c.seed, device) for c in configs] if aug is not None else None
    wd = float(task.weight_decay)
    flat, views = stack.flat, list(stack.params.values())
    state = [torch.zeros_like(flat)] + ([torch.zeros_like(flat)] if optimizer == "adam" else [])
    alive = np.ones(K, dtype=bool)
    scale = np.ones(K)

    def zero(ks: np.ndarray) -> None:
        """Zero diverged members' parameters and optimizer state so they stay finite and inert (their LR is 0)."""
        rows = torch.as_tensor(ks, device=device)
        with torch.no_grad():
            for t in (flat, *state):
                t[rows] = 0.0

    for epoch in range(epochs):
        col_a, col_b, bc2 = _tables(plans, optimizer, epoch, scale, alive, device, dtype)
        perms = torch.stack([torch.randperm(n, generator=g) for g in orders]).to(device)
        loss_sum = torch.zeros(K, device=device, dtype=torch.float64)
        for i in range(spe):
            idx = perms[:, i * bs:(i + 1) * bs]
            xb, yb = d.train_x[idx], d.train_y[idx]
            if aug is not None:
                xb = torch.stack([aug(xb[k], aug_gens[k]) for k in range(K)])
            losses = loss_fn(stack.forward(xb), yb)
            finite = torch.isfinite(losses)
            dead = None
            if not bool(finite.all()):  # newly diverged members (earlier ones are zeroed and stay finite)
                dead = np.flatnonzero(~finite.cpu().numpy())
                alive[dead] = False
                for k in dead:
                    status[k] = "diverged"
                losses = torch.where(finite, losses, torch.zeros_like(losses))
                col_a[:, dead] = 0.0
            grads = torch.autograd.grad(losses.sum(), views)
            with torch.no_grad():
                g = torch.cat([gr.reshape(K, -1) for gr in grads], dim=1)
                if wd:
                    g.add_(flat, alpha=wd)
                if optimizer == "sgdm":  # torch.optim.SGD: buf = m*buf + g; p -= lr*buf
                    state[0].mul_(col_b[i]).add_(g)
                    flat.addcmul_(state[0], col_a[i])
                else:  # torch.optim.Adam (L2 weight decay, bias-corrected)
                    m, v = state
                    m.lerp_(g, col_b[i])
                    v.mul_(_ADAM_BETA2).addcmul_(g, g, value=1.0 - _ADAM_BETA2)
                    denom = (v.sqrt() / bc2[i]).add_(_ADAM_EPS)
                    flat.addcdiv_(m * col_a[i], denom)
            if dead is not None:
                zero(dead)
            steps[alive] += 1
            loss_sum += losses.detach()
        val_loss, val_metric = _evaluate(stack, task, d.val_x, d.val_y)
        train_loss = (loss_sum / spe).tolist()
        t_last = (epoch + 1) * spe - 1
        for k in np.flatnonzero(alive):
            lr = float(plans[k].lrs[t_last]) * scale[k]
            for key, v in zip(curves[k], (epoch + 1, train_loss[k], val_loss[k], val_metric[k], lr)):
                curves[k][key].append(v)
            if not math.isfinite(val_loss[k]):
                alive[k], status[k] = False, "diverged"
                zero(np.array([k]))
            elif plans[k].plateau is not None:
                scale[k] = plans[k].plateau.update(val_loss[k])
    test_loss, test_metric = _evaluate(stack, task, d.test_x, d.test_y)
    for k in np.flatnonzero(alive):
        final[k] = (val_loss[k], val_metric[k], test_loss[k], test_metric[k])


@torch.no_grad()
def _evaluate(stack: _Stack, task: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-member mean loss and mean per-example metric (batched over members, EVAL_BATCH examples at a time)."""
    loss_fn: Callable = vmap(task.loss, in_dims=(0, None))
    metric_fn: Callable = vmap(task.metric, in_dims=(0, None))
    loss = metric = 0.0
    for s in range(0, len(y), EVAL_BATCH):
        out, yb = stack.forward(x[s:s + EVAL_BATCH], shared=True), y[s:s + EVAL_BATCH]
        loss = loss + loss_fn(out, yb) * len(yb)
        metric = metric + metric_fn(out, yb).sum(-1)
    n = len(y)
    return [v / n for v in loss.tolist()], [v / n for v in metric.tolist()]
