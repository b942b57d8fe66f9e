"""The optimizer specification: its update rule equals torch.optim step by step (float64), weight decay and
per-step momentum / beta1 changes included; unknown optimizers are rejected."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from budgetsched.bench.protocol.grid import OPTIMIZERS as GRID_OPTIMIZERS
from budgetsched.bench.engines.optim import OPTIMIZERS, get_optimizer

from _flat_kernel import flat_steps


def _torch_steps(name, p0, grads, lrs, moms, wd):
    """Parameters after each step of torch.optim with group lr / momentum (or betas[0]) set before each step."""
    spec = get_optimizer(name)
    p = torch.nn.Parameter(p0.clone())
    opt = spec.torch_optimizer([p], lr=lrs[0], weight_decay=wd)
    out = []
    for g, lr, m in zip(grads, lrs, moms):
        group = opt.param_groups[0]
        group["lr"] = lr
        if name == "sgdm":
            group["momentum"] = m
        else:
            group["betas"] = (m, group["betas"][1])
        p.grad = g.clone()
        opt.step()
        out.append(p.detach().clone())
    return out


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("wd", [0.0, 5e-4])
@pytest.mark.parametrize("varying_momentum", [False, True])
def test_update_equals_torch_optim(name, wd, varying_momentum):
    gen = torch.Generator().manual_seed(0)
    K, N, S = 3, 7, 12
    p0 = torch.randn(K, N, generator=gen, dtype=torch.float64)
    grads = [torch.randn(K, N, generator=gen, dtype=torch.float64) for _ in range(S)]
    lrs = np.array([[0.1, 0.03, 0.3]]) * np.linspace(1.0, 0.1, S)[:, None]  # [S, K], a different LR per member
    moms = (np.linspace(0.95, 0.85, S)[:, None] * np.ones((1, K)) if varying_momentum else None)
    spec = get_optimizer(name)
    ours = flat_steps(spec, p0, grads, lrs, moms, wd)
    for k in range(K):
        m_k = moms[:, k] if moms is not None else [spec.momentum] * S
        theirs = _torch_steps(name, p0[k], [g[k] for g in grads], lrs[:, k].tolist(), list(m_k), wd)
        for i in range(S):
            torch.testing.assert_close(ours[i][k], theirs[i], rtol=1e-13, atol=1e-15)


def test_constants_are_the_papers():
    assert get_optimizer("sgdm").momentum == 0.9  # REX paper, section 5: SGD with momentum 0.9
    adam = get_optimizer("adam")
    assert (adam.momentum, adam.beta2, adam.eps) == (0.9, 0.999, 1e-8)  # torch.optim.Adam defaults
    assert GRID_OPTIMIZERS == tuple(OPTIMIZERS)


@pytest.mark.parametrize("bad", ["rmsprop", "", None, "SGDM"])
def test_unknown_optimizer_is_rejected(bad):
    with pytest.raises(ValueError, match=f"unknown optimizer {bad!r}; choose from sgdm, adam"):
        get_optimizer(bad)
