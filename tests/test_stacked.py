"""The stacked model containers: every fast path (the hand-written kernel for MLPs and 1-D CNNs, its tiles, seed
groups, losses and activations) gives each member exactly what one model alone gives (float64), and what the vmap
path gives.

The engines' end-to-end equality (batched == sequential per epoch) is tested in tests/test_batched.py; these tests
check one step's losses and gradients and one evaluation, member by member, for cases the tasks do not cover.
"""
from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from budgetsched.bench.engines import kernels
from budgetsched.bench.engines.kernels import stack_layers, transformer_spec, vae_spec
from budgetsched.bench.tasks.models import VAE, CNN1d, MLP, CharTransformer
from budgetsched.bench.engines.stacked import SingleModel, StackedModel
from budgetsched.bench.tasks import bits_per_char, cross_entropy, error_percent, vae_loss, vae_neg_elbo

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RTOL = 1e-10


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


def check_step(make, seeds, task, x, y, tile=None):
    ref_loss, ref_grad = reference(build(make, seeds), seeds, task, x, y)
    for stacking in ("auto", "vmap"):
        stack = StackedModel(build(make, seeds), groups_of(seeds), task, "cpu", stacking)
        assert stack.kernel == (stacking == "auto")
        if stack.kernel:
            stack._impl.tile = tile
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

    def make():
        return nn.Sequential(nn.Linear(7, 9, bias=False), act(), nn.Linear(9, 6), act(), nn.Linear(6, 4))
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


SMALL_CNN = dict(length=12, channels=4, n_classes=5)


@pytest.mark.parametrize("seeds", SEED_MIXES, ids=str)
@pytest.mark.parametrize("tile", [None, 1, 2])
def test_cnn_kernel_equals_each_model_alone(float64, seeds, tile):
    x, y = batch(seeds, (12,), n_classes=5)
    check_step(lambda: CNN1d(**SMALL_CNN), seeds, make_task(), x, y, tile=tile)


@pytest.mark.parametrize("k,stride,padding", [(3, 1, 0), (3, 2, 1), (5, 2, 2), (4, 3, 3), (1, 1, 0), (2, 2, 0)])
def test_sequential_convnets(float64, k, stride, padding):
    """Any kernel / stride / padding (padding wider than the reach of some taps included), channels in the input."""
    seeds = (0, 1, 1)
    L = 11
    L1 = (L + 2 * padding - k) // stride + 1
    L2 = (L1 + 2 * 1 - 3) // 1 + 1

    def make():
        return nn.Sequential(nn.Conv1d(2, 3, k, stride, padding), nn.Tanh(), nn.Conv1d(3, 4, 3, 1, 1, bias=False),
                             nn.ReLU(), nn.Flatten(), nn.Linear(4 * L2, 6), nn.ReLU(), nn.Linear(6, 3))
    x, y = batch(seeds, (2, L), n_classes=3)
    check_step(make, seeds, make_task(), x, y)


@pytest.mark.parametrize("tile,eval_pass", [(None, 250), (3, 10)])
@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_evaluation_equals_each_model_alone(float64, tile, eval_pass, net, monkeypatch):
    monkeypatch.setattr(kernels.feedforward, "EVAL_PASS", eval_pass)  # 37 examples in 1 or 4 passes
    seeds = (0, 0, 1, 2, 2, 2, 4)
    task = make_task()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(37, 40 if net == "mlp" else 12, generator=gen)
    y = torch.randint(0, 10 if net == "mlp" else 5, (37,), generator=gen)
    make = (lambda: MLP((40, 16, 10))) if net == "mlp" else (lambda: CNN1d(**SMALL_CNN))
    expected = [SingleModel(m, task, "cpu").evaluate(x, y) for m in build(make, seeds)]
    for stacking in ("auto", "vmap"):
        stack = StackedModel(build(make, seeds), groups_of(seeds), task, "cpu", stacking)
        if stack.kernel:
            stack._impl.tile = tile
        loss, metric = stack.evaluate(x, y)
        assert loss == pytest.approx([e[0][0] for e in expected], rel=RTOL)
        assert metric == pytest.approx([e[1][0] for e in expected], rel=RTOL)


def test_evaluation_of_any_loss_and_metric(float64, monkeypatch):
    monkeypatch.setattr(kernels.feedforward, "EVAL_PASS", 8)
    seeds = (0, 1, 1)
    task = make_task(mse, per_example_mse)
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(21, 6, generator=gen), torch.randn(21, 3, generator=gen)
    make = lambda: nn.Sequential(nn.Linear(6, 5), nn.GELU(), nn.Linear(5, 3))  # noqa: E731
    expected = [SingleModel(m, task, "cpu").evaluate(x, y) for m in build(make, seeds)]
    stack = StackedModel(build(make, seeds), groups_of(seeds), task, "cpu")
    assert stack.kernel
    loss, metric = stack.evaluate(x, y)
    assert loss == pytest.approx([e[0][0] for e in expected], rel=RTOL)
    assert metric == pytest.approx([e[1][0] for e in expected], rel=RTOL)


SMALL_TRANSFORMER = dict(vocab=11, block_size=8, dim=16, n_layers=2, n_heads=2)


def tokens(G, B, T, seed=4):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 11, (G, B, T), generator=gen), torch.randint(0, 11, (G, B, T), generator=gen)


@pytest.mark.parametrize("seeds", [(0, 0, 0), (0, 0, 1, 2, 2)], ids=str)
@pytest.mark.parametrize("tile", [None, 2])
def test_transformer_kernel_equals_each_model_alone(float64, seeds, tile):
    x, y = tokens(len(set(seeds)), 3, 7)  # sequences shorter than the block
    check_step(lambda: CharTransformer(**SMALL_TRANSFORMER), seeds, make_task(cross_entropy, bits_per_char), x, y,
               tile=tile)


@pytest.mark.parametrize("eval_pass", [64, 3])
def test_transformer_evaluation_equals_each_model_alone(float64, eval_pass, monkeypatch):
    monkeypatch.setattr(kernels.transformer, "EVAL_PASS_SEQ", eval_pass)
    seeds = (0, 1, 1)
    task = make_task(cross_entropy, bits_per_char)
    x, y = (t[0] for t in tokens(1, 10, 8))
    make = lambda: CharTransformer(**SMALL_TRANSFORMER)  # noqa: E731
    expected = [SingleModel(m, task, "cpu").evaluate(x, y) for m in build(make, seeds)]
    for stacking in ("auto", "vmap"):
        stack = StackedModel(build(make, seeds), groups_of(seeds), task, "cpu", stacking)
        assert stack.kernel == (stacking == "auto")
        loss, metric = stack.evaluate(x, y)
        assert loss == pytest.approx([e[0][0] for e in expected], rel=RTOL)
        assert metric == pytest.approx([e[1][0] for e in expected], rel=RTOL)


def test_transformer_spec_accepts_the_char_model_only():
    spec = transformer_spec(CharTransformer(**SMALL_TRANSFORMER))
    assert spec == {"dim": 16, "block_size": 8, "n_layers": 2, "n_heads": 2, "vocab": 11, "eps": 1e-5}
    m = CharTransformer(**SMALL_TRANSFORMER)
    m.blocks[1].mlp[1] = nn.GELU(approximate="tanh")
    assert transformer_spec(m) is None
    m = CharTransformer(**SMALL_TRANSFORMER)
    m.ln_f = nn.LayerNorm(16, elementwise_affine=False)
    assert transformer_spec(m) is None
    assert transformer_spec(MLP((3, 2))) is None
    with pytest.raises(ValueError, match="stacking 'bmm' needs an MLP"):
        StackedModel([CharTransformer(**SMALL_TRANSFORMER)], [0], make_task(), "cpu", "bmm")


def small_vae():
    return VAE(n_in=6, latent=2, hidden=(5, 4))


def vae_batch(G, B, seed=6):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(G, B, 6, generator=gen)
    return torch.cat([images, torch.randn(G, B, 2, generator=gen)], dim=2), images


@pytest.mark.parametrize("seeds", [(0, 0), (0, 0, 1, 2, 2)], ids=str)
@pytest.mark.parametrize("tile", [None, 2])
def test_vae_kernel_equals_each_model_alone(float64, seeds, tile):
    x, y = vae_batch(len(set(seeds)), 5)
    check_step(small_vae, seeds, make_task(vae_loss, vae_neg_elbo), x, y, tile=tile)


def test_vae_evaluation_equals_each_model_alone(float64, monkeypatch):
    monkeypatch.setattr(kernels.vae, "EVAL_PASS", 4)
    seeds = (0, 1, 1)
    task = make_task(vae_loss, vae_neg_elbo)
    x, y = (t[0] for t in vae_batch(1, 11))
    expected = [SingleModel(m, task, "cpu").evaluate(x, y) for m in build(small_vae, seeds)]
    for stacking in ("auto", "vmap"):
        stack = StackedModel(build(small_vae, seeds), groups_of(seeds), task, "cpu", stacking)
        assert stack.kernel == (stacking == "auto")
        loss, metric = stack.evaluate(x, y)
        assert loss == pytest.approx([e[0][0] for e in expected], rel=RTOL)
        assert metric == pytest.approx([e[1][0] for e in expected], rel=RTOL)


def test_vae_spec():
    spec = vae_spec(small_vae())
    assert (spec["n_in"], spec["latent"]) == (6, 2)
    assert [(s.n_in, s.n_out, s.act) for s in spec["encoder"]] == [(6, 5, "relu"), (5, 4, "relu"), (4, 4, None)]
    assert [(s.n_in, s.n_out, s.act) for s in spec["decoder"]] == [(2, 4, "relu"), (4, 5, "relu"), (5, 6, None)]
    m = small_vae()
    m.decoder[1] = nn.Tanh()
    assert vae_spec(m) is None and vae_spec(MLP((3, 2))) is None


def test_stack_layers_accepts_mlps_and_1d_cnns_and_rejects_the_rest():
    op, layers = stack_layers(MLP((4, 3, 2)))
    assert op == "flatten" and [(s.kind, s.n_in, s.n_out, s.act) for s in layers] == [
        ("linear", 4, 3, "relu"), ("linear", 3, 2, None)]
    op, layers = stack_layers(CNN1d())
    assert op == "unsqueeze" and [(s.kind, s.kernel, s.stride, s.padding, s.act) for s in layers] == [
        ("conv1d", 5, 1, 2, "relu"), ("conv1d", 3, 2, 1, "relu"), ("conv1d", 3, 2, 1, "relu"),
        ("linear", 1, 1, 0, None)]
    _, layers = stack_layers(nn.Sequential(nn.Linear(4, 3, bias=False), nn.Sigmoid(), nn.Linear(3, 2), nn.Identity()))
    assert [(s.bias, s.act) for s in layers] == [(None, "sigmoid"), ("2.bias", None)]
    assert stack_layers(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)))[0] == "flatten"
    assert stack_layers(nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)))[0] is None
    rejected = [
        nn.Sequential(nn.ReLU(), nn.Linear(3, 2)),  # activation first
        nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Tanh()),  # two in a row
        nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)),  # buffers
        nn.Sequential(nn.Flatten(2), nn.Linear(3, 2)),
        nn.Sequential(),
        nn.Sequential(nn.Conv1d(1, 2, 3)),  # must end in a linear layer
        nn.Sequential(nn.Conv1d(1, 2, 3), nn.Linear(2, 2)),  # no flatten between
        nn.Sequential(nn.Conv1d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(2, 2)),
        nn.Sequential(nn.Conv1d(1, 2, 3, dilation=2), nn.Flatten(), nn.Linear(2, 2)),
        nn.Sequential(nn.Conv1d(1, 2, 3, padding="same"), nn.Flatten(), nn.Linear(2, 2)),
        nn.Sequential(nn.Conv1d(1, 2, 3, padding=1, padding_mode="circular"), nn.Flatten(), nn.Linear(2, 2)),
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)),
    ]
    assert all(stack_layers(m) is None for m in rejected)


def test_bmm_means_mlps_only():
    task = make_task()
    with pytest.raises(ValueError, match="stacking 'bmm' needs an MLP"):
        StackedModel([CNN1d()], [0], task, "cpu", "bmm")
    assert StackedModel([CNN1d()], [0], task, "cpu", "auto").kernel
    assert StackedModel([MLP((3, 2))], [0], task, "cpu", "bmm").kernel
    bn = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    with pytest.raises(ValueError, match="stacking 'bmm' needs an MLP"):
        StackedModel([bn], [0], task, "cpu", "bmm")


def test_inputs_of_the_wrong_shape_are_rejected():
    stack = StackedModel([MLP((4, 2))], [0], make_task(), "cpu")
    with pytest.raises(ValueError, match="cannot take examples of shape .5,."):
        stack.loss_and_grad(torch.zeros(1, 3, 5), torch.zeros(1, 3, dtype=torch.long))


def test_first_argmax_of_a_strided_dimension():
    gen = torch.Generator().manual_seed(5)
    for dtype in (torch.float32, torch.float64):
        out = torch.randint(0, 3, (4, 6, 50), generator=gen).to(dtype)  # many ties: the first maximum wins
        assert torch.equal(kernels.feedforward._argmax1(out), out.argmax(1))


@pytest.mark.parametrize("make,shape", [(lambda: MLP((40, 16, 10)), (40,)), (lambda: CNN1d(**SMALL_CNN), (12,))],
                         ids=["mlp", "cnn"])
def test_reduced_precision_is_opt_in_and_close(make, shape, monkeypatch):
    """bfloat16 products (float32 parameters, gradients and loss) only when asked for; close to float32."""
    seeds = (0, 0, 1)
    task = make_task()
    x, y = batch(seeds, shape, n_classes=5, B=64)
    monkeypatch.delenv("BUDGETSCHED_MATMUL_DTYPE", raising=False)
    exact = StackedModel(build(make, seeds), groups_of(seeds), task, "cpu")
    assert exact.compute_dtype is None and exact._impl.compute_dtype == torch.float32
    loss32, grad32 = (t.clone() for t in exact.loss_and_grad(x, y))
    monkeypatch.setenv("BUDGETSCHED_MATMUL_DTYPE", "bfloat16")
    for low in (StackedModel(build(make, seeds), groups_of(seeds), task, "cpu"),
                StackedModel(build(make, seeds), groups_of(seeds), task, "cpu", compute_dtype=torch.bfloat16)):
        assert low.compute_dtype == torch.bfloat16
        loss, grad = low.loss_and_grad(x, y)
        assert loss.dtype == grad.dtype == torch.float32
        torch.testing.assert_close(loss, loss32, rtol=2e-2, atol=0)
        assert ((grad - grad32).norm(dim=1) / grad32.norm(dim=1)).max() < 0.1
        v_loss, v_metric = low.evaluate(x[0], y[0])
        e_loss, e_metric = exact.evaluate(x[0], y[0])
        assert v_loss == pytest.approx(e_loss, rel=2e-2)


def test_reduced_precision_through_autocast_elsewhere(monkeypatch):
    monkeypatch.delenv("BUDGETSCHED_MATMUL_DTYPE", raising=False)
    seeds = (0, 1)
    task = make_task(cross_entropy, bits_per_char)
    x, y = tokens(2, 3, 8)
    make = lambda: CharTransformer(**SMALL_TRANSFORMER)  # noqa: E731
    exact = StackedModel(build(make, seeds), groups_of(seeds), task, "cpu")
    loss32, grad32 = (t.clone() for t in exact.loss_and_grad(x, y))
    for stacking in ("auto", "vmap"):
        low = StackedModel(build(make, seeds), groups_of(seeds), task, "cpu", stacking, compute_dtype="bfloat16")
        loss, grad = low.loss_and_grad(x, y)
        assert loss.dtype == grad.dtype == torch.float32
        torch.testing.assert_close(loss, loss32, rtol=2e-2, atol=0)
        assert ((grad - grad32).norm(dim=1) / grad32.norm(dim=1)).max() < 0.1
        assert low.evaluate(x[0], y[0])[0] == pytest.approx(exact.evaluate(x[0], y[0])[0], rel=2e-2)
    with pytest.raises(ValueError, match="unknown compute dtype 'int8'"):
        StackedModel(build(make, seeds), groups_of(seeds), task, "cpu", compute_dtype="int8")


# ------------------------------------------------------------------------------- losses by declared kind
def test_the_kernels_read_a_declared_loss_kind_never_a_functions_identity(float64):
    """The registry's losses declare what they compute; an undeclared copy of cross-entropy goes through the
    generic (vjp) path and gives the same step; a user's own function that declares the kind gets the fused one."""
    from budgetsched.bench.engines.kernels.losses import kind_of
    from budgetsched.bench.tasks.registry import declare_kind

    assert (kind_of(cross_entropy), kind_of(error_percent), kind_of(bits_per_char)) == (
        "cross_entropy", "error_percent", "bits_per_char")
    assert kind_of(vae_loss) is None and kind_of(mse) is None

    def plain_ce(out, y):
        return torch.nn.functional.cross_entropy(out, y)

    @declare_kind("cross_entropy")
    def my_ce(out, y):
        return torch.nn.functional.cross_entropy(out, y)

    seeds = (0, 0, 1)
    x, y = batch(seeds, (5, 8), n_classes=10)
    make = lambda: MLP((40, 16, 10))  # noqa: E731
    for loss, fused in ((plain_ce, False), (my_ce, True), (cross_entropy, True)):
        task = make_task(loss, error_percent)
        check_step(make, seeds, task, x, y)
        assert StackedModel(build(make, seeds), groups_of(seeds), task, "cpu")._impl._ce is fused
