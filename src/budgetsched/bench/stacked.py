"""Model containers for the training loop (:func:`budgetsched.bench.train.fit`): K members' parameters as the rows
of one ``[K, N]`` buffer, a per-member loss and gradient for one batch, and a per-member evaluation.

* :class:`SingleModel` - one ``nn.Module`` (K = 1), any architecture (BatchNorm, dropout): the sequential engine.
  Its parameters are views of the buffer's single row.
* :class:`StackedModel` - K copies of a stateless model (``task.batchable``) trained as one. MLPs run as batched
  matmuls, with the first layer of the members that share a seed (hence an input batch) as one wide matmul;
  any other model runs through ``torch.func.vmap(functional_call)``.

Batches arrive per *seed group*: ``xb`` is ``[G, B, ...]`` for the G distinct seeds, and member k reads group
``group[k]`` (members are ordered by seed, so each group is a contiguous range of rows).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from budgetsched.bench.models import MLP

__all__ = ["SingleModel", "StackedModel", "STACKINGS"]

#: Forward implementations for the stacked model; "auto" uses "bmm" where the model allows it.
STACKINGS = ("auto", "bmm", "vmap")
_ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Identity, nn.Softplus)


class SingleModel:
    """One model; ``flat`` is ``[1, N]`` and the module's parameters are views of it."""

    K = 1

    def __init__(self, model: nn.Module, task: Any, device: str | torch.device) -> None:
        self.model, self.task = model.to(device), task
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError(f"the model of task {task.name!r} has no trainable parameters")
        self.flat = torch.cat([p.detach().reshape(-1) for p in self.params]).unsqueeze(0)
        off = 0
        for p in self.params:
            p.data = self.flat[0, off:off + p.numel()].view_as(p)
            off += p.numel()
        self.model.train()

    def loss_and_grad(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss = self.task.loss(self.model(xb[0]), yb[0])
        grads = torch.autograd.grad(loss, self.params)
        return loss.detach().reshape(1), torch.cat([g.reshape(-1) for g in grads]).unsqueeze(0)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        from budgetsched.bench.train import EVAL_BATCH

        self.model.eval()
        loss = metric = torch.zeros((), dtype=torch.float64, device=x.device)
        for s in range(0, len(y), EVAL_BATCH):
            out, yb = self.model(x[s:s + EVAL_BATCH]), y[s:s + EVAL_BATCH]
            loss = loss + self.task.loss(out, yb).double() * len(yb)
            metric = metric + self.task.metric(out, yb).double().sum()
        self.model.train()
        return [float(loss) / len(y)], [float(metric) / len(y)]


class StackedModel:
    """K copies of one architecture as one model: a flat ``[K, N]`` buffer, ``[K, *shape]`` views, one forward.

    Args:
        models: the K members' initial models (same architecture, no buffers updated by ``forward``).
        group: ``group[k]`` = index of member k's seed group; non-decreasing (members ordered by seed).
        task: gives ``loss`` and ``metric``.
        device: where the stacked parameters live.
        stacking: one of :data:`STACKINGS`.
    """

    def __init__(self, models: Sequence[nn.Module], group: Sequence[int], task: Any, device: str | torch.device,
                 stacking: str = "auto") -> None:
        if stacking not in STACKINGS:
            raise ValueError(f"unknown stacking {stacking!r}; choose from {', '.join(STACKINGS)}")
        if list(group) != sorted(group):
            raise ValueError("members must be ordered by seed group")
        named = [dict(m.named_parameters()) for m in models]
        self.names = list(named[0])
        self.K, self.task = len(models), task
        shapes = [named[0][n].shape for n in self.names]
        self.flat = torch.cat([torch.stack([p[n].detach().reshape(-1) for p in named]) for n in self.names],
                              dim=1).to(device)
        self.params: dict[str, torch.Tensor] = {}
        off = 0
        for n, shape in zip(self.names, shapes):
            size = math.prod(shape)
            self.params[n] = self.flat[:, off:off + size].view(self.K, *shape).requires_grad_(True)
            off += size
        self._views = list(self.params.values())
        self.buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in models]).to(device)
                        for n, _ in models[0].named_buffers()}
        self.group = torch.as_tensor(list(group), device=device)
        bounds = [0] + [k for k in range(1, self.K) if group[k] != group[k - 1]] + [self.K]
        self._ranges = list(zip(bounds[:-1], bounds[1:]))  # rows of each seed group
        self.ops = _mlp_ops(models[0]) if stacking in ("auto", "bmm") else None
        if stacking == "bmm" and self.ops is None:
            raise ValueError("stacking 'bmm' needs an MLP (or nn.Sequential of Linear / elementwise / Flatten layers)")
        if self.ops is None:
            base = copy.deepcopy(models[0]).to("meta")
            fn = lambda p, b, x: functional_call(base, (p, b), (x,))  # noqa: E731
            self._vm_stacked = vmap(fn, in_dims=(0, 0, 0))
            self._vm_shared = vmap(fn, in_dims=(0, 0, None))
        self._loss = _member_loss(task.loss)
        self._eval_loss: Callable = vmap(task.loss, in_dims=(0, None))
        self._eval_metric: Callable = vmap(task.metric, in_dims=(0, None))

    # -- forward -----------------------------------------------------------------------------------------------
    def _per_member(self, t: torch.Tensor) -> torch.Tensor:
        """[G, B, ...] per seed group -> [K, B, ...] per member (a view when there is one group)."""
        if len(self._ranges) == 1:
            return t[0].expand(self.K, *t.shape[1:])
        return t.index_select(0, self.group)

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """Outputs [K, B, ...] for inputs x [G, B, ...] per seed group (or [B, ...] shared by all if ``shared``)."""
        if self.ops is None:
            if shared:
                return self._vm_shared(self.params, self.buffers, x)
            if len(self._ranges) == 1:
                return self._vm_shared(self.params, self.buffers, x[0])
            return self._vm_stacked(self.params, self.buffers, self._per_member(x))
        h, first = x, True
        for op, arg in self.ops:
            if op == "linear":
                w, b = self.params[arg + ".weight"], self.params.get(arg + ".bias")
                h = self._first_linear(h, w, b, shared) if first else (
                    torch.bmm(h, w.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2)))
                first = False
            elif op == "flatten":
                h = h.flatten(2) if (first and not shared) or not first else h.flatten(1)
            else:
                h = arg(h)
        return h

    def _first_linear(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, shared: bool) -> torch.Tensor:
        """The first layer of the members of each seed group as one wide matmul of their shared input:
        [B, in] x [in, k*out] -> [k, B, out]."""
        out_f = w.shape[1]
        ranges = [(0, self.K)] if shared else self._ranges
        parts = []
        for g, (lo, hi) in enumerate(ranges):
            xg = x if shared else x[g]
            h = xg @ w[lo:hi].reshape((hi - lo) * out_f, -1).t()  # [B, k*out]
            h = h.view(len(xg), hi - lo, out_f).transpose(0, 1)
            parts.append(h if b is None else h + b[lo:hi].unsqueeze(1))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    # -- the loop's interface -------------------------------------------------------------------------------------
    def loss_and_grad(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        losses = self._loss(self.forward(xb), self._per_member(yb))
        grads = torch.autograd.grad(losses.sum(), self._views)
        return losses.detach(), torch.cat([g.reshape(self.K, -1) for g in grads], dim=1)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        from budgetsched.bench.train import EVAL_BATCH

        loss = metric = torch.zeros(self.K, dtype=torch.float64, device=x.device)
        for s in range(0, len(y), EVAL_BATCH):
            out, yb = self.forward(x[s:s + EVAL_BATCH], shared=True), y[s:s + EVAL_BATCH]
            loss = loss + self._eval_loss(out, yb).double() * len(yb)
            metric = metric + self._eval_metric(out, yb).double().sum(-1)
        n = len(y)
        return [v / n for v in loss.tolist()], [v / n for v in metric.tolist()]


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
    from budgetsched.bench.tasks import cross_entropy

    if loss is not cross_entropy:
        return vmap(loss)

    def flat_ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        per = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")
        return per.view(out.shape[0], -1).mean(1)
    return flat_ce
