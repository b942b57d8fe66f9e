"""Model containers for the training loop (:func:`budgetsched.bench.engines.train.fit`): K members' parameters as the rows
of one ``[K, N]`` buffer, a per-member loss and gradient for one batch, and a per-member evaluation.

* :class:`SingleModel` - one ``nn.Module`` (K = 1), any architecture (BatchNorm, dropout): the sequential engine.
  Its parameters are views of the buffer's single row.
* :class:`StackedModel` - K copies of a stateless model (``task.batchable``) trained as one. MLPs and 1-D CNNs run
  through the hand-written kernel :class:`budgetsched.bench.engines.kernels.StackedNet` (batched matmuls in a feature-major
  layout, convolutions as im2col + batched matmul, no autograd), the project's ``CharTransformer`` and ``VAE``
  through hand-stacked forwards (:class:`budgetsched.bench.engines.kernels.StackedTransformer`, ``StackedVAE``) and
  autograd; any other model runs through ``torch.func.vmap(functional_call)`` and autograd.

Batches arrive per *seed group*: ``xb`` is ``[G, B, ...]`` for the G distinct seeds, and member k reads group
``group[k]`` (members are ordered by seed, so each group is a contiguous range of rows).
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from budgetsched.bench.engines.kernels.losses import CROSS_ENTROPY, kind_of
from budgetsched.bench.engines.kernels import (StackedNet, StackedTransformer, StackedVAE, stack_layers, transformer_spec,
                                       vae_spec)

__all__ = ["SingleModel", "StackedModel", "STACKINGS", "EVAL_BATCH", "check_stacking"]

#: Examples per evaluation forward pass: large for speed; both containers split the same way so the sums agree.
EVAL_BATCH = 1000

#: Implementations of the stacked model: "bmm" is the hand-written kernel for MLPs only, "vmap" works for any
#: stateless model, "auto" picks the fastest one the model allows (the kernel for MLPs and 1-D CNNs, see
#: :func:`budgetsched.bench.engines.kernels.stack_layers`; the hand-stacked transformer and VAE). Results agree up to
#: floating-point reduction order.
STACKINGS = ("auto", "bmm", "vmap")


def check_stacking(stacking: str) -> None:
    """``stacking`` is one of :data:`STACKINGS` (ValueError naming it): checked by :class:`StackedModel` and, before
    any chunk trains, by :func:`budgetsched.bench.engines.batched.train_group`."""
    if stacking not in STACKINGS:
        raise ValueError(f"unknown stacking {stacking!r}; choose from {', '.join(STACKINGS)}")


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

        self.model.eval()
        loss = metric = torch.zeros((), dtype=torch.float64, device=x.device)
        for s in range(0, len(y), EVAL_BATCH):
            out, yb = self.model(x[s:s + EVAL_BATCH]), y[s:s + EVAL_BATCH]
            loss = loss + self.task.loss(out, yb).double() * len(yb)
            metric = metric + self.task.metric(out, yb).double().sum()
        self.model.train()
        return [float(loss) / len(y)], [float(metric) / len(y)]


class StackedModel:
    """K copies of one architecture as one model: a flat ``[K, N]`` buffer, ``[K, *shape]`` views, one step.

    Args:
        models: the K members' initial models (same architecture, no buffers updated by ``forward``).
        group: ``group[k]`` = index of member k's seed group; non-decreasing (members ordered by seed).
        task: gives ``loss`` and ``metric``.
        device: where the stacked parameters live.
        stacking: one of :data:`STACKINGS`.
        compute_dtype: opt-in reduced precision for the products and activations, e.g. ``torch.bfloat16`` (or
            "bfloat16"): parameters, gradients, losses and the optimizer stay in the parameters' dtype. Default: the
            environment variable ``BUDGETSCHED_MATMUL_DTYPE`` if set, else none (exact: the parameters' dtype).
            Results then differ from the sequential engine's beyond rounding; see docs/benchmarks.md.
    """

    def __init__(self, models: Sequence[nn.Module], group: Sequence[int], task: Any, device: str | torch.device,
                 stacking: str = "auto", compute_dtype: torch.dtype | str | None = None) -> None:
        compute_dtype = _compute_dtype(compute_dtype)
        check_stacking(stacking)
        if list(group) != sorted(group):
            raise ValueError("members must be ordered by seed group")
        net = stack_layers(models[0]) if stacking in ("auto", "bmm") else None
        if stacking == "bmm" and (net is None or any(spec.kind != "linear" for spec in net[1])):
            raise ValueError("stacking 'bmm' needs an MLP (or nn.Sequential of Linear / elementwise / Flatten layers)")
        named = [dict(m.named_parameters()) for m in models]
        self.names = list(named[0])
        self.K, self.task = len(models), task
        shapes = [named[0][n].shape for n in self.names]
        self.flat = torch.cat([torch.stack([p[n].detach().reshape(-1) for p in named]) for n in self.names],
                              dim=1).to(device)
        self.params = self._views(self.flat, shapes)
        self.group = torch.as_tensor(list(group), device=device)
        bounds = [0] + [k for k in range(1, self.K) if group[k] != group[k - 1]] + [self.K]
        self._ranges = list(zip(bounds[:-1], bounds[1:]))  # rows of each seed group
        other = None
        if stacking == "auto" and net is None:
            for spec_of, cls in ((transformer_spec, StackedTransformer), (vae_spec, StackedVAE)):
                spec = spec_of(models[0])
                if spec is not None:
                    other = (cls, spec)
                    break
        if net is not None or other is not None:
            self.kernel = True
            self.grad = torch.zeros_like(self.flat)
            grads = self._views(self.grad, shapes)
            self._impl: Any = (
                StackedNet(*net, self.params, grads, self._ranges, task.loss, task.metric,
                           compute_dtype=compute_dtype) if net is not None else
                other[0](other[1], self.params, grads, self._ranges, task.loss, task.metric))  # type: ignore[index]
        else:
            self.kernel = False
            buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in models]).to(device)
                       for n, _ in models[0].named_buffers()}
            self._impl = _VmapImpl(models[0], self.params, buffers, self.group, self._ranges, task)
        # products in reduced precision: natively in StackedNet, through autocast elsewhere
        self.compute_dtype = compute_dtype
        self._autocast = compute_dtype is not None and not isinstance(self._impl, StackedNet)

    def _views(self, flat: torch.Tensor, shapes: Sequence[torch.Size]) -> dict[str, torch.Tensor]:
        out, off = {}, 0
        for n, shape in zip(self.names, shapes):
            size = math.prod(shape)
            out[n] = flat[:, off:off + size].view(self.K, *shape)
            off += size
        return out

    def _context(self) -> Any:
        if self._autocast:
            return torch.autocast(self.flat.device.type, dtype=self.compute_dtype)
        return contextlib.nullcontext()

    # -- the loop's interface -------------------------------------------------------------------------------------
    def loss_and_grad(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._context():
            if self.kernel:
                return self._impl.loss_and_grad(xb, yb), self.grad
            losses, grad = self._impl.loss_and_grad(xb, yb)
        return losses.to(self.flat.dtype), grad.to(self.flat.dtype)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:

        loss = metric = torch.zeros(self.K, dtype=torch.float64, device=x.device)
        for s in range(0, len(y), EVAL_BATCH):
            with self._context():
                l_, m_ = self._impl.evaluate(x[s:s + EVAL_BATCH], y[s:s + EVAL_BATCH])
            loss, metric = loss + l_, metric + m_
        n = len(y)
        return [v / n for v in loss.tolist()], [v / n for v in metric.tolist()]


def _compute_dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    """The opt-in reduced compute dtype: ``value``, else ``$BUDGETSCHED_MATMUL_DTYPE``, else None (exact)."""
    if value is None:
        value = os.environ.get("BUDGETSCHED_MATMUL_DTYPE") or None
    if value is None or isinstance(value, torch.dtype):
        return value
    dtype = getattr(torch, str(value), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"unknown compute dtype {value!r}; e.g. bfloat16")
    return dtype


class _VmapImpl:
    """Any stateless model through ``torch.func.vmap(functional_call)`` and autograd."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                 group: torch.Tensor, ranges: list[tuple[int, int]], task: Any) -> None:
        self.params = {n: p.requires_grad_(True) for n, p in params.items()}
        self._views = list(self.params.values())
        self.buffers, self.group, self._ranges = buffers, group, ranges
        self.K = group.numel()
        base = copy.deepcopy(model).to("meta")
        fn = lambda p, b, x: functional_call(base, (p, b), (x,))  # noqa: E731
        self._vm_stacked = vmap(fn, in_dims=(0, 0, 0))
        self._vm_shared = vmap(fn, in_dims=(0, 0, None))
        self._loss = _member_loss(task.loss)
        self._eval_loss: Callable = vmap(task.loss, in_dims=(0, None))
        self._eval_metric: Callable = vmap(task.metric, in_dims=(0, None))

    def _per_member(self, t: torch.Tensor) -> torch.Tensor:
        """[G, B, ...] per seed group -> [K, B, ...] per member (a view when there is one group)."""
        if len(self._ranges) == 1:
            return t[0].expand(self.K, *t.shape[1:])
        return t.index_select(0, self.group)

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """Outputs [K, B, ...] for inputs x [G, B, ...] per seed group (or [B, ...] shared by all if ``shared``)."""
        if shared:
            return self._vm_shared(self.params, self.buffers, x)
        if len(self._ranges) == 1:
            return self._vm_shared(self.params, self.buffers, x[0])
        return self._vm_stacked(self.params, self.buffers, self._per_member(x))

    def loss_and_grad(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        losses = self._loss(self.forward(xb), self._per_member(yb))
        grads = torch.autograd.grad(losses.sum(), self._views)
        return losses.detach(), torch.cat([g.reshape(self.K, -1) for g in grads], dim=1)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.forward(x, shared=True)
        return self._eval_loss(out, y).double() * len(y), self._eval_metric(out, y).double().sum(-1)


def _member_loss(loss: Callable) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-member mean loss [K] of outputs [K, B, ...] and targets [K, B, ...]: the task's loss under vmap, or for
    a loss declared softmax cross-entropy (``kind == "cross_entropy"``) one flat call (same value, no vmap overhead
    in the hot loop)."""
    if kind_of(loss) != CROSS_ENTROPY:
        return vmap(loss)

    def flat_ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        per = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")
        return per.view(out.shape[0], -1).mean(1)
    return flat_ce
