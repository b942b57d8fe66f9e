"""Feed-forward kernels (MLP, Conv1d): forward and backward of K members at once, without autograd or ``vmap``.

:class:`StackedNet` trains K copies of a feed-forward net of ``Conv1d`` layers, a flatten, and ``Linear`` layers,
each followed by at most one elementwise activation: the tasks' MLPs and ``CNN1d``. What makes it fast on a CPU
(measured in docs/benchmarks.md):

* **Feature-major layout.** A member's activations are ``[features, batch]`` (``[channels, length, batch]`` for
  convolutions), stacked to ``[K, ..., batch]``. Every product is ``W @ h`` with contiguous (or transposed) operands
  (``bmm`` of ``[K, out, in] x [K, in, B]``); the weight gradient ``dz @ h^T`` and the input gradient ``W^T @ dz``
  use transposed operands (free in BLAS); every elementwise pass (ReLU, its backward, the bias sums) runs over
  contiguous memory. Autograd's row-major layout (``h @ W^T``) made the 10-wide output layer's products and the
  transposed ReLU backward 3-10x slower.
* **Convolutions as batched matmuls.** A ``Conv1d`` is ``W [K, out, in * k] @ cols [K, in * k, L_out * B]``, with
  ``cols`` built by k strided copies (im2col) and the input gradient scattered back by k strided adds. One
  ``bmm`` per layer for all members, instead of a K-group convolution (oneDNN's grouped convolutions, which the
  vmap path ends in, were ~20x slower here).
* **Few, large operations.** A step is a few dozen tensor operations for all K members (per tile of members, see
  :data:`TILE_BYTES`), each writing into a preallocated buffer (``out=``), the gradients straight into the
  ``[K, N]`` gradient buffer's views: no large temporaries (whose pages a CPU faults in anew every step) and no
  per-member Python work. The views of every tile are built once and cached.
* **The loss gradient in closed form** for a loss declared softmax cross-entropy (``kind == "cross_entropy"``,
  :func:`budgetsched.bench.engines.kernels.losses.kind_of`): ``(softmax - onehot) / B``; any other loss goes
  through ``torch.func.vjp`` on the (small) output only.

Members of one seed share their input batch (``[G, B, ...]`` per seed group); a tile reads its members' inputs as
a view when it lies within one group. Every result equals the autograd / ``vmap`` path up to floating-point
reduction order (float64 tests in tests/test_stacked.py and tests/test_batched.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.func import vjp, vmap

from budgetsched.bench.engines.kernels.losses import CROSS_ENTROPY, ERROR_PERCENT, kind_of

__all__ = ["StackedNet", "LayerSpec", "stack_layers"]

#: Most bytes of buffers (activations, im2col columns and their gradients) per tile of members, and the fewest
#: members per tile: a chunk of K members runs as ceil(K / t) tiles of near-equal size, t = max(MIN_TILE,
#: TILE_BYTES // per-member bytes). Measured on mnist1d-mlp (1 thread): K = 128 runs ~10 % faster in tiles of
#: 24-64 members than in one; K = 32 is as fast in one tile as in tiles of 8-16 (each tile costs ~100 us of
#: per-operation overhead); mnist1d-cnn (4 MB per member) is as fast in tiles of 2 to 16.
TILE_BYTES = 8 << 20
MIN_TILE = 8

#: Most examples per evaluation pass: bounds the buffers, so that evaluation runs in large tiles of members.
EVAL_PASS = 250

_NATIVE = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Identity: None}
_ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Identity, nn.Softplus)


@dataclass(frozen=True)
class LayerSpec:
    """One ``Linear`` or ``Conv1d`` layer and the elementwise activation that follows it (None: none)."""

    kind: str  # "linear" or "conv1d"
    weight: str  # parameter names
    bias: str | None
    n_in: int  # features or channels
    n_out: int
    act: Any  # "relu", "tanh", "sigmoid", an elementwise module, or None
    kernel: int = 1
    stride: int = 1
    padding: int = 0


def _act(m: nn.Module) -> Any:
    return _NATIVE[type(m)] if type(m) in _NATIVE else m


def _linear(name: str, m: nn.Linear, act: Any) -> LayerSpec:
    return LayerSpec("linear", f"{name}.weight", f"{name}.bias" if m.bias is not None else None,
                     m.in_features, m.out_features, act)


def _conv(name: str, m: nn.Module, act: Any) -> LayerSpec | None:
    if (not isinstance(m, nn.Conv1d) or m.groups != 1 or m.dilation != (1,) or m.padding_mode != "zeros"
            or not isinstance(m.padding, tuple)):
        return None
    return LayerSpec("conv1d", f"{name}.weight", f"{name}.bias" if m.bias is not None else None, m.in_channels,
                     m.out_channels, act, m.kernel_size[0], m.stride[0], m.padding[0])


def stack_layers(model: nn.Module) -> tuple[str | None, list[LayerSpec]] | None:
    """``(input_op, layers)`` if :class:`StackedNet` can run ``model``, else None. ``input_op`` is "flatten"
    (inputs flattened to features), "unsqueeze" (``[N, L]`` -> one channel) or None (inputs used as they are).

    Accepted: the project's ``MLP`` and ``CNN1d``, and an ``nn.Sequential`` of ``Conv1d`` layers, then a
    ``Flatten()`` (required after convolutions, optional first otherwise), then ``Linear`` layers, each layer
    followed by at most one elementwise activation; no buffers.
    """
    from budgetsched.bench.tasks.models import MLP, CNN1d

    if any(True for _ in model.buffers()):
        return None
    if type(model) is MLP:
        n = len(model.layers)
        return "flatten", [_linear(f"layers.{i}", m, "relu" if i < n - 1 else None) for i, m in enumerate(model.layers)]
    if type(model) is CNN1d:
        convs = [_conv(name, getattr(model, name), "relu") for name in ("conv1", "conv2", "conv3")]
        if any(c is None for c in convs):
            return None
        return "unsqueeze", [*convs, _linear("head", model.head, None)]  # type: ignore[list-item]
    if not isinstance(model, nn.Sequential):
        return None
    children = list(model.named_children())
    layers: list[LayerSpec] = []
    flattened = False
    input_op = None
    i = 0
    while i < len(children):
        name, m = children[i]
        i += 1
        if isinstance(m, nn.Flatten):
            if flattened or (m.start_dim, m.end_dim) != (1, -1):
                return None
            flattened, input_op = True, input_op if layers else "flatten"
            continue
        act = None
        if i < len(children) and isinstance(children[i][1], _ELEMENTWISE):
            act = _act(children[i][1])
            i += 1
        if isinstance(m, nn.Linear):
            if layers and layers[-1].kind == "conv1d" and not flattened:
                return None
            layers.append(_linear(name, m, act))
            continue
        spec = _conv(name, m, act)
        if spec is None or flattened:
            return None
        layers.append(spec)
    if not layers or layers[-1].kind != "linear":
        return None
    return input_op, layers


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


def _argmax1(out: torch.Tensor) -> torch.Tensor:
    """``out.argmax(1)`` (the first maximal index) of [t, C, m] through ``amax``: argmax over a strided dimension
    is ~25x slower on a CPU."""
    C = out.shape[1]
    is_max = (out == out.amax(1, keepdim=True)).to(out.dtype)
    rank = torch.arange(C, 0, -1, dtype=out.dtype, device=out.device).view(1, C, 1)  # C - j: the first max wins
    return C - (is_max * rank).amax(1).long()


# ---------------------------------------------------------------------------------------------------- layers
class _Layer:
    """One layer of one tile: parameter / gradient views, buffers, forward and backward.

    Shapes per member: the input ``h`` and output ``z`` are ``[features, n]`` (linear) or ``[channels, L, n]``
    (conv1d); stacked, ``[t, ...]``.
    """

    def __init__(self, spec: LayerSpec, W: torch.Tensor, b: torch.Tensor | None, gW: torch.Tensor,
                 gb: torch.Tensor | None, in_shape: tuple[int, ...], n: int, train: bool, first: bool,
                 dtype: torch.dtype, device: torch.device) -> None:
        t = W.shape[0]
        self.spec, self.first = spec, first
        new = lambda *s: torch.empty(t, *s, dtype=dtype, device=device)  # noqa: E731
        self.gb = gb
        self.b = b.unsqueeze(-1) if b is not None else None
        if spec.kind == "linear":
            self.W, self.gW = W, gW
            self.out_shape: tuple[int, ...] = (spec.n_out, n)
            self.z = new(spec.n_out, n)
            self.dh = new(*in_shape) if train and not first else None
            self._mixed(dtype, train)
            return
        C, L = in_shape[0], in_shape[1]
        k, s, p = spec.kernel, spec.stride, spec.padding
        Lo = (L + 2 * p - k) // s + 1
        self.W, self.gW = W.view(t, spec.n_out, C * k), gW.view(t, spec.n_out, C * k)
        self._mixed(dtype, train)
        self.out_shape = (spec.n_out, Lo, n)
        self.z = new(spec.n_out, Lo, n)
        self.cols_shape = (C, k, Lo, n)
        # im2col columns, zero where the padding reads; the first layer's are built per seed group (_gcols)
        self.cols = torch.zeros(t, *self.cols_shape, dtype=dtype, device=device) if not first else None
        self._gcols: torch.Tensor | None = None
        # tap j reads input positions s * l + j - p for output positions l in [lo, hi)
        self.taps = []
        for j in range(k):
            lo = max(0, -(-(p - j) // s))
            hi = min(Lo, (L - 1 - j + p) // s + 1)
            if hi > lo:
                self.taps.append((j, lo, hi, s * lo + j - p, s * (hi - 1) + j - p + 1))
        self.dcols = new(C * k, Lo * n) if train and not first else None
        self.dh = new(C, L, n) if train and not first else None

    def _mixed(self, dtype: torch.dtype, train: bool) -> None:
        """The weight gradient's scratch; for reduced-precision compute, copies of the parameters in ``dtype``
        (refreshed every forward) that the products read."""
        self.master = None
        self.gW_low = torch.empty(self.gW.shape, dtype=dtype, device=self.W.device) if train else None
        if dtype == self.W.dtype:
            return
        self.master = (self.W, self.b)
        self.W = torch.empty(self.W.shape, dtype=dtype, device=self.W.device)
        self.b = torch.empty(self.b.shape, dtype=dtype, device=self.b.device) if self.b is not None else None

    def forward(self, h: torch.Tensor, members: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> torch.Tensor:
        """Output [t, *out_shape] (into ``self.z``) of input h [t, *in_shape]; for the first layer, h is per seed
        group ([G, *in_shape]) and ``members`` maps a per-group tensor to the tile's members (a view when the tile
        lies in one group): a convolution's im2col columns are then built once per group."""
        if self.master is not None:
            self.W.copy_(self.master[0])
            if self.b is not None:
                self.b.copy_(self.master[1])
        if self.spec.kind == "linear":
            a = h if members is None else members(h)
        else:
            cols = self.cols
            if members is not None:
                if self._gcols is None or self._gcols.shape[0] != h.shape[0]:
                    self._gcols = torch.zeros(h.shape[0], *self.cols_shape, dtype=h.dtype, device=h.device)
                cols = self._gcols
            s = self.spec.stride
            for j, lo, hi, i0, i1 in self.taps:
                cols[:, :, j, lo:hi].copy_(h[:, :, i0:i1:s])
            if members is not None:
                cols = members(cols)
            a = cols.view(cols.shape[0], -1, self.z[0, 0].numel())
        z = self.z.view(self.z.shape[0], self.z.shape[1], -1)
        if self.b is None:
            torch.bmm(self.W, a, out=z)
        else:
            torch.baddbmm(self.b, self.W, a, out=z)
        self._a = a
        return self.z

    def backward(self, d: torch.Tensor) -> torch.Tensor | None:
        """Write the parameter gradients for d = d loss / d z [t, *out_shape]; return d loss / d input (None for
        the first layer)."""
        d2 = d.view(d.shape[0], d.shape[1], -1)
        if self.gb is not None:
            torch.sum(d2, -1, dtype=self.gb.dtype, out=self.gb)
        # into a contiguous scratch, then copied into the gradient's (strided) view: a strided output makes the
        # product 1.4-2.3x slower on 2 threads (it falls back to one product per member)
        self.gW.copy_(torch.matmul(d2, self._a.transpose(1, 2), out=self.gW_low))
        if self.first:
            return None
        if self.spec.kind == "linear":
            return torch.bmm(self.W.transpose(1, 2), d2, out=self.dh)
        torch.bmm(self.W.transpose(1, 2), d2, out=self.dcols)
        dcols = self.dcols.view(self.dcols.shape[0], *self.cols_shape)
        dh, s = self.dh, self.spec.stride
        dh.zero_()  # type: ignore[union-attr]
        for j, lo, hi, i0, i1 in self.taps:
            dh[:, :, i0:i1:s].add_(dcols[:, :, j, lo:hi])  # type: ignore[index]
        return dh


@dataclass
class _Tile:
    """Members [a, e) of a stacked net and their layers."""

    a: int
    e: int
    group: torch.Tensor | None  # seed group of each member, or None when the tile lies within one group
    g0: int  # the tile's first group
    layers: list[_Layer]

    def inputs(self, xs: torch.Tensor) -> torch.Tensor:
        """Per-member tensors [t, ...] of per-group ones xs [G, ...] (a view when the tile is in one group)."""
        if self.group is None:
            return xs[self.g0].expand(self.e - self.a, *xs.shape[1:])
        return xs.index_select(0, self.group)


# ------------------------------------------------------------------------------------------------------ net
class StackedNet:
    """K members of one feed-forward net in feature-major layout (see the module docstring).

    Args:
        input_op, layers: from :func:`stack_layers`.
        params: ``name -> [K, *shape]`` views of the flat parameter buffer (no autograd).
        grads: the same views of the gradient buffer.
        ranges: the ``[lo, hi)`` member rows of each seed group, in order.
        loss, metric: the task's (``loss(out [B, n_out], y) -> mean``; ``metric -> per example``).
        tile: members per tile (default: from :data:`TILE_BYTES`).
        compute_dtype: the dtype of the products and activations (default: the parameters'); e.g. ``bfloat16``
            for reduced-precision products with float32 parameters, gradients, loss and optimizer (opt-in).
    """

    def __init__(self, input_op: str | None, layers: Sequence[LayerSpec], params: dict[str, torch.Tensor],
                 grads: dict[str, torch.Tensor], ranges: Sequence[tuple[int, int]], loss: Callable,
                 metric: Callable, tile: int | None = None, compute_dtype: torch.dtype | None = None) -> None:
        self.input_op, self.layers = input_op, list(layers)
        self._W = [params[s.weight] for s in layers]
        self._b = [params[s.bias] if s.bias else None for s in layers]
        self._gW = [grads[s.weight] for s in layers]
        self._gb = [grads[s.bias] if s.bias else None for s in layers]
        self.K = self._W[0].shape[0]
        self.device = self._W[0].device
        self.group = [g for g, (lo, hi) in enumerate(ranges) for _ in range(lo, hi)]
        self._ce = kind_of(loss) == CROSS_ENTROPY  # declared by the task's loss: the closed-form gradient
        self._fast_eval = self._ce and kind_of(metric) == ERROR_PERCENT
        self._vloss = vmap(loss)
        self._eval_loss = vmap(loss, in_dims=(0, None))
        self._eval_metric = vmap(metric, in_dims=(0, None))
        self.tile = tile
        self.compute_dtype = compute_dtype if compute_dtype is not None else self._W[0].dtype
        self._plans: dict[tuple, list[_Tile]] = {}

    # -- inputs ---------------------------------------------------------------------------------------------------
    def _example_shape(self, x: torch.Tensor, lead: int) -> torch.Size:
        """One example's shape as the first layer reads it."""
        shape = x.shape[lead:]
        if self.input_op == "flatten":
            return torch.Size([math.prod(shape)])
        if self.input_op == "unsqueeze":
            return torch.Size([1, *shape])
        return shape

    def _operand(self, x: torch.Tensor) -> torch.Tensor:
        """Examples per seed group x [G, n, *example] -> the first layer's input [G, features, n] or
        [G, C, L, n], contiguous (a small copy: every member of the group reads it)."""
        if x.dtype != self.compute_dtype:
            x = x.to(self.compute_dtype)
        if self.input_op == "flatten":
            x = x.flatten(2)
        elif self.input_op == "unsqueeze":
            x = x.unsqueeze(2)
        return x.movedim(1, -1).contiguous()

    def _check(self, shape: torch.Size) -> None:
        spec = self.layers[0]
        want = 1 if spec.kind == "linear" else 2
        if len(shape) != want or shape[0] != spec.n_in:
            raise ValueError(f"the stacked {spec.kind} layer {spec.weight!r} cannot take examples of shape "
                             f"{tuple(shape)}")

    # -- tiles ----------------------------------------------------------------------------------------------------
    def _plan(self, example: torch.Size, n: int, dtype: torch.dtype, train: bool) -> list[_Tile]:
        """The tiles for batches of n examples (built once per (example shape, n, dtype, train))."""
        key = (tuple(example), n, dtype, train)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        self._check(example)
        t = self.tile or max(MIN_TILE, TILE_BYTES // max(1, self._member_bytes(example, n, dtype, train)))
        count = -(-self.K // t)
        bounds = [round(i * self.K / count) for i in range(count + 1)]
        plan = []
        for a, e in zip(bounds[:-1], bounds[1:]):
            groups = self.group[a:e]
            layers, shape = [], tuple(example) + (n,)
            for i, spec in enumerate(self.layers):
                if spec.kind == "linear" and len(shape) > 2:  # flatten [C, L, n] -> [C * L, n]
                    shape = (math.prod(shape[:-1]), n)
                    if shape[0] != spec.n_in:
                        raise ValueError(f"the stacked linear layer {spec.weight!r} expects {spec.n_in} features, "
                                         f"got {shape[0]}")
                b, gb = self._b[i], self._gb[i]
                layer = _Layer(spec, self._W[i][a:e], b[a:e] if b is not None else None, self._gW[i][a:e],
                               gb[a:e] if gb is not None else None, shape, n, train, i == 0, dtype, self.device)
                layers.append(layer)
                shape = layer.out_shape
            plan.append(_Tile(a, e, None if groups[0] == groups[-1] else torch.tensor(groups, device=self.device),
                              groups[0], layers))
        self._plans[key] = plan
        return plan

    def _member_bytes(self, example: torch.Size, n: int, dtype: torch.dtype, train: bool) -> int:
        size, shape = 0, tuple(example)
        for spec in self.layers:
            if spec.kind == "linear":
                shape = (math.prod(shape),)
                out: tuple[int, ...] = (spec.n_out,)
                cols = 0
            else:
                Lo = (shape[1] + 2 * spec.padding - spec.kernel) // spec.stride + 1
                out, cols = (spec.n_out, Lo), shape[0] * spec.kernel * Lo
            size += math.prod(out) + cols + (cols + math.prod(shape) if train else 0)
            shape = out
        return size * n * torch.finfo(dtype).bits // 8

    def _forward(self, tile: _Tile, xg: torch.Tensor, members: Callable[[torch.Tensor], torch.Tensor]
                 ) -> list[Callable | None]:
        """Run the tile's layers on the per-group input xg (``members`` selects the tile's members from a
        per-group tensor); return the activations' backwards."""
        backs = []
        h = xg
        for i, layer in enumerate(tile.layers):
            if layer.spec.kind == "linear" and h.dim() > 3:
                h = h.reshape(h.shape[0], -1, h.shape[-1])
            h = layer.forward(h, members if i == 0 else None)
            backs.append(_act_forward(layer.spec.act, h))
        return backs

    # -- the loss -------------------------------------------------------------------------------------------------
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
        plan = self._plan(self._example_shape(xb, 2), xb.shape[1], self.compute_dtype, True)
        losses = torch.empty(self.K, dtype=self._W[0].dtype, device=xb.device)
        xg = self._operand(xb)
        for tile in plan:
            backs = self._forward(tile, xg, tile.inputs)
            out = tile.layers[-1].z
            d = out if backs[-1] is None else out.clone()  # becomes d loss / d output
            if d.dtype == losses.dtype:
                self._loss_grad(d, tile.inputs(yb), losses[tile.a:tile.e])
            else:  # the loss and its gradient in the parameters' precision
                d_full = d.to(losses.dtype)
                self._loss_grad(d_full, tile.inputs(yb), losses[tile.a:tile.e])
                d.copy_(d_full)
            for i in range(len(tile.layers) - 1, -1, -1):
                if backs[i] is not None:
                    backs[i](d)
                dh = tile.layers[i].backward(d)
                if dh is None:
                    break
                d = dh if dh.dim() == tile.layers[i - 1].z.dim() else dh.view(tile.layers[i - 1].z.shape)
        return losses

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member sums over the examples of (x, y), shared by all members: (loss x n [K], metric sum [K]),
        float64. The examples go through in passes of at most :data:`EVAL_PASS` (small buffers, large tiles of
        members); a pass's loss counts ``loss(out, y) x its examples`` (the task's loss is a mean over examples)."""
        n = x.shape[0]
        loss = torch.zeros(self.K, dtype=torch.float64, device=x.device)
        metric = torch.zeros(self.K, dtype=torch.float64, device=x.device)
        passes = -(-n // EVAL_PASS)
        bounds = [round(i * n / passes) for i in range(passes + 1)]
        example = self._example_shape(x, 1)
        for s, e in zip(bounds[:-1], bounds[1:]):
            xs, ys, m = x[s:e], y[s:e], e - s
            xg = self._operand(xs.unsqueeze(0))
            for tile in self._plan(example, m, self.compute_dtype, False):
                t = tile.e - tile.a
                self._forward(tile, xg, lambda v, t=t: v[0].expand(t, *v.shape[1:]))
                out = tile.layers[-1].z  # [t, C, m]
                if out.dtype != x.dtype:
                    out = out.to(x.dtype)
                if self._fast_eval and ys.dim() == 1:
                    yk = ys.view(1, 1, m).expand(out.shape[0], 1, m)
                    loss[tile.a:tile.e] -= torch.log_softmax(out, 1).gather(1, yk).sum((1, 2), dtype=torch.float64)
                    metric[tile.a:tile.e] += (_argmax1(out) != ys).sum(-1, dtype=torch.float64) * 100.0
                else:
                    rows = out.transpose(1, 2)
                    loss[tile.a:tile.e] += self._eval_loss(rows, ys).double() * m
                    metric[tile.a:tile.e] += self._eval_metric(rows, ys).double().sum(-1)
        return loss, metric
