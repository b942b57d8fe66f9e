"""Task registry, models, losses and metrics."""
from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state

from budgetsched.bench.tasks import models as M
from budgetsched.bench.tasks import Task, TaskData, available_tasks, get_task

ALL = ["mnist1d-mlp", "mnist1d-cnn", "digits-mlp", "digits-vae", "shakespeare-char",
       "cifar10-resnet20", "cifar100-vgg16", "mnist-vae", "stl10-wrn",
       "mnist1d-mlp-v2", "mnist1d-cnn-v2", "digits-mlp-v2", "digits-vae-v2", "shakespeare-mlp"]

#: A tiny input batch and targets per task (shapes as the loaders produce them).
def _tiny_batch(name: str, n: int = 2):
    g = torch.Generator().manual_seed(0)
    if name.startswith("mnist1d"):
        return torch.randn(n, 40, generator=g), torch.randint(0, 10, (n,), generator=g)
    if name in ("digits-mlp", "digits-mlp-v2"):
        return torch.rand(n, 64, generator=g), torch.randint(0, 10, (n,), generator=g)
    if name in ("digits-vae", "digits-vae-v2"):
        x = torch.rand(n, 64, generator=g)
        if name == "digits-vae-v2":
            x = (x >= 0.5).to(torch.float32)  # binarised digits
        return torch.cat([x, torch.randn(n, 8, generator=g)], 1), x
    if name == "shakespeare-mlp":  # 8 characters of context, one-hot, as the model reads them
        ids = torch.randint(0, 65, (n, 8), generator=g)
        return F.one_hot(ids, 65).reshape(n, -1).to(torch.float32), torch.randint(0, 65, (n,), generator=g)
    if name == "shakespeare-char":
        x = torch.randint(0, 65, (n, 32), generator=g)
        return x, torch.roll(x, -1, dims=1)
    if name == "cifar10-resnet20":
        return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    if name == "cifar100-vgg16":
        return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 100, (n,), generator=g)
    if name == "mnist-vae":
        x = torch.rand(n, 784, generator=g)
        return torch.cat([x, torch.randn(n, 2, generator=g)], 1), x
    if name == "stl10-wrn":
        return torch.randn(n, 3, 96, 96, generator=g), torch.randint(0, 10, (n,), generator=g)
    raise AssertionError(name)


def test_registry_names_and_errors():
    assert available_tasks() == ALL
    assert available_tasks()[0] == "mnist1d-mlp"  # the default task comes first
    with pytest.raises(ValueError, match=r"unknown task 'nope'; choose from mnist1d-mlp, mnist1d-cnn, digits-mlp"):
        get_task("nope")
    t = get_task("mnist1d-mlp")
    assert isinstance(t, Task)
    with pytest.raises(FrozenInstanceError):
        t.max_epochs = 1  # type: ignore[misc]


def test_task_settings():
    expect = {  # name: (max_epochs, batch, metric, batchable, weight_decay, has augment)
        "mnist1d-mlp": (60, 100, "error %", True, 5e-4, False),
        "mnist1d-cnn": (30, 100, "error %", True, 5e-4, False),
        "digits-mlp": (60, 32, "error %", True, 5e-4, False),
        "digits-vae": (100, 64, "nll", True, 0.0, True),  # augment = the reparameterisation noise
        "shakespeare-char": (4, 32, "bits/char", True, 0.0, False),
        "cifar10-resnet20": (300, 128, "error %", False, 5e-4, True),
        "cifar100-vgg16": (300, 128, "error %", False, 5e-4, True),
        "mnist-vae": (200, 100, "nll", True, 0.0, True),
        "stl10-wrn": (200, 64, "error %", False, 5e-4, True),
        # suite v2: 1 250 evaluation periods of 4 steps = 5 000 steps at 100 %
        "mnist1d-mlp-v2": (1250, 100, "error %", True, 5e-4, False),
        "mnist1d-cnn-v2": (1250, 100, "error %", True, 5e-4, False),
        "digits-mlp-v2": (1250, 32, "error %", True, 5e-4, False),
        "digits-vae-v2": (1250, 32, "nll", True, 0.0, True),
        "shakespeare-mlp": (1250, 32, "bits/char", True, 0.0, True),  # augment = ids -> one-hot per batch
    }
    for name, (ep, bs, metric, batchable, wd, aug) in expect.items():
        t = get_task(name)
        assert (t.max_epochs, t.batch_size, t.metric_name, t.batchable, t.weight_decay, t.augment is not None) == \
            (ep, bs, metric, batchable, wd, aug), name
        assert t.steps_per_epoch == (4 if name in ALL[9:] else None), name  # v1 tasks: one pass per epoch


@pytest.mark.parametrize("name", ALL)
def test_tiny_forward_loss_and_metric(name):
    torch.manual_seed(0)
    t = get_task(name)
    model = t.make_model()
    x, y = _tiny_batch(name)
    out = model(x)
    loss = t.loss(out, y)
    per_example = t.metric(out, y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert per_example.shape == (2,) and torch.isfinite(per_example).all()
    if t.metric_name == "error %":
        assert out.shape == (2, 100 if name == "cifar100-vgg16" else 10)
        assert set(per_example.tolist()) <= {0.0, 100.0}
    elif name == "shakespeare-mlp":  # the next character after 8 of context
        assert out.shape == (2, 65)
        assert 4.5 < per_example.mean().item() < 8.0  # about uniform over 65 characters: log2(65) = 6.0 bits
        assert per_example.mean().item() == pytest.approx(loss.item() / math.log(2), rel=1e-5)
    elif t.metric_name == "bits/char":
        assert out.shape == (2, 32, 65)
        # an untrained model is close to uniform over 65 characters: about log2(65) = 6.0 bits per character
        assert 4.5 < per_example.mean().item() < 8.0
        assert per_example.mean().item() == pytest.approx(loss.item() / math.log(2), rel=1e-5)
    else:
        n_in, latent = (64, 8) if name.startswith("digits-vae") else (784, 2)
        assert out.shape == (2, n_in + 2 * latent)
        assert (per_example > 0).all()
        assert per_example.mean().item() == pytest.approx(loss.item(), rel=1e-5)
    loss.backward()  # gradients reach every parameter
    assert all(p.grad is not None for p in model.parameters())


def test_error_metric_and_cross_entropy_known_answers():
    t = get_task("digits-mlp")
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0]])
    y = torch.tensor([0, 2, 2])
    assert t.metric(logits, y).tolist() == [0.0, 100.0, 0.0]
    torch.testing.assert_close(t.loss(logits, y), F.cross_entropy(logits, y))


def test_bits_per_char_known_answer():
    t = get_task("shakespeare-char")
    logits = torch.zeros(1, 3, 4)  # uniform over 4 symbols: exactly 2 bits each
    assert t.metric(logits, torch.tensor([[0, 1, 3]])).item() == pytest.approx(2.0)
    logits = torch.full((1, 2, 2), -1e9)
    logits[0, 0, 1] = logits[0, 1, 0] = 0.0  # certain and right: 0 bits
    assert t.metric(logits, torch.tensor([[1, 0]])).item() == pytest.approx(0.0)


def test_vae_negative_elbo_formula():
    t = get_task("mnist-vae")
    g = torch.Generator().manual_seed(1)
    logits, mu, logvar = torch.randn(3, 784, generator=g), torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    x = torch.rand(3, 784, generator=g)
    out = torch.cat([logits, mu, logvar], dim=1)
    # Bernoulli log-likelihood written out, and the closed-form Gaussian KL
    p = torch.sigmoid(logits)
    recon = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(1)
    var = logvar.exp()
    kl = 0.5 * (var + mu ** 2 - 1 - logvar).sum(1)
    torch.testing.assert_close(t.metric(out, x), recon + kl, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(t.loss(out, x), (recon + kl).mean(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", [n for n in ALL if get_task(n).batchable])
def test_batchable_models_stack_under_vmap(name):
    """K stacked copies under vmap give each copy's own output (what the batched engine relies on)."""
    t = get_task(name)
    copies = []
    for seed in range(3):
        torch.manual_seed(seed)
        copies.append(t.make_model())
    params, buffers = stack_module_state(copies)
    base = t.make_model().to("meta")

    def run(p, b, xb):
        return functional_call(base, (p, b), (xb,))

    x, y = _tiny_batch(name, n=4)
    stacked = torch.vmap(run, in_dims=(0, 0, None))(params, buffers, x)
    losses = torch.vmap(t.loss, in_dims=(0, None))(stacked, y)
    metrics = torch.vmap(t.metric, in_dims=(0, None))(stacked, y)
    for k, m in enumerate(copies):
        out = m(x)
        torch.testing.assert_close(stacked[k], out, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(losses[k], t.loss(out, y), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(metrics[k], t.metric(out, y), rtol=1e-4, atol=1e-4)


def test_model_shapes_and_sizes():
    assert [tuple(l.weight.shape) for l in M.MLP((40, 100, 100, 10)).layers] == [(100, 40), (100, 100), (10, 100)]
    r20 = M.ResNet20()
    convs = [m for m in r20.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19  # 1 stem + 3 stages x 3 blocks x 2 (+ linear head = 20 layers)
    assert sum(p.numel() for p in r20.parameters()) == pytest.approx(0.27e6, rel=0.02)
    vgg = M.VGG16()
    assert sum(isinstance(m, torch.nn.Conv2d) for m in vgg.modules()) == 13
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in vgg.modules())
    wrn = M.WideResNet(16, 8)
    assert sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in wrn.modules()) == 13
    assert sum(p.numel() for p in wrn.parameters()) == pytest.approx(10.96e6, rel=0.01)
    vae = M.VAE()
    assert sum(isinstance(m, torch.nn.Linear) for m in vae.encoder) == 3
    assert sum(isinstance(m, torch.nn.Linear) for m in vae.decoder) == 3
    assert vae.decoder[0].in_features == 2
    with pytest.raises(ValueError, match="depth must be 6n"):
        M.WideResNet(depth=15)
    with pytest.raises(ValueError, match="sizes"):
        M.MLP((40,))
    with pytest.raises(ValueError, match="exceeds block_size 64"):
        M.CharTransformer(block_size=64)(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match=r"VAE input must be \[N, 784 \+ 2\]"):
        vae(torch.zeros(1, 784))


def test_vae_noise_is_an_input():
    """z = mu + sigma * eps with eps taken from the input: zero noise decodes the mean, and the same noise gives
    the same output (no hidden random draws)."""
    torch.manual_seed(0)
    vae = M.VAE(n_in=64, latent=8, hidden=(32, 16))
    x = torch.rand(5, 64)
    eps = torch.randn(5, 8)
    out = vae(torch.cat([x, eps], 1))
    torch.testing.assert_close(out, vae(torch.cat([x, eps], 1)))
    _, mu, logvar = M.VAE.unpack(out, latent=8)
    torch.testing.assert_close(out[:, :64], vae.decoder(mu + torch.exp(0.5 * logvar) * eps))
    torch.testing.assert_close(vae(torch.cat([x, torch.zeros(5, 8)], 1))[:, :64], vae.decoder(mu))


def test_char_transformer_is_causal():
    torch.manual_seed(0)
    m = M.CharTransformer(block_size=16)
    x = torch.randint(0, 256, (1, 16))
    x2 = x.clone()
    x2[0, 10:] = (x2[0, 10:] + 1) % 256  # change only the future of position 9
    torch.testing.assert_close(m(x)[:, :10], m(x2)[:, :10])
    assert not torch.allclose(m(x)[:, 10:], m(x2)[:, 10:])


def test_resnet_shortcut_is_identity_when_block_is_zero():
    """Option-A shortcut: with the residual branch silenced, a down-sampling block returns
    relu(x[:, :, ::2, ::2]) in the middle channels and zeros in the padded ones."""
    blk = M.BasicBlock(16, 32, stride=2).eval()
    torch.nn.init.zeros_(blk.bn2.weight)
    torch.nn.init.zeros_(blk.bn2.bias)
    x = torch.randn(1, 16, 8, 8)
    out = blk(x)
    torch.testing.assert_close(out[:, 8:24], torch.relu(x[:, :, ::2, ::2]))
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def test_loaders_return_taskdata(tmp_path):
    for name in ("mnist1d-mlp", "digits-mlp"):
        d = get_task(name).load(None, tmp_path)
        assert isinstance(d, TaskData)
        assert d.train_x.device.type == "cpu" and d.train_x.dtype == torch.float32 and d.val_y.dtype == torch.int64
        assert len(d.train_x) == len(d.train_y) and len(d.val_x) == len(d.val_y) and len(d.test_x) == len(d.test_y)
