"""The stacked model containers: every fast path (the hand-written MLP kernel, its tiles, seed groups, losses and
activations) gives each member exactly what one model alone gives (float64), and what the vmap path gives.

The engines' end-to-end equality (batched == sequential per epoch) is tested in tests/test_batched.py; these tests
check one step's losses and gradients and one evaluation, member by member, for cases the tasks do not cover.
"""
from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from budgetsched.bench.kernels import mlp_layers
from budgetsched.bench.models import MLP
from budgetsched.bench.stacked import SingleModel, StackedModel
from budgetsched.bench.tasks import cross_entropy, error_percent

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RTOL = 1e-10


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def mse(out, y):
    return ((out - y) ** 2).mean()


def per_example_mse(out, y):
    return ((out - y) ** 2).mean(-1)


def make_task(loss=cross_entropy, metric=error_percent):
    return types.SimpleNamespace(name="t", loss=loss, metric=metric)


def build(make, seeds):
    models = []
    for s in seeds:
        torch.manual_seed(s)
        models.append(make())
    return models


def groups_of(seeds):
    order = list(dict.fromkeys(seeds))
    return [order.index(s) for s in seeds]


def batch(seeds, shape, n_classes=None, B=12, out_dim=None):
    """Per-group inputs [G, B, *shape] and targets [G, B] (classes) or [G, B, out_dim] (regression)."""
    G = len(dict.fromkeys(seeds))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(G, B, *shape, generator=gen)
    if n_classes is not None:
        return x, torch.randint(0, n_classes, (G, B), generator=gen)
    return x, torch.randn(G, B, out_dim, generator=gen)


def reference(models, seeds, task, x, y):
    """Each member alone (the sequential engine's container): losses [K], gradients [K, N]."""
    losses, grads = [], []
    for m, g in zip(models, groups_of(seeds)):
        single = SingleModel(m, task, "cpu")
        loss, grad = single.loss_and_grad(x[g:g + 1], y[g:g + 1])
        losses.append(loss)
        grads.append(grad)
    return torch.cat(losses), torch.cat(grads)


def check_step(make, seeds, task, x, y, **kw):
    ref_loss, ref_grad = reference(build(make, seeds), seeds, task, x, y)
    for stacking in ("bmm", "vmap"):
        stack = StackedModel(build(make, seeds), groups_of(seeds), task, "cpu", stacking)
        if "tile" in kw and stacking == "bmm":
            stack._impl.tile = kw["tile"]
        assert stack.stacking == stacking
        for _ in range(2):  # the second call reuses the cached tiles and buffers
            loss, grad = stack.loss_and_grad(x, y)
            torch.testing.assert_close(loss, ref_loss, rtol=RTOL, atol=1e-12)
            torch.testing.assert_close(grad, ref_grad, rtol=RTOL, atol=1e-12)


SEED_MIXES = [(0,), (0, 0, 0), (0, 0, 1, 1, 1, 2), (3, 5, 7)]


@pytest.mark.parametrize("seeds", SEED_MIXES, ids=str)
@pytest.mark.parametrize("tile", [None, 1, 2, 4])
def test_mlp_kernel_equals_each_model_alone(float64, seeds, tile):
    x, y = batch(seeds, (5, 8), n_classes=10)  # [G, B, 5, 8]: the MLP flattens its input
    check_step(lambda: MLP((40, 16, 12, 10)), seeds, make_task(), x, y, tile=tile)


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.Identity])
def test_sequential_mlps_with_any_activation_and_no_bias(float64, act):
    seeds = (0, 0, 1, 2, 2)
    make = lambda: nn.Sequential(nn.Linear(7, 9, bias=False), act(), nn.Linear(9, 6), act(), nn.Linear(6, 4))  # noqa: E731
    x, y = batch(seeds, (7,), n_classes=4)
    check_step(make, seeds, make_task(), x, y)


def test_activation_after_the_last_layer_and_flatten(float64):
    seeds = (0, 1, 1)
    make = lambda: nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3), nn.ReLU())  # noqa: E731
    x, y = batch(seeds, (2, 3), n_classes=3)
    check_step(make, seeds, make_task(), x, y)


def test_any_loss_through_its_vjp(float64):
    seeds = (0, 0, 1)
    x, y = batch(seeds, (6,), out_dim=3)
    check_step(lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), seeds,
               make_task(mse, per_example_mse), x, y)


@pytest.mark.parametrize("tile", [None, 3])
def test_evaluation_equals_each_model_alone(float64, tile):
    seeds = (0, 0, 1, 2, 2, 2, 4)
    task = make_task()
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(37, 40, generator=gen), torch.randint(0, 10, (37,), generator=gen)
    make = lambda: MLP((40, 16, 10))  # noqa: E731
    expected = [SingleModel(m, task, "cpu").evaluate(x, y) for m in build(make, seeds)]
    for stacking in ("bmm", "vmap"):
        stack = StackedModel(build(make, seeds), groups_of(seeds), task, "cpu", stacking)
        if stacking == "bmm":
            stack._impl.tile = tile
        loss, metric = stack.evaluate(x, y)
        assert loss == pytest.approx([e[0][0] for e in expected], rel=RTOL)
        assert metric == pytest.approx([e[1][0] for e in expected], rel=RTOL)


def test_mlp_layers_accepts_mlps_and_rejects_the_rest():
    flatten, layers = mlp_layers(MLP((4, 3, 2)))
    assert flatten and [(s.n_in, s.n_out, s.act) for s in layers] == [(4, 3, "relu"), (3, 2, None)]
    _, layers = mlp_layers(nn.Sequential(nn.Linear(4, 3, bias=False), nn.Sigmoid(), nn.Linear(3, 2)))
    assert [(s.bias, s.act) for s in layers] == [(None, "sigmoid"), ("2.bias", None)]
    assert mlp_layers(nn.Sequential(nn.ReLU(), nn.Linear(3, 2))) is None  # activation first
    assert mlp_layers(nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Tanh())) is None  # two in a row
    assert mlp_layers(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))) is None
    assert mlp_layers(nn.Sequential(nn.Flatten(2), nn.Linear(3, 2))) is None
    assert mlp_layers(nn.Sequential()) is None
    conv = nn.Sequential(nn.Conv1d(1, 2, 3))
    assert mlp_layers(conv) is None
    with pytest.raises(ValueError, match="stacking 'bmm' needs an MLP"):
        StackedModel([conv], [0], make_task(), "cpu", "bmm")
    assert StackedModel([conv], [0], make_task(), "cpu", "auto").stacking == "vmap"
