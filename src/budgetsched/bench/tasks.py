"""Task registry: data + model + loss + metric + maximum epochs + batch size.

A task's ``max_epochs`` is its 100 % budget; a trial at budget b % trains ``ceil(max_epochs * b / 100)``
epochs. Lower metric is always better.

Budgets of the small tasks, measured with a linear decay to 0 (one seed, one CPU thread, plain
training loop without evaluation):

* ``mnist1d-mlp``: 100 epochs of 36 steps (3600 train examples, batch 100). SGD + momentum 0.9 at
  LR 0.1 reaches train loss 0.002 with validation error flat (37 %) from about epoch 50 on; Adam at
  LR 0.01 reaches train loss 5e-4 (test error 35 %). So the 100 % budget trains to convergence; such
  a run takes about 3 s (SGD) to 5 s (Adam). (Adam at LR 1e-3 is still at train loss 0.44: too low an
  LR, not too short a budget.)
* ``mnist1d-cnn``: the same 100 epochs; SGD + momentum at 0.03 and Adam at 3e-3 both end at train
  loss 0.003 with validation error within one point over the last 30 epochs (test error 8-10 %); 14-20 s a run.
* ``digits-mlp``: 50 epochs of 20 steps (1257 train examples, batch 64); SGD + momentum at 0.1 ends
  at train loss 0.014 with validation error unchanged over the last 30 epochs; under 1 s a run.
* ``shakespeare-char``: 5 epochs of 241 steps (blocks of 64 + 1 bytes, batch 64), about 35 s an
  epoch. A short budget by design, not a converged one: one epoch of Adam at 3e-3 reaches 3.3 bits/char.

The paper settings keep the paper's budgets (Table 3: 300 / 300 / 200 / 200 epochs) and batch sizes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from . import data as _data
from . import models as _models
from .data import TaskData

__all__ = ["Task", "TaskData", "get_task", "available_tasks"]


@dataclass(frozen=True)
class Task:
    """One benchmark setting. ``make_model`` expects the caller to seed torch first."""

    name: str
    max_epochs: int  # the 100 % budget
    batch_size: int
    metric_name: str  # lower is better, always
    load: Callable[[Path | None, Path | None], TaskData]  # (data_dir, cache_dir) -> data
    make_model: Callable[[], torch.nn.Module]
    loss: Callable[[Tensor, Tensor], Tensor]  # (model_output, y) -> mean scalar loss
    metric: Callable[[Tensor, Tensor], Tensor]  # (model_output, y) -> per-example metric
    batchable: bool  # the batched engine may stack it (no BatchNorm/dropout state)
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None  # per training batch
    weight_decay: float = 0.0  # the setting's standard L2


# ------------------------------------------------------------------------------- losses / metrics
def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy over the batch (and over positions for sequence outputs [N, T, V])."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def error_percent(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example classification error in percent (0 or 100)."""
    return (logits.argmax(-1) != y).to(torch.float32) * 100.0


def bits_per_char(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example (per-sequence) mean cross-entropy in bits: logits [N, T, V], y [N, T] -> [N]."""
    ce = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # [N, T], nats
    return ce.mean(dim=1) / math.log(2.0)


def vae_neg_elbo(out: Tensor, x: Tensor) -> Tensor:
    """Per-example negative ELBO in nats: Bernoulli reconstruction (binary cross-entropy of the
    decoder logits against the pixel intensities, summed over pixels) plus KL(q(z|x) || N(0, I))."""
    logits, mu, logvar = _models.VAE.unpack(out, latent=(out.shape[-1] - x[0].numel()) // 2)
    recon = F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(dim=1)
    kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
    return recon + kl


def vae_loss(out: Tensor, x: Tensor) -> Tensor:
    """Negative ELBO per example, averaged over the batch."""
    return vae_neg_elbo(out, x).mean()


# ---------------------------------------------------------------------------------------- registry
_TASKS: dict[str, Task] = {}


def _register(task: Task) -> None:
    _TASKS[task.name] = task


# The offline suite (docs/tasks.md says why each is sized as it is). Weight decay 5e-4 as the paper's image
# settings use; MNIST-1D is generated with 10 000 sequences so that the 100 % run is well trained, not memorised.
_register(Task(
    name="mnist1d-mlp", max_epochs=60, batch_size=100, metric_name="error %",
    load=_data.load_mnist1d, make_model=lambda: _models.MLP((40, 100, 100, 10)),
    loss=cross_entropy, metric=error_percent, batchable=True, weight_decay=5e-4,
))
_register(Task(
    name="mnist1d-cnn", max_epochs=30, batch_size=100, metric_name="error %",
    load=_data.load_mnist1d, make_model=lambda: _models.CNN1d(channels=16),
    loss=cross_entropy, metric=error_percent, batchable=True, weight_decay=5e-4,
))
_register(Task(
    name="digits-mlp", max_epochs=60, batch_size=32, metric_name="error %",
    load=_data.load_digits_data, make_model=lambda: _models.MLP((64, 64, 10)),
    loss=cross_entropy, metric=error_percent, batchable=True, weight_decay=5e-4,
))
_register(Task(
    name="digits-vae", max_epochs=100, batch_size=64, metric_name="nll",
    load=_data.load_digits_vae,
    make_model=lambda: _models.VAE(n_in=64, latent=_data.DIGITS_VAE_LATENT, hidden=(128, 64)),
    loss=vae_loss, metric=vae_neg_elbo, batchable=True, augment=_data.append_noise(_data.DIGITS_VAE_LATENT),
))
_register(Task(
    name="shakespeare-char", max_epochs=4, batch_size=32, metric_name="bits/char",
    load=_data.load_shakespeare,
    make_model=lambda: _models.CharTransformer(vocab=_data.SHAKESPEARE_VOCAB, block_size=32, dim=32, n_layers=1,
                                               n_heads=4),
    loss=cross_entropy, metric=bits_per_char, batchable=True,
))

# The REX paper's settings (Table 3); they read the standard files from --data-dir.
_register(Task(
    name="cifar10-resnet20", max_epochs=300, batch_size=128, metric_name="error %",
    load=_data.load_cifar10, make_model=lambda: _models.ResNet20(n_classes=10),
    loss=cross_entropy, metric=error_percent, batchable=False,
    augment=_data.random_crop_flip(4), weight_decay=5e-4,
))
_register(Task(
    name="cifar100-vgg16", max_epochs=300, batch_size=128, metric_name="error %",
    load=_data.load_cifar100, make_model=lambda: _models.VGG16(n_classes=100),
    loss=cross_entropy, metric=error_percent, batchable=False,
    augment=_data.random_crop_flip(4), weight_decay=5e-4,
))
_register(Task(
    name="mnist-vae", max_epochs=200, batch_size=100, metric_name="nll",
    load=_data.load_mnist_vae, make_model=lambda: _models.VAE(latent=_data.MNIST_VAE_LATENT),
    loss=vae_loss, metric=vae_neg_elbo, batchable=True, augment=_data.append_noise(_data.MNIST_VAE_LATENT),
))
_register(Task(
    name="stl10-wrn", max_epochs=200, batch_size=64, metric_name="error %",
    load=_data.load_stl10, make_model=lambda: _models.WideResNet(depth=16, widen=8, n_classes=10),
    loss=cross_entropy, metric=error_percent, batchable=False,
    augment=_data.random_crop_flip(12), weight_decay=5e-4,  # pad 12 on 96x96 = pad 4 on 32x32, scaled
))


def available_tasks() -> list[str]:
    """Names of the registered tasks (``mnist1d-mlp`` is the default)."""
    return list(_TASKS)


def get_task(name: str) -> Task:
    """The registered task ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    try:
        return _TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(_TASKS)}") from None
