"""The autograd-based stacks: K members through a hand-stacked forward and autograd's backward (the base of the
transformer and VAE kernels)."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch.func import vmap

from budgetsched.bench.engines.kernels.losses import BITS_PER_CHAR, CROSS_ENTROPY, kind_of

__all__ = ["AutogradStack", "TRANSFORMER_TILE_BYTES"]

#: Most bytes of saved activations per tile of members for the autograd-based stacks (training); their
#: evaluation runs ``_eval_pass()`` examples per pass (each family's own).
TRANSFORMER_TILE_BYTES = 256 << 20


class AutogradStack:
    """K members of one model through a hand-stacked forward (per-member ``baddbmm`` for the linear layers, one
    call for all members everywhere else) and autograd for the backward. A subclass gives ``_outputs(p, x)``:
    the members' outputs ``[t, n, ...]`` (what each model's ``forward`` returns) for inputs x ``[t, n, ...]``,
    with ``p`` the ``[t, ...]`` slices of the parameters; and ``_per_member_bytes(x_shape, train, itemsize)``.

    Args:
        params, grads: ``name -> [K, *shape]`` views of the flat parameter / gradient buffers.
        ranges: the ``[lo, hi)`` member rows of each seed group.
        loss, metric: the task's.
        tile: members per tile (default: from :data:`TRANSFORMER_TILE_BYTES`).
    """

    def __init__(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
                 ranges: Sequence[tuple[int, int]], loss: Callable, metric: Callable, tile: int | None = None) -> None:
        self.params, self.grads = params, grads
        first = next(iter(params.values()))
        self.K, self.device, self.dtype = first.shape[0], first.device, first.dtype
        self.group = [g for g, (lo, hi) in enumerate(ranges) for _ in range(lo, hi)]
        self._ce, self._bpc = kind_of(loss) == CROSS_ENTROPY, kind_of(metric) == BITS_PER_CHAR
        self._vloss = vmap(loss)
        self._eval_loss = vmap(loss, in_dims=(0, None))
        self._eval_metric = vmap(metric, in_dims=(0, None))
        self.tile = tile

    def _outputs(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _per_member_bytes(self, x_shape: Sequence[int], train: bool, itemsize: int) -> int:
        raise NotImplementedError

    def _eval_pass(self) -> int:
        """Most examples per evaluation pass."""
        raise NotImplementedError

    def _tiles(self, per_member: int) -> list[tuple[int, int, torch.Tensor | None, int]]:
        t = self.tile or max(1, TRANSFORMER_TILE_BYTES // max(1, per_member))
        count = -(-self.K // t)
        bounds = [round(i * self.K / count) for i in range(count + 1)]
        out = []
        for a, e in zip(bounds[:-1], bounds[1:]):
            g = self.group[a:e]
            out.append((a, e, None if g[0] == g[-1] else torch.tensor(g, device=self.device), g[0]))
        return out

    @staticmethod
    def _members(xs: torch.Tensor, a: int, e: int, group: torch.Tensor | None, g0: int) -> torch.Tensor:
        if group is None:
            return xs[g0].expand(e - a, *xs.shape[1:])
        return xs.index_select(0, group)

    @staticmethod
    def _linear(p: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
        """x [t, n, in] -> [t, n, out] with each member's weight (and bias)."""
        w = p[name + ".weight"].transpose(1, 2)
        b = p.get(name + ".bias")
        return torch.bmm(x, w) if b is None else torch.baddbmm(b.unsqueeze(1), x, w)

    def _losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member training loss [t] of outputs [t, n, ...] and targets [t, n, ...]."""
        if self._ce and not y.is_floating_point():
            t = out.shape[0]
            return torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1),
                                                     reduction="none").view(t, -1).mean(1)
        return self._vloss(out, y)

    def loss_and_grad(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Per-member losses [K] of one batch (xb, yb [G, B, ...]); the gradients go to ``grads``."""
        losses = torch.empty(self.K, dtype=self.dtype, device=self.device)
        for a, e, group, g0 in self._tiles(self._per_member_bytes(xb.shape[1:], True, self.dtype.itemsize)):
            p = {k: v[a:e].detach().requires_grad_(True) for k, v in self.params.items()}
            with torch.enable_grad():
                per = self._losses(self._outputs(p, self._members(xb, a, e, group, g0)),
                                   self._members(yb, a, e, group, g0))
                grads = torch.autograd.grad(per.sum(), list(p.values()), allow_unused=True)
            for name, g in zip(p, grads):
                if g is None:
                    self.grads[name][a:e].zero_()
                else:
                    self.grads[name][a:e].copy_(g)
            losses[a:e] = per.detach()
        return losses

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member (loss x n, metric sum) over examples (x, y) shared by all members, float64, in passes of a
        few hundred examples (the task's loss is a mean over examples)."""
        n = x.shape[0]
        loss = torch.zeros(self.K, dtype=torch.float64, device=x.device)
        metric = torch.zeros(self.K, dtype=torch.float64, device=x.device)
        passes = -(-n // self._eval_pass())
        bounds = [round(i * n / passes) for i in range(passes + 1)]
        per_member = self._per_member_bytes((bounds[1], *x.shape[1:]), False, self.dtype.itemsize)
        for s, e_ in zip(bounds[:-1], bounds[1:]):
            xs, ys, m = x[s:e_], y[s:e_], e_ - s
            for a, e, _, _ in self._tiles(per_member):
                p = {k: v[a:e] for k, v in self.params.items()}
                out = self._outputs(p, xs.expand(e - a, *xs.shape))
                if self._ce and self._bpc and out.dim() == 4:  # [t, m, T, V]: per-sequence mean nll
                    nll = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]),
                                                            ys.expand(e - a, *ys.shape).reshape(-1), reduction="none")
                    per_seq = nll.view(e - a, m, -1).double().mean(2).sum(1)
                    loss[a:e] += per_seq
                    metric[a:e] += per_seq / math.log(2.0)
                else:
                    loss[a:e] += self._eval_loss(out, ys).double() * m
                    metric[a:e] += self._eval_metric(out, ys).double().sum(-1)
        return loss, metric
