"""Hand-written stacked kernels: forward and backward of K members at once without autograd or ``vmap``.

:class:`StackedMLP` trains K copies of an MLP (``Linear`` layers with elementwise activations between them).
What makes it fast on a CPU, measured on ``mnist1d-mlp`` (K = 32, 2 cores; see docs/benchmarks.md):

* **Feature-major layout.** Activations are ``[K, features, batch]``: every product is ``W @ h`` with both operands
  contiguous (``bmm`` of ``[K, out, in] x [K, in, B]``), the weight gradient ``dz @ h^T`` and the input gradient
  ``W^T @ dz`` use transposed *operands* (free in BLAS), and every elementwise pass (ReLU, its backward, the bias
  sums) runs over contiguous memory. Autograd's row-major layout (``h @ W^T``) made the 10-wide output layer's
  products and the transposed ReLU backward 3-10x slower.
* **Few, large operations.** Each step is about 25 tensor operations for all K members (per tile of members, see
  :data:`TILE_BYTES`), each on preallocated buffers (``out=``), with the gradients written straight into the
  ``[K, N]`` gradient buffer's views: no large temporaries (whose pages a CPU faults in anew every step) and no
  per-member Python work. The views of every tile are built once and cached.
* **The loss gradient in closed form** for the tasks' cross-entropy (``(softmax - onehot) / B``); any other loss
  goes through ``torch.func.vjp`` on the (small) output only.

Every result equals the autograd / ``vmap`` path up to floating-point reduction order (float64 tests in
tests/test_stacked.py and tests/test_batched.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.func import vjp, vmap

__all__ = ["StackedMLP", "mlp_layers", "LinearSpec"]

#: Most bytes of activations (and their gradients) per tile of members; a chunk of K members runs as
#: ceil(K * per-member bytes / TILE_BYTES) tiles of near-equal size. Measured on mnist1d-mlp (1 thread): tiles small
#: enough for L2 were no faster than one tile for K = 32, and cost ~100 us of per-operation overhead each.
TILE_BYTES = 8 << 20


@dataclass(frozen=True)
class LinearSpec:
    """One ``Linear`` layer of an MLP and the elementwise activation that follows it (None: none)."""

    weight: str  # parameter name of the weight [out, in]
    bias: str | None  # parameter name of the bias [out], if any
    n_in: int
    n_out: int
    act: Any  # "relu", "tanh", "sigmoid", a callable (elementwise module or function), or None


_NATIVE = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Identity: None}
_ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Identity, nn.Softplus)


def mlp_layers(model: nn.Module) -> tuple[bool, list[LinearSpec]] | None:
    """``(flatten_input, layers)`` if ``model`` is an MLP this kernel can run, else None.

    Accepted: the project's :class:`budgetsched.bench.models.MLP`, or an ``nn.Sequential`` of an optional leading
    ``Flatten()`` and ``Linear`` layers each followed by at most one elementwise activation, with no buffers.
    """
    from budgetsched.bench.models import MLP

    if any(True for _ in model.buffers()):
        return None
    if type(model) is MLP:
        n = len(model.layers)
        return True, [LinearSpec(f"layers.{i}.weight", f"layers.{i}.bias" if m.bias is not None else None,
                                 m.in_features, m.out_features, "relu" if i < n - 1 else None)
                      for i, m in enumerate(model.layers)]
    if not isinstance(model, nn.Sequential):
        return None
    children = list(model.named_children())
    flatten = bool(children) and isinstance(children[0][1], nn.Flatten)
    if flatten:
        f = children[0][1]
        if (f.start_dim, f.end_dim) != (1, -1):
            return None
        children = children[1:]
    layers: list[LinearSpec] = []
    i = 0
    while i < len(children):
        name, m = children[i]
        if not isinstance(m, nn.Linear):
            return None
        act = None
        if i + 1 < len(children) and isinstance(children[i + 1][1], _ELEMENTWISE):
            a = children[i + 1][1]
            act = _NATIVE.get(type(a), a) if type(a) in _NATIVE else a
            i += 1
        layers.append(LinearSpec(f"{name}.weight", f"{name}.bias" if m.bias is not None else None,
                                 m.in_features, m.out_features, act))
        i += 1
    return (flatten, layers) if layers else None


def _act_forward(act: Any, z: torch.Tensor) -> Callable[[torch.Tensor], Any] | None:
    """Apply ``act`` to ``z`` in place (its output replaces z); return its backward (dh -> dz, in place) or None."""
    if act is None:
        return None
    if act == "relu":
        z.relu_()
        return lambda g: torch.ops.aten.threshold_backward.grad_input(g, z, 0, grad_input=g)
    if act == "tanh":
        z.tanh_()
        return lambda g: torch.ops.aten.tanh_backward.grad_input(g, z, grad_input=g)
    if act == "sigmoid":
        z.sigmoid_()
        return lambda g: torch.ops.aten.sigmoid_backward.grad_input(g, z, grad_input=g)
    out, back = vjp(act, z.clone())
    z.copy_(out)
    return lambda g: g.copy_(back(g)[0])


@dataclass
class _Tile:
    """Members [a, e) of a stacked MLP: views of their parameters and gradients, buffers of their activations."""

    a: int
    e: int
    group: torch.Tensor | None  # seed group of each member, or None when the tile is within one group
    g0: int  # the tile's first group
    W: list[torch.Tensor]  # [t, out, in]
    b: list[torch.Tensor | None]  # [t, out, 1]
    gW: list[torch.Tensor]
    gb: list[torch.Tensor | None]  # [t, out]
    h: list[torch.Tensor]  # activations [t, out, n]
    d: list[torch.Tensor]  # gradients of the hidden activations [t, out, n] (training only)

    def inputs(self, xs: torch.Tensor) -> torch.Tensor:
        """Per-member inputs [t, n, in] of per-group inputs xs [G, n, in] (a view when the tile is in one group)."""
        if self.group is None:
            return xs[self.g0].expand(self.e - self.a, *xs.shape[1:])
        return xs.index_select(0, self.group)


class StackedMLP:
    """K members of one MLP in feature-major layout (see the module docstring).

    Args:
        flatten, layers: from :func:`mlp_layers`.
        params: ``name -> [K, *shape]`` views of the flat parameter buffer (no autograd).
        grads: the same views of the gradient buffer.
        ranges: the ``[lo, hi)`` member rows of each seed group, in order.
        loss, metric: the task's (``loss(out [B, n_out], y) -> mean``; ``metric -> per example``).
        tile: members per tile (default: from :data:`TILE_BYTES`).
    """

    def __init__(self, flatten: bool, layers: Sequence[LinearSpec], params: dict[str, torch.Tensor],
                 grads: dict[str, torch.Tensor], ranges: Sequence[tuple[int, int]], loss: Callable,
                 metric: Callable, tile: int | None = None) -> None:
        from budgetsched.bench.tasks import cross_entropy

        self.flatten, self.layers = flatten, list(layers)
        self._W = [params[s.weight] for s in layers]
        self._b = [params[s.bias] if s.bias else None for s in layers]
        self._gW = [grads[s.weight] for s in layers]
        self._gb = [grads[s.bias] if s.bias else None for s in layers]
        self.K = self._W[0].shape[0]
        self.device = self._W[0].device
        self.group = [g for g, (lo, hi) in enumerate(ranges) for _ in range(lo, hi)]
        self._ce = loss is cross_entropy
        self._vloss = vmap(loss)
        self._eval_loss = vmap(loss, in_dims=(0, None))
        self._eval_metric = vmap(metric, in_dims=(0, None))
        self.tile = tile
        self._plans: dict[tuple, list[_Tile]] = {}

    def _plan(self, n: int, dtype: torch.dtype, train: bool) -> list[_Tile]:
        """The tiles for batches of n examples (built once per (n, dtype, train))."""
        key = (n, dtype, train)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        width = sum(s.n_out for s in self.layers) * (2 if train else 1)
        t = self.tile or max(1, TILE_BYTES // (width * n * torch.finfo(dtype).bits // 8))
        count = -(-self.K // t)
        bounds = [round(i * self.K / count) for i in range(count + 1)]
        plan = []
        for a, e in zip(bounds[:-1], bounds[1:]):
            groups = self.group[a:e]
            one = groups[0] == groups[-1]
            new = lambda c: torch.empty(e - a, c, n, dtype=dtype, device=self.device)  # noqa: E731
            plan.append(_Tile(
                a, e, None if one else torch.tensor(groups, device=self.device), groups[0],
                [W[a:e] for W in self._W], [b[a:e].unsqueeze(-1) if b is not None else None for b in self._b],
                [g[a:e] for g in self._gW], [g[a:e] if g is not None else None for g in self._gb],
                [new(s.n_out) for s in self.layers],
                [new(s.n_out) for s in self.layers[:-1]] if train else []))
        self._plans[key] = plan
        return plan

    def _forward(self, tile: _Tile, x: torch.Tensor) -> list[Callable | None]:
        """Fill ``tile.h`` for per-member inputs x [t, n, in]; return the activations' backwards."""
        h = x.transpose(1, 2)
        backs = []
        for W, b, z, spec in zip(tile.W, tile.b, tile.h, self.layers):
            if b is None:
                torch.bmm(W, h, out=z)
            else:
                torch.baddbmm(b, W, h, out=z)
            backs.append(_act_forward(spec.act, z))
            h = z
        return backs

    def _input(self, x: torch.Tensor, lead: int) -> torch.Tensor:
        if self.flatten and x.dim() > lead + 1:
            x = x.flatten(lead)
        if x.dim() != lead + 1:
            raise ValueError(f"StackedMLP expects inputs with {lead + 1} dimensions, got shape {tuple(x.shape)}")
        return x

    def _loss_grad(self, out: torch.Tensor, y: torch.Tensor, losses: torch.Tensor) -> None:
        """Per-member mean loss (into ``losses`` [t]) of outputs [t, C, B] for targets y [t, B]; ``out`` becomes
        d(sum of losses) / d(out)."""
        B = out.shape[-1]
        if self._ce and y.dim() == 2 and not y.is_floating_point():
            yk = y.unsqueeze(1)
            logp = torch.log_softmax(out, 1)
            torch.sum(logp.gather(1, yk).squeeze(1), 1, out=losses)
            losses.div_(-B)
            torch.exp(logp, out=out)
            out.scatter_add_(1, yk, torch.full((), -1.0, dtype=out.dtype, device=out.device).expand(yk.shape))
            out.div_(B)
            return
        per, back = vjp(lambda o: self._vloss(o, y), out.transpose(1, 2).contiguous())
        losses.copy_(per)
        out.copy_(back(torch.ones_like(per))[0].transpose(1, 2))

    # -- the container's interface -------------------------------------------------------------------------------
    @torch.no_grad()
    def loss_and_grad(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Per-member losses [K] of one batch (xb [G, B, ...], yb [G, B, ...]); the gradients go to ``grads``."""
        xs = self._input(xb, 2)
        losses = torch.empty(self.K, dtype=xs.dtype, device=xs.device)
        L = len(self.layers)
        for tile in self._plan(xs.shape[1], xs.dtype, True):
            x = tile.inputs(xs)
            backs = self._forward(tile, x)
            d = tile.h[-1] if backs[-1] is None else tile.h[-1].clone()  # becomes d loss / d output
            self._loss_grad(d, tile.inputs(yb), losses[tile.a:tile.e])
            if backs[-1] is not None:
                backs[-1](d)
            for i in range(L - 1, -1, -1):
                if tile.gb[i] is not None:
                    torch.sum(d, -1, out=tile.gb[i])
                torch.bmm(d, tile.h[i - 1].transpose(1, 2) if i else x, out=tile.gW[i])
                if i:
                    torch.bmm(tile.W[i].transpose(1, 2), d, out=tile.d[i - 1])
                    d = tile.d[i - 1]
                    if backs[i - 1] is not None:
                        backs[i - 1](d)
        return losses

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member sums over the examples of (x, y), shared by all members: (loss x n [K], metric sum [K]),
        float64; each member's loss is ``loss(out, y)`` on this whole batch, as the sequential engine computes it."""
        xs = self._input(x, 1)
        n = xs.shape[0]
        loss = torch.empty(self.K, dtype=torch.float64, device=x.device)
        metric = torch.empty(self.K, dtype=torch.float64, device=x.device)
        for tile in self._plan(n, xs.dtype, False):
            self._forward(tile, xs.expand(tile.e - tile.a, *xs.shape))
            out = tile.h[-1].transpose(1, 2)
            loss[tile.a:tile.e] = self._eval_loss(out, y).double() * n
            metric[tile.a:tile.e] = self._eval_metric(out, y).double().sum(-1)
        return loss, metric
